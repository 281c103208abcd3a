import { describe, expect, it } from 'vitest';
import { evaluateOffline, lowerIsBetter, testDataDecisions } from '../../src/domain/validation';
import { ValidationSpec } from '../../src/shared/spec';
import type { TestDataDrift } from '../../src/shared/status';

const AT = '2025-01-01T00:00:00.000Z';

/** check → [outcome, value] for compact assertions. */
function outcomes(decisions: ReturnType<typeof evaluateOffline>) {
  return Object.fromEntries(decisions.map((d) => [d.check, [d.outcome, d.value]]));
}

describe('lowerIsBetter', () => {
  it('treats metrics named like a loss or an error as lower-is-better', () => {
    expect(['logLoss', 'loss', 'meanSquaredError', 'LOGLOSS'].map(lowerIsBetter)).toEqual([true, true, true, true]);
    expect(['auc', 'accuracy', 'f1', 'positiveRate'].map(lowerIsBetter)).toEqual([false, false, false, false]);
  });
});

describe('evaluateOffline', () => {
  it('passes metrics at or above their minimum and fails those below', () => {
    const spec = ValidationSpec.parse({ thresholds: { accuracy: { min: 0.75 }, auc: { min: 0.8 } } });
    const decisions = evaluateOffline(spec, { accuracy: 0.75, auc: 0.79 }, null, AT);
    expect(outcomes(decisions)).toEqual({ 'accuracy.min': ['pass', 0.75], 'auc.min': ['fail', 0.79] });
    expect(decisions.find((d) => d.check === 'auc.min')).toEqual({
      stage: 'validating',
      check: 'auc.min',
      value: 0.79,
      threshold: 0.8,
      outcome: 'fail',
      rule: 'auc >= 0.8',
      at: AT,
      detail: undefined,
    });
  });

  it('passes metrics at or below their maximum and fails those above', () => {
    const spec = ValidationSpec.parse({ thresholds: { logLoss: { max: 0.5 }, positiveRate: { max: 0.3 } } });
    const decisions = evaluateOffline(spec, { logLoss: 0.5, positiveRate: 0.31 }, null, AT);
    expect(outcomes(decisions)).toEqual({ 'logLoss.max': ['pass', 0.5], 'positiveRate.max': ['fail', 0.31] });
    expect(decisions.find((d) => d.check === 'positiveRate.max')?.rule).toBe('positiveRate <= 0.3');
  });

  it('checks both bounds of a metric that has a min and a max', () => {
    const spec = ValidationSpec.parse({ thresholds: { positiveRate: { min: 0.1, max: 0.3 } } });
    expect(outcomes(evaluateOffline(spec, { positiveRate: 0.05 }, null, AT))).toEqual({
      'positiveRate.min': ['fail', 0.05],
      'positiveRate.max': ['pass', 0.05],
    });
  });

  it('fails a threshold whose metric was not reported, saying which metric', () => {
    const spec = ValidationSpec.parse({ thresholds: { f1: { min: 0.6, max: 0.99 } } });
    const decisions = evaluateOffline(spec, { accuracy: 0.9 }, null, AT);
    expect(decisions.map((d) => [d.check, d.outcome, d.value, d.detail])).toEqual([
      ['f1.min', 'fail', null, 'metric "f1" was not reported'],
      ['f1.max', 'fail', null, 'metric "f1" was not reported'],
    ]);
  });

  it('takes a metric named like an Object.prototype member as not reported, never as an inherited function', () => {
    const spec = ValidationSpec.parse({
      thresholds: { constructor: { min: 0.5 }, toString: { max: 1 } },
      maxRegression: { valueOf: 0.1, hasOwnProperty: 0.1 },
    });
    const decisions = evaluateOffline(spec, { toString: 0.5, hasOwnProperty: 0.8 }, { hasOwnProperty: 0.85 }, AT);
    expect(outcomes(decisions)).toEqual({
      'constructor.min': ['fail', null],
      'toString.max': ['pass', 0.5],
      'valueOf.regression': ['fail', null],
      'hasOwnProperty.regression': ['pass', 0.05],
    });
    expect(decisions.find((d) => d.check === 'constructor.min')!.detail).toBe('metric "constructor" was not reported');
    expect(decisions.find((d) => d.check === 'valueOf.regression')!.detail).toBe(
      'metric "valueOf" missing for the candidate',
    );
  });

  it('fails a higher-is-better metric (auc) that dropped more than allowed against production', () => {
    const spec = ValidationSpec.parse({ maxRegression: { auc: 0.02 } });
    expect(outcomes(evaluateOffline(spec, { auc: 0.85 }, { auc: 0.88 }, AT))).toEqual({
      'auc.regression': ['fail', 0.03],
    });
    expect(outcomes(evaluateOffline(spec, { auc: 0.87 }, { auc: 0.88 }, AT))).toEqual({
      'auc.regression': ['pass', 0.01],
    });
    // An improvement is a negative regression.
    expect(outcomes(evaluateOffline(spec, { auc: 0.9 }, { auc: 0.88 }, AT))).toEqual({
      'auc.regression': ['pass', -0.02],
    });
  });

  it('fails a lower-is-better metric (logLoss) that rose more than allowed against production', () => {
    const spec = ValidationSpec.parse({ maxRegression: { logLoss: 0.02 } });
    const worse = evaluateOffline(spec, { logLoss: 0.45 }, { logLoss: 0.42 }, AT);
    expect(outcomes(worse)).toEqual({ 'logLoss.regression': ['fail', 0.03] });
    expect(worse[0]).toMatchObject({
      threshold: 0.02,
      rule: 'regression of logLoss against production <= 0.02',
      detail: 'candidate 0.45, production 0.42',
    });
    // A lower loss is an improvement, however large.
    expect(outcomes(evaluateOffline(spec, { logLoss: 0.3 }, { logLoss: 0.42 }, AT))).toEqual({
      'logLoss.regression': ['pass', -0.12],
    });
  });

  it('fails a regression check when either side lacks the metric, saying which side', () => {
    const spec = ValidationSpec.parse({ maxRegression: { auc: 0.02, logLoss: 0.02 } });
    const decisions = evaluateOffline(spec, { auc: 0.9 }, { logLoss: 0.4 }, AT);
    expect(decisions.map((d) => [d.check, d.outcome, d.value, d.detail])).toEqual([
      ['auc.regression', 'fail', null, 'metric "auc" missing for the production version'],
      ['logLoss.regression', 'fail', null, 'metric "logLoss" missing for the candidate'],
    ]);
  });

  it('runs no regression checks without a production baseline (first version of a model)', () => {
    const spec = ValidationSpec.parse({
      thresholds: { auc: { min: 0.8 } },
      maxRegression: { auc: 0.02, logLoss: 0.02 },
    });
    const decisions = evaluateOffline(spec, { auc: 0.85 }, null, AT);
    expect(decisions.map((d) => d.check)).toEqual(['auc.min']);
  });

  it('makes no decisions for an empty validation spec', () => {
    expect(evaluateOffline(ValidationSpec.parse({}), { auc: 0.5 }, { auc: 0.9 }, AT)).toEqual([]);
  });
});

