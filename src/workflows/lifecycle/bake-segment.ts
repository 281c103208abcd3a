import { ApplicationFailure, sleep, workflowInfo } from '@temporalio/workflow';
import { z } from 'zod';
import { dryRunOf, foldSample, type AnalysisRules, type CheckLedger } from '../../domain/check-tolerance';
import { formatDurationMs } from '../../shared/duration';
import { ErrorType } from '../../shared/errors';
import { describeIssues } from '../../shared/spec';
import type { Decision } from '../../shared/status';
import type { ModelTelemetry } from '../../shared/telemetry';
import type { AnalyzeStageInput } from '../../activities/gateway';
import { setLogContext } from '../log-context';
import { analysis, ANALYSIS_OPTIONS, control } from './context';
import { keepMeasurements, type Measurements } from './state';

/**
 * A long bake in segments. Each sample of a bake is an analysis activity with two telemetry snapshots in its input and
 * one in its result, so a 24-hour bake sampled every minute would put 1,440 of them (about 16,000 events and 17 MiB)
 * into the lifecycle's history. A bake with more than MAX_SAMPLES_PER_BAKE samples at its interval runs its samples in
 * child workflows instead, up to SEGMENT_SAMPLES each: the lifecycle's history grows by one child per segment, and each
 * child's history stays about the size of a bake of SEGMENT_SAMPLES samples. A segment ends early at any sample the
 * lifecycle must act on (a failure, a tolerated one, a first dry-run failure, an inconclusive hold), so that it acts
 * within the same interval as before; passing samples leave only their measurements.
 */
export const SEGMENT_SAMPLES = 60;

/** What every analysis of the stage is asked, apart from the window and whether it waits for samples. */
export type AnalysisFrame = Omit<AnalyzeStageInput, 'before' | 'recentSince'>;

/** Where a bake's sampling stands: the window being judged, where the last interval began, and the check ledger. */
export interface SampleState {
  windowStart: ModelTelemetry;
  /** Null while it is `windowStart` itself. */
  lastSample: ModelTelemetry | null;
  ledger: CheckLedger;
}

/** One sample: the decisions it was judged on, and its verdict against the ledger before it. */
export interface SampleOutcome {
  decisions: Decision[];
  verdict: ReturnType<typeof foldSample>;
}

/** The analysis of the window since `from`; `waitForSamples` false for samples (only the readout waits). */
export function analyze(
  frame: AnalysisFrame,
  from: ModelTelemetry,
  waitForSamples: boolean,
  recentSince?: ModelTelemetry | null,
  sample?: number,
) {
  return analysis.analyzeStage.executeWithOptions(
    {
      ...ANALYSIS_OPTIONS,
      summary:
        `${frame.stage} ${sample === undefined ? 'readout' : `sample ${sample}`} of ${frame.candidate}` +
        (frame.stable ? ` against ${frame.stable}` : ''),
    },
    [
      {
        ...frame,
        before: from,
        ...(recentSince && recentSince !== from ? { recentSince } : {}),
        rules: waitForSamples ? frame.rules : { ...frame.rules, maxWaitForSamples: 0 },
      },
    ],
  );
}

/**
 * Takes one sample of a bake with Argo Rollouts' check semantics and moves `state` on. A sample in which some built-in
 * check had too little traffic to judge is not over yet: its window keeps growing into the next interval (so a
 * low-traffic canary is still judged, on longer windows), and only the outage check, judged on the interval alone, and
 * the metric checks count now. A breach beyond tolerance stops the rollout either way.
 */
export async function takeSample(frame: AnalysisFrame, state: SampleState, sample: number): Promise<SampleOutcome> {
  const rules = frame.rules;
  const result = await analyze(frame, state.windowStart, false, state.lastSample, sample);
  const snapshot = result.telemetry ?? (await control.readTelemetry({ model: frame.model, target: frame.target }));
  state.lastSample = snapshot;
  const complete = !result.decisions.some(
    (d) => d.outcome === 'inconclusive' && d.check !== 'outage' && d.provider === undefined,
  );
  let decisions = result.decisions;
  let verdict = foldSample(decisions, state.ledger, rules, false);
  if (complete || verdict.outcome === 'fail') {
    state.windowStart = snapshot;
    state.lastSample = null;
  } else {
    decisions = result.decisions.filter((d) => d.check === 'outage' || d.provider !== undefined);
    verdict = foldSample(decisions, state.ledger, rules, false);
  }
  state.ledger = verdict.ledger;
  return { decisions, verdict };
}

/** A sample the lifecycle must act on, not only keep the measurements of. */
export function needsAction(outcome: SampleOutcome, alertedDryRun: ReadonlySet<string>): boolean {
  const v = outcome.verdict;
  return v.outcome !== 'pass' || v.tolerated.length > 0 || v.dryRunFailed.some((d) => !alertedDryRun.has(d.check));
}

/** A sample's decisions as its measurements keep them. */
export function tagged(rules: AnalysisRules, decisions: readonly Decision[], sample: number): Decision[] {
  return decisions.map((d) => ({ ...d, sample, ...(dryRunOf(rules, d.check) ? { dryRun: true } : {}) }));
}

