import { z } from 'zod';
import { ArtifactDigest } from './artifact-digest';
import { FeatureName, featureNameProblem, nameRecord, VersionName } from './names';
import { DEFAULT_TASK, MAX_CLASSES, Task } from './task';
import { PREDICTION_BINS } from './prediction-bins';

/**
 * The serving gateway's HTTP contract. Two listeners: the public one serves `/v1/...` (predictions, and labels with
 * their own bearer token); the admin one serves `/admin/...`, every route behind the admin bearer token. The admin
 * API is what the serving activities call; every mutating call carries an idempotency key (`opId`) so a retried
 * activity changes nothing twice.
 */

export { ModelName, VersionName } from './names';

/** Most versions one weights table may name. */
export const MAX_WEIGHTS = 64;

/**
 * Longest opId. The gateway journals every opId it applied (routing.json), so its length bounds what one admin op adds
 * to the file; lifecycle opIds (`lifecycle-<model>-<version>:weights:3`) are under 160.
 */
export const MAX_OP_ID_LENGTH = 200;

/**
 * An admin op's idempotency key: letters, digits and `. _ : @ / + = -`, starting with a letter or digit, at most
 * {@link MAX_OP_ID_LENGTH} characters (`lifecycle-churn-v7:weights:2`, `rollback-churn-m3x9:deploy`).
 */
export const OpId = z
  .string({ error: 'an opId (a string)' })
  .max(MAX_OP_ID_LENGTH, `an opId of at most ${MAX_OP_ID_LENGTH} characters`)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._:@/+=-]*$/,
    'an opId: letters, digits and . _ : @ / + = -, starting with a letter or digit',
  );

/** Longest artifact folder path (Linux's PATH_MAX). */
export const MAX_ARTIFACT_DIR_LENGTH = 4096;

/** Most quantile edges a deploy may give: one fewer than the prediction bins. */
export const PREDICTION_EDGES = PREDICTION_BINS - 1;

/**
 * The inner edges of a regression's prediction bins: the ventiles of its predictions on the test set at validation,
 * non-decreasing (ties leave empty bins). Bin i holds (edges[i-1], edges[i]].
 */
export const PredictionEdges = z
  .array(z.number().finite())
  .length(PREDICTION_EDGES, `${PREDICTION_EDGES} edges (the ventiles of the validation predictions)`)
  .refine((e) => e.every((x, i) => i === 0 || x >= (e[i - 1] as number)), 'edges in non-decreasing order');

/**
 * PUT /admin/models/:model/versions/:version. The folder must resolve (symbolic links followed) inside the gateway's
 * artifact root, and its files must have `artifactDigest`: the gateway loads the model from the very bytes it hashed.
 * Refusals about the artifact are 422; whether a folder is missing, unreadable or outside the root is never told apart.
 */
export const DeployRequest = z.object({
  opId: OpId,
  /** Folder holding model.onnx and model.json as written by the trainer. */
  artifactDir: z
    .string()
    .min(1, 'a folder path')
    .max(MAX_ARTIFACT_DIR_LENGTH, `a folder path of at most ${MAX_ARTIFACT_DIR_LENGTH} characters`),
  /** The artifact's digest recorded at training (src/artifacts/digest.ts). */
  artifactDigest: ArtifactDigest,
  /**
   * Where the artifact store has the artifact (`<store>/<key>/sha256-<hex>`). Given, the gateway fetches it into its
   * cache (digest-checked) and loads it from there, not from `artifactDir`; a URI outside the gateway's configured store
   * is refused (400), and so is one whose stored bytes do not have `artifactDigest` (422, nothing loaded).
   */
  artifactUri: z.string().min(1, 'an artifact store URI').max(2048, 'a URI of at most 2048 characters').optional(),
  /**
   * A regression's prediction bin edges from validation (required for one: its telemetry bins predictions on them);
   * ignored for classifiers, whose bins are fixed.
   */
  predictionEdges: PredictionEdges.optional(),
});
export type DeployRequest = z.infer<typeof DeployRequest>;

