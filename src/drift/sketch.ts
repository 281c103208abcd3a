import { z } from 'zod';
import { emptyIssues, type CellIssues } from './columns';
import { judge, type DriftReport, type Observation } from './compare';
import type { DriftOptions } from './options';
import { binOf } from './kernels';
import type { DataProfile } from './profile';

/**
 * Serving-side sketches: per deployed version, cumulative counts of each input feature on the training profile's bins
 * and categories, plus cell problems. A few numbers per feature, updated in O(log bins) per request, so the gateway
 * never keeps raw rows; a window is the difference of two snapshots, judged against the profile like any data.
 */

/** Distinct unseen categories counted by name per feature; more are counted together. */
export const MAX_UNSEEN_TRACKED = 50;

export type SketchPlanFeature =
  | { name: string; type: 'numeric'; edges: number[]; min: number | null; max: number | null }
  | { name: string; type: 'categorical'; domain: string[]; hasOther: boolean };

/** What a sketch counts: the profile's features (not its label or identifiers), their bins and domains. */
export interface SketchPlan {
  features: SketchPlanFeature[];
}

export function sketchPlanOf(profile: DataProfile): SketchPlan {
  return {
    features: profile.features
      .filter((f) => f.role === 'feature')
      .map((f) =>
        f.type === 'numeric'
          ? { name: f.name, type: 'numeric', edges: f.bins.edges, min: f.min, max: f.max }
          : { name: f.name, type: 'categorical', domain: f.domain.map((d) => d.value), hasOther: f.otherCount > 0 },
      ),
  };
}

const Count = z.number().int().nonnegative();
const Issues = {
  rows: Count,
  missing: Count,
  wrongType: Count,
};

export const FeatureSketch = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('numeric'),
    ...Issues,
    nan: Count,
    posInf: Count,
    negInf: Count,
    counts: z.array(Count),
    belowMin: Count,
    aboveMax: Count,
    sum: z.number(),
  }),
  z.object({
    type: z.literal('categorical'),
    ...Issues,
    /** Per domain category, then the "other" bucket. */
    counts: z.array(Count),
    unseen: z.record(z.string(), Count),
    /** Unseen values beyond MAX_UNSEEN_TRACKED distinct names. */
    unseenOther: Count,
  }),
]);
export type FeatureSketch = z.infer<typeof FeatureSketch>;

export const DataSketch = z.object({
  /** Requests seen. */
  rows: Count,
  /** Request keys the profile does not know, with counts. */
  unknownKeys: z.record(z.string(), Count),
  features: z.record(z.string(), FeatureSketch),
});
export type DataSketch = z.infer<typeof DataSketch>;

type Value = number | string | null | undefined | unknown;

interface NumericCounter {
  plan: Extract<SketchPlanFeature, { type: 'numeric' }>;
  sketch: Extract<FeatureSketch, { type: 'numeric' }>;
}
interface CategoricalCounter {
  plan: Extract<SketchPlanFeature, { type: 'categorical' }>;
  index: Map<string, number>;
  sketch: Extract<FeatureSketch, { type: 'categorical' }>;
}

/** Cumulative sketch of the requests one version received. */
export class DataSketcher {
  private rows = 0;
  private readonly unknownKeys = new Map<string, number>();
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
              unseen: {},
              unseenOther: 0,
            },
          },
    );
  }

  /** Counts one request's features. */
  record(features: Readonly<Record<string, Value>>): void {
    this.rows++;
    for (const c of this.counters) {
      const v = features[c.plan.name];
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
        else if (v in sk.unseen) sk.unseen[v]!++;
        else if (Object.keys(sk.unseen).length < MAX_UNSEEN_TRACKED) sk.unseen[v] = 1;
        else sk.unseenOther++;
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
        sk.sum += v;
        if (plan.min !== null && v < plan.min) sk.belowMin++;
        else if (plan.max !== null && v > plan.max) sk.aboveMax++;
      }
    }
    for (const key in features) {
      if (!this.known.has(key)) this.unknownKeys.set(key, (this.unknownKeys.get(key) ?? 0) + 1);
    }
  }

  snapshot(): DataSketch {
    return {
      rows: this.rows,
      unknownKeys: Object.fromEntries(this.unknownKeys),
      features: Object.fromEntries(this.counters.map((c) => [c.plan.name, structuredClone(c.sketch)])),
    };
  }
}

const minus = (a: number, b: number | undefined) => Math.max(0, a - (b ?? 0));

/**
 * The sketch of the requests between two snapshots of one version (`before` may be missing: deployed after the
 * window started). A counter that went down means the gateway restarted: `after` is then taken whole.
 */
export function sketchWindow(after: DataSketch, before: DataSketch | undefined): DataSketch {
  if (!before || before.rows > after.rows) return after;
  const features: Record<string, FeatureSketch> = {};
  for (const [name, a] of Object.entries(after.features)) {
    const b = before.features[name];
    if (!b || b.type !== a.type) {
      features[name] = a;
      continue;
    }
    const base = {
      rows: minus(a.rows, b.rows),
      missing: minus(a.missing, b.missing),
      wrongType: minus(a.wrongType, b.wrongType),
    };
    if (a.type === 'numeric' && b.type === 'numeric') {
      features[name] = {
        ...a,
        ...base,
        nan: minus(a.nan, b.nan),
        posInf: minus(a.posInf, b.posInf),
        negInf: minus(a.negInf, b.negInf),
        counts: a.counts.map((c, i) => minus(c, b.counts[i])),
        belowMin: minus(a.belowMin, b.belowMin),
        aboveMax: minus(a.aboveMax, b.aboveMax),
        sum: a.sum - b.sum,
      };
    } else if (a.type === 'categorical' && b.type === 'categorical') {
      features[name] = {
        ...a,
        ...base,
        counts: a.counts.map((c, i) => minus(c, b.counts[i])),
        unseen: Object.fromEntries(
          Object.entries(a.unseen)
            .map(([k, v]) => [k, minus(v, b.unseen[k])] as const)
            .filter(([, v]) => v > 0),
        ),
        unseenOther: minus(a.unseenOther, b.unseenOther),
      };
    }
  }
  return {
    rows: minus(after.rows, before.rows),
    unknownKeys: Object.fromEntries(
      Object.entries(after.unknownKeys)
        .map(([k, v]) => [k, minus(v, before.unknownKeys[k])] as const)
        .filter(([, v]) => v > 0),
    ),
    features,
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
      if (s.unseenOther > 0) unseen.push({ value: `(${MAX_UNSEEN_TRACKED}+ more categories)`, count: s.unseenOther });
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
      columns: [...Object.keys(sketch.features), ...Object.keys(sketch.unknownKeys)],
      source: 'serving window',
      withoutLabel: true,
    },
    options,
  );
}
