import { z } from 'zod';
import { PREDICTION_BINS } from '../shared/prediction-bins';

// Workflow-safe (zod and shared constants only): a workflow can estimate from telemetry it already holds.

/**
 * Confidence-based performance estimation (CBPE): a classifier's accuracy on live traffic estimated without labels,
 * from the gateway's counts of its predictions per probability bin (`predictionBinCounts`).
 *
 * The calibration is histogram binning of the predicted class's confidence on the validation (test) set: each bin of
 * the binned probability (the positive-class probability p of a binary classifier, the top-class probability of a
 * multiclass one) records how many validation rows fell in it and how many of those the model got right. Live, every
 * prediction in bin i is taken to be right with that bin's accuracy, so the expected accuracy is the bins' accuracies
 * weighted by the live counts.
 *
 * Valid under covariate shift: when the inputs move, the mix of confidences moves with them and the estimate follows,
 * as long as P(correct | confidence) is what it was on the validation set. Invalid under concept shift: when P(y | x)
 * itself changes (customers churn for new reasons, labels mean something else), the model is exactly as confident as
 * before, the bins fill as before and the estimate stays put while real accuracy falls. Only labels see that
 * (src/shared/quality.ts).
 *
 * The bins are the gateway's 20 equal-width bins over [0, 1] ({@link PREDICTION_BINS}), so a calibration reads the
 * counters the gateway already keeps. 20 is also about right for the estimate: a bin is 0.05 of probability wide, so
 * accuracy changes little within one, yet a validation set of a thousand rows still puts tens of rows in the bins
 * where predictions gather; {@link binAccuracy} smooths the sparse ones.
 */

/**
 * Weight, in validation rows, of the prior that smooths a bin's observed accuracy toward its mean confidence: a bin of
 * 10 validation rows is half its own record and half its confidence, a bin of 100 is 91 % its record. Without it a
 * bin of 3 rows, all right, would promise that every live prediction in it is right.
 */
export const CALIBRATION_PSEUDO_COUNT = 10;

/** What the binned probability is; it sets the confidence of a bin without validation rows. */
export const BinnedProbability = {
  /** A binary classifier's positive-class probability p: the predicted class's confidence is max(p, 1 − p). */
  Positive: 'positive',
  /** A multiclass classifier's top-class probability, itself the predicted class's confidence. */
  TopClass: 'topClass',
} as const;
export type BinnedProbability = (typeof BinnedProbability)[keyof typeof BinnedProbability];

/** Per probability bin, how a classifier's predictions fared on the validation set. */
export const AccuracyCalibration = z
  .object({
    bins: z.number().int().positive(),
    /** Validation rows whose binned probability fell in the bin. */
    counts: z.array(z.number().int().nonnegative()),
    /** How many of them the model predicted right. */
    correct: z.array(z.number().int().nonnegative()),
    /**
     * Mean confidence of the predicted class over the bin's validation rows; for a bin without rows, the confidence at
     * the bin's midpoint (what {@link binAccuracy} then falls back to).
     */
    confidence: z.array(z.number().min(0).max(1)),
  })
  .superRefine((cal, ctx) => {
    for (const key of ['counts', 'correct', 'confidence'] as const) {
      if (cal[key].length !== cal.bins) {
        ctx.addIssue({ code: 'custom', path: [key], message: `expected ${cal.bins} entries, got ${cal[key].length}` });
      }
    }
    cal.correct.forEach((right, i) => {
      const rows = cal.counts[i] ?? 0;
      if (right > rows) {
        ctx.addIssue({ code: 'custom', path: ['correct', i], message: `${right} correct out of ${rows} rows` });
      }
    });
  });
export type AccuracyCalibration = z.infer<typeof AccuracyCalibration>;

/** The predicted class's confidence at the midpoint of bin `i` of `bins`. */
function midpointConfidence(i: number, bins: number, binned: BinnedProbability): number {
  const mid = (i + 0.5) / bins;
  return binned === BinnedProbability.Positive ? Math.max(mid, 1 - mid) : mid;
}

/**
 * The calibration of a classifier from its validation rows: per row, the bin of its binned probability (as the gateway
 * bins it: `predictionBinIndex`), the predicted class's confidence, and whether the prediction was right. Throws a
 * RangeError on inputs of different lengths, a bin index outside [0, bins) or a confidence outside [0, 1].
 */
