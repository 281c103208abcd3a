import { describe, expect, it } from 'vitest';
import { qualityObservations } from '../../src/activities/monitoring';
import { windowOf } from '../../src/domain/guardrails';
import { calibrateAccuracy } from '../../src/domain/performance-estimation';
import { comparePredictions, drifted } from '../../src/domain/prediction-drift';
import { measureMetrics, rocAuc } from '../../src/domain/task-metrics';
import { evaluateOffline } from '../../src/domain/validation';
import { TelemetryRegistry } from '../../src/serving/telemetry';
import { countLabel, emptyQualityCounters, qualityOf, qualityWindow } from '../../src/shared/quality';
import { LifecycleSpec, MonitoringSpec, ValidationSpec } from '../../src/shared/spec';
import { VersionTelemetry } from '../../src/shared/telemetry';
import { testSpec } from '../helpers/harness';

/** Quality, drift, validation and monitor rules for each task, worked out by hand. */
describe('task-aware quality', () => {
  it('counts a regression’s labels into MAE, RMSE and R², and windows them', () => {
    const q = emptyQualityCounters();
    const pairs: [number, number][] = [
      [10, 12],
      [20, 18],
      [30, 33],
      [40, 37],
    ];
    for (const [value, actual] of pairs) countLabel(q, { task: 'regression', value, actual });
    const quality = qualityOf(q);
    expect(quality.mae).toBeCloseTo((2 + 2 + 3 + 3) / 4, 12);
    expect(quality.rmse).toBeCloseTo(Math.sqrt((4 + 4 + 9 + 9) / 4), 12);
    // Labels 12, 18, 33, 37: mean 25, SST 169 + 49 + 64 + 144 = 426; SSE 26.
    expect(quality.r2).toBeCloseTo(1 - 26 / 426, 12);
    expect(quality.accuracy).toBe(0);
    const before = structuredClone(q);
    countLabel(q, { task: 'regression', value: 5, actual: 15 });
    const window = qualityOf(qualityWindow(q, before));
    expect(window.labeled).toBe(1);
    expect(window.mae).toBe(10);
    expect(window.r2).toBeNull(); // one label: no variance to explain
    expect(
      measureMetrics(
        { task: 'regression', classes: [] },
        pairs.map(([value]) => ({ value })),
        pairs.map((p) => p[1]),
      ),
    ).toEqual({
      mae: 2.5,
      rmse: Math.sqrt(6.5),
      r2: 1 - 26 / 426,
    });
  });

  it('counts a multiclass model’s labels into accuracy, macro-F1 and log loss', () => {
    const q = emptyQualityCounters();
    // Three classes; predicted index, probabilities, true index.
    const rows: [number, number[], number][] = [
      [0, [0.7, 0.2, 0.1], 0],
      [1, [0.2, 0.6, 0.2], 1],
      [1, [0.3, 0.5, 0.2], 2],
      [2, [0.1, 0.2, 0.7], 2],
    ];
    for (const [classIndex, probabilities, actualIndex] of rows) {
      countLabel(q, { task: 'multiclass-classification', classIndex, probabilities, actualIndex });
    }
    const quality = qualityOf(q);
    expect(quality.accuracy).toBe(0.75);
    // F1: class 0 = 1, class 1 = 2/(2+1) = 2/3, class 2 = 2/(2+1) = 2/3.
    expect(quality.macroF1).toBeCloseTo((1 + 2 / 3 + 2 / 3) / 3, 12);
    expect(quality.logLoss).toBeCloseTo(-(Math.log(0.7) + Math.log(0.6) + Math.log(0.2) + Math.log(0.7)) / 4, 12);
    const classes = [10, 20, 30];
    const measured = measureMetrics(
      { task: 'multiclass-classification', classes },
      rows.map(([i, probabilities]) => ({ label: classes[i], probabilities })),
      rows.map(([, , t]) => classes[t]!),
    );
    expect(measured.accuracy).toBe(quality.accuracy);
    expect(measured.macroF1).toBeCloseTo(quality.macroF1!, 12);
    expect(measured.logLoss).toBeCloseTo(quality.logLoss!, 12);
  });

  it('ranks ties half in the AUC', () => {
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [false, false, true, true])).toBe(0.75);
    expect(rocAuc([0.5, 0.5], [false, true])).toBe(0.5);
    expect(rocAuc([0.5, 0.6], [true, true])).toBeNull();
  });

  it('counts a multiclass version’s predicted classes and a regression’s values on its edges', () => {
    const registry = new TelemetryRegistry('boot');
    const multi = registry.counters('routing', 'v1');
    multi.binPredictions({ task: 'multiclass-classification', classes: 3 });
    multi.recordSuccess(2, [
      { label: 20, binned: 0.9, classIndex: 1 },
      { label: 20, binned: 0.55, classIndex: 1 },
      { label: 30, binned: 0.34, classIndex: 2 },
    ]);
    const reg = registry.counters('demand', 'v1');
    const edges = Array.from({ length: 19 }, (_, i) => (i + 1) * 10);
    reg.binPredictions({ task: 'regression', edges });
    reg.recordSuccess(1, [{ binned: 5 }, { binned: 10 }, { binned: 10.5 }, { binned: 1000 }]);
    const m = VersionTelemetry.parse(registry.snapshot('routing').versions.v1);
    expect(m).toMatchObject({
      task: 'multiclass-classification',
      requests: 3,
      classCounts: [0, 2, 1],
      positiveCount: 0,
    });
    expect(m.predictionBinCounts[18]).toBe(1);
    expect(m.predictionBinCounts[11]).toBe(1);
    expect(m.predictionBinCounts[6]).toBe(1);
    const r = VersionTelemetry.parse(registry.snapshot('demand').versions.v1);
    // (−∞, 10] holds 5 and 10; (10, 20] holds 10.5; 1000 is in the last bin, open above.
    expect(r.predictionBinCounts.slice(0, 2)).toEqual([2, 1]);
    expect(r.predictionBinCounts[19]).toBe(1);
    expect(r.latencyBucketCounts.reduce((a, b) => a + b, 0)).toBe(1);
    expect(windowOf(r, undefined).predictedRows).toBe(4);
  });

  it('measures multiclass drift on the class distribution with a chi-squared test', () => {
    const stable = { predictionBinCounts: new Array<number>(20).fill(10), classCounts: [100, 100, 100, 100] };
    const same = { predictionBinCounts: new Array<number>(20).fill(10), classCounts: [98, 103, 99, 100] };
    const moved = { predictionBinCounts: new Array<number>(20).fill(10), classCounts: [250, 50, 50, 50] };
    const rule = { maxPsi: 0.25, alpha: 0.01 };
    const quiet = comparePredictions('multiclass-classification', stable, same);
    expect(quiet.test).toBe('chi-squared');
    expect(drifted(quiet, rule)).toBe(false);
    const loud = comparePredictions('multiclass-classification', stable, moved);
    expect(loud.psi).toBeGreaterThan(0.25);
    expect(loud.pValue).toBeLessThan(1e-10);
    expect(drifted(loud, rule)).toBe(true);
    // Bins alone (a target that does not count classes): the top-class probability bins, by KS.
    expect(
      comparePredictions('multiclass-classification', stable, { predictionBinCounts: same.predictionBinCounts }).test,
    ).toBe('ks');
  });

  it('applies the task’s default maxRegression only where both versions have the metric', () => {
    const none = ValidationSpec.parse({});
    const decisions = evaluateOffline(
      none,
      { r2: 0.7, mae: 9 },
      { r2: 0.78, mae: 8.7 },
      'now',
      undefined,
      'regression',
    );
    expect(decisions).toEqual([
      expect.objectContaining({
        check: 'r2.regression',
        outcome: 'fail',
        rule: expect.stringContaining('the regression default'),
      }),
    ]);
    expect(evaluateOffline(none, { mae: 9 }, { mae: 8 }, 'now', undefined, 'regression')).toEqual([]);
    // A spec that names its allowances gets those only.
    const named = ValidationSpec.parse({ maxRegression: { mae: 0.5 } });
    expect(evaluateOffline(named, { r2: 0.5, mae: 9 }, { r2: 0.78, mae: 8.7 }, 'now', undefined, 'regression')).toEqual(
      [expect.objectContaining({ check: 'mae.regression', outcome: 'pass' })],
    );
  });

  it('refuses a monitor quality rule of another task, naming the task', () => {
    const spec = testSpec('m', 'v1', 'good', (s) => {
      s.task = 'regression';
      s.monitoring.quality = { minAccuracy: 0.8, minLabels: 10, severity: 'warning' };
    });
    const parsed = LifecycleSpec.safeParse(spec);
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]).toMatchObject({
      path: ['monitoring', 'quality', 'minAccuracy'],
      message: 'not a rule of a regression model (it applies to binary-classification, multiclass-classification)',
    });
  });

  it('reports quality by task, and estimated accuracy beside the realised one', () => {
    const prod = { model: 'routing', version: 'v1' };
    const monitoring = MonitoringSpec.parse({
      minSamples: 10,
      quality: { minMacroF1: 0.6, minEstimatedAccuracy: 0.7, minLabels: 2 },
    });
    const q = emptyQualityCounters();
    countLabel(q, {
      task: 'multiclass-classification',
      classIndex: 0,
      probabilities: [0.9, 0.05, 0.05],
      actualIndex: 0,
    });
    countLabel(q, { task: 'multiclass-classification', classIndex: 0, probabilities: [0.6, 0.3, 0.1], actualIndex: 1 });
    // Validation: the top-class probability's bin 18 was right 9 times in 10, bin 10 half the time.
    const calibration = calibrateAccuracy(
      [...new Array<number>(100).fill(18), ...new Array<number>(100).fill(10)],
      [...new Array<number>(100).fill(0.92), ...new Array<number>(100).fill(0.52)],
      [...Array.from({ length: 100 }, (_, i) => i % 10 !== 0), ...Array.from({ length: 100 }, (_, i) => i % 2 === 0)],
      20,
      'topClass',
    );
    const bins = new Array<number>(20).fill(0);
    bins[18] = 20;
    bins[10] = 20;
    const window = {
      requests: 40,
      errors: 0,
      invalidRequests: 0,
      latencyBucketCounts: [],
      predictionBinCounts: bins,
      successes: 40,
      predictedRows: 40,
      quality: q,
    };
    const observations = qualityObservations(prod, window, monitoring, {
      task: 'multiclass-classification',
      rows: 200,
      predictionBinCounts: [],
      calibration,
    });
    expect(observations.map((o) => [o.kind, o.firing])).toEqual([
      ['model-quality', true],
      ['estimated-quality', false],
    ]);
    // F1: class 0 = 2/(2 + 1), class 1 = 0 (missed); class 2, never predicted nor labelled, is left out: 1/3.
    expect(observations[0]!.summary).toMatch(/^routing v1: macroF1 0\.3333 \(min 0\.6\) on 2 labels$/);
    const estimate = observations[1]!;
    // (20·(90 + 10·0.92)/110 + 20·(50 + 10·0.52)/110) / 40 = 0.7018…
    expect(estimate.details.estimatedAccuracy).toBeCloseTo((99.2 / 110 + 55.2 / 110) / 2, 10);
    expect(estimate.summary).toMatch(
      /estimated accuracy 0\.7018 \(min 0\.7\) on 40 predictions \(realised 0\.5 on 2 labels\)/,
    );
    // A regression has no estimate: a CBPE rule is refused for it at start, and the monitor never makes one.
    const regression = qualityObservations(
      { model: 'demand', version: 'v1' },
      { ...window, quality: undefined },
      MonitoringSpec.parse({ quality: { maxMae: 5, minLabels: 2 } }),
      { task: 'regression', rows: 10, predictionBinCounts: [] },
    );
    expect(regression.map((o) => [o.kind, o.firing])).toEqual([['model-quality', null]]);
  });
});
