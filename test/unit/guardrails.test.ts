import { beforeAll, describe, expect, it } from 'vitest';
import { buildProfile, columnsFromArrays, DataSketcher, sketchPlanOf, type DataProfile } from '../../src/drift';
import {
  failureLimitOf,
  judgeSample,
  judgeWindow,
  minSamplesOf,
  sampleEvidence,
  requiredSamples,
  type FailureStreaks,
  type SampleVerdict,
} from '../../src/domain/check-tolerance';
import {
  binnedKolmogorovSmirnov,
  countersRestarted,
  evaluateStage,
  inputSkew,
  populationStabilityIndex,
  quantileFromBuckets,
  shadowDecisions,
  shadowWindowOf,
  windowOf,
  errorRateTest,
  type StageAnalysisInput,
  type WindowTelemetry,
} from '../../src/domain/guardrails';
import { AnalysisSpec } from '../../src/shared/spec';
import type { Decision } from '../../src/shared/status';
import { scoreDifference, TelemetryRegistry } from '../../src/serving/telemetry';
import { LATENCY_BUCKETS_MS, PREDICTION_BINS, VersionTelemetry } from '../../src/shared/telemetry';

const LATENCY_LEN = LATENCY_BUCKETS_MS.length + 1;

/** Counts over `length` bins, from sparse `{ bin: count }` entries. */
function bins(length: number, entries: Record<number, number>): number[] {
  const out = new Array<number>(length).fill(0);
  for (const [i, c] of Object.entries(entries)) out[Number(i)] = c;
  return out;
}

/** `shape` rescaled to integer counts summing exactly to `total` (the remainder goes to the largest bin). */
function scaleTo(shape: readonly number[], total: number): number[] {
  const sum = shape.reduce((a, b) => a + b, 0);
  const out = shape.map((w) => Math.floor((w * total) / sum));
  const rest = total - out.reduce((a, b) => a + b, 0);
  out[shape.indexOf(Math.max(...shape))]! += rest;
  return out;
}

// Latency shapes over the 13 buckets (bounds 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000 ms, overflow):
// 70% in one bucket, 29% in the next, 1% in the one after, so p99 is exactly the upper bound of the second.
const FAST = bins(LATENCY_LEN, { 2: 70, 3: 29, 4: 1 }); // p99 = 10 ms
const MEDIUM = bins(LATENCY_LEN, { 5: 70, 6: 29, 7: 1 }); // p99 = 100 ms
const SLOWISH = bins(LATENCY_LEN, { 7: 70, 8: 29, 9: 1 }); // p99 = 500 ms
const SLOW = bins(LATENCY_LEN, { 8: 70, 9: 29, 10: 1 }); // p99 = 1000 ms

// Positive-class probabilities over 20 bins: a churn model that mostly predicts low probabilities, and the same
// distribution moved eight bins (0.4) to the right, as a unit bug in a feature pipeline would.
const PREDICTIONS = [2, 5, 9, 13, 15, 14, 12, 9, 7, 5, 4, 2, 1, 1, 1, 0, 0, 0, 0, 0];
const SHIFTED = [0, 0, 0, 0, 0, 0, 0, 0, 2, 5, 9, 13, 15, 14, 12, 9, 7, 5, 4, 5];

function makeWindow(opts: {
  requests: number;
  errors?: number;
  latency?: readonly number[];
  predictions?: readonly number[];
}): WindowTelemetry {
  const errors = opts.errors ?? 0;
  const successes = opts.requests - errors;
  const latencyBucketCounts =
    successes === 0 ? new Array<number>(LATENCY_LEN).fill(0) : scaleTo(opts.latency ?? FAST, successes);
  const predictionBinCounts =
    successes === 0 ? new Array<number>(PREDICTION_BINS).fill(0) : scaleTo(opts.predictions ?? PREDICTIONS, successes);
  return {
    requests: opts.requests,
    errors,
    invalidRequests: 0,
    latencyBucketCounts,
    predictionBinCounts,
    successes,
    predictedRows: predictionBinCounts.reduce((a, b) => a + b, 0),
  };
}

const RULES = AnalysisSpec.parse({}); // minSamples 100, errorRate 1%, p99 500 ms and 3x stable, PSI 0.25 at alpha 0.01
const STABLE = makeWindow({ requests: 2000 });

function evaluate(candidate: WindowTelemetry, stable: WindowTelemetry | null = STABLE, rules = RULES) {
  const input: StageAnalysisInput = { stage: 'canary', at: '2025-01-01T00:00:00.000Z', candidate, stable, rules };
  const result = evaluateStage(input);
  const byCheck = Object.fromEntries(result.decisions.map((d) => [d.check, d]));
  const failed = result.decisions.filter((d) => d.outcome === 'fail').map((d) => d.check);
  return { ...result, byCheck, failed };
}

function telemetry(overrides: Partial<VersionTelemetry>): VersionTelemetry {
  return {
    version: 'v2',
    requests: 0,
    errors: 0,
    invalidRequests: 0,
    latencyBucketCounts: new Array<number>(LATENCY_LEN).fill(0),
    latencySumMs: 0,
    predictionBinCounts: new Array<number>(PREDICTION_BINS).fill(0),
    positiveCount: 0,
    ...overrides,
  };
}

describe('test fixtures', () => {
  it('build windows whose counters agree with each other', () => {
    const w = makeWindow({ requests: 500, errors: 7, latency: MEDIUM, predictions: SHIFTED });
    expect(w.latencyBucketCounts).toHaveLength(LATENCY_LEN);
    expect(w.predictionBinCounts).toHaveLength(PREDICTION_BINS);
    expect(w.latencyBucketCounts.reduce((a, b) => a + b, 0)).toBe(493);
    expect(w.predictionBinCounts.reduce((a, b) => a + b, 0)).toBe(493);
    expect(w.successes).toBe(493);
  });
});

