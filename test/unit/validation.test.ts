import { describe, expect, it } from 'vitest';
import { evaluateOffline, lowerIsBetter } from '../../src/domain/validation';
import { ValidationSpec } from '../../src/shared/spec';

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
