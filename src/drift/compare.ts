import {
  CategoricalMethod,
  DEFAULT_THRESHOLDS,
  MAX_EXAMPLE_CHARS,
  NumericMethod,
  parseDriftOptions,
  TESTS,
  type DriftMethod,
  type DriftOptions,
  type FeatureOverride,
  type Settings,
} from '../shared/drift';
import { mapOf } from '../shared/own';
import type { DriftSummary } from '../shared/status';
import {
  cellExample,
  clip,
  MAX_EXAMPLES,
  quoted,
  type CategoricalColumn,
  type CellExample,
  type CellIssues,
  type ColumnarData,
  type NumericColumn,
} from './columns';
import { binOf, type NumericComparison } from './kernels';
import type { CategoricalProfile, FeatureProfile, FeatureRole, NumericProfile, Reference } from './profile';
import {
  chiSquaredHomogeneity,
  jensenShannonDistance,
  ksPValue,
  lInfinityDistance,
  populationStabilityIndex,
  type Alternative,
} from './stats';

/**
 * Comparison of current data with a reference profile: per feature a drift statistic against its threshold, and the
 * data-type problems of the current data (missing values, NaN/±Inf, wrong types, unseen categories, out-of-range
 * numbers, new or missing columns, malformed rows).
 *
 * Default method per feature (the smaller sample decides, so a large reference does not turn a small serving window
 * into a p-value test that flags everything, nor a small window into a noisy distance):
 * - numeric, smaller sample <= 1000: two-sample Kolmogorov–Smirnov, drifted when p < 0.05;
 * - numeric, larger: Wasserstein-1 divided by the reference standard deviation, drifted when >= 0.1;
 * - categorical, smaller sample <= 1000: chi-squared homogeneity test, drifted when p < 0.05;
 * - categorical, larger: Jensen–Shannon distance (natural log), drifted when >= 0.1.
 * PSI (on the reference's quantile bins, empty bins floored at 1e-4) and L-infinity are available as overrides, with
 * 0.1 as the default threshold. The data set drifts when the share of drifted features reaches `driftShare` (0.5).
 *
 * Pure (no Node imports): workflows judge serving sketches with it. Reading files and the exact numeric comparisons
 * in worker threads are src/drift/engine.ts.
 */

export interface Moved {
  /** A bin like `(45, 52]`, or a category (`(unseen) x` for one the reference never had). */
  what: string;
  reference: number;
  current: number;
}

export interface FeatureDrift {
  name: string;
  type: 'numeric' | 'categorical';
  role: FeatureRole;
  method: DriftMethod | 'none';
  /** The method's statistic: the test statistic for tests, the distance otherwise. */
  statistic: number | null;
  pValue?: number;
  threshold: number | null;
  drifted: boolean;
  /** `exact`: from every value; `binned`: from counts on the reference's bins (no stored reference values). */
  basis: 'exact' | 'binned';
  referenceSize: number;
  currentSize: number;
  /** Every statistic computed for the feature, for the curious. */
  statistics: Record<string, number>;
  direction?: 'increase' | 'decrease';
  /** The bins or categories whose share moved most (shares 0..1). */
  moved: Moved[];
  /** Categories of the current data the reference never had, most frequent first (values cut as examples are). */
  unseen?: UnseenCategory[];
  /** Why the feature was not compared. */
  skipped?: string;
}

export type ProblemKind =
  | 'no-rows'
  | 'malformed-rows'
  | 'missing-column'
  | 'new-column'
  | 'type-mismatch'
  | 'missing-values'
  | 'nan'
  | 'infinity'
  | 'wrong-type'
  | 'out-of-range'
  | 'out-of-domain';

/** A category the reference never had: its value cut to `MAX_EXAMPLE_CHARS`, with its length when cut. */
export interface UnseenCategory {
  value: string;
  count: number;
  length?: number;
}

/**
 * A problem of the current data. Its message and examples quote at most a few values, each cut to
 * `MAX_EXAMPLE_CHARS`: a report travels through workflow history and into alerts, whatever the batch holds.
 */
