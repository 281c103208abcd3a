import {
  LATENCY_BUCKETS_MS,
  PREDICTION_BINS,
  type ModelTelemetry,
  type ShadowTelemetry,
  type VersionTelemetry,
} from '../shared/telemetry';
import { chiSquaredSurvival, populationStabilityIndex } from '../drift/stats';
import type { DataProfile } from '../drift/profile';
import { compareSketch, sketchRestarted, sketchWindow } from '../drift/sketch';
import type { DataSketch } from '../shared/drift';
import { qualityRestarted, qualityWindow, type QualityCounters } from '../shared/quality';
import type { DriftReport } from '../drift/compare';
import type { AnalysisSpec, ShadowCompare } from '../shared/spec';
import type { Decision } from '../shared/status';
import { minSamplesOf, type AnalysisRules, type CheckName } from './check-tolerance';
import { own } from '../shared/own';
import { DEFAULT_TASK, type Task } from '../shared/task';
import { type AccuracyCalibration, estimateAccuracy } from './performance-estimation';
import { binnedKolmogorovSmirnov, comparePredictions, describeDrift, drifted } from './prediction-drift';

export { failureLimitOf, judgeSample, minSamplesOf, requiredSamples } from './check-tolerance';

/** Counters of one version over a window: the difference of two cumulative snapshots (see {@link windowOf}). */
export interface WindowTelemetry {
  /** The window's input sketch on the training profile's bins, when the version counts its inputs. */
  inputs?: DataSketch;
  requests: number;
  errors: number;
  invalidRequests: number;
  latencyBucketCounts: number[];
  predictionBinCounts: number[];
  /** Multiclass: the window's predictions per class. */
  classCounts?: number[];
  /** Successful prediction requests (a batch once): the latency checks' sample. */
  successes: number;
  /** Successful rows (the prediction bins' total): the prediction drift check's sample. */
  predictedRows: number;
  /** The window's quality counters, when the later snapshot has them (labels arrived for the version). */
  quality?: QualityCounters;
}

const EMPTY_LATENCY = () => new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
const EMPTY_BINS = () => new Array<number>(PREDICTION_BINS).fill(0);

const countsDecreased = (after: readonly number[], before: readonly number[]) =>
  before.some((b, i) => (after[i] ?? 0) < b);

/**
 * Whether `after`'s counters started again from zero since `before` was taken (a gateway restart, an undeploy and
 * redeploy of the version), so that `after` minus `before` means nothing. True when
 *
 * - their epochs differ, one of them having none included (the gateway gives every new set of counters a new epoch,
 *   and one that sends none is another gateway process); or
 * - any cumulative counter of `after` is below `before`'s (a target that sends no epoch): requests, errors, invalid
 *   requests, positive predictions, a latency bucket, a prediction bin, the input sketch's counters
 *   (`sketchRestarted`) or the quality counters (`qualityRestarted`), each when both snapshots have it.
 */
export function countersRestarted(after: VersionTelemetry, before: VersionTelemetry): boolean {
  if (after.epoch !== before.epoch) return true;
  return (
    after.requests < before.requests ||
    after.errors < before.errors ||
    after.invalidRequests < before.invalidRequests ||
    after.positiveCount < before.positiveCount ||
    countsDecreased(after.latencyBucketCounts, before.latencyBucketCounts) ||
    countsDecreased(after.predictionBinCounts, before.predictionBinCounts) ||
    countsDecreased(after.classCounts ?? [], before.classCounts ?? []) ||
    (after.inputs !== undefined && before.inputs !== undefined && sketchRestarted(after.inputs, before.inputs)) ||
    (after.quality !== undefined && before.quality !== undefined && qualityRestarted(after.quality, before.quality))
  );
}

/**
 * The version's counters between two cumulative snapshots: `after - before`, counter by counter. `before` may be
 * missing (version deployed after the window started); when the counters restarted in between
 * ({@link countersRestarted}) it is ignored too, and the window is `after` whole: the traffic since the restart.
 * Every part follows that one decision (the input sketch and quality included), and no count is ever clamped.
 */
