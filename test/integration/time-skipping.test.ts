import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createActivities } from '../../src/activities';
import { LifecycleClient } from '../../src/client/lifecycle-client';
import { registerSearchAttributes } from '../../src/dev/register-search-attributes';
import { temporalTestServerPath, trainerPython } from '../../src/config/toolchain';
import type { LoadGenerator } from '../../src/dev/load-generator';
import { lifecycleWorkflowId } from '../../src/shared/spec';
import { LIFECYCLE_TASK_QUEUE, trainingTaskQueue } from '../../src/shared/task-queues';
import {
  installQuietRuntime,
  liveTraffic,
  ROOT,
  startGateway,
  testSpec,
  uniqueName,
  waitForStatus,
  type Gateway,
} from '../helpers/harness';

const HOUR = 3_600_000;

/** Bakes of hours on the time-skipping test server: durable timers, skipped, with real activities around them. */
describe('a rollout whose stages bake for hours', () => {
  let env: TestWorkflowEnvironment;
  let gateway: Gateway;
  let load: LoadGenerator;
  let workers: Worker[] = [];
  let running: Promise<unknown>;
  const model = uniqueName('skip');

  beforeAll(async () => {
    installQuietRuntime();
    env = await TestWorkflowEnvironment.createTimeSkipping({
      server: { executable: { type: 'existing-path', path: temporalTestServerPath() } },
    });
    await registerSearchAttributes(env.connection, 'default');
    gateway = await startGateway();
    load = liveTraffic(gateway.url, model);
    const { trainModel, ...control } = createActivities({
      client: env.client,
      gatewayUrl: gateway.url,
      artifactsDir: mkdtempSync(join(tmpdir(), 'mll-skip-')),
      python: trainerPython(),
      root: ROOT,
      quotaPools: { pools: [{ name: 'default', capacity: { cpu: 16, memoryGiB: 64 } }] },
      analysisPollIntervalMs: 250,
    });
    const bundle = { codePath: inject('workflowBundlePath') };
    workers = [
      await Worker.create({
        connection: env.nativeConnection,
        taskQueue: LIFECYCLE_TASK_QUEUE,
        workflowBundle: bundle,
        activities: control,
      }),
      await Worker.create({
        connection: env.nativeConnection,
        taskQueue: trainingTaskQueue('cpu'),
        activities: { trainModel },
      }),
    ];
    running = Promise.all(workers.map((w) => w.run()));
  });
  afterAll(async () => {
    await load?.stop();
    for (const w of workers) w.shutdown();
    await running;
    await gateway?.close();
    await env?.teardown();
  });

  it('finishes in seconds of test time', async () => {
    const lifecycles = new LifecycleClient(env.client);
    const hours = (s: ReturnType<typeof testSpec>) => {
      s.rollout.canary.bake = 2 * HOUR;
      s.rollout.steps = [
        { percent: 50, bake: 6 * HOUR, approval: false },
        { percent: 100, bake: 12 * HOUR, approval: false },
      ];
      s.approval.timeout = 48 * HOUR;
    };
    // The first version: a first deployment, baking 2 hours at 100%.
    const wall = Date.now();
    await lifecycles.start(testSpec(model, 'v1', 'good', hours));
    await lifecycles.approve(lifecycleWorkflowId(model, 'v1'), { by: 'alice' }).catch(async () => {
      await waitForStatus(lifecycles, lifecycleWorkflowId(model, 'v1'), (s) => s.pendingGate !== null);
      await lifecycles.approve(lifecycleWorkflowId(model, 'v1'), { by: 'alice' });
    });
    const v1 = await lifecycles.waitForEnd(lifecycleWorkflowId(model, 'v1'));
    expect(v1.stage).toBe('promoted');

    const id = lifecycleWorkflowId(model, 'v2');
    await lifecycles.start(testSpec(model, 'v2', 'good', hours));
    await waitForStatus(lifecycles, id, (s) => s.pendingGate !== null);
    await lifecycles.approve(id, { by: 'bob' });
    const end = await lifecycles.waitForEnd(id);
    const wallSeconds = (Date.now() - wall) / 1000;

    expect(end.stage).toBe('promoted');
    const at = (prefix: string) => Date.parse(end.events.find((e) => e.message.startsWith(prefix))!.at);
    const baked = at('v2 is the production version') - at('canary:');
    expect(baked).toBeGreaterThanOrEqual(20 * HOUR);
    expect(wallSeconds).toBeLessThan(120);
  });
});
