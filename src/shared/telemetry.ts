import { z } from 'zod';
import { DataSketch, maxSketchJsonBytes, type SketchPlan } from './drift';
import { QualityCounters } from './quality';
import { MAX_CLASSES, Task } from './task';

/** Upper bounds (ms) of the gateway's latency histogram buckets; one more bucket counts everything above the last. */
export const LATENCY_BUCKETS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] as const;

export { PREDICTION_BINS } from './prediction-bins';

/** Longest `VersionTelemetry.epoch`; the gateway's own (a UUID, `/`, a load number) are at most 53 characters. */
export const MAX_EPOCH_LENGTH = 100;

/** Cumulative counters of one model version on the gateway since it was deployed. */
export const VersionTelemetry = z.object({
  version: z.string(),
  /**
   * Opaque id of the run of counters this snapshot belongs to: it changes whenever the version's counters start from
   * zero again (the gateway sends its boot id and the version's load sequence, so a restart or an undeploy + redeploy
   * changes it). Two snapshots with different epochs are not differenced: the later one is the window whole
   * (`countersRestarted` in src/domain/guardrails.ts). Absent from targets that do not send one; a decrease of any
   * counter then marks the restart.
   */
  epoch: z
    .string()
    .min(1)
    .max(MAX_EPOCH_LENGTH)
    .regex(/^[\x21-\x7e]*$/, 'printable ASCII characters, no spaces')
    .optional(),
  /** What the version predicts (absent from snapshots of targets that do not say: a binary classifier). */
  task: Task.optional(),
  /**
   * Rows whose prediction was attempted (successful + failed), excluding rows refused as invalid input. A request
   * of one row counts 1, a batch its rows.
   */
  requests: z.number().int().nonnegative(),
  /** Rows whose prediction failed on the server side (inference error, model not loadable). */
  errors: z.number().int().nonnegative(),
  /** Rows refused as invalid input (400) for this version. */
  invalidRequests: z.number().int().nonnegative(),
  /**
   * Length LATENCY_BUCKETS_MS.length + 1; non-cumulative counts per bucket of successful prediction requests (a
   * batch once, with its whole latency): the latency a caller sees. Per row it is `latencySumMs / (requests −
   * errors)`.
   */
  latencyBucketCounts: z.array(z.number().int().nonnegative()),
  latencySumMs: z.number().nonnegative(),
  /** Length PREDICTION_BINS; successful rows per prediction bin (see {@link PREDICTION_BINS}). */
  predictionBinCounts: z.array(z.number().int().nonnegative()),
  /** Successful rows whose predicted label is the positive class (binary classifiers; 0 otherwise). */
  positiveCount: z.number().int().nonnegative(),
  /** Multiclass: successful rows per predicted class, in the manifest's order of classes. */
  classCounts: z.array(z.number().int().nonnegative()).max(MAX_CLASSES).optional(),
  /** ISO time of the last successful prediction, if any. */
  lastSuccessAt: z.string().optional(),
  /**
   * The input features of every request routed to the version that passed the request schema (PredictRequest), counted
   * on the training profile's bins and categories, whether the model then took them or refused them (a missing or
   * mistyped feature, an unknown key: what the input-quality and skew checks look at); absent when the artifact has no
   * profile. Requests the schema refuses (too many keys, a category too long, not JSON) are counted in
   * `invalidRequests` only.
   */
  inputs: DataSketch.optional(),
  /**
   * Quality from the ground-truth labels joined to this version's predictions (`POST /v1/models/:model/labels`);
   * absent until the first label arrives, and in snapshots of gateways or targets that do not count it.
   */
  quality: QualityCounters.optional(),
});
export type VersionTelemetry = z.infer<typeof VersionTelemetry>;

/**
 * How large telemetry gets. A snapshot travels through workflow history: the lifecycle's analysis returns one and
 * sends two back (`before`, `recentSince`) in one activity input, and Temporal refuses payloads over 2 MB. Every part
 * that traffic can grow is bounded (src/shared/drift.ts: names tracked and their length; the rest are counters), so
 * the JSON of one snapshot is at most {@link maxModelTelemetryBytes}:
 *
 *   200 + Σ over deployed versions (1,500 + maxSketchJsonBytes(plan of the version))
 *
 * with maxSketchJsonBytes = 140 + 150·407 + Σ numeric (700 + 17·bins) + Σ categorical (600 + 17·(categories + 1)):
 * 61 KB per version for the names requests can bring, the rest fixed by the profile. The churn example (4 numeric
 * features of 5 to 10 bins, 2 categorical of 3 and 4 categories) gives 67.4 KB per version, 135 KB for a rollout's two
 * versions, whatever the traffic (a flood of hostile names measured 45 KB); a profile of 50 numeric features of 10 bins
 * and 20 categorical ones of 50 categories gives 136 KB per version.
 *
 * The 1,500 bytes of a version cover its key, its version name, every counter at 2^53 and an epoch of
 * MAX_EPOCH_LENGTH characters (1,343 bytes measured at their worst).
 */
