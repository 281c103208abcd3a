import { z } from 'zod';
import { FeatureName, nameRecord } from '../shared/names';
import { clip } from './columns';

/**
 * Drift comparison options: which method and threshold each feature gets, one-sided checks, the data set's drift share
 * and the limits of the data-type checks. Plain schemas (no Node imports): lifecycle specs embed them.
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
  const path = issue.path.length ? issue.path.map((k) => clip(String(k))).join('.') : top;
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
