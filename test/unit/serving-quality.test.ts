import { describe, expect, it } from 'vitest';
import { windowOf } from '../../src/domain/guardrails';
import {
  DEFAULT_PREDICTION_MEMORY,
  PredictionMemory,
  type RememberedPrediction,
} from '../../src/serving/prediction-memory';
import { VersionCounters } from '../../src/serving/telemetry';
import {
  LabelsRequest,
  MAX_LABEL_REQUEST_ID_LENGTH,
  MAX_LABELS_PER_CALL,
  type QualityCounters,
  emptyQualityCounters,
  qualityOf,
  qualityRestarted,
  qualityWindow,
} from '../../src/shared/quality';
import { VersionTelemetry } from '../../src/shared/telemetry';

const CLASSES = [0, 1] as const;

/** A clock the test moves by hand. */
function clock(start = 1_000_000): { now: () => number; set: (ms: number) => void } {
  let t = start;
  return { now: () => t, set: (ms) => (t = ms) };
}

function prediction(counters: VersionCounters, label = 1, probability = 0.9) {
  return {
    version: counters.version,
    counters,
    task: 'binary-classification' as const,
    classes: CLASSES,
    label,
    probability,
  };
}

/**
 * Five labelled predictions worked out by hand (positive class 1):
 *   p 0.9 predicted 1, truly 1 → TP   −ln 0.9   (0.9 − 1)² = 0.01
 *   p 0.8 predicted 1, truly 0 → FP   −ln 0.2   (0.8 − 0)² = 0.64
 *   p 0.3 predicted 0, truly 1 → FN   −ln 0.3   (0.3 − 1)² = 0.49
 *   p 0.2 predicted 0, truly 0 → TN   −ln 0.8   (0.2 − 0)² = 0.04
 *   p 0.6 predicted 1, truly 0 → FP   −ln 0.4   (0.6 − 0)² = 0.36
 * accuracy 2/5, precision 1/(1+2), recall 1/(1+1), log loss −ln(0.9·0.2·0.3·0.8·0.4)/5 = −ln(0.01728)/5 ≈ 0.8116411,
 * Brier 1.54/5 = 0.308.
 */
const EXAMPLE: [predicted: number, probability: number, actual: number][] = [
  [1, 0.9, 1],
  [1, 0.8, 0],
  [0, 0.3, 1],
  [0, 0.2, 0],
  [1, 0.6, 0],
];

