import { CancellationScope, log, workflowInfo } from '@temporalio/workflow';
import type { PromotionRecord } from '../../shared/registry';
import { Stage } from '../../shared/status';
import { control, type LifecycleContext } from './context';
import { bake } from './rollout';
import { rollback } from './rollback';

/** The offline evidence the promotion records. */
export interface Promotable {
  artifactDir: string;
  metrics: Record<string, number>;
}

/**
 * Promotion. Without a guard window (or without a version to go back to): recorded in the registry, then finished.
 * Under a guard window the candidate becomes production and takes all traffic while the version it replaces stays
 * loaded at 0% with its quota, and the stage checks keep sampling; a breach (or an abort) unwinds the stack (registry
 * first, then traffic); a quiet window finishes the promotion.
 */
export async function promote(
  ctx: LifecycleContext,
  production: PromotionRecord | null,
  evidence: Promotable,
): Promise<void> {
  const { spec, lc, prod } = ctx;
  const window = spec.rollout.postPromotion.window;
  await control.recordPromotion(promotionRecord(ctx, evidence));
  if (!production || window <= 0) {
    await finishPromotion(ctx, production);
    return;
  }
  ctx.comp.push('restore the registry', () =>
    control.recordPromotion({
      ...production,
      lifecycleId: lc.id,
      runId: ctx.runId,
      by: 'system',
      at: new Date().toISOString(),
      kind: 'rollback',
      reason: lc.error?.message ?? 'post-promotion rollback',
    }),
  );
  lc.enter(
    Stage.Guarding,
    `${spec.version} is production; ${production.version} stays loaded for ${window} ms while the checks run`,
  );
  ctx.details(`guarding the promotion for ${window} ms`);
  const before = await control.readTelemetry({ ...prod });
  const outcome = await bake(ctx, 'post-promotion', window, before, null);
  if (outcome !== null) {
    await CancellationScope.nonCancellable(() => rollback(ctx, outcome.message));
    return;
  }
  lc.event(`post-promotion window passed; unloading ${production.version}`);
  await finishPromotion(ctx, production);
}

/**
 * All traffic to the candidate, the version it replaced unloaded and its quota returned; the candidate keeps its
 * serving quota without expiry, as production does until a later version replaces it. The stack is settled: nothing
 * of this lifecycle is undone any more, and the model's traffic is free for the next writer.
 */
async function finishPromotion(ctx: LifecycleContext, production: PromotionRecord | null): Promise<void> {
  const { spec, lc, prod } = ctx;
  for (const name of ['restore the registry', 'traffic back to the stable version', 'undeploy the candidate']) {
    ctx.comp.drop(name);
  }
  if (production) {
    await control.setTrafficWeights({ ...prod, weights: { [spec.version]: 100 }, opId: ctx.op('weights:final') });
    await control.undeployVersion({ ...prod, version: production.version, opId: ctx.op('undeploy-stable') });
    await control.releaseQuota({ pool: spec.quota.pool, leaseId: ctx.servingLease(production.version) });
  }
  const lease = ctx.servingLease(spec.version);
  ctx.stopRenewing.get(lease)?.();
  ctx.comp.drop('release serving quota');
  await control.renewQuota({ pool: spec.quota.pool, leaseId: lease, ttlMs: null });
  lc.setTraffic(100);
  // The model's serving monitor watches production from now on (started, or handed this version's policy).
  if (spec.monitoring.enabled) {
    await control
      .ensureServingMonitor({ model: spec.model, monitoring: spec.monitoring, spec: ctx.input.spec })
      .catch((err: unknown) => log.error('could not start the serving monitor', { error: String(err) }));
  }
  const { workflowId, runId } = workflowInfo();
  ctx.comp.drop('release the traffic lease');
  await control.releaseTrafficLease({ model: spec.model, workflowId, runId });
  lc.enter(Stage.Promoted, `${spec.version} is the production version of ${spec.model}`);
}

function promotionRecord(ctx: LifecycleContext, evidence: Promotable): PromotionRecord {
  const { spec, lc } = ctx;
  const approval = [...lc.approvals].reverse().find((a) => a.decision === 'approved' && a.by !== 'system');
  const approver = approval?.by ?? spec.submittedBy;
  return {
    model: spec.model,
    version: spec.version,
    artifactDir: evidence.artifactDir,
    metrics: evidence.metrics,
    lifecycleId: lc.id,
    runId: ctx.runId,
    by: approver,
    ...(lc.enforced && approval?.keyId ? { keyId: approval.keyId } : {}),
    at: new Date().toISOString(),
    kind: 'promotion',
    serving: {
      pool: spec.quota.pool,
      leaseId: ctx.servingLease(spec.version),
      resources: { cpu: spec.quota.serving.cpu, memoryGiB: spec.quota.serving.memoryGiB },
    },
    ...(spec.deployment.target ? { target: spec.deployment.target } : {}),
    ...(lc.artifactDigest ? { artifactDigest: lc.artifactDigest } : {}),
    ...(lc.artifactUri ? { artifactUri: lc.artifactUri } : {}),
    ...(lc.enforced
      ? {
          approvals: lc.approvals
            .filter((a) => a.decision === 'approved' && a.by !== 'system')
            .map((a) => ({ gate: a.gate, by: a.by, ...(a.keyId ? { keyId: a.keyId } : {}) })),
        }
      : {}),
  };
}
