import { z } from 'zod';
import { MAX_CLASSES, type Task } from './task';

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
  /** Σ (p − y)² over labelled predictions (multiclass: Σ over classes of (p_k − y_k)²). */
  brierSum: z.number().nonnegative(),
  /**
   * Multiclass: per class (the manifest's order), labelled predictions that predicted it rightly, predicted it
   * wrongly, and missed it; macro-F1 is the mean of the classes' F1. The binary counters above stay 0.
   */
  classTruePositives: z.array(z.number().int().nonnegative()).max(MAX_CLASSES).optional(),
  classFalsePositives: z.array(z.number().int().nonnegative()).max(MAX_CLASSES).optional(),
  classFalseNegatives: z.array(z.number().int().nonnegative()).max(MAX_CLASSES).optional(),
  /** Regression: Σ |ŷ − y|, Σ (ŷ − y)², Σ y and Σ y² over labelled predictions (MAE, RMSE and R² from them). */
  absoluteErrorSum: z.number().nonnegative().optional(),
  squaredErrorSum: z.number().nonnegative().optional(),
  labelSum: z.number().optional(),
  labelSquaredSum: z.number().nonnegative().optional(),
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
  /** Multiclass: the mean of each class's F1 over the classes labelled or predicted (scikit-learn's macro average). */
  macroF1: number | null;
  /** Regression: mean absolute error, root mean squared error, coefficient of determination. */
  mae: number | null;
  rmse: number | null;
  r2: number | null;
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
    macroF1: macroF1Of(q),
    mae: q.absoluteErrorSum === undefined ? null : rate(q.absoluteErrorSum, q.labeled),
    rmse: q.squaredErrorSum === undefined || q.labeled === 0 ? null : Math.sqrt(q.squaredErrorSum / q.labeled),
    r2: r2Of(q),
  };
}

function macroF1Of(q: QualityCounters): number | null {
  const tp = q.classTruePositives;
  const fp = q.classFalsePositives;
  const fn = q.classFalseNegatives;
  if (!tp || !fp || !fn || q.labeled === 0 || tp.length === 0) return null;
  // Over the classes that were labelled or predicted, as scikit-learn's f1_score(average='macro') does.
  let sum = 0;
  let present = 0;
  for (let c = 0; c < tp.length; c++) {
    const denominator = 2 * (tp[c] ?? 0) + (fp[c] ?? 0) + (fn[c] ?? 0);
    if (denominator === 0) continue;
    present++;
    sum += (2 * (tp[c] ?? 0)) / denominator;
  }
  return present > 0 ? sum / present : null;
}

/** 1 − SSE/SST, SST = Σy² − (Σy)²/n; null without labels or when the labels do not vary. */
function r2Of(q: QualityCounters): number | null {
  if (q.squaredErrorSum === undefined || q.labelSum === undefined || q.labelSquaredSum === undefined) return null;
  if (q.labeled < 2) return null;
  const sst = q.labelSquaredSum - (q.labelSum * q.labelSum) / q.labeled;
  return sst > 1e-12 * Math.max(1, q.labelSquaredSum) ? 1 - q.squaredErrorSum / sst : null;
}

/** A labelled prediction as the counters need it, by task. */
export type LabelledPrediction =
  | { task: 'binary-classification'; label: number; probability: number; actual: number }
  | {
      task: 'multiclass-classification';
      classIndex: number;
      probabilities: ArrayLike<number>;
      actualIndex: number;
    }
  | { task: 'regression'; value: number; actual: number };

/** Counts one labelled prediction into `q` (cumulative counters of its version). The positive class is label 1. */
export function countLabel(q: QualityCounters, p: LabelledPrediction): void {
  q.labeled++;
  if (p.task === 'regression') {
    const error = p.value - p.actual;
    q.absoluteErrorSum = (q.absoluteErrorSum ?? 0) + Math.abs(error);
    q.squaredErrorSum = (q.squaredErrorSum ?? 0) + error * error;
    q.labelSum = (q.labelSum ?? 0) + p.actual;
    q.labelSquaredSum = (q.labelSquaredSum ?? 0) + p.actual * p.actual;
    return;
  }
  if (p.task === 'multiclass-classification') {
    const k = p.probabilities.length;
    const tp = (q.classTruePositives ??= new Array<number>(k).fill(0));
    const fp = (q.classFalsePositives ??= new Array<number>(k).fill(0));
    const fn = (q.classFalseNegatives ??= new Array<number>(k).fill(0));
    if (p.classIndex === p.actualIndex) {
      q.correct++;
      tp[p.actualIndex] = (tp[p.actualIndex] ?? 0) + 1;
    } else {
      fp[p.classIndex] = (fp[p.classIndex] ?? 0) + 1;
      fn[p.actualIndex] = (fn[p.actualIndex] ?? 0) + 1;
    }
    const truth = p.probabilities[p.actualIndex] ?? 0;
    q.logLossSum += -Math.log(Math.min(1 - LOG_LOSS_EPSILON, Math.max(LOG_LOSS_EPSILON, truth)));
    let brier = 0;
    for (let c = 0; c < k; c++) brier += ((p.probabilities[c] ?? 0) - (c === p.actualIndex ? 1 : 0)) ** 2;
    q.brierSum += brier;
    return;
  }
  const predictedPositive = p.label === 1;
  const actualPositive = p.actual === 1;
  if (p.label === p.actual) q.correct++;
  if (predictedPositive && actualPositive) q.truePositives++;
  else if (predictedPositive) q.falsePositives++;
  else if (actualPositive) q.falseNegatives++;
  else q.trueNegatives++;
  const losses = lossesOf(p.probability, actualPositive);
  q.logLossSum += losses.logLoss;
  q.brierSum += losses.brier;
}