describe('windowOf', () => {
  it('subtracts the earlier cumulative snapshot from the later one, bucket by bucket', () => {
    const before = telemetry({
      requests: 100,
      errors: 1,
      invalidRequests: 2,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 60, 3: 39 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 3: 50, 4: 49 }),
    });
    const after = telemetry({
      requests: 350,
      errors: 4,
      invalidRequests: 5,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 200, 3: 140, 12: 6 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 3: 150, 4: 180, 19: 16 }),
    });
    expect(windowOf(after, before)).toEqual({
      requests: 250,
      errors: 3,
      invalidRequests: 3,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 140, 3: 101, 12: 6 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 3: 100, 4: 131, 19: 16 }),
      successes: 247,
      predictedRows: 247,
    });
  });

  it('takes the whole cumulative snapshot when the version has no earlier one', () => {
    const after = telemetry({
      requests: 40,
      errors: 2,
      latencyBucketCounts: bins(LATENCY_LEN, { 4: 38 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 10: 38 }),
    });
    expect(windowOf(after, undefined)).toEqual({
      requests: 40,
      errors: 2,
      invalidRequests: 0,
      latencyBucketCounts: bins(LATENCY_LEN, { 4: 38 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 10: 38 }),
      successes: 38,
      predictedRows: 38,
    });
  });

  it('is an empty window, with full-length arrays, when the version has no snapshot at all', () => {
    expect(windowOf(undefined, undefined)).toEqual(makeWindow({ requests: 0 }));
  });

  it('takes the later snapshot whole when a counter went down, the review example included (restart, no epoch)', () => {
    // Restarted mid-window: 600 requests since the restart, more than the 500 before it, but bucket 2 went down.
    const before = telemetry({ requests: 500, latencyBucketCounts: bins(LATENCY_LEN, { 2: 495 }) });
    const after = telemetry({
      requests: 600,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 300, 8: 300 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 3: 600 }),
    });
    expect(countersRestarted(after, before)).toBe(true);
    const w = windowOf(after, before);
    expect(w).toEqual({
      requests: 600,
      errors: 0,
      invalidRequests: 0,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 300, 8: 300 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 3: 600 }),
      successes: 600,
      predictedRows: 600,
    });
    // Fewer requests than before the restart: the window is what came since, never zero or negative.
    const early = telemetry({ requests: 20, latencyBucketCounts: bins(LATENCY_LEN, { 2: 20 }) });
    expect(
      windowOf(early, telemetry({ requests: 500, errors: 5, latencyBucketCounts: bins(LATENCY_LEN, { 2: 495 }) })),
    ).toMatchObject({ requests: 20, errors: 0, successes: 20 });
  });

  it('detects a restart from any cumulative counter that went down', () => {
    const before = telemetry({
      requests: 100,
      errors: 2,
      invalidRequests: 3,
      positiveCount: 40,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 98 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 4: 98 }),
    });
    const grown = (overrides: Partial<VersionTelemetry>) =>
      telemetry({
        requests: 200,
        errors: 4,
        invalidRequests: 6,
        positiveCount: 80,
        latencyBucketCounts: bins(LATENCY_LEN, { 2: 196 }),
        predictionBinCounts: bins(PREDICTION_BINS, { 4: 196 }),
        ...overrides,
      });
    expect(countersRestarted(grown({}), before)).toBe(false);
    for (const lower of [
      { requests: 99 },
      { errors: 1 },
      { invalidRequests: 2 },
      { positiveCount: 39 },
      { latencyBucketCounts: bins(LATENCY_LEN, { 2: 97, 3: 99 }) },
      { predictionBinCounts: bins(PREDICTION_BINS, { 4: 97, 5: 99 }) },
    ]) {
      expect(countersRestarted(grown(lower), before), JSON.stringify(lower)).toBe(true);
    }
  });

  it('takes the later snapshot whole when the epoch changed, even though every counter grew', () => {
    const before = telemetry({
      epoch: 'boot-a/1',
      requests: 100,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 100 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 3: 100 }),
    });
    const after = telemetry({
      epoch: 'boot-b/1',
      requests: 350,
      errors: 4,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 200, 3: 146 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 3: 150, 4: 196 }),
    });
    expect(countersRestarted(after, before)).toBe(true);
    expect(windowOf(after, before)).toEqual(windowOf(after, undefined));
    expect(windowOf(after, before)).toMatchObject({ requests: 350, errors: 4, successes: 346 });
    // A snapshot with an epoch and one without come from different gateway processes.
    const { epoch: _none, ...older } = before;
    expect(countersRestarted(after, older)).toBe(true);
    expect(countersRestarted(older, after)).toBe(true);
  });

  it('subtracts when the epoch is the same and the counters grew', () => {
    const before = telemetry({
      epoch: 'boot-a/1',
      requests: 100,
      errors: 1,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 60, 3: 39 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 3: 50, 4: 49 }),
    });
    const after = telemetry({
      epoch: 'boot-a/1',
      requests: 350,
      errors: 4,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 200, 3: 140, 12: 6 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 3: 150, 4: 180, 19: 16 }),
    });
    expect(countersRestarted(after, before)).toBe(false);
    expect(windowOf(after, before)).toEqual({
      requests: 250,
      errors: 3,
      invalidRequests: 0,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 140, 3: 101, 12: 6 }),
      predictionBinCounts: bins(PREDICTION_BINS, { 3: 100, 4: 131, 19: 16 }),
      successes: 247,
      predictedRows: 247,
    });
  });

  it('takes the input sketch and quality whole with the rest when the counters restarted', () => {
    const plan = { features: [{ name: 'age', type: 'numeric' as const, edges: [30], min: 18, max: 90 }] };
    const sketch = (ages: number[]) => {
      const sketcher = new DataSketcher(plan);
      for (const age of ages) sketcher.record({ age });
      return sketcher.snapshot();
    };
    const quality = (labeled: number) => ({
      labeled,
      correct: labeled,
      truePositives: labeled,
      falsePositives: 0,
      falseNegatives: 0,
      trueNegatives: 0,
      logLossSum: labeled * 0.1,
      brierSum: labeled * 0.01,
    });
    const before = telemetry({ epoch: 'boot-a/1', requests: 2, inputs: sketch([20, 20]), quality: quality(2) });
    const after = telemetry({ epoch: 'boot-b/1', requests: 3, inputs: sketch([20, 20, 40]), quality: quality(3) });
    const w = windowOf(after, before);
    expect(w.inputs).toBe(after.inputs);
    expect(w.quality).toEqual(after.quality);
    // Same epoch: every part is the difference.
    const same = windowOf({ ...after, epoch: 'boot-a/1' }, before);
    expect(same.inputs?.rows).toBe(1);
    expect(same.quality?.labeled).toBe(1);
    // No epoch, requests grew, but the sketch or the quality counted less: a restart all the same.
    const { epoch: _a, ...noEpochBefore } = before;
    const { epoch: _b, ...noEpochAfter } = after;
    expect(countersRestarted({ ...noEpochAfter, inputs: sketch([20]) }, noEpochBefore)).toBe(true);
    expect(countersRestarted({ ...noEpochAfter, quality: quality(1) }, noEpochBefore)).toBe(true);
    expect(windowOf({ ...noEpochAfter, quality: quality(1) }, noEpochBefore)).toMatchObject({
      requests: 3,
      quality: quality(1),
    });
  });

  it('sees a new epoch when the gateway restarts or redeploys a version, and none between its snapshots', () => {
    const registry = new TelemetryRegistry();
    const counters = registry.counters('churn', 'v2');
    counters.recordSuccess(3, [{ label: 1, binned: 0.7 }]);
    const first = registry.snapshot('churn').versions.v2!;
    counters.recordSuccess(3, [{ label: 1, binned: 0.7 }]);
    const second = registry.snapshot('churn').versions.v2!;
    expect(second.epoch).toBe(first.epoch);
    expect(VersionTelemetry.parse(second).epoch).toBe(first.epoch);
    expect(windowOf(second, first).requests).toBe(1);
    // Undeploy + redeploy in the same process.
    registry.drop('churn', 'v2');
    const redeployed = registry.counters('churn', 'v2');
    for (let i = 0; i < 5; i++) redeployed.recordSuccess(3, [{ label: 1, binned: 0.7 }]);
    const third = registry.snapshot('churn').versions.v2!;
    expect(third.epoch).not.toBe(second.epoch);
    expect(windowOf(third, second).requests).toBe(5);
    // Another gateway process.
    const restarted = new TelemetryRegistry();
    restarted.counters('churn', 'v2').recordSuccess(3, [{ label: 1, binned: 0.7 }]);
    const fourth = restarted.snapshot('churn').versions.v2!;
    expect(fourth.epoch).not.toBe(first.epoch);
    expect(windowOf(fourth, first).requests).toBe(1);
  });
});

