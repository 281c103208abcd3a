import {
  CancellationScope,
  condition,
  deprecatePatch,
  executeChild,
  isCancellation,
  patched,
  workflowInfo,
} from '@temporalio/workflow';
import {
  dryRunOf,
  foldSample,
  judgeSample,
  judgeWindow,
  sampleEvidence,
  type AnalysisRules,
  type FailureStreaks,
  type LedgerVerdict,
} from '../../domain/check-tolerance';
import { stageWeights, type RampStage } from '../../domain/ramp-plan';
import { formatDurationMs } from '../../shared/duration';
import { own } from '../../shared/own';
import { describeTrafficHolder, type PromotionRecord } from '../../shared/registry';
import type { PinRule } from '../../shared/gateway-api';
import type { ShadowCompare, StagingSpec } from '../../shared/spec';
import { Stage, type Decision } from '../../shared/status';
import type { ModelTelemetry } from '../../shared/telemetry';
import { control, describeFailures, type LifecycleContext, type RolloutStop, type Where } from './context';
import { CONTROL_OPTIONS } from '../activity-options';
import {
  analyze,
  bakeSegmentWorkflow,
  SEGMENT_SAMPLES,
  segmentWorkflowId,
  takeSample,
  type AnalysisFrame,
  type BakeSegmentInput,
  type BakeSegmentResult,
  type SampleState,
} from './bake-segment';
import { reserveServing } from './provision';
import { restoreTraffic } from './rollback';
import { gate } from './gate';
import { failureMessage } from '../failures';
import { LifecycleEndReason } from '../../shared/errors';

/** Samples of a bake at most; a longer bake samples less often than its `interval`. */
const MAX_SAMPLES_PER_BAKE = 120;
/**
 * How often a lifecycle waiting for its model's traffic asks again: soon at first, then less often (the holder may sit
 * at a ramp gate for hours, and each ask is an activity and a timer in history).
 */
const TRAFFIC_RETRY_FIRST_MS = 5_000;
const TRAFFIC_RETRY_MAX_MS = 5 * 60_000;

/**
 * Takes the model's traffic lease, waiting while another lifecycle or rollback of the model holds it, and pushes its
 * release on the stack. Then reads the stable version: whatever is production once this lifecycle is the model's
 * only traffic writer. Null when aborted while waiting; otherwise the production record (null: none yet).
 */
export async function takeTraffic(ctx: LifecycleContext): Promise<{ stable: PromotionRecord | null } | null> {
  const { spec, lc } = ctx;
  const { workflowId, runId } = workflowInfo();
  const holder = { workflowId, runId, kind: 'lifecycle' as const, what: `rollout of ${spec.version}` };
  let waitingFor = '';
  for (let attempt = 0; ; attempt++) {
    const r = await control.acquireTrafficLease({ model: spec.model, holder });
    if (r.granted) {
      if (r.replaced) lc.event(`took over the traffic of ${spec.model} from ${describeTrafficHolder(r.replaced)}`);
      break;
    }
    const who = describeTrafficHolder(r.heldBy);
    if (who !== waitingFor) {
      lc.event(`waiting for the traffic of ${spec.model}: held by ${who}`);
      ctx.details(`waiting for the traffic of ${spec.model} (held by ${r.heldBy.workflowId})`);
      waitingFor = who;
    }
    const wait = Math.min(TRAFFIC_RETRY_FIRST_MS * 2 ** attempt, TRAFFIC_RETRY_MAX_MS);
    const summary = `waiting for the traffic of ${spec.model}, held by ${r.heldBy.workflowId}`;
    if (await condition(() => lc.abort !== null, wait, { summary })) return null;
  }
  ctx.comp.push('release the traffic lease', () =>
    control.releaseTrafficLease({ model: spec.model, workflowId, runId }),
  );
  const production = await control.getProductionVersion({ model: spec.model });
  if ((production?.version ?? null) !== lc.stableVersion) {
    lc.event(
      `production is ${production?.version ?? 'none'} now, ${lc.stableVersion ?? 'none'} at validation: ` +
        `the rollout compares with ${production?.version ?? 'nothing'}`,
    );
  }
  lc.stableVersion = production?.version ?? null;
  return { stable: production };
}