export function windowOf(after: VersionTelemetry | undefined, before: VersionTelemetry | undefined): WindowTelemetry {
  const base = after && before && !countersRestarted(after, before) ? before : undefined;
  const sub = (a: readonly number[] | undefined, b: readonly number[] | undefined, empty: number[]) =>
    empty.map((_, i) => (a?.[i] ?? 0) - (b?.[i] ?? 0));
  const latencyBucketCounts = sub(after?.latencyBucketCounts, base?.latencyBucketCounts, EMPTY_LATENCY());
  const predictionBinCounts = sub(after?.predictionBinCounts, base?.predictionBinCounts, EMPTY_BINS());
  const classes = after?.classCounts?.length ?? 0;
  return {
    ...(after?.inputs ? { inputs: sketchWindow(after.inputs, base?.inputs) } : {}),
    requests: (after?.requests ?? 0) - (base?.requests ?? 0),
    errors: (after?.errors ?? 0) - (base?.errors ?? 0),
    invalidRequests: (after?.invalidRequests ?? 0) - (base?.invalidRequests ?? 0),
    latencyBucketCounts,
    predictionBinCounts,
    ...(classes > 0
      ? { classCounts: sub(after?.classCounts, base?.classCounts, new Array<number>(classes).fill(0)) }
      : {}),
    successes: latencyBucketCounts.reduce((a, b) => a + b, 0),
    predictedRows: predictionBinCounts.reduce((a, b) => a + b, 0),
    ...(after?.quality ? { quality: qualityWindow(after.quality, base?.quality) } : {}),
  };
}

/**
 * The q-quantile of a bucketed latency histogram, interpolated linearly inside the bucket that holds it (the
 * Prometheus `histogram_quantile` rule). The overflow bucket reports its lower bound. Null when empty.
 */
export function quantileFromBuckets(counts: readonly number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let cumulative = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i] ?? 0;
    if (cumulative + c >= rank && c > 0) {
      const lower = i === 0 ? 0 : LATENCY_BUCKETS_MS[i - 1]!;
      const upper = LATENCY_BUCKETS_MS[i];
      if (upper === undefined) return lower;
      return lower + ((upper - lower) * (rank - cumulative)) / c;
    }
    cumulative += c;
  }
  return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1]!;
}

export { populationStabilityIndex };
export { binnedKolmogorovSmirnov };

export interface StageAnalysisInput {
  stage: string;
  at: string;
  candidate: WindowTelemetry;
  /** Null on a first deployment: there is no stable version, and the relative checks are skipped. */
  stable: WindowTelemetry | null;
  rules: AnalysisSpec;
  /**
   * The candidate's input window judged against its training profile, every feature by PSI on the profile's bins
   * (absent when the artifact has no profile, or the gateway no input sketch).
   */
  inputSkew?: DriftReport;
  /** The candidate's training profile: the missing-value shares its inputs are held to. */
  profile?: DataProfile;
  /** What the model predicts (default binary classification): how prediction drift is measured. */
  task?: Task;
  /**
   * A classifier candidate's accuracy calibration from validation: the stage then records the accuracy estimated
   * from its prediction bins (CBPE), beside the realised accuracy when labels arrived. Recorded, never enforced.
   */
  calibration?: AccuracyCalibration;
  /**
   * The candidate's most recent traffic, when `candidate` is a longer window: the outage check is about now (about the
   * whole window when nothing was routed to the candidate lately).
   */
  recent?: WindowTelemetry;
}

export interface StageAnalysis {
  outcome: 'pass' | 'fail' | 'inconclusive';
  decisions: Decision[];
  /** The snapshot the readout judged: where the next sample's window starts. */
  telemetry?: ModelTelemetry;
}

const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;

/**
 * Judges one stage from the candidate's (and stable's) window. Every check records its value, threshold, rule and
 * sample size. A check without enough samples is inconclusive; any failed check fails the stage.
 */
