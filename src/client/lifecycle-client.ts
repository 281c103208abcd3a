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
import { newNonce, operationClaim, signApproval, signOperation } from './approval-signing';
import type { ApprovalClaim } from '../shared/signed-approval';
import { OperationTarget } from '../shared/signed-operation';
import {
  abortUpdate,
  approveGateUpdate,
  pauseSignal,
  pauseUpdate,
  resumeUpdate,
  promoteNowUpdate,
  rejectGateUpdate,
  registryStateQuery,
  resumeSignal,
  statusQuery,
  type ApprovalAck,
  type OperatorAck,
  type PromoteNowAck,
} from '../shared/messages';
import {
  ModelRollbackInput,
  registryWorkflowId,
  rollbackWorkflowId,
  type ModelRollbackResult,
  type RegistryState,
} from '../shared/registry';
import { ModelName } from '../shared/names';
import { MlModel, MlStage, MlVersion } from '../shared/search-attributes';
import { LifecycleSpec, lifecycleWorkflowId } from '../shared/spec';
import { metricConditionProblems } from '../analysis/templates';
import { SpecError } from './spec-file';
import { GateDecisionInput, OperatorAction, StageName, type LifecycleStatus } from '../shared/status';
import { LIFECYCLE_TASK_QUEUE } from '../shared/task-queues';
import { formatDurationMs } from '../shared/duration';
import { cutBytes, STATIC_DETAILS_MAX_BYTES, STATIC_SUMMARY_MAX_BYTES } from '../shared/text';

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

/**
 * What the Temporal UI shows of a lifecycle before it has run a step: the list's one-line summary (model, version,
 * rollout, pool, submitter) and the detail page's Markdown (what the candidate is, its plan, how to follow it).
 */
export function lifecycleStartMetadata(spec: LifecycleSpec): { staticSummary: string; staticDetails: string } {
  const { rollout, quota, deployment, approval } = spec;
  const percents = [rollout.canary.percent, ...rollout.steps.map((s) => s.percent)].map((p) => `${p}%`).join(' → ');
  const stages = [
    ...(deployment.staging ? [`staging for ${formatDurationMs(deployment.staging.bake)}`] : []),
    ...(rollout.hooks.preRollout.length > 0
      ? [`pre-rollout hooks ${rollout.hooks.preRollout.map((h) => h.name).join(', ')}`]
      : []),
    ...(rollout.shadow
      ? [`shadow ${rollout.shadow.percent}% of requests for ${formatDurationMs(rollout.shadow.bake)}`]
      : []),
    `canary ${rollout.canary.percent}% for ${formatDurationMs(rollout.canary.bake)}`,
    ...rollout.steps.map(
      (s) => `${s.percent}% for ${formatDurationMs(s.bake)}${s.approval ? ' (approved first)' : ''}`,
    ),
  ];
  const details = [
    ...(spec.description ? [spec.description, ''] : []),
    `- **Model**: ${spec.model} ${spec.version} (${spec.task}), submitted by ${spec.submittedBy}`,
    `- **Rollout**: ${stages.join(', then ')}; rolled back when a check breaches`,
    `- **Approvers**: ${approval.approvers.join(', ')}`,
    `- **Quota pool**: ${quota.pool}`,
    `- **Follow it**: \`mlctl status ${lifecycleWorkflowId(spec.model, spec.version)}\`; search attribute \`MlStage\` holds its stage`,
  ];
  return {
    staticSummary: cutBytes(
      `${spec.model} ${spec.version}: train, validate, ${rollout.shadow ? 'shadow, ' : ''}canary ${percents} on pool ${quota.pool}, by ${spec.submittedBy}`,
      STATIC_SUMMARY_MAX_BYTES,
    ),
    staticDetails: cutBytes(details.join('\n'), STATIC_DETAILS_MAX_BYTES),
  };
}

/** The typed client API pipelines and mlctl use to drive lifecycles. */
export class LifecycleClient {
  constructor(private readonly client: Client) {}