describe('prediction memory for ground-truth labels', () => {
  it('forgets the oldest predictions beyond its size, all models together', () => {
    const counters = new VersionCounters('v1');
    const memory = new PredictionMemory({ maxEntries: 3 });
    memory.remember('churn', 'a', prediction(counters));
    memory.remember('churn', 'b', prediction(counters));
    memory.remember('other', 'c', prediction(counters));
    memory.remember('churn', 'd', prediction(counters));
    expect(memory.size).toBe(3);
    expect(memory.find('churn', 'a')).toBeUndefined();
    expect(memory.find('churn', 'b')).toBeDefined();
    expect(memory.find('other', 'c')).toBeDefined();
    expect(memory.find('churn', 'c')).toBeUndefined();
    expect(memory.find('churn', 'd')).toBeDefined();
  });

  it('moves a request id predicted again to the newest end, unlabelled', () => {
    const counters = new VersionCounters('v1');
    const memory = new PredictionMemory({ maxEntries: 3 });
    memory.remember('churn', 'a', prediction(counters, 1, 0.9));
    memory.remember('churn', 'b', prediction(counters));
    memory.remember('churn', 'c', prediction(counters));
    memory.label(memory.find('churn', 'a')!, 1);
    memory.remember('churn', 'a', prediction(counters, 0, 0.1));
    memory.remember('churn', 'd', prediction(counters));
    expect(memory.find('churn', 'b')).toBeUndefined();
    const again = memory.find('churn', 'a');
    expect(again).toMatchObject({ label: 0, probability: 0.1, labelled: false });
    expect(memory.label(again!, 0)).toBe('accepted');
  });

  it('keeps the first prediction of a request id still waiting for its label: a re-use is not remembered', () => {
    const time = clock(0);
    const counters = new VersionCounters('v1');
    const memory = new PredictionMemory({ maxEntries: 10, maxAgeMs: 1000 }, time.now);
    expect(memory.remember('churn', 'a', prediction(counters, 1, 0.9))).toBe(true);
    time.set(10);
    expect(memory.remember('churn', 'a', prediction(counters, 0, 0.1))).toBe(false);
    expect(memory.find('churn', 'a')).toMatchObject({ label: 1, probability: 0.9, atMs: 0, labelled: false });
    // The same id for another model is another prediction.
    expect(memory.remember('other', 'a', prediction(counters, 0, 0.2))).toBe(true);
    // Once the first one has expired, the id is free again.
    time.set(1000);
    expect(memory.remember('churn', 'a', prediction(counters, 0, 0.3))).toBe(true);
    expect(memory.find('churn', 'a')).toMatchObject({ label: 0, probability: 0.3, atMs: 1000 });
    expect(memory.size).toBe(2);
  });

  it('keeps none with a size of 0', () => {
    const memory = new PredictionMemory({ maxEntries: 0 });
    memory.remember('churn', 'a', prediction(new VersionCounters('v1')));
    expect(memory.size).toBe(0);
    expect(memory.find('churn', 'a')).toBeUndefined();
  });

  it('forgets predictions older than its maximum age', () => {
    const time = clock(0);
    const counters = new VersionCounters('v1');
    const memory = new PredictionMemory({ maxEntries: 100, maxAgeMs: 1000 }, time.now);
    memory.remember('churn', 'a', prediction(counters));
    time.set(500);
    memory.remember('churn', 'b', prediction(counters));
    time.set(999);
    expect(memory.find('churn', 'a')).toBeDefined();
    time.set(1000);
    expect(memory.find('churn', 'a')).toBeUndefined();
    expect(memory.size).toBe(1);
    time.set(1499);
    expect(memory.find('churn', 'b')).toBeDefined();
    time.set(1500);
    expect(memory.find('churn', 'b')).toBeUndefined();
    expect(memory.size).toBe(0);
  });

  it('forgets an expired prediction even when a clock step put it behind a newer one', () => {
    const time = clock(10_000);
    const counters = new VersionCounters('v1');
    const memory = new PredictionMemory({ maxAgeMs: 1000 }, time.now);
    memory.remember('churn', 'new', prediction(counters));
    time.set(5_000); // the wall clock stepped back
    memory.remember('churn', 'old', prediction(counters));
    time.set(10_500);
    expect(memory.find('churn', 'old')).toBeUndefined();
    expect(memory.find('churn', 'new')).toBeDefined();
  });

  it('never remembers a request id longer than a label can name: count, age and key length are all bounded', () => {
    const counters = new VersionCounters('v1');
    const memory = new PredictionMemory();
    expect([memory.maxEntries, memory.maxAgeMs]).toEqual([
      DEFAULT_PREDICTION_MEMORY.maxEntries,
      DEFAULT_PREDICTION_MEMORY.maxAgeMs,
    ]);
    expect(DEFAULT_PREDICTION_MEMORY).toEqual({ maxEntries: 100_000, maxAgeMs: 24 * 60 * 60 * 1000 });
    const longest = 'r'.repeat(MAX_LABEL_REQUEST_ID_LENGTH);
    memory.remember('churn', longest, prediction(counters));
    memory.remember('churn', `${longest}r`, prediction(counters));
    memory.remember('churn', 'x'.repeat(1024 * 1024), prediction(counters));
    expect(memory.size).toBe(1);
    expect(memory.find('churn', longest)).toBeDefined();
    // A label can never name the longer ones: they are refused at the labels endpoint.
    expect(LabelsRequest.safeParse({ labels: [{ requestId: `${longest}r`, label: 1 }] }).success).toBe(false);
  });

  it('refuses bounds that cannot hold', () => {
    expect(() => new PredictionMemory({ maxEntries: -1 })).toThrow(RangeError);
    expect(() => new PredictionMemory({ maxEntries: 1.5 })).toThrow(RangeError);
    expect(() => new PredictionMemory({ maxAgeMs: 0 })).toThrow(RangeError);
  });

  it('counts a label once: a second one for the same prediction is a duplicate and changes nothing', () => {
    const counters = new VersionCounters('v1');
    const memory = new PredictionMemory();
    memory.remember('churn', 'r1', prediction(counters, 1, 0.9));
    expect(memory.find('churn', 'nope')).toBeUndefined();
    const entry = memory.find('churn', 'r1') as RememberedPrediction;
    expect(memory.label(entry, 1)).toBe('accepted');
    expect(memory.label(entry, 0)).toBe('duplicate');
    expect(counters.snapshot().quality).toMatchObject({ labeled: 1, correct: 1, truePositives: 1, falseNegatives: 0 });
  });
});

