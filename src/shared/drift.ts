import { z } from 'zod';
import { FeatureName, nameRecord } from './names';
import { cut } from './text';

/*
 * The drift engine's contracts (src/drift): its options, which lifecycle specs embed, and the serving sketches that
 * gateways report and workflows judge. Plain schemas and arithmetic: workflow code imports them.
 */

/**
 * Longest value text an example or a report quotes, in characters: a cell may be megabytes long, and reports travel
 * through workflow history and alerts.
 */
export const MAX_EXAMPLE_CHARS = 80;

/**
 * Drift comparison options: which method and threshold each feature gets, one-sided checks, the data set's drift share
 * and the limits of the data-type checks. Lifecycle specs embed them.
 */

export const NumericMethod = z.enum(['ks', 'wasserstein', 'psi', 'jensenshannon']);
export const CategoricalMethod = z.enum(['chisquare', 'jensenshannon', 'psi', 'linf']);
export const DriftMethod = z.enum([...NumericMethod.options, 'chisquare', 'linf']);
export type DriftMethod = z.infer<typeof DriftMethod>;

/** Methods whose threshold is a significance level on a p-value; the others compare a distance. */
export const TESTS = new Set<DriftMethod>(['ks', 'chisquare']);

export const DEFAULT_THRESHOLDS: Record<DriftMethod, number> = {
  ks: 0.05,
  chisquare: 0.05,
  wasserstein: 0.1,
  psi: 0.1,
  jensenshannon: 0.1,
  linf: 0.1,
};

export const FeatureOverride = z.strictObject({
  method: DriftMethod.optional(),
  threshold: z.number().positive().optional(),
  /**
   * Only a move in this direction counts as drift (numeric features): the KS test becomes one-sided, distances
   * count only when the mean moved this way.
   */
  direction: z.enum(['increase', 'decrease', 'both']).optional(),
  /** Leave the feature out of the comparison. */
  skip: z.boolean().optional(),
});
export type FeatureOverride = z.infer<typeof FeatureOverride>;

export const DriftOptions = z.strictObject({
  /** Samples at or below this size (the smaller side) get a statistical test by default, larger ones a distance. */
  smallSample: z.number().int().positive().default(1000),
  /** Share of compared features that must drift for the data set to drift. */
  driftShare: z.number().min(0).max(1).default(0.5),
  /** Per-feature overrides, keyed by feature name (src/shared/names.ts: `__proto__` and other non-names refused). */
  features: nameRecord(FeatureName, FeatureOverride).default({}),
  /** Largest rise of a feature's missing-value share over the reference's before it is a problem. */
  maxMissingIncrease: z.number().min(0).max(1).default(0.05),
  /** Largest share of numbers outside the reference's [min, max] before it is a problem. */
  maxOutOfRangeShare: z.number().min(0).max(1).default(0.01),
  /** Largest share of values in categories the reference never had before it is a problem. */
  maxOutOfDomainShare: z.number().min(0).max(1).default(0),
  /** Worker threads for numeric features (0: this thread); default by input size. */
  workers: z.number().int().min(0).optional(),
});
export type DriftOptions = z.input<typeof DriftOptions>;
export type Settings = z.output<typeof DriftOptions>;

/** One problem of a parse, with its path; a refused record key says why (zod's own text is "Invalid key in record"). */
export function issueText(issue: z.core.$ZodIssue, top = '(options)'): string {
  // A path holds the caller's keys: cut each as a report cuts a value.
  const path = issue.path.length ? issue.path.map((k) => cut(String(k), MAX_EXAMPLE_CHARS)).join('.') : top;
  const why = issue.code === 'invalid_key' ? (issue.issues[0]?.message ?? issue.message) : issue.message;
  return `${path}: ${why}`;
}

/**
 * The options as the engine takes them from code: features keyed by any name a profile holds (a profile saved before
 * names were checked, or built from arrays), read through a Map. Callers' options are checked at the edge with
 * `DriftOptions`.
 */
const EngineOptions = DriftOptions.extend({ features: z.record(z.string(), FeatureOverride).default({}) });

/** Drift options parsed, or a RangeError naming every problem by its path (`features.age.method: …`). */
export function parseDriftOptions(options: DriftOptions): Settings {
  const parsed = EngineOptions.safeParse(options);
  if (!parsed.success) throw new RangeError(parsed.error.issues.map((i) => issueText(i)).join('; '));
  return parsed.data;
}

/*
 * Serving sketches (src/drift/sketch.ts counts them): per deployed version, cumulative counts of each input feature on
 * the training profile's bins and categories, plus cell problems. Names that come from requests are counted in
 * bounded space, so a snapshot has a bounded size ({@link maxSketchJsonBytes}).
 */

