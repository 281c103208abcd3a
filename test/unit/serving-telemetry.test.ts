import { describe, expect, it } from 'vitest';
import { TelemetryRegistry, latencyBucketIndex, predictionBinIndex } from '../../src/serving/telemetry';
import { LATENCY_BUCKETS_MS, ModelTelemetry, PREDICTION_BINS } from '../../src/shared/telemetry';

describe('serving telemetry', () => {
  it('places latencies in the first bucket whose upper bound is at least the latency', () => {
    expect(latencyBucketIndex(0)).toBe(0);
    expect(latencyBucketIndex(0.3)).toBe(0);
    expect(latencyBucketIndex(1)).toBe(0);
    expect(latencyBucketIndex(1.0001)).toBe(1);
    expect(latencyBucketIndex(4.9)).toBe(2);
    expect(latencyBucketIndex(5000)).toBe(LATENCY_BUCKETS_MS.length - 1);
    expect(latencyBucketIndex(5000.1)).toBe(LATENCY_BUCKETS_MS.length);
    expect(latencyBucketIndex(1e9)).toBe(LATENCY_BUCKETS_MS.length);
  });

  it('bins probabilities in equal-width bins over [0, 1], with 1 in the last bin', () => {
    expect(predictionBinIndex(0)).toBe(0);
    const width = 1 / PREDICTION_BINS;
    expect(predictionBinIndex(width * 0.999)).toBe(0);
    expect(predictionBinIndex(width)).toBe(1);
    expect(predictionBinIndex(width * 5.5)).toBe(5);
    expect(predictionBinIndex(0.999)).toBe(PREDICTION_BINS - 1);
    expect(predictionBinIndex(1)).toBe(PREDICTION_BINS - 1);
    expect(predictionBinIndex(-0.1)).toBe(0);
    expect(predictionBinIndex(Number.NaN)).toBe(0);
  });

  it('counts successes, errors and invalid requests per version and snapshots in the shared schema', () => {
    const registry = new TelemetryRegistry('boot-1');
    const v1 = registry.counters('churn', 'v1');
    const v2 = registry.counters('churn', 'v2');
    expect(registry.counters('churn', 'v1')).toBe(v1);

    const at = Date.parse('2030-01-02T03:04:05.000Z');
    v1.recordSuccess(0.4, [{ label: 1, binned: 0.93 }], at);
    v1.recordSuccess(3, [{ label: 0, binned: 0.12 }], at - 1000);
    v1.recordError();
    v1.recordInvalid();
    v2.recordInvalid();

    const snapshot = ModelTelemetry.parse(registry.snapshot('churn', new Date(at)));
    expect(snapshot.model).toBe('churn');
    expect(snapshot.at).toBe('2030-01-02T03:04:05.000Z');
    const one = snapshot.versions.v1;
    expect(one).toMatchObject({
      version: 'v1',
      requests: 3,
      errors: 1,
      invalidRequests: 1,
      latencySumMs: 3.4,
      positiveCount: 1,
      lastSuccessAt: '2030-01-02T03:04:04.000Z',
    });
    expect(one?.latencyBucketCounts).toHaveLength(LATENCY_BUCKETS_MS.length + 1);
    expect(one?.latencyBucketCounts.slice(0, 3)).toEqual([1, 0, 1]);
    expect(one?.latencyBucketCounts.reduce((a, b) => a + b, 0)).toBe(2);
    const bins = new Array<number>(PREDICTION_BINS).fill(0);
    bins[predictionBinIndex(0.12)]! += 1;
    bins[predictionBinIndex(0.93)]! += 1;
    expect(one?.predictionBinCounts).toEqual(bins);

    expect(one?.epoch).toBe('boot-1/1');
    expect(snapshot.versions.v2).toEqual({
      version: 'v2',
      epoch: 'boot-1/2',
      task: 'binary-classification',
      requests: 0,
      errors: 0,
      invalidRequests: 1,
      latencyBucketCounts: new Array(LATENCY_BUCKETS_MS.length + 1).fill(0),
      latencySumMs: 0,
      predictionBinCounts: new Array(PREDICTION_BINS).fill(0),
      positiveCount: 0,
    });
  });

  it('drops the counters of an undeployed version, and a redeploy starts from zero under a new epoch', () => {
    const registry = new TelemetryRegistry();
    registry.counters('churn', 'v1').recordError();
    const epoch = registry.snapshot('churn').versions.v1?.epoch;
    expect(epoch).toMatch(/^[0-9a-f-]{36}\/1$/);
    registry.counters('churn', 'v2').recordError();
    registry.drop('churn', 'v1');
    expect(Object.keys(registry.snapshot('churn').versions)).toEqual(['v2']);
    expect(registry.counters('churn', 'v1').requests).toBe(0);
    expect(registry.snapshot('churn').versions.v1?.epoch).toBe(epoch?.replace(/1$/, '3'));
    // Another gateway process: another boot id.
    expect(new TelemetryRegistry().bootId).not.toBe(registry.bootId);
    expect(registry.snapshot('other').versions).toEqual({});
  });
});