export interface DataProblem {
  kind: ProblemKind;
  feature?: string;
  message: string;
  count?: number;
  share?: number;
  threshold?: number;
  examples?: unknown[];
}

export interface DriftReport {
  reference: { rows: number; source?: string };
  current: { rows: number; source?: string };
  features: FeatureDrift[];
  /** Compared features (role `feature`) and how many drifted; the label is reported but not counted here. */
  comparedFeatures: number;
  driftedFeatures: number;
  driftShare: number;
  datasetDriftShare: number;
  datasetDrift: boolean;
  problems: DataProblem[];
  /** No feature or label drifted and no data problem was found. */
  ok: boolean;
}

/** New columns named one by one in a report; more are counted in one problem. */
const MAX_NEW_COLUMNS = 20;

const share = (part: number, whole: number) => (whole > 0 ? part / whole : 0);
const fmt = (x: number) => (Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(6))));

/** The label of bin `i` of a numeric profile's bins: `(lo, hi]`. */
export function binLabel(edges: readonly number[], i: number): string {
  const lo = i === 0 ? '-inf' : fmt(edges[i - 1]!);
  const hi = i === edges.length ? 'inf' : fmt(edges[i]!);
  return `(${lo}, ${hi}]`;
}

/** The `limit` entries whose share moved most, largest first. */
function mostMoved(labels: readonly string[], ref: ArrayLike<number>, cur: ArrayLike<number>, limit = 3): Moved[] {
  const rt = sum(ref);
  const ct = sum(cur);
  return labels
    .map((what, i) => ({ what, reference: share(ref[i] ?? 0, rt), current: share(cur[i] ?? 0, ct) }))
    .filter((m) => m.reference !== m.current)
    .sort((a, b) => Math.abs(b.current - b.reference) - Math.abs(a.current - a.reference))
    .slice(0, limit)
    .map((m) => ({ what: m.what, reference: round(m.reference), current: round(m.current) }));
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

function sum(values: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < values.length; i++) total += values[i]!;
  return total;
}

function chooseMethod(
  type: 'numeric' | 'categorical',
  smaller: number,
  o: FeatureOverride | undefined,
  s: Settings,
  name: string,
  binned = false,
): DriftMethod {
  if (o?.method) {
    const allowed = type === 'numeric' ? NumericMethod.options : CategoricalMethod.options;
    if (!(allowed as readonly string[]).includes(o.method)) {
      throw new RangeError(`features.${name}.method: "${o.method}" does not apply to a ${type} feature`);
    }
    return o.method;
  }
  if (type === 'numeric') return smaller <= s.smallSample ? 'ks' : binned ? 'psi' : 'wasserstein';
  return smaller <= s.smallSample ? 'chisquare' : 'jensenshannon';
}

function verdict(method: DriftMethod, statistic: number, pValue: number | undefined, threshold: number): boolean {
  return TESTS.has(method) ? pValue! < threshold : statistic >= threshold;
}

/** The numeric problems of one feature's observation against its profile. */
function numericProblems(p: NumericProfile, o: NumericObservation, s: Settings) {
  const problems: DataProblem[] = [];
  const rows = o.rows;
  const i = o.issues;
  missingProblem(problems, p, i.missing, rows, s);
  const refNan = share(p.nan, p.rows);
  if (i.nan > 0 && share(i.nan, rows) > (refNan > 0 ? refNan + s.maxMissingIncrease : 0)) {
    problems.push({
      kind: 'nan',
      feature: p.name,
      count: i.nan,
      share: round(share(i.nan, rows)),
      message: `${p.name}: ${i.nan} NaN value(s) (${pct(share(i.nan, rows))}; reference ${pct(refNan)})`,
    });
  }
  const inf = i.posInf + i.negInf;
  const refInf = share(p.posInf + p.negInf, p.rows);
  if (inf > 0 && share(inf, rows) > (refInf > 0 ? refInf + s.maxMissingIncrease : 0)) {
    problems.push({
      kind: 'infinity',
      feature: p.name,
      count: inf,
      share: round(share(inf, rows)),
      message: `${p.name}: ${i.posInf} +Inf and ${i.negInf} -Inf value(s) (reference ${pct(refInf)})`,
    });
  }
  wrongTypeProblem(problems, p.name, 'numbers', i.wrongType, i.wrongTypeExamples, rows);
  const finite = sum(o.counts);
  if (finite > 0 && p.min !== null && p.max !== null) {
    const out = o.belowMin + o.aboveMax;
    const outShare = share(out, finite);
    if (out > 0 && outShare > s.maxOutOfRangeShare) {
      problems.push({
        kind: 'out-of-range',
        feature: p.name,
        count: out,
        share: round(outShare),
        threshold: s.maxOutOfRangeShare,
        message:
          `${p.name}: ${out} value(s) (${pct(outShare)}) outside the reference range [${fmt(p.min)}, ${fmt(p.max)}]` +
          ` (${o.belowMin} below, ${o.aboveMax} above)`,
      });
    }
  }
  return problems;
}

