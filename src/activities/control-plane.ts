import { ApplicationFailure, log } from '@temporalio/activity';
import { WithStartWorkflowOperation, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { chooseHardware, type HardwareClass } from '../domain/hardware';
import type { Alert } from '../shared/alerts';
import { ErrorType } from '../shared/errors';
import {
  poolStateQuery,
  recordPromotionUpdate,
  registryStateQuery,
  releaseQuotaUpdate,
  reserveQuotaUpdate,
} from '../shared/messages';
import {
  quotaPoolWorkflowId,
  type QuotaPoolsFile,
  type QuotaPoolState,
  type ReserveQuotaInput,
  type ReserveQuotaResult,
} from '../shared/quota';
import { registryWorkflowId, type PromotionRecord } from '../shared/registry';
import type { HardwareSpec } from '../shared/spec';
import { LIFECYCLE_TASK_QUEUE } from '../shared/task-queues';
// Starting entity workflows by name keeps workflow code out of the activity bundle.
const QUOTA_POOL_WORKFLOW = 'quotaPoolWorkflow';
const MODEL_REGISTRY_WORKFLOW = 'modelRegistryWorkflow';

export interface ControlPlaneDeps {
  client: Client;
  quotaPools: QuotaPoolsFile;
  /** Where alerts go besides the log (a later sink list); called once per delivery. */
  alertSink?: (alert: Alert) => Promise<void> | void;
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
  const poolConfig = (pool: string) => {
    const config = deps.quotaPools.pools.find((p) => p.name === pool);
    if (!config) {
      throw ApplicationFailure.create({
        type: ErrorType.QuotaRefused,
        message: `unknown quota pool "${pool}" (configured: ${deps.quotaPools.pools.map((p) => p.name).join(', ')})`,
        nonRetryable: true,
      });
    }
    return config;
  };

  return {
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
      const config = poolConfig(pool);
      return client.workflow.executeUpdateWithStart(reserveQuotaUpdate, {
        args: [request],
        // The update id makes a retried activity's reservation the same update, applied once.
        updateId: `reserve:${request.leaseId}`,
        startWorkflowOperation: new WithStartWorkflowOperation(QUOTA_POOL_WORKFLOW, {
          workflowId: quotaPoolWorkflowId(pool),
          taskQueue: LIFECYCLE_TASK_QUEUE,
          args: [{ config }],
          workflowIdConflictPolicy: 'USE_EXISTING',
        }),
      });
    },

    async releaseQuota(input: { pool: string; leaseId: string }): Promise<{ released: boolean }> {
      try {
        const lease = await client.workflow
          .getHandle(quotaPoolWorkflowId(input.pool))
          .executeUpdate(releaseQuotaUpdate, { args: [{ leaseId: input.leaseId }] });
        return { released: lease !== null };
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return { released: false };
        throw err;
      }
    },

    async readPoolState(input: { pool: string }): Promise<QuotaPoolState | null> {
      try {
        return await client.workflow.getHandle(quotaPoolWorkflowId(input.pool)).query(poolStateQuery);
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
      return client.workflow.executeUpdateWithStart(recordPromotionUpdate, {
        args: [record],
        updateId: `promote:${record.lifecycleId}`,
        startWorkflowOperation: new WithStartWorkflowOperation(MODEL_REGISTRY_WORKFLOW, {
          workflowId: registryWorkflowId(record.model),
          taskQueue: LIFECYCLE_TASK_QUEUE,
          args: [{ model: record.model }],
          workflowIdConflictPolicy: 'USE_EXISTING',
        }),
      });
    },

    /** The alert path: always the log, then the configured sink. */
    async sendAlert(alert: Alert): Promise<void> {
      const level = alert.severity === 'critical' ? 'error' : alert.severity === 'warning' ? 'warn' : 'info';
      log[level](`ALERT ${alert.kind}: ${alert.summary}`, { alert });
      await deps.alertSink?.(alert);
    },
  };
}