export const VERSION_TELEMETRY_FIXED_JSON_BYTES = 1_500;
const MODEL_TELEMETRY_FIXED_JSON_BYTES = 200;

/** Largest JSON (UTF-8 bytes) of a ModelTelemetry whose versions count inputs on these plans (undefined: none). */
export function maxModelTelemetryBytes(plans: readonly (SketchPlan | undefined)[]): number {
  return plans.reduce(
    (bytes, plan) => bytes + VERSION_TELEMETRY_FIXED_JSON_BYTES + (plan ? maxSketchJsonBytes(plan) : 0),
    MODEL_TELEMETRY_FIXED_JSON_BYTES,
  );
}

/**
 * Largest telemetry answer a deployment target may give (JSON bytes): two snapshots and the rest of an activity input
 * must stay well under Temporal's 2 MB payload limit. A larger answer is refused, naming its size.
 */
export const MAX_TELEMETRY_BYTES = 512 * 1024;

/**
 * Shadow traffic of one version (src/shared/gateway-api.ts `ShadowRule`): its counters on the copies it predicted
 * (`candidate`), the counters of the version that answered the same rows (`primary`, binned like the candidate's, so
 * that the two bins compare on identical inputs), and the rows compared pairwise.
 */
export const ShadowTelemetry = z.object({
  candidate: VersionTelemetry,
  primary: VersionTelemetry,
  /** Rows both versions predicted. */
  compared: z.number().int().nonnegative(),
  /** Classifiers: rows on which both predicted the same label. */
  agreed: z.number().int().nonnegative(),
  /**
   * Sum over compared rows of the score difference: |Δ probability| of a binary classifier, half the L1 distance of
   * the class probabilities of a multiclass one, |Δ value| of a regression.
   */
  scoreDiffSum: z.number().nonnegative(),
  /** Copies not made because too many were already in flight (the shadow never queues behind users). */
  dropped: z.number().int().nonnegative(),
});
export type ShadowTelemetry = z.infer<typeof ShadowTelemetry>;

/** One gateway's counters of a model: a ModelTelemetry without the model's name (and without replicas). */
export const ReplicaTelemetry = z.object({
  /** ISO time the snapshot was taken on the gateway. */
  at: z.string(),
  versions: z.record(z.string(), VersionTelemetry),
  /** Requests of pinned routes, counted apart from `versions` (absent when none came). */
  pinned: z.record(z.string(), VersionTelemetry).optional(),
  /** Shadow traffic by the version that predicted the copies (absent when none). */
  shadow: z.record(z.string(), ShadowTelemetry).optional(),
});
export type ReplicaTelemetry = z.infer<typeof ReplicaTelemetry>;

export const ModelTelemetry = z.object({
  model: z.string(),
  ...ReplicaTelemetry.shape,
  /**
   * A replicated gateway's snapshot (src/targets/replicas.ts): each replica's own counters by its admin URL, beside
   * their sum in `versions`, `pinned` and `shadow` (`at` is the earliest replica's). Replicas restart apart, so a window
   * is differenced replica by replica and then summed (`modelWindowOf` in src/domain/replica-telemetry.ts); the sums'
   * epochs change when any replica's does, so a reader that differences the sums alone never subtracts across a
   * restart. Absent from a single gateway's snapshot, and dropped from any target's answer (only the replicated target
   * sets it, from the replicas it read).
   */
  replicas: z.record(z.string(), ReplicaTelemetry).optional(),
});
export type ModelTelemetry = z.infer<typeof ModelTelemetry>;

/**
 * Written next to a model's artifact at validation: its predictions on the test set, binned like live ones, with what
 * the gateway needs to bin a regression's live predictions (`edges`) and what estimates a classifier's accuracy
 * without labels (`calibration`, src/domain/performance-estimation.ts). Files written before tasks existed have
 * `rows` and `predictionBinCounts` only (a binary classifier).
 */
export const PREDICTION_BASELINE_FILE = 'validation-predictions.json';
export interface PredictionBaseline {
  task?: Task;
  rows: number;
  predictionBinCounts: number[];
  /** Multiclass: rows per predicted class. */
  classCounts?: number[];
  /** Regression: the inner bin edges, the ventiles of the predictions (PREDICTION_BINS − 1 of them). */
  edges?: number[];
  /** Classifiers with a label column in the test set: accuracy per prediction bin. */
  calibration?: { bins: number; counts: number[]; correct: number[]; confidence: number[] };
}