export function evaluateStage(input: StageAnalysisInput): StageAnalysis {
  const { candidate, stable, rules, stage, at } = input;
  const decisions: Decision[] = [];
  const min = (check: CheckName) => minSamplesOf(rules, check);
  const push = (d: Omit<Decision, 'stage' | 'at'>) => decisions.push({ stage, at, ...d });

  // Outage: the candidate was routed traffic but answered none of it (lately, when a recent window is given). A recent
  // window nothing was routed to says nothing about now (a readout taken moments after the last sample, as after a
  // worker restart): the whole window is judged then, or the stage would hold as inconclusive with plenty of traffic.
  const latest = input.recent && input.recent.requests > 0 ? input.recent : candidate;
  const outage = latest.requests > 0 && latest.successes === 0;
  push({
    check: 'outage',
    value: latest.successes,
    threshold: 1,
    outcome: latest.requests === 0 ? 'inconclusive' : outage ? 'fail' : 'pass',
    rule: 'successful predictions >= 1 when routed traffic',
    sampleSize: latest.requests,
  });

  const enough = candidate.requests >= min('errorRate');
  const errorRate = candidate.requests > 0 ? candidate.errors / candidate.requests : 0;
  push({
    check: 'errorRate',
    value: round(errorRate),
    threshold: rules.errorRate.max,
    outcome: !enough ? 'inconclusive' : errorRate > rules.errorRate.max ? 'fail' : 'pass',
    rule: `errors / requests <= ${rules.errorRate.max}`,
    sampleSize: candidate.requests,
  });

  const vsStable = rules.errorRate.vsStable ?? false;
  if (stable !== null && vsStable !== false) {
    const test = errorRateTest(candidate.errors, candidate.requests, stable.errors, stable.requests);
    const stableRate = stable.requests > 0 ? stable.errors / stable.requests : 0;
    const difference = errorRate - stableRate;
    push({
      check: 'errorRateVsStable',
      value: round(difference),
      threshold: vsStable.minDifference,
      outcome:
        !enough || stable.requests < min('errorRate')
          ? 'inconclusive'
          : difference > vsStable.minDifference && test.pValue < vsStable.alpha
            ? 'fail'
            : 'pass',
      rule:
        `candidate error rate − stable's <= ${vsStable.minDifference}, unless the two-proportion test's ` +
        `p-value >= ${vsStable.alpha}`,
      sampleSize: Math.min(candidate.requests, stable.requests),
      detail:
        `candidate ${candidate.errors}/${candidate.requests} (${round(errorRate * 100, 2)}%), stable ` +
        `${stable.errors}/${stable.requests} (${round(stableRate * 100, 2)}%), z=${round(test.z, 2)}, ` +
        `p=${test.pValue.toPrecision(3)}`,
    });
  }

  const enoughSuccesses = candidate.successes >= min('latencyP99Ms');
  const p99 = quantileFromBuckets(candidate.latencyBucketCounts, 0.99);
  push({
    check: 'latencyP99Ms',
    value: p99 === null ? null : round(p99, 2),
    threshold: rules.latencyP99Ms.max,
    outcome: !enoughSuccesses || p99 === null ? 'inconclusive' : p99 > rules.latencyP99Ms.max ? 'fail' : 'pass',
    rule: `p99 latency <= ${rules.latencyP99Ms.max} ms`,
    sampleSize: candidate.successes,
  });

  if (stable !== null) {
    const stableEnough = stable.successes >= min('latencyP99Ms');
    const ratioLimit = rules.latencyP99Ms.maxRatioToStable;
    if (ratioLimit !== undefined) {
      const stableP99 = quantileFromBuckets(stable.latencyBucketCounts, 0.99);
      // The floor keeps millisecond noise on a fast stable version from reading as a large ratio.
      const floor = rules.latencyP99Ms.ratioFloorMs ?? 1;
      const ratio = p99 === null || stableP99 === null ? null : p99 / Math.max(stableP99, floor);
      push({
        check: 'latencyP99RatioToStable',
        value: ratio === null ? null : round(ratio, 3),
        threshold: ratioLimit,
        outcome:
          !enoughSuccesses || !stableEnough || ratio === null ? 'inconclusive' : ratio > ratioLimit ? 'fail' : 'pass',
        rule: `candidate p99 / max(stable p99, ${floor} ms) <= ${ratioLimit}`,
        sampleSize: Math.min(candidate.successes, stable.successes),
        detail: stableP99 === null ? undefined : `stable p99 ${round(stableP99, 2)} ms`,
      });
    }
    // PSI measures how far the distributions moved; the test's p-value says whether a small sample can tell. Both
    // must agree before a rollout is stopped, so sampling noise in a 5% canary does not read as drift.
    const { maxPsi, alpha } = rules.predictionDrift;
    const drift = comparePredictions(input.task ?? DEFAULT_TASK, stable, candidate);
    const driftSamples = min('predictionDrift');
    push({
      check: 'predictionDrift',
      value: round(drift.psi),
      threshold: maxPsi,
      outcome:
        candidate.predictedRows < driftSamples || stable.predictedRows < driftSamples
          ? 'inconclusive'
          : drifted(drift, { maxPsi, alpha })
            ? 'fail'
            : 'pass',
      rule: `PSI(candidate vs stable predictions) <= ${maxPsi}, unless ${drift.test === 'ks' ? 'KS' : 'chi-squared'} p-value >= ${alpha}`,
      sampleSize: Math.min(candidate.predictedRows, stable.predictedRows),
      detail: describeDrift(drift, { current: 'candidate', reference: 'stable' }),
    });
  }

  if (input.calibration) push(estimatedAccuracyDecision(candidate, input.calibration));
  push(inputQualityDecision(candidate, input.profile ?? null, rules, min('inputQuality')));
  if (input.inputSkew) push(featureSkewDecision(input.inputSkew, rules, min('featureSkew')));

  const outcome = decisions.some((d) => d.outcome === 'fail')
    ? 'fail'
    : decisions.some((d) => d.outcome === 'inconclusive')
      ? 'inconclusive'
      : 'pass';
  return { outcome, decisions };
}

