import { ApplicationFailure, sleep } from '@temporalio/workflow';
import { ErrorType, LifecycleEndReason, type LifecycleFailureType } from '../../shared/errors';
import { Stage } from '../../shared/status';
import { control, rollbackControl, type LifecycleContext } from './context';
import { failureMessage } from '../failures';

/** Waits between attempts: doubling from the first, capped at the last. */
const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 60_000;

/** The weight tables route the same: the same versions with the same non-zero shares. */
export function sameWeights(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>): boolean {
  const live = (w: Readonly<Record<string, number>>) =>
    Object.entries(w)
      .filter(([, p]) => p > 0)
      .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  return JSON.stringify(live(a)) === JSON.stringify(live(b));
}

const show = (w: Readonly<Record<string, number>>) =>
  Object.keys(w).length === 0
    ? 'no weights'
    : Object.entries(w)
        .map(([v, p]) => `${v} ${p}%`)
        .join(', ');

/**
 * All traffic back on the stable version (none at all when the model had no production version), read back from the
 * target until it holds. Each attempt is a fresh swap (its own opId: a journal that already applied an earlier one
 * must apply this one too). Past the spec's `rollout.rollback.stuckAfter` the lifecycle enters `rollback-stuck` and pages; it
 * keeps trying until `rollout.rollback.giveUpAfter`, then fails with RollbackStuck (the stack stops there).
 */
export async function restoreTraffic(ctx: LifecycleContext): Promise<void> {
  const { spec, lc, prod } = ctx;
  const stable = lc.stableVersion;
  const want: Record<string, number> = stable ? { [stable]: 100 } : {};
  const started = Date.now();
  const elapsed = () => Date.now() - started;
  let paged = false;
  for (let attempt = 1; ; attempt++) {
    let problem: string;
    try {
      await rollbackControl.setTrafficWeights({ ...prod, weights: want, opId: ctx.op(`rollback-weights:${attempt}`) });
      const got = await rollbackControl.readTrafficWeights({ ...prod });
      if (got === null || sameWeights(got, want)) {
        lc.setTraffic(0);
        lc.event(
          got === null
            ? `traffic swapped back to ${stable ?? 'no version'} (the target cannot report its weights to verify)`
            : `traffic back on ${stable ?? 'no version'}, read back from the target (attempt ${attempt})`,
        );
        if (paged) lc.enter(Stage.RollingBack, `traffic back on ${stable ?? 'no version'} after ${elapsed()} ms`);
        return;
      }
      problem = `the target routes ${show(got)} instead of ${show(want)}`;
    } catch (err) {
      problem = failureMessage(err);
    }
    if (!paged && elapsed() >= spec.rollout.rollback.stuckAfter) {
      paged = true;
      lc.enter(Stage.RollbackStuck, `traffic could not be put back on ${stable ?? 'no version'}: ${problem}`);
      ctx.details(`ROLLBACK STUCK: ${problem}`);
      await ctx.alert({
        kind: 'rollback-stuck',
        severity: 'critical',
        summary:
          `${spec.model} ${spec.version}: rollback stuck for ${Math.round(elapsed() / 1000)} s, ` +
          `${spec.version} may still take traffic: ${problem}`,
        details: { attempts: attempt, stable, wanted: want },
      });
    }
    if (elapsed() >= spec.rollout.rollback.giveUpAfter) {
      throw ApplicationFailure.create({
        type: ErrorType.RollbackStuck,
        message: `traffic could not be put back on ${stable ?? 'no version'} in ${attempt} attempts: ${problem}`,
        nonRetryable: true,
      });
    }
    lc.event(`rollback attempt ${attempt}: ${problem}`);
    await sleep(Math.min(RETRY_FIRST_MS * 2 ** (attempt - 1), RETRY_MAX_MS), {
      summary: `rollback attempt ${attempt + 1} of the traffic swap`,
    });
  }
}

/**
 * Undoes everything the lifecycle did, newest first (the compensation stack): the registry back when a guarded
 * promotion had moved it, traffic back on the stable version and verified, the candidate unloaded, its quota and the
 * model's traffic returned; then an alert and `rolled-back`. When traffic cannot be put back, the rest stays held and
 * the lifecycle ends `rollback-stuck` (it has paged).
 */
export async function rollback(
  ctx: LifecycleContext,
  reason: string,
  errorType: LifecycleFailureType = LifecycleEndReason.RolledBack,
): Promise<void> {
  const { spec, lc } = ctx;
  lc.enter(Stage.RollingBack, `rolling back: ${reason}`);
  ctx.details(`rolling back: ${reason}`);
  if (!lc.error) lc.fail(errorType, reason);
  const { stuck } = await ctx.comp.unwind((name, err) =>
    lc.event(`rollback step "${name}" failed: ${failureMessage(err)}`),
  );
  if (stuck) {
    // Production keeps the candidate's quota and the model's traffic lease: it may still serve.
    const lease = ctx.servingLease(spec.version);
    ctx.stopRenewing.get(lease)?.();
    await control
      .renewQuota({ pool: spec.quota.pool, leaseId: lease, ttlMs: null })
      .catch((err: unknown) => lc.event(`could not keep the serving lease: ${failureMessage(err)}`));
    lc.fail(ErrorType.RollbackStuck, `${reason}; rollback stuck: ${failureMessage(stuck.error)}`);
    await ctx.alert({
      kind: 'rollback-stuck',
      severity: 'critical',
      summary: `${spec.model} ${spec.version}: gave up rolling back (${reason}); its quota and traffic lease are kept`,
      details: { held: ctx.comp.names() },
    });
    lc.enter(Stage.RollbackStuck, lc.error!.message);
    return;
  }
  await ctx.alert({
    kind: 'rollback',
    severity: 'critical',
    summary: `${spec.model} ${spec.version} rolled back: ${reason}`,
    details: { decisions: lc.decisions.filter((d) => d.outcome !== 'pass') },
  });
  lc.enter(Stage.RolledBack, `rolled back: ${reason}`);
}
