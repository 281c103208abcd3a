import { z } from 'zod';
import { FeatureOverride } from './drift';
import { MONITOR_ACTIONS, SERVING_ALERT_KINDS } from './alerts';
import { Duration, PositiveDuration } from './duration';
import { FeatureName, Identity, ModelName, nameRecord, VersionName } from './names';
import { Architecture, Precision } from './hardware';
import { DeploymentTargetSpec, HeaderName, HeaderValue, HttpUrl } from './deployment-target';
import { clipped } from './text';
import { CheckLimits, MetricCheck, MonitorMetricCheck, TemplateRef } from './analysis';
import { DEFAULT_TASK, Task } from './task';

export { Identity } from './names';

/** A metric threshold for validation: the candidate's offline metric must be >= min and/or <= max. */
export const MetricThreshold = z
  .object({ min: z.number().optional(), max: z.number().optional() })
  .strict()
  .refine((t) => t.min !== undefined || t.max !== undefined, 'give min, max or both');
export type MetricThreshold = z.infer<typeof MetricThreshold>;

export const TrainingSpec = z
  .object({
    /** The training program, run with the project's Python; paths are resolved against the spec file. */
    program: z.string().min(1),
    /** Folder holding train.csv and test.csv. */
    dataDir: z.string().min(1),
    /** Passed to the program as JSON; the program rejects what it does not know (non-retryable). */
    params: nameRecord(z.string().max(256), z.unknown()).default({}),
    /** The training lease of lifecycles started before the hardware planner (which leases the chosen device). */
    resources: z
      .object({ cpu: z.number().positive().default(1), memoryGiB: z.number().positive().default(2) })
      .strict()
      .default({ cpu: 1, memoryGiB: 2 }),
    timeout: PositiveDuration.default(30 * 60_000),
    /** A crashed or killed training process is retried this many times in all. */
    maxAttempts: z.number().int().min(1).max(10).default(3),
    /** Size of the training data for the hardware planner; rows are counted from train.csv when absent. */
    dataset: z
      .object({ rows: z.number().int().positive().optional(), tokens: z.number().int().positive().optional() })
      .strict()
      .optional(),
    epochs: z.number().positive().default(1),
    /** The planner picks the cheapest hardware that trains within this. */
    deadline: PositiveDuration.optional(),
    /** The planner's fastest candidate stays within this. */
    budgetUsd: z.number().positive().optional(),
    /**
     * A run counts as slow (a `training-slow` alert) once it outlasts the p95 of similar runs by more than
     * `marginOverP95` (0.25 = 25 %) and by more than `minExcess`, and never before 1 s: quiet on ordinary jitter.
     */
    slowAlert: z
      .object({ marginOverP95: z.number().min(0).max(10).default(0.25), minExcess: Duration.default(30_000) })
      .strict()
      .default({ marginOverP95: 0.25, minExcess: 30_000 }),
  })
  .strict();
export type TrainingSpec = z.infer<typeof TrainingSpec>;

export const HardwareSpec = z
  .object({
    /** The model profile the hardware planner sizes training and serving from (`mlctl hardware plan`). */
    architecture: Architecture.default('other'),
    parameters: z.number().int().positive().default(100_000),
    /** Numeric precision it trains and serves in (int8 models train in bf16). */
    precision: Precision.default('fp32'),
    /** Hardware classes the lifecycle may use for training; empty means any in the catalog. */
    trainingClasses: z.array(z.string().min(1)).default([]),
    servingClasses: z.array(z.string().min(1)).default([]),
  })
  .strict();
export type HardwareSpec = z.infer<typeof HardwareSpec>;

export const TestDataSpec = z
  .object({
    /** `dataset-drift`: fail when the drifted share reaches `driftShare`; `any-drift`: any drifted feature or data problem. */
    failOn: z.enum(['dataset-drift', 'any-drift', 'never']).default('dataset-drift'),
    driftShare: z.number().min(0).max(1).default(0.5),
    /** Per-feature method, threshold, direction or skip (see `mlctl data check --options`). */
    features: nameRecord(FeatureName, FeatureOverride).default({}),
  })
  .strict();
export type TestDataSpec = z.infer<typeof TestDataSpec>;

