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