const pct = (x: number) => `${(x * 100).toFixed(x > 0 && x < 0.001 ? 4 : 2)}%`;

function missingProblem(problems: DataProblem[], p: FeatureProfile, missing: number, rows: number, s: Settings) {
  const refMissing = share(p.missing, p.rows);
  const curMissing = share(missing, rows);
  if (missing > 0 && curMissing > refMissing + s.maxMissingIncrease) {
    problems.push({
      kind: 'missing-values',
      feature: p.name,
      count: missing,
      share: round(curMissing),
      threshold: round(refMissing + s.maxMissingIncrease),
      message: `${p.name}: ${pct(curMissing)} missing values, reference ${pct(refMissing)} (allowed rise ${pct(s.maxMissingIncrease)})`,
    });
  }
}

function wrongTypeProblem(
  problems: DataProblem[],
  name: string,
  expected: string,
  count: number,
  examples: readonly CellExample[],
  rows: number,
) {
  if (count === 0) return;
  // Cut again here: observations may come from elsewhere than this engine's readers.
  const kept = examples.slice(0, MAX_EXAMPLES).map((e) => ({
    ...cellExample(e.row, e.line, e.value),
    ...(e.length !== undefined ? { length: e.length } : {}),
  }));
  problems.push({
    kind: 'wrong-type',
    feature: name,
    count,
    share: round(share(count, rows)),
    examples: kept,
    message: `${name}: ${count} value(s) that are not ${expected}, e.g. ${kept
      .slice(0, 3)
      .map((e) => quoted(e.value, e.length ?? e.value.length))
      .join(', ')}`,
  });
}

/** An unseen category as a report keeps it: the value cut, its length when cut. */
const unseenEntry = (u: { value: string; count: number }): UnseenCategory => ({
  value: clip(u.value),
  count: u.count,
  ...(u.value.length > MAX_EXAMPLE_CHARS ? { length: u.value.length } : {}),
});

/** A category as a label of `moved`: cut, with its length when cut. */
export const categoryLabel = (value: string) =>
  value.length > MAX_EXAMPLE_CHARS ? `${clip(value)} (${value.length} chars)` : value;

/**
 * What was seen of one numeric feature in the current data: counts on the reference's bins, cell problems, values
 * outside the reference range and, when every value was compared with stored reference values, the exact statistics.
 * Built from columns by `compareData` (src/drift/engine.ts), or from a serving sketch (counts only).
 */
export interface NumericObservation {
  type: 'numeric';
  /** Cells seen (every row, whatever its value). */
  rows: number;
  issues: CellIssues;
  /** Finite values per reference bin. */
  counts: number[];
  belowMin: number;
  aboveMax: number;
  /** Sum of the finite values, for the mean shift of one-sided checks. */
  sum?: number;
  exact?: NumericComparison;
}

/** What was seen of one categorical feature: counts per reference category (then the profile's "other"), unseen ones. */
export interface CategoricalObservation {
  type: 'categorical';
  rows: number;
  issues: CellIssues;
  /** One count per category of the profile's domain, then one for its "other" bucket. */
  counts: number[];
  unseen: { value: string; count: number }[];
}