export const ValidationSpec = z
  .object({
    /** Absolute gates on the candidate's offline metrics, e.g. `{ auc: { min: 0.8 } }`. */
    thresholds: nameRecord(z.string().max(128), MetricThreshold).default({}),
    /**
     * Largest allowed drop against the production version on the same test set, e.g. `{ auc: 0.02 }`.
     * For metrics where lower is better (names ending in `Loss` or `Error`) it is the largest allowed rise.
     */
    maxRegression: nameRecord(z.string().max(128), z.number().nonnegative()).default({}),
    /** Drift of the test set against the training set (R10): a test set unlike training makes the metrics moot. */
    testData: TestDataSpec.default(TestDataSpec.parse({})),
  })
  .strict();
export type ValidationSpec = z.infer<typeof ValidationSpec>;

/** Overrides of the approval policy for one gate (`deploy`, `ramp-<percent>`, `promote-now`). */
export const GatePolicySpec = z
  .object({
    /** Who may decide this gate; default the lifecycle's approvers. */
    approvers: z.array(Identity).min(1).optional(),
    /** Approvals from distinct approvers this gate needs. */
    quorum: z.number().int().min(1).optional(),
    /** Approvals of this gate must be signed by the approver's registered key. */
    signed: z.boolean().optional(),
  })
  .strict();
export type GatePolicySpec = z.infer<typeof GatePolicySpec>;

export const ApprovalSpec = z
  .object({
    /** Who may approve or reject this lifecycle's gates. The submitter never approves its own lifecycle. */
    approvers: z.array(Identity).min(1),
    /**
     * Approvals from distinct approvers each gate needs (N of M; default 1, or the platform policy's quorum); one
     * rejection rejects the gate.
     */
    quorum: z.number().int().min(1).optional(),
    /** How long a gate waits before it expires and the lifecycle ends `rejected` (or rolls back, once deployed). */
    timeout: PositiveDuration.default(24 * 3_600_000),
    /** A gate still open this long after it opened raises an escalation alert naming `escalateTo`. */
    escalateAfter: PositiveDuration.optional(),
    /** Who an escalation goes to (team leads, an on-call rota); carried in the alert. */
    escalateTo: z.array(Identity).default([]),
    /**
     * Every gate's approvals must be signed by the approver's registered key (`mlctl keys generate`). Absent: as the
     * platform policy says (signed by default); `false` where the policy requires signatures is refused at start.
     */
    signed: z.boolean().optional(),
    /** Per-gate overrides: approvers, quorum, signatures. */
    gates: nameRecord(z.string(), GatePolicySpec).default({}),
  })
  .strict()
  .superRefine(
    (approval, ctx) => {
      const approvers: unknown[] = Array.isArray(approval?.approvers) ? approval.approvers : [];
      const quorumOk = (quorum: unknown, count: number, path: (string | number)[]) => {
        if (typeof quorum === 'number' && count > 0 && quorum > count) {
          ctx.addIssue({
            code: 'custom',
            path,
            message: `a quorum of ${quorum} cannot be met by ${count} approver(s)`,
          });
        }
      };
      quorumOk(approval?.quorum, approvers.length, ['quorum']);
      for (const [gate, policy] of Object.entries(approval?.gates ?? {})) {
        if (!/^(deploy|production|promote-now|ramp-\d+(\.\d+)?)$/.test(gate)) {
          ctx.addIssue({
            code: 'custom',
            path: ['gates', gate],
            message: 'not a gate: deploy, production, promote-now or ramp-<percent>',
          });
        }
        const own = Array.isArray(policy?.approvers) ? policy.approvers.length : approvers.length;
        quorumOk(policy?.quorum ?? approval?.quorum, own, ['gates', gate, 'quorum']);
      }
      const esc = approval?.escalateAfter;
      if (typeof esc === 'number' && typeof approval?.timeout === 'number' && esc >= approval.timeout) {
        ctx.addIssue({ code: 'custom', path: ['escalateAfter'], message: 'must be shorter than the timeout' });
      }
    },
    { when: () => true },
  );
export type ApprovalSpec = z.infer<typeof ApprovalSpec>;

