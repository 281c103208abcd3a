import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { QuotaClient } from '../../src/client/quota-client';
import { Alert, Observation } from '../../src/shared/alerts';
import { ErrorType } from '../../src/shared/errors';
import {
  ALERT_ROUTER_WORKFLOW_ID,
  AlertHistoryQuery,
  alertRouterQuery,
  MonitorPolicy,
  OverrideInput,
  servingMonitorQuery,
  servingMonitorWorkflowId,
  SilenceInput,
} from '../../src/shared/monitoring';
import { poolStateQuery, registryStateQuery } from '../../src/shared/messages';
import { LeaseId } from '../../src/shared/names';
import {
  QuotaPoolConfig,
  QuotaPoolsFile,
  quotaMonitorWorkflowId,
  quotaPoolWorkflowId,
  ReleaseQuotaInput,
  RenewQuotaInput,
  ReserveQuotaInput,
} from '../../src/shared/quota';
import { ModelRollbackInput, PromotionRecord, registryWorkflowId } from '../../src/shared/registry';
import { DataCheckInput } from '../../src/shared/data-check';
import { MonitoringSpec } from '../../src/shared/spec';
import { GateDecisionInput, OperatorAction } from '../../src/shared/status';
import { LIFECYCLE_TASK_QUEUE } from '../../src/shared/task-queues';
import { ALERT_GROUP_WAIT_MS, startStack, testSpec, uniqueName, waitForStatus, type Stack } from '../helpers/harness';

/**
 * Every handler of every workflow takes random and hostile payloads on a real dev server (fast-check), and every
 * workflow then still answers its query and does its job. The property: a payload its handler's schema refuses is
 * refused with a typed failure (an update) or dropped (a signal) and never fails a workflow task — a plain error
 * thrown in workflow code fails the task, and the server retries it forever on the same history.
 */

/** Names that reach Object.prototype when they index a plain object. */
const PROTO_NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype'];

/** Leaves of a hostile payload: prototype names, long and odd strings, numbers JSON turns into null, extremes. */
const leaf = fc.oneof(
  fc.constantFrom(...PROTO_NAMES, '', ' ', '\u0000', 'x'.repeat(70_000), '9'.repeat(400), '100000000d', '-1m', 'NaN'),
  fc.string({ maxLength: 16 }),
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 1e300, -1e300, Number.MAX_SAFE_INTEGER * 8, 8.64e15),
  fc.boolean(),
  fc.constant(null),
);
/** Any JSON-like value whose object keys are often prototype names (own `__proto__` keys included). */
const anyPayload = fc.anything({
  key: fc.oneof(fc.constantFrom(...PROTO_NAMES), fc.string({ maxLength: 10 })),
  values: [leaf],
  maxDepth: 3,
  maxKeys: 6,
  withNullPrototype: true,
});
/** A valid payload with one field (or element) replaced by something hostile, or a prototype-named field added. */
const mutated = (valid: object): fc.Arbitrary<unknown> =>
  fc
    .tuple(
      fc.constantFrom(...Object.keys(valid), ...(Array.isArray(valid) ? [] : PROTO_NAMES)),
      fc.oneof(leaf, anyPayload),
    )
    .map(([key, value]) => {
      const out: object = Array.isArray(valid) ? [...(valid as unknown[])] : { ...valid };
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      return out;
    });

interface Handler {
  workflow: string;
  name: string;
  kind: 'signal' | 'update' | 'query';
  /** The schema that decides what is valid: payloads it accepts are not sent (they would do real work). */
  schema: z.ZodType;
  /** A valid payload, to mutate. */
  example: object;
}

/** Failure types an update may be refused with. */
const TYPED = [ErrorType.InvalidInput, ErrorType.Refused, ErrorType.ApprovalRefused];

async function taskFailures(client: Client, workflowId: string, afterEventId = 0): Promise<string[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? [])
    .filter((e) => Number(e.eventId) > afterEventId && e.workflowTaskFailedEventAttributes)
    .map((e) => e.workflowTaskFailedEventAttributes?.failure?.message ?? 'workflow task failed');
}

async function lastEventId(client: Client, workflowId: string): Promise<number> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return Number(history.events?.at(-1)?.eventId ?? 0);
}

