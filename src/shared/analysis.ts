import { z } from 'zod';
import { HeaderName, HeaderValue, HttpUrl } from './deployment-target';
import { Duration, PositiveDuration } from './duration';
import { nameRecord } from './names';
import { own } from './own';

// Workflow-safe (zod only): the lifecycle spec carries metric checks, the workflow folds their outcomes, the worker
// measures them (src/analysis/).

/** The checks every stage runs from the target's telemetry (src/domain/guardrails.ts), by their decisions' names. */
export const BUILTIN_CHECKS = [
  'outage',
  'errorRate',
  'errorRateVsStable',
  'latencyP99Ms',
  'latencyP99RatioToStable',
  'predictionDrift',
  'featureSkew',
  'inputQuality',
  'estimatedAccuracy',
  /** The shadow stage's pairwise comparison of the candidate's and stable's predictions of the same requests. */
  'shadowAgreement',
  'shadowScoreDiff',
] as const;

/**
 * The placeholders a metric check's query, URL, body and header literals may use, filled in at each measurement:
 * `{{model}}`, `{{version}}` (the candidate), `{{stableVersion}}` (empty when there is none), `{{stage}}` (`canary`,
 * `ramping:50`, ...), `{{interval}}` (the analysis interval) and `{{window}}` (how long the judged window is), both as
 * Prometheus durations (`30s`). Template arguments are `{{args.<name>}}`, replaced when the spec is loaded.
 */
export const METRIC_PLACEHOLDERS = ['model', 'version', 'stableVersion', 'stage', 'interval', 'window'] as const;
export type MetricPlaceholder = (typeof METRIC_PLACEHOLDERS)[number];
export type MetricVariables = Readonly<Record<MetricPlaceholder, string>>;

const PLACEHOLDER_RE = /\{\{\s*([A-Za-z0-9_.-]*)\s*\}\}/g;

/** The placeholders of `text` that are not {@link METRIC_PLACEHOLDERS} (template arguments included). */
export function unknownPlaceholders(text: string): string[] {
  const known = new Set<string>(METRIC_PLACEHOLDERS);
  return [...text.matchAll(PLACEHOLDER_RE)].map((m) => m[1] ?? '').filter((name) => !known.has(name));
}

/** `text` with every `{{name}}` of `vars` replaced by `encode(value)` (unknown names are left alone). */
export function fillPlaceholders(
  text: string,
  vars: Readonly<Record<string, string>>,
  encode: (value: string) => string = (v) => v,
): string {
  return text.replace(PLACEHOLDER_RE, (whole, name: string) => {
    const value = own(vars, name);
    return value === undefined ? whole : encode(value);
  });
}

/** A duration as Prometheus writes one: whole seconds, at least 1s. */
export function promDuration(ms: number): string {
  return `${Math.max(1, Math.ceil(ms / 1000))}s`;
}

/** Literals are written to workflow history: secrets come `{ fromEnv }`, from variables the policy allows. */
const Headers = z.record(HeaderName, HeaderValue).optional();
const Timeout = PositiveDuration.refine((ms) => ms <= 60_000, 'at most 60s').default(10_000);

export const PrometheusProvider = z
  .object({
    /** The Prometheus server's base URL (the policy's `analysis.urls` must allow it). */
    address: HttpUrl,
    /** PromQL; its result must be one series or a scalar. NaN (0/0 on no traffic) or no series is inconclusive. */
    query: z.string().min(1).max(4000),
    /**
     * A range query over the last `lookback` at `step`, its points reduced to one number by `reduce`; without it an
     * instant query at the measurement time.
     */
    range: z
      .object({
        lookback: PositiveDuration,
        step: Duration.refine((ms) => ms >= 1000, 'at least 1s').default(10_000),
        reduce: z.enum(['last', 'mean', 'max', 'min']).default('max'),
      })
      .strict()
      .optional(),
    headers: Headers,
    timeout: Timeout,
  })
  .strict();
export type PrometheusProvider = z.infer<typeof PrometheusProvider>;

export const WebProvider = z
  .object({
    url: z.string().min(1).max(2000),
    method: z.enum(['GET', 'POST']).default('GET'),
    headers: Headers,
    /** A POST's JSON body (placeholders filled in, JSON-escaped). */
    body: z.string().max(16_000).optional(),
    /** RFC 9535 JSONPath of the number in the answer, e.g. `$.data.conversion`; exactly one value, a number. */
    jsonPath: z.string().min(1).max(500),
    timeout: Timeout,
  })
  .strict();
export type WebProvider = z.infer<typeof WebProvider>;

export const MetricProvider = z.union([
  z.object({ prometheus: PrometheusProvider }).strict(),
  z.object({ web: WebProvider }).strict(),
]);
export type MetricProvider = z.infer<typeof MetricProvider>;

/**
 * How many bad samples a check tolerates in a stage, as Argo Rollouts counts them: the stage fails once the check
 * has failed more than `failureLimit` samples in all, or more than `consecutiveFailureLimit` in a row. `dryRun`
 * measures, records and alerts, and never stops a rollout.
 */
export const CheckLimits = {
  failureLimit: z.number().int().min(0).max(100).default(0),
  consecutiveFailureLimit: z.number().int().min(0).max(100).optional(),
  /** More inconclusive samples than this holds the rollout for a human (default: no limit). */
  inconclusiveLimit: z.number().int().min(0).max(100).optional(),
  dryRun: z.boolean().default(false),
};

