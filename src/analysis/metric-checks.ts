import { promDuration, providerKind, type MetricCheck, type MetricVariables } from '../shared/analysis';
import type { Decision } from '../shared/status';
import { clipped } from '../shared/text';
import { judgeResult } from './conditions';
import { measure, MeasurementError } from './providers';

/** A rollout's or a serving monitor's metric check: what measuring it needs. */
export type MeasuredCheck = Pick<MetricCheck, 'name' | 'provider' | 'successCondition' | 'failureCondition'> & {
  initialDelay?: number;
  dryRun?: boolean;
};

export interface MetricCheckContext {
  model: string;
  candidate: string;
  stable: string | null;
  stage: string;
  /** The analysis interval and the judged window's length, in ms. */
  intervalMs: number;
  windowMs: number;
  /** How long the stage has run: checks still in their `initialDelay` are not measured. */
  elapsedMs: number;
  env: Readonly<Record<string, string | undefined>>;
  now: Date;
}

/** The rule a metric check's decisions record: its provider and conditions. */
export function metricRule(check: MeasuredCheck): string {
  const parts = [
    check.successCondition ? `success when ${check.successCondition}` : '',
    check.failureCondition ? `failure when ${check.failureCondition}` : '',
  ].filter(Boolean);
  return `${providerKind(check)}: ${parts.join('; ')}`;
}

/**
 * Measures every metric check past its initial delay, all at once, and judges each result by its conditions. A
 * provider that cannot measure is an `error` decision, no data is `inconclusive`; nothing here throws.
 */
export async function measureMetricChecks(
  checks: readonly MeasuredCheck[],
  ctx: MetricCheckContext,
): Promise<Decision[]> {
  const vars: MetricVariables = {
    model: ctx.model,
    version: ctx.candidate,
    stableVersion: ctx.stable ?? '',
    stage: ctx.stage,
    interval: promDuration(ctx.intervalMs),
    window: promDuration(Number.isFinite(ctx.windowMs) && ctx.windowMs > 0 ? ctx.windowMs : ctx.intervalMs),
  };
  const due = checks.filter((c) => ctx.elapsedMs >= (c.initialDelay ?? 0));
  return Promise.all(
    due.map(async (check): Promise<Decision> => {
      const base = {
        stage: ctx.stage,
        at: ctx.now.toISOString(),
        check: check.name,
        provider: providerKind(check),
        threshold: null,
        rule: metricRule(check),
        ...(check.dryRun ? { dryRun: true } : {}),
      };
      try {
        const m = await measure(check, vars, ctx.env, ctx.now);
        if (m.value === null) return { ...base, value: null, outcome: 'inconclusive', detail: `no data: ${m.detail}` };
        return { ...base, value: m.value, outcome: judgeResult(m.value, check), detail: m.detail };
      } catch (err) {
        const message = err instanceof MeasurementError ? err.message : `unexpected: ${(err as Error).message}`;
        return { ...base, value: null, outcome: 'error', detail: clipped(message, 500) };
      }
    }),
  );
}