/**
 * One-sided two-proportion z-test (pooled) that the candidate's error rate is above stable's: z and P(Z >= z). With
 * no errors on either side there is nothing to tell apart: z = 0, p = 1.
 */
export function errorRateTest(
  candidateErrors: number,
  candidateRequests: number,
  stableErrors: number,
  stableRequests: number,
): { z: number; pValue: number } {
  if (candidateRequests === 0 || stableRequests === 0) return { z: 0, pValue: 1 };
  const pooled = (candidateErrors + stableErrors) / (candidateRequests + stableRequests);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / candidateRequests + 1 / stableRequests));
  if (se === 0) return { z: 0, pValue: 1 };
  const z = (candidateErrors / candidateRequests - stableErrors / stableRequests) / se;
  // P(|Z| >= |z|) is the chi-squared survival of z² with one degree of freedom; one side is half of it.
  const twoSided = chiSquaredSurvival(z * z, 1);
  return { z, pValue: z > 0 ? twoSided / 2 : 1 - twoSided / 2 };
}

/**
 * The accuracy of the candidate's window estimated from its prediction bins with the validation calibration (CBPE,
 * src/domain/performance-estimation.ts), and the realised accuracy beside it when labels arrived: evidence for the
 * approvers and the audit, recorded as a pass whatever its value (what an estimate may stop is the serving monitor's
 * `minEstimatedAccuracy`).
 */
function estimatedAccuracyDecision(
  candidate: WindowTelemetry,
  calibration: AccuracyCalibration,
): Omit<Decision, 'stage' | 'at'> {
  const estimate = estimateAccuracy(calibration, candidate.predictionBinCounts);
  const quality = candidate.quality;
  const realised =
    quality && quality.labeled > 0
      ? `realised accuracy ${round(quality.correct / quality.labeled)} on ${quality.labeled} labels`
      : 'no labels yet';
  const error =
    estimate.standardError === null
      ? ''
      : `± ${round(Math.hypot(estimate.standardError, estimate.calibrationError ?? 0))} (one standard error); `;
  return {
    check: 'estimatedAccuracy',
    value: estimate.estimate === null ? null : round(estimate.estimate),
    threshold: null,
    outcome: 'pass',
    rule: 'accuracy estimated from the prediction bins, calibrated at validation (CBPE); recorded, not enforced',
    sampleSize: estimate.rows,
    detail: `${error}${realised}`,
  };
}

/**
 * Missing or corrupt inputs: the share of the candidate's requests refused as invalid input, and per feature the rise
 * of missing, wrong-type and non-finite values in its inputs over the training data's share. The larger is the value.
 */
