import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort, portOpen } from '../../src/dev/ports';
import { takeUiScreenshots, type UiScreenshots } from '../../src/dev/ui-screenshots';
import { ROOT } from '../helpers/harness';
import { tempDir } from '../helpers/temp';

interface Demo {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  ports: { temporal: number; ui: number; gateway: number; gatewayAdmin: number };
}

/** The main job as a newcomer runs it (the built demo), on ports and a data dir of its own. */
async function startDemo(dataDir: string, ...extra: string[]): Promise<Demo> {
  const ports = {
    temporal: await freePort(),
    ui: await freePort(),
    gateway: await freePort(),
    gatewayAdmin: await freePort(),
  };
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'dist', 'src', 'dev', 'demo.js'),
      '--data-dir',
      dataDir,
      '--temporal-port',
      String(ports.temporal),
      '--ui-port',
      String(ports.ui),
      '--gateway-port',
      String(ports.gateway),
      '--gateway-admin-port',
      String(ports.gatewayAdmin),
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exited, ports };
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('the demo (main job)', () => {
  it('promotes the good candidate, rolls back the bad one, and resumes from its persisted state', async () => {
    const dataDir = tempDir('mll-demo-');
    const first = await startDemo(dataDir, '--exit');
    expect(await first.exited, first.output()).toBe(0);
    const out = first.output();
    expect(out).toMatch(/result: lifecycle-churn-v1 promoted at 100% traffic/);
    expect(out).toMatch(/result: lifecycle-churn-v2 promoted at 100% traffic/);
    expect(out).toMatch(/result: lifecycle-churn-v3 rolled-back at 0% traffic/);
    expect(out).toMatch(/breached: canary predictionDrift/);
    expect(out).toMatch(/alice approved gate "deploy"/);
    expect(out).toMatch(new RegExp(`http://localhost:${first.ports.ui}/namespaces/default/workflows`));

    // Ctrl-C during a second start: every child stops, and the persisted production version is found again.
    const second = await startDemo(dataDir);
    await until(
      'the second start to find production',
      () => /production: churn v2 \(from a previous run\)/.test(second.output()),
      90_000,
    );
    // What an operator sees of the first run in the UI this start serves: the list by stage, the rolled-back page.
    const shotsDir = tempDir('mll-ui-');
    let shots: UiScreenshots;
    try {
      shots = await takeUiScreenshots({
        uiUrl: `http://localhost:${second.ports.ui}`,
        namespace: 'default',
        outDir: shotsDir,
        workflowId: 'lifecycle-churn-v3',
        expectStage: 'rolled-back',
      });
    } catch (err) {
      second.child.kill('SIGINT');
      await second.exited;
      throw err;
    }
    expect(shots.list).toBe(join(shotsDir, 'temporal-ui-list.png'));
    expect(shots.lifecycle).toBe(join(shotsDir, 'temporal-ui-rolled-back.png'));
    for (const png of [shots.list, shots.lifecycle]) {
      expect(readFileSync(png).subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
      expect(statSync(png).size).toBeGreaterThan(50_000);
    }
    expect(shots.summary).toMatch(/^churn v3: .* on pool default, by ci@pipelines$/);
    expect(shots.checked.join('\n')).toMatch(/row lifecycle-churn-v3 at rolled-back/);
    expect(shots.checked.join('\n')).toMatch(/timeline: .*canary bake: readout in/);
    await until('a lifecycle to start', () => /started lifecycle-churn-v4/.test(second.output()), 30_000);
    second.child.kill('SIGINT');
    expect(await second.exited, second.output()).toBe(0);
    expect(second.output()).toMatch(/stopped; state kept in/);
    expect(await portOpen(second.ports.temporal)).toBe(false);
    expect(await portOpen(second.ports.gateway)).toBe(false);
    expect(await portOpen(second.ports.gatewayAdmin)).toBe(false);
    expect(await portOpen(second.ports.ui)).toBe(false);
  }, 420_000);
});
