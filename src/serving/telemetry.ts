import { randomUUID } from 'node:crypto';
import { DataSketcher, type SketchPlan } from '../drift/sketch';
import { emptyQualityCounters, lossesOf, type QualityCounters } from '../shared/quality';
import { LATENCY_BUCKETS_MS, PREDICTION_BINS, type ModelTelemetry, type VersionTelemetry } from '../shared/telemetry';

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

  /** Starts counting inputs on `plan` (from zero). */
  sketchInputs(plan: SketchPlan): void {
    this.inputs = new DataSketcher(plan);
  }

  /** A request's input features, whatever becomes of the prediction. */
  recordInputs(features: Readonly<Record<string, unknown>>): void {
    this.inputs?.record(features);
  }

  /** A successful prediction: its latency, predicted label and positive-class probability. */
  recordSuccess(latencyMs: number, positive: boolean, probability: number, nowMs: number = Date.now()): void {
    this.requests++;
    this.latencySumMs += latencyMs;
    const bucket = latencyBucketIndex(latencyMs);
    this.latencyBucketCounts[bucket] = (this.latencyBucketCounts[bucket] as number) + 1;
    const bin = predictionBinIndex(probability);
    this.predictionBinCounts[bin] = (this.predictionBinCounts[bin] as number) + 1;
    if (positive) this.positiveCount++;
    this.lastSuccessAtMs = nowMs;
  }

  /** A prediction that failed on the server side (inference error, model not loaded). */
  recordError(): void {
    this.requests++;
    this.errors++;
  }

  /** A request refused as invalid input; not counted in `requests`. */
  recordInvalid(): void {
    this.invalidRequests++;
  }

  /**
   * The ground-truth label of one of this version's successful predictions: `predicted` and `actual` are class labels,
   * `probability` the positive-class probability the prediction answered.
   */
  recordLabel(predicted: number, probability: number, actual: number, positiveLabel: number): void {
    const q = this.quality;
    const predictedPositive = predicted === positiveLabel;
    const actualPositive = actual === positiveLabel;
    q.labeled++;
    if (predicted === actual) q.correct++;
    if (predictedPositive && actualPositive) q.truePositives++;
    else if (predictedPositive) q.falsePositives++;
    else if (actualPositive) q.falseNegatives++;
    else q.trueNegatives++;
    const losses = lossesOf(probability, actualPositive);
    q.logLossSum += losses.logLoss;
    q.brierSum += losses.brier;
  }

  snapshot(): VersionTelemetry {
    return {
      version: this.version,
      ...(this.epoch !== undefined ? { epoch: this.epoch } : {}),
      requests: this.requests,
      errors: this.errors,
      invalidRequests: this.invalidRequests,
      latencyBucketCounts: Array.from(this.latencyBucketCounts),
      latencySumMs: this.latencySumMs,
      predictionBinCounts: Array.from(this.predictionBinCounts),
      positiveCount: this.positiveCount,
      ...(this.lastSuccessAtMs > 0 ? { lastSuccessAt: new Date(this.lastSuccessAtMs).toISOString() } : {}),
      ...(this.inputs ? { inputs: this.inputs.snapshot() } : {}),
      ...(this.quality.labeled > 0 ? { quality: { ...this.quality } } : {}),
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

  /** Every version's counters of `model`; its JSON is at most `maxModelTelemetryBytes` (src/shared/telemetry.ts). */
  snapshot(model: string, now: Date = new Date()): ModelTelemetry {
    const versions = [...(this.models.get(model) ?? [])].map(([version, counters]) => [version, counters.snapshot()]);
    return { model, at: now.toISOString(), versions: Object.fromEntries(versions) };
  }
}