export const RolloutStep = z
  .object({
    percent: z.number().gt(0).max(100),
    bake: Duration,
    /** Wait for an approval before moving traffic to this step. */
    approval: z.boolean().default(false),
  })
  .strict();
export type RolloutStep = z.infer<typeof RolloutStep>;

/**
 * Tolerance and sample size of one built-in check (src/shared/analysis.ts `CheckLimits`: `failureLimit` failed
 * samples in all per stage, `consecutiveFailureLimit` in a row, `dryRun`); `minSamples` overrides the analysis-wide
 * minimum for it. Lifecycles started before these limits count `failureLimit` in a row.
 */
const CheckTolerance = {
  ...CheckLimits,
  minSamples: z.number().int().positive().optional(),
};

export const AnalysisSpec = z
  .object({
    /** Fewest candidate predictions a stage needs before it is judged; fewer is inconclusive. */
    minSamples: z.number().int().positive().default(100),
    /** After the bake, how long the analysis may wait for the minimum sample before calling it inconclusive. */
    maxWaitForSamples: PositiveDuration.default(5 * 60_000),
    /**
     * Sampling interval across the bake: each sample judges the traffic since the one before, so a breach stops the
     * rollout within an interval instead of at the end of the bake. The bake's end always takes a last readout of the
     * whole stage; a bake no longer than the interval is judged by that readout alone.
     */
    interval: Duration.refine((ms) => ms >= 1000, 'at least 1s (workflow timers are not finer)').default(60_000),
    /**
     * Warm-up of every stage: traffic of the first `initialDelay` after the weights move is left out of the stage's
     * windows (caches filling, connections opening).
     */
    initialDelay: Duration.default(0),
    /** The last this-many passing and failing samples of every check are kept for `mlctl status`. */
    measurementRetention: z.number().int().min(1).max(100).default(10),
    /** Checks read from a metric provider (Prometheus, any JSON web API), beside the built-in ones. */
    metrics: z.array(MetricCheck).max(20).default([]),
    /** Analysis templates whose metric checks were added to `metrics` when the spec was loaded (for the record). */
    templates: z.array(TemplateRef).max(20).default([]),
    /** The candidate gets traffic and answers some of it. */
    outage: z.object(CheckTolerance).strict().default({ failureLimit: 0, dryRun: false }),
    errorRate: z
      .object({
        max: z.number().min(0).max(1),
        /**
         * The candidate's error rate against stable's, by a one-sided two-proportion z-test: the check
         * `errorRateVsStable` fails when the candidate's rate is above stable's by more than `minDifference` and the
         * test's p-value is below `alpha`. `false` turns it off.
         */
        vsStable: z
          .union([
            z.literal(false),
            z
              .object({
                alpha: z.number().gt(0).lt(1).default(0.01),
                minDifference: z.number().min(0).max(1).default(0.005),
              })
              .strict(),
          ])
          .default({ alpha: 0.01, minDifference: 0.005 }),
        ...CheckTolerance,
      })
      .strict()
      .default({ max: 0.01, vsStable: { alpha: 0.01, minDifference: 0.005 }, failureLimit: 0, dryRun: false }),
    latencyP99Ms: z
      .object({
        max: z.number().positive(),
        maxRatioToStable: z.number().positive().optional(),
        /**
         * A stable p99 below this counts as this in the ratio, so millisecond jitter on a fast model (a loaded host,
         * a GC pause) does not read as a large ratio. Default 1 ms.
         */
        ratioFloorMs: z.number().positive().default(1),
        ...CheckTolerance,
      })
      .strict()
      .default({ max: 500, maxRatioToStable: 3, ratioFloorMs: 1, failureLimit: 0, dryRun: false }),
    /**
     * Drift of the candidate's predicted probabilities against the stable version's: fails when the population
     * stability index exceeds `maxPsi` and a KS test on the same bins is significant at `alpha`.
     */
    predictionDrift: z
      .object({ maxPsi: z.number().positive(), alpha: z.number().gt(0).lt(1).default(0.01), ...CheckTolerance })
      .strict()
      .default({ maxPsi: 0.25, alpha: 0.01, failureLimit: 0, dryRun: false }),
    /**
     * Skew of the candidate's inputs against its training profile, per feature on the profile's bins: fails when a
     * feature's PSI exceeds `maxPsi` and its test (binned KS, chi-squared) is significant at `alpha` / features.
     */
    featureSkew: z
      .object({ maxPsi: z.number().positive(), alpha: z.number().gt(0).lt(1).default(0.001), ...CheckTolerance })
      .strict()
      .default({ maxPsi: 0.5, alpha: 0.001, failureLimit: 0, dryRun: false }),
    /**
     * Missing or corrupt inputs reaching the candidate: the share of its requests refused as invalid, and per feature
     * the rise of missing, wrong-type or non-finite values over the training data's share, each at most `maxRate`.
     */
    inputQuality: z
      .object({ maxRate: z.number().min(0).max(1), ...CheckTolerance })
      .strict()
      .default({ maxRate: 0.05, failureLimit: 0, dryRun: false }),
  })
  .strict()
  .superRefine((analysis, ctx) => {
    const seen = new Set<string>();
    (Array.isArray(analysis?.metrics) ? analysis.metrics : []).forEach((m, i) => {
      if (typeof m?.name !== 'string') return;
      if (seen.has(m.name))
        ctx.addIssue({ code: 'custom', path: ['metrics', i, 'name'], message: `"${m.name}" again` });
      seen.add(m.name);
    });
  });
