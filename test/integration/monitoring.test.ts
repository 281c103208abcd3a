import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { temporal } from '@temporalio/proto';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
import { LoadGenerator } from '../../src/dev/load-generator';
import type { AlertRecord, AlertRouterState, Observation } from '../../src/shared/alerts';
import type { FaultSettings } from '../../src/shared/gateway-api';
import {
  ALERT_ROUTER_WORKFLOW_ID,
  alertRouterQuery,
  observeSignal,
  raiseAlertSignal,
  silenceModelUpdate,
  overrideActionUpdate,
  servingMonitorQuery,
  servingMonitorWorkflowId,
} from '../../src/shared/monitoring';
import { lifecycleWorkflowId, type LifecycleSpec } from '../../src/shared/spec';
import { LIFECYCLE_TASK_QUEUE } from '../../src/shared/task-queues';
import { QuotaClient } from '../../src/client/quota-client';
import { QuotaPoolsFile } from '../../src/shared/quota';
import {
  approveAll,
  EXAMPLE,
  liveTraffic,
  startStack,
  testSpec,
  uniqueName,
  observe,
  recordHistory,
  waitForStatus,
  type Stack,
} from '../helpers/harness';
import { tempDir } from '../helpers/temp';

const WATCH_POOL = { name: 'train-watch', capacity: { cpu: 64, memoryGiB: 256 } };
/** The harness's default pool, where the test lifecycles' serving quota is held. */
const DEFAULT_POOL = { name: 'default', capacity: { cpu: 64, memoryGiB: 256 } };

/** The test set's customers who churn, as a CSV file: a population unlike the one the model was trained on. */
function churnersCsv(): string {
  const rows = readFileSync(join(EXAMPLE, 'data', 'test.csv'), 'utf8')
    .trim()
    .split('\n');
  const churners = [rows[0], ...rows.slice(1).filter((r) => r.endsWith(',1'))].join('\n');
  const file = join(tempDir('mll-drift-'), 'churners.csv');
  writeFileSync(file, `${churners}\n`);
  return file;
}

interface Received {
  path: string;
  body: Record<string, unknown>;
  /** When the receiver took it (epoch ms). */
  at: number;
}

/**
 * The serving monitor and the alert router on the real stack: conditions injected on the gateway (a latency fault,
 * drifted traffic) fire once per incident after M of N checks, resolve when they clear, are routed to their owner's
 * sink, and act (a rollback) per the model's policy; flapping below the rule stays quiet.
 */
