import { ApplicationFailure, Context, log } from '@temporalio/activity';
import {
  WithStartWorkflowOperation,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  isGrpcServiceError,
  type Client,
} from '@temporalio/client';
import { chooseHardware, type HardwareClass } from '../domain/hardware';
import { alertLogLevel, deliverAlert, type AlertSinkConfig } from '../alerts/sinks';
import type { Alert } from '../shared/alerts';
import { ErrorType } from '../shared/errors';
import { cut } from '../shared/text';
import { PlanInputError, selectHardware } from '../client/hardware-planning';
import { QuotaClient, QuotaOperationError, UnknownPoolError } from '../client/quota-client';
import { InvalidFileError } from '../config/yaml-file';
import { approverKeysPath, loadApproverKeyring } from '../config/approver-keys';
import { PolicySource, policyPath } from '../config/policy';
import { normalizeIdentity, policyViolations, type ModelPolicy, type PolicedSpec } from '../shared/policy';
import { authorizeOperation, type Authorization, type OperationRequest } from '../shared/signed-operation';
import type { LifecycleMetrics } from '../metrics/lifecycle-metrics';
import type { ApproverKeyring } from '../shared/signed-approval';
import type { HardwareSelection } from '../shared/hardware';
import {
  acquireTrafficUpdate,
  recordPromotionUpdate,
  statusQuery,
  registryStateQuery,
  releaseTrafficUpdate,
} from '../shared/messages';
import type {
  QuotaPoolsFile,
  QuotaPoolState,
  ReleaseQuotaInput,
  RenewQuotaInput,
  ReserveQuotaInput,
  ReserveQuotaResult,
} from '../shared/quota';
import {
  ModelRollbackInput as ModelRollbackInputSchema,
  registryWorkflowId,
  type AcquireTrafficResult,
  type PromotionRecord,
  type RegistryState,
  type TrafficHolder,
  type TrafficLease,
} from '../shared/registry';
import { describeIssues, type HardwareSpec, type LifecycleSpec } from '../shared/spec';
import { z } from 'zod';
import { LIFECYCLE_TASK_QUEUE } from '../shared/task-queues';
// Starting entity workflows by name keeps workflow code out of the activity bundle.
const MODEL_REGISTRY_WORKFLOW = 'modelRegistryWorkflow';
const registrySummary = (model: string) => `model registry of ${model}: production version, promotions, traffic lease`;
const RUN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** gRPC INVALID_ARGUMENT: the server's answer to a workflow or run id that cannot name anything. */
const isInvalidArgument = (err: unknown): boolean => {
  const cause = err instanceof Error && err.cause !== undefined ? err.cause : err;
  return isGrpcServiceError(cause) && cause.code === 3;
};

export interface ControlPlaneDeps {
  client: Client;
  quotaPools: QuotaPoolsFile;
  /** Hardware catalog file (default: HARDWARE_CATALOG_FILE or config/hardware-catalog.yaml). */
  hardwareCatalogFile?: string;
  /** The process's quota client (one per process, so its batching and in-flight bound cover every caller). */
  quota?: QuotaClient;
  /** Where alerts go besides the log (a later sink list); called once per delivery. */
  alertSink?: (alert: Alert) => Promise<void> | void;
  /** Webhook, Slack and Alertmanager sinks every alert is posted to (ALERT_SINKS_FILE); none: the log only. */
  alertSinks?: AlertSinkConfig[];
  /** The approver keyring signed approvals are verified with (default: ML_APPROVER_KEYS). */
  approverKeysFile?: string;
  /** The platform policy and keyring privileged operations are checked against (default: ML_POLICY_FILE). */
  policy?: PolicySource;
  /** Counts delivered alerts (the worker's Prometheus metrics). */
  metrics?: Pick<LifecycleMetrics, 'alertDelivered'>;
}

type ClassSummary = Pick<HardwareClass, 'name' | 'kind' | 'taskQueue' | 'pricePerHourUsd'>;
const summary = (c: HardwareClass): ClassSummary => ({
  name: c.name,
  kind: c.kind,
  taskQueue: c.taskQueue,
  pricePerHourUsd: c.pricePerHourUsd,
});

