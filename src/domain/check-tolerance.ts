import type { AnalysisSpec, ShadowCompare } from '../shared/spec';
import type { Decision } from '../shared/status';
import type { BUILTIN_CHECKS } from '../shared/analysis';

// Workflow-safe (no Node modules): the lifecycle workflow folds each sample's decisions with these.

/** A stage's rules: the shadow stage's also carry its comparison (`rollout.shadow.compare`). */
export type AnalysisRules = AnalysisSpec & { shadowCompare?: ShadowCompare };

/** The built-in checks a stage runs, by the name its decisions carry. */
export type CheckName = (typeof BUILTIN_CHECKS)[number];

interface Tolerance {
  failureLimit?: number;
  consecutiveFailureLimit?: number;
  inconclusiveLimit?: number;
  consecutiveErrorLimit?: number;
  dryRun?: boolean;
  minSamples?: number;
}

/**
 * The rule block a check takes its tolerance from (the latency ratio shares the latency block, the comparison of
 * error rates the error rate's); a metric check's own.
 */
function toleranceOf(rules: AnalysisRules, check: string): Tolerance | undefined {
  switch (check) {
    case 'shadowAgreement':
    case 'shadowScoreDiff':
      return rules.shadowCompare;
    case 'outage':
      return rules.outage;
    case 'errorRate':
    case 'errorRateVsStable':
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
      return (rules.metrics ?? []).find((m) => m.name === check);
  }
}

/** Whether a check is a dry run: measured and recorded, never enforced. */
export function dryRunOf(rules: AnalysisRules, check: string): boolean {
  return toleranceOf(rules, check)?.dryRun === true;
}

/** The fewest samples a check judges on: its own `minSamples`, else the analysis-wide one. */
export function minSamplesOf(rules: AnalysisRules, check: string): number {
  return toleranceOf(rules, check)?.minSamples ?? rules.minSamples;
}

/** The most samples any check needs: what a readout waits for before it judges. */
export function requiredSamples(rules: AnalysisRules): number {
  const checks: CheckName[] = ['errorRate', 'latencyP99Ms', 'predictionDrift', 'featureSkew', 'inputQuality'];
  return Math.max(rules.minSamples, ...checks.map((c) => minSamplesOf(rules, c)));
}

