import {
  MAX_TRACKED_NAME_LENGTH,
  MAX_UNKNOWN_KEYS_TRACKED,
  MAX_UNSEEN_TRACKED,
  MAX_UNSEEN_TRACKED_TOTAL,
  type DataSketch,
  type DriftOptions,
  type FeatureSketch,
  type SketchPlan,
  type SketchPlanFeature,
} from '../shared/drift';
import { featureNameProblem } from '../shared/names';
import { own } from '../shared/own';
import { emptyIssues, type CellIssues } from './columns';
import { judge, type DriftReport, type Observation } from './compare';
import { binOf } from './kernels';
import type { DataProfile } from './profile';

/**
 * Serving-side sketches: per deployed version, cumulative counts of each input feature on the training profile's bins
 * and categories, plus cell problems (the schema, `DataSketch`, and its bounds are in src/shared/drift.ts). A few numbers per feature, updated in O(log bins) per request, so the gateway
 * never keeps raw rows; a window is the difference of two snapshots, judged against the profile like any data.
 *
 * Names that come from requests (unknown keys, unseen categories) are counted in bounded space whatever the traffic:
 * at most {@link MAX_UNKNOWN_KEYS_TRACKED} unknown keys, {@link MAX_UNSEEN_TRACKED} unseen categories per feature and
 * {@link MAX_UNSEEN_TRACKED_TOTAL} over all features are counted by name, each name cut to
 * {@link MAX_TRACKED_NAME_LENGTH} characters ({@link trackedName}); the rest is counted together
 * (`unknownKeysOther`, `unseenOther`). A name that is tracked stays tracked, so every occurrence lands in the same
 * counter in every snapshot and a window (`sketchWindow`) is still the difference of two snapshots, name by name.
 * `maxSketchJsonBytes` (src/shared/drift.ts) is the largest a snapshot can get in JSON.
 */

/** What marks a name that was cut. */
const CUT = '…';

/** How observations name the unseen categories counted together. */
export const UNTRACKED_CATEGORIES = '(other unseen categories)';

/** How a serving window lists the unknown keys counted together among its columns. */
export const UNTRACKED_KEYS = '(other unknown keys)';

/**
 * The name a sketch counts `value` under: itself, or its first {@link MAX_TRACKED_NAME_LENGTH} code units followed by
 * `…` (never splitting a surrogate pair). Values that share those first characters are counted together. Undefined for
 * `__proto__`, which JSON readers drop or turn into a prototype: it is counted with the untracked names.
 */
export function trackedName(value: string): string | undefined {
  if (value.length <= MAX_TRACKED_NAME_LENGTH) return value === '__proto__' ? undefined : value;
  let end = MAX_TRACKED_NAME_LENGTH;
  const last = value.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return value.slice(0, end) + CUT;
}

/** The plan of `profile`; throws when a feature's name is not a valid feature name (see src/shared/names.ts). */
export function sketchPlanOf(profile: DataProfile): SketchPlan {
  const features = profile.features.filter((f) => f.role === 'feature');
  for (const [i, f] of features.entries()) {
    const problem = featureNameProblem(f.name);
    if (problem) throw new RangeError(`features[${i}].name: ${problem}`);
  }
  return {
    features: features.map((f) =>
      f.type === 'numeric'
        ? { name: f.name, type: 'numeric', edges: f.bins.edges, min: f.min, max: f.max }
        : { name: f.name, type: 'categorical', domain: f.domain.map((d) => d.value), hasOther: f.otherCount > 0 },
    ),
  };
}

type Value = number | string | null | undefined | unknown;

type NumericSketch = Extract<FeatureSketch, { type: 'numeric' }>;
type CategoricalSketch = Extract<FeatureSketch, { type: 'categorical' }>;

interface NumericCounter {
  plan: Extract<SketchPlanFeature, { type: 'numeric' }>;
  sketch: NumericSketch;
}
interface CategoricalCounter {
  plan: Extract<SketchPlanFeature, { type: 'categorical' }>;
  index: Map<string, number>;
  /** Every counter but `unseen`, which is kept in `unseen` below. */
  sketch: Omit<CategoricalSketch, 'unseen'>;
  unseen: Map<string, number>;
}

/** Adds one to `name` in `counts` when it is tracked, or may still be (below `limit` names); false when it is not. */
function countName(counts: Map<string, number>, name: string | undefined, limit: number): boolean {
  if (name === undefined) return false;
  const n = counts.get(name);
  if (n !== undefined) counts.set(name, n + 1);
  else if (counts.size < limit) counts.set(name, 1);
  else return false;
  return true;
}

/** Cumulative sketch of the requests one version received; its memory and snapshots are bounded (see above). */
export class DataSketcher {
  private rows = 0;
  private readonly unknownKeys = new Map<string, number>();
  private unknownKeysOther = 0;
  /** Unseen categories counted by name over all features, against MAX_UNSEEN_TRACKED_TOTAL. */
  private unseenTracked = 0;
  private readonly known: Set<string>;
  private readonly counters: (NumericCounter | CategoricalCounter)[];

