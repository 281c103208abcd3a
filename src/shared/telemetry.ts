import { z } from 'zod';
import { DataSketch } from '../drift/sketch';
import { QualityCounters } from './quality';

/** Upper bounds (ms) of the gateway's latency histogram buckets; one more bucket counts everything above the last. */
export const LATENCY_BUCKETS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] as const;

/** The positive-class probability is counted in this many equal-width bins over [0, 1]. */
export const PREDICTION_BINS = 20;

/** Cumulative counters of one model version on the gateway since it was deployed. */
export const VersionTelemetry = z.object({
  version: z.string(),
  /** Predictions attempted (successful + failed), excluding requests rejected as invalid input. */
  requests: z.number().int().nonnegative(),
  /** Predictions that failed on the server side (inference error, model not loadable). */
  errors: z.number().int().nonnegative(),
  /** Requests refused as invalid input (400) for this version. */
  invalidRequests: z.number().int().nonnegative(),
  /** Length LATENCY_BUCKETS_MS.length + 1; non-cumulative counts per bucket of successful predictions. */
  latencyBucketCounts: z.array(z.number().int().nonnegative()),
  latencySumMs: z.number().nonnegative(),
  /** Length PREDICTION_BINS; counts of the positive-class probability per bin. */
  predictionBinCounts: z.array(z.number().int().nonnegative()),
  /** Successful predictions whose predicted label is the positive class. */
  positiveCount: z.number().int().nonnegative(),
  /** ISO time of the last successful prediction, if any. */
  lastSuccessAt: z.string().optional(),
  /**
   * Every request's input features counted on the training profile's bins and categories (all requests routed to the
   * version that carried features, valid or not); absent when the artifact has no profile.
   */
  inputs: DataSketch.optional(),
  /**
   * Quality from the ground-truth labels joined to this version's predictions (`POST /v1/models/:model/labels`);
   * absent until the first label arrives, and in snapshots of gateways or targets that do not count it.
   */
  quality: QualityCounters.optional(),
});
export type VersionTelemetry = z.infer<typeof VersionTelemetry>;

export const ModelTelemetry = z.object({
  model: z.string(),
  /** ISO time the snapshot was taken on the gateway. */
  at: z.string(),
  versions: z.record(z.string(), VersionTelemetry),
});
export type ModelTelemetry = z.infer<typeof ModelTelemetry>;

/** Written next to a model's artifact at validation: its predictions on the test set, binned like live ones. */
export const PREDICTION_BASELINE_FILE = 'validation-predictions.json';
export interface PredictionBaseline {
  rows: number;
  predictionBinCounts: number[];
}
