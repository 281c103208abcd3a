import { QuotaPoolsFile } from '../../src/shared/quota';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createActivities } from '../../src/activities';
import { PolicySource } from '../../src/config/policy';
import { LifecycleClient } from '../../src/client/lifecycle-client';
import { QuotaClient } from '../../src/client/quota-client';
import { registerSearchAttributes } from '../../src/dev/register-search-attributes';
import { temporalTestServerPath, trainerPython } from '../../src/config/toolchain';
import type { LoadGenerator } from '../../src/dev/load-generator';
import { lifecycleWorkflowId } from '../../src/shared/spec';
import { LIFECYCLE_TASK_QUEUE, trainingTaskQueue } from '../../src/shared/task-queues';
import {
  installQuietRuntime,
  liveTraffic,
  OPEN_POLICY,
  recordHistory,
  ROOT,
  startGateway,
  testSpec,
  uniqueName,
  waitForStatus,
  WORKER_SECRET,
  type Gateway,
} from '../helpers/harness';
import { tempDir } from '../helpers/temp';

const HOUR = 3_600_000;
const MINUTE = 60_000;
const POOLS = QuotaPoolsFile.parse({
  pools: [
    // Its monitor looks hourly: this pool's test is about bakes of hours, not alerts.
    { name: 'default', capacity: { cpu: 16, memoryGiB: 64 }, alerts: { checkEvery: '1h' } },
    { name: 'ttl', capacity: { cpu: 8 }, leaseTtl: '10m' },
  ],
});