export type Observation = NumericObservation | CategoricalObservation;

function numericDrift(p: NumericProfile, obs: NumericObservation, o: FeatureOverride | undefined, s: Settings) {
  const c = obs.exact ?? null;
  const curCounts = obs.counts;
  const refCounts = p.bins.counts;
  const refSize = p.count;
  const curSize = curCounts.reduce((a, b) => a + b, 0);
  const statistics: Record<string, number> = {
    psi: round(populationStabilityIndex(refCounts, curCounts)),
    jensenshannon: round(jensenShannonDistance(refCounts, curCounts)),
  };
  const direction = o?.direction === 'both' ? undefined : o?.direction;
  const alternative: Alternative =
    direction === 'increase' ? 'greater' : direction === 'decrease' ? 'less' : 'two-sided';
  const method = chooseMethod('numeric', Math.min(refSize, curSize), o, s, p.name, c === null);
  const threshold = o?.threshold ?? DEFAULT_THRESHOLDS[method];
  const basis = c ? ('exact' as const) : ('binned' as const);
  const base = {
    name: p.name,
    type: 'numeric' as const,
    role: p.role,
    method,
    threshold,
    basis,
    referenceSize: refSize,
    currentSize: curSize,
    ...(direction ? { direction } : {}),
    moved: mostMoved(
      refCounts.map((_, i) => binLabel(p.bins.edges, i)),
      refCounts,
      curCounts,
    ),
  };
  const skip = (why: string): FeatureDrift => ({ ...base, statistic: null, drifted: false, statistics, skipped: why });
  const meanShift = c
    ? c.currentMean - (p.mean ?? 0)
    : obs.sum !== undefined
      ? obs.sum / curSize - (p.mean ?? 0)
      : undefined;
  if (meanShift !== undefined && Number.isFinite(meanShift)) statistics.meanShift = meanShift;
  if (refSize === 0) return skip('the reference has no finite values');
  if (curSize === 0) return skip('the current data has no finite values');
  if (c) {
    statistics.ks = c.ks;
    statistics.ksPValue = c.ksPValue;
    statistics.wasserstein = c.wasserstein;
    statistics.wassersteinNormed = c.wasserstein / Math.max(p.std ?? 0, 1e-3);
  } else {
    const ks = binnedKs(refCounts, curCounts, alternative);
    statistics.ks = ks.statistic;
    statistics.ksPValue = ks.pValue;
  }
  let pValue: number | undefined;
  let statistic: number;
  switch (method) {
    case 'ks':
      statistic = statistics.ks!;
      pValue = statistics.ksPValue;
      break;
    case 'wasserstein':
      if (!c) return skip('Wasserstein needs the reference values, and the profile was saved without them');
      statistic = statistics.wassersteinNormed!;
      break;
    case 'psi':
      statistic = statistics.psi!;
      break;
    default:
      statistic = statistics.jensenshannon!;
  }
  // A one-sided distance counts only a move the chosen way (by the mean, or by the bins without values).
  const shift = statistics.meanShift ?? binnedShift(refCounts, curCounts);
  const movedWay = direction === undefined || (direction === 'increase' ? shift > 0 : shift < 0);
  const drifted = verdict(method, statistic, pValue, threshold) && (TESTS.has(method) || movedWay);
  return {
    ...base,
    statistic: round(statistic),
    ...(pValue !== undefined ? { pValue } : {}),
    drifted,
    statistics,
  };
}

/**
 * KS on counts over the same bins: the largest gap between the two cumulative shares at the bin edges (signed for a
 * one-sided alternative), with the asymptotic p-value. Binning can only lower the statistic: conservative.
 */
function binnedKs(ref: readonly number[], cur: readonly number[], alternative: Alternative) {
  const n1 = ref.reduce((a, b) => a + b, 0);
  const n2 = cur.reduce((a, b) => a + b, 0);
  let a = 0;
  let b = 0;
  let d = 0;
  for (let i = 0; i < ref.length; i++) {
    a += ref[i]!;
    b += cur[i]!;
    const gap = a / n1 - b / n2;
    const v = alternative === 'two-sided' ? Math.abs(gap) : alternative === 'greater' ? gap : -gap;
    if (v > d) d = v;
  }
  return { statistic: d, pValue: ksPValue(d, n1, n2, alternative, 'asymp').pValue };
}