  /** Validates and starts a lifecycle; one lifecycle per model version (a second start is refused). */
  async start(rawSpec: unknown): Promise<{ id: string; runId: string }> {
    const spec = LifecycleSpec.parse(rawSpec);
    // Conditions are compiled by the worker; a bad one is refused here, before anything starts.
    const conditions = metricConditionProblems(spec);
    if (conditions.length > 0) throw new SpecError('(spec)', conditions);
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
        ...lifecycleStartMetadata(spec),
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
   * Waits until a just-started lifecycle has been checked against the platform policy (up to `timeoutMs`): resolves
   * when it runs under a rule (or was started before policies), throws RefusedError naming every field and rule the
   * spec loosens.
   */
  async awaitPolicy(id: string, timeoutMs = 30_000): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.status(id).catch(() => null);
      if (status?.policyRule) return status.policyRule;
      if (status?.error?.type === ErrorType.PolicyViolation) throw new RefusedError(status.error.message);
      if (status && !status.runId) return null;
      if (Date.now() > deadline) return null;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /**
   * Rolls a production model back (to `to`, default the previous production version) and waits for it: traffic moves
   * in one atomic swap. No production version → NotFoundError; nothing to roll back to → RefusedError.
   */
  async rollback(
    model: string,
    options: { to?: string; by: string; reason: string; steps?: number[]; stepIntervalMs?: number },
    privateKeyPem?: string,
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
    // The claim names this rollback's workflow id, which is never reused: it cannot start a second rollback.
    const signed = privateKeyPem
      ? signOperation(
          operationClaim({
            op: 'rollback',
            target: OperationTarget.rollback(input.model, workflowId, input.to),
            by: input.by,
            reason: input.reason,
          }),
          privateKeyPem,
        )
      : undefined;
    try {
      return await this.client.workflow.execute<(i: ModelRollbackInput) => Promise<ModelRollbackResult>>(
        'modelRollbackWorkflow',
        {
          taskQueue: LIFECYCLE_TASK_QUEUE,
          workflowId,
          args: [{ ...input, ...(signed ? { signed } : {}) }],
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
          staticSummary: cutBytes(
            `rollback of ${input.model} to ${input.to ?? 'its previous production version'}, by ${input.by}`,
            STATIC_SUMMARY_MAX_BYTES,
          ),
          ...(input.reason ? { staticDetails: cutBytes(`Reason: ${input.reason}`, STATIC_DETAILS_MAX_BYTES) } : {}),
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

  /**
   * Approves the pending gate; with `privateKeyPem`, the approval is signed for that gate's current opening (and, for
   * a lifecycle under the platform policy, its run and the spec and artifact digests).
   */
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
    let input: GateDecisionInput = request;
    if (privateKeyPem) {
      const status = await this.status(id);
      input = {
        ...request,
        signed: status.runId
          ? signOperation(
              operationClaim({
                op: 'promote-now',
                target: OperationTarget.promoteNow(id, status.runId),
                by: request.by,
                reason: request.reason ?? '',
                ...digestsOf(status),
              }),
              privateKeyPem,
            )
          : signApproval(this.claim(id, 'promote-now', 'promote-now#1', 'approved', request), privateKeyPem),
      };
    }
    return this.call(id, () => this.client.workflow.getHandle(id).executeUpdate(promoteNowUpdate, { args: [input] }));
  }

  /** The decision with its signed claim for the gate pending now (its opening id comes from the status). */
  private async signDecision(
    id: string,
    decision: GateDecisionInput,
    outcome: 'approved' | 'rejected',
    privateKeyPem: string,
  ): Promise<GateDecisionInput> {
    const status = await this.status(id);
    const pending = status.pendingGate;
    if (!pending?.opening) throw new RefusedError(`${id} has no gate awaiting a decision`);
    if (decision.gate !== undefined && decision.gate !== pending.gate) {
      throw new RefusedError(`gate "${decision.gate}" is not pending (pending: "${pending.gate}")`);
    }
    if (status.runId) {
      const claim = operationClaim({
        op: outcome === 'approved' ? 'approve' : 'reject',
        target: OperationTarget.gate(id, status.runId, pending.opening),
        by: decision.by,
        reason: decision.reason ?? '',
        ...digestsOf(status),
      });
      return { ...decision, signed: signOperation(claim, privateKeyPem) };
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

  /** An operator action, signed for the lifecycle's run when a key is given. */
  private async operatorInput(
    id: string,
    action: 'abort' | 'pause' | 'resume',
    input: OperatorAction,
    privateKeyPem: string | undefined,
  ): Promise<{ input: OperatorAction; enforced: boolean }> {
    OperatorAction.parse(input);
    const status = await this.status(id);
    if (!status.runId) {
      if (privateKeyPem) throw new RefusedError(`${id} was started before signed operations: send it without --key`);
      return { input, enforced: false };
    }
    if (!privateKeyPem) return { input, enforced: true };
    const claim = operationClaim({
      op: action,
      target: OperationTarget.lifecycle(id, status.runId),
      by: input.by,
      reason: input.reason ?? '',
      ...digestsOf(status),
    });
    return { input: { ...input, signed: signOperation(claim, privateKeyPem) }, enforced: true };
  }

  /** Pauses at the next stage boundary; under the platform policy the lifecycle answers whether it accepted. */
  async pause(id: string, action: OperatorAction, privateKeyPem?: string): Promise<OperatorAck | null> {
    return this.pauseOrResume(id, 'pause', action, privateKeyPem);
  }

  async resume(id: string, action: OperatorAction, privateKeyPem?: string): Promise<OperatorAck | null> {
    return this.pauseOrResume(id, 'resume', action, privateKeyPem);
  }

  private async pauseOrResume(
    id: string,
    action: 'pause' | 'resume',
    raw: OperatorAction,
    privateKeyPem: string | undefined,
  ): Promise<OperatorAck | null> {
    const { input, enforced } = await this.operatorInput(id, action, raw, privateKeyPem);
    const handle = this.client.workflow.getHandle(id);
    if (enforced)
      return this.call(id, () =>
        handle.executeUpdate(action === 'pause' ? pauseUpdate : resumeUpdate, { args: [input] }),
      );
    await this.signal(id, () => handle.signal(action === 'pause' ? pauseSignal : resumeSignal, input));
    return null;
  }

  /** Aborts and waits for the lifecycle to take it: before deployment it ends rejected, after it rolls back. */
  async abort(id: string, action: OperatorAction, privateKeyPem?: string): Promise<OperatorAck> {
    const { input } = await this.operatorInput(id, 'abort', action, privateKeyPem);
    return this.call(id, () => this.client.workflow.getHandle(id).executeUpdate(abortUpdate, { args: [input] }));
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

/** The digests a signed claim on this lifecycle binds. */
function digestsOf(status: LifecycleStatus): { specDigest: string; artifactDigest: string } {
  return { specDigest: status.specDigest ?? '', artifactDigest: status.artifactDigest ?? '' };
}
