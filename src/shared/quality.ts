import { z } from 'zod';

/**
 * Model quality from delayed ground-truth labels: the labels API of the gateway and the arithmetic on its counters.
 * Workflow-safe (zod only), so workflows, activities and the gateway share one definition.
 */

/** At most this many labels per `POST /v1/models/:model/labels`. */
export const MAX_LABELS_PER_CALL = 10_000;

/**
 * Longest request id a label can name. The gateway remembers no prediction with a longer one (it could never be
 * labelled, and a bounded count of unbounded ids would not bound memory).
 */
export const MAX_LABEL_REQUEST_ID_LENGTH = 200;

/** Probabilities are clipped to [ε, 1 − ε] in the log loss, as scikit-learn does, so one sure mistake stays finite. */
export const LOG_LOSS_EPSILON = 1e-15;

/**
 * Cumulative quality counters of one version, from the labels joined to its predictions. Like the other telemetry
 * counters, a window is the difference of two snapshots ({@link qualityWindow}). The positive class is label 1.
 */
export const QualityCounters = z.object({
  /** Predictions that received their ground-truth label. */
  labeled: z.number().int().nonnegative(),
  /** Labelled predictions whose predicted label was the true one. */
  correct: z.number().int().nonnegative(),
  truePositives: z.number().int().nonnegative(),
  falsePositives: z.number().int().nonnegative(),
  falseNegatives: z.number().int().nonnegative(),
  trueNegatives: z.number().int().nonnegative(),
  /**
   * Σ −[y·ln p + (1 − y)·ln(1 − p)] over labelled predictions (p the positive-class probability), the probability of
   * the true class clipped to [ε, 1 − ε] in each term.
   */
  logLossSum: z.number().nonnegative(),
  /** Σ (p − y)² over labelled predictions. */
  brierSum: z.number().nonnegative(),
});
export type QualityCounters = z.infer<typeof QualityCounters>;

/** Model quality over some labelled predictions; every rate is null when its denominator is zero. */
export interface Quality {
  labeled: number;
  accuracy: number | null;
  /** TP / (TP + FP). */
  precision: number | null;
  /** TP / (TP + FN). */
  recall: number | null;
  /** Mean log loss (cross-entropy), natural log. */
  logLoss: number | null;
  /** Mean Brier score. */
  brier: number | null;
}

export function emptyQualityCounters(): QualityCounters {
  return {
    labeled: 0,
    correct: 0,
    truePositives: 0,
    falsePositives: 0,
    falseNegatives: 0,
    trueNegatives: 0,
    logLossSum: 0,
    brierSum: 0,
  };
}

/** The loss terms of one labelled prediction: `probability` of the positive class, `actualPositive` the truth. */
export function lossesOf(probability: number, actualPositive: boolean): { logLoss: number; brier: number } {
  // The probability given to the true class, clipped; clipping it (not p) keeps ε exact on either side.
  const truthProbability = actualPositive ? probability : 1 - probability;
  const clipped = Math.min(1 - LOG_LOSS_EPSILON, Math.max(LOG_LOSS_EPSILON, truthProbability));
  return { logLoss: -Math.log(clipped), brier: (probability - (actualPositive ? 1 : 0)) ** 2 };
}

/** Rates from counters (cumulative or a window); all null when there are no labels. */
export function qualityOf(quality: QualityCounters | undefined): Quality {
  const q = quality ?? emptyQualityCounters();
  const rate = (num: number, den: number) => (den > 0 ? num / den : null);
  return {
    labeled: q.labeled,
    accuracy: rate(q.correct, q.labeled),
    precision: rate(q.truePositives, q.truePositives + q.falsePositives),
    recall: rate(q.truePositives, q.truePositives + q.falseNegatives),
    logLoss: rate(q.logLossSum, q.labeled),
    brier: rate(q.brierSum, q.labeled),
  };
}

const QUALITY_KEYS = Object.keys(QualityCounters.shape) as (keyof QualityCounters)[];

/**
 * Whether some counter of `after` is below `before`'s: the counting started again from zero in between (a gateway
 * restart, an undeploy + redeploy). Every counter, the two sums included, only grows.
 */
export function qualityRestarted(after: QualityCounters, before: QualityCounters): boolean {
  return QUALITY_KEYS.some((key) => after[key] < before[key]);
}

/**
 * `after − before`, counter by counter; `before` may be missing: an older snapshot without quality, a version that had
 * no labels yet, or counters that restarted in between. When a counter went down ({@link qualityRestarted}), `after`
 * is the window whole (the labels since the restart), never a clamped difference.
 */
export function qualityWindow(after: QualityCounters, before: QualityCounters | undefined): QualityCounters {
  const base = before && !qualityRestarted(after, before) ? before : undefined;
  const sub = (key: keyof QualityCounters) => after[key] - (base?.[key] ?? 0);
  return {
    labeled: sub('labeled'),
    correct: sub('correct'),
    truePositives: sub('truePositives'),
    falsePositives: sub('falsePositives'),
    falseNegatives: sub('falseNegatives'),
    trueNegatives: sub('trueNegatives'),
    logLossSum: sub('logLossSum'),
    brierSum: sub('brierSum'),
  };
}

/**
 * One ground-truth label: the `requestId` of a prediction (as its answer carried it) and the true class, as the model's
 * manifest lists its classes (`1`, or `"1"`).
 */
export const GroundTruthLabel = z.object({
  requestId: z.string().min(1, 'a non-empty request id').max(MAX_LABEL_REQUEST_ID_LENGTH),
  label: z.union([z.number().int(), z.string().min(1)], {
    error: 'a class label of the model: an integer such as 0 or 1, or the same as a string',
  }),
});
export type GroundTruthLabel = z.infer<typeof GroundTruthLabel>;

/** POST /v1/models/:model/labels */
export const LabelsRequest = z.object({
  labels: z
    .array(GroundTruthLabel)
    .min(1, 'at least one label')
    .max(MAX_LABELS_PER_CALL, `at most ${MAX_LABELS_PER_CALL} labels per call`),
});
export type LabelsRequest = z.infer<typeof LabelsRequest>;

/**
 * Reply of POST /v1/models/:model/labels. `unknown`: no remembered successful prediction has that request id (never
 * made, failed, forgotten after the gateway's memory limits, or its version undeployed); `duplicate`: the prediction
 * was labelled before (the first label counts).
 */
export const LabelsResponse = z.object({
  accepted: z.number().int().nonnegative(),
  unknown: z.number().int().nonnegative(),
  duplicate: z.number().int().nonnegative(),
});
export type LabelsResponse = z.infer<typeof LabelsResponse>;
