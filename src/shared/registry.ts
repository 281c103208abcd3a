import { z } from 'zod';
import { DeploymentTargetSpec } from './deployment-target';
import { HolderName, Identity, LeaseId, ModelName, nameRecord, PoolName, VersionName } from './names';
import { MAX_DURATION_MS } from './duration';
import { Resources } from './quota';

/** Model registry: which version serves production, and the history of how it got there. */
export const PromotionRecord = z
  .object({
    model: ModelName,
    version: VersionName,
    artifactDir: z.string().min(1).max(4096),
    /** Offline metrics at validation (null: a metric that could not be computed). */
    metrics: nameRecord(z.string().min(1).max(128), z.number().nullable()).refine(
      (m) => Object.keys(m).length <= 200,
      'at most 200 metrics',
    ),
    /** The lifecycle that promoted it: the idempotency key of the promotion. */
    lifecycleId: HolderName,
    /** The run of that lifecycle: a re-run of the same lifecycle id promotes (and rolls back) afresh. */
    runId: z.string().min(1).max(64).optional(),
    by: Identity,
    /** The key `by` signed the operation with (a signed approval, a signed rollback). */
    keyId: z.string().max(64).optional(),
    at: z
      .string()
      .max(64)
      .refine((t) => Number.isFinite(Date.parse(t)), 'an ISO time'),
    /** `rollback` when a rollback put this version back (its `lifecycleId` is then the rollback's workflow id). */
    kind: z.enum(['promotion', 'rollback']).optional(),
    reason: z.string().max(2000).optional(),
    /** The quota the version holds while it serves, so a rollback can hand it back and take it again. */
    serving: z.object({ pool: PoolName, leaseId: LeaseId, resources: Resources }).strict().optional(),
    /** Where it serves, when not the worker's gateway: a rollback acts on the same target. */
    target: DeploymentTargetSpec.optional(),
    /** SHA-256 of the artifact as trained (`sha256:<hex>`): the gateway refuses to load files that differ. */
    artifactDigest: z
      .string()
      .regex(/^sha256:[0-9a-f]{64}$/, 'sha256: and 64 lowercase hex digits')
      .optional(),
    /** Where the artifact store has the artifact (src/artifacts/store.ts): gateways on other hosts fetch it from there. */
    artifactUri: z.string().min(1).max(2048).optional(),
    /** The approvals that let it through, as the lifecycle recorded them: the registry checks them with the lifecycle. */
    approvals: z
      .array(
        z
          .object({
            gate: z.string().min(1).max(200),
            by: Identity,
            keyId: z.string().max(64).optional(),
          })
          .strict(),
      )
      .max(100)
      .optional(),
  })
  .strict();
export type PromotionRecord = z.output<typeof PromotionRecord>;

/**
 * Who may change a model's traffic weights now: one writer per model (a lifecycle from its canary to its end, a
 * rollback while it runs), so two writers never overwrite each other's weight tables.
 */
export const TrafficHolder = z
  .object({
    workflowId: HolderName,
    runId: z.string().min(1).max(64),
    kind: z.enum(['lifecycle', 'rollback']),
    /** What the holder is doing, for the refusal a second writer gets (`rollout of v9`). */
    what: z.string().max(200),
  })
  .strict();
export type TrafficHolder = z.infer<typeof TrafficHolder>;

export interface TrafficLease extends TrafficHolder {
  /** ISO time it was granted. */
  since: string;
}

export const AcquireTrafficInput = z
  .object({
    holder: TrafficHolder,
    /** Take the lease over from this holder (its workflow is no longer running); refused if someone else holds it. */
    replacing: z
      .object({ workflowId: HolderName, runId: z.string().min(1).max(64) })
      .strict()
      .optional(),
  })
  .strict();
export type AcquireTrafficInput = z.infer<typeof AcquireTrafficInput>;

export type AcquireTrafficResult = { granted: true; lease: TrafficLease } | { granted: false; heldBy: TrafficLease };

export const ReleaseTrafficInput = z.object({ workflowId: HolderName, runId: z.string().min(1).max(64) }).strict();
export type ReleaseTrafficInput = z.infer<typeof ReleaseTrafficInput>;

export interface RegistryState {
  model: string;
  production: PromotionRecord | null;
  previous: PromotionRecord | null;
  history: PromotionRecord[];
  /** The model's traffic writer, if any (absent in states written before traffic leases). */
  traffic?: TrafficLease | null;
}

/** One sentence naming a traffic lease's holder, for refusals and events. */
export function describeTrafficHolder(lease: TrafficLease): string {
  return `${lease.kind} ${lease.workflowId} (${lease.what}, since ${lease.since})`;
}

/** Workflow id of a model's registry entity workflow. */
export function registryWorkflowId(model: string): string {
  return `model-registry-${model}`;
}

/** Workflow id of a rollback of `model` requested at `at` (epoch ms). */
export function rollbackWorkflowId(model: string, at: number): string {
  return `rollback-${model}-${at.toString(36)}`;
}

/** Steps of a gradual rollback: the restored version's percentages, increasing within (0, 100] and ending at 100. */
export function validRollbackSteps(steps: readonly number[]): boolean {
  return steps.at(-1) === 100 && steps.every((p, i) => p > 0 && p <= 100 && (i === 0 || p > steps[i - 1]!));
}

/** What a rollback of a production model is asked to do (`mlctl rollback`, the alert router's `rollback` action). */
export const ModelRollbackInput = z
  .object({
    model: ModelName,
    /** The version to return to; default the registry's `previous`. */
    to: VersionName.optional(),
    by: Identity,
    reason: z.string().max(2000),
    /**
     * Gradual rollback: the restored version's share of traffic at each step, increasing and ending at 100 (e.g.
     * `[25, 50, 100]`), `stepIntervalMs` apart. Absent: all traffic at once.
     */
    steps: z
      .array(z.number())
      .min(1)
      .max(100)
      .superRefine((steps, ctx) => {
        if (!validRollbackSteps(steps))
          ctx.addIssue({
            code: 'custom',
            message: `rollback steps must increase within (0, 100] and end at 100, got ${steps.join(', ')}`,
          });
      })
      .optional(),
    stepIntervalMs: z.number().int().positive().max(MAX_DURATION_MS, 'at most 365 days').optional(),
    /** The requester's signed claim (`mlctl rollback --key`), where the platform policy requires one. */
    signed: z.unknown().optional(),
  })
  .strict();
export type ModelRollbackInput = z.input<typeof ModelRollbackInput>;

/** What a finished rollback reports to its caller (`mlctl rollback`, the alert router). */
export interface ModelRollbackResult {
  model: string;
  from: string;
  to: string;
  /** Workflow time from start to all traffic on `to`. */
  trafficMovedMs: number;
  at: string;
}