/** Mean bin index of current minus reference: the direction values moved when only bins are known. */
function binnedShift(ref: readonly number[], cur: readonly number[]): number {
  const mean = (c: readonly number[]) => {
    let n = 0;
    let s = 0;
    c.forEach((x, i) => {
      n += x;
      s += x * i;
    });
    return n > 0 ? s / n : 0;
  };
  return mean(cur) - mean(ref);
}

/** Category counts of a column on the reference domain, then its unseen categories. */
export function observeCategorical(p: CategoricalProfile, column: CategoricalColumn): CategoricalObservation {
  const index = new Map(p.domain.map((d, i) => [d.value, i]));
  const local = new Float64Array(column.dictionary.length);
  for (let i = 0; i < column.codes.length; i++) {
    const c = column.codes[i]!;
    if (c >= 0) local[c]!++;
  }
  const counts = new Array<number>(p.domain.length + 1).fill(0);
  const unseen: { value: string; count: number }[] = [];
  column.dictionary.forEach((value, code) => {
    const n = local[code]!;
    if (n === 0) return;
    const at = index.get(value);
    if (at !== undefined) counts[at]! += n;
    else if (p.otherCount > 0) counts[p.domain.length]! += n;
    else unseen.push({ value, count: n });
  });
  unseen.sort((a, b) => b.count - a.count);
  return { type: 'categorical', rows: column.codes.length, issues: column.issues, counts, unseen };
}

function categoricalDrift(
  p: CategoricalProfile,
  obs: CategoricalObservation,
  o: FeatureOverride | undefined,
  s: Settings,
) {
  const { counts: current, unseen } = obs;
  if (o?.direction && o.direction !== 'both') {
    throw new RangeError(`features.${p.name}.direction: a direction applies to numeric features only`);
  }
  const labels = [
    ...p.domain.map((d) => categoryLabel(d.value)),
    '(other)',
    ...unseen.map((u) => `(unseen) ${categoryLabel(u.value)}`),
  ];
  const ref = [...p.domain.map((d) => d.count), p.otherCount, ...unseen.map(() => 0)];
  const cur = [...current, ...unseen.map((u) => u.count)];
  const refSize = p.count;
  const curSize = cur.reduce((a, b) => a + b, 0);
  const chi = chiSquaredHomogeneity(ref, cur);
  const statistics: Record<string, number> = {
    chisquare: round(chi.statistic),
    chisquarePValue: chi.pValue,
    jensenshannon: round(jensenShannonDistance(ref, cur)),
    psi: round(populationStabilityIndex(ref, cur)),
    linf: round(lInfinityDistance(ref, cur)),
  };
  const method = chooseMethod('categorical', Math.min(refSize, curSize), o, s, p.name);
  const threshold = o?.threshold ?? DEFAULT_THRESHOLDS[method];
  const statistic = method === 'chisquare' ? chi.statistic : statistics[method]!;
  const pValue = method === 'chisquare' ? chi.pValue : undefined;
  const empty = refSize === 0 || curSize === 0;
  const drift: FeatureDrift = {
    name: p.name,
    type: 'categorical',
    role: p.role,
    method,
    statistic: empty ? null : round(statistic),
    ...(pValue !== undefined && !empty ? { pValue } : {}),
    threshold,
    drifted: !empty && verdict(method, statistic, pValue, threshold),
    basis: 'exact',
    referenceSize: refSize,
    currentSize: curSize,
    statistics,
    moved: mostMoved(labels, ref, cur),
    ...(unseen.length > 0 ? { unseen: unseen.slice(0, 10).map(unseenEntry) } : {}),
    ...(empty ? { skipped: refSize === 0 ? 'the reference has no values' : 'the current data has no values' } : {}),
  };
  const problems: DataProblem[] = [];
  missingProblem(problems, p, obs.issues.missing, obs.rows, s);
  wrongTypeProblem(problems, p.name, 'categories', obs.issues.wrongType, obs.issues.wrongTypeExamples, obs.rows);
  const unseenCount = unseen.reduce((a, u) => a + u.count, 0);
  const unseenShare = share(unseenCount, curSize);
  if (unseenCount > 0 && unseenShare > s.maxOutOfDomainShare) {
    problems.push({
      kind: 'out-of-domain',
      feature: p.name,
      count: unseenCount,
      share: round(unseenShare),
      threshold: s.maxOutOfDomainShare,
      examples: unseen.slice(0, MAX_EXAMPLES).map(unseenEntry),
      message: `${p.name}: ${unseenCount} value(s) (${pct(unseenShare)}) in categories the reference never had: ${unseen
        .slice(0, MAX_EXAMPLES)
        .map((u) => `${quoted(u.value)} ×${u.count}`)
        .join(', ')}${unseen.length > MAX_EXAMPLES ? `, … (${unseen.length} categories)` : ''}`,
    });
  }
  return { drift, problems };
}

