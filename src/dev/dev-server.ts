import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Connection } from '@temporalio/client';
import { temporalCliPath } from '../config/toolchain';
import { SEARCH_ATTRIBUTES } from '../shared/search-attributes';
import { freePort, waitFor } from './ports';

export interface DevServerOptions {
  /** SQLite file for persistence; in memory when absent. */
  dbFile?: string;
  /** gRPC port; a free one when absent. */
  port?: number;
  /** Web UI port; no UI when absent. */
  uiPort?: number;
  /** Where the server's own log goes (default: discarded). */
  logTo?: 'inherit' | 'ignore';
}

export interface DevServer {
  address: string;
  uiUrl: string | null;
  process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts `temporal server start-dev` with the project's search attributes registered and waits until it answers.
 * The caller owns the process: `stop()` ends it (SIGTERM, then SIGKILL after 10 s). A free port can be taken by
 * another process between the moment it is picked and the moment the server binds it (test files and their servers
 * start side by side): a server that exits during its start is started again on fresh ports, three times at most.
 */
export async function startDevServer(options: DevServerOptions = {}): Promise<DevServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options);
    } catch (err) {
      if (!(err instanceof ExitedDuringStart) || attempt === START_ATTEMPTS) throw err;
    }
  }
}

const START_ATTEMPTS = 3;

class ExitedDuringStart extends Error {}

async function startOnce(options: DevServerOptions): Promise<DevServer> {
  const port = options.port ?? (await freePort());
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--log-level', 'error'];
  args.push('--http-port', String(await freePort()), '--metrics-port', String(await freePort()));
  if (options.uiPort !== undefined) args.push('--ui-port', String(options.uiPort), '--ui-disable-news-fetch');
  else args.push('--headless');
  if (options.dbFile) {
    mkdirSync(dirname(options.dbFile), { recursive: true });
    args.push('--db-filename', options.dbFile);
  }
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${name}=${type}`);

  const child = spawn(temporalCliPath(), args, {
    stdio: ['ignore', options.logTo ?? 'ignore', options.logTo ?? 'ignore'],
  });
  let exited: string | null = null;
  const exitedEarly = new Promise<never>((_, reject) =>
    child.once('exit', (code, signal) => {
      exited = `exited with ${signal ?? `code ${code}`}`;
      reject(new ExitedDuringStart(`Temporal dev server ${exited} during start (is port ${port} taken?)`));
    }),
  );
  // Once started, a later exit is the owner's to see (stop(), the process's own events), not an unhandled rejection.
  exitedEarly.catch(() => undefined);
  const address = `127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  };
  try {
    await Promise.race([
      exitedEarly,
      waitFor(
        `Temporal dev server on ${address}`,
        async () => {
          if (exited) return false;
          const connection = await Connection.connect({ address, connectTimeout: '1s' });
          try {
            await connection.workflowService.getSystemInfo({});
            return true;
          } finally {
            await connection.close();
          }
        },
        60_000,
        250,
      ),
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    address,
    uiUrl: options.uiPort === undefined ? null : `http://localhost:${options.uiPort}`,
    process: child,
    stop,
  };
}
