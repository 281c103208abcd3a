import { checkGateDecision, gateOutcome, gatePolicy, type GatePolicy } from '../../domain/approval-policy';
import { verifySignedApproval, type ApproverKeyring } from '../../shared/signed-approval';
import type { LifecycleSpec } from '../../shared/spec';
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
  TERMINAL_STAGES,
} from '../../shared/status';
import type { ApprovalAck, OperatorAck, PromoteNowAck } from '../../shared/messages';
import { ErrorType } from '../../shared/errors';
import { parseInput, refuse } from '../handlers';

/** How old a signed approval may be when it arrives. */
const SIGNED_APPROVAL_MAX_AGE_MS = 10 * 60_000;
const PROMOTE_NOW = 'promote-now';
/** Stages in which the candidate takes traffic and a promote-now can skip what is left of the rollout. */
const PROMOTABLE: readonly Stage[] = [Stage.Canary, Stage.Ramping];

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
  /** Rules of the pending gate. */
  private gateRules: GatePolicy | null = null;
  /** How many times each gate has opened: the opening id of signed claims. */
  private readonly openings = new Map<string, number>();
  /** Public keys of the approvers, loaded when a gate that needs signatures opens. */
  keyring: ApproverKeyring = {};
  /** True while the candidate takes traffic (between deployment and the end of the rollout). */
  deployed = false;
  promoteNow: { requestedBy: string[]; quorum: number; granted: boolean } | null = null;
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

  openGate(gate: string, timeoutMs: number, escalateAfterMs?: number): void {
    const rules = gatePolicy(this.spec.approval, gate);
    const openedAt = new Date();
    const n = (this.openings.get(gate) ?? 0) + 1;
    this.openings.set(gate, n);
    this.gateRules = rules;
    this.pendingGate = {
      gate,
      opening: `${gate}#${n}`,
      approvers: rules.approvers,
      quorum: rules.quorum,
      approvedBy: [],
      signed: rules.signed,
      openedAt: openedAt.toISOString(),
      ...(escalateAfterMs !== undefined
        ? { escalatesAt: new Date(openedAt.getTime() + escalateAfterMs).toISOString(), escalated: false }
        : {}),
      deadline: new Date(openedAt.getTime() + timeoutMs).toISOString(),
    };
    this.gateOutcome = null;
    const who = rules.quorum > 1 ? `${rules.quorum} of` : 'one of';
    this.event(`gate "${gate}" awaits ${who}: ${rules.approvers.join(', ')}${rules.signed ? ' (signed)' : ''}`);
  }

  markEscalated(): void {
    if (this.pendingGate) this.pendingGate = { ...this.pendingGate, escalated: true };
    this.event(`gate "${this.pendingGate?.gate}" escalated: still waiting after the escalation delay`);
  }

  closeGate(): void {
    this.pendingGate = null;
    this.gateRules = null;
  }

  /** Update validator: throws (refusing the update, nothing recorded) unless this person may decide now. */
  validateGate(raw: unknown, decision: 'approved' | 'rejected'): void {
    const input = parseInput(GateDecisionInput, raw, 'gate decision');
    const pending = this.gateOutcome === null ? this.pendingGate : null;
    const result = checkGateDecision({
      pending,
      gate: input.gate,
      by: input.by,
      submittedBy: this.spec.submittedBy,
      approvers: this.gateRules?.approvers ?? this.spec.approval.approvers,
      decision,
      recorded: this.approvals,
    });
    if (!result.ok) throw refuse(result.reason, ErrorType.ApprovalRefused);
    if (pending?.signed) this.verifySignature(input, pending.gate, pending.opening!, decision);
  }

  /** Throws unless `input` carries a valid, fresh, unused signature of its approver for this decision. */
  private verifySignature(
    input: { by: string; signed?: unknown },
    gate: string,
    opening: string,
    decision: 'approved' | 'rejected',
  ): { keyId: string; nonce: string; reason: string } {
    if (input.signed === undefined) {
      throw refuse(
        `gate "${gate}" requires a signed approval (mlctl ${decision === 'approved' ? 'approve' : 'reject'} --key <file>)`,
        ErrorType.ApprovalRefused,
      );
    }
    const verdict = verifySignedApproval(input.signed, this.keyring, {
      lifecycleId: this.id,
      gate,
      gateOpening: opening,
      decision,
      by: input.by,
      nowMs: Date.now(),
      maxAgeMs: SIGNED_APPROVAL_MAX_AGE_MS,
      usedNonces: new Set(this.approvals.flatMap((a) => (a.nonce ? [a.nonce] : []))),
    });
    if (!verdict.ok) throw refuse(verdict.reason, ErrorType.ApprovalRefused);
    return { keyId: verdict.keyId, nonce: verdict.claim.nonce, reason: verdict.claim.reason };
  }

  decideGate(raw: unknown, decision: 'approved' | 'rejected'): ApprovalAck {
    const input = parseInput(GateDecisionInput, raw, 'gate decision');
    const gate = this.pendingGate;
    if (!gate || this.gateOutcome !== null) throw refuse('no gate is awaiting a decision', ErrorType.ApprovalRefused);
    const signature = gate.signed ? this.verifySignature(input, gate.gate, gate.opening!, decision) : null;
    const at = this.now();
    const reason = signature?.reason || input.reason;
    this.approvals.push({
      gate: gate.gate,
      ...(gate.opening ? { opening: gate.opening } : {}),
      stage: this.stage,
      by: input.by,
      decision,
      reason,
      at,
      ...(signature ? { keyId: signature.keyId, nonce: signature.nonce } : {}),
    });
    const outcome = gateOutcome(gate, this.approvals);
    const approvedBy = [
      ...new Set(
        this.approvals.filter((a) => a.opening === gate.opening && a.decision === 'approved').map((a) => a.by),
      ),
    ];
    this.pendingGate = { ...gate, approvedBy };
    this.gateOutcome = outcome;
    const quorum = gate.quorum ?? 1;
    this.event(
      `gate "${gate.gate}" ${decision} by ${input.by}${signature ? ` (signed, key ${signature.keyId})` : ''}` +
        `${reason ? `: ${reason}` : ''}${outcome === null ? ` (${approvedBy.length} of ${quorum} approvals)` : ''}`,
    );
    return { gate: gate.gate, decision, at, approvals: approvedBy.length, quorum, outcome };
  }

  /** Update validator of promote-now: an approver of the `promote-now` gate, while the candidate takes traffic. */
  validatePromoteNow(raw: unknown): void {
    const input = parseInput(GateDecisionInput, raw, 'promote-now request');
    if (!this.deployed || !(PROMOTABLE.includes(this.stage) || this.stage === Stage.AwaitingApproval)) {
      throw refuse(
        `nothing to promote: the lifecycle is ${this.stage}, not in its canary or ramp`,
        ErrorType.ApprovalRefused,
      );
    }
    if (this.promoteNow?.granted) throw refuse('promote-now was already granted', ErrorType.ApprovalRefused);
    const rules = gatePolicy(this.spec.approval, PROMOTE_NOW);
    const result = checkGateDecision({
      pending: {
        gate: PROMOTE_NOW,
        opening: `${PROMOTE_NOW}#1`,
        approvers: rules.approvers,
        openedAt: '',
        deadline: '',
      },
      gate: PROMOTE_NOW,
      by: input.by,
      submittedBy: this.spec.submittedBy,
      approvers: rules.approvers,
      decision: 'approved',
      recorded: this.approvals,
    });
    if (!result.ok) throw refuse(result.reason, ErrorType.ApprovalRefused);
    if (rules.signed) this.verifySignature(input, PROMOTE_NOW, `${PROMOTE_NOW}#1`, 'approved');
  }

  requestPromoteNow(raw: unknown): PromoteNowAck {
    const input = parseInput(GateDecisionInput, raw, 'promote-now request');
    const rules = gatePolicy(this.spec.approval, PROMOTE_NOW);
    const signature = rules.signed ? this.verifySignature(input, PROMOTE_NOW, `${PROMOTE_NOW}#1`, 'approved') : null;
    const at = this.now();
    const reason = signature?.reason || input.reason;
    this.approvals.push({
      gate: PROMOTE_NOW,
      opening: `${PROMOTE_NOW}#1`,
      stage: this.stage,
      by: input.by,
      decision: 'approved',
      reason,
      at,
      ...(signature ? { keyId: signature.keyId, nonce: signature.nonce } : {}),
    });
    const requestedBy = [...new Set(this.approvals.filter((a) => a.gate === PROMOTE_NOW).map((a) => a.by))];
    const granted = requestedBy.length >= rules.quorum;
    this.promoteNow = { requestedBy, quorum: rules.quorum, granted };
    this.event(
      `promote-now requested by ${input.by}${reason ? `: ${reason}` : ''}` +
        (granted ? '; granted, skipping the rest of the rollout' : ` (${requestedBy.length} of ${rules.quorum})`),
    );
    return { requestedBy, quorum: rules.quorum, granted, at };
  }

  validateAbort(raw: unknown): void {
    parseInput(OperatorAction, raw, 'abort');
    if (TERMINAL_STAGES.includes(this.stage)) throw refuse(`the lifecycle already ended ${this.stage}`);
  }

  abortNow(raw: unknown): OperatorAck {
    this.requestAbort(raw);
    return { action: 'abort', stage: this.stage, at: this.abort?.at ?? this.now() };
  }

  recordGateTimeout(gate: string): void {
    const at = this.now();
    this.approvals.push({
      gate,
      ...(this.pendingGate?.opening ? { opening: this.pendingGate.opening } : {}),
      stage: this.stage,
      by: 'system',
      decision: 'rejected',
      reason: 'approval timed out',
      at,
    });
    this.event(`gate "${gate}" timed out`);
  }

  pause(raw: unknown): void {
    const a = parseInput(OperatorAction, raw, 'operator action');
    if (this.paused) return;
    this.paused = true;
    this.event(`paused by ${a.by}${a.reason ? `: ${a.reason}` : ''}`);
  }

  resume(raw: unknown): void {
    const a = parseInput(OperatorAction, raw, 'operator action');
    if (!this.paused) return;
    this.paused = false;
    this.event(`resumed by ${a.by}${a.reason ? `: ${a.reason}` : ''}`);
  }

  requestAbort(raw: unknown): void {
    const a = parseInput(OperatorAction, raw, 'operator action');
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
      promoteNow: this.promoteNow,
      startedAt: this.startedAt,
      updatedAt: this.updatedAt,
    };
  }

  result(): LifecycleResult {
    return { stage: this.stage, version: this.spec.version, trafficPercent: this.trafficPercent, error: this.error };
  }
}