export interface BakeSegmentInput {
  frame: AnalysisFrame;
  state: SampleState;
  /** The first sample's number in the bake. */
  firstSample: number;
  /** Samples at most in this segment. */
  samples: number;
  interval: number;
  /** When the bake ends (epoch ms): no sample is begun within an interval of it. */
  endMs: number;
  /** Dry-run checks already alerted in the stage: their further failures need no action. */
  alertedDryRun: string[];
  /** The stage's measurement retention (spec `rollout.analysis.measurementRetention`). */
  keep: number;
}

export interface BakeSegmentResult {
  /** Where the windows stand after the segment's last sample. */
  windowStart: ModelTelemetry;
  lastSample: ModelTelemetry | null;
  /** The ledger before `last`: the lifecycle folds `last` again from it, to act on its verdict. */
  ledgerBefore: CheckLedger;
  /** The last sample taken, if any: the one that needs action, or simply the last of the segment. */
  last: { sample: number; decisions: Decision[] } | null;
  /** The measurements the samples before `last` leave, tagged, in sample order (the retention applied). */
  measured: Decision[];
  /** Failures of dry-run checks already alerted, from the samples before `last` (kept as decisions). */
  dryRunFailed: Decision[];
}

/**
 * A segment of a long bake (see SEGMENT_SAMPLES): samples every `interval` until the segment's samples are taken, the
 * bake's end is within an interval, or a sample needs the lifecycle's action. The lifecycle cancels it when the bake is
 * interrupted (an abort, a granted promote-now).
 */
export async function bakeSegmentWorkflow(input: BakeSegmentInput): Promise<BakeSegmentResult> {
  checkSegment(input);
  const { frame, interval } = input;
  setLogContext({ model: frame.model, version: frame.candidate, stage: frame.stage });
  const alerted = new Set(input.alertedDryRun);
  const state: SampleState = { ...input.state };
  const measurements: Measurements = new Map();
  const dryRunFailed: Decision[] = [];
  let last: { sample: number; outcome: SampleOutcome } | null = null;
  let ledgerBefore = state.ledger;
  for (let i = 0, sample = input.firstSample; i < input.samples && input.endMs - Date.now() > interval; i++, sample++) {
    if (last) {
      // The sample before needed no action: only its measurements and its (already alerted) dry-run failures stay.
      keepMeasurements(measurements, tagged(frame.rules, last.outcome.decisions, last.sample), input.keep);
      dryRunFailed.push(...tagged(frame.rules, last.outcome.verdict.dryRunFailed, last.sample));
    }
    await sleep(interval, { summary: `${frame.stage} sample ${sample} in ${formatDurationMs(interval)}` });
    ledgerBefore = state.ledger;
    last = { sample, outcome: await takeSample(frame, state, sample) };
    if (needsAction(last.outcome, alerted)) break;
  }
  const measured = [...measurements.values()]
    .flatMap((m) => [...m.passed, ...m.failed])
    .sort((a, b) => (a.sample ?? 0) - (b.sample ?? 0));
  return {
    windowStart: state.windowStart,
    lastSample: state.lastSample,
    ledgerBefore,
    last: last ? { sample: last.sample, decisions: last.outcome.decisions } : null,
    measured,
    dryRunFailed,
  };
}

/** What a segment's pacing may be: the lifecycle's spec bounds the interval and the retention the same way. */
const SegmentPacing = z.object({
  firstSample: z.number().int().min(1),
  samples: z.number().int().min(1).max(SEGMENT_SAMPLES),
  interval: z.number().int().min(1000),
  endMs: z.number().finite(),
  keep: z.number().int().min(1).max(100),
  alertedDryRun: z.array(z.string()).max(1000),
});

/**
 * A segment runs only as the child of a lifecycle, which validated its spec and the target the analyses read:
 * started any other way (anyone with access may start any registered workflow type), it is refused before it reads
 * anything, as are pacing values no spec can give.
 */
function checkSegment(input: BakeSegmentInput): void {
  const { parent, workflowId } = workflowInfo();
  const refuse = (message: string) =>
    ApplicationFailure.create({
      type: ErrorType.InvalidInput,
      message: `bake segment: ${message}`,
      nonRetryable: true,
    });
  if (!parent || !parent.workflowId.startsWith('lifecycle-') || !workflowId.startsWith(`${parent.workflowId}/`)) {
    throw refuse('runs only as a child of a model lifecycle workflow');
  }
  const pacing = SegmentPacing.safeParse(input);
  if (!pacing.success) throw refuse(`invalid input: ${describeIssues(pacing.error).join('; ')}`);
}

/** The child workflow id of a bake segment: unique per lifecycle run, stage and first sample. */
export function segmentWorkflowId(stage: string, firstSample: number): string {
  const { workflowId, runId } = workflowInfo();
  return `${workflowId}/${runId.slice(0, 8)}/bake/${stage.replace(/[^A-Za-z0-9_.-]+/g, '-')}/${firstSample}`;
}
