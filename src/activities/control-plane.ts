import { ApplicationFailure, Context, log } from '@temporalio/activity';
import {
  WithStartWorkflowOperation,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { chooseHardware, type HardwareClass } from '../domain/hardware';
import { alertLogLevel, deliverAlert, type AlertSinkConfig } from '../alerts/sinks';
import type { Alert } from '../shared/alerts';
import { ErrorType } from '../shared/errors';
import { PlanInputError, selectHardware } from '../client/hardware-planning';
import { QuotaClient, QuotaOperationError, UnknownPoolError } from '../client/quota-client';
import { InvalidFileError } from '../config/yaml-file';
import { approverKeysPath, loadApproverKeyring } from '../config/approver-keys';
import type { LifecycleMetrics } from '../metrics/lifecycle-metrics';
import type { ApproverKeyring } from '../shared/signed-approval';
import type { HardwareSelection } from '../shared/hardware';
import {
  acquireTrafficUpdate,
  recordPromotionUpdate,
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
import { own } from '../shared/own';
// Starting entity workflows by name keeps workflow code out of the activity bundle.
const MODEL_REGISTRY_WORKFLOW = 'modelRegistryWorkflow';

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

  return {
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
        return Object.fromEntries(approvers.flatMap((a) => (own(keyring, a) ? [[a, own(keyring, a)!]] : [])));
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
          poolState: (pool) => known(() => quota.state(pool)).catch(() => null),
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

    async readPoolState(input: { pool: string }): Promise<QuotaPoolState | null> {
      return known(() => quota.state(input.pool));
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
