import type { AnalysisSpec } from '../shared/spec';
import type { Decision } from '../shared/status';

// Workflow-safe (no Node modules): the lifecycle workflow folds each sample's decisions with these.

/** The checks a stage runs, by the name its decisions carry. */
export type CheckName =
  | 'outage'
  | 'errorRate'
  | 'latencyP99Ms'
  | 'latencyP99RatioToStable'
  | 'predictionDrift'
  | 'featureSkew'
  | 'inputQuality';

/** The rule block a check takes its tolerance from (the latency ratio shares the latency block). */
function toleranceOf(rules: AnalysisSpec, check: string): { failureLimit?: number; minSamples?: number } | undefined {
  switch (check) {
    case 'outage':
      return rules.outage;
    case 'errorRate':
      return rules.errorRate;
    case 'latencyP99Ms':
    case 'latencyP99RatioToStable':
      return rules.latencyP99Ms;
    case 'predictionDrift':
      return rules.predictionDrift;
    case 'featureSkew':
      return rules.featureSkew;
    case 'inputQuality':
      return rules.inputQuality;
    default:
      return undefined;
  }
}

/** The fewest samples a check judges on: its own `minSamples`, else the analysis-wide one. */
export function minSamplesOf(rules: AnalysisSpec, check: string): number {
  return toleranceOf(rules, check)?.minSamples ?? rules.minSamples;
}

/** The most samples any check needs: what a readout waits for before it judges. */
export function requiredSamples(rules: AnalysisSpec): number {
  const checks: CheckName[] = ['errorRate', 'latencyP99Ms', 'predictionDrift', 'featureSkew', 'inputQuality'];
  return Math.max(rules.minSamples, ...checks.map((c) => minSamplesOf(rules, c)));
}

/** How many failed samples in a row a check tolerates before the stage fails. */
export function failureLimitOf(rules: AnalysisSpec, check: string): number {
  return toleranceOf(rules, check)?.failureLimit ?? 0;
}

/** Consecutive failed samples per check, carried from one sample of a stage to the next. */
export type FailureStreaks = Record<string, number>;

export interface SampleVerdict {
  /** `fail` once a check failed more samples in a row than its `failureLimit`. */
  outcome: 'pass' | 'fail' | 'inconclusive';
  /** The decisions that stop the rollout. */
  failed: Decision[];
  /** Failed decisions still within their check's tolerance. */
  tolerated: Decision[];
  streaks: FailureStreaks;
}

/**
 * Folds one sample's decisions into the checks' failure streaks. A failed check extends its streak and stops the
 * rollout once the streak passes its `failureLimit`; a passing check resets it; an inconclusive check leaves it as it
 * was (too little traffic in a sample says nothing either way). The verdict is inconclusive when no check failed
 * beyond tolerance and some check could not judge.
 */
export function judgeSample(
  decisions: readonly Decision[],
  streaks: FailureStreaks,
  rules: AnalysisSpec,
): SampleVerdict {
  const next = new Map(Object.entries(streaks));
  const failed: Decision[] = [];
  const tolerated: Decision[] = [];
  for (const d of decisions) {
    if (d.outcome === 'pass') next.set(d.check, 0);
    if (d.outcome !== 'fail') continue;
    const streak = (next.get(d.check) ?? 0) + 1;
    next.set(d.check, streak);
    if (streak > failureLimitOf(rules, d.check)) failed.push(d);
    else tolerated.push(d);
  }
  const outcome =
    failed.length > 0 ? 'fail' : decisions.some((d) => d.outcome === 'inconclusive') ? 'inconclusive' : 'pass';
  return { outcome, failed, tolerated, streaks: Object.fromEntries(next) };
}