export type AnalysisSpec = z.infer<typeof AnalysisSpec>;

/**
 * How the shadow stage compares the candidate's predictions with stable's on the same requests, beside the stage
 * checks (errors, latency, prediction drift: on identical inputs here). Each comparison takes the check limits of
 * src/shared/analysis.ts `CheckLimits`.
 */
export const ShadowCompare = z
  .object({
    /** Classifiers: the share of compared rows on which the candidate predicts stable's label, at least. */
    minAgreement: z.number().min(0).max(1).default(0.9),
    /**
     * The mean score difference per row, at most: |Δ probability| (binary), half the L1 distance of the class
     * probabilities (multiclass), |Δ value| in the target's units (regression, where it has no default: unchecked
     * unless given). Classifiers default to 0.1.
     */
    maxScoreDiff: z.number().positive().optional(),
    ...CheckTolerance,
  })
  .strict();
export type ShadowCompare = z.infer<typeof ShadowCompare>;

export const ShadowSpec = z
  .object({
    /** Share of the requests stable answers whose copy the candidate predicts. */
    percent: z.number().gt(0).max(100),
    bake: PositiveDuration,
    compare: ShadowCompare.default({ minAgreement: 0.9, failureLimit: 0, dryRun: false }),
  })
  .strict();
export type ShadowSpec = z.infer<typeof ShadowSpec>;

/** Header names are case-insensitive: kept in lower case, as the gateway reads them. */
const PinHeader = z
  .string()
  .max(64)
  .transform((h) => h.toLowerCase())
  .pipe(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'a header name: letters, digits and "-"'));

/**
 * A pinned route for the length of the rollout: a request whose `header` holds one of `values` goes to the candidate
 * (QA, internal tenants; even at 0 % weight) or stays on stable (a tenant kept off the candidate). Pinned requests
 * are counted apart and kept out of the stages' analysis unless `counted`.
 */
export const PinSpec = z
  .object({
    header: PinHeader,
    values: z.array(z.string().min(1).max(256)).min(1).max(100),
    to: z.enum(['candidate', 'stable']),
    counted: z.boolean().default(false),
  })
  .strict();
export type PinSpec = z.infer<typeof PinSpec>;

/**
 * A rollout hook: an HTTP endpoint the lifecycle calls (a smoke or load test run by CI). It is POSTed
 * `{ hook, lifecycleId, runId, model, version, stableVersion, stage, pins }` and passes with a 2xx answer; any other
 * answer fails it (its `{ message }` is recorded), and an endpoint that cannot be reached, times out or answers 502,
 * 503 or 504 is tried again up to `maxAttempts` in all. Secrets come from the worker's environment (`{ fromEnv }`).
 */
export const HookSpec = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, starting with a letter'),
    url: HttpUrl,
    headers: z.record(HeaderName, HeaderValue).optional(),
    /** One attempt's wait for the answer (at most 10 minutes). */
    timeout: PositiveDuration.refine((ms) => ms <= 600_000, 'at most 10m').default(60_000),
    maxAttempts: z.number().int().min(1).max(10).default(3),
  })
  .strict();
