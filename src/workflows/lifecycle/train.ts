import { CancellationScope, isCancellation, patched, proxyActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { describeSlowTrainingLimit, NO_SLOW_ALERT_MARGIN, slowTrainingLimit } from '../../domain/training-watch';
import { formatDurationMs } from '../../shared/duration';
import { ErrorType } from '../../shared/errors';
import { Stage } from '../../shared/status';
import { control, runTag, type LifecycleContext } from './context';
import { keepRenewing, releaseLease, type PickedHardware } from './provision';
import { failureOf } from '../failures';

export type Trained = Awaited<ReturnType<Activities['trainModel']>>;

/**
 * Marks lifecycles that renew their training lease from workflow timers while training is scheduled and runs: the
 * trainer's heartbeats renew it only once the training starts, and a training queued behind others on its worker (one
 * at a time per class) let its lease expire while the lifecycle still held it.
 */
const RENEW_TRAINING_LEASE = 'renew-training-lease';

/** Marks lifecycles whose slow-training limit adds the `training.slowAlert` margin to the p95 of similar runs. */
const SLOW_TRAINING_MARGIN = 'slow-training-margin';

/**
 * Trains on a worker of the chosen hardware class. A run well past the p95 of similar past runs (by the spec's
 * `training.slowAlert` margin) is flagged while it still runs. The training lease is released however training ends,
 * with the measured run (the pool's estimates for similar runs come from it). Null when training failed (the lifecycle
 * has ended failed).
 */
export async function train(ctx: LifecycleContext, picked: PickedHardware, leaseId: string): Promise<Trained | null> {
  const { spec, lc } = ctx;
  const { option: hw, lease } = picked;
  lc.enter(Stage.Training, `training on ${hw.label} (${hw.taskQueue})`);
  ctx.details(`training on ${hw.label}`);
  const trainer = proxyActivities<Activities>({
    taskQueue: hw.taskQueue,
    startToCloseTimeout: spec.training.timeout,
    heartbeatTimeout: '30 seconds',
    retry: { maximumAttempts: spec.training.maxAttempts, initialInterval: '2 seconds' },
  });
  const watch = await watchSlowTraining(ctx, hw);
  const stopRenewing =
    lease.ttlMs !== null && patched(RENEW_TRAINING_LEASE)
      ? keepRenewing(ctx, leaseId, lease.ttlMs, hw.pool)
      : () => undefined;
  let trained: Trained | undefined;
  let trainingError: ReturnType<typeof failureOf> | undefined;
  try {
    trained = await trainer.trainModel({
      // The artifact folder is per run: a re-run trains afresh (its params or data may have changed).
      lifecycleId: `${lc.id}@${runTag(ctx.runId)}`,
      model: spec.model,
      version: spec.version,
      program: spec.training.program,
      dataDir: spec.training.dataDir,
      params: spec.training.params,
      // The trainer's worker renews the lease while the process lives; a vanished worker lets it expire.
      ...(lease.ttlMs !== null ? { lease: { pool: hw.pool, leaseId, ttlMs: lease.ttlMs } } : {}),
    });
  } catch (err) {
    if (isCancellation(err)) throw err;
    trainingError = failureOf(err);
  } finally {
    watch.cancel();
    stopRenewing();
  }
  // Released here with the run's usage, not by the stack: a cancellation unwinds the stack instead.
  ctx.comp.drop('release training quota');
  await CancellationScope.nonCancellable(() =>
    releaseLease(
      ctx,
      leaseId,
      {
        ...(trained ? { usage: trained.usage } : {}),
        ...(trained?.datasetRows !== undefined ? { profile: { datasetRows: trained.datasetRows } } : {}),
      },
      hw.pool,
    ),
  );
  if (!trained) {
    await ctx.endFailed(ErrorType.TrainingFailed, `training failed: ${trainingError?.message}`, {
      kind: 'training-failed',
      severity: 'warning',
      summary: `${spec.model} ${spec.version}: training failed: ${trainingError?.message}`,
      details: trainingError?.details,
    });
    return null;
  }
  lc.artifactDir = trained.artifactDir;
  // Results recorded before artifacts were hashed have no digest.
  lc.artifactDigest = (trained as { artifactDigest?: string }).artifactDigest ?? null;
  // Results from before the artifact store, or from a worker without one, have no URI: readers use artifactDir.
  lc.artifactUri = trained.artifactUri ?? null;
  lc.event(
    `trained in ${Math.round(trained.durationMs)} ms${trained.reused ? ' (artifact of an earlier attempt reused)' : trained.attempt > 1 ? ` (attempt ${trained.attempt})` : ''}`,
  );
  return trained;
}

/**
 * A timer that alerts when training runs well past the p95 of similar past runs (see `slowTrainingLimit`); cancel it
 * when training ends.
 */
async function watchSlowTraining(ctx: LifecycleContext, hw: PickedHardware['option']): Promise<CancellationScope> {
  const { spec, lc } = ctx;
  const watch = new CancellationScope();
  const baseline = await control.trainingBaseline({
    pool: hw.pool,
    family: spec.hardware.architecture,
    dataDir: spec.training.dataDir,
  });
  if (baseline.p95Ms === null) return watch;
  // Lifecycles started before the margin keep the bare p95 (and their words for it): their timer is in the history.
  const margined = patched(SLOW_TRAINING_MARGIN);
  const limit = slowTrainingLimit(baseline.p95Ms, margined ? spec.training.slowAlert : NO_SLOW_ALERT_MARGIN);
  const { limitMs } = limit;
  lc.event(
    margined
      ? describeSlowTrainingLimit(limit, baseline.similarRuns)
      : `training counts as slow after ${limitMs} ms (the p95 of ${baseline.similarRuns} similar runs)`,
  );
  const against = margined
    ? `against a p95 of ${Math.round(baseline.p95Ms)} ms over ${baseline.similarRuns} similar runs`
    : `above the p95 of ${baseline.similarRuns} similar runs`;
  watch
    .run(async () => {
      await sleep(limitMs, { summary: `training counts as slow after ${formatDurationMs(limitMs)}` });
      await ctx.alert({
        kind: 'training-slow',
        severity: 'warning',
        summary:
          `${spec.model} ${spec.version}: training on ${hw.label} still running after ${limitMs} ms, ${against} ` +
          `(family ${spec.hardware.architecture}` +
          `${baseline.datasetRows !== null ? `, ${baseline.datasetRows} rows` : ''})`,
        details: {
          ...baseline,
          limitMs,
          ...(margined ? { marginOverP95: limit.marginOverP95, minExcessMs: limit.minExcessMs } : {}),
          hardware: hw.label,
        },
      });
    })
    .catch(() => undefined);
  return watch;
}
