import { checkGateDecision } from '../domain/approval-policy';
import type { LifecycleSpec } from '../shared/spec';
import {
  GateDecisionInput,
  OperatorAction,
  type ApprovalRecord,
  type Decision,
  type LifecycleEvent,
  type LifecycleResult,
  type LifecycleStatus,
  type PendingGate,
  Stage,
} from '../shared/status';
import type { ApprovalAck } from '../shared/messages';

const EVENTS_LIMIT = 200;

/**
 * The state machine of one lifecycle, kept apart from the workflow's wiring: handlers and the business logic both go
 * through these methods, so every change of stage, gate and traffic is recorded in one place.
 */
export class LifecycleState {
  stage: Stage = Stage.Provisioning;
  paused = false;
  trafficPercent = 0;
  stableVersion: string | null = null;
  hardware: LifecycleStatus['hardware'] = null;
  artifactDir: string | null = null;
  metrics: Record<string, number> | null = null;
  pendingGate: PendingGate | null = null;
  readonly approvals: ApprovalRecord[] = [];
  readonly decisions: Decision[] = [];
  readonly events: LifecycleEvent[] = [];
  error: LifecycleStatus['error'] = null;
  abort: { by: string; reason: string; at: string } | null = null;
  /** The outcome of the pending gate, set by the approve/reject update handlers. */
  gateOutcome: 'approved' | 'rejected' | null = null;
  updatedAt: string;

  constructor(
    readonly spec: LifecycleSpec,
    readonly id: string,
    readonly startedAt: string,
    private readonly onStageChange: (stage: Stage) => void,
  ) {
    this.updatedAt = startedAt;
  }

  private now(): string {
    return new Date().toISOString();
  }

  event(message: string): void {
    const at = this.now();
    this.events.push({ at, stage: this.stage, message });
    if (this.events.length > EVENTS_LIMIT) this.events.splice(0, this.events.length - EVENTS_LIMIT);
    this.updatedAt = at;
  }

  enter(stage: Stage, message?: string): void {
    this.stage = stage;
    this.event(message ?? `entered ${stage}`);
    this.onStageChange(stage);
  }

  setTraffic(percent: number): void {
    this.trafficPercent = percent;
    this.updatedAt = this.now();
  }

  addDecisions(decisions: readonly Decision[]): void {
    this.decisions.push(...decisions);
    this.updatedAt = this.now();
  }

  fail(type: string, message: string): void {
    this.error = { type, message };
  }

  openGate(gate: string, timeoutMs: number): void {
    const openedAt = new Date();
    this.pendingGate = {
      gate,
      approvers: [...this.spec.approval.approvers],
      openedAt: openedAt.toISOString(),
      deadline: new Date(openedAt.getTime() + timeoutMs).toISOString(),
    };
    this.gateOutcome = null;
    this.event(`gate "${gate}" awaits one of: ${this.spec.approval.approvers.join(', ')}`);
  }

  closeGate(): void {
    this.pendingGate = null;
  }

  /** Update validator: throws (refusing the update, nothing recorded) unless this person may decide now. */
  validateGate(raw: unknown, decision: 'approved' | 'rejected'): void {
    const input = GateDecisionInput.parse(raw);
    const result = checkGateDecision({
      pending: this.gateOutcome === null ? this.pendingGate : null,
      gate: input.gate,
      by: input.by,
      submittedBy: this.spec.submittedBy,
      approvers: this.spec.approval.approvers,
      decision,
      recorded: this.approvals,
    });
    if (!result.ok) throw new Error(result.reason);
  }

  decideGate(raw: unknown, decision: 'approved' | 'rejected'): ApprovalAck {
    const input = GateDecisionInput.parse(raw);
    const gate = this.pendingGate;
    if (!gate || this.gateOutcome !== null) throw new Error('no gate is awaiting a decision');
    const at = this.now();
    this.approvals.push({ gate: gate.gate, stage: this.stage, by: input.by, decision, reason: input.reason, at });
    this.gateOutcome = decision;
    this.event(`gate "${gate.gate}" ${decision} by ${input.by}${input.reason ? `: ${input.reason}` : ''}`);
    return { gate: gate.gate, decision, at };
  }

  recordGateTimeout(gate: string): void {
    const at = this.now();
    this.approvals.push({
      gate,
      stage: this.stage,
      by: 'system',
      decision: 'rejected',
      reason: 'approval timed out',
      at,
    });
    this.event(`gate "${gate}" timed out`);
  }

  pause(raw: unknown): void {
    const a = OperatorAction.parse(raw);
    if (this.paused) return;
    this.paused = true;
    this.event(`paused by ${a.by}${a.reason ? `: ${a.reason}` : ''}`);
  }

  resume(raw: unknown): void {
    const a = OperatorAction.parse(raw);
    if (!this.paused) return;
    this.paused = false;
    this.event(`resumed by ${a.by}${a.reason ? `: ${a.reason}` : ''}`);
  }

  requestAbort(raw: unknown): void {
    const a = OperatorAction.parse(raw);
    if (this.abort) return;
    this.abort = { by: a.by, reason: a.reason, at: this.now() };
    this.event(`abort requested by ${a.by}${a.reason ? `: ${a.reason}` : ''}`);
  }

  status(): LifecycleStatus {
    return {
      id: this.id,
      model: this.spec.model,
      version: this.spec.version,
      submittedBy: this.spec.submittedBy,
      stage: this.stage,
      paused: this.paused,
      trafficPercent: this.trafficPercent,
      stableVersion: this.stableVersion,
      hardware: this.hardware,
      artifactDir: this.artifactDir,
      metrics: this.metrics,
      pendingGate: this.pendingGate,
      approvals: this.approvals,
      decisions: this.decisions,
      events: this.events,
      error: this.error,
      startedAt: this.startedAt,
      updatedAt: this.updatedAt,
    };
  }

  result(): LifecycleResult {
    return { stage: this.stage, version: this.spec.version, trafficPercent: this.trafficPercent, error: this.error };
  }
}