describe('every handler of every workflow under random and hostile payloads', () => {
  let stack: Stack;
  const model = uniqueName('fuzz');
  const pool = uniqueName('fuzz-pool');
  let lifecycleId: string;
  const since = new Map<string, number>();

  beforeAll(async () => {
    stack = await startStack({ pools: [{ name: pool, capacity: { cpu: 1000, memoryGiB: 1000 } }] });
    // A lifecycle waiting at its deploy gate (approvers alice and bob; the fuzz never sends a valid decision).
    ({ id: lifecycleId } = await stack.lifecycles.start(testSpec(model, 'v1')));
    // The entity workflows, each started as its clients start it.
    const pools = QuotaPoolsFile.parse({ pools: [{ name: pool, capacity: { cpu: 1000, memoryGiB: 1000 } }] });
    await new QuotaClient(stack.client, pools).ensureStarted(pool);
    await stack.client.workflow.start('modelRegistryWorkflow', {
      workflowId: registryWorkflowId(model),
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ model }],
    });
    await stack.client.workflow.start('servingMonitorWorkflow', {
      workflowId: servingMonitorWorkflowId(model),
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ model, monitoring: MonitoringSpec.parse({ enabled: false }) }],
    });
    await stack.client.workflow.signalWithStart('alertRouterWorkflow', {
      workflowId: ALERT_ROUTER_WORKFLOW_ID,
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ groupWaitMs: ALERT_GROUP_WAIT_MS }],
      signal: 'observe',
      signalArgs: [[]],
    });
    await waitForStatus(stack.lifecycles, lifecycleId, (s) => s.pendingGate !== null, 120_000);
    for (const id of [
      lifecycleId,
      quotaPoolWorkflowId(pool),
      quotaMonitorWorkflowId(pool),
      registryWorkflowId(model),
      servingMonitorWorkflowId(model),
      ALERT_ROUTER_WORKFLOW_ID,
    ])
      since.set(id, await lastEventId(stack.client, id));
  });
  afterAll(async () => {
    await stack?.client.workflow
      .getHandle(servingMonitorWorkflowId(model))
      .terminate('test over')
      .catch(() => undefined);
    await stack?.close();
  });

  it('refuses or drops every hostile payload with a typed answer, and no workflow task fails', async () => {
    const lease = { leaseId: 'fuzz-1', holder: 'ci', kind: 'experiment', resources: { cpu: 1 } };
    /** A batch is valid when every operation is: one with a hostile operation is sent, and answered item by item. */
    const strictBatch = z
      .array(
        z.discriminatedUnion('op', [
          z.object({ op: z.literal('reserve'), input: ReserveQuotaInput }),
          z.object({ op: z.literal('renew'), input: RenewQuotaInput }),
          z.object({ op: z.literal('release'), input: ReleaseQuotaInput }),
        ]),
      )
      .min(1);
    /** Queries that take no argument: any argument is ignored. */
    const noArgs = (workflow: string, name: string): Handler => ({
      workflow,
      name,
      kind: 'query',
      schema: z.undefined(),
      example: {},
    });
    const handlers: Handler[] = [
      noArgs(lifecycleId, 'status'),
      noArgs(quotaPoolWorkflowId(pool), 'poolState'),
      noArgs(quotaMonitorWorkflowId(pool), 'quotaMonitor'),
      noArgs(registryWorkflowId(model), 'registryState'),
      noArgs(servingMonitorWorkflowId(model), 'servingMonitor'),
      // The lifecycle: gate decisions and promote-now are updates with validators; operator nudges are signals.
      ...['approveGate', 'rejectGate', 'promoteNow'].map((name) => ({
        workflow: lifecycleId,
        name,
        kind: 'update' as const,
        schema: GateDecisionInput,
        example: { by: 'mallory', reason: 'r' },
      })),
      { workflow: lifecycleId, name: 'abortLifecycle', kind: 'update', schema: OperatorAction, example: { by: 'op' } },
      ...['pause', 'resume', 'abort'].map((name) => ({
        workflow: lifecycleId,
        name,
        kind: 'signal' as const,
        schema: OperatorAction,
        example: { by: 'op', reason: 'r' },
      })),
      // The quota pool.
      {
        workflow: quotaPoolWorkflowId(pool),
        name: 'reserveQuota',
        kind: 'update',
        schema: ReserveQuotaInput,
        example: lease,
      },
      {
        workflow: quotaPoolWorkflowId(pool),
        name: 'renewQuota',
        kind: 'update',
        schema: RenewQuotaInput,
        example: { leaseId: 'fuzz-1' },
      },
      {
        workflow: quotaPoolWorkflowId(pool),
        name: 'releaseQuota',
        kind: 'update',
        schema: ReleaseQuotaInput,
        example: { leaseId: 'fuzz-1' },
      },
      {
        workflow: quotaPoolWorkflowId(pool),
        name: 'quotaBatch',
        kind: 'update',
        schema: strictBatch,
        example: [
          { op: 'reserve', input: lease },
          { op: 'release', input: { leaseId: 'fuzz-1' } },
        ],
      },
      {
        workflow: quotaPoolWorkflowId(pool),
        name: 'configurePool',
        kind: 'update',
        schema: QuotaPoolConfig,
        example: { name: pool, capacity: { cpu: 1000, memoryGiB: 1000 } },
      },
      { workflow: quotaPoolWorkflowId(pool), name: 'reservation', kind: 'query', schema: LeaseId, example: {} },
      // The registry.
      {
        workflow: registryWorkflowId(model),
        name: 'recordPromotion',
        kind: 'update',
        schema: PromotionRecord,
        example: {
          model,
          version: 'v9',
          artifactDir: '/tmp/x',
          metrics: {},
          lifecycleId: 'lc',
          by: 'a',
          at: new Date().toISOString(),
        },
      },
      // The serving monitor.
      {
        workflow: servingMonitorWorkflowId(model),
        name: 'monitorPolicy',
        kind: 'signal',
        schema: MonitorPolicy,
        example: { monitoring: { enabled: false } },
      },
      // The alert router.
      {
        workflow: ALERT_ROUTER_WORKFLOW_ID,
        name: 'observe',
        kind: 'signal',
        schema: Observation.array().min(1),
        example: [
          {
            key: 'k',
            kind: 'serving-skew',
            severity: 'warning',
            firing: null,
            summary: 's',
            at: new Date().toISOString(),
          },
        ],
      },
      {
        workflow: ALERT_ROUTER_WORKFLOW_ID,
        name: 'raiseAlert',
        kind: 'signal',
        schema: Alert,
        example: { kind: 'rollback', severity: 'warning', summary: 's', dedupKey: 'fuzz' },
      },
      {
        workflow: ALERT_ROUTER_WORKFLOW_ID,
        name: 'silenceModel',
        kind: 'update',
        schema: SilenceInput,
        example: { model, forMs: 1000, by: 'op' },
      },
      {
        workflow: ALERT_ROUTER_WORKFLOW_ID,
        name: 'overrideAction',
        kind: 'update',
        schema: OverrideInput,
        example: { incident: 'none#1', action: 'notify', by: 'op' },
      },
      {
        workflow: ALERT_ROUTER_WORKFLOW_ID,
        name: 'alertRouter',
        kind: 'query',
        schema: AlertHistoryQuery,
        example: { limit: 5 },
      },
    ];

    const byName = new Map(handlers.map((h) => [`${h.workflow}/${h.name}`, h]));
    const sent = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(
        // Handlers by name (`<workflow>/<handler>`), so a counterexample reads as what was sent where.
        fc
          .constantFrom(...byName.keys())
          .chain((name) =>
            fc.tuple(
              fc.constant(name),
              fc.oneof(anyPayload, mutated(byName.get(name)!.example), fc.constant([null]), fc.constant({})),
            ),
          ),
        async ([name, payload]) => {
          const h = byName.get(name)!;
          // Only what the schema refuses: a valid payload does real work (an abort, a grant) by design.
          fc.pre(!h.schema.safeParse(payload).success);
          sent.set(name, (sent.get(name) ?? 0) + 1);
          const handle = stack.client.workflow.getHandle(h.workflow);
          if (h.kind === 'signal') {
            await handle.signal(h.name, payload);
            return;
          }
          if (h.kind === 'query') {
            // A query may fail; it may not hang or hurt the workflow (checked after the run).
            await handle.query(h.name, payload).catch(() => undefined);
            return;
          }
          try {
            await handle.executeUpdate(h.name, { args: [payload] });
            // Accepted: only the batch may answer, operation by operation.
            expect(h.name).toBe('quotaBatch');
          } catch (err) {
            expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
            const cause = (err as WorkflowUpdateFailedError).cause;
            expect(cause).toBeInstanceOf(ApplicationFailure);
            expect(TYPED).toContain((cause as ApplicationFailure).type);
          }
        },
      ),
      { numRuns: 500, seed: Number(process.env.FC_SEED ?? Date.now() % 2 ** 31), verbose: 1 },
    );
    // Every handler got hostile payloads.
    expect([...byName.keys()].filter((n) => !sent.has(n))).toEqual([]);

    // No workflow task failed in any of them, whatever arrived.
    for (const [id, after] of since)
      expect({ id, failures: await taskFailures(stack.client, id, after) }).toEqual({ id, failures: [] });
  });

  it('then every workflow still answers its query and does its job', async () => {
    // The lifecycle answers and takes a real decision: a rejection by an approver ends it rejected.
    expect((await stack.lifecycles.status(lifecycleId)).pendingGate?.gate).toBe('deploy');
    await stack.lifecycles.reject(lifecycleId, { by: 'alice', reason: 'fuzzed enough' });
    expect((await stack.lifecycles.waitForEnd(lifecycleId)).stage).toBe('rejected');

    // The pool grants and releases.
    const poolHandle = stack.client.workflow.getHandle(quotaPoolWorkflowId(pool));
    const granted = await poolHandle.executeUpdate('reserveQuota', {
      args: [{ leaseId: 'after-fuzz', holder: 'constructor', kind: 'experiment', resources: { cpu: 2 } }],
    });
    expect(granted).toMatchObject({ granted: true });
    expect((await poolHandle.query(poolStateQuery)).byPipeline).toMatchObject({ constructor: { cpu: 2 } });
    expect(
      await poolHandle.executeUpdate('releaseQuota', { args: [{ leaseId: 'after-fuzz', by: 'ops' }] }),
    ).toMatchObject({
      leaseId: 'after-fuzz',
    });

    // The registry still refuses a record no lifecycle made, and answers its query.
    const registry = stack.client.workflow.getHandle(registryWorkflowId(model));
    const before = await registry.query(registryStateQuery);
    const record = {
      model,
      version: 'v2',
      artifactDir: '/tmp/artifact',
      metrics: { auc: 0.9 },
      lifecycleId: 'after-fuzz',
      runId: 'no-such-run',
      by: 'alice',
      at: new Date().toISOString(),
    };
    await expect(registry.executeUpdate('recordPromotion', { args: [record] })).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/forged or stale registry record: "no-such-run" is not a run id/) },
    });
    expect((await registry.query(registryStateQuery)).production).toEqual(before.production);

    // The serving monitor takes a new policy.
    const monitor = stack.client.workflow.getHandle(servingMonitorWorkflowId(model));
    await monitor.signal('monitorPolicy', { monitoring: { enabled: false, interval: '5s' } });
    await expect.poll(async () => (await monitor.query(servingMonitorQuery)).enabled).toBe(false);

    // The router delivers an alert raised after all of it.
    const dedupKey = uniqueName('after-fuzz');
    await stack.client.workflow
      .getHandle(ALERT_ROUTER_WORKFLOW_ID)
      .signal('raiseAlert', { kind: 'rollback', severity: 'warning', summary: 'raised after the fuzz', dedupKey });
    await expect.poll(() => stack.alerts.some((a) => a.dedupKey === dedupKey), { timeout: 30_000 }).toBe(true);
    expect(
      (await stack.client.workflow.getHandle(ALERT_ROUTER_WORKFLOW_ID).query(alertRouterQuery)).open,
    ).toBeDefined();

    for (const [id, after] of since)
      expect({ id, failures: await taskFailures(stack.client, id, after) }).toEqual({ id, failures: [] });
  });

  it('fails a rollback or data check started with a hostile input at once, naming the field, without retrying', async () => {
    const inputs = fc.sample(fc.oneof(anyPayload, mutated({ model, by: 'op', reason: 'r' })), { numRuns: 12 });
    for (const [i, input] of inputs.entries()) {
      for (const [workflow, schema] of [
        ['modelRollbackWorkflow', ModelRollbackInput],
        ['dataCheckWorkflow', DataCheckInput],
      ] as const) {
        if (schema.safeParse(input).success) continue;
        const run = stack.client.workflow.execute(workflow, {
          workflowId: uniqueName(`fuzz-${i}`),
          taskQueue: LIFECYCLE_TASK_QUEUE,
          args: [input],
        });
        const err = await run.then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(WorkflowFailedError);
        const cause = (err as WorkflowFailedError).cause;
        expect(cause).toBeInstanceOf(ApplicationFailure);
        expect([ErrorType.InvalidInput, ErrorType.InvalidSpec]).toContain((cause as ApplicationFailure).type);
      }
    }
  });
});
