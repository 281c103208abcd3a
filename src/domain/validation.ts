import type { ValidationSpec } from '../shared/spec';
import type { Decision } from '../shared/status';

/** Metrics where a smaller value is better: a regression is a rise. */
export function lowerIsBetter(metric: string): boolean {
  return /(loss|error)$/i.test(metric);
}

/**
 * Offline validation of a candidate: absolute thresholds on its metrics, and the largest allowed regression against
 * the production version measured on the same test set. A metric named in the spec but missing is a failure.
 */
export function evaluateOffline(
  spec: ValidationSpec,
  candidate: Record<string, number>,
  baseline: Record<string, number> | null,
  at: string,
): Decision[] {
  const decisions: Decision[] = [];
  for (const [metric, t] of Object.entries(spec.thresholds)) {
    const value = candidate[metric];
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
    for (const [metric, allowed] of Object.entries(spec.maxRegression)) {
      const value = candidate[metric];
      const base = baseline[metric];
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
        rule: `regression of ${metric} against production <= ${allowed}`,
        at,
        detail: `candidate ${value}, production ${base}`,
      });
    }
  }
  return decisions;
}