/**
 * The candidate's serving lease, the stable version loaded (a gateway rebuilt from scratch has lost it) and the
 * candidate deployed at 0%, each undo pushed on the stack, with the one that matters most on top: traffic back on the
 * stable version, verified. Null when deployed; otherwise why the rollout stops.
 */
export async function deploy(ctx: LifecycleContext, production: PromotionRecord | null): Promise<RolloutStop | null> {
  const { spec, lc, prod } = ctx;
  const lease = ctx.servingLease(spec.version);
  if (!(await reserveServing(ctx, lease, `${spec.model}/${spec.version}`, 'release serving quota'))) {
    return { kind: 'rejected', message: lc.error?.message ?? 'serving quota refused' };
  }
  try {
    if (production) {
      await control.deployVersion({
        ...prod,
        version: production.version,
        artifactDir: production.artifactDir,
        // A record from before artifacts were hashed has none, and the gateway refuses it: retrain, or roll back.
        artifactDigest: production.artifactDigest ?? '',
        ...(production.artifactUri ? { artifactUri: production.artifactUri } : {}),
        opId: ctx.op('deploy-stable'),
      });
    }
    ctx.comp.push('undeploy the candidate', () =>
      control.undeployVersion({ ...prod, version: spec.version, opId: ctx.op('rollback-undeploy') }),
    );
    lc.deployed = true;
    await control.deployVersion({
      ...prod,
      version: spec.version,
      artifactDir: lc.artifactDir!,
      artifactDigest: lc.artifactDigest ?? '',
      ...(lc.artifactUri ? { artifactUri: lc.artifactUri } : {}),
      opId: ctx.op('deploy'),
    });
    ctx.comp.push('traffic back to the stable version', () => restoreTraffic(ctx), { mustHold: true });
    lc.event(`deployed ${spec.version} to ${spec.deployment.target ? 'its target' : 'the gateway'} at 0% traffic`);
    return null;
  } catch (err) {
    if (isCancellation(err)) throw err;
    return { kind: 'deploy-failed', message: `deployment failed: ${failureMessage(err)}` };
  }
}

/**
 * The staging environment: the candidate alone on its own route (or target) with its own serving lease, baked under
 * the absolute checks, then the `production` gate. Staging is taken down (its part of the stack unwound) whatever
 * the outcome; true when the lifecycle goes on to production.
 */
export async function runStaging(ctx: LifecycleContext, staging: StagingSpec): Promise<boolean> {
  const { spec, lc } = ctx;
  const target = staging.target ?? spec.deployment.target;
  const where: Where = { model: staging.route ?? `${spec.model}-staging`, ...(target ? { target } : {}) };
  const mark = ctx.comp.mark();
  const lease = `${ctx.servingLease(spec.version)}:staging`;
  if (!(await reserveServing(ctx, lease, `${spec.model}/${spec.version} (staging)`, 'release staging quota'))) {
    return false;
  }
  let outcome: RolloutStop | null;
  try {
    ctx.comp.push('undeploy from staging', () =>
      control.undeployVersion({ ...where, version: spec.version, opId: ctx.op('staging-undeploy') }),
    );
    await control.deployVersion({
      ...where,
      version: spec.version,
      artifactDir: lc.artifactDir!,
      artifactDigest: lc.artifactDigest ?? '',
      ...(lc.artifactUri ? { artifactUri: lc.artifactUri } : {}),
      opId: ctx.op('staging-deploy'),
    });
    const before = await control.readTelemetry(where);
    ctx.comp.push('staging weights off', () =>
      control.setTrafficWeights({ ...where, weights: {}, opId: ctx.op('staging-weights-off') }),
    );
    await control.setTrafficWeights({ ...where, weights: { [spec.version]: 100 }, opId: ctx.op('staging-weights') });
    lc.enter(Stage.Staging, `staging: ${spec.version} serves route "${where.model}", baking ${staging.bake} ms`);
    ctx.details(`staging on "${where.model}"`);
    outcome = await bake(ctx, 'staging', staging.bake, before, null, where);
    if (outcome === null && staging.gate && !(await gate(ctx, 'production'))) {
      outcome = { kind: 'rejected', message: lc.error?.message ?? 'production gate not approved' };
    }
  } catch (err) {
    if (isCancellation(err)) throw err;
    outcome = { kind: 'deploy-failed', message: `staging deployment failed: ${failureMessage(err)}` };
  }
  await CancellationScope.nonCancellable(() => takeDownStaging(ctx, mark, where.model));
  if (outcome === null) return true;
  if (!lc.error)
    lc.fail(
      outcome.kind === 'failed-check' ? LifecycleEndReason.StagingFailed : LifecycleEndReason.Aborted,
      outcome.message,
    );
  if (outcome.kind === 'failed-check') {
    await ctx.alert({
      kind: 'rollback',
      severity: 'warning',
      summary: `${spec.model} ${spec.version} ${outcome.message}`,
    });
  }
  lc.enter(outcome.kind === 'failed-check' ? Stage.RolledBack : Stage.Rejected, outcome.message);
  return false;
}