export type HookSpec = z.infer<typeof HookSpec>;

export const RolloutHooks = z
  .object({
    /**
     * Run in order once the candidate is deployed at 0 % (its pinned routes set, so a test can reach it), before the
     * shadow stage and the canary: one that fails stops the rollout before any user is served by the candidate.
     */
    preRollout: z.array(HookSpec).max(10).default([]),
  })
  .strict()
  .superRefine((hooks, ctx) => {
    // Each hook is recorded as the decision `hook:<name>`: two of one name would be one check.
    const seen = new Set<string>();
    (Array.isArray(hooks?.preRollout) ? hooks.preRollout : []).forEach((h, i) => {
      if (typeof h?.name !== 'string') return;
      if (seen.has(h.name))
        ctx.addIssue({ code: 'custom', path: ['preRollout', i, 'name'], message: `"${h.name}" again` });
      seen.add(h.name);
    });
  });
export type RolloutHooks = z.infer<typeof RolloutHooks>;

export const RolloutSpec = z
  .object({
    /** Endpoints called at points of the rollout (`preRollout`). */
    hooks: RolloutHooks.default({ preRollout: [] }),
    canary: z.object({ percent: z.number().gt(0).lt(100), bake: PositiveDuration }).strict(),
    /**
     * Before the canary: a copy of `percent` % of production requests is predicted by the candidate after stable has
     * answered, and the two compared (`compare`); no user is served by the candidate. Needs the gateway target and a
     * stable version (a first deployment skips it).
     */
    shadow: ShadowSpec.optional(),
    /** Pinned routes, set when the candidate is deployed and cleared before it is promoted (gateway target). */
    pins: z.array(PinSpec).max(20).default([]),
    /** Ramp stages after the canary, in increasing percent; the last one is 100. */
    steps: z.array(RolloutStep).min(1),
    analysis: AnalysisSpec.default(AnalysisSpec.parse({})),
    /**
     * After the candidate takes all traffic, the version it replaced stays loaded (at 0%) for `window` while the same
     * checks run on the candidate; a breach moves all traffic back at once. 0 turns the guard off.
     */
    postPromotion: z
      .object({ window: Duration.default(0) })
      .strict()
      .default({ window: 0 }),
    /**
     * A rollback retries its weight swap, read back from the target, until it holds; after `stuckAfter` the lifecycle
     * enters `rollback-stuck` and pages (a critical alert), keeps the candidate's quota, and goes on retrying.
     */
    rollback: z
      .object({
        stuckAfter: PositiveDuration.default(120_000),
        /** A stuck rollback gives up after this long: it ends `rollback-stuck`, its leases kept for an operator. */
        giveUpAfter: PositiveDuration.default(24 * 3_600_000),
      })
      .strict()
      .default({ stuckAfter: 120_000, giveUpAfter: 24 * 3_600_000 }),
  })
  .strict()
  // `when: () => true` runs these cross-field checks even when another field failed (a bad duration, say), so one
  // run reports every problem; the checks read the raw values defensively for that reason.
  .superRefine(
    (rollout, ctx) => {
      const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
      const steps: unknown[] = Array.isArray(rollout?.steps) ? rollout.steps : [];
      let previous = num(rollout?.canary?.percent);
      steps.forEach((step, i) => {
        const percent = num((step as { percent?: unknown } | undefined)?.percent);
        if (percent !== undefined && previous !== undefined && percent <= previous) {
          ctx.addIssue({
            code: 'custom',
            path: ['steps', i, 'percent'],
            message: `must be greater than the previous stage's ${previous}%`,
          });
        }
        previous = percent ?? previous;
      });
      const last = num((steps.at(-1) as { percent?: unknown } | undefined)?.percent);
      if (last !== undefined && last !== 100) {
        ctx.addIssue({
          code: 'custom',
          path: ['steps', steps.length - 1, 'percent'],
          message: 'the last step must be 100',
        });
      }
    },
    { when: () => true },
  );
export type RolloutSpec = z.infer<typeof RolloutSpec>;