  constructor(readonly plan: SketchPlan) {
    this.known = new Set(plan.features.map((f) => f.name));
    this.counters = plan.features.map((f) =>
      f.type === 'numeric'
        ? {
            plan: f,
            sketch: {
              type: 'numeric',
              rows: 0,
              missing: 0,
              wrongType: 0,
              nan: 0,
              posInf: 0,
              negInf: 0,
              counts: new Array<number>(f.edges.length + 1).fill(0),
              belowMin: 0,
              aboveMax: 0,
              sum: 0,
            },
          }
        : {
            plan: f,
            index: new Map(f.domain.map((v, i) => [v, i])),
            sketch: {
              type: 'categorical',
              rows: 0,
              missing: 0,
              wrongType: 0,
              counts: new Array<number>(f.domain.length + 1).fill(0),
              unseenOther: 0,
            },
            unseen: new Map(),
          },
    );
  }

  /** Counts one request's features (own properties only: a feature the request lacks is missing). */
  record(features: Readonly<Record<string, Value>>): void {
    this.rows++;
    for (const c of this.counters) {
      const v = own(features, c.plan.name);
      const s = c.sketch;
      s.rows++;
      if (v === null || v === undefined || v === '') {
        s.missing++;
        continue;
      }
      if ('index' in c) {
        const sk = c.sketch;
        if (typeof v !== 'string') {
          sk.wrongType++;
          continue;
        }
        const at = c.index.get(v);
        if (at !== undefined) sk.counts[at]!++;
        else if (c.plan.hasOther) sk.counts[c.plan.domain.length]!++;
        else this.recordUnseen(c, v);
        continue;
      }
      const sk = (c as NumericCounter).sketch;
      const plan = (c as NumericCounter).plan;
      if (typeof v !== 'number') {
        sk.wrongType++;
        continue;
      }
      if (Number.isNaN(v)) sk.nan++;
      else if (v === Infinity) sk.posInf++;
      else if (v === -Infinity) sk.negInf++;
      else {
        sk.counts[binOf(plan.edges, v)]!++;
        // Kept finite: values near ±1.8e308 would overflow it to ±Infinity, which JSON writes as null.
        sk.sum = Math.min(Number.MAX_VALUE, Math.max(-Number.MAX_VALUE, sk.sum + v));
        if (plan.min !== null && v < plan.min) sk.belowMin++;
        else if (plan.max !== null && v > plan.max) sk.aboveMax++;
      }
    }
    for (const key of Object.keys(features)) {
      if (this.known.has(key)) continue;
      if (!countName(this.unknownKeys, trackedName(key), MAX_UNKNOWN_KEYS_TRACKED)) this.unknownKeysOther++;
    }
  }

  private recordUnseen(c: CategoricalCounter, value: string): void {
    const name = trackedName(value);
    const before = c.unseen.size;
    const room = Math.min(MAX_UNSEEN_TRACKED, before + MAX_UNSEEN_TRACKED_TOTAL - this.unseenTracked);
    if (!countName(c.unseen, name, room)) c.sketch.unseenOther++;
    else if (c.unseen.size > before) this.unseenTracked++;
  }

  snapshot(): DataSketch {
    return {
      rows: this.rows,
      unknownKeys: Object.fromEntries(this.unknownKeys),
      unknownKeysOther: this.unknownKeysOther,
      features: Object.fromEntries(
        this.counters.map((c): [string, FeatureSketch] =>
          'index' in c
            ? [c.plan.name, { ...c.sketch, counts: [...c.sketch.counts], unseen: Object.fromEntries(c.unseen) }]
            : [c.plan.name, { ...c.sketch, counts: [...c.sketch.counts] }],
        ),
      ),
    };
  }
}

/** `after`'s count less `before`'s; only called once {@link sketchRestarted} said no counter went down. */
const minus = (a: number, b: number | undefined) => a - (b ?? 0);

/** `after` minus `before`, name by name, keeping the names whose count grew. */
function namesWindow(after: Readonly<Record<string, number>>, before: Readonly<Record<string, number>>) {
  return Object.fromEntries(
    Object.entries(after)
      .map(([k, v]) => [k, minus(v, own(before, k))] as const)
      .filter(([, v]) => v > 0),
  );
}

/** A name of `before` that `after` lost, or counted less. */
const namesDecreased = (after: Readonly<Record<string, number>>, before: Readonly<Record<string, number>>) =>
  Object.entries(before).some(([k, v]) => (own(after, k) ?? 0) < v);

const countsDecreased = (after: readonly number[], before: readonly number[]) =>
  after.length !== before.length || before.some((b, i) => (after[i] ?? 0) < b);

/**
 * Whether `after` is not a continuation of `before`: a counter went down (rows, a feature's counter, bin or category,
 * a name's count), or the features differ (another plan, so another sketcher). Every counter of a sketch only grows
 * (a tracked name stays tracked; `sum` is not a counter), so this means the counting started again from zero: the
 * gateway restarted, or the version was redeployed.
 */