export function calibrateAccuracy(
  binIndexes: ArrayLike<number>,
  confidences: ArrayLike<number>,
  correct: ArrayLike<boolean | number>,
  bins: number = PREDICTION_BINS,
  binned: BinnedProbability = BinnedProbability.Positive,
): AccuracyCalibration {
  if (!(Number.isInteger(bins) && bins >= 1)) throw new RangeError(`bins must be a positive integer, got ${bins}`);
  const n = binIndexes.length;
  if (confidences.length !== n || correct.length !== n) {
    throw new RangeError(
      `one bin index, confidence and outcome per row: got ${n}, ${confidences.length} and ${correct.length}`,
    );
  }
  const counts = new Array<number>(bins).fill(0);
  const right = new Array<number>(bins).fill(0);
  const confidenceSums = new Array<number>(bins).fill(0);
  for (let row = 0; row < n; row++) {
    const bin = binIndexes[row] as number;
    const confidence = confidences[row] as number;
    if (!(Number.isInteger(bin) && bin >= 0 && bin < bins)) {
      throw new RangeError(`row ${row}: bin index ${bin} is not in [0, ${bins})`);
    }
    if (!(confidence >= 0 && confidence <= 1)) {
      throw new RangeError(`row ${row}: confidence ${confidence} is not in [0, 1]`);
    }
    counts[bin]!++;
    confidenceSums[bin]! += confidence;
    if (correct[row]) right[bin]!++;
  }
  const confidence = counts.map((rows, i) =>
    rows > 0 ? Math.min(1, (confidenceSums[i] as number) / rows) : midpointConfidence(i, bins, binned),
  );
  return { bins, counts, correct: right, confidence };
}

/**
 * The calibrated accuracy of bin `i`: its validation accuracy smoothed toward its mean confidence with
 * {@link CALIBRATION_PSEUDO_COUNT} pseudo-rows, (correct + k·confidence) / (rows + k). A bin without validation rows
 * answers its midpoint confidence, a sparse one never a flat 0 or 1.
 */
export function binAccuracy(cal: AccuracyCalibration, i: number): number {
  if (!(Number.isInteger(i) && i >= 0 && i < cal.bins)) throw new RangeError(`bin ${i} is not in [0, ${cal.bins})`);
  const k = CALIBRATION_PSEUDO_COUNT;
  return ((cal.correct[i] as number) + k * (cal.confidence[i] as number)) / ((cal.counts[i] as number) + k);
}

export interface AccuracyEstimate {
  /** Expected accuracy of the live predictions; null when there were none. */
  estimate: number | null;
  /** Live predictions counted. */
  rows: number;
  /**
   * Binomial standard error of the realised accuracy around the estimate: the square root of
   * Σ nᵢ·accᵢ·(1 − accᵢ) / N², each live prediction taken as an independent draw, right with its bin's accuracy. It
   * takes the calibration as exact; {@link AccuracyEstimate.calibrationError} is the rest. Null when there were no rows.
   */
  standardError: number | null;
  /**
   * Standard error of the estimate from the calibration's finite validation set: the square root of
   * Σ (nᵢ/N)²·mᵢ·accᵢ·(1 − accᵢ) / (mᵢ + k)², the binomial spread of each bin's correct count (mᵢ validation rows,
   * k the pseudo-count) carried through the smoothing. It does not grow smaller with live traffic, so once N is much
   * larger than the validation set it dominates: compare an estimate with a realised accuracy on
   * √(standardError² + calibrationError²). It leaves out the smoothing's bias, and a bin without validation rows adds
   * nothing, its accuracy being a guess this cannot size. Null when there were no rows.
   */
  calibrationError: number | null;
}

/**
 * The expected accuracy of live predictions from their counts per bin (a window of `predictionBinCounts`):
 * Σ nᵢ·accᵢ / Σ nᵢ with accᵢ from {@link binAccuracy}. Throws a RangeError when the counts do not have one entry per
 * calibrated bin or one is negative or not finite.
 */
export function estimateAccuracy(cal: AccuracyCalibration, liveBinCounts: readonly number[]): AccuracyEstimate {
  if (liveBinCounts.length !== cal.bins) {
    throw new RangeError(`expected ${cal.bins} live bin counts (one per calibrated bin), got ${liveBinCounts.length}`);
  }
  let rows = 0;
  let right = 0;
  let variance = 0;
  let calibrationVariance = 0;
  liveBinCounts.forEach((count, i) => {
    if (!(Number.isFinite(count) && count >= 0)) throw new RangeError(`live bin ${i}: count ${count} is not >= 0`);
    if (count === 0) return;
    const acc = binAccuracy(cal, i);
    const validationRows = cal.counts[i] as number;
    rows += count;
    right += count * acc;
    variance += count * acc * (1 - acc);
    calibrationVariance +=
      (count ** 2 * validationRows * acc * (1 - acc)) / (validationRows + CALIBRATION_PSEUDO_COUNT) ** 2;
  });
  if (rows === 0) return { estimate: null, rows: 0, standardError: null, calibrationError: null };
  return {
    estimate: right / rows,
    rows,
    standardError: Math.sqrt(variance) / rows,
    calibrationError: Math.sqrt(calibrationVariance) / rows,
  };
}
