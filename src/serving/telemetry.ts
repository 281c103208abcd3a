import { randomUUID } from 'node:crypto';
import { DataSketcher } from '../drift/sketch';
import type { SketchPlan } from '../shared/drift';
import { countLabel, emptyQualityCounters, type LabelledPrediction, type QualityCounters } from '../shared/quality';
import { DEFAULT_TASK, type Task } from '../shared/task';
import {
  LATENCY_BUCKETS_MS,
  PREDICTION_BINS,
  type ModelTelemetry,
  type ShadowTelemetry,
  type VersionTelemetry,
} from '../shared/telemetry';

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
  private predictionBinning: PredictionBinning = { task: DEFAULT_TASK };
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
    this.predictionBinning = binning;
    this.classCounts =
      binning.task === 'multiclass-classification' ? new Float64Array(binning.classes ?? 0) : undefined;
  }

  get task(): Task {
    return this.predictionBinning.task;
  }

  /** How this version's predictions are binned (its pinned and shadow counters bin the same way). */
  get binning(): PredictionBinning {
    return this.predictionBinning;
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
    const { task, edges } = this.predictionBinning;
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
      task: this.predictionBinning.task,
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

/** What a shadow comparison needs of one row's prediction (src/serving/model-host.ts `Prediction`). */
export interface ComparedPrediction extends CountedPrediction {
  probability?: number;
  probabilities?: readonly number[];
  value?: number;
}

/**
 * The shadow traffic of one version: its counters on the copies (`candidate`), the answering version's counters on
 * the same rows binned the candidate's way (`primary`), and the pairwise comparison of the two.
 */
export class ShadowCounters {
  readonly candidate: VersionCounters;
  readonly primary: VersionCounters;
  compared = 0;
  agreed = 0;
  scoreDiffSum = 0;
  dropped = 0;

  constructor(version: string, epoch: string) {
    this.candidate = new VersionCounters(version, `${epoch}/shadow`);
    this.primary = new VersionCounters(version, `${epoch}/primary`);
  }

  /** Both versions bin on the candidate's binning: the comparison is of identical inputs on identical bins. */
  binPredictions(binning: PredictionBinning): void {
    this.candidate.binPredictions(binning);
    this.primary.binPredictions(binning);
  }

  /** Rows both versions predicted: their agreement and score difference. */
  compare(primary: readonly ComparedPrediction[], shadow: readonly ComparedPrediction[]): void {
    const rows = Math.min(primary.length, shadow.length);
    for (let i = 0; i < rows; i++) {
      const p = primary[i]!;
      const c = shadow[i]!;
      this.compared++;
      if (p.label !== undefined && p.label === c.label) this.agreed++;
      this.scoreDiffSum += scoreDifference(p, c);
    }
  }

  snapshot(): ShadowTelemetry {
    return {
      candidate: this.candidate.snapshot(),
      primary: this.primary.snapshot(),
      compared: this.compared,
      agreed: this.agreed,
      scoreDiffSum: this.scoreDiffSum,
      dropped: this.dropped,
    };
  }
}

/**
 * How far apart two predictions of one row are: |Δ probability| (binary), half the L1 distance of the class
 * probabilities (multiclass; 1 when the class lists differ), |Δ value| (regression).
 */
export function scoreDifference(a: ComparedPrediction, b: ComparedPrediction): number {
  if (a.probabilities !== undefined || b.probabilities !== undefined) {
    const p = a.probabilities ?? [];
    const q = b.probabilities ?? [];
    if (p.length !== q.length) return 1;
    let l1 = 0;
    for (let i = 0; i < p.length; i++) l1 += Math.abs(p[i]! - q[i]!);
    return l1 / 2;
  }
  if (a.probability !== undefined && b.probability !== undefined) return Math.abs(a.probability - b.probability);
  if (a.value !== undefined && b.value !== undefined) return Math.abs(a.value - b.value);
  return 0;
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
  /** Pinned requests, counted apart from the versions' own (src/shared/gateway-api.ts `PinRule`). */
  private readonly pinnedModels = new Map<string, Map<string, VersionCounters>>();
  private readonly shadowModels = new Map<string, Map<string, ShadowCounters>>();
  /** Sets of counters created so far: the second half of their epochs. */
  private loads = 0;

  /** @param bootId random per registry (one per gateway process): the first half of every epoch it hands out. */
  constructor(readonly bootId: string = randomUUID()) {}

  /** The counters of a version, created at zero on first use; keep the returned object for the hot path. */
  counters(model: string, version: string): VersionCounters {
    return entryOf(this.models, model, version, () => new VersionCounters(version, this.nextEpoch()));
  }

  /** The counters of a version's pinned requests, created at zero on first use. */
  pinnedCounters(model: string, version: string): VersionCounters {
    return entryOf(this.pinnedModels, model, version, () => new VersionCounters(version, this.nextEpoch()));
  }

  /** The shadow counters of a version, created at zero on first use. */
  shadowCounters(model: string, version: string): ShadowCounters {
    return entryOf(this.shadowModels, model, version, () => new ShadowCounters(version, this.nextEpoch()));
  }

  private nextEpoch(): string {
    return `${this.bootId}/${++this.loads}`;
  }

  /** Forgets a version's counters, pinned and shadow ones included (on undeploy). */
  drop(model: string, version: string): void {
    for (const family of [this.models, this.pinnedModels, this.shadowModels] as Map<string, Map<string, unknown>>[]) {
      const versions = family.get(model);
      if (!versions) continue;
      versions.delete(version);
      if (versions.size === 0) family.delete(model);
    }
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
    const pinned = [...(this.pinnedModels.get(model) ?? [])].map(([version, c]) => [version, c.snapshot()]);
    const shadow = [...(this.shadowModels.get(model) ?? [])].map(([version, c]) => [version, c.snapshot()]);
    return {
      model,
      at: now.toISOString(),
      versions: Object.fromEntries(versions),
      ...(pinned.length > 0 ? { pinned: Object.fromEntries(pinned) } : {}),
      ...(shadow.length > 0 ? { shadow: Object.fromEntries(shadow) } : {}),
    };
  }
}

/** The entry of (model, version) in a family of counters, made by `create` on first use. */
function entryOf<T>(family: Map<string, Map<string, T>>, model: string, version: string, create: () => T): T {
  let versions = family.get(model);
  if (!versions) {
    versions = new Map();
    family.set(model, versions);
  }
  let entry = versions.get(version);
  if (entry === undefined) {
    entry = create();
    versions.set(version, entry);
  }
  return entry;
}