/** Bakes of hours on the time-skipping test server: durable timers, skipped, with real activities around them. */
describe('a rollout whose stages bake for hours', () => {
  let env: TestWorkflowEnvironment;
  let gateway: Gateway;
  let load: LoadGenerator;
  let workers: Worker[] = [];
  let running: Promise<unknown>;
  const model = uniqueName('skip');
  const expiredAlerts: string[] = [];

  beforeAll(async () => {
    installQuietRuntime();
    env = await TestWorkflowEnvironment.createTimeSkipping({
      server: { executable: { type: 'existing-path', path: temporalTestServerPath() } },
    });
    await registerSearchAttributes(env.connection, 'default');
    // The worker trains into the gateway's artifact root, as in a deployment.
    const artifactsDir = tempDir('mll-skip-');
    gateway = await startGateway({ artifactRoot: artifactsDir });
    load = liveTraffic(gateway.url, model);
    const { trainModel, ...control } = createActivities({
      client: env.client,
      gateway: gateway.access,
      artifactsDir,
      python: trainerPython(),
      root: ROOT,
      quotaPools: POOLS,
      policy: new PolicySource(OPEN_POLICY, undefined, ROOT),
      workerSecret: WORKER_SECRET,
      analysisPollIntervalMs: 250,
      alertSink: (a) => {
        if (a.kind === 'quota-lease-expired') expiredAlerts.push(a.summary);
      },
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
      s.rollout.analysis.interval = HOUR;
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

  it('samples a long bake at its interval in child workflows, keeping every history small, and aborts within one', async () => {
    const lifecycles = new LifecycleClient(env.client);
    // Three hours sampled every minute: 179 samples, more than a bake takes in the lifecycle itself.
    const longCanary = (s: ReturnType<typeof testSpec>) => {
      s.rollout.canary.bake = 3 * HOUR;
      s.rollout.analysis.interval = MINUTE;
      s.rollout.steps = [{ percent: 100, bake: MINUTE, approval: false }];
      s.approval.timeout = 48 * HOUR;
    };
    const id = lifecycleWorkflowId(model, 'v3');
    await lifecycles.start(testSpec(model, 'v3', 'good', longCanary));
    await waitForStatus(lifecycles, id, (s) => s.pendingGate !== null);
    await lifecycles.approve(id, { by: 'bob' });
    const end = await lifecycles.waitForEnd(id);
    expect(end.stage).toBe('promoted');

    const events = async (workflowId: string) =>
      (await env.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
    const parent = await events(id);
    const segments = parent
      .map((e) => e.childWorkflowExecutionStartedEventAttributes)
      .filter((a) => a?.workflowType?.name === 'bakeSegmentWorkflow')
      .map((a) => a!.workflowExecution!.workflowId!);
    // 60 samples a segment: three segments for the canary's 179.
    expect(segments).toHaveLength(3);
    let samples = 0;
    for (const segment of segments) {
      const history = await events(segment);
      const analyses = history.filter(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'analyzeStage',
      );
      expect(analyses.length).toBeLessThanOrEqual(60);
      expect(history.length).toBeLessThan(60 * 14);
      samples += analyses.length;
    }
    expect(samples).toBe(179);
    await recordHistory(env.client, id, 'lifecycle-bake-segments');
    await recordHistory(env.client, segments[1]!, 'bake-segment');
    // The lifecycle's own history holds the segments, not the samples.
    const ownAnalyses = parent.filter(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'analyzeStage',
    );
    expect(ownAnalyses.length).toBeLessThan(10);
    expect(parent.length).toBeLessThan(400);
    // The measurements of the last samples are kept, as for a bake sampled in the lifecycle.
    const outage = end.measurements?.['outage'];
    expect(outage?.passed.length).toBe(10);
    expect(Math.max(...outage!.passed.map((d) => d.sample ?? 0))).toBeGreaterThan(170);

    // An abort during a segment cancels it, and the rollout stops at once.
    const abortedId = lifecycleWorkflowId(model, 'v4');
    await lifecycles.start(testSpec(model, 'v4', 'good', longCanary));
    await waitForStatus(lifecycles, abortedId, (s) => s.pendingGate !== null);
    await lifecycles.approve(abortedId, { by: 'bob' });
    await waitForStatus(lifecycles, abortedId, (s) => s.stage === 'canary');
    await lifecycles.abort(abortedId, { by: 'bob', reason: 'enough' });
    const aborted = await lifecycles.waitForEnd(abortedId);
    expect(aborted.stage).toBe('rolled-back');
    const started = (await events(abortedId))
      .map((e) => e.childWorkflowExecutionStartedEventAttributes)
      .filter((a) => a?.workflowType?.name === 'bakeSegmentWorkflow');
    expect(started).toHaveLength(1);
    const segment = env.client.workflow.getHandle(started[0]!.workflowExecution!.workflowId!);
    expect((await segment.describe()).status.name).toBe('CANCELLED');
    await recordHistory(env.client, abortedId, 'lifecycle-bake-segments-aborted');
  });

  it('reclaims the quota of a holder that died within its lease TTL, and keeps a renewed lease', async () => {
    const alerts: string[] = [];
    const quota = new QuotaClient(env.client, POOLS);
    const dead = await quota.reserve('ttl', {
      leaseId: 'dead',
      holder: 'crashed-job',
      kind: 'data',
      resources: { cpu: 6 },
    });
    const alive = await quota.reserve('ttl', {
      leaseId: 'alive',
      holder: 'live-job',
      kind: 'data',
      resources: { cpu: 2 },
    });
    expect(dead.granted && alive.granted).toBe(true);
    // The dead holder never renews; the live one renews every 4 minutes, well within the 10-minute TTL.
    for (let minute = 4; minute <= 12; minute += 4) {
      await env.sleep(4 * MINUTE);
      expect(await quota.renew('ttl', { leaseId: 'alive' })).not.toBeNull();
    }
    const state = (await quota.state('ttl'))!;
    expect(state.leases.map((l) => l.leaseId)).toEqual(['alive']);
    expect(state.stats.expirations).toBe(1);
    const run = state.runs.find((r) => r.leaseId === 'dead')!;
    expect(run.ended).toBe('expired');
    // Reclaimed at its TTL: 10 minutes after the grant, not at the next look.
    expect(Date.parse(run.endedAt) - Date.parse(run.grantedAt)).toBeLessThanOrEqual(10 * MINUTE + 1000);
    // The freed quota is grantable again, and the expiry was alerted once by the pool's monitor.
    const again = await quota.reserve('ttl', {
      leaseId: 'next',
      holder: 'next-job',
      kind: 'data',
      resources: { cpu: 6 },
    });
    expect(again.granted).toBe(true);
    await env.sleep(MINUTE);
    const monitorSent = (await quota.monitor('ttl'))!.delivered;
    expect(monitorSent).toBeGreaterThanOrEqual(1);
    alerts.push(...expiredAlerts.filter((a) => a.includes('dead')));
    expect(alerts).toHaveLength(1);
  });
});