/** DELETE /admin/models/:model/versions/:version?opId=... : refused (409) while the version has weight. */

/**
 * PUT /admin/models/:model/weights: the whole table at once, swapped atomically. Weights are percentages summing to
 * 100; an empty table takes the model out of service.
 */
export const SetWeightsRequest = z.object({
  opId: OpId,
  /** Percentages by version name; at most {@link MAX_WEIGHTS} versions. */
  weights: nameRecord(VersionName, z.number().min(0).max(100), { max: MAX_WEIGHTS, what: 'versions' }),
});
export type SetWeightsRequest = z.infer<typeof SetWeightsRequest>;

/** A request header's name as routes match it: lower case (HTTP header names are case-insensitive). */
export const RouteHeader = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9-]*$/, 'a header name in lower case: letters, digits and "-"');

/**
 * A pinned route: a request whose header `header` holds one of `values` is served by `version`, whatever the weights
 * (QA reaching a candidate at 0 %, a tenant kept on the stable version). Pinned requests are counted apart (the
 * telemetry's `pinned`), out of the version's analysis windows, unless `counted`.
 */
export const PinRule = z.strictObject({
  header: RouteHeader,
  values: z.array(z.string().min(1).max(256)).min(1).max(100),
  version: VersionName,
  counted: z.boolean().default(false),
});
export type PinRule = z.infer<typeof PinRule>;

/**
 * Shadow traffic: a copy of `percent` % of the requests another version answers is predicted by `version` after the
 * answer has gone, both predictions compared and counted (the telemetry's `shadow`); callers only ever see the
 * version they are routed to.
 */
export const ShadowRule = z.strictObject({ version: VersionName, percent: z.number().gt(0).max(100) });
export type ShadowRule = z.infer<typeof ShadowRule>;

/** Most pinned routes one model may have. */
export const MAX_PIN_RULES = 20;

/** A model's routes beside its weights: pinned headers and shadow traffic. */
export const ModelRoutes = z.strictObject({
  pins: z.array(PinRule).max(MAX_PIN_RULES).default([]),
  shadow: ShadowRule.optional(),
});
export type ModelRoutes = z.infer<typeof ModelRoutes>;

/**
 * PUT /admin/models/:model/routes: replaces the model's routes as a whole (`{ opId }` alone clears them). Every version
 * named must be deployed (409 otherwise); undeploying a version drops the routes that name it.
 */
export const SetRoutesRequest = ModelRoutes.extend({ opId: OpId });
export type SetRoutesRequest = z.infer<typeof SetRoutesRequest>;

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
  versions: z.array(
    z.object({
      version: z.string(),
      artifactDir: z.string(),
      /** Where the gateway fetched it from (absent: loaded from `artifactDir` as deployed). */
      artifactUri: z.string().optional(),
      /** Absent for a version deployed before digests were recorded. */
      artifactDigest: z.string().optional(),
      deployedAt: z.string(),
    }),
  ),
  weights: z.record(z.string(), z.number()),
  /** Pinned routes and shadow traffic, when the model has any. */
  routes: ModelRoutes.optional(),
});
export type ModelRouting = z.infer<typeof ModelRouting>;

/** One record of GET /admin/ops: every admin mutation the gateway applied, in order. */
export const AdminOp = z.object({
  opId: z.string(),
  kind: z.enum(['deploy', 'undeploy', 'set-weights', 'set-routes']),
  model: z.string(),
  version: z.string().optional(),
  weights: z.record(z.string(), z.number()).optional(),
  at: z.string(),
});
export type AdminOp = z.infer<typeof AdminOp>;

/** Most feature keys one prediction may carry, and most features a served model may have. */
export const MAX_REQUEST_FEATURES = 1000;

/** Longest string value of a feature (a category) in a prediction, in characters. */
export const MAX_FEATURE_VALUE_LENGTH = 1024;