/** How many failed samples in a row a check tolerates before the stage fails. */
export function failureLimitOf(rules: AnalysisRules, check: string): number {
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
  rules: AnalysisRules,
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

/** What a stage has seen of one check so far (Argo Rollouts' measurement counts). */
/**
 * A bake sample's verdict on its window: the whole readout when it is `complete` (every check it waits for had enough
 * traffic) or fails anyway; otherwise the outage check alone, judged on the interval, while the window keeps growing
 * into the next interval. `advance`: the next window starts after this sample.
 */
export function judgeWindow(
  decisions: readonly Decision[],
  complete: boolean,
  streaks: FailureStreaks,
  rules: AnalysisRules,
): { verdict: SampleVerdict; advance: boolean } {
  const whole = judgeSample(decisions, streaks, rules);
  if (complete || whole.outcome === 'fail') return { verdict: whole, advance: true };
  return {
    verdict: judgeSample(
      decisions.filter((d) => d.check === 'outage'),
      streaks,
      rules,
    ),
    advance: false,
  };
}

/** What a judged sample leaves on record: its failures, tolerated or not, with its number (a pass leaves none). */
export function sampleEvidence(verdict: SampleVerdict, sample: number): Decision[] {
  return [...verdict.tolerated, ...verdict.failed].map((d) => ({
    ...d,
    sample,
    ...(verdict.tolerated.includes(d) ? { tolerated: true } : {}),
  }));
}

export interface CheckCounts {
  failed: number;
  consecutiveFailed: number;
  inconclusive: number;
  consecutiveErrors: number;
}
/** Per check, by name; carried from one sample of a stage to the next. */
export type CheckLedger = Record<string, CheckCounts>;

export interface LedgerVerdict {
  /**
   * `fail` once a check is past a limit: more failed samples than `failureLimit` in all, more than
   * `consecutiveFailureLimit` in a row, or more provider errors in a row than `consecutiveErrorLimit`; `inconclusive`
   * once a check has more inconclusive samples than its `inconclusiveLimit`, or (`final`) some check could not judge;
   * `retry` when only provider errors within their limit stand in the way (measure again).
   */
  outcome: 'pass' | 'fail' | 'inconclusive' | 'retry';
  /** The decisions that stop the rollout. */
  failed: Decision[];
  /** Failed or errored decisions within their check's limits. */
  tolerated: Decision[];
  /** Dry-run checks that failed or errored: recorded and alerted on, never enforced. */
  dryRunFailed: Decision[];
  ledger: CheckLedger;
}

const EMPTY: CheckCounts = { failed: 0, consecutiveFailed: 0, inconclusive: 0, consecutiveErrors: 0 };

/**
 * Folds one sample's decisions into the checks' counts, Argo Rollouts' way. A pass resets the check's runs of
 * failures and errors; a failure adds to its total and its run; an error (a metric provider that could not measure)
 * adds to its run of errors only; an inconclusive sample adds to its inconclusive count (a built-in check short of
 * traffic counts only in the final readout: its window grows into the next sample instead). `final` marks the
 * readout at the end of a bake, where an inconclusive check holds the rollout.
 */
export function foldSample(
  decisions: readonly Decision[],
  ledger: CheckLedger,
  rules: AnalysisRules,
  final: boolean,
): LedgerVerdict {
  const next = new Map(Object.entries(ledger).map(([k, v]) => [k, { ...v }]));
  const failed: Decision[] = [];
  const tolerated: Decision[] = [];
  const dryRunFailed: Decision[] = [];
  let inconclusive = false;
  let retry = false;
  for (const d of decisions) {
    const limits = toleranceOf(rules, d.check) ?? {};
    const dryRun = limits.dryRun === true || d.dryRun === true;
    const c = next.get(d.check) ?? { ...EMPTY };
    next.set(d.check, c);
    if (d.outcome === 'pass') {
      c.consecutiveFailed = 0;
      c.consecutiveErrors = 0;
      continue;
    }
    if (d.outcome === 'error') {
      c.consecutiveErrors++;
      const limit = limits.consecutiveErrorLimit ?? 4;
      if (dryRun) dryRunFailed.push(d);
      else if (c.consecutiveErrors > limit) failed.push(d);
      else {
        tolerated.push(d);
        if (final) retry = true;
      }
      continue;
    }
    c.consecutiveErrors = 0;
    if (d.outcome === 'inconclusive') {
      if (!final && d.provider === undefined) continue;
      c.inconclusive++;
      if (dryRun) continue;
      if (final || (limits.inconclusiveLimit !== undefined && c.inconclusive > limits.inconclusiveLimit))
        inconclusive = true;
      continue;
    }
    c.failed++;
    c.consecutiveFailed++;
    if (dryRun) {
      dryRunFailed.push(d);
      continue;
    }
    const overTotal = c.failed > (limits.failureLimit ?? 0);
    const overRun =
      limits.consecutiveFailureLimit !== undefined && c.consecutiveFailed > limits.consecutiveFailureLimit;
    if (overTotal || overRun) failed.push(d);
    else tolerated.push(d);
  }
  const outcome = failed.length > 0 ? 'fail' : inconclusive ? 'inconclusive' : retry ? 'retry' : 'pass';
  return { outcome, failed, tolerated, dryRunFailed, ledger: Object.fromEntries(next) };
}

/** How a check stands against its limits, for events and `mlctl status`: `2/3 failed, 1 in a row`. */
export function describeCounts(rules: AnalysisRules, check: string, c: CheckCounts): string {
  const limits = toleranceOf(rules, check) ?? {};
  return (
    `${c.failed} failed of ${(limits.failureLimit ?? 0) + 1} allowed to stop` +
    (c.consecutiveErrors > 0
      ? `, ${c.consecutiveErrors} errors in a row (limit ${limits.consecutiveErrorLimit ?? 4})`
      : '')
  );
}
