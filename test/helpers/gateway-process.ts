import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startNode, type ManagedProcess } from '../../src/dev/processes';
import { ROOT } from './harness';

export const GATEWAY_MAIN = join(ROOT, 'dist', 'src', 'serving', 'main.js');

/**
 * The built gateway (`npm run build`) as a real process on free loopback ports, with `env` on top of its own, once it
 * logs that it listens: its public and admin addresses. Its log goes to `logFile`.
 */
export async function startGatewayProcess(
  name: string,
  env: Record<string, string>,
  logFile: string,
): Promise<{ process: ManagedProcess; publicUrl: string; adminUrl: string }> {
  if (!existsSync(GATEWAY_MAIN)) throw new Error(`${GATEWAY_MAIN} is missing: run npm run build first`);
  const process = startNode(name, GATEWAY_MAIN, { GATEWAY_PORT: '0', GATEWAY_ADMIN_PORT: '0', ...env }, logFile);
  const addresses = await new Promise<{ public: string; admin: string }>((resolve, reject) => {
    let pending = '';
    const onData = (chunk: Buffer) => {
      const lines = (pending + chunk.toString('utf8')).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        let entry: { msg?: unknown; address?: unknown; adminAddress?: unknown } = {};
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          continue; // not a log record
        }
        const { address, adminAddress } = entry;
        if (
          entry.msg === 'serving gateway listening' &&
          typeof address === 'string' &&
          typeof adminAddress === 'string'
        ) {
          process.child.stdout?.off('data', onData);
          process.child.off('exit', onExit);
          resolve({ public: address, admin: adminAddress });
        }
      }
    };
    const onExit = (code: number | null, signal: string | null) =>
      reject(new Error(`${name} exited (${code ?? signal}) before listening; see ${logFile}`));
    process.child.stdout?.on('data', onData);
    process.child.once('exit', onExit);
  });
  return { process, publicUrl: addresses.public, adminUrl: addresses.admin };
}
