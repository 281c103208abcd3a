import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  deprecatePatch,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { gatePolicy } from '../../domain/approval-policy';
import { judgeSample, judgeWindow, sampleEvidence, type FailureStreaks } from '../../domain/check-tolerance';
import { buildRampPlan, stageWeights, type RampStage } from '../../domain/ramp-plan';
import { evaluateOffline } from '../../domain/validation';
import type { Alert } from '../../shared/alerts';
import { ErrorType, LifecycleEndReason } from '../../shared/errors';
import {
  abortSignal,
  abortUpdate,
  approveGateUpdate,
  promoteNowUpdate,
  pauseSignal,
  rejectGateUpdate,
  resumeSignal,
  statusQuery,
} from '../../shared/messages';
import type { TrainingOption } from '../../shared/hardware';
import type { QuotaLease, ReleaseQuotaInput, ReserveQuotaInput } from '../../shared/quota';
import type { PromotionRecord } from '../../shared/registry';
import { MlModel, MlStage, MlVersion } from '../../shared/search-attributes';
import { own } from '../../shared/own';
import { LifecycleSpec, describeIssues, type StagingSpec } from '../../shared/spec';
import { OperatorAction, Stage, type Decision, type LifecycleResult } from '../../shared/status';
import type { ModelTelemetry } from '../../shared/telemetry';
import type { DeploymentTargetSpec } from '../../shared/deployment-target';
import { guardedSignal, guardedUpdate, guardedValidator } from '../handlers';
import { LifecycleState } from './state';
import { reportLifecycleError, reportStageChange } from '../metrics-sink';
import { setLogContext } from '../log-context';

import type { LifecycleInput } from './context';
import { escalationAlert } from './gate';
import { plannedHardware, refusalsDetails, refusalsMessage, trainingLeaseRequest, type Refusal } from './provision';
import { failureMessage, failureOf } from '../failures';

// Control-plane activities: short calls to the gateway, registry and quota pools. Retried with backoff for up to a
// few minutes so a restarting gateway or server does not fail a rollout; refusals are non-retryable failures.
const control = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '20 seconds', maximumAttempts: 15 },
});

// Stage analysis waits for the minimum sample; it heartbeats while it waits, so a dead worker is noticed quickly.
const analysis = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { maximumAttempts: 5 },
});

/**
 * TTL of the candidate's serving lease during the rollout. The lifecycle renews it from workflow timers, so the TTL
 * sets how many renewals a long bake writes to history (one per 40 minutes) and how soon a terminated lifecycle's
 * serving quota returns to the pool (within 2 hours). Training leases take the pool's TTL: their renewals ride on the
 * trainer's activity heartbeats and write nothing to history.
 */
const SERVING_LEASE_TTL_MS = 2 * 3_600_000;

/** Marks lifecycles that choose hardware with the planner (quota-aware options); older ones replay first-fit. */
const HARDWARE_PLANNER = 'hardware-planner';
/** Marks lifecycles that sample their checks across each bake with failure tolerance; older ones judge at the end. */
const ANALYSIS_SAMPLES = 'analysis-samples';
/** Samples of a bake at most; a longer bake samples less often than its `interval`. */
const MAX_SAMPLES_PER_BAKE = 120;
/** Marks lifecycles that keep the replaced version warm under a post-promotion guard window. */
const POST_PROMOTION_GUARD = 'post-promotion-guard';
/** Marks lifecycles that raise alerts through the alert router (and start their model's serving monitor). */
const ALERT_ROUTER = 'alert-router';
/** Marks lifecycles that flag a training run slower than the p95 of similar past runs. */
const TRAINING_WATCH = 'training-watch';

interface PickedHardware {
  option: TrainingOption & { label: string };
  lease: QuotaLease;
}

function formatHours(h: number): string {
  return h < 1 / 60 ? `${Math.round(h * 3600)} s` : h < 1 ? `${Math.round(h * 60)} min` : `${h.toFixed(1)} h`;
}

class RolloutStop extends Error {
  constructor(
    readonly kind: 'failed-check' | 'aborted' | 'rejected' | 'deploy-failed',
    message: string,
  ) {
    super(message);
  }
}

/**
 * The lifecycle as workers before the compensation stack ran it (releases 0.1), frozen: lifecycles those workers
 * started, still running or closed and queried, replay on it command for command. Nothing here may change; it is
 * removed at the 0.2 cut-over, once no lifecycle of 0.1 runs (docs/versioning.md).
 */
