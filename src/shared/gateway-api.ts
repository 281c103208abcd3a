import { z } from 'zod';

/**
 * The serving gateway's HTTP contract. The admin API is what the serving activities call;
 * every mutating call carries an idempotency key (`opId`) so a retried activity changes nothing twice.
 */

export const ModelName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, starting with a letter or digit');
export const VersionName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
    'letters, digits, dot, dash and underscore, starting with a letter or digit',
  );

/** PUT /admin/models/:model/versions/:version */
export const DeployRequest = z.object({
  opId: z.string().min(1),
  /** Folder holding model.onnx and model.json as written by the trainer. */
  artifactDir: z.string().min(1),
});
export type DeployRequest = z.infer<typeof DeployRequest>;

/** DELETE /admin/models/:model/versions/:version?opId=... : refused (409) while the version has weight. */

/**
 * PUT /admin/models/:model/weights: the whole table at once, swapped atomically. Weights are percentages summing to
 * 100; an empty table takes the model out of service.
 */
export const SetWeightsRequest = z.object({
  opId: z.string().min(1),
  weights: z.record(z.string(), z.number().min(0).max(100)),
});
export type SetWeightsRequest = z.infer<typeof SetWeightsRequest>;

/**
 * Injected faults of one deployed version, for rollback rehearsals ("game days") and tests, in the manner of Istio's
 * fault injection. They apply to the predictions routed to the version:
 * - `down`: every prediction fails with 503 (an outage: counted as `errors`, and the version reports no successes);
 * - `delayMs`: each prediction that reaches inference first waits this long; the wait is part of its latency;
 * - `errorRate`: that share of the predictions that reach inference fail with 500 (counted as `errors`), chosen by a
 *   counter, not at random: 0.3 fails exactly 3 of every 10, restarting the count at each PUT.
 *
 * Invalid input is still refused with 400 on a version with a delay or an error rate (its features are checked
 * before inference); a `down` version answers 503 to everything routed to it. Every error body starts with
 * `injected fault:`.
 *
 * Faults live in the gateway's memory only: they are not journaled (no opId), not restored after a restart, and
 * cleared when the version is undeployed.
 */
export const FaultSettings = z.strictObject({
  /** Share of the predictions in [0, 1] that fail with 500. */
  errorRate: z.number().min(0).max(1).optional(),
  /** Wait before inference, in milliseconds. */
  delayMs: z.number().int().min(0).max(60_000).optional(),
  /** The version is unreachable: every prediction fails with 503. */
  down: z.boolean().optional(),
});
export type FaultSettings = z.infer<typeof FaultSettings>;

/**
 * PUT /admin/models/:model/versions/:version/faults: replaces the version's faults (at least one field; unknown
 * fields are refused). 400 names the bad field; 404 when the version is not deployed.
 * DELETE on the same path clears them; GET reads them. All three answer {@link VersionFaults}.
 */
export const SetFaultsRequest = FaultSettings.refine((faults) => Object.keys(faults).length > 0, {
  message: 'give at least one of errorRate, delayMs, down',
});
export type SetFaultsRequest = z.infer<typeof SetFaultsRequest>;

/** Reply of GET, PUT and DELETE /admin/models/:model/versions/:version/faults; `faults` is `{}` when none are set. */
export const VersionFaults = z.object({
  model: z.string(),
  version: z.string(),
  faults: FaultSettings,
});
export type VersionFaults = z.infer<typeof VersionFaults>;

/** Result of every admin mutation. `applied` is false when the opId had been applied before (idempotent replay). */
export const AdminResult = z.object({
  opId: z.string(),
  applied: z.boolean(),
});
export type AdminResult = z.infer<typeof AdminResult>;

/** GET /admin/models/:model */
export const ModelRouting = z.object({
  model: z.string(),
  versions: z.array(z.object({ version: z.string(), artifactDir: z.string(), deployedAt: z.string() })),
  weights: z.record(z.string(), z.number()),
});
export type ModelRouting = z.infer<typeof ModelRouting>;

/** One record of GET /admin/ops: every admin mutation the gateway applied, in order. */
export const AdminOp = z.object({
  opId: z.string(),
  kind: z.enum(['deploy', 'undeploy', 'set-weights']),
  model: z.string(),
  version: z.string().optional(),
  weights: z.record(z.string(), z.number()).optional(),
  at: z.string(),
});
export type AdminOp = z.infer<typeof AdminOp>;

/** POST /v1/models/:model/predict */
export const PredictRequest = z.object({
  /** Sticky routing key: a user keeps its version while the weights hold. */
  userId: z.string().min(1),
  requestId: z.string().min(1).optional(),
  features: z.record(z.string(), z.union([z.number(), z.string(), z.null()])),
});
export type PredictRequest = z.infer<typeof PredictRequest>;

export const PredictResponse = z.object({
  requestId: z.string(),
  model: z.string(),
  version: z.string(),
  label: z.number().int(),
  /** Probability of the positive class (label 1). */
  probability: z.number(),
  latencyMs: z.number(),
});
export type PredictResponse = z.infer<typeof PredictResponse>;

/** model.json, written by the trainer beside model.onnx. */
export const ModelManifest = z.object({
  name: z.string(),
  features: z.array(z.object({ name: z.string(), type: z.enum(['numeric', 'categorical']) })).min(1),
  label: z.string(),
  classes: z.array(z.number().int()),
  outputs: z.object({ label: z.string(), probabilities: z.string() }),
});
export type ModelManifest = z.infer<typeof ModelManifest>;
