import { z } from 'zod';
import { FeatureOverride } from '../drift/options';
import { Duration } from './duration';
import { ModelName, VersionName } from './gateway-api';
import { Architecture, Precision } from './hardware';

/** An approver or submitter identity: `alice`, `ci@pipelines`, `svc:nightly`. */
export const Identity = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$/, 'an identity: letters, digits and . _ @ : + -');

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
    params: z.record(z.string(), z.unknown()).default({}),
    /** The training lease of lifecycles started before the hardware planner (which leases the chosen device). */
    resources: z
      .object({ cpu: z.number().positive().default(1), memoryGiB: z.number().positive().default(2) })
      .strict()
      .default({ cpu: 1, memoryGiB: 2 }),
    timeout: Duration.default(30 * 60_000),
    /** A crashed or killed training process is retried this many times in all. */
    maxAttempts: z.number().int().min(1).max(10).default(3),
    /** Size of the training data for the hardware planner; rows are counted from train.csv when absent. */
    dataset: z
      .object({ rows: z.number().int().positive().optional(), tokens: z.number().int().positive().optional() })
      .strict()
      .optional(),
    epochs: z.number().positive().default(1),
    /** The planner picks the cheapest hardware that trains within this. */
    deadline: Duration.optional(),
    /** The planner's fastest candidate stays within this. */
    budgetUsd: z.number().positive().optional(),
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
    features: z.record(z.string(), FeatureOverride).default({}),
  })
  .strict();
export type TestDataSpec = z.infer<typeof TestDataSpec>;

export const ValidationSpec = z
  .object({
    /** Absolute gates on the candidate's offline metrics, e.g. `{ auc: { min: 0.8 } }`. */
    thresholds: z.record(z.string(), MetricThreshold).default({}),
    /**
     * Largest allowed drop against the production version on the same test set, e.g. `{ auc: 0.02 }`.
     * For metrics where lower is better (names ending in `Loss` or `Error`) it is the largest allowed rise.
     */
    maxRegression: z.record(z.string(), z.number().nonnegative()).default({}),
    /** Drift of the test set against the training set (R10): a test set unlike training makes the metrics moot. */
    testData: TestDataSpec.default(TestDataSpec.parse({})),
  })
  .strict();
export type ValidationSpec = z.infer<typeof ValidationSpec>;

export const ApprovalSpec = z
  .object({
    /** Who may approve or reject this lifecycle's gates. The submitter never approves its own lifecycle. */
    approvers: z.array(Identity).min(1),
    /** How long a gate waits before the lifecycle ends `rejected`. */
    timeout: Duration.default(24 * 3_600_000),
  })
  .strict();
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

export const AnalysisSpec = z
  .object({
    /** Fewest candidate predictions a stage needs before it is judged; fewer is inconclusive. */
    minSamples: z.number().int().positive().default(100),
    /** After the bake, how long the analysis may wait for the minimum sample before calling it inconclusive. */
    maxWaitForSamples: Duration.default(5 * 60_000),
    errorRate: z
      .object({ max: z.number().min(0).max(1) })
      .strict()
      .default({ max: 0.01 }),
    latencyP99Ms: z
      .object({ max: z.number().positive(), maxRatioToStable: z.number().positive().optional() })
      .strict()
      .default({ max: 500, maxRatioToStable: 3 }),
    /**
     * Drift of the candidate's predicted probabilities against the stable version's: fails when the population
     * stability index exceeds `maxPsi` and a KS test on the same bins is significant at `alpha`.
     */
    predictionDrift: z
      .object({ maxPsi: z.number().positive(), alpha: z.number().gt(0).lt(1).default(0.01) })
      .strict()
      .default({ maxPsi: 0.25, alpha: 0.01 }),
    /**
     * Skew of the candidate's inputs against its training profile, per feature on the profile's bins: fails when a
     * feature's PSI exceeds `maxPsi` and its test (binned KS, chi-squared) is significant at `alpha` / features.
     */
    featureSkew: z
      .object({ maxPsi: z.number().positive(), alpha: z.number().gt(0).lt(1).default(0.001) })
      .strict()
      .default({ maxPsi: 0.5, alpha: 0.001 }),
  })
  .strict();
export type AnalysisSpec = z.infer<typeof AnalysisSpec>;

export const RolloutSpec = z
  .object({
    canary: z.object({ percent: z.number().gt(0).lt(100), bake: Duration }).strict(),
    /** Ramp stages after the canary, in increasing percent; the last one is 100. */
    steps: z.array(RolloutStep).min(1),
    analysis: AnalysisSpec.default(AnalysisSpec.parse({})),
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

/** The lifecycle spec a pipeline submits (`mlctl run spec.yaml`). */
export const LifecycleSpec = z
  .object({
    apiVersion: z.literal('ml-lifecycle/v1'),
    kind: z.literal('Lifecycle'),
    model: ModelName,
    version: VersionName,
    description: z.string().max(2000).optional(),
    /** Identity of the pipeline or person starting the lifecycle; it may not approve its own gates. */
    submittedBy: Identity,
    training: TrainingSpec,
    hardware: HardwareSpec.default(HardwareSpec.parse({})),
    serving: ServingSpec.default({ latencyP99Ms: 100 }),
    validation: ValidationSpec.default(ValidationSpec.parse({})),
    approval: ApprovalSpec,
    rollout: RolloutSpec,
    quota: QuotaSpec.default(QuotaSpec.parse({})),
  })
  .strict()
  .superRefine(
    (spec, ctx) => {
      const approvers: unknown = spec?.approval?.approvers;
      if (Array.isArray(approvers) && typeof spec?.submittedBy === 'string' && approvers.includes(spec.submittedBy)) {
        ctx.addIssue({
          code: 'custom',
          path: ['approval', 'approvers'],
          message: `the submitter "${spec.submittedBy}" cannot be an approver of its own lifecycle`,
        });
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
  return error.issues.map((issue) => {
    const path = issue.path.length ? issue.path.map(String).join('.') : '(root)';
    return `${path}: ${issue.message}`;
  });
}