export const ServingSpec = z
  .object({
    /** Predicted queries per second in production (`mlctl quota estimate`, `mlctl hardware plan`). */
    qps: z.number().positive().optional(),
    /** Latency the serving hardware must keep at p99. */
    latencyP99Ms: z.number().positive().default(100),
  })
  .strict();
export type ServingSpec = z.infer<typeof ServingSpec>;

export const QuotaSpec = z
  .object({
    pool: z.string().min(1).default('default'),
    /** Capacity the serving deployment reserves while it takes traffic (one replica). */
    serving: z
      .object({
        cpu: z.number().positive().default(1),
        memoryGiB: z.number().positive().default(1),
        /** Deprecated: use `serving.qps`. Still accepted, so lifecycles started with it keep running. */
        qps: z.number().positive().optional(),
      })
      .strict()
      .default({ cpu: 1, memoryGiB: 1 }),
    /** How long a reservation may wait in the pool's queue when quota is short (0: fail at once). */
    wait: Duration.default(0),
    /** Queue priority among waiting reservations (higher first), -100..100. */
    priority: z.number().int().min(-100).max(100).default(0),
  })
  .strict();
export type QuotaSpec = z.infer<typeof QuotaSpec>;

/**
 * A staging environment the candidate goes through before production: deployed alone on its own route (a model name
 * on the gateway, default `<model>-staging`) or its own target, baked under the absolute checks, then the
 * `production` gate before any production traffic moves.
 */
export const StagingSpec = z
  .object({
    /** Default: the production target (on the gateway: a route of its own). */
    target: DeploymentTargetSpec.optional(),
    /** The model name staging traffic is sent to. */
    route: ModelName.optional(),
    bake: PositiveDuration,
    /** Wait for the `production` gate after staging passed. */
    gate: z.boolean().default(true),
  })
  .strict();
export type StagingSpec = z.infer<typeof StagingSpec>;

export const DeploymentSpec = z
  .object({
    /** Where production traffic is served; default the worker's serving gateway. */
    target: DeploymentTargetSpec.optional(),
    staging: StagingSpec.optional(),
  })
  .strict();
export type DeploymentSpec = z.infer<typeof DeploymentSpec>;

/** The lifecycle spec a pipeline submits (`mlctl run spec.yaml`). */
const Severity = z.enum(['info', 'warning', 'critical']);

/**
 * The serving monitor of the model once this version is in production: a long-running workflow that checks the
 * production version's live traffic every `interval` and reports each check to the alert router, which fires after
 * `hysteresis.fireAfter` bad checks of the last `hysteresis.window` and resolves after `resolveAfter` good ones.
 */
