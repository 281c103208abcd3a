import { TemporalFailure, isCancellation, proxySinks } from '@temporalio/workflow';
import type { LifecycleMetricsSinks } from '../shared/metrics-sink';
import { failureKind } from './failures';
import { Stage } from '../shared/status';
import { LifecycleEndReason } from '../shared/errors';

const { lifecycleMetrics } = proxySinks<LifecycleMetricsSinks>();

/** What the metrics read of a lifecycle's state (LifecycleState has all of it). */
export interface LifecycleView {
  stage: Stage;
  startedAt: string;
  error: { type: string } | null;
  abort: unknown;
  decisions: readonly { outcome: string; tolerated?: boolean }[];
}

interface Tracker {
  stage: Stage;
  since: number;
  /** The last stage before a rollback started: where a rolled-back lifecycle failed. */
  failedIn: Stage;
  ended: boolean;
}

// Keyed by the lifecycle's state object, so the tracker lives and replays exactly as the workflow does.
const trackers = new WeakMap<LifecycleView, Tracker>();

function trackerOf(lc: LifecycleView): Tracker {
  let t = trackers.get(lc);
  if (!t) {
    // Every lifecycle starts provisioning, at its start time (workflow time: deterministic on replay).
    t = { stage: Stage.Provisioning, since: Date.parse(lc.startedAt), failedIn: Stage.Provisioning, ended: false };
    trackers.set(lc, t);
  }
  return t;
}

/**
 * Reports a stage change of a lifecycle: the duration of the stage it left, and, on entering `rolled-back` or
 * `failed`, the failure. Call it from the stage-change callback with the state already in the new stage.
 */
export function reportStageChange(lc: LifecycleView, stage: Stage): void {
  const t = trackerOf(lc);
  if (t.ended || stage === t.stage) return;
  const now = Date.now();
  lifecycleMetrics.stageEnded({ stage: t.stage, durationMs: Math.max(0, now - t.since) });
  if (t.stage !== Stage.RollingBack && t.stage !== Stage.RollbackStuck) t.failedIn = t.stage;
  t.stage = stage;
  t.since = now;
  if (stage === Stage.RolledBack || stage === Stage.Failed) {
    lifecycleMetrics.lifecycleFailed({ outcome: stage, stage: t.failedIn, reason: reasonOf(lc) });
  }
  if (stage === Stage.Promoted || stage === Stage.RolledBack || stage === Stage.Failed || stage === Stage.Rejected) {
    t.ended = true;
  }
}

/**
 * Reports a lifecycle that ends by throwing: a Temporal failure fails the workflow in the stage it was in. A
 * cancellation is not a failure, and a plain Error only fails the workflow task (which retries), so neither counts.
 */
export function reportLifecycleError(lc: LifecycleView, err: unknown): void {
  const t = trackerOf(lc);
  if (t.ended || isCancellation(err) || !(err instanceof TemporalFailure)) return;
  t.ended = true;
  lifecycleMetrics.lifecycleFailed({ outcome: Stage.Failed, stage: lc.stage, reason: failureKind(err) });
}

function reasonOf(lc: LifecycleView): string {
  // A rollback records the generic `RolledBack` unless an earlier step named the error.
  if (lc.error && lc.error.type !== LifecycleEndReason.RolledBack) return lc.error.type;
  if (lc.abort) return LifecycleEndReason.Aborted;
  if (lc.decisions.some((d) => d.outcome === 'fail' && !d.tolerated)) return LifecycleEndReason.CheckFailed;
  return lc.error?.type ?? LifecycleEndReason.Unknown;
}