async function takeDownStaging(ctx: LifecycleContext, mark: number, route: string): Promise<void> {
  await ctx.comp.unwind(
    (name, err) => ctx.lc.event(`staging teardown step "${name}" failed: ${failureMessage(err)}`),
    mark,
  );
  ctx.lc.event(`staging on "${route}" taken down`);
}

/**
 * Marks lifecycles whose spec has pinned routes or a shadow stage: they set routes on the target. Retired: no
 * lifecycle ran without it, since no spec with routes validated before it. Its call goes at 0.2 (docs/versioning.md).
 */
export const ROUTES = 'routes';
const CLEAR_ROUTES = 'clear the routes';

/** The spec's pinned routes with version names; pins to stable are left out when there is no stable version. */
function pinRules(ctx: LifecycleContext): PinRule[] {
  const { spec, lc } = ctx;
  return spec.rollout.pins.flatMap((pin) => {
    const version = pin.to === 'candidate' ? spec.version : lc.stableVersion;
    return version === null ? [] : [{ header: pin.header, values: pin.values, version, counted: pin.counted }];
  });
}

/**
 * Right after the candidate is deployed at 0 %: its pinned routes (QA reaches the candidate, a tenant stays on
 * stable), with their clearing pushed on the stack. True when the lifecycle uses routes (pins or a shadow stage).
 */
export async function setPins(ctx: LifecycleContext): Promise<boolean> {
  const { spec, lc, prod } = ctx;
  if (spec.rollout.pins.length === 0 && !spec.rollout.shadow) return false;
  deprecatePatch(ROUTES);
  ctx.comp.push(CLEAR_ROUTES, () => control.setRoutes({ ...prod, pins: [], opId: ctx.op('routes:clear') }));
  const pins = pinRules(ctx);
  if (spec.rollout.pins.length > pins.length) {
    lc.event('pins to the stable version left out: there is no stable version yet');
  }
  if (pins.length > 0) {
    await control.setRoutes.executeWithOptions(
      { ...CONTROL_OPTIONS, summary: `pinned routes: ${describePins(pins)}` },
      [{ ...prod, pins, opId: ctx.op('routes:pins') }],
    );
    lc.event(`pinned routes set: ${describePins(pins)}`);
  }
  return true;
}

const describePins = (pins: readonly PinRule[]) =>
  pins.map((p) => `${p.header}: ${p.values.join('|')} → ${p.version}${p.counted ? ' (counted)' : ''}`).join('; ');

