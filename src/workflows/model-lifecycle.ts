import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  isCancellation,
  patched,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { buildRampPlan, stageWeights } from '../domain/ramp-plan';
import { ErrorType, LifecycleEndReason, relayedFailureType, type LifecycleFailureType } from '../shared/errors';
import {
  abortSignal,
  abortUpdate,
  approveGateUpdate,
  pauseSignal,
  pauseUpdate,
  promoteNowUpdate,
  rejectGateUpdate,
  resumeSignal,
  resumeUpdate,
  statusQuery,
} from '../shared/messages';
import { MlModel, MlStage, MlVersion } from '../shared/search-attributes';
import { LifecycleSpec, describeIssues } from '../shared/spec';
import { OperatorAction, Stage, type LifecycleResult } from '../shared/status';
import { guardedSignal, guardedUpdate, guardedValidator } from './handlers';
import { control, LifecycleContext, type LifecycleInput } from './lifecycle/context';
import { gate } from './lifecycle/gate';
import { legacyLifecycle } from './lifecycle/legacy';
import {
  applyPolicy,
  decideAuthorized,
  operatorAuthorized,
  operatorSignal,
  PLATFORM_POLICY,
  promoteNowAuthorized,
} from './lifecycle/policy';
import { promote } from './lifecycle/promote';
import { provision } from './lifecycle/provision';
import { rollback } from './lifecycle/rollback';
import {
  clearRoutes,
  deploy,
  runPreRollout,
  runShadow,
  runStage,
  runStaging,
  setPins,
  takeTraffic,
} from './lifecycle/rollout';
import { LifecycleState } from './lifecycle/state';
import { STAGE_EVENTS, StageEvents } from './lifecycle/stage-events';
import { train } from './lifecycle/train';
import { validate } from './lifecycle/validate';
import { reportLifecycleError, reportStageChange } from './metrics-sink';
import { setLogContext } from './log-context';
import { failureMessage, failureOf } from './failures';

export type { LifecycleInput } from './lifecycle/context';

/**
 * Marks lifecycles run on the compensation stack (fail safe after any error, verified rollback, the model's traffic
 * lease, opIds per run). Lifecycles started before it replay on the frozen `lifecycle/legacy.ts`.
 */
const FAIL_SAFE = 'fail-safe';

/** The compensation that marks a candidate on the target: from here on, a stop rolls back. */
const CANDIDATE = 'undeploy the candidate';

/**
 * One model version from training to production: provision → train → validate → approve → canary → ramp → promote,
 * or roll back with the evidence kept. Every step that changes the world pushes its undo on a compensation stack;
 * whatever ends the lifecycle early (a failed check, a rejection, an abort, a cancellation, an error) unwinds it, so
 * traffic ends on the stable version and quota is returned, or the lifecycle says `rollback-stuck` and pages.
 */
export async function modelLifecycleWorkflow(input: LifecycleInput): Promise<LifecycleResult> {
  if (!patched(FAIL_SAFE)) return legacyLifecycle(input);
  const parsed = LifecycleSpec.safeParse(input.spec);
  if (!parsed.success) {
    throw ApplicationFailure.create({
      type: ErrorType.InvalidSpec,
      message: `invalid lifecycle spec: ${describeIssues(parsed.error).join('; ')}`,
      nonRetryable: true,
    });
  }
  const spec = parsed.data;
  setLogContext({ model: spec.model, version: spec.version, stage: Stage.Provisioning });
  const info = workflowInfo();
  const events = patched(STAGE_EVENTS) ? new StageEvents() : undefined;
  const lc = new LifecycleState(spec, info.workflowId, new Date().toISOString(), (stage) => {
    upsertSearchAttributes([{ key: MlStage, value: stage }]);
    // Stage durations and failures go to the worker's metrics through a sink: no command, no history event.
    reportStageChange(lc, stage);
    setLogContext({ stage });
    events?.push({
      stage,
      at: lc.updatedAt,
      message: lc.events.at(-1)?.message ?? stage,
      trafficPercent: lc.trafficPercent,
    });
  });
  upsertSearchAttributes([
    { key: MlModel, value: spec.model },
    { key: MlVersion, value: spec.version },
    { key: MlStage, value: lc.stage },
  ]);
  lc.enforced = patched(PLATFORM_POLICY);
  lc.runId = info.runId;
  registerHandlers(lc);
  const ctx = new LifecycleContext(spec, input, lc, info.runId);
  ctx.stopAborted = () =>
    CancellationScope.nonCancellable(() => stopEarly(ctx, ctx.abortMessage(), LifecycleEndReason.Aborted));
  events?.start(ctx);

  try {
    // Under the platform policy nothing is reserved before the spec is known to stay within it.
    if (!lc.enforced || (await applyPolicy(ctx))) await runLifecycle(ctx);
  } catch (err) {
    if (isCancellation(err)) {
      // Cancelled from outside (UI or API): undo whatever is held, then let the cancellation stand.
      lc.requestAbort({ by: 'system', reason: 'workflow cancelled' });
      await CancellationScope.nonCancellable(() => stopEarly(ctx, 'workflow cancelled', LifecycleEndReason.Aborted));
      await events?.flush();
      reportLifecycleError(lc, err);
      throw err;
    }
    const failure = failureOf(err);
    const message = `${lc.stage} could not go on: ${failure.message}`;
    const rolledBack = await CancellationScope.nonCancellable(() =>
      stopEarly(ctx, message, failure.type !== undefined ? relayedFailureType(failure.type) : ErrorType.LifecycleError),
    );
    if (!rolledBack) {
      // Nothing had reached traffic: the leases are back, and the workflow fails with the error.
      await events?.flush();
      reportLifecycleError(lc, err);
      throw err;
    }
  }
  await events?.flush();
  ctx.details(`${lc.stage}${lc.error ? `: ${lc.error.message}` : ''}`);
  await condition(allHandlersFinished);
  return lc.result();
}