export const MonitoringSpec = z
  .object({
    enabled: z.boolean().default(true),
    interval: Duration.refine((ms) => ms >= 1000, 'at least 1s').default(60_000),
    /** Requests a check needs to judge (fewer: the check neither fires nor resolves). */
    minSamples: z.number().int().positive().default(100),
    hysteresis: z
      .object({
        fireAfter: z.number().int().positive(),
        window: z.number().int().positive(),
        resolveAfter: z.number().int().positive(),
      })
      .strict()
      .refine((h) => h.window >= h.fireAfter, 'window must be at least fireAfter')
      .default({ fireAfter: 3, window: 5, resolveAfter: 3 }),
    /** Serving inputs against the training profile, per feature (PSI and a significance test, as in the rollout). */
    featureSkew: z
      .object({ maxPsi: z.number().positive(), alpha: z.number().gt(0).lt(1), severity: Severity.default('warning') })
      .strict()
      .default({ maxPsi: 0.25, alpha: 0.001, severity: 'warning' }),
    /** The production version's predictions against its predictions on the test set at validation. */
    predictionDrift: z
      .object({ maxPsi: z.number().positive(), alpha: z.number().gt(0).lt(1), severity: Severity.default('warning') })
      .strict()
      .default({ maxPsi: 0.25, alpha: 0.01, severity: 'warning' }),
    /** Requests refused as invalid, and missing or corrupt feature values above the training share. */
    inputQuality: z
      .object({ maxRate: z.number().gt(0).lt(1), severity: Severity.default('warning') })
      .strict()
      .default({ maxRate: 0.05, severity: 'warning' }),
    latencyP99Ms: z
      .object({ max: z.number().positive(), severity: Severity.default('warning') })
      .strict()
      .default({ max: 500, severity: 'warning' }),
    /** Traffic but no successful prediction in a check's window, or the serving endpoint not answering. */
    outage: z
      .object({ severity: Severity.default('critical') })
      .strict()
      .default({ severity: 'critical' }),
    /**
     * From ground-truth labels joined to predictions by request id (`POST /v1/models/:model/labels`), by task:
     * classifiers `minAccuracy` and `maxLogLoss`, multiclass also `minMacroF1`, regressions `maxMae`, `maxRmse` and
     * `minR2` (a rule of another task is refused at start). `minEstimatedAccuracy` (classifiers) alerts
     * (`estimated-quality`) when the accuracy estimated from the live prediction bins, calibrated on the test set at
     * validation, falls below it, before any label arrives.
     */
    quality: z
      .object({
        minAccuracy: z.number().gt(0).max(1).optional(),
        maxLogLoss: z.number().positive().optional(),
        minMacroF1: z.number().gt(0).max(1).optional(),
        maxMae: z.number().positive().optional(),
        maxRmse: z.number().positive().optional(),
        minR2: z.number().max(1).optional(),
        minEstimatedAccuracy: z.number().gt(0).max(1).optional(),
        minLabels: z.number().int().positive().default(50),
        severity: Severity.default('warning'),
      })
      .strict()
      .default({ minLabels: 50, severity: 'warning' }),
    /** Share of the serving pool's capacity in use, per resource, above which the pool is nearly full. */
    quota: z
      .object({ maxShare: z.number().gt(0).max(1), severity: Severity.default('warning') })
      .strict()
      .default({ maxShare: 0.9, severity: 'warning' }),
    /** What happens when an alert of this kind fires, besides the notification: `notify` (default), `hold`, `rollback`, `retrain`. */
    actions: z.partialRecord(z.enum(SERVING_ALERT_KINDS), z.enum(MONITOR_ACTIONS)).default({}),
    /** How long an automated action waits after its alert fires, so a human can override it (`mlctl alerts override`). */
    actionDelay: Duration.default(5 * 60_000),
    /**
     * Checks read from a metric provider (Prometheus, a JSON web API) every interval: each failure is a bad check of
     * the `serving-metric` incident of that name. `{{window}}` is the time since the previous check.
     */
    metrics: z.array(MonitorMetricCheck).max(20).default([]),
  })
  .strict();
export type MonitoringSpec = z.infer<typeof MonitoringSpec>;

/**
 * The serving monitor's quality rules: the spec field, the metric of src/shared/quality.ts it bounds, the bound's
 * direction and the tasks that have the metric.
 */
export const QUALITY_RULES = [
  {
    field: 'minAccuracy',
    metric: 'accuracy',
    min: true,
    tasks: ['binary-classification', 'multiclass-classification'],
  },
  { field: 'maxLogLoss', metric: 'logLoss', min: false, tasks: ['binary-classification', 'multiclass-classification'] },
  { field: 'minMacroF1', metric: 'macroF1', min: true, tasks: ['multiclass-classification'] },
  { field: 'maxMae', metric: 'mae', min: false, tasks: ['regression'] },
  { field: 'maxRmse', metric: 'rmse', min: false, tasks: ['regression'] },
  { field: 'minR2', metric: 'r2', min: true, tasks: ['regression'] },
  {
    field: 'minEstimatedAccuracy',
    metric: 'estimatedAccuracy',
    min: true,
    tasks: ['binary-classification', 'multiclass-classification'],
  },
] as const satisfies readonly { field: string; metric: string; min: boolean; tasks: readonly Task[] }[];

