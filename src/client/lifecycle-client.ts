import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowExecutionInfo,
} from '@temporalio/client';
import { ApplicationFailure, TypedSearchAttributes } from '@temporalio/common';
import { z } from 'zod';
import { ErrorType } from '../shared/errors';
import { newNonce, signApproval } from './approval-signing';
import type { ApprovalClaim } from '../shared/signed-approval';
import type { ModelRollbackResult } from '../workflows/model-rollback';
import {
  abortUpdate,
  approveGateUpdate,
  pauseSignal,
  promoteNowUpdate,
  rejectGateUpdate,
  registryStateQuery,
  resumeSignal,
  statusQuery,
  type ApprovalAck,
  type OperatorAck,
  type PromoteNowAck,
} from '../shared/messages';
import { ModelRollbackInput, registryWorkflowId, rollbackWorkflowId, type RegistryState } from '../shared/registry';
import { ModelName } from '../shared/names';
import { MlModel, MlStage, MlVersion } from '../shared/search-attributes';
import { LifecycleSpec, lifecycleWorkflowId } from '../shared/spec';
import { GateDecisionInput, OperatorAction, StageName, type LifecycleStatus } from '../shared/status';
import { LIFECYCLE_TASK_QUEUE } from '../shared/task-queues';

/** Why a request was refused (exit code 4 in mlctl): not an approver, self-approval, nothing pending, duplicate... */
export class RefusedError extends Error {}
/** No such lifecycle (exit code 3 in mlctl). */
export class NotFoundError extends Error {}
/** The workflow refused the input itself as malformed (exit code 2 in mlctl): the message names the field. */
export class InvalidInputError extends Error {}

/** A refused update as the error a caller acts on: malformed input, or a refusal in the workflow's state. */
export function updateRefusal(err: WorkflowUpdateFailedError): InvalidInputError | RefusedError {
  const cause = err.cause;
  const message = cause instanceof Error ? cause.message : err.message;
  return cause instanceof ApplicationFailure && cause.type === ErrorType.InvalidInput
    ? new InvalidInputError(message)
    : new RefusedError(message);
}

export interface LifecycleSummary {
  id: string;
  model: string | null;
  version: string | null;
  stage: string | null;
  status: string;
  startTime: string;
  closeTime: string | null;
}

/** The typed client API pipelines and mlctl use to drive lifecycles. */
export class LifecycleClient {
  constructor(private readonly client: Client) {}