describe('quantileFromBuckets', () => {
  it('interpolates linearly inside the bucket that holds the quantile', () => {
    // 10 observations in (5, 10] ms: the median is at rank 5 of 10, halfway through the bucket.
    expect(quantileFromBuckets(bins(LATENCY_LEN, { 3: 10 }), 0.5)).toBe(7.5);
    // 50 in (0, 1], 50 in (1, 2]: the 75th percentile is halfway through the second bucket.
    expect(quantileFromBuckets(bins(LATENCY_LEN, { 0: 50, 1: 50 }), 0.75)).toBe(1.5);
    expect(quantileFromBuckets(bins(LATENCY_LEN, { 0: 50, 1: 50 }), 0.5)).toBe(1);
    expect(quantileFromBuckets(scaleTo(FAST, 2000), 0.99)).toBeCloseTo(10, 9);
    expect(quantileFromBuckets(scaleTo(FAST, 2000), 0.5)).toBeCloseTo(2 + (3 * 1000) / 1400, 9);
  });

  it('skips empty buckets before the quantile', () => {
    expect(quantileFromBuckets(bins(LATENCY_LEN, { 9: 4 }), 0.25)).toBe(625); // (500, 1000], rank 1 of 4
  });

  it('is null for an empty histogram', () => {
    expect(quantileFromBuckets(new Array<number>(LATENCY_LEN).fill(0), 0.99)).toBeNull();
    expect(quantileFromBuckets([], 0.5)).toBeNull();
  });

  it('reports the lower bound of the overflow bucket, which has no upper bound', () => {
    expect(quantileFromBuckets(bins(LATENCY_LEN, { 12: 7 }), 0.99)).toBe(5000);
    expect(quantileFromBuckets(bins(LATENCY_LEN, { 11: 98, 12: 2 }), 0.99)).toBe(5000);
    expect(quantileFromBuckets(bins(LATENCY_LEN, { 11: 98, 12: 2 }), 0.5)).toBeCloseTo(2000 + (3000 * 50) / 98, 9);
  });
});

describe('populationStabilityIndex', () => {
  it('is 0 for identical distributions, whatever the sample sizes', () => {
    expect(populationStabilityIndex(PREDICTIONS, PREDICTIONS)).toBe(0);
    expect(populationStabilityIndex(scaleTo(PREDICTIONS, 2000), scaleTo(PREDICTIONS, 500))).toBeCloseTo(0, 12);
  });

  it('grows as the distribution moves further away', () => {
    const shiftBy = (k: number) => PREDICTIONS.map((_, i) => PREDICTIONS[i - k] ?? 0);
    const psis = [1, 2, 4, 8].map((k) => populationStabilityIndex(PREDICTIONS, shiftBy(k)));
    for (let i = 1; i < psis.length; i++) expect(psis[i]).toBeGreaterThan(psis[i - 1]!);
    expect(psis[0]).toBeGreaterThan(0.1);
    expect(psis[3]).toBeGreaterThan(0.25);
  });

  it('matches the textbook sum of (actual - expected) * ln(actual / expected)', () => {
    const expected = [30, 50, 20];
    const actual = [20, 50, 30];
    const want = (0.2 - 0.3) * Math.log(0.2 / 0.3) + 0 + (0.3 - 0.2) * Math.log(0.3 / 0.2);
    expect(populationStabilityIndex(expected, actual)).toBeCloseTo(want, 12);
  });

  it('gives empty bins a proportion of epsilon so the index stays finite', () => {
    const want = (0.5 - 1) * Math.log(0.5 / 1) + (0.5 - 1e-4) * Math.log(0.5 / 1e-4);
    expect(populationStabilityIndex([100, 0], [50, 50])).toBeCloseTo(want, 12);
    const wantCustom = (0.5 - 1) * Math.log(0.5) + (0.5 - 0.01) * Math.log(0.5 / 0.01);
    expect(populationStabilityIndex([100, 0], [50, 50], 0.01)).toBeCloseTo(wantCustom, 12);
  });

  it('is 0 when either side has no observations', () => {
    expect(populationStabilityIndex(PREDICTIONS, new Array<number>(PREDICTION_BINS).fill(0))).toBe(0);
    expect(populationStabilityIndex(new Array<number>(PREDICTION_BINS).fill(0), PREDICTIONS)).toBe(0);
  });
});