describe('quality counters', () => {
  it('reports no quality until the first label, then the confusion counts and loss sums', () => {
    const counters = new VersionCounters('v1');
    counters.recordSuccess(1, [{ label: 1, binned: 0.9 }]);
    expect(counters.snapshot()).not.toHaveProperty('quality');

    for (const [predicted, probability, actual] of EXAMPLE) {
      counters.recordLabel({
        task: 'binary-classification',
        label: predicted,
        probability: probability,
        actual: actual,
      });
    }
    const snapshot = VersionTelemetry.parse(counters.snapshot());
    expect(snapshot.quality).toMatchObject({
      labeled: 5,
      correct: 2,
      truePositives: 1,
      falsePositives: 2,
      falseNegatives: 1,
      trueNegatives: 1,
    });
    expect(snapshot.quality?.logLossSum).toBeCloseTo(-Math.log(0.01728), 9);
    expect(snapshot.quality?.brierSum).toBeCloseTo(1.54, 12);
    // The snapshot is a copy: later labels do not change it.
    counters.recordLabel({ task: 'binary-classification', label: 1, probability: 0.9, actual: 1 });
    expect(snapshot.quality?.labeled).toBe(5);
  });

  it('computes accuracy, precision, recall, log loss and Brier as worked out by hand', () => {
    const counters = new VersionCounters('v1');
    for (const [predicted, probability, actual] of EXAMPLE) {
      counters.recordLabel({
        task: 'binary-classification',
        label: predicted,
        probability: probability,
        actual: actual,
      });
    }
    const quality = qualityOf(counters.snapshot().quality);
    expect(quality.labeled).toBe(5);
    expect(quality.accuracy).toBeCloseTo(0.4, 12);
    expect(quality.precision).toBeCloseTo(1 / 3, 12);
    expect(quality.recall).toBeCloseTo(0.5, 12);
    expect(quality.logLoss).toBeCloseTo(0.8116411, 6);
    expect(quality.brier).toBeCloseTo(0.308, 12);
  });

  it('gives nulls without labels, and null precision or recall when their denominator is zero', () => {
    const none = {
      labeled: 0,
      accuracy: null,
      precision: null,
      recall: null,
      logLoss: null,
      brier: null,
      macroF1: null,
      mae: null,
      rmse: null,
      r2: null,
    };
    expect(qualityOf(undefined)).toEqual(none);
    expect(qualityOf(emptyQualityCounters())).toEqual(none);

    const counters = new VersionCounters('v1');
    counters.recordLabel({ task: 'binary-classification', label: 0, probability: 0.1, actual: 0 }); // one true negative: nothing predicted or truly positive
    const quality = qualityOf(counters.snapshot().quality);
    expect(quality).toMatchObject({ labeled: 1, accuracy: 1, precision: null, recall: null });
    expect(quality.brier).toBeCloseTo(0.01, 12);
  });

  it('keeps the log loss of a sure mistake finite by clipping the probability', () => {
    const counters = new VersionCounters('v1');
    counters.recordLabel({ task: 'binary-classification', label: 1, probability: 1, actual: 0 });
    const quality = qualityOf(counters.snapshot().quality);
    expect(quality.logLoss).toBeCloseTo(-Math.log(1e-15), 6);
    expect(quality.brier).toBe(1);
  });
});