/** The quality metrics a task's labels measure, the names the serving monitor's thresholds use. */
export function qualityMetricsOf(task: Task): readonly (keyof Quality)[] {
  return task === 'regression'
    ? ['mae', 'rmse', 'r2']
    : task === 'multiclass-classification'
      ? ['accuracy', 'macroF1', 'logLoss']
      : ['accuracy', 'precision', 'recall', 'logLoss', 'brier'];
}

/** The counters of {@link QualityCounters} every version has: counts of labeled predictions by outcome. */
export const QUALITY_COUNT_KEYS = [
  'labeled',
  'correct',
  'truePositives',
  'falsePositives',
  'falseNegatives',
  'trueNegatives',
] as const;
/** The sums every version has (a classifier's probabilistic losses; 0 for a regression). */
export const QUALITY_SUM_KEYS = ['logLossSum', 'brierSum'] as const;
/** The sums a regression's counters add (absent from a classifier's). */
export const QUALITY_OPTIONAL_SUM_KEYS = [
  'absoluteErrorSum',
  'squaredErrorSum',
  'labelSum',
  'labelSquaredSum',
] as const;
/** Per-class counts of a multiclass classifier. */
export const QUALITY_ARRAY_KEYS = ['classTruePositives', 'classFalsePositives', 'classFalseNegatives'] as const;

/** The counters that only grow: all but Σ y, which falls with negative labels. */
const GROWING_KEYS = [
  ...QUALITY_COUNT_KEYS,
  ...QUALITY_SUM_KEYS,
  ...QUALITY_OPTIONAL_SUM_KEYS.filter((key) => key !== 'labelSum'),
] as const;

/**
 * Whether some counter of `after` is below `before`'s: the counting started again from zero in between (a gateway
 * restart, an undeploy + redeploy). Every counter, the two sums included, only grows.
 */
export function qualityRestarted(after: QualityCounters, before: QualityCounters): boolean {
  // Σ y may fall (negative labels): it is differenced, never compared.
  return (
    GROWING_KEYS.some((key) => (after[key] ?? 0) < (before[key] ?? 0)) ||
    QUALITY_ARRAY_KEYS.some((key) => (before[key] ?? []).some((b, i) => (after[key]?.[i] ?? 0) < b))
  );
}

/**
 * `after − before`, counter by counter; `before` may be missing: an older snapshot without quality, a version that had
 * no labels yet, or counters that restarted in between. When a counter went down ({@link qualityRestarted}), `after`
 * is the window whole (the labels since the restart), never a clamped difference.
 */
export function qualityWindow(after: QualityCounters, before: QualityCounters | undefined): QualityCounters {
  const base = before && !qualityRestarted(after, before) ? before : undefined;
  const out: QualityCounters = {
    labeled: after.labeled - (base?.labeled ?? 0),
    correct: after.correct - (base?.correct ?? 0),
    truePositives: after.truePositives - (base?.truePositives ?? 0),
    falsePositives: after.falsePositives - (base?.falsePositives ?? 0),
    falseNegatives: after.falseNegatives - (base?.falseNegatives ?? 0),
    trueNegatives: after.trueNegatives - (base?.trueNegatives ?? 0),
    logLossSum: after.logLossSum - (base?.logLossSum ?? 0),
    brierSum: after.brierSum - (base?.brierSum ?? 0),
  };
  for (const key of QUALITY_OPTIONAL_SUM_KEYS) {
    const a = after[key];
    // Sums of floats: rounding may leave a hair below zero in an empty window.
    if (a !== undefined) out[key] = key === 'labelSum' ? a - (base?.[key] ?? 0) : Math.max(0, a - (base?.[key] ?? 0));
  }
  for (const key of QUALITY_ARRAY_KEYS) {
    const a = after[key];
    if (a !== undefined) out[key] = a.map((x, i) => x - (base?.[key]?.[i] ?? 0));
  }
  return out;
}

/**
 * One ground-truth label: the `requestId` of a prediction (as its answer carried it) and the true class, as the model's
 * manifest lists its classes (`1`, or `"1"`).
 */
export const GroundTruthLabel = z.object({
  requestId: z.string().min(1, 'a non-empty request id').max(MAX_LABEL_REQUEST_ID_LENGTH),
  label: z.union([z.number().finite(), z.string().min(1).max(64)], {
    error: 'a class label of the model (an integer such as 0 or 1, or the same as a string), or a regression target',
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