function skippedFeature(p: FeatureProfile, why: string): FeatureDrift {
  return {
    name: p.name,
    type: p.type,
    role: p.role,
    method: 'none',
    statistic: null,
    threshold: null,
    drifted: false,
    basis: 'exact',
    referenceSize: p.count,
    currentSize: 0,
    statistics: {},
    moved: [],
    skipped: why,
  };
}

/** Counts of a column's finite values on the profile's bins, with those outside the reference range. */
export function observeNumericBinned(p: NumericProfile, column: NumericColumn): NumericObservation {
  const edges = p.bins.edges;
  const counts = new Array<number>(edges.length + 1).fill(0);
  const min = p.min ?? -Infinity;
  const max = p.max ?? Infinity;
  let belowMin = 0;
  let aboveMax = 0;
  let total = 0;
  const values = column.values;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) continue;
    counts[binOf(edges, v)]!++;
    total += v;
    if (v < min) belowMin++;
    else if (v > max) aboveMax++;
  }
  return { type: 'numeric', rows: values.length, issues: column.issues, counts, belowMin, aboveMax, sum: total };
}

/** Facts about the current data as a whole, besides its per-feature observations. */
export interface CurrentData {
  rows: number;
  /** Columns of the current data (read or not) — those unknown to the reference are reported as new. */
  columns: readonly string[];
  malformedRows?: number;
  malformedExamples?: ColumnarData['malformedExamples'];
  source?: string;
  /** Columns whose type differs from the reference's. */
  typeMismatches?: readonly { name: string; type: string }[];
  /** The data has no label by nature (serving requests): its absence is not a problem. */
  withoutLabel?: boolean;
}

/**
 * Judges observations of the current data against a reference profile: drift per feature, the data set's drift share
 * and the data problems. The core of every comparison (files, columns, serving sketches).
 */