describe('binnedKolmogorovSmirnov', () => {
  /** 200 observations against 200 with `k` of them moved one bin right: D = k / 200, effective n = 100. */
  const moved = (k: number) => ({
    a: bins(PREDICTION_BINS, { 9: 200 }),
    b: bins(PREDICTION_BINS, { 9: 200 - k, 10: k }),
  });

  it('gives D = 0 and p = 1 for identical distributions', () => {
    expect(binnedKolmogorovSmirnov(PREDICTIONS, PREDICTIONS)).toEqual({ d: 0, pValue: 1 });
    const scaled = binnedKolmogorovSmirnov(scaleTo(PREDICTIONS, 2000), scaleTo(PREDICTIONS, 500));
    expect(scaled.d).toBeCloseTo(0, 12);
    expect(scaled.pValue).toBe(1);
  });

  it('gives p = 1 when one side is empty', () => {
    expect(binnedKolmogorovSmirnov(PREDICTIONS, new Array<number>(PREDICTION_BINS).fill(0))).toEqual({
      d: 0,
      pValue: 1,
    });
  });

  // Reference p-values: scipy.special.kolmogorov(λ) with λ = (√ne + 0.12 + 0.11/√ne)·D (Stephens), ne = n·m/(n+m).
  // For λ ≈ 0.5, 1.0, 1.36, 2.0 (scipy: 0.96394524, 0.26999967, 0.04948588, 0.00067093) the nearest integer k gives:
  it.each([
    { k: 10, lambda: 0.50655, scipy: 0.9596004459 },
    { k: 20, lambda: 1.0131, scipy: 0.2562211851 },
    { k: 27, lambda: 1.367685, scipy: 0.0474541785 },
    { k: 39, lambda: 1.975545, scipy: 0.0008149295 },
  ])('matches scipy kolmogorov($lambda) when $k of 200 observations move one bin', ({ k, scipy }) => {
    const { a, b } = moved(k);
    const ks = binnedKolmogorovSmirnov(a, b);
    expect(ks.d).toBeCloseTo(k / 200, 12);
    expect(ks.pValue).toBeCloseTo(scipy, 7);
  });

  it('uses the effective sample size n·m/(n+m) for unequal samples', () => {
    // 300 vs 100 with 20% of the smaller sample one bin right: D = 0.2, ne = 75, λ = 1.758591 → scipy 0.0041190263.
    const ks = binnedKolmogorovSmirnov(bins(PREDICTION_BINS, { 9: 300 }), bins(PREDICTION_BINS, { 9: 80, 10: 20 }));
    expect(ks.d).toBeCloseTo(0.2, 12);
    expect(ks.pValue).toBeCloseTo(0.0041190263, 8);
  });

  it('takes D at the bin edge where the cumulative distributions differ most', () => {
    // D cross-checked with scipy.stats.ks_2samp over the bin indices (0.145); p from scipy kolmogorov(2.0691375).
    const a = [0, 0, 5, 20, 60, 120, 180, 200, 170, 110, 70, 35, 20, 8, 2, 0, 0, 0, 0, 0];
    const b = [0, 0, 0, 2, 8, 20, 35, 45, 48, 40, 25, 15, 7, 3, 2, 0, 0, 0, 0, 0];
    const ks = binnedKolmogorovSmirnov(a, b);
    expect(ks.d).toBeCloseTo(0.145, 12);
    expect(ks.pValue).toBeCloseTo(0.0003822205, 9);
  });

  it('is symmetric in its two samples', () => {
    const x = scaleTo(PREDICTIONS, 700);
    const y = scaleTo(SHIFTED, 90);
    expect(binnedKolmogorovSmirnov(x, y)).toEqual(binnedKolmogorovSmirnov(y, x));
  });

  it('reads a tiny gap as no evidence at all (p = 1)', () => {
    // D = 1/200 with ne = 100: λ ≈ 0.05, deep in the region where the survival function is 1.
    const { a, b } = moved(1);
    expect(binnedKolmogorovSmirnov(a, b).pValue).toBe(1);
  });
});

