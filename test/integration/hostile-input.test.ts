import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadGenerator } from '../../src/dev/load-generator';
import { ErrorType } from '../../src/shared/errors';
import { poolStateQuery, registryStateQuery } from '../../src/shared/messages';
import {
  ALERT_ROUTER_WORKFLOW_ID,
  alertRouterQuery,
  servingMonitorQuery,
  servingMonitorWorkflowId,
} from '../../src/shared/monitoring';
import { quotaPoolWorkflowId, type QuotaPoolConfigInput, type QuotaPoolState } from '../../src/shared/quota';
import { registryWorkflowId } from '../../src/shared/registry';
import { lifecycleWorkflowId, MonitoringSpec } from '../../src/shared/spec';
import { ModelTelemetry } from '../../src/shared/telemetry';
import { LIFECYCLE_TASK_QUEUE } from '../../src/shared/task-queues';
import type { SandboxProbe } from '../fixtures/workflows/sandbox-probe';
import {
  ALERT_GROUP_WAIT_MS,
  EXAMPLE,
  liveTraffic,
  startStack,
  testSpec,
  uniqueName,
  waitForStatus,
  type Stack,
} from '../helpers/harness';
import { mlctl } from '../helpers/mlctl';
import { tempDir } from '../helpers/temp';

/**
 * Each hostile input of the security review (C3, H1, H2, H9, L2, L4 and the data-check header) sent to a real stack
 * the way a caller would send it — `mlctl`, the client API, raw signals and updates, public HTTP — and then proof the
 * system still works: the shared workflow sandbox is clean, the pool grants and releases, the router delivers, an
 * approval is accepted and the lifecycle promotes.
 */