export function sketchRestarted(after: DataSketch, before: DataSketch): boolean {
  if (after.rows < before.rows || (after.unknownKeysOther ?? 0) < (before.unknownKeysOther ?? 0)) return true;
  if (namesDecreased(after.unknownKeys, before.unknownKeys)) return true;
  const features = Object.entries(after.features);
  if (features.length !== Object.keys(before.features).length) return true;
  return features.some(([name, a]) => {
    const b = own(before.features, name);
    if (!b || b.type !== a.type) return true;
    if (a.rows < b.rows || a.missing < b.missing || a.wrongType < b.wrongType) return true;
    if (countsDecreased(a.counts, b.counts)) return true;
    if (a.type === 'numeric' && b.type === 'numeric') {
      return (
        a.nan < b.nan ||
        a.posInf < b.posInf ||
        a.negInf < b.negInf ||
        a.belowMin < b.belowMin ||
        a.aboveMax < b.aboveMax
      );
    }
    return (
      a.type === 'categorical' &&
      b.type === 'categorical' &&
      (a.unseenOther < b.unseenOther || namesDecreased(a.unseen, b.unseen))
    );
  });
}

/**
 * The sketch of the requests between two snapshots of one version (`before` may be missing: deployed after the
 * window started, or its counters restarted). When the counting restarted in between ({@link sketchRestarted}),
 * `after` is the window whole: the requests since the restart. Counts are never clamped.
 */
export function sketchWindow(after: DataSketch, before: DataSketch | undefined): DataSketch {
  if (!before || sketchRestarted(after, before)) return after;
  const features = new Map<string, FeatureSketch>();
  for (const [name, a] of Object.entries(after.features)) {
    const b = own(before.features, name)!;
    const base = {
      rows: minus(a.rows, b.rows),
      missing: minus(a.missing, b.missing),
      wrongType: minus(a.wrongType, b.wrongType),
    };
    if (a.type === 'numeric' && b.type === 'numeric') {
      features.set(name, {
        ...a,
        ...base,
        nan: minus(a.nan, b.nan),
        posInf: minus(a.posInf, b.posInf),
        negInf: minus(a.negInf, b.negInf),
        counts: a.counts.map((c, i) => minus(c, b.counts[i])),
        belowMin: minus(a.belowMin, b.belowMin),
        aboveMax: minus(a.aboveMax, b.aboveMax),
        sum: a.sum - b.sum,
      });
    } else if (a.type === 'categorical' && b.type === 'categorical') {
      features.set(name, {
        ...a,
        ...base,
        counts: a.counts.map((c, i) => minus(c, b.counts[i])),
        unseen: namesWindow(a.unseen, b.unseen),
        unseenOther: minus(a.unseenOther, b.unseenOther),
      });
    }
  }
  return {
    rows: minus(after.rows, before.rows),
    unknownKeys: namesWindow(after.unknownKeys, before.unknownKeys),
    ...(after.unknownKeysOther !== undefined
      ? { unknownKeysOther: minus(after.unknownKeysOther, before.unknownKeysOther) }
      : {}),
    features: Object.fromEntries(features),
  };
}

function issuesOf(s: FeatureSketch): CellIssues {
  const issues = emptyIssues();
  issues.missing = s.missing;
  issues.wrongType = s.wrongType;
  if (s.type === 'numeric') {
    issues.nan = s.nan;
    issues.posInf = s.posInf;
    issues.negInf = s.negInf;
  }
  return issues;
}

/** Observations of a sketch, for `judge`. */
export function observationsOfSketch(sketch: DataSketch): Map<string, Observation> {
  const out = new Map<string, Observation>();
  for (const [name, s] of Object.entries(sketch.features)) {
    if (s.type === 'numeric') {
      out.set(name, {
        type: 'numeric',
        rows: s.rows,
        issues: issuesOf(s),
        counts: s.counts,
        belowMin: s.belowMin,
        aboveMax: s.aboveMax,
        sum: s.sum,
      });
    } else {
      const unseen = Object.entries(s.unseen)
        .map(([value, count]) => ({ value, count }))
        .sort((a, b) => b.count - a.count);
      if (s.unseenOther > 0) unseen.push({ value: UNTRACKED_CATEGORIES, count: s.unseenOther });
      out.set(name, { type: 'categorical', rows: s.rows, issues: issuesOf(s), counts: s.counts, unseen });
    }
  }
  return out;
}

/**
 * Judges a serving window against the training profile. Every numeric comparison is on the profile's bins (the
 * sketch has no raw values): KS from the binned distributions for small windows, PSI for large ones by default.
 */
export function compareSketch(profile: DataProfile, sketch: DataSketch, options: DriftOptions = {}): DriftReport {
  return judge(
    profile,
    observationsOfSketch(sketch),
    {
      rows: sketch.rows,
      columns: [
        ...Object.keys(sketch.features),
        ...Object.keys(sketch.unknownKeys),
        ...((sketch.unknownKeysOther ?? 0) > 0 ? [UNTRACKED_KEYS] : []),
      ],
      source: 'serving window',
      withoutLabel: true,
    },
    options,
  );
}