export async function legacyLifecycle(input: LifecycleInput): Promise<LifecycleResult> {
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
  const lc = new LifecycleState(spec, info.workflowId, new Date().toISOString(), (stage) => {
    upsertSearchAttributes([{ key: MlStage, value: stage }]);
    // Stage durations and failures go to the worker's metrics through a sink: no command, no history event.
    reportStageChange(lc, stage);
    setLogContext({ stage });
  });
  upsertSearchAttributes([
    { key: MlModel, value: spec.model },
    { key: MlVersion, value: spec.version },
    { key: MlStage, value: lc.stage },
  ]);

  setHandler(statusQuery, () => lc.status());
  // Validators refuse with a typed failure before anything is written; handlers cannot fail the workflow task.
  setHandler(
    approveGateUpdate,
    guardedUpdate('approveGate', (d) => lc.decideGate(d, 'approved')),
    { validator: guardedValidator('approveGate', (d) => lc.validateGate(d, 'approved')) },
  );
  setHandler(
    rejectGateUpdate,
    guardedUpdate('rejectGate', (d) => lc.decideGate(d, 'rejected')),
    { validator: guardedValidator('rejectGate', (d) => lc.validateGate(d, 'rejected')) },
  );
  setHandler(
    promoteNowUpdate,
    guardedUpdate('promoteNow', (d) => lc.requestPromoteNow(d)),
    { validator: guardedValidator('promoteNow', (d) => lc.validatePromoteNow(d)) },
  );
  setHandler(
    abortUpdate,
    guardedUpdate('abortLifecycle', (a) => lc.abortNow(a)),
    { validator: guardedValidator('abortLifecycle', (a) => lc.validateAbort(a)) },
  );
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

  let alertsRaised = 0;
  const alert = async (a: Omit<Alert, 'model' | 'version' | 'lifecycleId' | 'dedupKey'>) => {
    const about = { model: spec.model, version: spec.version, lifecycleId: lc.id };
    try {
      // Through the alert router: dedup, grouping, routing and retried delivery off the lifecycle's path.
      if (patched(ALERT_ROUTER))
        await control.raiseAlert({ ...a, ...about, dedupKey: `${lc.id}:${a.kind}:${++alertsRaised}` });
      else await control.sendAlert({ ...a, ...about, dedupKey: `${lc.id}:${a.kind}` });
    } catch (err) {
      log.error('alert delivery failed', { kind: a.kind, error: String(err) });
    }
  };
  /** Where production traffic is served: the spec's deployment target, or the worker's gateway. */
  const prod = { model: spec.model, ...(spec.deployment.target ? { target: spec.deployment.target } : {}) };
  const details = (text: string) => setCurrentDetails(`**${spec.model} ${spec.version}** — ${text}`);

  /** True once the candidate is on the gateway (so a stop must undo the deployment). */
  let deployed = false;
  /** True while the candidate is in its staging environment (staging undoes itself). */
  let inStaging = false;
  /** The version a guarded promotion replaced, while the guard window runs: a rollback restores it in the registry. */
  let guarding: PromotionRecord | null = null;
  /** Pool of the training lease (the chosen device's pool). */
  let trainingPool = spec.quota.pool;
  /** Stops renewing the candidate's serving lease (set once it is reserved). */
  let stopRenewing: () => void = () => undefined;
  try {
    await runLifecycle();
  } catch (err) {
    if (isCancellation(err)) {
      // Cancelled from outside (UI or API): undo whatever is held, then let the cancellation stand.
      lc.requestAbort({ by: 'system', reason: 'workflow cancelled' });
      await CancellationScope.nonCancellable(async () => {
        await releaseLease(`${lc.id}:train`, {}, trainingPool).catch(() => undefined);
        if (deployed) await rollback('workflow cancelled', guarding ?? undefined);
        else await releaseLease(servingLease(spec.version)).catch(() => undefined);
      });
    }
    reportLifecycleError(lc, err);
    throw err;
  }
  details(`${lc.stage}${lc.error ? `: ${lc.error.message}` : ''}`);
  await condition(allHandlersFinished);
  return lc.result();

  // ---------------------------------------------------------------------------------------------------------------

  async function runLifecycle(): Promise<void> {
    // Provision: hardware choice, then the training lease.
    lc.enter(Stage.Provisioning);
    details('choosing hardware and reserving quota');
    const trainLease = `${lc.id}:train`;
    const picked = patched(HARDWARE_PLANNER)
      ? await pickTrainingHardware(trainLease)
      : await firstFitHardware(trainLease);
    if (!picked) return;
    const { option: hw, lease: trainGrant } = picked;
    if (await stoppedBeforeDeploy()) {
      await releaseLease(trainLease, {}, hw.pool);
      return;
    }

    // Train on a worker of the chosen hardware class; the lease is released however training ends.
    lc.enter(Stage.Training, `training on ${hw.label} (${hw.taskQueue})`);
    details(`training on ${hw.label}`);
    const train = proxyActivities<Activities>({
      taskQueue: hw.taskQueue,
      startToCloseTimeout: spec.training.timeout,
      heartbeatTimeout: '30 seconds',
      retry: { maximumAttempts: spec.training.maxAttempts, initialInterval: '2 seconds' },
    });
    let trained: Awaited<ReturnType<Activities['trainModel']>> | undefined;
    let trainingError: ReturnType<typeof failureOf> | undefined;
    // A training run slower than the p95 of similar past runs is flagged while it still runs (it goes on).
    const watch = new CancellationScope();
    if (patched(TRAINING_WATCH)) {
      const baseline = await control.trainingBaseline({
        pool: hw.pool,
        family: spec.hardware.architecture,
        dataDir: spec.training.dataDir,
      });
      if (baseline.p95Ms !== null) {
        const limitMs = Math.max(1000, Math.round(baseline.p95Ms));
        lc.event(`training counts as slow after ${limitMs} ms (the p95 of ${baseline.similarRuns} similar runs)`);
        watch
          .run(async () => {
            await sleep(limitMs);
            await alert({
              kind: 'training-slow',
              severity: 'warning',
              summary:
                `${spec.model} ${spec.version}: training on ${hw.label} still running after ${limitMs} ms, ` +
                `above the p95 of ${baseline.similarRuns} similar runs (family ${spec.hardware.architecture}` +
                `${baseline.datasetRows !== null ? `, ${baseline.datasetRows} rows` : ''})`,
              details: { ...baseline, limitMs, hardware: hw.label },
            });
          })
          .catch(() => undefined);
      }
    }
    try {
      trained = await train.trainModel({
        lifecycleId: lc.id,
        model: spec.model,
        version: spec.version,
        program: spec.training.program,
        dataDir: spec.training.dataDir,
        params: spec.training.params,
        // The trainer's worker renews the lease while the process lives; a vanished worker lets it expire.
        ...(trainGrant.ttlMs !== null
          ? { lease: { pool: hw.pool, leaseId: trainLease, ttlMs: trainGrant.ttlMs } }
          : {}),
      });
    } catch (err) {
      if (isCancellation(err)) throw err;
      trainingError = failureOf(err);
    } finally {
      watch.cancel();
      // The measured run goes into the pool's history, where estimates for similar runs come from.
      await CancellationScope.nonCancellable(() =>
        releaseLease(
          trainLease,
          {
            ...(trained ? { usage: trained.usage } : {}),
            ...(trained?.datasetRows !== undefined ? { profile: { datasetRows: trained.datasetRows } } : {}),
          },
          hw.pool,
        ),
      );
    }
    if (!trained) {
      const message = `training failed: ${trainingError?.message}`;
      lc.fail(ErrorType.TrainingFailed, message);
      await alert({
        kind: 'training-failed',
        severity: 'warning',
        summary: `${spec.model} ${spec.version}: ${message}`,
        details: trainingError?.details,
      });
      lc.enter(Stage.Failed, message);
      return;
    }
    lc.artifactDir = trained.artifactDir;
    lc.event(
      `trained in ${Math.round(trained.durationMs)} ms${trained.reused ? ' (artifact of an earlier attempt reused)' : trained.attempt > 1 ? ` (attempt ${trained.attempt})` : ''}`,
    );
    if (await stoppedBeforeDeploy()) return;

    // Validate the artifact on the held-out test set, against thresholds and the production version.
    lc.enter(Stage.Validating);
    details('validating against thresholds and production');
    const production = await control.getProductionVersion({ model: spec.model });
    lc.stableVersion = production?.version ?? null;
    const evaluated = await control.evaluateModel({
      artifactDir: trained.artifactDir,
      dataDir: spec.training.dataDir,
      ...(spec.validation.testData ? { testData: spec.validation.testData } : {}),
    });
    lc.metrics = evaluated.metrics;
    lc.event(`artifact answers ${evaluated.smokeRows} raw test rows with valid probabilities in the serving runtime`);
    const offline = evaluateOffline(
      spec.validation,
      evaluated.metrics,
      // A metric that could not be computed reached the registry as null (JSON has no NaN), as it always has.
      (production?.metrics as Record<string, number> | undefined) ?? null,
      new Date().toISOString(),
      evaluated.testData,
    );
    lc.addDecisions(offline);
    const failedChecks = offline.filter((d) => d.outcome === 'fail');
    if (failedChecks.length > 0) {
      const message = `validation failed: ${failedChecks.map((d) => `${d.check}=${d.value} (${d.rule})`).join('; ')}`;
      lc.fail(ErrorType.ValidationFailed, message);
      await alert({ kind: 'validation-failed', severity: 'info', summary: message });
      lc.enter(Stage.Failed, message);
      return;
    }
    if (await stoppedBeforeDeploy()) return;

    // The deployment gate: a named approver other than the submitter, before any traffic moves.
    if (!(await gate('deploy'))) return;
    if (spec.deployment.staging && !(await runStaging(spec.deployment.staging))) return;

    const plan = buildRampPlan(spec.rollout, production !== null);
    await deploy(production);
    if (!deployed) return;
    for (const stage of plan) {
      if (lc.promoteNow?.granted) break;
      const outcome = await runStage(stage, production?.version ?? null);
      if (outcome !== null) {
        await CancellationScope.nonCancellable(() => rollback(outcome.message));
        return;
      }
    }
    if (lc.promoteNow?.granted && lc.trafficPercent < 100) {
      // The rest of the rollout is skipped: all traffic to the candidate now, the stable version kept loaded.
      const last = plan.at(-1)!;
      await control.setTrafficWeights({
        ...prod,
        weights: stageWeights(spec.version, production?.version ?? null, 100),
        opId: `${lc.id}:weights:promote-now`,
      });
      lc.setTraffic(100);
      lc.event(`promote-now: all traffic to ${spec.version}, skipping to the end of ${last.label}`);
    }
    if (production && spec.rollout.postPromotion.window > 0) {
      // Retired: before it no spec had a post-promotion window, so no history took the other way.
      deprecatePatch(POST_PROMOTION_GUARD);
      await promoteGuarded(production, trained.artifactDir, evaluated.metrics);
      return;
    }
    await promote(production, trained.artifactDir, evaluated.metrics);
  }

  /** Before anything is deployed, an abort ends the lifecycle `rejected`. */
  async function stoppedBeforeDeploy(): Promise<boolean> {
    if (!lc.abort) return false;
    lc.fail(LifecycleEndReason.Aborted, `aborted by ${lc.abort.by}${lc.abort.reason ? `: ${lc.abort.reason}` : ''}`);
    lc.enter(Stage.Rejected, lc.error!.message);
    return true;
  }

  /**
   * Waits for a gate decision: the policy's quorum of distinct approvers, or one rejection. A gate still open after
   * `escalateAfter` raises an escalation alert; at the timeout it expires. False when rejected, expired or aborted;
   * true when approved (or overtaken by a granted promote-now).
   */
  async function gate(name: string): Promise<boolean> {
    const rules = gatePolicy(spec.approval, name);
    if (rules.signed) await loadKeyring(rules.approvers);
    const timeout = spec.approval.timeout;
    const escalateAfter = spec.approval.escalateAfter;
    lc.openGate(name, timeout, escalateAfter);
    lc.enter(Stage.AwaitingApproval, `awaiting approval of gate "${name}"`);
    details(
      `awaiting approval "${name}" from ${rules.quorum > 1 ? `${rules.quorum} of ` : ''}${rules.approvers.join(', ')}`,
    );
    const done = () => lc.gateOutcome !== null || lc.abort !== null || lc.promoteNow?.granted === true;
    let decided: boolean;
    if (escalateAfter !== undefined) {
      decided = await condition(done, escalateAfter);
      if (!decided) {
        lc.markEscalated();
        await alert(escalationAlert(spec, name, rules, lc.pendingGate, escalateAfter));
        decided = await condition(done, Math.max(0, timeout - escalateAfter));
      }
    } else {
      decided = await condition(done, timeout);
    }
    const outcome = lc.gateOutcome;
    if (outcome === 'approved') {
      lc.closeGate();
      return true;
    }
    if (lc.promoteNow?.granted && outcome === null && !lc.abort) {
      lc.event(`gate "${name}" overtaken by promote-now`);
      lc.closeGate();
      return true;
    }
    if (!decided) {
      lc.recordGateTimeout(name);
      lc.closeGate();
      lc.fail(LifecycleEndReason.ApprovalTimeout, `gate "${name}" was not decided within ${timeout} ms`);
      await alert({
        kind: 'approval-timeout',
        severity: 'warning',
        summary: `gate "${name}" of ${spec.model} ${spec.version} expired unapproved`,
      });
    } else if (outcome === 'rejected') {
      lc.closeGate();
      const last = [...lc.approvals].reverse().find((a) => a.gate === name && a.decision === 'rejected');
      lc.fail(
        LifecycleEndReason.Rejected,
        `gate "${name}" rejected by ${last?.by}${last?.reason ? `: ${last.reason}` : ''}`,
      );
    } else {
      lc.closeGate();
      lc.fail(
        LifecycleEndReason.Aborted,
        `aborted by ${lc.abort?.by}${lc.abort?.reason ? `: ${lc.abort.reason}` : ''}`,
      );
    }
    // Once traffic has moved the caller rolls back; before that, the lifecycle simply ends rejected (after staging is
    // taken down, when it is staging).
    if (!deployed && !inStaging) lc.enter(Stage.Rejected, lc.error!.message);
    return false;
  }

  /** The approvers' public keys from the worker's keyring (ML_APPROVER_KEYS), for gates that need signatures. */
  async function loadKeyring(approvers: string[]): Promise<void> {
    let keyring: Awaited<ReturnType<Activities['approverKeys']>> = {};
    try {
      keyring = await control.approverKeys({ approvers });
    } catch (err) {
      if (isCancellation(err)) throw err;
      lc.event(`approver keyring unreadable: ${failureMessage(err)}`);
    }
    lc.keyring = { ...lc.keyring, ...keyring };
    const missing = approvers.filter((a) => !own(keyring, a));
    if (missing.length > 0) lc.event(`no signing key registered for ${missing.join(', ')}: they cannot approve`);
  }

  async function deploy(production: PromotionRecord | null): Promise<void> {
    const resources = { cpu: spec.quota.serving.cpu, memoryGiB: spec.quota.serving.memoryGiB };
    const grant = await reserveOrFail(
      servingLease(spec.version),
      `${spec.model}/${spec.version}`,
      'serving',
      resources,
      { profile: { model: spec.model, family: spec.hardware.architecture }, ttlMs: SERVING_LEASE_TTL_MS },
    );
    if (!grant) return;
    if (grant.ttlMs !== null) stopRenewing = keepRenewing(servingLease(spec.version), grant.ttlMs);
    try {
      if (production) {
        // Make sure the stable version is loaded (a gateway rebuilt from scratch has lost it).
        await control.deployVersion({
          // Frozen code: no digest was recorded then, and the gateway refuses a deploy without one.
          artifactDigest: '',
          ...prod,
          version: production.version,
          artifactDir: production.artifactDir,
          opId: `${lc.id}:deploy-stable`,
        });
      }
      deployed = true;
      lc.deployed = true;
      await control.deployVersion({
        // Frozen code: no digest was recorded then, and the gateway refuses a deploy without one.
        artifactDigest: '',
        ...prod,
        version: spec.version,
        artifactDir: lc.artifactDir!,
        opId: `${lc.id}:deploy`,
      });
      lc.event(`deployed ${spec.version} to the gateway at 0% traffic`);
    } catch (err) {
      if (isCancellation(err)) throw err;
      const cause = failureOf(err);
      lc.fail(ErrorType.GatewayRefused, `deployment failed: ${cause.message}`);
      await CancellationScope.nonCancellable(() => rollback(lc.error!.message));
      deployed = false;
    }
  }

  /**
   * The staging environment: the candidate alone on its own route (or target) with its own serving lease, baked under
   * the absolute checks, then the `production` gate. Staging is taken down whatever the outcome; true when the
   * lifecycle goes on to production.
   */
  async function runStaging(staging: StagingSpec): Promise<boolean> {
    const target = staging.target ?? spec.deployment.target;
    const where = { model: staging.route ?? `${spec.model}-staging`, ...(target ? { target } : {}) };
    const leaseId = `${servingLease(spec.version)}:staging`;
    const resources = { cpu: spec.quota.serving.cpu, memoryGiB: spec.quota.serving.memoryGiB };
    const grant = await reserveOrFail(leaseId, `${spec.model}/${spec.version} (staging)`, 'serving', resources, {
      profile: { model: spec.model, family: spec.hardware.architecture },
      ttlMs: SERVING_LEASE_TTL_MS,
    });
    if (!grant) return false;
    const stopStagingRenewal = grant.ttlMs !== null ? keepRenewing(leaseId, grant.ttlMs) : () => undefined;
    const teardown = async () => {
      for (const [name, step] of [
        ['weights', () => control.setTrafficWeights({ ...where, weights: {}, opId: `${lc.id}:staging-weights-off` })],
        [
          'undeploy',
          () => control.undeployVersion({ ...where, version: spec.version, opId: `${lc.id}:staging-undeploy` }),
        ],
        ['quota', () => (stopStagingRenewal(), releaseLease(leaseId))],
      ] as [string, () => Promise<unknown>][]) {
        try {
          await step();
        } catch (err) {
          lc.event(`staging teardown step "${name}" failed: ${failureMessage(err)}`);
        }
      }
      lc.event(`staging on "${where.model}" taken down`);
    };
    let outcome: RolloutStop | null;
    inStaging = true;
    try {
      await control.deployVersion({
        // Frozen code: no digest was recorded then, and the gateway refuses a deploy without one.
        artifactDigest: '',
        ...where,
        version: spec.version,
        artifactDir: lc.artifactDir!,
        opId: `${lc.id}:staging-deploy`,
      });
      const before = await control.readTelemetry(where);
      await control.setTrafficWeights({ ...where, weights: { [spec.version]: 100 }, opId: `${lc.id}:staging-weights` });
      lc.enter(Stage.Staging, `staging: ${spec.version} serves route "${where.model}", baking ${staging.bake} ms`);
      details(`staging on "${where.model}"`);
      outcome = await bake('staging', staging.bake, before, null, where);
      if (outcome === null && staging.gate && !(await gate('production'))) {
        outcome = new RolloutStop('rejected', lc.error?.message ?? 'production gate not approved');
      }
    } catch (err) {
      if (isCancellation(err)) {
        await CancellationScope.nonCancellable(teardown);
        throw err;
      }
      outcome = new RolloutStop('deploy-failed', `staging deployment failed: ${failureMessage(err)}`);
    }
    await CancellationScope.nonCancellable(teardown);
    inStaging = false;
    if (outcome === null) return true;
    if (!lc.error)
      lc.fail(
        outcome.kind === 'failed-check' ? LifecycleEndReason.StagingFailed : LifecycleEndReason.Aborted,
        outcome.message,
      );
    if (outcome.kind === 'failed-check') {
      await alert({
        kind: 'rollback',
        severity: 'warning',
        summary: `${spec.model} ${spec.version} ${outcome.message}`,
      });
    }
    lc.enter(outcome.kind === 'failed-check' ? Stage.RolledBack : Stage.Rejected, outcome.message);
    return false;
  }

  /** Runs one traffic stage; null when it passed, otherwise why the rollout stops. */
  async function runStage(stage: RampStage, stable: string | null): Promise<RolloutStop | null> {
    if (stage.gate && !(await gate(stage.gate)))
      return new RolloutStop('rejected', lc.error?.message ?? 'gate not approved');
    await waitWhilePaused();
    if (lc.abort) return abortStop();
    const weights = stageWeights(spec.version, stable, stage.percent);
    const before = await control.readTelemetry({ ...prod });
    await control.setTrafficWeights({ ...prod, weights, opId: `${lc.id}:weights:${stage.index}` });
    lc.setTraffic(stage.percent);
    lc.enter(
      stage.kind === 'canary' ? Stage.Canary : Stage.Ramping,
      `${stage.label}: ${stage.percent}% of traffic to ${spec.version}, baking ${stage.bakeMs} ms`,
    );
    details(`${stage.label} at ${stage.percent}%, baking`);
    // At 100% the stable version takes no traffic: only the candidate's own checks apply.
    const comparedTo = stage.percent < 100 ? stable : null;
    if (patched(ANALYSIS_SAMPLES)) return bake(stage.label, stage.bakeMs, before, comparedTo);
    // The bake is a durable timer, interrupted early only by an abort.
    await condition(() => lc.abort !== null, stage.bakeMs);
    if (lc.abort) return abortStop();
    for (;;) {
      const result = await analysis.analyzeStage({
        ...prod,
        candidate: spec.version,
        stable: comparedTo,
        before,
        rules: spec.rollout.analysis,
        stage: stage.label,
        ...(lc.artifactDir ? { candidateArtifactDir: lc.artifactDir } : {}),
      });
      lc.addDecisions(result.decisions);
      if (result.outcome === 'pass') {
        lc.event(`${stage.label} passed its checks`);
        return null;
      }
      if (result.outcome === 'fail') {
        const failed = result.decisions.filter((d) => d.outcome === 'fail');
        return new RolloutStop('failed-check', `${stage.label} failed: ${describeFailures(failed)}`);
      }
      if (!(await holdInconclusive(stage.label))) return abortStop();
    }
  }

  /**
   * Bakes a stage for `bakeMs` under analysis: every `interval` a sample judges the traffic since the sample before
   * (a breach stops the rollout within an interval), then a readout at the end judges the whole stage, waiting for the
   * minimum sample. A check fails the stage once it fails more samples in a row than its `failureLimit`. Null when the
   * stage passed.
   */
  async function bake(
    label: string,
    bakeMs: number,
    before: ModelTelemetry,
    comparedTo: string | null,
    where: { model: string; target?: DeploymentTargetSpec } = prod,
  ): Promise<RolloutStop | null> {
    const rules = spec.rollout.analysis;
    const end = Date.now() + bakeMs;
    // A granted promote-now ends a rollout stage's bake (not the post-promotion guard).
    const skipping = () => where === prod && label !== 'post-promotion' && lc.promoteNow?.granted === true;
    const interrupted = () => lc.abort !== null || skipping();
    let streaks: FailureStreaks = {};
    let windowStart = before;
    /** Where the latest interval started (`windowStart` lags behind it while samples are unfinished). */
    let lastSample = before;
    const read = (from: ModelTelemetry, waitForSamples: boolean, recentSince?: ModelTelemetry) =>
      analysis.analyzeStage({
        ...where,
        candidate: spec.version,
        stable: comparedTo,
        before: from,
        ...(recentSince && recentSince !== from ? { recentSince } : {}),
        rules: waitForSamples ? rules : { ...rules, maxWaitForSamples: 0 },
        stage: label,
        ...(lc.artifactDir ? { candidateArtifactDir: lc.artifactDir } : {}),
      });
    // Each sample carries two telemetry snapshots through history: a long bake samples less often than `interval`
    // so that it takes at most MAX_SAMPLES_PER_BAKE.
    const interval = Math.max(rules.interval, Math.ceil(bakeMs / MAX_SAMPLES_PER_BAKE));
    for (let sample = 1; end - Date.now() > interval; sample++) {
      await condition(interrupted, interval);
      if (lc.abort) return abortStop();
      if (skipping()) return null;
      const result = await read(windowStart, false, lastSample);
      const snapshot = result.telemetry ?? (await control.readTelemetry(where));
      lastSample = snapshot;
      // A sample in which some check had too little traffic to judge is not over yet: its window keeps growing into
      // the next interval (so a low-traffic canary is still judged, on longer windows), and only the outage check,
      // judged on the interval alone, counts now. A breach beyond tolerance stops the rollout either way.
      const complete = !result.decisions.some((d) => d.outcome === 'inconclusive' && d.check !== 'outage');
      const { verdict, advance } = judgeWindow(result.decisions, complete, streaks, rules);
      if (advance) windowStart = snapshot;
      streaks = verdict.streaks;
      // Passing samples leave no record; a failed one is evidence, tolerated or not.
      lc.addDecisions(sampleEvidence(verdict, sample));
      if (verdict.outcome === 'fail') {
        return new RolloutStop('failed-check', `${label} failed: ${describeFailures(verdict.failed)}`);
      }
      for (const d of verdict.tolerated) {
        lc.event(`${label} sample ${sample}: ${d.check} failed (${own(streaks, d.check)} in a row, tolerated)`);
      }
    }
    const rest = end - Date.now();
    if (rest > 0) await condition(interrupted, rest);
    if (lc.abort) return abortStop();
    if (skipping()) return null;
    for (;;) {
      const result = await read(before, true, lastSample);
      const verdict = judgeSample(result.decisions, streaks, rules);
      lc.addDecisions(result.decisions.map((d) => (verdict.tolerated.includes(d) ? { ...d, tolerated: true } : d)));
      if (verdict.outcome === 'pass') {
        lc.event(`${label} passed its checks`);
        return null;
      }
      if (verdict.outcome === 'fail') {
        return new RolloutStop('failed-check', `${label} failed: ${describeFailures(verdict.failed)}`);
      }
      if (!(await holdInconclusive(label))) return abortStop();
      if (skipping()) return null;
    }
  }

  /** Too few samples to judge: hold the rollout and ask a human. True when resumed (re-analyse), false on abort. */
  async function holdInconclusive(label: string): Promise<boolean> {
    lc.paused = true;
    lc.event(`${label} inconclusive: too few samples; paused until resumed or aborted`);
    await alert({
      kind: 'rollout-inconclusive',
      severity: 'warning',
      summary: `${spec.model} ${spec.version} ${label} is inconclusive and paused`,
    });
    await waitWhilePaused();
    return lc.abort === null;
  }

  function abortStop(): RolloutStop {
    return new RolloutStop('aborted', `aborted by ${lc.abort?.by}${lc.abort?.reason ? `: ${lc.abort.reason}` : ''}`);
  }

  async function waitWhilePaused(): Promise<void> {
    if (!lc.paused) return;
    details('paused');
    await condition(() => !lc.paused || lc.abort !== null || lc.promoteNow?.granted === true);
  }

  async function promote(
    production: PromotionRecord | null,
    artifactDir: string,
    metrics: Record<string, number>,
  ): Promise<void> {
    await control.recordPromotion(promotionRecord(artifactDir, metrics));
    await finishPromotion(production);
  }

  /**
   * All traffic to the candidate, the version it replaced unloaded and its quota returned; the candidate keeps its
   * serving quota without expiry, as production does until a later version replaces it.
   */
  async function finishPromotion(production: PromotionRecord | null): Promise<void> {
    if (production) {
      await control.setTrafficWeights({
        ...prod,
        weights: { [spec.version]: 100 },
        opId: `${lc.id}:weights:final`,
      });
      await control.undeployVersion({
        ...prod,
        version: production.version,
        opId: `${lc.id}:undeploy-stable`,
      });
      await releaseLease(servingLease(production.version));
    }
    stopRenewing();
    await control.renewQuota({ pool: spec.quota.pool, leaseId: servingLease(spec.version), ttlMs: null });
    lc.setTraffic(100);
    // The model's serving monitor watches production from now on (started, or handed this version's policy).
    if (spec.monitoring.enabled && patched(ALERT_ROUTER)) {
      await control
        .ensureServingMonitor({ model: spec.model, monitoring: spec.monitoring, spec: input.spec })
        .catch((err: unknown) => log.error('could not start the serving monitor', { error: String(err) }));
    }
    lc.enter(Stage.Promoted, `${spec.version} is the production version of ${spec.model}`);
  }

  /**
   * Promotion under a guard window: the candidate becomes production and takes all traffic while the version it
   * replaces stays loaded at 0% with its quota; the stage checks keep sampling the candidate. A breach (or an abort)
   * in the window swaps all traffic back in one step and restores the replaced version in the registry; a quiet window
   * unloads it.
   */
  async function promoteGuarded(
    production: PromotionRecord,
    artifactDir: string,
    metrics: Record<string, number>,
  ): Promise<void> {
    const window = spec.rollout.postPromotion.window;
    guarding = production;
    await control.recordPromotion(promotionRecord(artifactDir, metrics));
    lc.enter(
      Stage.Guarding,
      `${spec.version} is production; ${production.version} stays loaded for ${window} ms while the checks run`,
    );
    details(`guarding the promotion for ${window} ms`);
    const before = await control.readTelemetry({ ...prod });
    const outcome = await bake('post-promotion', window, before, null);
    if (outcome !== null) {
      await CancellationScope.nonCancellable(() => rollback(outcome.message, production));
      return;
    }
    lc.event(`post-promotion window passed; unloading ${production.version}`);
    await finishPromotion(production);
  }

  function promotionRecord(artifactDir: string, metrics: Record<string, number>): PromotionRecord {
    const approver = [...lc.approvals].reverse().find((a) => a.decision === 'approved')?.by ?? spec.submittedBy;
    return {
      model: spec.model,
      version: spec.version,
      artifactDir,
      metrics,
      lifecycleId: lc.id,
      by: approver,
      at: new Date().toISOString(),
      kind: 'promotion',
      serving: {
        pool: spec.quota.pool,
        leaseId: servingLease(spec.version),
        resources: { cpu: spec.quota.serving.cpu, memoryGiB: spec.quota.serving.memoryGiB },
      },
      ...(spec.deployment.target ? { target: spec.deployment.target } : {}),
    };
  }

  /**
   * Traffic back to the stable version, candidate undeployed, its lease released; each step on its own. After a
   * guarded promotion, the registry's production goes back to `restore` as well.
   */
  async function rollback(reason: string, restore?: PromotionRecord): Promise<void> {
    lc.enter(Stage.RollingBack, `rolling back: ${reason}`);
    details(`rolling back: ${reason}`);
    const stable = lc.stableVersion;
    const steps: [string, () => Promise<unknown>][] = [
      [
        'weights',
        () =>
          control.setTrafficWeights({
            ...prod,
            weights: stable ? { [stable]: 100 } : {},
            opId: `${lc.id}:rollback-weights`,
          }),
      ],
      ...(restore
        ? [
            [
              'registry',
              () =>
                control.recordPromotion({
                  ...restore,
                  lifecycleId: lc.id,
                  by: 'system',
                  at: new Date().toISOString(),
                  kind: 'rollback',
                  reason,
                }),
            ] as [string, () => Promise<unknown>],
          ]
        : []),
      [
        'undeploy',
        () => control.undeployVersion({ ...prod, version: spec.version, opId: `${lc.id}:rollback-undeploy` }),
      ],
      [
        'quota',
        () => {
          stopRenewing();
          return releaseLease(servingLease(spec.version));
        },
      ],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
        if (name === 'weights') lc.setTraffic(0);
      } catch (err) {
        lc.event(`rollback step "${name}" failed: ${failureMessage(err)}`);
      }
    }
    if (!lc.error) lc.fail(LifecycleEndReason.RolledBack, reason);
    await alert({
      kind: 'rollback',
      severity: 'critical',
      summary: `${spec.model} ${spec.version} rolled back: ${reason}`,
      details: { decisions: lc.decisions.filter((d) => d.outcome !== 'pass') },
    });
    lc.enter(Stage.RolledBack, `rolled back: ${reason}`);
  }

  /**
   * Reserves quota, waiting in the pool's queue for up to `quota.wait`; when the pool refuses, the lifecycle fails
   * naming what is short and when quota is expected back, and alerts. Returns the lease, or null when refused.
   */
  async function reserveOrFail(
    leaseId: string,
    holder: string,
    kind: 'training' | 'serving',
    resources: Record<string, number>,
    extra: Pick<ReserveQuotaInput, 'profile' | 'expectedDurationMs' | 'ttlMs'> = {},
    pool = spec.quota.pool,
  ): Promise<QuotaLease | null> {
    const waitMs = spec.quota.wait;
    if (waitMs > 0) lc.event(`reserving ${kind} quota; may wait up to ${waitMs} ms in pool "${pool}"`);
    const reserver =
      waitMs > 0
        ? proxyActivities<Activities>({
            startToCloseTimeout: waitMs + 60_000,
            heartbeatTimeout: '30 seconds',
            retry: { initialInterval: '1 second', maximumAttempts: 5 },
          })
        : control;
    const reserved = await reserver.reserveQuota({
      pool,
      leaseId,
      holder,
      kind,
      resources,
      ...extra,
      ...(waitMs > 0 ? { wait: { timeoutMs: waitMs, priority: spec.quota.priority } } : {}),
    });
    if (reserved.granted) {
      if (reserved.waitedMs > 0) lc.event(`${kind} quota granted after waiting ${reserved.waitedMs} ms`);
      return reserved.lease;
    }
    const when = reserved.earliestRelease ? `; quota expected back at ${reserved.earliestRelease}` : '';
    lc.fail(ErrorType.QuotaRefused, `${reserved.message}${when}`);
    await alert({
      kind: 'quota-refused',
      severity: 'warning',
      summary: reserved.message,
      details: { reason: reserved.reason, shortfalls: reserved.shortfalls, earliestRelease: reserved.earliestRelease },
    });
    lc.enter(Stage.Failed, lc.error!.message);
    return null;
  }

  async function releaseLease(
    leaseId: string,
    extra: Omit<ReleaseQuotaInput, 'leaseId'> = {},
    pool = spec.quota.pool,
  ): Promise<void> {
    await control.releaseQuota({ pool, leaseId, ...extra });
  }

  /**
   * The hardware planner's training options, tried in order: the first whose pool grants its lease is used; each
   * refusal is recorded, and the lifecycle fails naming them all when none is granted (after waiting in the first
   * option's queue, when the spec allows a wait).
   */
  async function pickTrainingHardware(leaseId: string): Promise<PickedHardware | null> {
    const plan = await control.planHardware({ spec, holder: lc.id });
    const first = plan.training[0];
    if (!first) {
      lc.fail(ErrorType.InvalidSpec, 'the hardware planner found no way to train this model');
      lc.enter(Stage.Failed, lc.error!.message);
      return null;
    }
    const label = (o: TrainingOption) => `${o.count > 1 ? `${o.count}× ` : ''}${o.device}`;
    lc.hardware = plannedHardware(plan, first);
    lc.event(plan.rationale);
    if (plan.calibration)
      lc.event(
        `estimates calibrated by ${plan.calibration.runs} earlier run(s): ×${plan.calibration.factor.toFixed(3)}`,
      );
    const refusals: Refusal[] = [];
    for (const [i, option] of plan.training.entries()) {
      const request = trainingLeaseRequest(spec, lc.id, leaseId, option);
      const waitMs = spec.quota.wait;
      const last = i === plan.training.length - 1;
      // Waiting is for the preferred option, and only once every option was refused at once.
      const result = await control.reserveQuota(request);
      if (result.granted) return chosen(option, result.lease, label);
      refusals.push({ option, result });
      lc.event(
        `${label(option)} refused by pool "${option.pool}": ${result.message}${last ? '' : '; trying the next option'}`,
      );
      if (last && waitMs > 0) {
        const preferred = plan.training[0]!;
        const waited = await reserveOrFail(
          leaseId,
          lc.id,
          'training',
          preferred.quota,
          {
            profile: request.profile,
            expectedDurationMs: request.expectedDurationMs,
          },
          preferred.pool,
        );
        return waited ? chosen(preferred, waited, label) : null;
      }
    }
    const message = refusalsMessage(refusals);
    lc.fail(ErrorType.QuotaRefused, message);
    await alert({
      kind: 'quota-refused',
      severity: 'warning',
      summary: message,
      details: refusalsDetails(refusals),
    });
    lc.enter(Stage.Failed, message);
    return null;
  }

  function chosen(option: TrainingOption, lease: QuotaLease, label: (o: TrainingOption) => string): PickedHardware {
    trainingPool = option.pool;
    if (lc.hardware) lc.hardware = { ...lc.hardware, training: label(option) };
    lc.event(
      `training on ${label(option)}: about ${formatHours(option.hours)}, $${option.costUsd.toFixed(4)}; lease from pool "${option.pool}"`,
    );
    return { option: { ...option, label: label(option) }, lease };
  }

  /** Lifecycles started before the hardware planner: first-fit class, the spec's training resources as the lease. */
  async function firstFitHardware(leaseId: string): Promise<PickedHardware | null> {
    const hw = await control.selectHardware(spec.hardware);
    lc.hardware = { training: hw.training.name, serving: hw.serving.name, rationale: hw.rationale };
    lc.event(hw.rationale);
    const resources = { cpu: spec.training.resources.cpu, memoryGiB: spec.training.resources.memoryGiB };
    const lease = await reserveOrFail(leaseId, lc.id, 'training', resources, {
      profile: { model: spec.model, family: spec.hardware.architecture },
      expectedDurationMs: spec.training.timeout,
    });
    if (!lease) return null;
    const option = {
      device: hw.training.name,
      kind: hw.training.kind,
      count: 1,
      hours: 0,
      rawHours: 0,
      costUsd: 0,
      taskQueue: hw.training.taskQueue,
      pool: spec.quota.pool,
      quota: resources,
      meetsDeadline: true,
      available: true,
      label: hw.training.name,
    };
    return { option, lease };
  }

  /**
   * Renews a lease at a third of its TTL while the lifecycle holds it; a workflow that is terminated stops renewing
   * and the pool takes the quota back when the TTL runs out. Returns the function that stops the renewals.
   */
  function keepRenewing(leaseId: string, ttlMs: number): () => void {
    const scope = new CancellationScope();
    let held = true;
    void scope
      .run(async () => {
        while (held) {
          await sleep(Math.max(Math.floor(ttlMs / 3), 1_000));
          if (!held) return;
          const r = await control.renewQuota({ pool: spec.quota.pool, leaseId });
          if (!r.renewed) {
            lc.event(`quota lease ${leaseId} was no longer held by pool "${spec.quota.pool}" (expired)`);
            return;
          }
        }
      })
      .catch((err: unknown) => {
        if (!isCancellation(err)) log.warn('lease renewal stopped', { leaseId, error: String(err) });
      });
    return () => {
      if (!held) return;
      held = false;
      scope.cancel();
    };
  }

  function servingLease(version: string): string {
    return `serve:${spec.model}:${version}`;
  }
}

/** `check=value (rule)` of each failed decision, for failure messages and alerts. */
function describeFailures(failed: readonly Decision[]): string {
  return failed.map((d) => `${d.check}=${d.value} (${d.rule})`).join('; ');
}