function inputQualityDecision(
  candidate: WindowTelemetry,
  profile: DataProfile | null,
  rules: AnalysisSpec,
  minSamples: number,
): Omit<Decision, 'stage' | 'at'> {
  const { maxRate } = rules.inputQuality ?? DEFAULT_INPUT_QUALITY;
  const offered = candidate.requests + candidate.invalidRequests;
  const invalidRate = offered > 0 ? candidate.invalidRequests / offered : 0;
  let worst: { name: string; rise: number; share: number } | null = null;
  const sketch = candidate.inputs;
  if (sketch && profile) {
    for (const f of profile.features) {
      const s = own(sketch.features, f.name);
      if (f.role !== 'feature' || !s || s.rows === 0) continue;
      const bad = s.missing + s.wrongType + (s.type === 'numeric' ? s.nan + s.posInf + s.negInf : 0);
      const share = bad / s.rows;
      const trained = f.rows > 0 ? (f.rows - f.count) / f.rows : 0;
      const rise = share - trained;
      if (!worst || rise > worst.rise) worst = { name: f.name, rise, share };
    }
  }
  const value = Math.max(invalidRate, worst?.rise ?? 0);
  return {
    check: 'inputQuality',
    value: round(value),
    threshold: maxRate,
    outcome: offered < minSamples ? 'inconclusive' : value > maxRate ? 'fail' : 'pass',
    rule: `invalid requests / requests <= ${maxRate}, and per feature missing or corrupt share <= training + ${maxRate}`,
    sampleSize: offered,
    detail:
      `${candidate.invalidRequests} of ${offered} requests refused as invalid (${round(invalidRate * 100, 2)}%)` +
      (worst
        ? `; most missing or corrupt: ${worst.name} ${round(worst.share * 100, 2)}% (${round((worst.share - worst.rise) * 100, 2)}% in training)`
        : ''),
  };
}

/** Default of `rules.inputQuality` for specs written before it existed. */
const DEFAULT_INPUT_QUALITY = { maxRate: 0.05 };

/** A version's input window against its training profile, every feature by PSI at the rule's limit. */
export function inputSkew(profile: DataProfile, inputs: DataSketch, rules: AnalysisSpec): DriftReport {
  const { maxPsi } = rules.featureSkew ?? DEFAULT_FEATURE_SKEW;
  const features = Object.fromEntries(
    profile.features
      .filter((f) => f.role === 'feature')
      .map((f) => [f.name, { method: 'psi' as const, threshold: maxPsi }]),
  );
  return compareSketch(profile, inputs, { features });
}

/** Default of `rules.featureSkew` for specs written before it existed. */
export const DEFAULT_FEATURE_SKEW = { maxPsi: 0.5, alpha: 0.001 };

/**
 * Skew of the candidate's serving inputs against its training profile: a feature fails when its PSI exceeds `maxPsi`
 * and its test on the same bins (binned KS, or chi-squared for categories) is significant at `alpha` divided by the
 * number of features compared (Bonferroni) — large and real. Every feature of every stage is tested, so without the
 * correction a healthy rollout of a six-feature model would fail somewhere by chance; and a canary's window is small
 * (tens of requests, from a fixed cohort of sticky users), which is why the PSI limit is high: the training-serving
 * skew it is for (a unit or encoding changed) moves PSI far above it.
 */
function featureSkewDecision(
  report: DriftReport,
  rules: AnalysisSpec,
  minSamples: number,
): Omit<Decision, 'stage' | 'at'> {
  const { maxPsi, alpha } = rules.featureSkew ?? DEFAULT_FEATURE_SKEW;
  const compared = report.features.filter((f) => !f.skipped && f.role === 'feature');
  const pOf = (f: (typeof compared)[number]) => f.statistics.ksPValue ?? f.statistics.chisquarePValue ?? 1;
  const level = alpha / Math.max(1, compared.length);
  const failing = compared.filter((f) => (f.statistics.psi ?? 0) > maxPsi && pOf(f) < level);
  const worst = [...compared].sort((a, b) => (b.statistics.psi ?? 0) - (a.statistics.psi ?? 0));
  const samples = report.current.rows;
  const describe = (f: (typeof compared)[number]) =>
    `${f.name} PSI=${round(f.statistics.psi ?? 0)} p=${pOf(f).toPrecision(3)}` +
    (f.moved[0]
      ? ` (${f.moved[0].what} ${round(f.moved[0].reference * 100, 1)}%→${round(f.moved[0].current * 100, 1)}%)`
      : '');
  return {
    check: 'featureSkew',
    value: worst[0] ? round(worst[0].statistics.psi ?? 0) : null,
    threshold: maxPsi,
    outcome: samples < minSamples || compared.length === 0 ? 'inconclusive' : failing.length > 0 ? 'fail' : 'pass',
    rule:
      `PSI(candidate inputs vs training profile) <= ${maxPsi} per feature, unless its test p-value >= ` +
      `${alpha} / ${compared.length} features`,
    sampleSize: samples,
    detail:
      (failing.length > 0
        ? `skewed: ${failing.map(describe).join('; ')}`
        : `largest: ${worst.slice(0, 2).map(describe).join('; ')}`) +
      (report.problems.length > 0 ? `; input problems: ${report.problems.map((p) => p.message).join('; ')}` : ''),
  };
}