describe('quality over a window of telemetry', () => {
  function snapshots(): { before: VersionTelemetry; after: VersionTelemetry } {
    const counters = new VersionCounters('v1');
    counters.recordSuccess(1, [{ label: 1, binned: 0.9 }]);
    counters.recordLabel({ task: 'binary-classification', label: 1, probability: 0.9, actual: 1 });
    counters.recordLabel({ task: 'binary-classification', label: 0, probability: 0.2, actual: 1 });
    const before = counters.snapshot();
    counters.recordSuccess(1, [{ label: 0, binned: 0.1 }]);
    for (const [predicted, probability, actual] of EXAMPLE) {
      counters.recordLabel({
        task: 'binary-classification',
        label: predicted,
        probability: probability,
        actual: actual,
      });
    }
    return { before, after: counters.snapshot() };
  }

  it('is the difference of two cumulative snapshots', () => {
    const { before, after } = snapshots();
    const window = windowOf(after, before);
    expect(window.requests).toBe(1);
    expect(window.quality).toMatchObject({
      labeled: 5,
      correct: 2,
      truePositives: 1,
      falsePositives: 2,
      falseNegatives: 1,
      trueNegatives: 1,
    });
    expect(window.quality?.logLossSum).toBeCloseTo(-Math.log(0.01728), 9);
    expect(window.quality?.brierSum).toBeCloseTo(1.54, 9);
    expect(qualityOf(window.quality).accuracy).toBeCloseTo(0.4, 12);
    // Cumulative over both: 3 of 7 right.
    expect(qualityOf(after.quality).accuracy).toBeCloseTo(3 / 7, 12);
  });

  it('counts from zero when the earlier snapshot has no quality (no labels yet, or an older gateway)', () => {
    const { before, after } = snapshots();
    const { quality: _dropped, ...old } = before;
    expect(VersionTelemetry.safeParse(old).success).toBe(true);
    expect(windowOf(after, old).quality).toEqual(after.quality);
    expect(windowOf(after, undefined).quality).toEqual(after.quality);
  });

  it('has no quality when the later snapshot has none, and treats a decrease as a reset', () => {
    const { before, after } = snapshots();
    const { quality: _dropped, ...old } = after;
    expect(windowOf(old, before)).not.toHaveProperty('quality');
    expect(windowOf(undefined, before)).not.toHaveProperty('quality');
    // A restarted gateway counts from zero again: a counter that went down makes the later counters the window whole.
    expect(qualityRestarted(before.quality as QualityCounters, after.quality as QualityCounters)).toBe(true);
    expect(qualityWindow(before.quality as QualityCounters, after.quality)).toEqual(before.quality);
    expect(qualityRestarted(after.quality as QualityCounters, before.quality as QualityCounters)).toBe(false);
  });
});

describe('labels request', () => {
  it('accepts integer and string class labels, and refuses bad items by index and field', () => {
    expect(
      LabelsRequest.safeParse({
        labels: [
          { requestId: 'a', label: 1 },
          { requestId: 'b', label: '0' },
        ],
      }).success,
    ).toBe(true);
    const bad = LabelsRequest.safeParse({
      labels: [
        { requestId: 'a', label: 1 },
        { requestId: '', label: 0 },
        // A number that is not a class is a regression's target: the gateway refuses it for a classifier (400).
        { requestId: 'c', label: true },
      ],
    });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues.map((i) => i.path)).toEqual([
      ['labels', 1, 'requestId'],
      ['labels', 2, 'label'],
    ]);
    expect(LabelsRequest.safeParse({ labels: [] }).success).toBe(false);
    const tooMany = Array.from({ length: MAX_LABELS_PER_CALL + 1 }, (_, i) => ({ requestId: `r${i}`, label: 1 }));
    expect(LabelsRequest.safeParse({ labels: tooMany }).success).toBe(false);
  });
});