/** A feature's value as a prediction may carry it: a number, a category or null (missing). */
export type FeatureValue = number | string | null;

/**
 * Why `value` cannot be a feature's value, or null when it can: a finite number, a string of at most
 * {@link MAX_FEATURE_VALUE_LENGTH} characters (a category), or null.
 */
function featureValueProblem(value: unknown): string | null {
  if (value === null || (typeof value === 'number' && Number.isFinite(value))) return null;
  if (typeof value !== 'string') return 'a number, a string (a category) or null';
  return value.length > MAX_FEATURE_VALUE_LENGTH
    ? `a category of at most ${MAX_FEATURE_VALUE_LENGTH} characters`
    : null;
}

/**
 * A prediction's features: at most {@link MAX_REQUEST_FEATURES} keys, each a feature name (src/shared/names.ts), each
 * value a {@link FeatureValue}. Checked by hand in one pass over the keys: this runs on every prediction, and a huge
 * object is refused at its size before any key is looked at.
 */
const RequestFeatures = z.unknown().transform((features, ctx): Record<string, FeatureValue> => {
  if (typeof features !== 'object' || features === null || Array.isArray(features)) {
    ctx.addIssue({ code: 'custom', message: 'an object of feature values: { "name": value, ... }' });
    return z.NEVER;
  }
  const entries = Object.entries(features);
  if (entries.length > MAX_REQUEST_FEATURES) {
    ctx.addIssue({ code: 'custom', message: `at most ${MAX_REQUEST_FEATURES} features, got ${entries.length}` });
    return z.NEVER;
  }
  let valid = true;
  for (const [key, value] of entries) {
    const keyProblem = featureNameProblem(key);
    if (keyProblem) {
      ctx.addIssue({ code: 'custom', message: keyProblem });
      return z.NEVER;
    }
    const valueProblem = featureValueProblem(value);
    if (valueProblem) {
      ctx.addIssue({ code: 'custom', path: [key], message: valueProblem });
      valid = false;
    }
  }
  // Own properties of a JSON object, every key a feature name (never `__proto__`), every value checked.
  return valid ? (features as Record<string, FeatureValue>) : z.NEVER;
});

/** Most rows one prediction request may carry (`rows`): a batch is routed, checked and answered as a whole. */
export const MAX_BATCH_ROWS = 1000;

/**
 * POST /v1/models/:model/predict: one row (`features`) or a batch (`rows`, at most {@link MAX_BATCH_ROWS}), never
 * both. A batch goes to one version (the user's, by `userId`), is refused whole when any row is invalid (the error
 * names the row) and is answered row by row in order.
 */
