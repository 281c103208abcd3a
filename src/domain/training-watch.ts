import type { TrainingSpec } from '../shared/spec';

// Workflow-safe (no Node modules): the lifecycle workflow sets its slow-training timer with these.

/** No training run counts as slow sooner than this, however quick its similar runs were. */
export const MIN_SLOW_TRAINING_MS = 1000;

/** How far past the p95 of similar runs a run may go before it counts as slow (`training.slowAlert`). */
export type SlowAlertMargin = TrainingSpec['slowAlert'];

/** No margin: the bare p95, the limit of lifecycles started before `training.slowAlert`. */
export const NO_SLOW_ALERT_MARGIN: SlowAlertMargin = { marginOverP95: 0, minExcess: 0 };

/** When a training run counts as slow, with what the limit was derived from. */
export interface SlowTrainingLimit {
  limitMs: number;
  p95Ms: number;
  marginOverP95: number;
  minExcessMs: number;
  /** True when the limit is {@link MIN_SLOW_TRAINING_MS} because the p95 plus its margin came to less. */
  atMinimum: boolean;
}

/**
 * The limit past which a training run counts as slow: the later of the p95 of similar runs plus `marginOverP95` of it
 * and the p95 plus `minExcess`, and never below {@link MIN_SLOW_TRAINING_MS}. A margin on both scales keeps jitter on
 * short runs (4.7 s against a p95 of 4.3 s) and on long ones (a few percent) quiet.
 */
export function slowTrainingLimit(p95Ms: number, margin: SlowAlertMargin): SlowTrainingLimit {
  const later = Math.round(Math.max(p95Ms * (1 + margin.marginOverP95), p95Ms + margin.minExcess));
  return {
    limitMs: Math.max(MIN_SLOW_TRAINING_MS, later),
    p95Ms,
    marginOverP95: margin.marginOverP95,
    minExcessMs: margin.minExcess,
    atMinimum: later < MIN_SLOW_TRAINING_MS,
  };
}

/** Whether a run of `runMs` counts as slow under `limit` (the watch alerts once a run outlasts the limit). */
export function countsAsSlow(runMs: number, limit: SlowTrainingLimit): boolean {
  return runMs > limit.limitMs;
}

/** The lifecycle event that announces the limit, with its derivation (p95, margin, minimum excess, minimum). */
export function describeSlowTrainingLimit(limit: SlowTrainingLimit, similarRuns: number): string {
  const percent = Math.round(limit.marginOverP95 * 1000) / 10;
  const marginMs = Math.round(limit.p95Ms * limit.marginOverP95);
  return (
    `training counts as slow after ${limit.limitMs} ms (the p95 of ${similarRuns} similar runs, ` +
    `${Math.round(limit.p95Ms)} ms, plus the larger of ${percent} % (${marginMs} ms) and the minimum excess of ` +
    `${limit.minExcessMs} ms${limit.atMinimum ? `; never sooner than ${MIN_SLOW_TRAINING_MS} ms` : ''})`
  );
}