/** Distinct unseen categories counted by name per feature; more are counted together. */
export const MAX_UNSEEN_TRACKED = 50;

/** Distinct unseen categories counted by name over all features of a sketch; more are counted together. */
export const MAX_UNSEEN_TRACKED_TOTAL = 100;

/** Distinct unknown request keys counted by name; more are counted together (`unknownKeysOther`). */
export const MAX_UNKNOWN_KEYS_TRACKED = 50;

/** Longest name (UTF-16 code units) a sketch keeps of an unseen category or an unknown key; longer ones are cut. */
export const MAX_TRACKED_NAME_LENGTH = 64;

export type SketchPlanFeature =
  | { name: string; type: 'numeric'; edges: number[]; min: number | null; max: number | null }
  | { name: string; type: 'categorical'; domain: string[]; hasOther: boolean };

/** What a sketch counts: the profile's features (not its label or identifiers), their bins and domains. */
export interface SketchPlan {
  features: SketchPlanFeature[];
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
    /** Unseen categories by name (see `trackedName` in src/drift/sketch.ts). */
    unseen: z.record(z.string(), Count),
    /** Unseen values not counted by name: beyond MAX_UNSEEN_TRACKED per feature or MAX_UNSEEN_TRACKED_TOTAL in all. */
    unseenOther: Count,
  }),
]);
export type FeatureSketch = z.infer<typeof FeatureSketch>;

export const DataSketch = z.object({
  /** Requests seen. */
  rows: Count,
  /** Request keys the profile does not know, with counts (at most MAX_UNKNOWN_KEYS_TRACKED names). */
  unknownKeys: z.record(z.string(), Count),
  /** Occurrences of unknown keys not counted by name; absent in snapshots of gateways that did not bound them. */
  unknownKeysOther: Count.optional(),
  features: z.record(z.string(), FeatureSketch),
});
export type DataSketch = z.infer<typeof DataSketch>;

/**
 * Largest JSON text (UTF-8 bytes) of a snapshot of a sketch on `plan`, whatever the requests were. Per tracked name
 * (`"name":count,`): 64 code units of at most 6 bytes each (a control character is escaped as `\u001f`), the `…` (3),
 * quotes, colon, comma and a count below 2^53 (16 digits): {@link TRACKED_NAME_JSON_BYTES}. Per feature: its name
 * (a feature name: at most 128 code units of at most 3 bytes), the fixed keys, counters of 16 digits and a sum of 24
 * characters, and one counter per bin or category (17 with its comma). So, with B_i bins (edges + 1) per numeric
 * feature and D_j categories per categorical one:
 *
 *   140 + 50·407 + 100·407 + Σ_i (700 + 17·B_i) + Σ_j (600 + 17·(D_j + 1))
 *
 * (61 KB of names at most, of which unknown keys ≤ 20 KB and unseen categories ≤ 41 KB; the rest is the profile's.)
 */
export function maxSketchJsonBytes(plan: SketchPlan): number {
  let bytes = SKETCH_FIXED_JSON_BYTES + (MAX_UNKNOWN_KEYS_TRACKED + MAX_UNSEEN_TRACKED_TOTAL) * TRACKED_NAME_JSON_BYTES;
  for (const f of plan.features) {
    bytes +=
      f.type === 'numeric'
        ? NUMERIC_FEATURE_JSON_BYTES + COUNT_JSON_BYTES * (f.edges.length + 1)
        : CATEGORICAL_FEATURE_JSON_BYTES + COUNT_JSON_BYTES * (f.domain.length + 1);
  }
  return bytes;
}

/** A counter below 2^53 with its comma. */
const COUNT_JSON_BYTES = 17;
/** `"name":count,` for a tracked name: quotes, 64 code units of ≤ 6 bytes, `…`, colon, count, comma. */
const TRACKED_NAME_JSON_BYTES = 2 + MAX_TRACKED_NAME_LENGTH * 6 + 3 + 1 + COUNT_JSON_BYTES;
/** `{"rows":…,"unknownKeys":{},"unknownKeysOther":…,"features":{}}` with two counters. */
const SKETCH_FIXED_JSON_BYTES = 140;
/** A feature's name as a key (≤ 128 code units of ≤ 3 bytes, quoted), its fixed keys and 9 counters and a sum. */
const NUMERIC_FEATURE_JSON_BYTES = 700;
/** A feature's name as a key, its fixed keys and 5 counters. */
const CATEGORICAL_FEATURE_JSON_BYTES = 600;
