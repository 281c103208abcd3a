import { randomUUID } from 'node:crypto';
import { DataSketcher, type SketchPlan } from '../drift/sketch';
import { countLabel, emptyQualityCounters, type LabelledPrediction, type QualityCounters } from '../shared/quality';
import { DEFAULT_TASK, type Task } from '../shared/task';
import { LATENCY_BUCKETS_MS, PREDICTION_BINS, type ModelTelemetry, type VersionTelemetry } from '../shared/telemetry';

/** How a version's predictions are binned: its task, a multiclass model's number of classes, a regression's edges. */
export interface PredictionBinning {
  task: Task;
  classes?: number;
  /** Regression: the PREDICTION_BINS − 1 inner edges (bin i holds (edges[i-1], edges[i]]). */
  edges?: readonly number[];
}

/** What the counters need of one successful row (src/serving/model-host.ts `Prediction`). */
export interface CountedPrediction {
  label?: number;
  binned: number;
  classIndex?: number;
}

/**
 * Cumulative counters of one deployed model version, cheap to update on the prediction hot path (plain numbers and
 * Float64Arrays, which count exactly up to 2^53). Lives in memory only.
 */
export class VersionCounters {
  requests = 0;
  errors = 0;
  invalidRequests = 0;
  latencySumMs = 0;
  positiveCount = 0;
  /** Epoch milliseconds of the last success; 0 when there was none. */
  lastSuccessAtMs = 0;
  readonly latencyBucketCounts = new Float64Array(LATENCY_BUCKETS_MS.length + 1);
  readonly predictionBinCounts = new Float64Array(PREDICTION_BINS);
  private binning: PredictionBinning = { task: DEFAULT_TASK };
  private classCounts: Float64Array | undefined;

  /** Input sketch on the training profile's bins; set when the version's artifact has a profile. */
  private inputs: DataSketcher | undefined;
  /** Counters of the ground-truth labels joined to this version's predictions; reported once there is one. */
  private readonly quality: QualityCounters = emptyQualityCounters();

  /**
   * @param epoch what the snapshots carry as `epoch`: unique to this set of counters, so a reader never differences
   * them with the counters of an earlier deployment or gateway process.
   */
  constructor(
    readonly version: string,
    readonly epoch?: string,
  ) {}

  /** How this version's predictions are binned: set when its model is loaded, before any prediction. */
  binPredictions(binning: PredictionBinning): void {
    this.binning = binning;
    this.classCounts =
      binning.task === 'multiclass-classification' ? new Float64Array(binning.classes ?? 0) : undefined;
  }

  get task(): Task {
    return this.binning.task;
  }

  /** Multiclass: the live successful rows per predicted class (read-only, for scrapes); undefined otherwise. */
  get predictedClassCounts(): Readonly<Float64Array> | undefined {
    return this.classCounts;
  }

  /** Starts counting inputs on `plan` (from zero). */
  sketchInputs(plan: SketchPlan): void {
    this.inputs = new DataSketcher(plan);
  }

  /** A request's input features, whatever becomes of the prediction. */
  recordInputs(features: Readonly<Record<string, unknown>>): void {
    this.inputs?.record(features);
  }

  /**
   * A successful prediction request: its latency (counted once, per request) and each row's prediction (counted per
   * row: its bin, a binary classifier's positive label, a multiclass one's class).
   */
  recordSuccess(latencyMs: number, rows: readonly CountedPrediction[], nowMs: number = Date.now()): void {
    this.requests += rows.length;
    this.latencySumMs += latencyMs;
    const bucket = latencyBucketIndex(latencyMs);
    this.latencyBucketCounts[bucket] = (this.latencyBucketCounts[bucket] as number) + 1;
    const { task, edges } = this.binning;
    for (const row of rows) {
      const bin = task === 'regression' ? valueBinIndex(row.binned, edges ?? []) : predictionBinIndex(row.binned);
      this.predictionBinCounts[bin] = (this.predictionBinCounts[bin] as number) + 1;
      if (task === 'binary-classification' && row.label === 1) this.positiveCount++;
      if (this.classCounts && row.classIndex !== undefined && row.classIndex < this.classCounts.length) {
        this.classCounts[row.classIndex] = (this.classCounts[row.classIndex] as number) + 1;
      }
    }
    this.lastSuccessAtMs = nowMs;
  }

  /** A prediction request of `rows` rows that failed on the server side (inference error, model not loaded). */
  recordError(rows = 1): void {
    this.requests += rows;
    this.errors += rows;
  }

  /** A request of `rows` rows refused as invalid input; not counted in `requests`. */
  recordInvalid(rows = 1): void {
    this.invalidRequests += rows;
  }

  /** The ground-truth label of one of this version's successful predictions. */
  recordLabel(prediction: LabelledPrediction): void {
    countLabel(this.quality, prediction);
  }