/** Activities that talk to the control plane's entity workflows (quota pools, model registry), hardware and alerts. */
export function createControlPlaneActivities(deps: ControlPlaneDeps) {
  const { client } = deps;
  const quota = deps.quota ?? new QuotaClient(client, deps.quotaPools);
  /** An unknown pool is a spec problem: fail at once, without retries. */
  const known = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (err instanceof UnknownPoolError)
        throw ApplicationFailure.create({ type: ErrorType.QuotaRefused, message: err.message, nonRetryable: true });
      // A request the pool's schema refuses is refused again on every retry: fail once, naming the field.
      if (err instanceof z.ZodError || err instanceof QuotaOperationError)
        throw ApplicationFailure.create({
          type: ErrorType.InvalidInput,
          message: err instanceof z.ZodError ? describeIssues(err).join('; ') : err.message,
          nonRetryable: true,
        });
      throw err;
    }
  };

  /** An update the workflow refused with a non-retryable failure is refused again on every retry: fail once. */
  const refusedOnce = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      const cause = err instanceof WorkflowUpdateFailedError ? err.cause : undefined;
      if (cause instanceof ApplicationFailure && cause.nonRetryable)
        throw ApplicationFailure.create({
          type: cause.type ?? ErrorType.Refused,
          message: cause.message,
          nonRetryable: true,
        });
      throw err;
    }
  };

  let policySource = deps.policy;
  /** The policy source, created on first use from the environment when the worker did not pass one. */
  const policy = (): PolicySource => {
    policySource ??= new PolicySource(policyPath(), deps.approverKeysFile ?? approverKeysPath());
    return policySource;
  };
  /** `fn` with an unusable policy or keyring file turned into a non-retryable PolicyInvalid failure. */
  const withPolicy = <T>(fn: (source: PolicySource) => T): T => {
    try {
      return fn(policy());
    } catch (err) {
      if (err instanceof InvalidFileError)
        throw ApplicationFailure.create({ type: ErrorType.PolicyInvalid, message: err.message, nonRetryable: true });
      throw err;
    }
  };

  return {
    /**
     * The platform policy's rules for a lifecycle's model, with the spec checked against them: every way the spec
     * loosens the policy, each naming the spec field and the rule. Also the keys of the people the rules name, for
     * the workflow's validators (the worker checks the keyring as it is now again before anything is recorded).
     */
    async resolvePolicy(input: {
      model: string;
      spec: PolicedSpec;
      program: string;
    }): Promise<{ ok: true; policy: ModelPolicy; keyring: ApproverKeyring } | { ok: false; problems: string[] }> {
      return withPolicy((source) => {
        const rules = source.forModel(input.model);
        const problems = policyViolations(input.spec, rules);
        const program = source.programProblem(input.model, input.program);
        if (program) problems.push(program);
        if (problems.length > 0) return { ok: false, problems };
        const named = new Set(
          [
            ...rules.approval.approvers,
            ...Object.values(rules.approval.gates).flatMap((g) => g.approvers),
            ...Object.values(rules.operators).flat(),
          ].map(normalizeIdentity),
        );
        const keyring = Object.fromEntries(
          Object.entries(source.keys()).filter(([who]) => named.has(normalizeIdentity(who))),
        );
        return { ok: true, policy: rules, keyring };
      });
    },

    /**
     * Whether a privileged operation may happen now: the person is allowed by the policy as it is now, and the
     * signature (required unless the policy lets the operation go unsigned) verifies with the keyring as it is now, so
     * a revoked key or a removed operator stops working at once. Nonces are checked by the calling workflow.
     */
    async authorizeOperation(input: { model: string; request: OperationRequest }): Promise<Authorization> {
      return withPolicy((source) => {
        const verdict = authorizeOperation(source.forModel(input.model), source.keys(), input.request, Date.now());
        log.info('privileged operation checked', {
          model: input.model,
          op: input.request.op,
          by: input.request.by,
          target: input.request.target,
          ok: verdict.ok,
          ...(verdict.ok ? { keyId: verdict.keyId } : { reason: verdict.reason }),
        });
        return verdict;
      });
    },

    /**
     * The registered public keys of these approvers, read from the keyring file at each call (so a rotated key takes
     * effect at the next gate). No keyring configured: no keys, and signed gates refuse every approval.
     */
    async approverKeys({ approvers }: { approvers: string[] }): Promise<ApproverKeyring> {
      const file = deps.approverKeysFile ?? approverKeysPath();
      if (!file) {
        log.warn('no approver keyring configured (ML_APPROVER_KEYS): signed approvals cannot be verified');
        return {};
      }
      try {
        const keyring = loadApproverKeyring(file);
        // Identities compare case-insensitively: the keyring's `Alice` is the policy's `alice`.
        const wanted = new Set(approvers.map(normalizeIdentity));
        return Object.fromEntries(Object.entries(keyring).filter(([who]) => wanted.has(normalizeIdentity(who))));
      } catch (err) {
        if (err instanceof InvalidFileError)
          throw ApplicationFailure.create({ type: ErrorType.InvalidSpec, message: err.message, nonRetryable: true });
        throw err;
      }
    },

    /**
     * Plans training and serving hardware for a spec (the hardware planner over the catalog, calibrated by the pool's
     * history) and orders the training options by deadline, availability in their pools and cost.
     */
    async planHardware(input: { spec: LifecycleSpec; holder: string }): Promise<HardwareSelection> {
      try {
        return await selectHardware(input.spec, {
          ...(deps.hardwareCatalogFile ? { catalogFile: deps.hardwareCatalogFile } : {}),
          poolState: (pool, read) => known(() => quota.state(pool, read)).catch(() => null),
          holder: input.holder,
        });
      } catch (err) {
        if (!(err instanceof PlanInputError || err instanceof InvalidFileError)) throw err;
        throw ApplicationFailure.create({
          type: ErrorType.InvalidSpec,
          message: err.message,
          nonRetryable: true,
        });
      }
    },

    /** The first-fit choice of earlier versions, kept so lifecycles started before the planner replay unchanged. */
    async selectHardware(
      hw: HardwareSpec,
    ): Promise<{ training: ClassSummary; serving: ClassSummary; rationale: string }> {
      try {
        const choice = chooseHardware(hw);
        return { training: summary(choice.training), serving: summary(choice.serving), rationale: choice.rationale };
      } catch (err) {
        throw ApplicationFailure.create({
          type: ErrorType.InvalidSpec,
          message: (err as Error).message,
          nonRetryable: true,
        });
      }
    },

    /** Reserve on the pool's entity workflow, starting it if this is the pool's first use. Idempotent by lease id. */
    async reserveQuota(input: ReserveQuotaInput & { pool: string }): Promise<ReserveQuotaResult> {
      const { pool, ...request } = input;
      // While it waits in the pool's queue the activity heartbeats its place, so a dead worker is noticed.
      return known(() => quota.reserve(pool, request, { onQueued: (place) => Context.current().heartbeat(place) }));
    },

    /**
     * Sends a reservation and answers at once (granted, refused, or queued with its place): the lifecycle waits in the
     * queue on its own timers, polling {@link quotaReservationState}, and holds no activity slot while it waits.
     */
    async submitQuotaReservation(input: ReserveQuotaInput & { pool: string }): Promise<ReserveQuotaResult> {
      const { pool, ...request } = input;
      return known(() => quota.submitReservation(pool, request));
    },

    /** Where a queued reservation stands now (see QuotaClient.reservationState). */
    async quotaReservationState(input: {
      pool: string;
      leaseId: string;
      last: ReserveQuotaResult & { granted: false };
    }): Promise<ReserveQuotaResult> {
      return known(() => quota.reservationState(input.pool, input.leaseId, input.last));
    },

    /** Extends a lease; `renewed: false` when the pool no longer holds it (it expired and its quota went back). */
    async renewQuota(
      input: RenewQuotaInput & { pool: string },
    ): Promise<{ renewed: boolean; expiresAt: string | null }> {
      const { pool, ...request } = input;
      const lease = await known(() => quota.renew(pool, request));
      return { renewed: lease !== null, expiresAt: lease?.expiresAt ?? null };
    },

    async releaseQuota(input: ReleaseQuotaInput & { pool: string }): Promise<{ released: boolean }> {
      const { pool, ...request } = input;
      return { released: (await known(() => quota.release(pool, request))) !== null };
    },

    /** The pool's state; with `summary: true` without the lists that grow with its leases (QuotaClient.state). */
    async readPoolState(input: { pool: string; summary?: boolean }): Promise<QuotaPoolState | null> {
      return known(() => quota.state(input.pool, { summary: input.summary === true }));
    },

    /** The model's registry, or null when no version of it was ever promoted. */
    async getRegistry(input: { model: string }): Promise<RegistryState | null> {
      try {
        return await client.workflow.getHandle(registryWorkflowId(input.model)).query(registryStateQuery);
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return null;
        throw err;
      }
    },

    async getProductionVersion(input: { model: string }): Promise<PromotionRecord | null> {
      try {
        const state = await client.workflow.getHandle(registryWorkflowId(input.model)).query(registryStateQuery);
        return state.production;
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return null;
        throw err;
      }
    },

    /**
     * Whether a registry record comes from where it says (H8): a promotion from a running lifecycle of this model and
     * version on the lifecycle task queue, with the artifact digest it trained and a deploy approval it recorded
     * (every approval the record lists among them); a rollback from a running rollback of this model, or from the
     * lifecycle whose guard window puts its stable version back. A forged record names no such workflow.
     */
    async verifyRegistryRecord(input: {
      record: PromotionRecord;
    }): Promise<{ ok: true } | { ok: false; reason: string }> {
      const { record } = input;
      const refuse = (reason: string) => ({ ok: false as const, reason: `forged or stale registry record: ${reason}` });
      if (!record.runId) return refuse('it names no run of its lifecycle or rollback');
      // The server names every run with a UUID; anything else is refused here rather than retried as a server error.
      if (!RUN_ID.test(record.runId)) return refuse(`"${cut(record.runId, 60)}" is not a run id`);
      const handle = client.workflow.getHandle(record.lifecycleId, record.runId);
      let description;
      try {
        description = await handle.describe();
      } catch (err) {
        if (err instanceof WorkflowNotFoundError || isInvalidArgument(err))
          return refuse(`no workflow ${record.lifecycleId} run ${record.runId}`);
        throw err;
      }
      if (description.status.name !== 'RUNNING')
        return refuse(`${record.lifecycleId} is ${description.status.name.toLowerCase()}, not recording anything now`);
      if (description.taskQueue !== LIFECYCLE_TASK_QUEUE)
        return refuse(`${record.lifecycleId} runs on task queue ${description.taskQueue}, not ${LIFECYCLE_TASK_QUEUE}`);
      const kind = record.kind ?? 'promotion';
      if (description.type === 'modelRollbackWorkflow' && kind === 'rollback') {
        const history = await handle.fetchHistory();
        const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
        const payload = started?.input?.payloads?.[0];
        const args = payload?.data ? (JSON.parse(Buffer.from(payload.data).toString('utf8')) as unknown) : null;
        const parsed = ModelRollbackInputSchema.safeParse(args);
        if (!parsed.success) return refuse(`the input of rollback ${record.lifecycleId} cannot be read`);
        if (parsed.data.model !== record.model)
          return refuse(`rollback ${record.lifecycleId} is of ${parsed.data.model}`);
        if (parsed.data.to !== undefined && parsed.data.to !== record.version)
          return refuse(`rollback ${record.lifecycleId} restores ${parsed.data.to}, not ${record.version}`);
        return { ok: true };
      }
      if (description.type !== 'modelLifecycleWorkflow')
        return refuse(`${record.lifecycleId} is a ${description.type}, which does not record ${kind}s`);
      const status = await handle.query(statusQuery);
      if (status.model !== record.model) return refuse(`lifecycle ${record.lifecycleId} is of ${status.model}`);
      if (kind === 'rollback') {
        // The guard window's undo: the lifecycle puts back the version it replaced.
        if (status.stableVersion !== record.version)
          return refuse(
            `lifecycle ${record.lifecycleId} replaced ${status.stableVersion ?? 'nothing'}, not ${record.version}`,
          );
        return { ok: true };
      }
      if (status.version !== record.version)
        return refuse(`lifecycle ${record.lifecycleId} rolls out ${status.version}, not ${record.version}`);
      if (status.runId !== undefined && (status.artifactDigest ?? undefined) !== record.artifactDigest)
        return refuse(`the artifact digest differs from the one lifecycle ${record.lifecycleId} trained`);
      const approved = status.approvals.filter((a) => a.decision === 'approved' && a.by !== 'system');
      if (!approved.some((a) => a.gate === 'deploy'))
        return refuse(`lifecycle ${record.lifecycleId} has no approved deploy gate`);
      for (const a of record.approvals ?? []) {
        if (!approved.some((x) => x.gate === a.gate && x.by === a.by && (x.keyId ?? undefined) === a.keyId))
          return refuse(`approval of gate "${a.gate}" by ${a.by} is not one lifecycle ${record.lifecycleId} recorded`);
      }
      return { ok: true };
    },

    /** Moves the model's production alias; idempotent by the promoting lifecycle's id. */
    async recordPromotion(record: PromotionRecord): Promise<PromotionRecord> {
      return refusedOnce(() =>
        client.workflow.executeUpdateWithStart(recordPromotionUpdate, {
          args: [record],
          updateId: `${record.kind === 'rollback' ? 'rollback' : 'promote'}:${record.lifecycleId}${record.runId ? `@${record.runId}` : ''}`,
          startWorkflowOperation: new WithStartWorkflowOperation(MODEL_REGISTRY_WORKFLOW, {
            workflowId: registryWorkflowId(record.model),
            taskQueue: LIFECYCLE_TASK_QUEUE,
            args: [{ model: record.model }],
            workflowIdConflictPolicy: 'USE_EXISTING',
            staticSummary: registrySummary(record.model),
          }),
        }),
      );
    },

    /**
     * Takes the model's traffic lease for `holder` (one writer of the model's weights at a time). A lease whose holder's
     * workflow is no longer running (terminated, timed out: it could not release it) is taken over, and the answer
     * names it in `replaced`. Refused, naming the holder, while the holder runs.
     */
    async acquireTrafficLease(input: {
      model: string;
      holder: TrafficHolder;
    }): Promise<AcquireTrafficResult & { replaced?: TrafficLease }> {
      const acquire = (replacing?: { workflowId: string; runId: string }) =>
        refusedOnce(() =>
          client.workflow.executeUpdateWithStart(acquireTrafficUpdate, {
            args: [{ holder: input.holder, ...(replacing ? { replacing } : {}) }],
            startWorkflowOperation: new WithStartWorkflowOperation(MODEL_REGISTRY_WORKFLOW, {
              workflowId: registryWorkflowId(input.model),
              taskQueue: LIFECYCLE_TASK_QUEUE,
              args: [{ model: input.model }],
              workflowIdConflictPolicy: 'USE_EXISTING',
              staticSummary: registrySummary(input.model),
            }),
          }),
        );
      const first = await acquire();
      if (first.granted) return first;
      const held = first.heldBy;
      let running: boolean;
      try {
        const described = await client.workflow.getHandle(held.workflowId, held.runId).describe();
        running = described.status.name === 'RUNNING';
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        running = false;
      }
      if (running) return first;
      const taken = await acquire({ workflowId: held.workflowId, runId: held.runId });
      if (taken.granted) log.warn('traffic lease taken over from an ended holder', { model: input.model, held });
      return taken.granted ? { ...taken, replaced: held } : taken;
    },

    /** Gives the model's traffic lease back; false when this run did not hold it (releasing twice is harmless). */
    async releaseTrafficLease(input: { model: string; workflowId: string; runId: string }): Promise<boolean> {
      try {
        const handle = client.workflow.getHandle(registryWorkflowId(input.model));
        const r = await handle.executeUpdate(releaseTrafficUpdate, {
          args: [{ workflowId: input.workflowId, runId: input.runId }],
        });
        return r.released;
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return false;
        throw err;
      }
    },

    /**
     * The alert path: always the log, then the configured sink, then the sinks file's. A sink that cannot take the alert
     * now fails the activity with a retryable AlertDeliveryFailed, and the retry posts to every sink again
     * (at-least-once; a sink that refuses with a 4xx is logged and not retried).
     */
    async sendAlert(alert: Alert): Promise<void> {
      log[alertLogLevel(alert)](`${alert.resolved ? 'RESOLVED' : 'ALERT'} ${alert.kind}: ${alert.summary}`, { alert });
      await deps.alertSink?.(alert);
      if (deps.alertSinks?.length) await deliverAlert(alert, deps.alertSinks, fetch, log);
      // Counted once delivered: a retried delivery is one alert.
      deps.metrics?.alertDelivered(alert);
    },
  };
}