export function judge(
  reference: Reference['profile'],
  observations: ReadonlyMap<string, Observation>,
  current: CurrentData,
  options: DriftOptions = {},
): DriftReport {
  const s = parseDriftOptions(options);
  const overrides = mapOf(s.features);
  const profile = reference;
  for (const name of overrides.keys()) {
    if (!profile.features.some((f) => f.name === name)) {
      throw new RangeError(`features.${clip(name)}: the reference has no column ${quoted(name)}`);
    }
  }
  const problems: DataProblem[] = [];
  if (current.rows === 0) problems.push({ kind: 'no-rows', message: 'the current data has no rows' });
  const malformed = current.malformedRows ?? 0;
  if (malformed > 0) {
    const examples = (current.malformedExamples ?? [])
      .slice(0, MAX_EXAMPLES)
      .map((m) => ({ ...m, problem: clip(m.problem) }));
    problems.push({
      kind: 'malformed-rows',
      count: malformed,
      examples,
      message: `${malformed} malformed row(s) skipped, e.g. ${examples
        .slice(0, 3)
        .map((m) => `line ${m.line}: ${m.problem}`)
        .join('; ')}`,
    });
  }
  const known = new Set(profile.features.map((f) => f.name));
  const added = current.columns.filter((name) => !known.has(name));
  for (const name of added.slice(0, MAX_NEW_COLUMNS)) {
    const shown = clip(name);
    problems.push({ kind: 'new-column', feature: shown, message: `${shown}: a column the reference does not have` });
  }
  if (added.length > MAX_NEW_COLUMNS) {
    const more = added.length - MAX_NEW_COLUMNS;
    problems.push({
      kind: 'new-column',
      count: more,
      message: `${more} more column(s) the reference does not have (${added.length} in all)`,
    });
  }
  const mismatched = new Map((current.typeMismatches ?? []).map((m) => [m.name, m.type]));
  const features: FeatureDrift[] = [];
  for (const p of profile.features) {
    const o = overrides.get(p.name);
    const other = mismatched.get(p.name);
    if (other !== undefined) {
      problems.push({
        kind: 'type-mismatch',
        feature: p.name,
        message: `${p.name}: ${other} in the current data, ${p.type} in the reference`,
      });
      features.push(skippedFeature(p, `type ${other}, reference ${p.type}`));
      continue;
    }
    if (p.role === 'identifier') {
      features.push(skippedFeature(p, 'an identifier (unique per row)'));
      continue;
    }
    if (o?.skip) {
      features.push(skippedFeature(p, 'skipped by the options'));
      continue;
    }
    const obs = observations.get(p.name);
    if (!obs && p.role === 'label' && current.withoutLabel) {
      features.push(skippedFeature(p, 'the label is not part of this data'));
      continue;
    }
    if (!obs) {
      problems.push({ kind: 'missing-column', feature: p.name, message: `${p.name}: the column is missing` });
      features.push(skippedFeature(p, 'missing from the current data'));
      continue;
    }
    if (p.type === 'categorical' && obs.type === 'categorical') {
      const r = categoricalDrift(p, obs, o, s);
      features.push(r.drift);
      problems.push(...r.problems);
    } else if (p.type === 'numeric' && obs.type === 'numeric') {
      features.push(numericDrift(p, obs, o, s));
      problems.push(...numericProblems(p, obs, s));
    }
  }

  const compared = features.filter((f) => f.role === 'feature' && !f.skipped);
  const drifted = compared.filter((f) => f.drifted).length;
  const datasetDriftShare = share(drifted, compared.length);
  const datasetDrift = drifted > 0 && datasetDriftShare >= s.driftShare;
  return {
    reference: { rows: profile.rows, ...(profile.source.path ? { source: profile.source.path } : {}) },
    current: { rows: current.rows, ...(current.source ? { source: current.source } : {}) },
    features,
    comparedFeatures: compared.length,
    driftedFeatures: drifted,
    driftShare: s.driftShare,
    datasetDriftShare: round(datasetDriftShare),
    datasetDrift,
    problems,
    ok: problems.length === 0 && !features.some((f) => f.drifted),
  };
}

/** The compact form of a report that lifecycles keep in their state and history. */
export function summarizeDrift(r: DriftReport): DriftSummary {
  return {
    datasetDrift: r.datasetDrift,
    driftShare: r.driftShare,
    datasetDriftShare: r.datasetDriftShare,
    comparedFeatures: r.comparedFeatures,
    referenceRows: r.reference.rows,
    currentRows: r.current.rows,
    features: r.features
      .filter((f) => !f.skipped)
      .map((f) => ({
        name: f.name,
        role: f.role,
        method: f.method,
        statistic: f.statistic,
        ...(f.pValue !== undefined ? { pValue: f.pValue } : {}),
        threshold: f.threshold,
        drifted: f.drifted,
        ...(f.moved[0]
          ? {
              moved: `${f.moved[0].what} ${(f.moved[0].reference * 100).toFixed(1)}%→${(f.moved[0].current * 100).toFixed(1)}%`,
            }
          : {}),
      })),
    problems: r.problems.map((p) => p.message),
  };
}