/**
 * Ends a lifecycle that cannot go on. Once the candidate is on the target this is a rollback (true); before that the
 * stack is unwound (leases back), the error recorded and alerted on, and the lifecycle ends `failed` (false).
 */
async function stopEarly(ctx: LifecycleContext, reason: string, type: LifecycleFailureType): Promise<boolean> {
  const { lc, spec } = ctx;
  if (ctx.comp.has(CANDIDATE)) {
    if (!lc.error) lc.fail(type, reason);
    await rollback(ctx, reason);
    return true;
  }
  await ctx.comp.unwind((name, err) => lc.event(`undo "${name}" failed: ${failureMessage(err)}`));
  if (type === LifecycleEndReason.Aborted) {
    if (!lc.error) lc.fail(type, reason);
    if (lc.stage !== Stage.Rejected) lc.enter(Stage.Rejected, reason);
    return false;
  }
  await ctx.endFailed(type, reason, {
    kind: 'lifecycle-failed',
    severity: 'critical',
    summary: `${spec.model} ${spec.version}: ${reason}`,
  });
  return false;
}

/** The lifecycle's story: each phase returns false (or null) when it has ended the lifecycle. */
async function runLifecycle(ctx: LifecycleContext): Promise<void> {
  const { spec, lc } = ctx;
  lc.enter(Stage.Provisioning);
  ctx.details('choosing hardware and reserving quota');
  const trainLease = `${lc.id}:train`;
  const picked = await provision(ctx, trainLease);
  if (!picked || (await stoppedBeforeDeploy(ctx))) return;
  const trained = await train(ctx, picked, trainLease);
  if (!trained || (await stoppedBeforeDeploy(ctx))) return;
  const evidence = await validate(ctx, trained.artifactDir);
  if (!evidence || (await stoppedBeforeDeploy(ctx))) return;

  // The deployment gate: a named approver other than the submitter, before any traffic moves.
  if (!(await gate(ctx, 'deploy'))) {
    lc.enter(Stage.Rejected, lc.error!.message);
    return;
  }
  if (spec.deployment.staging && !(await runStaging(ctx, spec.deployment.staging))) return;

  // One writer of the model's traffic at a time; the stable version is whatever is production once it is ours.
  const traffic = await takeTraffic(ctx);
  if (!traffic || (await stoppedBeforeDeploy(ctx))) return;
  const production = traffic.stable;
  const deployStop = await deploy(ctx, production);
  if (deployStop) {
    if (deployStop.kind === 'deploy-failed') {
      lc.fail(ErrorType.GatewayRefused, deployStop.message);
      await CancellationScope.nonCancellable(() => rollback(ctx, deployStop.message));
    } else {
      await ctx.comp.unwind((name, err) => lc.event(`undo "${name}" failed: ${failureMessage(err)}`));
    }
    return;
  }
  // Before any user is served by the candidate: its pinned routes, the pre-rollout hooks, the shadow stage.
  const routed = await setPins(ctx);
  const early = (await runPreRollout(ctx)) ?? (routed ? await runShadow(ctx) : null);
  if (early) {
    await CancellationScope.nonCancellable(() => rollback(ctx, early.message));
    return;
  }
  const plan = buildRampPlan(spec.rollout, production !== null);
  for (const stage of plan) {
    if (lc.promoteNow?.granted) break;
    const outcome = await runStage(ctx, stage);
    if (outcome !== null) {
      await CancellationScope.nonCancellable(() => rollback(ctx, outcome.message));
      return;
    }
  }
  if (lc.promoteNow?.granted && lc.trafficPercent < 100) {
    // The rest of the rollout is skipped: all traffic to the candidate now, the stable version kept loaded.
    await control.setTrafficWeights({
      ...ctx.prod,
      weights: stageWeights(spec.version, production?.version ?? null, 100),
      opId: ctx.op('weights:promote-now'),
    });
    lc.setTraffic(100);
    lc.event(`promote-now: all traffic to ${spec.version}, skipping to the end of ${plan.at(-1)!.label}`);
  }
  await clearRoutes(ctx);
  await promote(ctx, production, evidence);
}