/**
 * The shadow stage: a copy of `percent` % of the requests stable answers is predicted by the candidate and compared,
 * under the stage checks and the spec's comparison; no user is served by the candidate. Null when it passed (or there
 * is none: no shadow in the spec, or no stable version to copy); otherwise why the rollout stops.
 */
export async function runShadow(ctx: LifecycleContext): Promise<RolloutStop | null> {
  const { spec, lc, prod } = ctx;
  const shadow = spec.rollout.shadow;
  if (!shadow) return null;
  const stable = lc.stableVersion;
  if (stable === null) {
    lc.event('shadow stage skipped: there is no stable version whose requests to copy');
    return null;
  }
  await waitWhilePaused(ctx);
  if (lc.abort) return abortStop(ctx);
  const pins = pinRules(ctx);
  const before = await control.readTelemetry({ ...prod });
  await control.setRoutes.executeWithOptions(
    { ...CONTROL_OPTIONS, summary: `shadow: ${shadow.percent} % of requests copied to ${spec.version}` },
    [{ ...prod, pins, shadow: { version: spec.version, percent: shadow.percent }, opId: ctx.op('routes:shadow') }],
  );
  lc.enter(
    Stage.Shadow,
    `shadow: a copy of ${shadow.percent}% of ${stable}'s requests predicted by ${spec.version}, baking ${shadow.bake} ms`,
  );
  ctx.details(`shadow at ${shadow.percent}% of requests, baking`);
  const outcome = await bake(ctx, 'shadow', shadow.bake, before, stable, prod, shadow.compare);
  if (outcome !== null) return outcome;
  await control.setRoutes.executeWithOptions({ ...CONTROL_OPTIONS, summary: 'shadow off' }, [
    { ...prod, pins, opId: ctx.op('routes:shadow-off') },
  ]);
  return null;
}

/**
 * Marks lifecycles whose spec has pre-rollout hooks: they call them before any traffic moves. Retired: no lifecycle
 * ran without it, since no spec with hooks validated before it. Its call goes at 0.2 (docs/versioning.md).
 */
export const ROLLOUT_HOOKS = 'rollout-hooks';

/**
 * The pre-rollout hooks, in order, with the candidate deployed at 0 % and its pinned routes set: each is recorded as
 * a decision (`hook:<name>` of stage `pre-rollout`), and the first that fails stops the rollout before any user is
 * served by the candidate. Null when every hook passed (or there is none).
 */
export async function runPreRollout(ctx: LifecycleContext): Promise<RolloutStop | null> {
  const { spec, lc } = ctx;
  const hooks = spec.rollout.hooks.preRollout;
  if (hooks.length === 0) return null;
  deprecatePatch(ROLLOUT_HOOKS);
  ctx.details(`pre-rollout hooks: ${hooks.map((h) => h.name).join(', ')}`);
  const payload = {
    stage: 'pre-rollout',
    lifecycleId: lc.id,
    runId: ctx.runId,
    model: spec.model,
    version: spec.version,
    stableVersion: lc.stableVersion,
    pins: pinRules(ctx).map(({ header, values, version }) => ({ header, values, version })),
  };
  for (const hook of hooks) {
    await waitWhilePaused(ctx);
    if (lc.abort) return abortStop(ctx);
    // Every attempt's wait and the backoff between attempts (1 s, doubling), with a margin.
    const budgetMs = hook.timeout * hook.maxAttempts + 1000 * 2 ** hook.maxAttempts + 10_000;
    const result = await control.runHook.executeWithOptions(
      {
        startToCloseTimeout: budgetMs,
        heartbeatTimeout: hook.timeout + 10_000,
        retry: { maximumAttempts: 2 },
        summary: `pre-rollout hook ${hook.name}`,
      },
      [{ hook, payload: { ...payload, hook: hook.name } }],
    );
    lc.addDecisions([
      {
        stage: 'pre-rollout',
        check: `hook:${hook.name}`,
        value: result.status,
        threshold: null,
        outcome: result.passed ? 'pass' : 'fail',
        at: new Date().toISOString(),
        rule: `${hook.url} answers 2xx`,
        detail: `${result.message} (${result.attempts} attempt${result.attempts === 1 ? '' : 's'}, ${result.durationMs} ms)`,
      },
    ]);
    if (!result.passed) {
      return { kind: 'failed-check', message: `pre-rollout hook ${hook.name} failed: ${result.message}` };
    }
    lc.event(`pre-rollout hook ${hook.name} passed: ${result.message}`);
  }
  return null;
}