  snapshot(): VersionTelemetry {
    return {
      version: this.version,
      ...(this.epoch !== undefined ? { epoch: this.epoch } : {}),
      task: this.binning.task,
      requests: this.requests,
      errors: this.errors,
      invalidRequests: this.invalidRequests,
      latencyBucketCounts: Array.from(this.latencyBucketCounts),
      latencySumMs: this.latencySumMs,
      predictionBinCounts: Array.from(this.predictionBinCounts),
      positiveCount: this.positiveCount,
      ...(this.classCounts ? { classCounts: Array.from(this.classCounts) } : {}),
      ...(this.lastSuccessAtMs > 0 ? { lastSuccessAt: new Date(this.lastSuccessAtMs).toISOString() } : {}),
      ...(this.inputs ? { inputs: this.inputs.snapshot() } : {}),
      ...(this.quality.labeled > 0 ? { quality: copyQuality(this.quality) } : {}),
    };
  }
}

/**
 * Index of the latency bucket of `latencyMs`: the first bucket whose upper bound (inclusive, like Prometheus `le`)
 * is at least `latencyMs`, or the overflow bucket `LATENCY_BUCKETS_MS.length`.
 */
export function latencyBucketIndex(latencyMs: number): number {
  let i = 0;
  while (i < LATENCY_BUCKETS_MS.length && latencyMs > LATENCY_BUCKETS_MS[i]!) i++;
  return i;
}

/** Index of the bin of a probability: `PREDICTION_BINS` equal-width bins over [0, 1], 1 itself in the last bin. */
export function predictionBinIndex(probability: number): number {
  if (!(probability > 0)) return 0; // also NaN
  const bin = Math.floor(probability * PREDICTION_BINS);
  return bin >= PREDICTION_BINS ? PREDICTION_BINS - 1 : bin;
}

/**
 * Index of the bin of a regression's predicted value: bin i holds (edges[i-1], edges[i]], the first is open below and
 * the last open above. With tied edges the value goes to the first bin whose upper edge reaches it.
 */
export function valueBinIndex(value: number, edges: readonly number[]): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((edges[mid] as number) < value) lo = mid + 1;
    else hi = mid;
  }
  return Math.min(lo, PREDICTION_BINS - 1);
}

/** A copy whose arrays are not the live counters'. */
function copyQuality(q: QualityCounters): QualityCounters {
  return {
    ...q,
    ...(q.classTruePositives ? { classTruePositives: [...q.classTruePositives] } : {}),
    ...(q.classFalsePositives ? { classFalsePositives: [...q.classFalsePositives] } : {}),
    ...(q.classFalseNegatives ? { classFalseNegatives: [...q.classFalseNegatives] } : {}),
  };
}

/**
 * Per model, per version telemetry of the gateway. In memory only: restarting the gateway resets every counter, and
 * a version's counters are dropped when it is undeployed (a redeploy starts from zero). Readers compute rates from
 * differences between snapshots; every new set of counters has a new `epoch` (this registry's boot id and a load
 * sequence number), so a reader can tell a restart from traffic (`countersRestarted` in src/domain/guardrails.ts).
 */
export class TelemetryRegistry {
  private readonly models = new Map<string, Map<string, VersionCounters>>();
  /** Sets of counters created so far: the second half of their epochs. */
  private loads = 0;

  /** @param bootId random per registry (one per gateway process): the first half of every epoch it hands out. */
  constructor(readonly bootId: string = randomUUID()) {}

  /** The counters of a version, created at zero on first use; keep the returned object for the hot path. */
  counters(model: string, version: string): VersionCounters {
    let versions = this.models.get(model);
    if (!versions) {
      versions = new Map();
      this.models.set(model, versions);
    }
    let counters = versions.get(version);
    if (!counters) {
      counters = new VersionCounters(version, `${this.bootId}/${++this.loads}`);
      versions.set(version, counters);
    }
    return counters;
  }

  /** Forgets a version's counters (on undeploy). */
  drop(model: string, version: string): void {
    const versions = this.models.get(model);
    if (!versions) return;
    versions.delete(version);
    if (versions.size === 0) this.models.delete(model);
  }

  /** Every version's live counters, model by model (for reads at scrape time: do not update them). */
  *entries(): Generator<[model: string, version: string, counters: VersionCounters]> {
    for (const [model, versions] of this.models) {
      for (const [version, counters] of versions) yield [model, version, counters];
    }
  }

  /** Every version's counters of `model`; its JSON is at most `maxModelTelemetryBytes` (src/shared/telemetry.ts). */
  snapshot(model: string, now: Date = new Date()): ModelTelemetry {
    const versions = [...(this.models.get(model) ?? [])].map(([version, counters]) => [version, counters.snapshot()]);
    return { model, at: now.toISOString(), versions: Object.fromEntries(versions) };
  }
}
