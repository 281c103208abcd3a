import type { Task } from '../shared/task';

/**
 * The offline metrics of each task, measured at validation on the test set through the serving runtime, so that a
 * candidate and the production version are compared on the same rows by the same code whatever their trainers report:
 *
 * - binary classification: `accuracy`, `auc` (ROC AUC, ties counted half), `f1` (of the positive class 1),
 *   `logLoss` (natural log, probabilities clipped to [1e-15, 1 − 1e-15]), `brier`;
 * - multiclass classification: `accuracy`, `macroF1` (the unweighted mean of the F1 of the classes labelled or
 *   predicted, as scikit-learn's macro average), `logLoss`;
 * - regression: `mae`, `rmse`, `r2` (1 − SSE/SST; absent when the labels do not vary).
 */

/** What a prediction carries that the metrics read (src/serving/model-host.ts `Prediction`). */
export interface ScoredRow {
  label?: number;
  probability?: number;
  probabilities?: readonly number[];
  value?: number;
  classIndex?: number;
}

const EPSILON = 1e-15;
const clip = (p: number) => Math.min(1 - EPSILON, Math.max(EPSILON, p));

/** The task's metrics of `predictions` against `truth` (a class of `classes`, or a regression's value), row by row. */
export function measureMetrics(
  manifest: { task: Task; classes: readonly number[] },
  predictions: readonly ScoredRow[],
  truth: readonly number[],
): Record<string, number> {
  const n = predictions.length;
  if (n === 0 || truth.length !== n) return {};
  if (manifest.task === 'regression') return regressionMetrics(predictions, truth);
  let correct = 0;
  for (let i = 0; i < n; i++) if (predictions[i]!.label === truth[i]) correct++;
  const accuracy = correct / n;
  if (manifest.task === 'multiclass-classification') {
    const classes = manifest.classes;
    let logLoss = 0;
    for (let i = 0; i < n; i++) {
      const k = classes.indexOf(truth[i]!);
      logLoss -= Math.log(clip(predictions[i]!.probabilities?.[k] ?? 0));
    }
    // Over the classes labelled or predicted, as scikit-learn's f1_score(average='macro') does.
    const present = classes.filter((c) => truth.includes(c) || predictions.some((p) => p.label === c));
    const f1s = present.map((c) => f1Of(predictions, truth, c));
    return { accuracy, macroF1: f1s.reduce((a, b) => a + b, 0) / Math.max(1, present.length), logLoss: logLoss / n };
  }
  let logLoss = 0;
  let brier = 0;
  for (let i = 0; i < n; i++) {
    const p = predictions[i]!.probability ?? 0;
    const y = truth[i] === 1 ? 1 : 0;
    logLoss -= Math.log(clip(y === 1 ? p : 1 - p));
    brier += (p - y) ** 2;
  }
  const auc = rocAuc(
    predictions.map((p) => p.probability ?? 0),
    truth.map((t) => t === 1),
  );
  return {
    accuracy,
    ...(auc === null ? {} : { auc }),
    f1: f1Of(predictions, truth, 1),
    logLoss: logLoss / n,
    brier: brier / n,
  };
}

function f1Of(predictions: readonly ScoredRow[], truth: readonly number[], c: number): number {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  predictions.forEach((p, i) => {
    const predicted = p.label === c;
    const actual = truth[i] === c;
    if (predicted && actual) tp++;
    else if (predicted) fp++;
    else if (actual) fn++;
  });
  return tp + fp + fn === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

/** ROC AUC by ranks (Mann–Whitney U), ties sharing their mean rank; null when one class is absent. */
export function rocAuc(scores: readonly number[], positive: readonly boolean[]): number | null {
  const order = scores.map((s, i) => [s, i] as const).sort((a, b) => a[0] - b[0]);
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    const meanRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (positive[order[k]![1]]) {
        positives++;
        rankSum += meanRank;
      }
    }
    i = j + 1;
  }
  const negatives = order.length - positives;
  if (positives === 0 || negatives === 0) return null;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

function regressionMetrics(predictions: readonly ScoredRow[], truth: readonly number[]): Record<string, number> {
  const n = truth.length;
  let absolute = 0;
  let squared = 0;
  let mean = 0;
  for (const y of truth) mean += y / n;
  let total = 0;
  for (let i = 0; i < n; i++) {
    const error = (predictions[i]!.value ?? 0) - truth[i]!;
    absolute += Math.abs(error);
    squared += error * error;
    total += (truth[i]! - mean) ** 2;
  }
  return { mae: absolute / n, rmse: Math.sqrt(squared / n), ...(total > 0 ? { r2: 1 - squared / total } : {}) };
}

/**
 * The largest regression of each metric against production that validation allows when the spec names none
 * (`validation.maxRegression` empty): scale-free metrics only, since an absolute allowance of MAE means nothing across
 * models. A metric missing on either side is then not compared (a named one that is missing fails).
 */
export const DEFAULT_MAX_REGRESSION: Readonly<Record<Task, Readonly<Record<string, number>>>> = {
  'binary-classification': { auc: 0.02 },
  'multiclass-classification': { macroF1: 0.02 },
  regression: { r2: 0.02 },
};
