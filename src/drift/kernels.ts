/**
 * The per-feature numeric work of profiling and comparison, written so it can run on the calling thread or in a worker
 * thread on shared memory: every input is a Float64Array (possibly on a SharedArrayBuffer) and every output plain data.
 */
import { finishSort } from './sort';
import { ksAndWasserstein, type Alternative, type KsMode } from './stats';

/** Quantiles kept in a numeric profile, by name. */
export const PROFILE_QUANTILES: Record<string, number> = {
  p1: 0.01,
  p5: 0.05,
  p25: 0.25,
  p50: 0.5,
  p75: 0.75,
  p95: 0.95,
  p99: 0.99,
};

/** The q-quantile of ascending `sorted`, interpolated linearly between order statistics (numpy's default rule). */
export function quantileOfSorted(sorted: Float64Array, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, n - 1);
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  return a === b ? a : a + (h - lo) * (b - a);
}

/** Number of elements of ascending `sorted` that are <= x. */
export function countAtMost(sorted: Float64Array, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Bin edges from reference quantiles: the inner cut points at 1/bins, 2/bins, … of the sorted reference, each the
 * smallest value whose empirical CDF reaches the level (so edges are values of the data: a count column is cut at
 * counts, not between them), duplicates removed (a heavily tied column gets fewer, wider bins). Bin i holds
 * (edges[i-1], edges[i]]; the first bin is open below and the last open above, so every finite value has a bin.
 */
export function quantileEdges(sorted: Float64Array, bins: number): number[] {
  const edges: number[] = [];
  const n = sorted.length;
  if (n === 0) return edges;
  for (let i = 1; i < bins; i++) {
    const e = sorted[Math.max(0, Math.ceil((i / bins) * n) - 1)]!;
    if (edges.length === 0 || e > edges[edges.length - 1]!) edges.push(e);
  }
  // An edge at the maximum would leave the last bin empty for the reference: drop it.
  if (edges.length > 0 && sorted.length > 0 && edges[edges.length - 1] === sorted[sorted.length - 1]) edges.pop();
  return edges;
}

/** Counts of ascending `sorted` over the bins of `edges`. */
export function binCountsOfSorted(sorted: Float64Array, edges: readonly number[]): number[] {
  const counts: number[] = [];
  let before = 0;
  for (const e of edges) {
    const upTo = countAtMost(sorted, e);
    counts.push(upTo - before);
    before = upTo;
  }
  counts.push(sorted.length - before);
  return counts;
}

/** Number of elements of ascending `sorted` that are < x; for bin edges, the index of the bin that holds x. */
export function countBelow(sorted: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the bin of `edges` that holds x. */
export const binOf = (edges: readonly number[], x: number): number => countBelow(edges, x);

export interface NumericSummary {
  count: number;
  min: number;
  max: number;
  mean: number;
  /** Population standard deviation (divisor n). */
  std: number;
  integer: boolean;
  distinct: number;
  quantiles: Record<string, number>;
  edges: number[];
  counts: number[];
}

/**
 * Summarises sorted finite values: moments, quantiles, distinct count and quantile bins. Values ordered by their high
 * words only (`sortedFinite` with `partial`) are accepted too: the first value found smaller than its predecessor
 * completes the sort (`finishSort`) before the summary starts over, so a column read in order costs one pass.
 */
export function profileNumeric(sorted: Float64Array, bins: number): NumericSummary {
  const n = sorted.length;
  let moments = momentsOfSorted(sorted);
  if (!moments) {
    finishSort(sorted);
    moments = momentsOfSorted(sorted)!;
  }
  const { sum, integer, distinct, s1, s2 } = moments;
  const mean = n > 0 ? sum / n : NaN;
  const squares = Math.max(0, s2 - (s1 * s1) / n);
  const quantiles = Object.fromEntries(
    Object.entries(PROFILE_QUANTILES).map(([name, q]) => [name, quantileOfSorted(sorted, q)]),
  );
  const edges = quantileEdges(sorted, bins);
  return {
    count: n,
    min: n > 0 ? sorted[0]! : NaN,
    max: n > 0 ? sorted[n - 1]! : NaN,
    mean,
    std: n > 0 ? Math.sqrt(squares / n) : NaN,
    integer,
    distinct,
    quantiles,
    edges,
    counts: binCountsOfSorted(sorted, edges),
  };
}

/**
 * One pass over sorted values: their sum (in order), whether all are integers, how many are distinct, and the sums
 * s1, s2 of their deviations from the median and of its squares; null at the first value smaller than its predecessor.
 * One pass, not two (a column too large for the cache is read from memory on each pass): the variance is
 * (s2 - s1²/n)/n, and shifting by the median, within a standard deviation of the mean, keeps that subtraction free of
 * cancellation, as accurate as the two-pass formula.
 */
function momentsOfSorted(sorted: Float64Array) {
  const n = sorted.length;
  const shift = n > 0 ? sorted[n >> 1]! : 0;
  let sum = 0;
  let s1 = 0;
  let s2 = 0;
  let integer = true;
  let distinct = 0;
  let previous = NaN;
  for (let i = 0; i < n; i++) {
    const v = sorted[i]!;
    if (v < previous) return null;
    sum += v;
    const d = v - shift;
    s1 += d;
    s2 += d * d;
    if (integer && v !== Math.trunc(v)) integer = false;
    distinct += v !== previous ? 1 : 0;
    previous = v;
  }
  return { sum, integer, distinct, s1, s2 };
}

export interface NumericComparison {
  currentCount: number;
  currentCounts: number[];
  currentMean: number;
  belowMin: number;
  aboveMax: number;
  ks: number;
  ksPValue: number;
  ksPMethod: 'exact' | 'asymp';
  ksLocation: number;
  wasserstein: number;
}

/**
 * Compares the sorted finite current values with the sorted reference: KS and Wasserstein-1 in one merge pass, counts
 * on the reference bins, and how many fall outside the reference range.
 */
export function compareNumeric(
  referenceSorted: Float64Array,
  sorted: Float64Array,
  edges: readonly number[],
  alternative: Alternative,
  ksMode: KsMode,
): NumericComparison {
  const n = sorted.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i]!;
  const min = referenceSorted.length > 0 ? referenceSorted[0]! : Infinity;
  const max = referenceSorted.length > 0 ? referenceSorted[referenceSorted.length - 1]! : -Infinity;
  const belowMin = countBelow(sorted, min);
  const aboveMax = n - countAtMost(sorted, max);
  const r = ksAndWasserstein(referenceSorted, sorted, alternative, ksMode);
  return {
    currentCount: n,
    currentCounts: binCountsOfSorted(sorted, edges),
    currentMean: n > 0 ? sum / n : NaN,
    belowMin,
    aboveMax,
    ks: r.statistic,
    ksPValue: r.pValue,
    ksPMethod: r.pMethod,
    ksLocation: r.location,
    wasserstein: r.wasserstein,
  };
}

/**
 * The finite values of a column, copied into a new array (on shared memory when `shared`). Runs of finite values are
 * block-copied, so a column without gaps costs one scan and one memcpy.
 */
export function finiteValues(values: Float64Array, shared: boolean): Float64Array {
  let n = 0;
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i]!)) n++;
  const out = shared ? new Float64Array(new SharedArrayBuffer(n * 8)) : new Float64Array(n);
  if (n === values.length) {
    out.set(values);
    return out;
  }
  let j = 0;
  let run = 0;
  for (let i = 0; i < values.length; i++) {
    if (Number.isFinite(values[i]!)) continue;
    if (i > run) {
      out.set(values.subarray(run, i), j);
      j += i - run;
    }
    run = i + 1;
  }
  if (values.length > run) out.set(values.subarray(run), j);
  return out;
}
