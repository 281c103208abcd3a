import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdminOp } from '../../src/shared/gateway-api';
import type { LoadGenerator } from '../../src/dev/load-generator';
import { startNode, type ManagedProcess } from '../../src/dev/processes';
import {
  approveAll,
  liveTraffic,
  poolState,
  ROOT,
  startStack,
  testSpec,
  uniqueName,
  waitForStatus,
  type Stack,
} from '../helpers/harness';

/**
 * The worker is a real process here, killed with SIGKILL in the middle of a ramp; a new worker process takes over
 * from the durable history.
 */
describe('a worker killed mid-ramp', () => {
  let stack: Stack;
  let load: LoadGenerator;
  let worker: ManagedProcess | null = null;
  const model = uniqueName('crash');
  const dataDir = mkdtempSync(join(tmpdir(), 'mll-crash-'));

  const startWorker = (n: number) =>
    startNode(
      `worker-${n}`,
      join(ROOT, 'dist', 'src', 'workers', 'main.js'),
      { TEMPORAL_ADDRESS: stack.address, GATEWAY_URL: stack.gateway.url, ML_DATA_DIR: dataDir, LOG_LEVEL: 'warn' },
      join(dataDir, `worker-${n}.log`),
    );

  beforeAll(async () => {
    stack = await startStack({ workers: false });
    load = liveTraffic(stack.gateway.url, model);
  });
  afterAll(async () => {
    await load?.stop();
    await worker?.stop();
    await stack?.close();
  });

  it('completes the lifecycle with traffic and quota consistent and no step done twice', async () => {
    worker = startWorker(1);
    const first = await stack.lifecycles.start(testSpec(model, 'v1'));
    expect((await approveAll(stack.lifecycles, first.id)).stage).toBe('promoted');
    // Until v1 serves, predictions are refused (404); from here on every one must succeed.
    const failedBefore = load.stats.failed;

    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v2', 'good', (s) => {
        s.rollout.steps = [
          { percent: 50, bake: 8000, approval: false },
          { percent: 100, bake: 1000, approval: false },
        ];
      }),
    );
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
    await stack.lifecycles.approve(id, { by: 'alice' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'ramping' && s.trafficPercent === 50);

    worker.child.kill('SIGKILL');
    await new Promise((r) => worker!.child.once('exit', r));
    worker = startWorker(2);

    const end = await waitForStatus(
      stack.lifecycles,
      id,
      (s) => ['promoted', 'rolled-back', 'failed'].includes(s.stage),
      150_000,
    );
    expect(end.stage, JSON.stringify(end.events.slice(-6))).toBe('promoted');
    expect(end.trafficPercent).toBe(100);

    // Traffic: the candidate has it all and the old version is gone.
    const routing = (await (await fetch(`${stack.gateway.url}/admin/models/${model}`)).json()) as {
      weights: Record<string, number>;
      versions: { version: string }[];
    };
    expect(routing.weights).toEqual({ v2: 100 });
    expect(routing.versions.map((v) => v.version)).toEqual(['v2']);

    // Every gateway mutation of the lifecycle applied exactly once, in order.
    const ops = (await (await fetch(`${stack.gateway.url}/admin/ops?model=${model}`)).json()) as (AdminOp & {
      applied?: boolean;
    })[];
    const mine = ops.filter((o) => o.opId.startsWith(`${id}:`));
    expect(mine.map((o) => o.opId.slice(id.length + 1))).toEqual([
      'deploy-stable',
      'deploy',
      'weights:0',
      'weights:1',
      'weights:2',
      'weights:final',
      'undeploy-stable',
    ]);
    expect(mine.filter((o) => o.applied !== false).map((o) => o.opId.slice(id.length + 1))).not.toContain(
      'deploy-stable',
    );

    // Quota: no training lease left; the model holds exactly its production version's serving lease.
    const leases = (await poolState(stack.client)).leases.filter(
      (l) => l.holder.startsWith(model) || l.holder.includes(`-${model}-`),
    );
    expect(leases.map((l) => l.leaseId)).toEqual([`serve:${model}:v2`]);

    // Trained once; stages entered once each.
    expect(end.events.filter((e) => e.message.startsWith('trained in'))).toHaveLength(1);
    expect(end.events.filter((e) => e.message.startsWith('ramping:50:'))).toHaveLength(1);
    expect(end.events.filter((e) => e.stage === 'promoted')).toHaveLength(1);
    expect(load.stats.failed - failedBefore, load.stats.lastError ?? '').toBe(0);
  });
});