export const PredictRequest = z
  .object({
    /** Sticky routing key: a user keeps its version while the weights hold. */
    userId: z.string().min(1),
    /**
     * Echoed in the answer; the key that ground-truth labels name. A longer one than MAX_LABEL_REQUEST_ID_LENGTH
     * (src/shared/quality.ts) is served but not remembered for labels. In a batch, row i is remembered as
     * `<requestId>/<i>` unless `requestIds` names each row.
     */
    requestId: z.string().min(1).optional(),
    features: RequestFeatures.optional(),
    rows: z
      .array(RequestFeatures)
      .min(1, 'at least one row')
      .max(MAX_BATCH_ROWS, `at most ${MAX_BATCH_ROWS} rows per request`)
      .optional(),
    /** A batch's request id per row (the keys its labels name), as many as rows. */
    requestIds: z.array(z.string().min(1)).max(MAX_BATCH_ROWS).optional(),
  })
  .superRefine((r, ctx) => {
    if ((r.features === undefined) === (r.rows === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give either features (one row) or rows (a batch)' });
    }
    if (r.requestIds !== undefined && r.requestIds.length !== (r.rows?.length ?? -1)) {
      ctx.addIssue({ code: 'custom', path: ['requestIds'], message: 'one request id per row of rows' });
    }
  });
export type PredictRequest = z.infer<typeof PredictRequest>;

/**
 * One row's prediction, by task: a classifier's `label` (a class of the manifest), a binary classifier's `probability`
 * of the positive class (label 1), a multiclass classifier's `probabilities` in the manifest's order of classes and
 * `probability` of its predicted class; a regression's `value`.
 */
export const RowPrediction = z.object({
  label: z.number().int().optional(),
  probability: z.number().optional(),
  probabilities: z.array(z.number()).optional(),
  value: z.number().optional(),
});
export type RowPrediction = z.infer<typeof RowPrediction>;

/** Answer to one row: the row's prediction beside the request's fields. */
export const PredictResponse = RowPrediction.extend({
  requestId: z.string(),
  model: z.string(),
  version: z.string(),
  task: Task.optional(),
  latencyMs: z.number(),
});
export type PredictResponse = z.infer<typeof PredictResponse>;

/** Answer to a batch: one prediction per row, in order, each with the request id its label names. */
export const BatchPredictResponse = z.object({
  requestId: z.string(),
  model: z.string(),
  version: z.string(),
  task: Task,
  predictions: z.array(RowPrediction.extend({ requestId: z.string() })),
  /** The whole batch's latency; per row it is this divided by the rows. */
  latencyMs: z.number(),
});
export type BatchPredictResponse = z.infer<typeof BatchPredictResponse>;

/** model.json, written by the trainer beside model.onnx. */
export const ModelManifest = z
  .object({
    name: z.string(),
    /** What the model predicts; manifests written before tasks existed are binary classifiers. */
    task: Task.default(DEFAULT_TASK),
    features: z
      .array(z.object({ name: FeatureName, type: z.enum(['numeric', 'categorical']) }))
      .min(1)
      .max(MAX_REQUEST_FEATURES, `at most ${MAX_REQUEST_FEATURES} features (what a prediction may carry)`),
    label: z.string(),
    /** A classifier's classes, as its label output answers them; the positive class of a binary one is 1. */
    classes: z.array(z.number().int()).max(MAX_CLASSES, `at most ${MAX_CLASSES} classes`).default([]),
    /** Optional display names of the classes, in the same order. */
    classNames: z.array(z.string().min(1).max(128)).max(MAX_CLASSES).optional(),
    /** The graph's output names: `label` and `probabilities` of a classifier, `value` of a regression. */
    outputs: z.object({
      label: z.string().optional(),
      probabilities: z.string().optional(),
      value: z.string().optional(),
    }),
  })
  .superRefine((m, ctx) => {
    const need = (field: 'label' | 'probabilities' | 'value') => {
      if (m.outputs[field] === undefined) {
        ctx.addIssue({ code: 'custom', path: ['outputs', field], message: `a ${m.task} model needs outputs.${field}` });
      }
    };
    if (m.task === 'regression') {
      need('value');
      if (m.classes.length > 0) {
        ctx.addIssue({ code: 'custom', path: ['classes'], message: 'a regression model has no classes' });
      }
      return;
    }
    need('label');
    need('probabilities');
    if (m.task === 'binary-classification' && (m.classes.length !== 2 || !m.classes.includes(1))) {
      ctx.addIssue({
        code: 'custom',
        path: ['classes'],
        message: `a binary-classification model has two classes, 1 the positive one; got ${m.classes.length}`,
      });
    }
    if (m.task === 'multiclass-classification' && m.classes.length < 3) {
      ctx.addIssue({
        code: 'custom',
        path: ['classes'],
        message: `a multiclass-classification model has at least 3 classes; got ${m.classes.length}`,
      });
    }
    if (new Set(m.classes).size !== m.classes.length) {
      ctx.addIssue({ code: 'custom', path: ['classes'], message: 'classes repeat' });
    }
    if (m.classNames !== undefined && m.classNames.length !== m.classes.length) {
      ctx.addIssue({ code: 'custom', path: ['classNames'], message: 'one name per class' });
    }
  });
export type ModelManifest = z.infer<typeof ModelManifest>;