/** Before promotion: the rollout's routes cleared (pinned traffic follows the weights again). */
export async function clearRoutes(ctx: LifecycleContext): Promise<void> {
  if (!ctx.comp.has(CLEAR_ROUTES)) return;
  await control.setRoutes({ ...ctx.prod, pins: [], opId: ctx.op('routes:clear') });
  ctx.comp.drop(CLEAR_ROUTES);
}

/** Runs one traffic stage; null when it passed, otherwise why the rollout stops. */
export async function runStage(ctx: LifecycleContext, stage: RampStage): Promise<RolloutStop | null> {
  const { spec, lc, prod } = ctx;
  if (stage.gate && !(await gate(ctx, stage.gate))) {
    return { kind: 'rejected', message: lc.error?.message ?? 'gate not approved' };
  }
  await waitWhilePaused(ctx);
  if (lc.abort) return abortStop(ctx);
  const stable = lc.stableVersion;
  const before = await control.readTelemetry({ ...prod });
  await control.setTrafficWeights.executeWithOptions(
    { ...CONTROL_OPTIONS, summary: `${stage.label}: ${stage.percent} % of traffic to ${spec.version}` },
    [{ ...prod, weights: stageWeights(spec.version, stable, stage.percent), opId: ctx.op(`weights:${stage.index}`) }],
  );
  lc.setTraffic(stage.percent);
  lc.enter(
    stage.kind === 'canary' ? Stage.Canary : Stage.Ramping,
    `${stage.label}: ${stage.percent}% of traffic to ${spec.version}, baking ${stage.bakeMs} ms`,
  );
  ctx.details(`${stage.label} at ${stage.percent}%, baking`);
  // At 100% the stable version takes no traffic: only the candidate's own checks apply.
  return bake(ctx, stage.label, stage.bakeMs, before, stage.percent < 100 ? stable : null);
}

/**
 * Argo Rollouts' check semantics (src/domain/check-tolerance.ts `foldSample`): `failureLimit` counts failed samples in
 * all, provider errors count apart, dry-run checks never stop a rollout, every check's last samples are kept, and the
 * stage's warm-up (`initialDelay`) is left out of its windows. Bakes started before count failures in a row.
 */
export const CHECK_LIMITS = 'check-limits';

/**
 * Marks runs whose bakes of more than MAX_SAMPLES_PER_BAKE samples sample at their `interval`, in child workflows of
 * SEGMENT_SAMPLES samples each (bake-segment.ts). Runs before it stretched the interval of such a bake instead.
 */
export const BAKE_SEGMENTS = 'bake-segments';

/**
 * Runs one segment of a long bake as a child workflow. Null when the bake is interrupted (an abort, a promote-now)
 * first: the segment is cancelled, and what it measured is not needed.
 */
async function runSegment(input: BakeSegmentInput, interrupted: () => boolean): Promise<BakeSegmentResult | null> {
  const scope = new CancellationScope();
  const child = scope.run(() =>
    executeChild(bakeSegmentWorkflow, {
      args: [input],
      workflowId: segmentWorkflowId(input.frame.stage, input.firstSample),
      staticSummary: `${input.frame.stage}: samples from ${input.firstSample} of ${input.frame.candidate}`,
    }),
  );
  const done = await Promise.race([child, condition(interrupted).then(() => null)]);
  if (done !== null) return done;
  scope.cancel();
  // Whatever the segment ends with now, the bake is over.
  await child.catch(() => undefined);
  return null;
}