const MetricName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, starting with a letter (at most 63)')
  .refine((name) => !(BUILTIN_CHECKS as readonly string[]).includes(name), 'the name of a built-in check');

/** What every metric check has: a name, a provider and conditions on its result. */
const metricFields = {
  name: MetricName,
  provider: MetricProvider,
  /** A filtrex expression on `result`, e.g. `result <= 0.01`; true is a pass. */
  successCondition: z.string().min(1).max(500).optional(),
  /** True is a failure; with both conditions, a result that meets neither is inconclusive. */
  failureCondition: z.string().min(1).max(500).optional(),
};

type MetricFields = z.infer<z.ZodObject<typeof metricFields>>;

/** At least one condition, and only known placeholders in what is sent. */
function checkMetric(m: MetricFields, ctx: z.RefinementCtx): void {
  if (m.successCondition === undefined && m.failureCondition === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['successCondition'],
      message: 'give successCondition, failureCondition or both',
    });
  }
  const texts: [string[], string | undefined][] =
    'prometheus' in m.provider
      ? [
          [['provider', 'prometheus', 'query'], m.provider.prometheus.query],
          ...headerTexts(['provider', 'prometheus'], m.provider.prometheus.headers),
        ]
      : [
          [['provider', 'web', 'url'], m.provider.web.url],
          [['provider', 'web', 'body'], m.provider.web.body],
          ...headerTexts(['provider', 'web'], m.provider.web.headers),
        ];
  for (const [path, text] of texts) {
    const unknown = text === undefined ? [] : unknownPlaceholders(text);
    if (unknown.length > 0) {
      ctx.addIssue({
        code: 'custom',
        path,
        message:
          `unknown placeholder ${unknown.map((u) => `{{${u}}}`).join(', ')} ` +
          `(known: ${METRIC_PLACEHOLDERS.map((p) => `{{${p}}}`).join(', ')})`,
      });
    }
  }
}

/** A rollout check measured by a metric provider, judged by its conditions (src/analysis/conditions.ts). */
export const MetricCheck = z
  .object({
    ...metricFields,
    ...CheckLimits,
    /** Provider errors (unreachable, bad answer) in a row before the stage fails; errors are not failures. */
    consecutiveErrorLimit: z.number().int().min(0).max(100).default(4),
    /** Not measured until the stage has run this long (warm-up). */
    initialDelay: Duration.default(0),
    /** The analysis template it came from, when it did. */
    template: z.string().max(63).optional(),
  })
  .strict()
  .superRefine(checkMetric);
export type MetricCheck = z.infer<typeof MetricCheck>;

/**
 * A serving monitor check measured by a metric provider every monitor interval: a failure is a bad check of the
 * `serving-metric` incident named after it (fired and resolved by the monitor's hysteresis); a provider error or no
 * data neither fires nor resolves it.
 */
export const MonitorMetricCheck = z
  .object({
    ...metricFields,
    severity: z.enum(['info', 'warning', 'critical']).default('warning'),
    template: z.string().max(63).optional(),
  })
  .strict()
  .superRefine(checkMetric);
export type MonitorMetricCheck = z.infer<typeof MonitorMetricCheck>;
export type MetricCheckInput = z.input<typeof MetricCheck>;

function headerTexts(
  base: string[],
  headers: Readonly<Record<string, HeaderValue>> | undefined,
): [string[], string | undefined][] {
  return Object.entries(headers ?? {}).map(([name, value]) => [
    [...base, 'headers', name],
    typeof value === 'string' ? value : undefined,
  ]);
}

/** A reference to an analysis template file: its name and the values of its arguments. */
export const TemplateRef = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'a template name: lowercase letters, digits and dashes'),
    args: nameRecord(z.string().max(128), z.union([z.string().max(4000), z.number()])).default({}),
  })
  .strict();
export type TemplateRef = z.infer<typeof TemplateRef>;

/** An analysis template file (`<templates dir>/<name>.yaml`): metric checks with `{{args.<name>}}` placeholders. */
export const AnalysisTemplateFile = z
  .object({
    apiVersion: z.literal('ml-lifecycle/v1'),
    kind: z.literal('AnalysisTemplate'),
    name: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/),
    description: z.string().max(2000).optional(),
    args: z
      .array(
        z
          .object({
            name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'an argument name'),
            default: z.union([z.string().max(4000), z.number()]).optional(),
            description: z.string().max(500).optional(),
          })
          .strict(),
      )
      .max(50)
      .default([]),
    /** Checked once the arguments are filled in, as the spec's own metric checks are. */
    metrics: z.array(z.unknown()).min(1).max(20),
  })
  .strict();
export type AnalysisTemplateFile = z.infer<typeof AnalysisTemplateFile>;

/** The provider a metric check reads (`prometheus`, `web`). */
export function providerKind(m: Pick<MetricCheck, 'provider'>): 'prometheus' | 'web' {
  return 'prometheus' in m.provider ? 'prometheus' : 'web';
}

/** The URL a metric check calls (its Prometheus address or its web URL, unfilled). */
export function providerUrl(m: Pick<MetricCheck, 'provider'>): string {
  return 'prometheus' in m.provider ? m.provider.prometheus.address : m.provider.web.url;
}
