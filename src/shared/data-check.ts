import { z } from 'zod';
import { DriftOptions, issueText } from './drift';
import type { AlertKind, Observation } from './alerts';
import { Duration } from './duration';
import { ModelName } from './gateway-api';

/**
 * Scheduled checks of a data pipeline's batches (R8): the input of `dataCheckWorkflow`, which a Temporal Schedule
 * (`data-check-<name>`) starts on its timer. Workflow-safe: zod and shared schemas only.
 */

/** The alert kinds a data check reports, each keyed `data:<name>:<kind>`. */
export const DATA_CHECK_KINDS = [
  'data-drift',
  'label-drift',
  'data-types',
  'data-quota-rate',
] as const satisfies readonly AlertKind[];
export type DataCheckKind = (typeof DATA_CHECK_KINDS)[number];

/** Every data problem the drift engine reports (src/drift/compare.ts `ProblemKind`). */
export const DataProblemKind = z.enum([
  'no-rows',
  'malformed-rows',
  'missing-column',
  'new-column',
  'type-mismatch',
  'missing-values',
  'nan',
  'infinity',
  'wrong-type',
  'out-of-range',
  'out-of-domain',
]);
export type DataProblemKind = z.infer<typeof DataProblemKind>;

/**
 * Problems that fire `data-types` by default: the batch does not have the reference's schema (columns missing, new
 * or of another type, rows malformed or none at all) or its cells are missing or corrupt (missing values above the
 * reference's share, NaN/±Inf, values of the wrong type). Out-of-range numbers and unseen categories are about the
 * values' distribution, which `data-drift` watches: they are reported with the check, and fire `data-types` only when
 * listed in `typeProblems`.
 */
export const DEFAULT_TYPE_PROBLEMS: readonly DataProblemKind[] = [
  'no-rows',
  'malformed-rows',
  'missing-column',
  'new-column',
  'type-mismatch',
  'wrong-type',
  'missing-values',
  'nan',
  'infinity',
];

/** A data pipeline's name: it names the schedule (`data-check-<name>`) and the alert keys (`data:<name>:…`). */
export const DataPipelineName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, starting with a letter or digit');

const Severity = z.enum(['info', 'warning', 'critical']);

/** Each batch is one check: fire on the first bad one, resolve on the first good one. */
export const DATA_CHECK_HYSTERESIS = { fireAfter: 1, window: 1, resolveAfter: 1 } as const;

const Hysteresis = z
  .strictObject({
    fireAfter: z.number().int().min(1),
    window: z.number().int().min(1),
    resolveAfter: z.number().int().min(1),
  })
  .refine((h) => h.window >= h.fireAfter, { path: ['window'], message: 'must be at least fireAfter' });

const DEFAULT_SEVERITY = {
  'data-drift': 'warning',
  'label-drift': 'warning',
  'data-types': 'critical',
  'data-quota-rate': 'warning',
} as const;

/** The placeholder in `current` replaced by the run's date (YYYY-MM-DD, UTC). */
export const DATE_PLACEHOLDER = '{date}';

export const DataCheckInput = z.strictObject({
  /** The pipeline checked. */
  name: DataPipelineName,
  /** A profile (`mlctl data profile`), an artifact folder holding one, or a reference data file (CSV/JSONL). */
  reference: z.string().min(1, 'a path to the reference profile or data'),
  /** The batch to check (CSV/JSONL); `{date}` stands for the scheduled run's date, e.g. `batches/{date}.csv`. */
  current: z.string().min(1, 'a path to the batch to check'),
  /** The model the pipeline feeds, carried on its alerts (routing, `mlctl alerts --model`). */
  model: ModelName.optional(),
  /** A quota pool whose burn rate the check watches (`data-quota-rate`). */
  pool: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a quota pool name')
    .optional(),
  /** `data-quota-rate` fires when a resource of the pool runs out within this horizon at its current burn rate. */
  quotaHorizon: Duration.default(24 * 3_600_000),
  /** …or when its share of capacity is above this. */
  quotaShare: z.number().gt(0).max(1).default(0.9),
  /** Share of compared features that must drift for the data set to drift. */
  driftShare: z.number().min(0).max(1).default(0.5),
  /** Per-feature methods, thresholds, directions and skips, and the data-problem limits (as `mlctl data check`). */
  options: DriftOptions.omit({ driftShare: true }).optional(),
  /** Problem kinds that fire `data-types`. */
  typeProblems: z.array(DataProblemKind).default([...DEFAULT_TYPE_PROBLEMS]),
  severity: z
    .strictObject({
      'data-drift': Severity.default(DEFAULT_SEVERITY['data-drift']),
      'label-drift': Severity.default(DEFAULT_SEVERITY['label-drift']),
      'data-types': Severity.default(DEFAULT_SEVERITY['data-types']),
      'data-quota-rate': Severity.default(DEFAULT_SEVERITY['data-quota-rate']),
    })
    .default({ ...DEFAULT_SEVERITY }),
  hysteresis: Hysteresis.default({ ...DATA_CHECK_HYSTERESIS }),
  /** The batch date for `{date}` (YYYY-MM-DD); default the scheduled run's date. */
  date: z
    .string()
    .regex(/^\d{4}-\d{2}-\d{2}$/, 'a date YYYY-MM-DD')
    .optional(),
});
/** A data check as written (defaults not applied). */
export type DataCheckInput = z.input<typeof DataCheckInput>;
/** A data check with its defaults applied. */
export type DataCheckSettings = z.output<typeof DataCheckInput>;

/** Every problem of an invalid input on one line, each with its path: `driftShare: Too big: …; name: …`. */
export function inputProblems(error: z.ZodError): string {
  return error.issues.map((i) => issueText(i, '(input)')).join('; ');
}

/** The batch a run checks: `current` with `{date}` replaced. */
export function batchPath(current: string, date: string): string {
  return current.split(DATE_PLACEHOLDER).join(date);
}

/** What one run of a data check found. */
export interface DataCheckResult {
  name: string;
  /** The batch checked (placeholder replaced) and the date used for it. */
  current: string;
  date: string;
  /** Kinds whose check was bad this run (the router decides, with its hysteresis, what fires as an incident). */
  firing: DataCheckKind[];
  observations: Pick<Observation, 'key' | 'kind' | 'firing' | 'severity' | 'summary'>[];
  /** Share of compared features that drifted, and whether that is a data-set drift; null when unreadable. */
  driftShare: number | null;
  datasetDrift: boolean | null;
  driftedFeatures: string[];
  problems: { kind: string; feature?: string; message: string }[];
  /** Why the batch or reference could not be read, when it could not. */
  error?: string;
}

/** Schedule id of a data pipeline's checks. */
export function dataScheduleId(name: string): string {
  return `data-check-${name}`;
}

/** Alert key of one condition of a data pipeline. */
export function dataCheckKey(name: string, kind: DataCheckKind): string {
  return `data:${name}:${kind}`;
}