  /** Validates and starts a lifecycle; one lifecycle per model version (a second start is refused). */
  async start(rawSpec: unknown): Promise<{ id: string; runId: string }> {
    const spec = LifecycleSpec.parse(rawSpec);
    const id = lifecycleWorkflowId(spec.model, spec.version);
    try {
      const handle = await this.client.workflow.start('modelLifecycleWorkflow', {
        workflowId: id,
        taskQueue: LIFECYCLE_TASK_QUEUE,
        args: [{ spec }],
        // A version whose lifecycle failed may be retried; a running or finished one may not be started again.
        workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
        typedSearchAttributes: new TypedSearchAttributes([
          { key: MlModel, value: spec.model },
          { key: MlVersion, value: spec.version },
          { key: MlStage, value: 'provisioning' },
        ]),
        staticSummary: `${spec.model} ${spec.version} by ${spec.submittedBy}`,
        staticDetails: spec.description,
      });
      return { id, runId: handle.firstExecutionRunId };
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new RefusedError(
          `lifecycle ${id} already exists: model ${spec.model} version ${spec.version} was started before`,
        );
      }
      throw err;
    }
  }

  /**
   * Rolls a production model back (to `to`, default the previous production version) and waits for it: traffic moves
   * in one atomic swap. No production version → NotFoundError; nothing to roll back to → RefusedError.
   */
  async rollback(
    model: string,
    options: { to?: string; by: string; reason: string; steps?: number[]; stepIntervalMs?: number },
  ): Promise<ModelRollbackResult> {
    // Checked here with the workflow's own schema: a bad input is refused before anything starts (ZodError).
    const input = ModelRollbackInput.parse({
      model,
      by: options.by,
      reason: options.reason,
      ...(options.to ? { to: options.to } : {}),
      ...(options.steps ? { steps: options.steps } : {}),
      ...(options.stepIntervalMs !== undefined ? { stepIntervalMs: options.stepIntervalMs } : {}),
    });
    const workflowId = rollbackWorkflowId(input.model, Date.now());
    try {
      return await this.client.workflow.execute<(i: ModelRollbackInput) => Promise<ModelRollbackResult>>(
        'modelRollbackWorkflow',
        {
          taskQueue: LIFECYCLE_TASK_QUEUE,
          workflowId,
          args: [input],
        },
      );
    } catch (err) {
      if (err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure) {
        if (err.cause.type === ErrorType.NotFound) throw new NotFoundError(err.cause.message);
        if (err.cause.type === ErrorType.InvalidInput) throw new InvalidInputError(err.cause.message);
        throw new RefusedError(err.cause.message);
      }
      throw err;
    }
  }

  /** The model's registry: production, previous, and every promotion (who, when, from which lifecycle). */
  async history(model: string): Promise<RegistryState> {
    ModelName.parse(model);
    try {
      return await this.client.workflow.getHandle(registryWorkflowId(model)).query(registryStateQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        throw new NotFoundError(`model "${model}" has no registry: no version of it was ever promoted`);
      }
      throw err;
    }
  }

  async status(id: string): Promise<LifecycleStatus> {
    return this.call(id, () => this.client.workflow.getHandle(id).query(statusQuery));
  }

  /** Approves the pending gate; with `privateKeyPem`, the approval is signed for that gate's current opening. */
  async approve(id: string, decision: GateDecisionInput, privateKeyPem?: string): Promise<ApprovalAck> {
    GateDecisionInput.parse(decision);
    const input = privateKeyPem ? await this.signDecision(id, decision, 'approved', privateKeyPem) : decision;
    return this.call(id, () => this.client.workflow.getHandle(id).executeUpdate(approveGateUpdate, { args: [input] }));
  }

  async reject(id: string, decision: GateDecisionInput, privateKeyPem?: string): Promise<ApprovalAck> {
    GateDecisionInput.parse(decision);
    const input = privateKeyPem ? await this.signDecision(id, decision, 'rejected', privateKeyPem) : decision;
    return this.call(id, () => this.client.workflow.getHandle(id).executeUpdate(rejectGateUpdate, { args: [input] }));
  }

  /** Asks to skip the rest of the rollout and promote; granted once the `promote-now` quorum asked. */
  async promoteNow(id: string, request: GateDecisionInput, privateKeyPem?: string): Promise<PromoteNowAck> {
    GateDecisionInput.parse(request);
    const input = privateKeyPem
      ? {
          ...request,
          signed: signApproval(this.claim(id, 'promote-now', 'promote-now#1', 'approved', request), privateKeyPem),
        }
      : request;
    return this.call(id, () => this.client.workflow.getHandle(id).executeUpdate(promoteNowUpdate, { args: [input] }));
  }

  /** The decision with its signed claim for the gate pending now (its opening id comes from the status). */
  private async signDecision(
    id: string,
    decision: GateDecisionInput,
    outcome: 'approved' | 'rejected',
    privateKeyPem: string,
  ): Promise<GateDecisionInput> {
    const pending = (await this.status(id)).pendingGate;
    if (!pending?.opening) throw new RefusedError(`${id} has no gate awaiting a decision`);
    if (decision.gate !== undefined && decision.gate !== pending.gate) {
      throw new RefusedError(`gate "${decision.gate}" is not pending (pending: "${pending.gate}")`);
    }
    const claim = this.claim(id, pending.gate, pending.opening, outcome, decision);
    return { ...decision, signed: signApproval(claim, privateKeyPem) };
  }

  private claim(
    id: string,
    gate: string,
    opening: string,
    decision: 'approved' | 'rejected',
    input: GateDecisionInput,
  ): ApprovalClaim {
    return {
      lifecycleId: id,
      gate,
      gateOpening: opening,
      decision,
      by: input.by,
      reason: input.reason ?? '',
      issuedAt: new Date().toISOString(),
      nonce: newNonce(),
    };
  }

  async pause(id: string, action: OperatorAction): Promise<void> {
    OperatorAction.parse(action);
    await this.signal(id, () => this.client.workflow.getHandle(id).signal(pauseSignal, action));
  }

  async resume(id: string, action: OperatorAction): Promise<void> {
    OperatorAction.parse(action);
    await this.signal(id, () => this.client.workflow.getHandle(id).signal(resumeSignal, action));
  }

  /** Aborts and waits for the lifecycle to take it: before deployment it ends rejected, after it rolls back. */
  async abort(id: string, action: OperatorAction): Promise<OperatorAck> {
    OperatorAction.parse(action);
    return this.call(id, () => this.client.workflow.getHandle(id).executeUpdate(abortUpdate, { args: [action] }));
  }

  /** Lifecycles newest first, optionally of one model or in one stage (search attributes). */
  async list(filter: { model?: string; stage?: string; limit?: number } = {}): Promise<LifecycleSummary[]> {
    // Both values are checked against their patterns, so nothing a caller gives is quoted into the visibility query.
    const clauses = [`WorkflowType = 'modelLifecycleWorkflow'`];
    if (filter.model) clauses.push(`MlModel = '${ModelName.parse(filter.model)}'`);
    if (filter.stage) clauses.push(`MlStage = '${StageName.parse(filter.stage)}'`);
    const limit = z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .parse(filter.limit ?? 100);
    const out: LifecycleSummary[] = [];
    for await (const wf of this.client.workflow.list({ query: clauses.join(' AND ') })) {
      out.push(summarize(wf));
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Waits for a lifecycle to end and returns its final status. */
  async waitForEnd(id: string): Promise<LifecycleStatus> {
    await this.call(id, () => this.client.workflow.getHandle(id).result());
    return this.status(id);
  }

  private async signal(id: string, send: () => Promise<void>): Promise<void> {
    const description = await this.call(id, () => this.client.workflow.getHandle(id).describe());
    if (description.status.name !== 'RUNNING') {
      throw new RefusedError(`lifecycle ${id} is ${description.status.name.toLowerCase()}, not running`);
    }
    await this.call(id, send);
  }

  private async call<T>(id: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        // Updates to a closed workflow also report "not found": tell an ended lifecycle from a missing one.
        const ended = await this.client.workflow
          .getHandle(id)
          .describe()
          .catch(() => null);
        if (ended) throw new RefusedError(`lifecycle ${id} is ${ended.status.name.toLowerCase()}, not running`);
        throw new NotFoundError(`no lifecycle with id ${id}`);
      }
      if (err instanceof WorkflowUpdateFailedError) throw updateRefusal(err);
      throw err;
    }
  }
}

function summarize(wf: WorkflowExecutionInfo): LifecycleSummary {
  const sa = wf.typedSearchAttributes;
  return {
    id: wf.workflowId,
    model: sa.get(MlModel) ?? null,
    version: sa.get(MlVersion) ?? null,
    stage: sa.get(MlStage) ?? null,
    status: wf.status.name,
    startTime: wf.startTime.toISOString(),
    closeTime: wf.closeTime?.toISOString() ?? null,
  };
}