/** The shadow stage's pairwise comparison over a window (src/shared/telemetry.ts `ShadowTelemetry`). */
export interface ShadowWindow {
  compared: number;
  agreed: number;
  scoreDiffSum: number;
  dropped: number;
}

/** The comparison part of a shadow window: `after − before`, or `after` whole when its counters restarted. */
export function shadowWindowOf(after: ShadowTelemetry | undefined, before: ShadowTelemetry | undefined): ShadowWindow {
  const base =
    after && before && !countersRestarted(after.candidate, before.candidate) && after.compared >= before.compared
      ? before
      : undefined;
  return {
    compared: (after?.compared ?? 0) - (base?.compared ?? 0),
    agreed: (after?.agreed ?? 0) - (base?.agreed ?? 0),
    scoreDiffSum: Math.max(0, (after?.scoreDiffSum ?? 0) - (base?.scoreDiffSum ?? 0)),
    dropped: (after?.dropped ?? 0) - (base?.dropped ?? 0),
  };
}

/** The default of `compare.maxScoreDiff` for classifiers (a regression's scores have the target's units: none). */
export const DEFAULT_MAX_SCORE_DIFF = 0.1;

/**
 * The shadow stage's own checks, on the rows both versions predicted: `shadowAgreement` (classifiers: the share of
 * rows with the same label) and `shadowScoreDiff` (the mean score difference), each inconclusive below its minimum
 * sample.
 */
export function shadowDecisions(input: {
  stage: string;
  at: string;
  task: Task;
  window: ShadowWindow;
  compare: ShadowCompare;
  rules: AnalysisRules;
}): Decision[] {
  const { stage, at, task, window, compare, rules } = input;
  const decisions: Decision[] = [];
  const detail = `${window.compared} rows compared${window.dropped > 0 ? `, ${window.dropped} copies dropped (too many in flight)` : ''}`;
  if (task !== 'regression') {
    const enough = window.compared >= minSamplesOf(rules, 'shadowAgreement');
    const agreement = window.compared > 0 ? window.agreed / window.compared : null;
    decisions.push({
      stage,
      at,
      check: 'shadowAgreement',
      value: agreement === null ? null : round(agreement),
      threshold: compare.minAgreement,
      outcome: !enough || agreement === null ? 'inconclusive' : agreement < compare.minAgreement ? 'fail' : 'pass',
      rule: `share of requests where candidate and stable predict the same label >= ${compare.minAgreement}`,
      sampleSize: window.compared,
      detail,
    });
  }
  const max = compare.maxScoreDiff ?? (task === 'regression' ? undefined : DEFAULT_MAX_SCORE_DIFF);
  if (max !== undefined) {
    const enough = window.compared >= minSamplesOf(rules, 'shadowScoreDiff');
    const mean = window.compared > 0 ? window.scoreDiffSum / window.compared : null;
    decisions.push({
      stage,
      at,
      check: 'shadowScoreDiff',
      value: mean === null ? null : round(mean),
      threshold: max,
      outcome: !enough || mean === null ? 'inconclusive' : mean > max ? 'fail' : 'pass',
      rule: `mean |candidate score − stable score| on the same requests <= ${max}`,
      sampleSize: window.compared,
      detail,
    });
  }
  return decisions;
}
