import type { ValidationSpec } from '../shared/spec';
import { own } from '../shared/own';
import type { Decision, TestDataDrift } from '../shared/status';
import { lowerIsBetter, type Task } from '../shared/task';
import { DEFAULT_MAX_REGRESSION } from './task-metrics';

export { lowerIsBetter };

/**
 * Offline validation of a candidate: absolute thresholds on its metrics, and the largest allowed regression against
 * the production version measured on the same test set. A metric named in the spec but missing is a failure.
 */
export function evaluateOffline(
  spec: ValidationSpec,
  candidate: Record<string, number>,
  baseline: Record<string, number> | null,
  at: string,
  testData?: TestDataDrift,
  task?: Task,
): Decision[] {
  const decisions: Decision[] = [];
  if (testData) decisions.push(...testDataDecisions(spec, testData, at));
  for (const [metric, t] of Object.entries(spec.thresholds)) {
    const value = own(candidate, metric);
    if (t.min !== undefined) {
      decisions.push({
        stage: 'validating',
        check: `${metric}.min`,
        value: value ?? null,
        threshold: t.min,
        outcome: value !== undefined && value >= t.min ? 'pass' : 'fail',
        rule: `${metric} >= ${t.min}`,
        at,
        detail: value === undefined ? `metric "${metric}" was not reported` : undefined,
      });
    }
    if (t.max !== undefined) {
      decisions.push({
        stage: 'validating',
        check: `${metric}.max`,
        value: value ?? null,
        threshold: t.max,
        outcome: value !== undefined && value <= t.max ? 'pass' : 'fail',
        rule: `${metric} <= ${t.max}`,
        at,
        detail: value === undefined ? `metric "${metric}" was not reported` : undefined,
      });
    }
  }
  if (baseline) {
    // The spec's allowances, or the task's defaults when it names none (each compared only where both sides have it).
    const named = Object.keys(spec.maxRegression).length > 0;
    const allowances = named ? spec.maxRegression : task ? DEFAULT_MAX_REGRESSION[task] : {};
    for (const [metric, allowed] of Object.entries(allowances)) {
      const value = own(candidate, metric);
      const base = own(baseline, metric);
      if (!named && (value === undefined || base === undefined)) continue;
      if (value === undefined || base === undefined) {
        decisions.push({
          stage: 'validating',
          check: `${metric}.regression`,
          value: null,
          threshold: allowed,
          outcome: 'fail',
          rule: `regression of ${metric} against production <= ${allowed}`,
          at,
          detail: `metric "${metric}" missing for the ${value === undefined ? 'candidate' : 'production version'}`,
        });
        continue;
      }
      const regression = lowerIsBetter(metric) ? value - base : base - value;
      decisions.push({
        stage: 'validating',
        check: `${metric}.regression`,
        value: Math.round(regression * 1e6) / 1e6,
        threshold: allowed,
        outcome: regression <= allowed ? 'pass' : 'fail',
        rule: `regression of ${metric} against production <= ${allowed}${named ? '' : ` (the ${task} default)`}`,
        at,
        detail: `candidate ${value}, production ${base}`,
      });
    }
  }
  return decisions;
}

/**
 * The test set against the training profile (R10). `failOn` (default `dataset-drift`) says what fails validation: the
 * drifted share reaching `driftShare`, any drifted feature or data problem, or nothing (recorded only).
 */
export function testDataDecisions(spec: ValidationSpec, t: TestDataDrift, at: string): Decision[] {
  const failOn = spec.testData?.failOn ?? 'dataset-drift';
  const drifted = t.features.filter((f) => f.drifted);
  const describe = (f: TestDataDrift['features'][number]) =>
    `${f.name}${f.role === 'label' ? ' (label)' : ''}: ${f.method} ${f.statistic}` +
    `${f.pValue !== undefined ? ` p=${f.pValue.toPrecision(3)}` : ''} vs ${f.threshold}${f.moved ? `, ${f.moved}` : ''}`;
  const driftFails = failOn === 'any-drift' ? drifted.length > 0 : failOn === 'dataset-drift' && t.datasetDrift;
  return [
    {
      stage: 'validating',
      check: 'testData.drift',
      value: t.datasetDriftShare,
      threshold: t.driftShare,
      outcome: driftFails ? 'fail' : 'pass',
      rule:
        failOn === 'any-drift'
          ? 'no feature of the test set drifts from the training set'
          : `share of test-set features drifted from training < ${t.driftShare}` +
            (failOn === 'never' ? ' (recorded only)' : ''),
      sampleSize: t.currentRows,
      at,
      detail:
        drifted.length > 0
          ? `drifted: ${drifted.map(describe).join('; ')}`
          : `${t.comparedFeatures} features compared, none drifted`,
    },
    {
      stage: 'validating',
      check: 'testData.problems',
      value: t.problems.length,
      threshold: 0,
      outcome: failOn === 'any-drift' && t.problems.length > 0 ? 'fail' : 'pass',
      rule: failOn === 'any-drift' ? 'no data problems in the test set' : 'data problems in the test set (recorded)',
      sampleSize: t.currentRows,
      at,
      ...(t.problems.length > 0 ? { detail: t.problems.join('; ') } : {}),
    },
  ];
}