export const LifecycleSpec = z
  .object({
    apiVersion: z.literal('ml-lifecycle/v1'),
    kind: z.literal('Lifecycle'),
    model: ModelName,
    version: VersionName,
    /**
     * What the model predicts: `binary-classification` (default), `multiclass-classification` or `regression`. The
     * artifact's manifest must say the same; telemetry, drift, validation and quality follow it.
     */
    task: Task.default(DEFAULT_TASK),
    description: z.string().max(2000).optional(),
    /** Identity of the pipeline or person starting the lifecycle; it may not approve its own gates. */
    submittedBy: Identity,
    training: TrainingSpec,
    hardware: HardwareSpec.default(HardwareSpec.parse({})),
    serving: ServingSpec.default({ latencyP99Ms: 100 }),
    validation: ValidationSpec.default(ValidationSpec.parse({})),
    approval: ApprovalSpec,
    rollout: RolloutSpec,
    deployment: DeploymentSpec.default({}),
    quota: QuotaSpec.default(QuotaSpec.parse({})),
    monitoring: MonitoringSpec.default(MonitoringSpec.parse({})),
  })
  .strict()
  .superRefine(
    (spec, ctx) => {
      // A quality rule of another task would never fire: refuse it, naming the task.
      const quality = spec?.monitoring?.quality;
      if (quality && typeof spec?.task === 'string') {
        for (const rule of QUALITY_RULES) {
          if (quality[rule.field] !== undefined && !(rule.tasks as readonly Task[]).includes(spec.task)) {
            ctx.addIssue({
              code: 'custom',
              path: ['monitoring', 'quality', rule.field],
              message: `not a rule of a ${spec.task} model (it applies to ${rule.tasks.join(', ')})`,
            });
          }
        }
      }
      const lists: [(string | number)[], unknown][] = [
        [['approval', 'approvers'], spec?.approval?.approvers],
        ...Object.entries(spec?.approval?.gates ?? {}).map(([gate, p]): [(string | number)[], unknown] => [
          ['approval', 'gates', gate, 'approvers'],
          p?.approvers,
        ]),
      ];
      for (const [path, approvers] of lists) {
        if (Array.isArray(approvers) && typeof spec?.submittedBy === 'string' && approvers.includes(spec.submittedBy)) {
          ctx.addIssue({
            code: 'custom',
            path,
            message: `the submitter "${spec.submittedBy}" cannot be an approver of its own lifecycle`,
          });
        }
      }
      // Pinned routes and shadow traffic are the gateway's: another target would refuse them mid-rollout.
      const kind = spec?.deployment?.target?.kind;
      if (kind !== undefined && kind !== 'gateway') {
        if (spec?.rollout?.shadow) {
          ctx.addIssue({
            code: 'custom',
            path: ['rollout', 'shadow'],
            message: `shadow traffic needs the gateway target, not deployment.target kind "${kind}"`,
          });
        }
        if (Array.isArray(spec?.rollout?.pins) && spec.rollout.pins.length > 0) {
          ctx.addIssue({
            code: 'custom',
            path: ['rollout', 'pins'],
            message: `pinned routes need the gateway target, not deployment.target kind "${kind}"`,
          });
        }
      }
      // A ramp gate override must name a step that has an approval.
      const stepGates = new Set(
        (Array.isArray(spec?.rollout?.steps) ? spec.rollout.steps : [])
          .filter((st) => st?.approval)
          .map((st) => `ramp-${st?.percent}`),
      );
      for (const gate of Object.keys(spec?.approval?.gates ?? {})) {
        if (gate.startsWith('ramp-') && !stepGates.has(gate)) {
          ctx.addIssue({
            code: 'custom',
            path: ['approval', 'gates', gate],
            message: `no rollout step has this gate (steps with approval: ${[...stepGates].join(', ') || 'none'})`,
          });
        }
      }
    },
    { when: () => true },
  );
export type LifecycleSpec = z.infer<typeof LifecycleSpec>;

/** The workflow id of a model version's lifecycle: one lifecycle per model version. */
export function lifecycleWorkflowId(model: string, version: string): string {
  return `lifecycle-${model}-${version}`;
}

/** Formats zod problems one per line with their path, for CLI and failure messages. */
export function describeIssues(error: z.ZodError): string[] {
  // Paths and messages quote the input (keys, unrecognized names): each is clipped, so a hostile payload cannot make
  // an error message, a log line or a refusal megabytes long.
  return error.issues.slice(0, 50).map((issue) => {
    const path = issue.path.length ? issue.path.map((p) => clipped(String(p), 80)).join('.') : '(root)';
    return `${clipped(path, 200)}: ${clipped(issue.message, 300)}`;
  });
}
