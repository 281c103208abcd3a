import {
  ApplicationFailure,
  CancellationScope,
  log,
  patched,
  proxyActivities,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { ErrorType } from '../shared/errors';
import {
  describeTrafficHolder,
  ModelRollbackInput,
  type ModelRollbackResult,
  type PromotionRecord,
} from '../shared/registry';
import { ALERT_ROUTER_WORKFLOW_ID } from '../shared/monitoring';
import { OperationTarget } from '../shared/signed-operation';
import { parseInput } from './handlers';
import { setLogContext } from './log-context';
import { CONTROL_OPTIONS } from './activity-options';

const control = proxyActivities<Activities>(CONTROL_OPTIONS);

export type { ModelRollbackInput, ModelRollbackResult } from '../shared/registry';

/** Marks rollbacks that hold the model's traffic lease while they move its weights. */
const TRAFFIC_LEASE = 'traffic-lease';
/** Marks rollbacks authorized by the platform policy before they touch anything. */
const AUTHORIZED_ROLLBACK = 'authorized-rollback';

/**
 * Rolls a production model back to an earlier version: loads it on the gateway, takes its serving quota, moves all
 * traffic to it in one atomic weight swap (a prediction is served by the old or the new table, never fails in
 * between), records it in the registry as production (with who and why), then unloads the replaced version once its
 * in-flight predictions are done and returns its quota. Every step is idempotent by the workflow's id.
 */
export async function modelRollbackWorkflow(raw: ModelRollbackInput): Promise<ModelRollbackResult> {
  const input = parseInput(ModelRollbackInput, raw, 'rollback input');
  setLogContext({ model: input.model });
  if (!patched(TRAFFIC_LEASE)) return rollBack(input);
  const keyId = patched(AUTHORIZED_ROLLBACK) ? await authorize(input) : null;
  // One writer of the model's traffic: a rollout in progress is not overwritten (it is aborted instead, which puts
  // its traffic back on its stable version); the registry is read once the traffic is ours.
  const { workflowId, runId } = workflowInfo();
  const lease = await control.acquireTrafficLease({
    model: input.model,
    holder: { workflowId, runId, kind: 'rollback', what: `rollback${input.to ? ` to ${input.to}` : ''}` },
  });
  if (!lease.granted) {
    const held = lease.heldBy;
    throw ApplicationFailure.create({
      type: ErrorType.TrafficHeld,
      message:
        `the traffic of "${input.model}" is held by ${describeTrafficHolder(held)}: ` +
        (held.kind === 'lifecycle'
          ? `abort it (mlctl abort ${held.workflowId}) to put its traffic back on its stable version, ` +
            'then roll production back once it has ended'
          : 'wait for that rollback to end'),
      nonRetryable: true,
    });
  }
  try {
    return await rollBack(input, keyId);
  } finally {
    await CancellationScope.nonCancellable(() =>
      control.releaseTrafficLease({ model: input.model, workflowId, runId }),
    );
  }
}

/**
 * A rollback of production is a privileged operation: the requester must be one the platform policy allows, signed
 * unless the policy lets rollbacks go unsigned. The alert router's automated rollback (its child) is the platform's
 * own action, decided by an incident policy, and returns production to a version that was approved before.
 */
async function authorize(input: ReturnType<typeof ModelRollbackInput.parse>): Promise<string | null> {
  const { workflowId, parent } = workflowInfo();
  if (parent?.workflowId === ALERT_ROUTER_WORKFLOW_ID) return null;
  const verdict = await control.authorizeOperation({
    model: input.model,
    request: {
      op: 'rollback',
      by: input.by,
      ...(input.signed !== undefined ? { signed: input.signed } : {}),
      target: OperationTarget.rollback(input.model, workflowId, input.to),
      specDigest: '',
      artifactDigest: '',
    },
  });
  if (!verdict.ok)
    throw ApplicationFailure.create({ type: ErrorType.Unauthorized, message: verdict.reason, nonRetryable: true });
  log.info('rollback authorized', { model: input.model, by: input.by, keyId: verdict.keyId });
  return verdict.keyId;
}

async function rollBack(
  input: ReturnType<typeof ModelRollbackInput.parse>,
  keyId: string | null = null,
): Promise<ModelRollbackResult> {
  const id = workflowInfo().workflowId;
  const started = Date.now();
  const steps = input.steps && input.steps.length > 0 ? input.steps : [100];
  const registry = await control.getRegistry({ model: input.model });
  const current = registry?.production;
  if (!registry || !current) {
    throw ApplicationFailure.create({
      type: ErrorType.NotFound,
      message: `model "${input.model}" has no production version to roll back`,
      nonRetryable: true,
    });
  }
  const target: PromotionRecord | undefined = input.to
    ? [...registry.history].reverse().find((h) => h.version === input.to)
    : (registry.previous ?? undefined);
  if (!target || target.version === current.version) {
    throw ApplicationFailure.create({
      type: ErrorType.RollbackRefused,
      message: !target
        ? input.to
          ? `version "${input.to}" of "${input.model}" was never in production`
          : `"${input.model}" has no previous production version`
        : `"${target.version}" is already the production version of "${input.model}"`,
      nonRetryable: true,
    });
  }

  // The target each version serves on (the worker's gateway unless its promotion recorded another).
  const on = (r: PromotionRecord) => ({ model: input.model, ...(r.target ? { target: r.target } : {}) });
  await control.deployVersion({
    ...on(target),
    version: target.version,
    artifactDir: target.artifactDir,
    artifactDigest: target.artifactDigest ?? '',
    ...(target.artifactUri ? { artifactUri: target.artifactUri } : {}),
    opId: `${id}:deploy`,
  });
  if (target.serving) {
    const grant = await control.reserveQuota({
      pool: target.serving.pool,
      leaseId: target.serving.leaseId,
      holder: id,
      kind: 'serving',
      resources: target.serving.resources,
      ttlMs: null,
    });
    if (!grant.granted) {
      await control.undeployVersion({ ...on(target), version: target.version, opId: `${id}:undeploy-target` });
      throw ApplicationFailure.create({
        type: ErrorType.QuotaRefused,
        message: `no serving quota for ${target.version} in pool ${target.serving.pool}: ${grant.message}`,
        nonRetryable: true,
      });
    }
  }
  for (const [i, percent] of steps.entries()) {
    const weights =
      percent >= 100 ? { [target.version]: 100 } : { [target.version]: percent, [current.version]: 100 - percent };
    // Each swap is atomic on the gateway: a prediction sees the old table or the new one.
    await control.setTrafficWeights({
      ...on(current),
      weights,
      opId: percent >= 100 ? `${id}:weights` : `${id}:weights:${i}`,
    });
    if (percent < 100) {
      log.info('rollback step', { model: input.model, to: target.version, percent });
      await sleep(input.stepIntervalMs ?? 60_000);
    }
  }
  const trafficMovedMs = Date.now() - started;
  const at = new Date().toISOString();
  await control.recordPromotion({
    ...target,
    lifecycleId: id,
    // This rollback's run, which the registry checks the record against (not the run that first promoted it).
    runId: workflowInfo().runId,
    by: input.by,
    ...(keyId ? { keyId } : { keyId: undefined }),
    at,
    kind: 'rollback',
    reason: input.reason,
  });
  await control.undeployVersion({ ...on(current), version: current.version, opId: `${id}:undeploy` });
  if (current.serving) {
    await control.releaseQuota({ pool: current.serving.pool, leaseId: current.serving.leaseId });
  }
  return { model: input.model, from: current.version, to: target.version, trafficMovedMs, at };
}
