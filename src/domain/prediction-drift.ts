import { chiSquaredHomogeneity, populationStabilityIndex } from '../drift/stats';
import type { Task } from '../shared/task';

/**
 * Prediction drift of one set of predictions against another (a candidate against the stable version in a rollout,
 * production against its own predictions on the test set in the serving monitor), by task:
 *
 * - binary classification: PSI and a binned two-sample Kolmogorov–Smirnov test on the positive-class probability's 20
 *   equal-width bins;
 * - regression: the same on the predicted value's 20 bins cut at the ventiles of the validation predictions;
 * - multiclass classification: PSI and a chi-squared test of homogeneity on the predicted class distribution.
 *
 * Drift is large and real when PSI exceeds its limit AND the test's p-value is under `alpha`: PSI says how far the
 * distributions moved, the test whether the sample can tell, so sampling noise in a small canary does not read as
 * drift.
 */

/** The prediction counters of a window or a baseline. */
export interface PredictionCounts {
  /** The task's prediction bins (see src/shared/telemetry.ts). */
  predictionBinCounts: readonly number[];
  /** Multiclass: predictions per class, in the manifest's order of classes. */
  classCounts?: readonly number[];
}

export interface PredictionDrift {
  psi: number;
  /** The significance test used: binned KS on ordered bins, chi-squared on classes. */
  test: 'ks' | 'chi-squared';
  /** KS: the largest CDF gap D; chi-squared: the statistic. */
  statistic: number;
  pValue: number;
  /** Predictions counted on each side. */
  referenceRows: number;
  currentRows: number;
  /** What was compared, for a decision's detail: `positive-probability bins` and the counts. */
  what: string;
  reference: readonly number[];
  current: readonly number[];
}

const sum = (counts: readonly number[]) => counts.reduce((a, b) => a + b, 0);

/**
 * `current` against `reference`. Multiclass uses the class counts when both sides have them with the same number of
 * classes (a snapshot of a target that does not count classes falls back to the top-class probability bins).
 */
export function comparePredictions(
  task: Task,
  reference: PredictionCounts,
  current: PredictionCounts,
): PredictionDrift {
  const classes = reference.classCounts && current.classCounts;
  if (
    task === 'multiclass-classification' &&
    classes &&
    reference.classCounts?.length === current.classCounts?.length
  ) {
    const ref = reference.classCounts!;
    const cur = current.classCounts!;
    const chi = chiSquaredHomogeneity(ref, cur);
    return {
      psi: populationStabilityIndex(ref, cur),
      test: 'chi-squared',
      statistic: chi.statistic,
      pValue: chi.pValue,
      referenceRows: sum(ref),
      currentRows: sum(cur),
      what: 'predicted classes',
      reference: ref,
      current: cur,
    };
  }
  const ref = reference.predictionBinCounts;
  const cur = current.predictionBinCounts;
  const ks = binnedKolmogorovSmirnov(ref, cur);
  return {
    psi: populationStabilityIndex(ref, cur),
    test: 'ks',
    statistic: ks.d,
    pValue: ks.pValue,
    referenceRows: sum(ref),
    currentRows: sum(cur),
    what:
      task === 'regression'
        ? 'predicted-value bins'
        : task === 'multiclass-classification'
          ? 'top-class probability bins'
          : 'positive-probability bins',
    reference: ref,
    current: cur,
  };
}

/** Whether a comparison is drift under the rule: PSI above `maxPsi` and the test significant at `alpha`. */
export function drifted(drift: PredictionDrift, rule: { maxPsi: number; alpha: number }): boolean {
  return drift.psi > rule.maxPsi && drift.pValue < rule.alpha;
}

/** One line for a decision's detail: the test and the counts compared. */
export function describeDrift(drift: PredictionDrift, labels: { reference: string; current: string }): string {
  const round = (x: number) => Math.round(x * 1e4) / 1e4;
  const test =
    drift.test === 'ks'
      ? `KS D=${round(drift.statistic)} p=${drift.pValue.toPrecision(3)}`
      : `chi-squared ${round(drift.statistic)} p=${drift.pValue.toPrecision(3)}`;
  return (
    `${test}; ${drift.what} ${labels.current} [${drift.current.join(',')}] ` +
    `${labels.reference} [${drift.reference.join(',')}]`
  );
}

/**
 * Two-sample Kolmogorov–Smirnov test on binned data: D is the largest gap between the two empirical CDFs at the bin
 * edges, and the p-value comes from the asymptotic Kolmogorov distribution with the effective sample size
 * n·m/(n+m) and Stephens' small-sample correction. Binning can only lower D, so the test is conservative.
 */
export function binnedKolmogorovSmirnov(a: readonly number[], b: readonly number[]): { d: number; pValue: number } {
  const n = a.reduce((x, y) => x + y, 0);
  const m = b.reduce((x, y) => x + y, 0);
  if (n === 0 || m === 0) return { d: 0, pValue: 1 };
  let ca = 0;
  let cb = 0;
  let d = 0;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    ca += a[i] ?? 0;
    cb += b[i] ?? 0;
    d = Math.max(d, Math.abs(ca / n - cb / m));
  }
  const ne = Math.sqrt((n * m) / (n + m));
  const lambda = (ne + 0.12 + 0.11 / ne) * d;
  return { d, pValue: kolmogorovSurvival(lambda) };
}

/** P(K > λ) for the Kolmogorov distribution: 2 Σ (-1)^(k-1) e^(-2k²λ²). */
function kolmogorovSurvival(lambda: number): number {
  if (lambda < 0.2) return 1;
  let total = 0;
  for (let k = 1; k <= 100; k++) {
    const term = Math.exp(-2 * k * k * lambda * lambda);
    total += k % 2 === 1 ? term : -term;
    if (term < 1e-12) break;
  }
  return Math.min(1, Math.max(0, 2 * total));
}