describe('hostile input on a real stack', () => {
  let stack: Stack;
  let load: LoadGenerator;
  const model = uniqueName('hostile');
  const POOL = uniqueName('hostile-pool');
  const pools: QuotaPoolConfigInput[] = [{ name: POOL, capacity: { cpu: 8, memoryGiB: 32 } }];
  const dir = tempDir('mll-hostile-');
  const poolsFile = join(dir, 'pools.yaml');
  let baseline: SandboxProbe;

  /** The state of the workers' shared workflow sandbox, read from inside it. */
  const probe = (attempt = false) =>
    stack.client.workflow.execute<(o: { attempt?: boolean }) => Promise<SandboxProbe>>('sandboxProbeWorkflow', {
      workflowId: uniqueName('sandbox-probe'),
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ attempt }],
    });
  const pool = () => stack.client.workflow.getHandle(quotaPoolWorkflowId(POOL)).query(poolStateQuery);
  const run = (...args: string[]) => mlctl(stack.address, ...args);
  /** The typed failure an update was refused with. */
  const refusal = async (update: Promise<unknown>): Promise<ApplicationFailure> => {
    const err = await update.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
    const cause = (err as WorkflowUpdateFailedError).cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    return cause as ApplicationFailure;
  };
  const taskFailures = async (workflowId: string) =>
    ((await stack.client.workflow.getHandle(workflowId).fetchHistory()).events ?? []).filter(
      (e) => e.workflowTaskFailedEventAttributes,
    ).length;

  beforeAll(async () => {
    writeFileSync(poolsFile, stringify({ pools }));
    stack = await startStack({ pools });
    load = liveTraffic(stack.gateway.url, model, 80);
    baseline = await probe();
  });
  afterAll(async () => {
    await load?.stop();
    await stack?.client.workflow
      .getHandle(servingMonitorWorkflowId(model))
      .terminate('test over')
      .catch(() => undefined);
    await stack?.close();
  });

  it('seals the shared workflow sandbox: a write through __proto__ throws there and pollutes nothing', async () => {
    expect(baseline).toMatchObject({ sealed: true, strictParse: true, inherited: [] });
    const tried = await probe(true);
    expect(tried).toMatchObject({ pollutionRefused: true, strictParse: true, inherited: [] });
    expect(tried.prototypeKeys).toEqual(baseline.prototypeKeys);
  });

  it('refuses holder __proto__ at the edge and in the pool, and grants constructor and toString as ordinary holders', async () => {
    const reserve = (lease: string, holder: string, resources = 'cpu=1') =>
      run(
        'quota',
        'reserve',
        POOL,
        '--lease',
        lease,
        '--holder',
        holder,
        '--kind',
        'experiment',
        '--resources',
        resources,
        '--pools',
        poolsFile,
        '--json',
      );
    const proto = await reserve('p1', '__proto__');
    expect(proto.code).toBe(2);
    expect(proto.stderr).toMatch(/holder: \\?"__proto__\\?" is not a valid holder/);
    for (const holder of ['constructor', 'toString']) expect((await reserve(`lease-${holder}`, holder)).code).toBe(0);
    const member = await reserve('p2', 'ci', 'toString=1');
    expect(member.code).toBe(4); // a resource the pool does not have: refused, never fits
    expect(member.stdout).toMatch(/never-fits/);

    // A client that skips the schema: the pool refuses by itself, before anything is written, naming the field.
    const handle = stack.client.workflow.getHandle(quotaPoolWorkflowId(POOL));
    const raw = { leaseId: 'raw', holder: '__proto__', kind: 'experiment', resources: { cpu: 1 } };
    const refused = await refusal(handle.executeUpdate('reserveQuota', { args: [raw] }));
    expect(refused.type).toBe(ErrorType.InvalidInput);
    expect(refused.message).toMatch(/holder: "__proto__" is not a valid holder/);
    const batch = await handle.executeUpdate('quotaBatch', {
      args: [
        [
          { op: 'reserve', input: raw },
          { op: 'reserve', input: { ...raw, leaseId: 'raw-2', holder: 'valueOf' } },
        ],
      ],
    });
    expect(batch).toMatchObject([
      { ok: false, error: expect.stringMatching(/holder/) },
      { ok: true, value: { granted: true } },
    ]);

    const state: QuotaPoolState = await pool();
    expect(state.byPipeline).toEqual({ constructor: { cpu: 1 }, toString: { cpu: 1 }, valueOf: { cpu: 1 } });
    expect(state.used).toEqual({ cpu: 3 });
    for (const lease of ['lease-constructor', 'lease-toString', 'raw-2'])
      expect((await run('quota', 'release', POOL, lease, '--pools', poolsFile, '--as', 'ops')).code).toBe(0);
    expect((await pool()).leases).toEqual([]);
    expect(await taskFailures(quotaPoolWorkflowId(POOL))).toBe(0);
  });

  it('drops poison signals to the router and a serving monitor, refuses bad updates, and both keep working', async () => {
    const router = stack.client.workflow.getHandle(ALERT_ROUTER_WORKFLOW_ID);
    await stack.client.workflow.signalWithStart('alertRouterWorkflow', {
      workflowId: ALERT_ROUTER_WORKFLOW_ID,
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ groupWaitMs: ALERT_GROUP_WAIT_MS }],
      signal: 'observe',
      signalArgs: [[null]],
    });
    await router.signal('observe', {});
    await router.signal('raiseAlert', { dedupKey: 5 });
    await router.signal('observe', [{ key: '__proto__', kind: 'data-drift', severity: 'warning', firing: true }]);
    const silence = await refusal(
      router.executeUpdate('silenceModel', { args: [{ model, forMs: 8.64e15, by: 'ops' }] }),
    );
    expect(silence).toMatchObject({ type: ErrorType.InvalidInput, message: expect.stringMatching(/forMs: at most/) });
    expect((await refusal(router.executeUpdate('overrideAction', { args: [{}] }))).type).toBe(ErrorType.InvalidInput);

    const monitorId = servingMonitorWorkflowId(model);
    const monitor = await stack.client.workflow.start('servingMonitorWorkflow', {
      workflowId: monitorId,
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ model, monitoring: MonitoringSpec.parse({ enabled: false }) }],
    });
    await monitor.signal('monitorPolicy', {});
    await monitor.signal('monitorPolicy', { monitoring: { interval: 0 }, spec: null });
    await monitor.signal('monitorPolicy', { monitoring: { enabled: false, interval: '5s' } });
    await expect.poll(async () => (await monitor.query(servingMonitorQuery)).enabled).toBe(false);

    // The registry refuses a malformed or forged-looking record, naming the fields, and records nothing.
    const registry = await stack.client.workflow.start('modelRegistryWorkflow', {
      workflowId: registryWorkflowId(model),
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ model }],
    });
    const forged = await refusal(
      registry.executeUpdate('recordPromotion', {
        args: [
          { model, version: '__proto__', artifactDir: 'x'.repeat(10_000), metrics: JSON.parse('{"__proto__": 1}') },
        ],
      }),
    );
    expect(forged.type).toBe(ErrorType.InvalidInput);
    expect(forged.message).toMatch(/version/);
    expect((await registry.query(registryStateQuery)).history).toEqual([]);

    // After all of it the router still delivers, and neither workflow failed a task.
    const dedupKey = uniqueName('after-poison');
    await router.signal('raiseAlert', { kind: 'rollback', severity: 'warning', summary: 'after the poison', dedupKey });
    await expect.poll(() => stack.alerts.some((a) => a.dedupKey === dedupKey), { timeout: 30_000 }).toBe(true);
    expect(await taskFailures(ALERT_ROUTER_WORKFLOW_ID)).toBe(0);
    expect(await taskFailures(monitorId)).toBe(0);
    expect((await router.query(alertRouterQuery, { limit: 5 })).history.length).toBeGreaterThan(0);
  });

  it('refuses durations of 100000000d and of 400 digits, and non-numeric options, at every edge with exit 2', async () => {
    const spec = readFileSync(join(EXAMPLE, 'specs', 'good.yaml'), 'utf8');
    const file = join(dir, 'spec.yaml');
    writeFileSync(
      file,
      spec
        .replace(/^model: .*$/m, `model: ${model}`)
        .replace(/^(\s+)timeout: 1h$/m, '$1timeout: 100000000d')
        .replace(/^(\s+)timeout: 10m$/m, `$1timeout: ${'9'.repeat(400)}d`),
    );
    const dry = await run('run', file, '--dry-run');
    expect(dry.code).toBe(2);
    expect(dry.stderr).toMatch(/approval\.timeout \(line \d+\): invalid duration "100000000d": at most 365d/);
    expect(dry.stderr).toMatch(/training\.timeout \(line \d+\): invalid duration "9+… \(401 chars\)"/);
    for (const args of [
      ['alerts', 'silence', model, '--for', '100000000d', '--as', 'ops'],
      ['list', '--limit', 'abc'],
      [
        'quota',
        'reserve',
        POOL,
        '--lease',
        'l',
        '--holder',
        'h',
        '--kind',
        'data',
        '--resources',
        'cpu=1',
        '--ttl',
        `${'9'.repeat(400)}d`,
        '--pools',
        poolsFile,
      ],
    ]) {
      const r = await run(...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(/--for|--limit|--ttl/);
    }
    // A client that skips the edge: the workflow refuses the spec at its start, without retrying its task.
    const raw = testSpec(model, 'v-raw') as unknown as { approval: { timeout: unknown } };
    raw.approval.timeout = `${'9'.repeat(400)}d`;
    const err = await stack.client.workflow
      .execute('modelLifecycleWorkflow', {
        workflowId: lifecycleWorkflowId(model, 'v-raw'),
        taskQueue: LIFECYCLE_TASK_QUEUE,
        args: [{ spec: raw }],
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause).toMatchObject({ type: ErrorType.InvalidSpec });
    expect(await taskFailures(lifecycleWorkflowId(model, 'v-raw'))).toBe(0);
  });

  it("refuses a bake segment started on its own: it runs only as a lifecycle's child, before it reads anything", async () => {
    const workflowId = `lifecycle-${uniqueName('seg')}-v1/forged/bake/canary/1`;
    const err = await stack.client.workflow
      .execute('bakeSegmentWorkflow', {
        workflowId,
        taskQueue: LIFECYCLE_TASK_QUEUE,
        args: [
          {
            frame: {
              model: 'm',
              candidate: 'v1',
              stable: null,
              stage: 'canary',
              rules: {},
              target: { url: 'http://x' },
            },
            state: { windowStart: {}, lastSample: null, ledger: {} },
            firstSample: 1,
            samples: 1_000_000,
            interval: 1,
            endMs: Date.now() + 60_000,
            alertedDryRun: [],
            keep: 10,
          },
        ],
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as { type?: string; message?: string };
    expect(cause).toMatchObject({ type: ErrorType.InvalidInput });
    expect(cause.message).toMatch(/runs only as a child of a model lifecycle workflow/);
    expect(await taskFailures(workflowId)).toBe(0);
  });

  it('refuses a data batch whose header has __proto__ with one line naming the column, exit 2', async () => {
    const [header, ...rows] = readFileSync(join(EXAMPLE, 'data', 'test.csv'), 'utf8')
      .trim()
      .split('\n');
    const batch = join(dir, 'proto.csv');
    writeFileSync(batch, `${header!.replace('region', '__proto__')}\n${rows.slice(0, 50).join('\n')}\n`);
    const r = await run('data', 'check', '--reference', join(EXAMPLE, 'data', 'train.csv'), '--current', batch);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/line 1, column \d+ of the header: "__proto__" is not a valid feature name/);
  });

  it('promotes a lifecycle approved with mlctl while its live traffic carries hostile names and sizes', async () => {
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v1', 'good', (s) => {
        // The hostile requests below are a handful among hundreds; the checks judge the model, not them.
        s.rollout.canary.bake = 4000;
      }),
    );
    const gate = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    const approved = await run('approve', id, '--as', 'alice', '--gate', gate.pendingGate!.gate, '--json');
    expect(approved.code).toBe(0);
    await waitForStatus(stack.lifecycles, id, (s) => s.trafficPercent > 0);

    const predict = (features: unknown, raw?: string) =>
      fetch(`${stack.gateway.url}/v1/models/${model}/predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: raw ?? JSON.stringify({ userId: uniqueName('u'), features }),
      });
    const row = { age: 40, tenure_months: 12, monthly_charges: 70, support_calls: 1, plan: 'basic', region: 'north' };
    // Categories named like Object.prototype members are unseen categories, counted as such.
    for (const value of ['constructor', '__proto__', 'hasOwnProperty', 'toString', 'valueOf'])
      expect((await predict({ ...row, plan: value, region: value })).status).toBe(200);
    // Feature keys named like members; a literal __proto__ key; a 1 MB category; 10,000 keys.
    const statuses = [
      (await predict({ ...row, constructor: 1, hasOwnProperty: 'x' })).status,
      (await predict(undefined, `{"userId":"u1","features":{"__proto__":{"age":1},"age":40}}`)).status,
      (await predict({ ...row, plan: 'x'.repeat(1 << 20) })).status,
      (await predict({ ...row, ...Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, i])) })).status,
    ];
    for (const status of statuses) expect([200, 400, 413]).toContain(status);

    const end = await waitForStatus(
      stack.lifecycles,
      id,
      (s) => ['promoted', 'rolled-back', 'failed'].includes(s.stage),
      180_000,
    );
    expect({ stage: end.stage, error: end.error }).toEqual({ stage: 'promoted', error: null });

    // What the workflow read: telemetry that validates, carries no null, and stays small whatever was sent.
    const res = await stack.gateway.admin(`/admin/models/${model}/telemetry`);
    const text = await res.text();
    expect(text).not.toMatch(/null/);
    expect(text.length).toBeLessThan(64 * 1024);
    const telemetry = ModelTelemetry.parse(JSON.parse(text));
    const unseen = telemetry.versions.v1?.inputs?.features.plan;
    expect(unseen?.type).toBe('categorical');
  });

  it('leaves the shared workflow sandbox as it found it', async () => {
    const after = await probe();
    expect(after).toMatchObject({ sealed: true, strictParse: true, inherited: [] });
    expect(after.prototypeKeys).toEqual(baseline.prototypeKeys);
  });
});