describe('evaluateStage', () => {
  it('passes a healthy canary on every check, recording the stage, time and sample size', () => {
    const result = evaluate(makeWindow({ requests: 500 }));
    expect(result.outcome).toBe('pass');
    expect(result.decisions.map((d) => [d.check, d.outcome])).toEqual([
      ['outage', 'pass'],
      ['errorRate', 'pass'],
      ['errorRateVsStable', 'pass'],
      ['latencyP99Ms', 'pass'],
      ['latencyP99RatioToStable', 'pass'],
      ['predictionDrift', 'pass'],
      ['inputQuality', 'pass'],
    ]);
    for (const d of result.decisions) {
      expect(d.stage).toBe('canary');
      expect(d.at).toBe('2025-01-01T00:00:00.000Z');
      expect(d.rule).toEqual(expect.any(String));
    }
    expect(result.byCheck.latencyP99Ms).toMatchObject({ value: 10, threshold: 500, sampleSize: 500 });
    expect(result.byCheck.latencyP99RatioToStable).toMatchObject({
      value: 1,
      threshold: 3,
      detail: 'stable p99 10 ms',
    });
    expect(result.byCheck.predictionDrift).toMatchObject({ threshold: 0.25, sampleSize: 500 });
    expect(result.byCheck.predictionDrift!.value).toBeLessThan(0.01);
  });

  it('fails the stage on the error rate when the candidate errs more than allowed', () => {
    const result = evaluate(makeWindow({ requests: 500, errors: 6 }));
    expect(result.outcome).toBe('fail');
    // Stable made none: significantly worse than stable, too.
    expect(result.failed).toEqual(['errorRate', 'errorRateVsStable']);
    expect(result.byCheck.errorRate).toMatchObject({ value: 0.012, threshold: 0.01, sampleSize: 500 });
  });

  it('passes an error rate exactly at the limit', () => {
    const rules = AnalysisSpec.parse({ errorRate: { max: 0.01, vsStable: false } });
    const result = evaluate(makeWindow({ requests: 500, errors: 5 }), STABLE, rules);
    expect(result.byCheck.errorRate).toMatchObject({ value: 0.01, outcome: 'pass' });
    expect(result.byCheck.errorRateVsStable).toBeUndefined();
    expect(result.outcome).toBe('pass');
  });

  it('fails the stage on absolute p99 latency even when the ratio to a slow stable version is fine', () => {
    const stable = makeWindow({ requests: 2000, latency: SLOWISH });
    const result = evaluate(makeWindow({ requests: 500, latency: SLOW }), stable);
    expect(result.outcome).toBe('fail');
    expect(result.failed).toEqual(['latencyP99Ms']);
    expect(result.byCheck.latencyP99Ms).toMatchObject({ value: 1000, threshold: 500 });
    expect(result.byCheck.latencyP99RatioToStable).toMatchObject({ value: 2, outcome: 'pass' });
  });

  it('fails the stage on the latency ratio when the candidate is much slower than stable but under the limit', () => {
    const result = evaluate(makeWindow({ requests: 500, latency: MEDIUM }));
    expect(result.outcome).toBe('fail');
    expect(result.failed).toEqual(['latencyP99RatioToStable']);
    expect(result.byCheck.latencyP99Ms).toMatchObject({ value: 100, outcome: 'pass' });
    expect(result.byCheck.latencyP99RatioToStable).toMatchObject({ value: 10, threshold: 3, outcome: 'fail' });
  });

  it('floors the stable p99 at 1 ms so sub-millisecond noise does not read as a large ratio', () => {
    const rules = AnalysisSpec.parse({ latencyP99Ms: { max: 500, maxRatioToStable: 2 } });
    const stable = makeWindow({ requests: 2000, latency: bins(LATENCY_LEN, { 0: 1 }) }); // p99 = 0.99 ms
    const result = evaluate(makeWindow({ requests: 500, latency: bins(LATENCY_LEN, { 1: 1 }) }), stable, rules); // 1.99
    // 1.99 / max(0.99, 1) = 1.99 <= 2, where 1.99 / 0.99 would have been 2.01.
    expect(result.byCheck.latencyP99RatioToStable).toMatchObject({ value: 1.99, outcome: 'pass' });
  });

  it('takes a configured floor for the stable p99, so a few ms of jitter on a loaded host passes', () => {
    const rules = AnalysisSpec.parse({ latencyP99Ms: { max: 500, maxRatioToStable: 4, ratioFloorMs: 10 } });
    const stable = makeWindow({ requests: 2000, latency: bins(LATENCY_LEN, { 0: 1 }) }); // p99 under 1 ms
    const jitter = evaluate(makeWindow({ requests: 500, latency: bins(LATENCY_LEN, { 3: 1 }) }), stable, rules);
    expect(jitter.byCheck.latencyP99RatioToStable).toMatchObject({ outcome: 'pass' });
    expect(jitter.byCheck.latencyP99RatioToStable!.rule).toBe('candidate p99 / max(stable p99, 10 ms) <= 4');
    const slow = evaluate(makeWindow({ requests: 500, latency: MEDIUM }), stable, rules); // p99 100 ms
    expect(slow.byCheck.latencyP99RatioToStable).toMatchObject({ value: 10, outcome: 'fail' });
  });

  it('skips the ratio check when the rules set no ratio limit', () => {
    const rules = AnalysisSpec.parse({ latencyP99Ms: { max: 500 } });
    const result = evaluate(makeWindow({ requests: 500, latency: MEDIUM }), STABLE, rules);
    expect(result.outcome).toBe('pass');
    expect(result.byCheck.latencyP99RatioToStable).toBeUndefined();
  });

  it('fails the stage on prediction drift when the candidate predictions shift far and significantly', () => {
    const result = evaluate(makeWindow({ requests: 500, predictions: SHIFTED }));
    expect(result.outcome).toBe('fail');
    expect(result.failed).toEqual(['predictionDrift']);
    const drift = result.byCheck.predictionDrift!;
    expect(drift.value).toBeGreaterThan(0.25);
    expect(drift.detail).toMatch(/^KS D=0\.\d+ p=/);
    expect(drift.detail).toContain(`candidate [${scaleTo(SHIFTED, 500).join(',')}]`);
  });

  it('does not fail on a large PSI that a tiny sample cannot tell from noise, but does once the sample is large', () => {
    const rules = AnalysisSpec.parse({ minSamples: 5 });
    // Eight predictions, spread a little to the right of stable's: empty bins push PSI high, yet KS is not significant.
    const tinyPredictions = bins(PREDICTION_BINS, { 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 10: 1, 12: 1 });
    const tiny: WindowTelemetry = {
      requests: 8,
      errors: 0,
      invalidRequests: 0,
      latencyBucketCounts: bins(LATENCY_LEN, { 2: 6, 3: 2 }),
      predictionBinCounts: tinyPredictions,
      successes: 8,
      predictedRows: 8,
    };
    // The premises: a PSI well above the limit, and a KS p-value above alpha.
    expect(populationStabilityIndex(STABLE.predictionBinCounts, tinyPredictions)).toBeGreaterThan(0.25);
    expect(binnedKolmogorovSmirnov(STABLE.predictionBinCounts, tinyPredictions).pValue).toBeGreaterThan(0.01);

    const small = evaluate(tiny, STABLE, rules);
    expect(small.byCheck.predictionDrift).toMatchObject({ outcome: 'pass', sampleSize: 8 });
    expect(small.byCheck.predictionDrift!.value).toBeGreaterThan(0.25);
    expect(small.outcome).toBe('pass');

    // The same distribution, 100 times the sample: now significant, and the stage fails.
    const large = evaluate(makeWindow({ requests: 800, predictions: tinyPredictions }), STABLE, rules);
    expect(large.failed).toEqual(['predictionDrift']);
  });

  it('fails the stage as an outage when the candidate answered none of the traffic routed to it', () => {
    const result = evaluate(makeWindow({ requests: 200, errors: 200 }));
    expect(result.outcome).toBe('fail');
    expect(result.byCheck.outage).toMatchObject({ outcome: 'fail', value: 0, threshold: 1, sampleSize: 200 });
    expect(result.failed).toEqual(['outage', 'errorRate', 'errorRateVsStable']);
    // With no successful predictions, nothing can be said about latency or predictions.
    expect(result.byCheck.latencyP99Ms).toMatchObject({ outcome: 'inconclusive', value: null });
    expect(result.byCheck.latencyP99RatioToStable).toMatchObject({ outcome: 'inconclusive', value: null });
    expect(result.byCheck.predictionDrift).toMatchObject({ outcome: 'inconclusive' });
  });

  it('judges the outage on the most recent traffic when a longer window is judged for the rest', () => {
    const recent = makeWindow({ requests: 12, errors: 12 });
    const result = evaluateStage({
      stage: 'canary',
      at: 'now',
      candidate: makeWindow({ requests: 500, errors: 12 }),
      stable: STABLE,
      rules: RULES,
      recent,
    });
    const byCheck = Object.fromEntries(result.decisions.map((d) => [d.check, d]));
    expect(byCheck.outage).toMatchObject({ outcome: 'fail', value: 0, sampleSize: 12 });
    expect(byCheck.errorRate).toMatchObject({ outcome: 'fail', sampleSize: 500 });
  });

  it('judges the outage on the whole window when nothing was routed to the candidate lately', () => {
    const stageOf = (candidate: WindowTelemetry) => ({
      stage: 'ramping:50',
      at: 'now',
      candidate,
      stable: STABLE,
      rules: RULES,
    });
    // A readout taken moments after the last sample (a worker restarted late in the bake): its recent window is empty.
    const candidate = makeWindow({ requests: 500 });
    const healthy = evaluateStage({ ...stageOf(candidate), recent: makeWindow({ requests: 0 }) });
    expect(healthy.decisions.find((d) => d.check === 'outage')).toMatchObject({ outcome: 'pass', sampleSize: 500 });
    expect(healthy.outcome).toBe('pass');
    const down = evaluateStage({
      ...stageOf(makeWindow({ requests: 40, errors: 40 })),
      recent: makeWindow({ requests: 0 }),
    });
    expect(down.decisions.find((d) => d.check === 'outage')).toMatchObject({ outcome: 'fail', sampleSize: 40 });
  });

  it('detects an outage even below the minimum sample', () => {
    const result = evaluate(makeWindow({ requests: 3, errors: 3 }));
    expect(result.outcome).toBe('fail');
    expect(result.failed).toEqual(['outage']);
    expect(result.byCheck.errorRate!.outcome).toBe('inconclusive');
  });

  it('is inconclusive when the candidate served too few requests to judge', () => {
    const result = evaluate(makeWindow({ requests: 50, errors: 5, latency: SLOW, predictions: SHIFTED }));
    expect(result.outcome).toBe('inconclusive');
    expect(result.decisions.map((d) => [d.check, d.outcome])).toEqual([
      ['outage', 'pass'],
      ['errorRate', 'inconclusive'],
      ['errorRateVsStable', 'inconclusive'],
      ['latencyP99Ms', 'inconclusive'],
      ['latencyP99RatioToStable', 'inconclusive'],
      ['predictionDrift', 'inconclusive'],
      ['inputQuality', 'inconclusive'],
    ]);
  });

  it('is inconclusive when the candidate got no traffic at all', () => {
    const result = evaluate(makeWindow({ requests: 0 }));
    expect(result.outcome).toBe('inconclusive');
    expect(result.byCheck.outage!.outcome).toBe('inconclusive');
  });

  it('is inconclusive on the relative checks when the stable version served too few requests', () => {
    const result = evaluate(makeWindow({ requests: 500 }), makeWindow({ requests: 40 }));
    expect(result.outcome).toBe('inconclusive');
    expect(result.byCheck.latencyP99RatioToStable!.outcome).toBe('inconclusive');
    expect(result.byCheck.predictionDrift!.outcome).toBe('inconclusive');
    expect(result.byCheck.errorRate!.outcome).toBe('pass');
  });

  it('skips the checks relative to stable on a first deployment', () => {
    // Latency ratio and predictions would both fail against the usual stable version.
    const result = evaluate(makeWindow({ requests: 500, latency: MEDIUM, predictions: SHIFTED }), null);
    expect(result.outcome).toBe('pass');
    expect(result.decisions.map((d) => d.check)).toEqual(['outage', 'errorRate', 'latencyP99Ms', 'inputQuality']);
  });

  it('still applies the absolute checks on a first deployment', () => {
    const result = evaluate(makeWindow({ requests: 500, errors: 20, latency: SLOW }), null);
    expect(result.outcome).toBe('fail');
    expect(result.failed).toEqual(['errorRate', 'latencyP99Ms']);
  });

  it('names every breached check when several fail at once', () => {
    const result = evaluate(makeWindow({ requests: 1000, errors: 50, latency: SLOW, predictions: SHIFTED }));
    expect(result.outcome).toBe('fail');
    expect(result.failed).toEqual([
      'errorRate',
      'errorRateVsStable',
      'latencyP99Ms',
      'latencyP99RatioToStable',
      'predictionDrift',
    ]);
  });

  it('compares the error rate with stable by a two-proportion test, beside the absolute limit', () => {
    const rules = AnalysisSpec.parse({ errorRate: { max: 0.5, vsStable: { alpha: 0.01, minDifference: 0.005 } } });
    // 5% against 1% on a thousand requests each: far beyond chance.
    const worse = evaluate(
      makeWindow({ requests: 1000, errors: 50 }),
      makeWindow({ requests: 1000, errors: 10 }),
      rules,
    );
    expect(worse.byCheck.errorRateVsStable).toMatchObject({ outcome: 'fail', value: 0.04, threshold: 0.005 });
    expect(worse.byCheck.errorRateVsStable!.detail).toMatch(
      /candidate 50\/1000 \(5%\), stable 10\/1000 \(1%\), z=5\.24/,
    );
    // 3% against 2% on two hundred: more errors, but a sample that small cannot tell.
    const noisy = evaluate(makeWindow({ requests: 200, errors: 6 }), makeWindow({ requests: 200, errors: 4 }), rules);
    expect(noisy.byCheck.errorRateVsStable).toMatchObject({ outcome: 'pass', value: 0.01 });
    // Significant, but within the margin.
    const close = evaluate(
      makeWindow({ requests: 100_000, errors: 1300 }),
      makeWindow({ requests: 100_000, errors: 1000 }),
      AnalysisSpec.parse({ errorRate: { max: 0.5, vsStable: { minDifference: 0.005 } } }),
    );
    expect(close.byCheck.errorRateVsStable).toMatchObject({ outcome: 'pass', value: 0.003 });
  });
});