/** Before anything is deployed, an abort ends the lifecycle `rejected` with whatever it holds given back. */
async function stoppedBeforeDeploy(ctx: LifecycleContext): Promise<boolean> {
  const { lc } = ctx;
  if (!lc.abort) return false;
  await CancellationScope.nonCancellable(() => stopEarly(ctx, ctx.abortMessage(), LifecycleEndReason.Aborted));
  return true;
}

function registerHandlers(lc: LifecycleState): void {
  setHandler(statusQuery, () => lc.status());
  // Validators refuse with a typed failure before anything is written; handlers cannot fail the workflow task. Under
  // the platform policy each handler asks the worker to authorize the operation before it records anything.
  const enforced = lc.enforced;
  setHandler(
    approveGateUpdate,
    guardedUpdate('approveGate', (d) =>
      enforced ? decideAuthorized(lc, d, 'approved') : lc.decideGate(d, 'approved'),
    ),
    { validator: guardedValidator('approveGate', (d) => lc.validateGate(d, 'approved')) },
  );
  setHandler(
    rejectGateUpdate,
    guardedUpdate('rejectGate', (d) => (enforced ? decideAuthorized(lc, d, 'rejected') : lc.decideGate(d, 'rejected'))),
    { validator: guardedValidator('rejectGate', (d) => lc.validateGate(d, 'rejected')) },
  );
  setHandler(
    promoteNowUpdate,
    guardedUpdate('promoteNow', (d) => (enforced ? promoteNowAuthorized(lc, d) : lc.requestPromoteNow(d))),
    { validator: guardedValidator('promoteNow', (d) => lc.validatePromoteNow(d)) },
  );
  setHandler(
    abortUpdate,
    guardedUpdate('abortLifecycle', (a) => (enforced ? operatorAuthorized(lc, a, 'abort') : lc.abortNow(a))),
    {
      validator: guardedValidator('abortLifecycle', (a) => {
        lc.validateAbort(a);
        lc.validateOperator(a, 'abort');
      }),
    },
  );
  if (enforced) {
    for (const [update, action] of [
      [pauseUpdate, 'pause'],
      [resumeUpdate, 'resume'],
    ] as const) {
      setHandler(
        update,
        guardedUpdate(`${action}Lifecycle`, (a) => operatorAuthorized(lc, a, action)),
        {
          validator: guardedValidator(`${action}Lifecycle`, (a) => lc.validateOperator(a, action)),
        },
      );
    }
    setHandler(pauseSignal, operatorSignal(lc, 'pause'));
    setHandler(resumeSignal, operatorSignal(lc, 'resume'));
    setHandler(abortSignal, operatorSignal(lc, 'abort'));
    return;
  }
  // Signals cannot answer the sender, so a malformed one is logged and dropped rather than failing the workflow.
  setHandler(
    pauseSignal,
    guardedSignal('pause', OperatorAction, (a) => lc.pause(a)),
  );
  setHandler(
    resumeSignal,
    guardedSignal('resume', OperatorAction, (a) => lc.resume(a)),
  );
  setHandler(
    abortSignal,
    guardedSignal('abort', OperatorAction, (a) => lc.requestAbort(a)),
  );
}