describe('serving monitor and alert router', () => {
  let stack: Stack;
  let receiver: FastifyInstance;
  let receiverUrl: string;
  const received: Received[] = [];
  /** Stage events as the events hook took them (answered 200), by idempotency key. */
  const stageEvents: { key: string; body: Record<string, unknown> }[] = [];
  const refusedEventKeys = new Set<string>();
  let flakyRefusals = 0;
  const loads: LoadGenerator[] = [];
  const monitored: string[] = [];

  beforeAll(async () => {
    receiver = Fastify();
    receiver.post('/*', async (req, reply) => {
      // The flaky receiver is down for its first two requests.
      if (req.url === '/flaky' && flakyRefusals < 2) {
        flakyRefusals++;
        return reply.code(503).send('maintenance');
      }
      if (req.url === '/events') {
        // A CI system's hook: it fails the first delivery of every second event (the router retries it), and drops
        // a delivery whose key it has already taken, as a receiver must.
        const key = String(req.headers['idempotency-key']);
        const body = req.body as { details?: { sequence?: number } };
        if ((body.details?.sequence ?? 0) % 2 === 1 && !refusedEventKeys.has(key)) {
          refusedEventKeys.add(key);
          return reply.code(500).send('busy');
        }
        if (!stageEvents.some((e) => e.key === key))
          stageEvents.push({ key, body: req.body as Record<string, unknown> });
        return { ok: true };
      }
      received.push({ path: req.url, body: req.body as Record<string, unknown>, at: Date.now() });
      return { ok: true };
    });
    receiverUrl = await receiver.listen({ port: 0, host: '127.0.0.1' });
    stack = await startStack({
      pools: [WATCH_POOL],
      alertSinks: [
        { name: 'team-hook', kind: 'webhook', url: `${receiverUrl}/team`, minSeverity: 'info', timeoutMs: 5000 },
        { name: 'ops-hook', kind: 'webhook', url: `${receiverUrl}/ops`, minSeverity: 'info', timeoutMs: 5000 },
        { name: 'grp-slack', kind: 'slack', url: `${receiverUrl}/slack`, minSeverity: 'info', timeoutMs: 5000 },
        { name: 'flaky-hook', kind: 'webhook', url: `${receiverUrl}/flaky`, minSeverity: 'info', timeoutMs: 5000 },
        { name: 'alice-hook', kind: 'webhook', url: `${receiverUrl}/alice`, minSeverity: 'info', timeoutMs: 5000 },
        { name: 'events-hook', kind: 'webhook', url: `${receiverUrl}/events`, minSeverity: 'info', timeoutMs: 5000 },
      ],
      alertRoutes: [
        // CI subscribes to every lifecycle's stage changes (no other route takes them).
        { match: { kinds: ['stage-changed'] }, sinks: ['events-hook'], continue: false },
        // Gates that wait for alice reach her own hook, whatever the model.
        { match: { kinds: ['approval-requested'], audience: ['Alice'] }, sinks: ['alice-hook'], continue: false },
        {
          match: { model: 'mon-*', kinds: ['serving-latency', 'prediction-drift'] },
          owner: 'team-serving',
          sinks: ['team-hook'],
          continue: false,
        },
        { match: { model: 'grp-*' }, owner: 'team-grp', sinks: ['grp-slack', 'flaky-hook'], continue: false },
        // Everything else: the two team hooks (an alert no route matches would go to every sink).
        { match: {}, sinks: ['team-hook', 'ops-hook'], continue: false },
      ],
    });
  });
  afterAll(async () => {
    await Promise.all(loads.map((l) => l.stop()));
    for (const model of monitored)
      await stack.client.workflow
        .getHandle(servingMonitorWorkflowId(model))
        .terminate('test over')
        .catch(() => undefined);
    await stack?.close();
    await receiver?.close();
  });

  const router = () => stack.client.workflow.getHandle(ALERT_ROUTER_WORKFLOW_ID);
  const routerState = (model?: string): Promise<AlertRouterState> =>
    router().query(alertRouterQuery, { ...(model ? { model } : {}), limit: 1000 });
  /** The router's records of the model's alerts; without a kind, those of its serving monitor and rollouts, not the
   * approval requests every gate of its lifecycles sends. */
  const events = async (model: string, event: AlertRecord['event'], kind?: string) =>
    (await routerState(model)).history.filter(
      (h) =>
        h.event === event &&
        (kind === undefined ? h.kind !== 'approval-requested' && h.kind !== 'stage-changed' : h.kind === kind),
    );
  const inject = async (model: string, version: string, faults: FaultSettings | null) => {
    const res = await stack.gateway.admin(`/admin/models/${model}/versions/${version}/faults`, {
      method: faults ? 'PUT' : 'DELETE',
      headers: faults ? { 'content-type': 'application/json' } : {},
      ...(faults ? { body: JSON.stringify(faults) } : {}),
    });
    expect(res.status, await res.clone().text()).toBe(200);
  };
  const monitoredSpec = (model: string, version: string, patch: (s: LifecycleSpec) => void = () => undefined) =>
    testSpec(model, version, 'good', (s) => {
      s.monitoring.enabled = true;
      s.monitoring.interval = 1000;
      s.monitoring.minSamples = 20;
      s.monitoring.latencyP99Ms.max = 100;
      // Live traffic is the test set itself: no skew or drift unless a test sends other rows.
      patch(s);
    });
  const promote = async (spec: LifecycleSpec) => {
    const { id } = await stack.lifecycles.start(spec);
    expect((await approveAll(stack.lifecycles, id)).stage).toBe('promoted');
    monitored.push(spec.model);
    return id;
  };
  const monitorChecks = async (model: string) =>
    (await stack.client.workflow.getHandle(servingMonitorWorkflowId(model)).query(servingMonitorQuery)).checks;

  it('fires each condition once per incident after 3 of 5 bad checks, routes it, and resolves it once', async () => {
    const labelled = (model: string, rowsCsv: string) => {
      const generator = new LoadGenerator({
        gatewayUrl: stack.gateway.url,
        model,
        rowsCsv,
        labelColumn: 'churned',
        dropColumns: ['customer_id'],
        ratePerSecond: 40,
        // Ground truth arrives a little after each prediction, as a labelling pipeline would send it.
        labelDelayMs: 200,
        labelsToken: stack.gateway.labelsToken,
      });
      generator.start();
      loads.push(generator);
      return generator;
    };
    const testCsv = join(EXAMPLE, 'data', 'test.csv');
    const quota = new QuotaClient(stack.client, QuotaPoolsFile.parse({ pools: [DEFAULT_POOL] }));
    interface Condition {
      kinds: string[];
      inject: () => Promise<void>;
      clear: () => Promise<void>;
    }
    /**
     * Three models, each promoted with its serving monitor under traffic of its own, take two conditions each, one
     * after the other; the models go side by side (a condition of one model does not touch another's checks).
     */
    const groups: ((model: string, traffic: { load: LoadGenerator }) => Condition[])[] = [
      (model) => [
        {
          kinds: ['serving-latency'],
          inject: () => inject(model, 'v1', { delayMs: 250 }),
          clear: () => inject(model, 'v1', null),
        },
        {
          kinds: ['serving-outage'],
          inject: () => inject(model, 'v1', { down: true }),
          clear: () => inject(model, 'v1', null),
        },
      ],
      (_, traffic) => [
        {
          kinds: ['input-quality'],
          inject: async () => traffic.load.setCorruptShare(0.3),
          clear: async () => traffic.load.setCorruptShare(0),
        },
        {
          kinds: ['model-quality'],
          inject: async () => traffic.load.setLabelFlipShare(0.9),
          clear: async () => traffic.load.setLabelFlipShare(0),
        },
      ],
      (model, traffic) => [
        {
          // Another population arrives (only customers who churn): its features skew from the training profile and
          // the model's predictions drift from those it gave the test set at validation.
          kinds: ['serving-skew', 'prediction-drift'],
          inject: async () => {
            await traffic.load.stop();
            traffic.load = labelled(model, churnersCsv());
          },
          clear: async () => {
            await traffic.load.stop();
            traffic.load = labelled(model, testCsv);
          },
        },
        {
          // The serving pool fills up (another pipeline takes most of it).
          kinds: ['serving-quota'],
          inject: async () => {
            const cpu = (await quota.state(DEFAULT_POOL.name))!.resources.find((r) => r.resource === 'cpu')!;
            const take = Math.ceil((0.95 * cpu.capacity - cpu.used) * 2) / 2;
            const grant = await quota.reserve(DEFAULT_POOL.name, {
              leaseId: `hog-${model}`,
              holder: `hog-${model}`,
              kind: 'data',
              resources: { cpu: take },
            });
            expect(grant.granted, JSON.stringify(grant)).toBe(true);
          },
          clear: async () => {
            await quota.release(DEFAULT_POOL.name, { leaseId: `hog-${model}` });
          },
        },
      ],
    ];
    const models = groups.map(() => uniqueName('mon-conditions'));
    const takeConditions = async (model: string, conditions: Condition[]) => {
      for (const c of conditions) {
        const count = async (event: AlertRecord['event']) =>
          Object.fromEntries(await Promise.all(c.kinds.map(async (k) => [k, (await events(model, event, k)).length])));
        const alerted = (resolved: boolean) =>
          Object.fromEntries(
            c.kinds.map((k) => [
              k,
              stack.alerts.filter((a) => a.model === model && a.kind === k && Boolean(a.resolved) === resolved).length,
            ]),
          );
        const plusOne = (before: Record<string, number>) =>
          Object.fromEntries(Object.entries(before).map(([k, n]) => [k, n + 1]));
        const firedBefore = await count('fired');
        const resolvedBefore = await count('resolved');
        const [alertedBefore, resolvesBefore] = [alerted(false), alerted(true)];
        const injectedAt = Date.now();
        await c.inject();
        await expect.poll(() => count('fired'), { timeout: 30_000, interval: 250 }).toEqual(plusOne(firedBefore));
        const firedMs = Date.now() - injectedAt;
        // The condition stays bad for several more checks: still one incident, one notification.
        const checksAtFire = await monitorChecks(model);
        await expect.poll(() => monitorChecks(model), { timeout: 30_000 }).toBeGreaterThanOrEqual(checksAtFire + 3);
        expect(await count('fired')).toEqual(plusOne(firedBefore));
        for (const k of c.kinds)
          expect((await events(model, 'fired', k)).at(-1)!.incident).toBe(
            `serving:${model}:${k}#${firedBefore[k]! + 1}`,
          );
        await expect.poll(() => alerted(false)).toEqual(plusOne(alertedBefore));
        const these = stack.alerts.filter((a) => a.model === model && c.kinds.includes(a.kind));
        expect(these.every((a) => a.version === 'v1')).toBe(true);

        const clearedAt = Date.now();
        await c.clear();
        await expect.poll(() => count('resolved'), { timeout: 30_000, interval: 250 }).toEqual(plusOne(resolvedBefore));
        const resolvedMs = Date.now() - clearedAt;
        await expect.poll(() => alerted(true)).toEqual(plusOne(resolvesBefore));
        console.log(
          `${c.kinds.join(' + ')}: injected → fired in ${firedMs} ms; cleared → resolved in ${resolvedMs} ms (1 s checks, 3 of 5)`,
        );
      }
    };
    await Promise.all(
      groups.map(async (group, g) => {
        const model = models[g]!;
        const traffic = { load: labelled(model, testCsv) };
        await promote(
          monitoredSpec(model, 'v1', (s) => {
            s.monitoring.quality = { minAccuracy: 0.6, minLabels: 20, severity: 'warning' };
          }),
        );
        await expect.poll(() => monitorChecks(model), { timeout: 30_000 }).toBeGreaterThanOrEqual(3);
        expect(await events(model, 'fired')).toEqual([]);
        await takeConditions(model, group(model, traffic));
      }),
    );
    const model = models[0]!;
    // Latency was routed to its owner's sink (firing and resolve); outage took the catch-all route to both hooks.
    const latency = stack.alerts.find((a) => a.model === model && a.kind === 'serving-latency' && !a.resolved);
    expect(latency).toMatchObject({ severity: 'warning', owner: 'team-serving' });
    expect(latency!.summary).toMatch(/p99 latency ms [\d.]+ \(p99 latency <= 100 ms/);
    await expect
      .poll(() =>
        received
          .filter((r) => r.body.model === model && ['serving-latency', 'serving-outage'].includes(String(r.body.kind)))
          .map((r) => `${r.path} ${String(r.body.kind)} ${String(r.body.status)}`)
          .sort(),
      )
      .toEqual([
        '/ops serving-outage firing',
        '/ops serving-outage resolved',
        '/team serving-latency firing',
        '/team serving-latency resolved',
        '/team serving-outage firing',
        '/team serving-outage resolved',
      ]);
    expect(received.find((r) => r.body.kind === 'serving-latency' && r.body.model === model)?.body.owner).toBe(
      'team-serving',
    );
  });

  it('does not fire for a signal flapping below the M-of-N rule, and fires when it crosses it', async () => {
    const model = uniqueName('mon-flap');
    const check = async (key: string, firing: boolean) => {
      const obs: Observation = {
        key,
        kind: 'input-quality',
        severity: 'warning',
        firing,
        summary: `${model}: corrupt share ${firing ? 0.2 : 0.01}`,
        model,
        version: 'v1',
        hysteresis: { fireAfter: 3, window: 5, resolveAfter: 2 },
        silencedByRollout: false,
        at: new Date().toISOString(),
      };
      await observe(stack.client, [obs]);
    };
    const flapping = `serving:${model}:input-quality`;
    const before = (await routerState()).observations;
    for (const bad of [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0]) await check(flapping, bad === 1);
    // Every check taken by the router (other tests' monitors may report too: at least these 11).
    await expect
      .poll(async () => (await routerState()).observations, { timeout: 10_000 })
      .toBeGreaterThanOrEqual(before + 11);
    expect(await events(model, 'fired')).toEqual([]);
    expect(stack.alerts.filter((a) => a.model === model)).toEqual([]);
    // Three bad of the last five: the same stream now fires.
    for (const bad of [1, 1]) await check(flapping, bad === 1);
    await expect.poll(() => events(model, 'fired'), { timeout: 10_000 }).toHaveLength(1);
    await expect.poll(() => stack.alerts.filter((a) => a.model === model).length).toBe(1);
  });

  it('rolls the model back when prediction drift fires and its policy says rollback', async () => {
    const model = uniqueName('mon-drift');
    const load = liveTraffic(stack.gateway.url, model, 40);
    loads.push(load);
    const policy = (s: LifecycleSpec) => {
      s.monitoring.minSamples = 40;
      s.monitoring.latencyP99Ms.max = 5000;
      s.monitoring.actions = { 'prediction-drift': 'rollback' };
      s.monitoring.actionDelay = 0;
    };
    await promote(monitoredSpec(model, 'v1', policy));
    // The monitor's first checks (its start by a promotion's signal, two checks) replay in test/integration/replay.
    await expect.poll(() => monitorChecks(model), { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
    await recordHistory(stack.client, servingMonitorWorkflowId(model), 'serving-monitor-running');
    await promote(monitoredSpec(model, 'v2', policy));
    expect((await stack.lifecycles.history(model)).production?.version).toBe('v2');
    await expect.poll(() => monitorChecks(model), { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
    expect(await events(model, 'fired', 'prediction-drift')).toEqual([]);

    // The population changes: only customers who churn arrive (the model's predictions move up).
    await load.stop();
    const drifted = new LoadGenerator({
      gatewayUrl: stack.gateway.url,
      model,
      rowsCsv: churnersCsv(),
      labelColumn: 'churned',
      dropColumns: ['customer_id'],
      ratePerSecond: 40,
    });
    drifted.start();
    loads.push(drifted);

    await expect
      .poll(async () => (await stack.lifecycles.history(model)).production?.version, { timeout: 60_000, interval: 500 })
      .toBe('v1');
    const history = await stack.lifecycles.history(model);
    expect(history.production).toMatchObject({ version: 'v1', kind: 'rollback', by: 'monitor' });
    expect(history.production?.reason).toMatch(
      new RegExp(`^serving:${model}:prediction-drift#1: ${model} v2: prediction drift PSI`),
    );
    const fired = await events(model, 'fired', 'prediction-drift');
    expect(fired).toHaveLength(1);
    await expect.poll(() => events(model, 'action-taken')).toHaveLength(1);
    expect((await events(model, 'action-taken'))[0]!.summary).toMatch(/^rolled .* back from v2 to v1/);
    await expect.poll(() => stack.alerts.some((a) => a.model === model && a.kind === 'monitor-action')).toBe(true);
    await recordHistory(stack.client, lifecycleWorkflowId(model, 'v2'), 'lifecycle-monitored-promoted');
  });

  it('lets a human override a pending action, and refuses an override of nothing', async () => {
    const model = uniqueName('mon-override');
    const key = `serving:${model}:prediction-drift`;
    for (let i = 0; i < 3; i++) {
      await observe(stack.client, [
        {
          key,
          kind: 'prediction-drift',
          severity: 'warning',
          firing: true,
          summary: `${model} v1: prediction drift PSI 0.9`,
          model,
          version: 'v1',
          action: 'rollback',
          actionDelayMs: 600_000,
          silencedByRollout: false,
          at: new Date().toISOString(),
        } satisfies Observation,
      ]);
    }
    await expect
      .poll(async () => (await routerState(model)).open.map((o) => [o.incident, o.action?.kind]), { timeout: 10_000 })
      .toEqual([[`${key}#1`, 'rollback']]);
    const refused = await router()
      .executeUpdate(overrideActionUpdate, {
        args: [{ incident: 'serving:nobody:prediction-drift#1', action: 'notify', by: 'olivia' }],
      })
      .then(
        () => null,
        (err: Error) => err,
      );
    expect(String((refused?.cause as Error | undefined)?.message ?? refused)).toMatch(
      /no open incident "serving:nobody:prediction-drift#1"/,
    );
    const ack = await router().executeUpdate(overrideActionUpdate, {
      args: [{ incident: `${key}#1`, action: 'notify', by: 'olivia', reason: 'known campaign traffic' }],
    });
    expect(ack).toMatchObject({ was: 'rollback', now: 'notify' });
    const state = await routerState(model);
    expect(state.open[0]?.action).toBeUndefined();
    expect(state.history.find((h) => h.event === 'action-overridden')).toMatchObject({ by: 'olivia' });
  });

  it('flags a training run slower than the p95 of similar past runs, while it runs', async () => {
    const model = uniqueName('mon-train');
    // The pool's history: three earlier training runs of this family on this dataset, 50 ms each.
    const quota = new QuotaClient(stack.client, QuotaPoolsFile.parse({ pools: [WATCH_POOL] }));
    const rows =
      readFileSync(join(EXAMPLE, 'data', 'train.csv'), 'utf8')
        .trim()
        .split('\n').length - 1;
    for (let i = 0; i < 3; i++) {
      const leaseId = `history-${model}-${i}`;
      const grant = await quota.reserve(WATCH_POOL.name, {
        leaseId,
        holder: `history-${model}`,
        kind: 'training',
        resources: { cpu: 1 },
        profile: { model, family: 'tree-ensemble', datasetRows: rows },
      });
      expect(grant.granted, JSON.stringify(grant)).toBe(true);
      await quota.release(WATCH_POOL.name, { leaseId, usage: { durationMs: 50 } });
    }
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v1', 'good', (s) => {
        s.quota.pool = WATCH_POOL.name;
        // No margin over the 50 ms p95, so the 1 s minimum is the limit and this run outlasts it.
        s.training.slowAlert = { marginOverP95: 0, minExcess: 0 };
      }),
    );
    const trained = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    expect(trained.events.map((e) => e.message)).toContainEqual(
      expect.stringMatching(
        /^training counts as slow after 1000 ms \(the p95 of 3 similar runs, \d+ ms, plus the larger of 0 % \(0 ms\) and the minimum excess of 0 ms; never sooner than 1000 ms\)$/,
      ),
    );
    await expect.poll(() => stack.alerts.find((a) => a.kind === 'training-slow' && a.lifecycleId === id)).toBeDefined();
    const slow = stack.alerts.find((a) => a.kind === 'training-slow' && a.lifecycleId === id)!;
    expect(slow.summary).toMatch(
      /still running after 1000 ms, against a p95 of \d+ ms over 3 similar runs \(family tree-ensemble, \d+ rows\)/,
    );
    expect(stack.alerts.filter((a) => a.kind === 'training-slow' && a.lifecycleId === id)).toHaveLength(1);
    await stack.lifecycles.abort(id, { by: 'olivia', reason: 'test over' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rejected');
    await recordHistory(stack.client, id, 'lifecycle-training-watch');
  });

  it("keeps a model's monitor alerts quiet while its own rollout is acting on it", async () => {
    const model = uniqueName('mon-quiet');
    loads.push(liveTraffic(stack.gateway.url, model, 40));
    await promote(monitoredSpec(model, 'v1'));
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v2', 'good', (s) => {
        s.rollout.canary.bake = 20_000;
      }),
    );
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    await stack.lifecycles.approve(id, { by: 'alice' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary', 60_000);
    // Production (v1) gets slow while v2's canary runs: the rollout is acting on the model, so the monitor's incident
    // is recorded as suppressed and nobody is paged for it.
    await inject(model, 'v1', { delayMs: 250 });
    await expect
      .poll(() => events(model, 'suppressed', 'serving-latency'), { timeout: 30_000, interval: 250 })
      .toHaveLength(1);
    const suppressed = (await events(model, 'suppressed', 'serving-latency'))[0]!;
    expect(suppressed.summary).toMatch(new RegExp(`rollout ${id} is acting on ${model} \\(canary\\)`));
    await inject(model, 'v1', null);
    expect(await events(model, 'fired', 'serving-latency')).toEqual([]);
    expect(stack.alerts.filter((a) => a.model === model && a.kind === 'serving-latency')).toEqual([]);
    await stack.lifecycles.abort(id, { by: 'olivia', reason: 'test over' });
  });

  it("holds a model's rollouts and starts a retraining when its policy says so", async () => {
    const model = uniqueName('mon-act');
    const load = liveTraffic(stack.gateway.url, model, 40);
    loads.push(load);
    await promote(
      monitoredSpec(model, 'v1', (s) => {
        s.monitoring.actions = { 'serving-latency': 'hold', 'input-quality': 'retrain' };
        s.monitoring.actionDelay = 0;
      }),
    );
    // A new version is training (not yet moving traffic): a hold pauses it at its next stage boundary.
    const { id } = await stack.lifecycles.start(testSpec(model, 'v2'));
    await inject(model, 'v1', { delayMs: 250 });
    await expect.poll(() => events(model, 'action-taken'), { timeout: 30_000, interval: 250 }).toHaveLength(1);
    expect((await events(model, 'action-taken'))[0]!.summary).toBe(`held the rollouts of ${model}: ${id}`);
    await expect.poll(async () => (await stack.lifecycles.status(id)).paused, { timeout: 60_000 }).toBe(true);
    await inject(model, 'v1', null);

    load.setCorruptShare(0.3);
    const retrainId = `lifecycle-${model}-v1-retrain-1`;
    await expect.poll(() => events(model, 'action-taken'), { timeout: 30_000, interval: 250 }).toHaveLength(2);
    expect((await events(model, 'action-taken'))[1]!.summary).toBe(
      `started retraining ${model} as v1-retrain-1 (${retrainId})`,
    );
    const retraining = await stack.lifecycles.status(retrainId);
    expect(retraining).toMatchObject({ model, version: 'v1-retrain-1', submittedBy: 'monitor' });
    load.setCorruptShare(0);
    await expect
      .poll(() => stack.alerts.filter((a) => a.model === model && a.kind === 'monitor-action').length)
      .toBe(2);
    for (const lifecycle of [id, retrainId])
      await stack.lifecycles.abort(lifecycle, { by: 'olivia', reason: 'test over' });
  });

  it('asks the approvers the moment a gate opens: approval-requested reaches their route within 2 s', async () => {
    const model = uniqueName('appr');
    const { id } = await stack.lifecycles.start(testSpec(model, 'v1'));
    const open = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    const asked = () =>
      received.find((r) => r.path === '/alice' && r.body.kind === 'approval-requested' && r.body.lifecycleId === id);
    await expect.poll(() => asked() !== undefined, { timeout: 10_000, interval: 50 }).toBe(true);
    const ms = asked()!.at - Date.parse(open.pendingGate!.openedAt);
    console.log(`approval-requested: gate opened → delivered to the approver's hook in ${ms} ms`);
    expect(ms).toBeLessThanOrEqual(2000);
    expect(asked()!.body).toMatchObject({
      severity: 'info',
      model,
      audience: open.pendingGate!.approvers,
      details: { gate: 'deploy', approvers: open.pendingGate!.approvers },
    });
    expect(asked()!.body.summary).toMatch(/^gate "deploy" of appr-\S+ v1 waits for one of alice, bob until /);
    // Addressed to its approvers only: no other route took it.
    expect(received.filter((r) => r.body.kind === 'approval-requested' && r.body.lifecycleId === id)).toHaveLength(1);
    await stack.lifecycles.reject(id, { by: 'alice', gate: 'deploy', reason: 'test over' });

    // Every stage change reached the subscribed hook once per idempotency key, in order, retried where it failed;
    // no other sink took any.
    const stagesOf = () =>
      stageEvents
        .filter((e) => e.body.lifecycleId === id)
        .sort(
          (a, b) =>
            Number((a.body.details as { sequence: number }).sequence) -
            Number((b.body.details as { sequence: number }).sequence),
        )
        .map((e) => (e.body.details as { stage: string }).stage);
    await expect
      .poll(stagesOf, { timeout: 15_000 })
      .toEqual(['provisioning', 'training', 'validating', 'awaiting-approval', 'rejected']);
    const mine = stageEvents.filter((e) => e.body.lifecycleId === id);
    expect(new Set(mine.map((e) => e.key)).size).toBe(5);
    expect([...refusedEventKeys].filter((k) => mine.some((e) => e.key === k)).length).toBe(3);
    expect(mine.every((e) => e.body.kind === 'stage-changed' && e.body.severity === 'info')).toBe(true);
    expect(received.some((r) => r.body.kind === 'stage-changed')).toBe(false);
    // The rollouts of this file announced their promotions too.
    expect(stageEvents.some((e) => (e.body.details as { stage: string }).stage === 'promoted')).toBe(true);
  });

  it("groups a model's alerts into one Slack message, and retries a failing receiver without repeating the others", async () => {
    const model = uniqueName('grp');
    const at = new Date().toISOString();
    const bad = (kind: 'serving-skew' | 'input-quality'): Observation => ({
      key: `serving:${model}:${kind}`,
      kind,
      severity: 'warning',
      firing: true,
      summary: `${model} v1: ${kind} over its limit`,
      model,
      version: 'v1',
      hysteresis: { fireAfter: 1, window: 1, resolveAfter: 1 },
      silencedByRollout: false,
      at,
    });
    await observe(stack.client, [bad('serving-skew'), bad('input-quality')]);
    const mine = (path: string) => received.filter((r) => r.path === path && JSON.stringify(r.body).includes(model));
    await expect.poll(() => mine('/slack').length).toBe(1);
    const slack = mine('/slack')[0]!.body as { blocks: { text: { text: string } }[] };
    expect(slack.blocks[0]!.text.text).toBe(`2 alerts for ${model} (2 firing, 0 resolved)`);
    // The webhook receiver refused twice (503); the delivery was retried until it took both alerts, one POST each.
    await expect
      .poll(() => mine('/flaky').map((r) => r.body.kind), { timeout: 30_000 })
      .toEqual(expect.arrayContaining(['serving-skew', 'input-quality']));
    expect(flakyRefusals).toBe(2);
    expect(mine('/flaky').every((r) => r.body.owner === 'team-grp')).toBe(true);
    // Slack was not posted again by the webhook's retries.
    expect(mine('/slack')).toHaveLength(1);
    // The router records a delivery once the sink's activity has returned, a moment after the receiver has the POST.
    const delivered = async () =>
      (await events(model, 'delivered')).map((d) => `${d.kind} ${d.sinks?.join(',')}`).sort();
    await expect
      .poll(delivered)
      .toEqual([
        'input-quality flaky-hook',
        'input-quality grp-slack',
        'serving-skew flaky-hook',
        'serving-skew grp-slack',
      ]);
  });

  it('records a compact router history for the replay test (fire, deliver, resolve, raise, silence, override)', async () => {
    if (process.env.RECORD_HISTORIES !== '1') return;
    const model = uniqueName('fixture');
    const router = await stack.client.workflow.start('alertRouterWorkflow', {
      workflowId: `fixture-router-${model}`,
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ groupWaitMs: 200 }],
    });
    const check = (kind: 'serving-latency' | 'prediction-drift', firing: boolean): Observation => ({
      key: `serving:${model}:${kind}`,
      kind,
      severity: 'warning',
      firing,
      summary: `${model} v1: ${kind} ${firing ? 'bad' : 'fine'}`,
      model,
      version: 'v1',
      hysteresis: { fireAfter: 2, window: 3, resolveAfter: 2 },
      silencedByRollout: true,
      ...(kind === 'prediction-drift' ? { action: 'rollback' as const, actionDelayMs: 600_000 } : {}),
      at: new Date().toISOString(),
    });
    const state = () => router.query(alertRouterQuery, { limit: 1000 });
    for (const firing of [true, true])
      await router.signal(observeSignal, [check('serving-latency', firing), check('prediction-drift', firing)]);
    await expect.poll(async () => (await state()).deliveries.done).toBe(1);
    await router.executeUpdate(overrideActionUpdate, {
      args: [{ incident: `serving:${model}:prediction-drift#1`, action: 'notify', by: 'olivia' }],
    });
    await router.executeUpdate(silenceModelUpdate, {
      args: [{ model, forMs: 60_000, by: 'olivia', reason: 'fixture' }],
    });
    await router.signal(raiseAlertSignal, {
      kind: 'rollback',
      severity: 'warning',
      model,
      version: 'v1',
      summary: `${model} v1 rolled back`,
      dedupKey: `${model}:rollback:1`,
    });
    for (const firing of [false, false])
      await router.signal(observeSignal, [check('serving-latency', firing), check('prediction-drift', firing)]);
    await expect.poll(async () => (await state()).open).toEqual([]);
    await expect.poll(async () => (await state()).deliveries.done).toBe(2);
    await recordHistory(stack.client, router.workflowId, 'alert-router');
    await router.terminate('fixture recorded');
  });

  it('continues as new when a run reaches its bound of events, carrying its incidents and history', async () => {
    const model = uniqueName('router-runs');
    const router = await stack.client.workflow.start('alertRouterWorkflow', {
      workflowId: `router-runs-${model}`,
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ groupWaitMs: 100, runEvents: 100 }],
    });
    const firstRun = router.firstExecutionRunId;
    try {
      const check = (i: number): Observation => ({
        key: `serving:${model}-${i}:serving-latency`,
        kind: 'serving-latency',
        severity: 'warning',
        firing: true,
        summary: `${model}-${i} v1: slow`,
        model: `${model}-${i}`,
        version: 'v1',
        hysteresis: { fireAfter: 1, window: 1, resolveAfter: 1 },
        silencedByRollout: false,
        at: new Date().toISOString(),
      });
      // One signal a workflow task (each taken before the next is sent): about four events each, past 100 events
      // within 40 of them.
      for (let i = 0; i < 40; i++) {
        await router.signal(observeSignal, [check(i)]);
        await expect
          .poll(async () => (await router.query(alertRouterQuery, { limit: 1 })).observations)
          .toBeGreaterThan(i);
      }
      await expect.poll(async () => (await router.query(alertRouterQuery, { limit: 1000 })).open.length).toBe(40);
      const described = await router.describe();
      expect(described.runId).not.toBe(firstRun);
      // Every run of the chain ended soon after its bound: at the first workflow task past it, once the deliveries
      // it had started finished (signals that arrive meanwhile wait in its inbox for the next run).
      const lengths: number[] = [];
      let runId: string | null | undefined = described.runId;
      while (runId) {
        const handle = stack.client.workflow.getHandle(router.workflowId, runId);
        const events: HistoryEvent[] = (await handle.fetchHistory()).events ?? [];
        lengths.push(events.length);
        runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId;
      }
      expect(lengths.length, `events per run, latest first: ${lengths.join(', ')}`).toBeGreaterThan(1);
      expect(Math.max(...lengths), `events per run, latest first: ${lengths.join(', ')}`).toBeLessThan(300);
      const state = await router.query(alertRouterQuery, { limit: 1000 });
      expect(state.observations).toBeGreaterThanOrEqual(40);
      expect(state.history.filter((r) => r.event === 'fired')).toHaveLength(40);
    } finally {
      await router.terminate('test over');
    }
  });
});