describe('errorRateTest', () => {
  it('is the pooled one-sided two-proportion z-test', () => {
    // Pooled p = 60/2000, se = sqrt(p(1-p)(2/1000)): z = 0.04 / se = 5.2432, P(Z >= z) = 7.8897e-08.
    const t = errorRateTest(50, 1000, 10, 1000);
    expect(t.z).toBeCloseTo(5.2432, 3);
    expect(t.pValue).toBeGreaterThan(7.85e-8);
    expect(t.pValue).toBeLessThan(7.93e-8);
    expect(errorRateTest(10, 1000, 50, 1000).pValue).toBeGreaterThan(0.99);
    expect(errorRateTest(0, 100, 0, 100)).toEqual({ z: 0, pValue: 1 });
    expect(errorRateTest(1, 0, 0, 100)).toEqual({ z: 0, pValue: 1 });
  });
});

describe('featureSkew', () => {
  /** Deterministic uniform [0, 1). */
  const rng = (seed: number) => {
    let s = seed >>> 0;
    return () => {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = Math.imul(s ^ (s >>> 15), s | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  };
  /** Churn-like rows: four numeric features and two categorical ones; `scale` multiplies the charges. */
  const rows = (n: number, seed: number, scale = 1) => {
    const r = rng(seed);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
    return Array.from({ length: n }, () => ({
      age: 18 + Math.floor(r() * 60),
      tenure_months: Math.floor(r() * r() * 72),
      monthly_charges: Math.round((20 + r() * 100) * 100 * scale) / 100,
      support_calls: Math.floor(r() * r() * 8),
      plan: pick(['basic', 'basic', 'standard', 'premium']),
      region: pick(['north', 'south', 'east', 'west']),
    }));
  };
  const rules = AnalysisSpec.parse({ minSamples: 60 });
  let profile: DataProfile;
  beforeAll(async () => {
    const train = rows(4800, 1);
    const columns = Object.fromEntries(
      Object.keys(train[0]!).map((k) => [k, train.map((row) => row[k as keyof (typeof train)[0]])]),
    ) as Record<string, number[] | string[]>;
    profile = (await buildProfile(columnsFromArrays(columns))).profile;
  });
  const decide = (window: ReturnType<typeof rows>) => {
    const sketcher = new DataSketcher(sketchPlanOf(profile));
    for (const row of window) sketcher.record(row);
    const candidate = { ...windowOf(undefined, undefined), inputs: sketcher.snapshot() };
    const analysis = evaluateStage({
      stage: 'canary',
      at: 'now',
      candidate,
      stable: null,
      rules,
      inputSkew: inputSkew(profile, candidate.inputs, rules),
    });
    return analysis.decisions.find((d) => d.check === 'featureSkew')!;
  };

  it('does not fail healthy canary windows of 60 requests (300 of them, six features each)', () => {
    const outcomes = Array.from({ length: 300 }, (_, i) => decide(rows(60, 1000 + i)).outcome);
    expect(outcomes.filter((o) => o === 'fail')).toEqual([]);
  });

  it('fails a window whose charges come in another unit, naming the feature, and is inconclusive when small', () => {
    const d = decide(rows(60, 7, 1.6));
    expect(d).toMatchObject({ outcome: 'fail', threshold: 0.5, sampleSize: 60 });
    expect(d.detail).toMatch(/^skewed: monthly_charges PSI=[\d.]+ p=/);
    expect(d.rule).toBe(
      'PSI(candidate inputs vs training profile) <= 0.5 per feature, unless its test p-value >= 0.001 / 6 features',
    );
    expect(decide(rows(20, 8, 1.6)).outcome).toBe('inconclusive');
  });
});

describe('inputQuality', () => {
  it('fails when more of the candidate’s requests are refused as invalid than allowed, naming the share', () => {
    const window = { ...makeWindow({ requests: 900 }), invalidRequests: 100 };
    const result = evaluate(window);
    expect(result.failed).toEqual(['inputQuality']);
    expect(result.byCheck.inputQuality).toMatchObject({
      value: 0.1,
      threshold: 0.05,
      sampleSize: 1000,
      detail: '100 of 1000 requests refused as invalid (10%)',
    });
  });

  it('passes a few invalid requests, and is inconclusive below the minimum sample', () => {
    expect(evaluate({ ...makeWindow({ requests: 990 }), invalidRequests: 10 }).byCheck.inputQuality!.outcome).toBe(
      'pass',
    );
    expect(evaluate({ ...makeWindow({ requests: 50 }), invalidRequests: 40 }).byCheck.inputQuality!.outcome).toBe(
      'inconclusive',
    );
  });

  it('holds missing values to the training data’s own share of them', async () => {
    // Training: 10% of ages missing. Serving: 12% is fine (a rise of 2 points), 30% is not.
    const ages = Array.from({ length: 1000 }, (_, i) => (i % 10 === 0 ? NaN : 20 + (i % 50)));
    const profile = (await buildProfile(columnsFromArrays({ age: ages }))).profile;
    const judged = (missingShare: number) => {
      const sketcher = new DataSketcher(sketchPlanOf(profile));
      for (let i = 0; i < 200; i++) sketcher.record({ age: i < missingShare * 200 ? null : 30 });
      const candidate = { ...makeWindow({ requests: 200 }), inputs: sketcher.snapshot() };
      return evaluateStage({
        stage: 'canary',
        at: 'now',
        candidate,
        stable: null,
        rules: RULES,
        profile,
      }).decisions.find((d) => d.check === 'inputQuality')!;
    };
    expect(judged(0.12).outcome).toBe('pass');
    const bad = judged(0.3);
    expect(bad).toMatchObject({ outcome: 'fail', value: 0.2 });
    expect(bad.detail).toContain('most missing or corrupt: age 30% (10% in training)');
  });
});

describe('per-check minimum samples and failure tolerance', () => {
  const decision = (check: string, outcome: Decision['outcome']): Decision => ({
    stage: 'canary',
    check,
    value: 1,
    threshold: 0,
    outcome,
    at: 'now',
  });

  it('judges a check on its own minimum sample when it sets one', () => {
    const rules = AnalysisSpec.parse({ minSamples: 100, errorRate: { max: 0.01, minSamples: 2000 } });
    const result = evaluate(makeWindow({ requests: 1000 }), STABLE, rules);
    expect(result.byCheck.errorRate!.outcome).toBe('inconclusive');
    expect(result.byCheck.latencyP99Ms!.outcome).toBe('pass');
    expect(requiredSamples(rules)).toBe(2000);
    expect(minSamplesOf(rules, 'latencyP99RatioToStable')).toBe(100);
  });

  it('stops at the first failed sample by default', () => {
    const v = judgeSample([decision('errorRate', 'fail'), decision('outage', 'pass')], {}, RULES);
    expect(v.outcome).toBe('fail');
    expect(v.failed.map((d) => d.check)).toEqual(['errorRate']);
    expect(v.streaks).toEqual({ errorRate: 1, outage: 0 });
  });

  it('tolerates failureLimit failures in a row and fails on the next one', () => {
    const rules = AnalysisSpec.parse({ errorRate: { max: 0.01, failureLimit: 2 } });
    let streaks: FailureStreaks = {};
    const outcomes: string[] = [];
    for (let i = 0; i < 3; i++) {
      const v = judgeSample([decision('errorRate', 'fail')], streaks, rules);
      streaks = v.streaks;
      outcomes.push(`${v.outcome}:${v.tolerated.length}`);
    }
    expect(outcomes).toEqual(['pass:1', 'pass:1', 'fail:0']);
    expect(failureLimitOf(rules, 'errorRate')).toBe(2);
  });

  it('resets the streak on a passing sample, and leaves it on an inconclusive one', () => {
    const rules = AnalysisSpec.parse({ latencyP99Ms: { max: 500, failureLimit: 1 } });
    const run = (outcomes: Decision['outcome'][]) => {
      let streaks: FailureStreaks = {};
      let last: SampleVerdict | undefined;
      for (const o of outcomes) {
        last = judgeSample([decision('latencyP99RatioToStable', o)], streaks, rules);
        streaks = last.streaks;
      }
      return last!.outcome;
    };
    expect(run(['fail', 'pass', 'fail'])).toBe('pass');
    expect(run(['fail', 'inconclusive', 'fail'])).toBe('fail');
    expect(run(['inconclusive'])).toBe('inconclusive');
  });

  it('judges an incomplete window on its outage check alone, and keeps it growing unless it fails', () => {
    const rules = AnalysisSpec.parse({ errorRate: { max: 0.01, failureLimit: 1 } });
    const readout = [decision('errorRate', 'fail'), decision('latencyP99RatioToStable', 'inconclusive')];
    // Complete: the whole readout counts (a tolerated failure) and the next window starts after it.
    const whole = judgeWindow([...readout, decision('outage', 'pass')], true, {}, rules);
    expect(whole.advance).toBe(true);
    expect(whole.verdict.tolerated.map((d) => d.check)).toEqual(['errorRate']);
    // Incomplete: only the outage check counts now; the error rate waits for a fuller window.
    const partial = judgeWindow([...readout, decision('outage', 'pass')], false, {}, rules);
    expect(partial).toMatchObject({ advance: false, verdict: { outcome: 'pass', tolerated: [], failed: [] } });
    expect(partial.verdict.streaks).toEqual({ outage: 0 });
    // Incomplete but failing beyond tolerance: it counts at once, and the window moves on.
    const failing = judgeWindow(readout, false, { errorRate: 1 }, rules);
    expect(failing).toMatchObject({ advance: true, verdict: { outcome: 'fail' } });
    expect(sampleEvidence(failing.verdict, 4)).toEqual([{ ...decision('errorRate', 'fail'), sample: 4 }]);
    expect(sampleEvidence(whole.verdict, 3)).toEqual([
      { ...decision('errorRate', 'fail'), sample: 3, tolerated: true },
    ]);
    expect(sampleEvidence(partial.verdict, 2)).toEqual([]);
  });
});

describe('shadow comparison', () => {
  const rules = AnalysisSpec.parse({ minSamples: 10 });
  const compare = { minAgreement: 0.9, failureLimit: 0, dryRun: false };

  it('counts agreement and score differences of the same rows, binned the candidate way on both sides', () => {
    const registry = new TelemetryRegistry('boot');
    const shadow = registry.shadowCounters('churn', 'v2');
    shadow.binPredictions({ task: 'binary-classification' });
    const stable = [0.1, 0.2, 0.8, 0.9].map((p) => ({ label: p >= 0.5 ? 1 : 0, probability: p, binned: p }));
    const candidate = [0.15, 0.6, 0.7, 0.95].map((p) => ({ label: p >= 0.5 ? 1 : 0, probability: p, binned: p }));
    shadow.primary.recordSuccess(1, stable);
    shadow.candidate.recordSuccess(2, candidate);
    shadow.compare(stable, candidate);
    const t = registry.snapshot('churn').shadow!.v2!;
    expect(t).toMatchObject({ compared: 4, agreed: 3, dropped: 0 });
    expect(t.scoreDiffSum).toBeCloseTo(0.05 + 0.4 + 0.1 + 0.05, 10);
    expect(t.primary.predictionBinCounts.reduce((a, b) => a + b, 0)).toBe(4);
    expect(t.candidate.epoch).not.toBe(t.primary.epoch);
    registry.drop('churn', 'v2');
    expect(registry.snapshot('churn').shadow).toBeUndefined();
  });

  it('measures multiclass scores by half the L1 distance, and a changed class list as 1', () => {
    expect(
      scoreDifference({ binned: 0, probabilities: [0.7, 0.2, 0.1] }, { binned: 0, probabilities: [0.5, 0.3, 0.2] }),
    ).toBeCloseTo(0.2, 10);
    expect(
      scoreDifference({ binned: 0, probabilities: [0.5, 0.5] }, { binned: 0, probabilities: [0.3, 0.3, 0.4] }),
    ).toBe(1);
    expect(scoreDifference({ binned: 3, value: 3 }, { binned: 5, value: 5.5 })).toBe(2.5);
  });

  it('judges agreement and mean score difference, inconclusive below the minimum sample', () => {
    const judge = (
      window: { compared: number; agreed: number; scoreDiffSum: number },
      task = 'binary-classification' as const,
    ) => shadowDecisions({ stage: 'shadow', at: 't', task, window: { ...window, dropped: 0 }, compare, rules });
    const pass = judge({ compared: 100, agreed: 95, scoreDiffSum: 3 });
    expect(pass.map((d) => [d.check, d.outcome, d.value])).toEqual([
      ['shadowAgreement', 'pass', 0.95],
      ['shadowScoreDiff', 'pass', 0.03],
    ]);
    const fail = judge({ compared: 100, agreed: 80, scoreDiffSum: 15 });
    expect(fail.map((d) => d.outcome)).toEqual(['fail', 'fail']);
    expect(judge({ compared: 5, agreed: 0, scoreDiffSum: 5 }).map((d) => d.outcome)).toEqual([
      'inconclusive',
      'inconclusive',
    ]);
    // A regression has no labels to agree on, and no score difference limit unless the spec gives one.
    expect(judge({ compared: 100, agreed: 0, scoreDiffSum: 50 }, 'regression' as never)).toEqual([]);
  });

  it('takes the window since a snapshot, or the later snapshot whole when the counters restarted', () => {
    const registry = new TelemetryRegistry('boot-a');
    const shadow = registry.shadowCounters('m', 'v2');
    const rows = [{ label: 1, probability: 0.9, binned: 0.9 }];
    shadow.candidate.recordSuccess(1, rows);
    shadow.compare(rows, rows);
    const before = registry.snapshot('m').shadow!.v2!;
    shadow.candidate.recordSuccess(1, rows);
    shadow.compare(rows, [{ label: 0, probability: 0.2, binned: 0.2 }]);
    const after = registry.snapshot('m').shadow!.v2!;
    expect(shadowWindowOf(after, before)).toEqual({
      compared: 1,
      agreed: 0,
      scoreDiffSum: expect.closeTo(0.7, 10),
      dropped: 0,
    });
    const restarted = new TelemetryRegistry('boot-b').shadowCounters('m', 'v2');
    restarted.compare(rows, rows);
    expect(shadowWindowOf(restarted.snapshot(), after)).toMatchObject({ compared: 1, agreed: 1 });
  });
});