describe('testDataDecisions', () => {
  const spec = (failOn?: 'dataset-drift' | 'any-drift' | 'never') =>
    ValidationSpec.parse(failOn ? { testData: { failOn } } : {});
  const summary = (drifted: boolean, datasetDrift: boolean, problems: string[] = []): TestDataDrift => ({
    datasetDrift,
    driftShare: 0.5,
    datasetDriftShare: drifted ? 0.25 : 0,
    comparedFeatures: 4,
    referenceRows: 4800,
    currentRows: 1200,
    features: [
      {
        name: 'age',
        role: 'feature',
        method: 'wasserstein',
        statistic: drifted ? 0.31 : 0.02,
        threshold: 0.1,
        drifted,
        moved: '(64, inf] 9.3%→20.1%',
      },
    ],
    problems,
  });
  const outcomes = (failOn: Parameters<typeof spec>[0], t: TestDataDrift) =>
    testDataDecisions(spec(failOn), t, 'now').map((d) => `${d.check}:${d.outcome}`);

  it('fails on dataset drift by default, names what drifted, and records problems', () => {
    const ds = testDataDecisions(spec(), summary(true, true, ['age: 3 NaN value(s)']), 'now');
    expect(ds.map((d) => `${d.check}:${d.outcome}`)).toEqual(['testData.drift:fail', 'testData.problems:pass']);
    expect(ds[0]).toMatchObject({ value: 0.25, threshold: 0.5, sampleSize: 1200 });
    expect(ds[0]!.detail).toBe('drifted: age: wasserstein 0.31 vs 0.1, (64, inf] 9.3%→20.1%');
    expect(ds[1]!.detail).toBe('age: 3 NaN value(s)');
    expect(outcomes(undefined, summary(true, false))).toEqual(['testData.drift:pass', 'testData.problems:pass']);
  });

  it('fails on any drifted feature or problem with any-drift, and never with never', () => {
    expect(outcomes('any-drift', summary(true, false))).toEqual(['testData.drift:fail', 'testData.problems:pass']);
    expect(outcomes('any-drift', summary(false, false, ['x']))).toEqual([
      'testData.drift:pass',
      'testData.problems:fail',
    ]);
    expect(outcomes('never', summary(true, true, ['x']))).toEqual(['testData.drift:pass', 'testData.problems:pass']);
  });

  it('is part of evaluateOffline when the evaluation compared the test set', () => {
    const ds = evaluateOffline(spec(), { auc: 0.9 }, null, 'now', summary(false, false));
    expect(ds.map((d) => d.check)).toEqual(['testData.drift', 'testData.problems']);
    expect(evaluateOffline(spec(), { auc: 0.9 }, null, 'now')).toEqual([]);
  });
});