/**
 * Bakes a stage for `bakeMs` under analysis: every `interval` a sample judges the traffic since the sample before
 * (a breach stops the rollout within an interval), then a readout at the end judges the whole stage, waiting for the
 * minimum sample. Metric checks (Prometheus, web) are measured with every sample and readout. Null when the stage
 * passed.
 */
export async function bake(
  ctx: LifecycleContext,
  label: string,
  bakeMs: number,
  before: ModelTelemetry,
  comparedTo: string | null,
  where: Where = ctx.prod,
  /** The shadow stage's comparison: the candidate is judged on its shadow copies. */
  shadowCompare?: ShadowCompare,
): Promise<RolloutStop | null> {
  const { spec, lc } = ctx;
  const rules: AnalysisRules = shadowCompare ? { ...spec.rollout.analysis, shadowCompare } : spec.rollout.analysis;
  const argo = patched(CHECK_LIMITS);
  const startedAt = Date.now();
  const end = startedAt + bakeMs;
  // A granted promote-now ends a rollout stage's bake (not the post-promotion guard).
  const skipping = () => where === ctx.prod && label !== 'post-promotion' && lc.promoteNow?.granted === true;
  const interrupted = () => lc.abort !== null || skipping();
  if (argo && rules.initialDelay > 0) {
    // The warm-up is part of the bake, left out of its windows.
    await condition(interrupted, Math.min(rules.initialDelay, bakeMs), {
      summary: `${label} warm-up ${formatDurationMs(rules.initialDelay)}`,
    });
    if (lc.abort) return abortStop(ctx);
    if (skipping()) return null;
    before = await control.readTelemetry(where);
    lc.event(`${label}: warm-up of ${rules.initialDelay} ms over, analysis starts`);
  }
  let streaks: FailureStreaks = {};
  const alertedDryRun = new Set<string>();
  let windowStart = before;
  /** Where the latest interval started (`windowStart` lags behind it while samples are unfinished). */
  let lastSample = before;
  const frame: AnalysisFrame = {
    ...where,
    candidate: spec.version,
    stable: comparedTo,
    rules,
    stage: label,
    ...(shadowCompare ? { shadow: true } : {}),
    ...(lc.artifactDir ? { candidateArtifactDir: lc.artifactDir } : {}),
    ...(lc.artifactUri && lc.artifactDigest
      ? { candidateArtifactUri: lc.artifactUri, candidateArtifactDigest: lc.artifactDigest }
      : {}),
    ...(argo ? { stageStartedAt: new Date(startedAt).toISOString() } : {}),
  };
  const read = (from: ModelTelemetry, waitForSamples: boolean, recentSince?: ModelTelemetry, sample?: number) =>
    analyze(frame, from, waitForSamples, recentSince, sample);
  /** The sampling of a bake with Argo Rollouts' semantics. */
  const state: SampleState = { windowStart: before, lastSample: null, ledger: {} };
  /** Records a sample's folded decisions, and alerts the first failure of each dry-run check in the stage. */
  const record = async (verdict: LedgerVerdict, folded: readonly Decision[], sample?: number) => {
    const tag = (d: Decision) => ({
      ...d,
      ...(sample !== undefined ? { sample } : {}),
      ...(dryRunOf(rules, d.check) ? { dryRun: true } : {}),
      ...(verdict.tolerated.includes(d) ? { tolerated: true } : {}),
    });
    lc.recordMeasurements(folded.map(tag), rules.measurementRetention);
    // Failed samples are evidence, tolerated or not; the readout at the end of a bake is recorded whole.
    lc.addDecisions(
      sample === undefined
        ? folded.map(tag)
        : [...verdict.tolerated, ...verdict.failed, ...verdict.dryRunFailed].map(tag),
    );
    for (const d of verdict.dryRunFailed) {
      if (alertedDryRun.has(d.check)) continue;
      alertedDryRun.add(d.check);
      lc.event(`${label}: dry-run check ${d.check} ${d.outcome === 'error' ? 'errored' : 'failed'}, not enforced`);
      await ctx.alert({
        kind: 'analysis-dry-run',
        severity: 'info',
        summary:
          `${spec.model} ${spec.version} ${label}: dry-run check ${d.check} ${d.outcome === 'error' ? 'errored' : 'failed'} ` +
          `(value ${d.value ?? 'none'}; ${d.rule ?? ''}); not enforced`,
        details: { check: d.check, value: d.value, rule: d.rule, detail: d.detail },
      });
    }
  };
  /**
   * Acts on a sample's verdict: records it, and stops the rollout on a failure; holds it when inconclusive. Undefined
   * when the bake goes on.
   */
  const actOn = async (verdict: LedgerVerdict, folded: readonly Decision[], sample: number) => {
    await record(verdict, folded, sample);
    if (verdict.outcome === 'fail') {
      return { kind: 'failed-check', message: `${label} failed: ${describeFailures(verdict.failed)}` } as const;
    }
    for (const d of verdict.tolerated) {
      const c = own(state.ledger, d.check);
      lc.event(
        `${label} sample ${sample}: ${d.check} ${d.outcome === 'error' ? `errored (${c?.consecutiveErrors} in a row` : `failed (${c?.failed} in this stage`}, tolerated)`,
      );
    }
    if (verdict.outcome === 'inconclusive') {
      if (!(await holdInconclusive(ctx, label))) return abortStop(ctx);
      state.ledger = Object.fromEntries(Object.entries(state.ledger).map(([k, v]) => [k, { ...v, inconclusive: 0 }]));
    }
    return undefined;
  };
  // Each sample carries two telemetry snapshots through history: a long bake either runs its samples in child
  // workflows (bake-segment.ts), or, in runs from before those, samples less often than `interval` so that it takes
  // at most MAX_SAMPLES_PER_BAKE.
  const segmented = argo && bakeMs / rules.interval > MAX_SAMPLES_PER_BAKE && patched(BAKE_SEGMENTS);
  const interval = segmented ? rules.interval : Math.max(rules.interval, Math.ceil(bakeMs / MAX_SAMPLES_PER_BAKE));
  if (segmented) {
    for (let sample = 1; end - Date.now() > interval;) {
      const segment = await runSegment(
        {
          frame,
          state,
          firstSample: sample,
          samples: SEGMENT_SAMPLES,
          interval,
          endMs: end,
          alertedDryRun: [...alertedDryRun],
          keep: rules.measurementRetention,
        },
        interrupted,
      );
      if (lc.abort) return abortStop(ctx);
      if (skipping()) return null;
      if (!segment?.last) break;
      lc.recordMeasurements(segment.measured, rules.measurementRetention);
      lc.addDecisions(segment.dryRunFailed);
      state.windowStart = segment.windowStart;
      state.lastSample = segment.lastSample;
      const verdict = foldSample(segment.last.decisions, segment.ledgerBefore, rules, false);
      state.ledger = verdict.ledger;
      const stop = await actOn(verdict, segment.last.decisions, segment.last.sample);
      if (stop) return stop;
      sample = segment.last.sample + 1;
    }
    windowStart = state.windowStart;
    lastSample = state.lastSample ?? state.windowStart;
  }
  for (let sample = 1; !segmented && end - Date.now() > interval; sample++) {
    await condition(interrupted, interval, { summary: `${label} sample ${sample} in ${formatDurationMs(interval)}` });
    if (lc.abort) return abortStop(ctx);
    if (skipping()) return null;
    if (argo) {
      const { verdict, decisions } = await takeSample(frame, state, sample);
      const stop = await actOn(verdict, decisions, sample);
      if (stop) return stop;
      windowStart = state.windowStart;
      lastSample = state.lastSample ?? state.windowStart;
      continue;
    }
    const result = await read(windowStart, false, lastSample, sample);
    const snapshot = result.telemetry ?? (await control.readTelemetry(where));
    lastSample = snapshot;
    // A sample in which some built-in check had too little traffic to judge is not over yet: its window keeps
    // growing into the next interval (so a low-traffic canary is still judged, on longer windows), and only the
    // outage check, judged on the interval alone, and the metric checks count now. A breach beyond tolerance stops
    // the rollout either way.
    const complete = !result.decisions.some(
      (d) => d.outcome === 'inconclusive' && d.check !== 'outage' && d.provider === undefined,
    );
    const { verdict, advance } = judgeWindow(result.decisions, complete, streaks, rules);
    if (advance) windowStart = snapshot;
    streaks = verdict.streaks;
    // Passing samples leave no record; a failed one is evidence, tolerated or not.
    lc.addDecisions(sampleEvidence(verdict, sample));
    if (verdict.outcome === 'fail') {
      return { kind: 'failed-check', message: `${label} failed: ${describeFailures(verdict.failed)}` };
    }
    for (const d of verdict.tolerated) {
      lc.event(`${label} sample ${sample}: ${d.check} failed (${own(streaks, d.check)} in a row, tolerated)`);
    }
  }
  const rest = end - Date.now();
  if (rest > 0) await condition(interrupted, rest, { summary: `${label} bake: readout in ${formatDurationMs(rest)}` });
  if (lc.abort) return abortStop(ctx);
  if (skipping()) return null;
  for (;;) {
    const result = await read(before, true, lastSample);
    if (argo) {
      const verdict = foldSample(result.decisions, state.ledger, rules, true);
      state.ledger = verdict.ledger;
      await record(verdict, result.decisions);
      if (verdict.outcome === 'pass') {
        lc.event(`${label} passed its checks`);
        return null;
      }
      if (verdict.outcome === 'fail') {
        return { kind: 'failed-check', message: `${label} failed: ${describeFailures(verdict.failed)}` };
      }
      if (verdict.outcome === 'retry') {
        // A metric provider could not measure, within its limit of errors: measure again an interval later.
        lc.event(
          `${label}: ${verdict.tolerated.map((d) => d.check).join(', ')} could not be measured; again in ${rules.interval} ms`,
        );
        const again = { summary: `${label}: measure again in ${formatDurationMs(rules.interval)}` };
        if (await condition(interrupted, rules.interval, again)) {
          if (lc.abort) return abortStop(ctx);
          return null;
        }
        continue;
      }
      if (!(await holdInconclusive(ctx, label))) return abortStop(ctx);
      if (skipping()) return null;
      continue;
    }
    const verdict = judgeSample(result.decisions, streaks, rules);
    lc.addDecisions(result.decisions.map((d) => (verdict.tolerated.includes(d) ? { ...d, tolerated: true } : d)));
    if (verdict.outcome === 'pass') {
      lc.event(`${label} passed its checks`);
      return null;
    }
    if (verdict.outcome === 'fail') {
      return { kind: 'failed-check', message: `${label} failed: ${describeFailures(verdict.failed)}` };
    }
    if (!(await holdInconclusive(ctx, label))) return abortStop(ctx);
    if (skipping()) return null;
  }
}

/** Too few samples to judge: hold the rollout and ask a human. True when resumed (re-analyse), false on abort. */
async function holdInconclusive(ctx: LifecycleContext, label: string): Promise<boolean> {
  const { spec, lc } = ctx;
  lc.paused = true;
  lc.event(`${label} inconclusive: too few samples; paused until resumed or aborted`);
  await ctx.alert({
    kind: 'rollout-inconclusive',
    severity: 'warning',
    summary: `${spec.model} ${spec.version} ${label} is inconclusive and paused`,
  });
  await waitWhilePaused(ctx);
  return lc.abort === null;
}

function abortStop(ctx: LifecycleContext): RolloutStop {
  return { kind: 'aborted', message: ctx.abortMessage() };
}

async function waitWhilePaused(ctx: LifecycleContext): Promise<void> {
  const { lc } = ctx;
  if (!lc.paused) return;
  ctx.details('paused');
  await condition(() => !lc.paused || lc.abort !== null || lc.promoteNow?.granted === true);
}
