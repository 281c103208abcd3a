import { checkGateDecision, gateOutcome, gatePolicy, type GatePolicy } from '../../domain/approval-policy';
import { verifySignedApproval, type ApproverKeyring } from '../../shared/signed-approval';
import {
  listed,
  normalizeIdentity,
  policyGate,
  signatureRequired,
  type ModelPolicy,
  type Operation,
} from '../../shared/policy';
import { OperationTarget, verifySignedOperation, type Authorization } from '../../shared/signed-operation';
import type { LifecycleSpec } from '../../shared/spec';
import {
  GateDecisionInput,
  OperatorAction,
  RECURRING_DECISIONS_KEPT,
  type ApprovalRecord,
  type CheckMeasurements,
  type Decision,
  type LifecycleEvent,
  type LifecycleResult,
  type LifecycleStatus,
  type OperatorRecord,
  type PendingGate,
  Stage,
  TERMINAL_STAGES,
} from '../../shared/status';
import type { ApprovalAck, OperatorAck, PromoteNowAck } from '../../shared/messages';
import { ErrorType, type LifecycleFailureType } from '../../shared/errors';
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
  /** Recurring sample decisions left out of `decisions`, per stage and check (see RECURRING_DECISIONS_KEPT). */
  private readonly recurring = new Map<string, { stage: string; check: string; kept: number; omitted: number }>();
  /** Per check, its last passing and last failing samples (`analysis.measurementRetention` of each). */
  readonly measurements = new Map<string, CheckMeasurements>();
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
  /** Runs under the platform policy (lifecycles started before it follow their spec alone). */
  enforced = false;
  /** The platform policy's rules for this model, once loaded at start. */
  policy: ModelPolicy | null = null;
  runId = '';
  specDigest = '';
  artifactDigest: string | null = null;
  /** Where the artifact store has the artifact (null: trained before the store, or by a worker without one). */
  artifactUri: string | null = null;
  /** Nonces of every signed operation accepted: a second one with the same nonce is a replay. */
  readonly nonces = new Set<string>();
  readonly operatorActions: OperatorRecord[] = [];

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
    for (const d of decisions) {
      if (d.sample === undefined || !(d.tolerated || d.dryRun)) {
        this.decisions.push(d);
        continue;
      }
      const key = `${d.stage}\u0000${d.check}`;
      let seen = this.recurring.get(key);
      if (!seen) {
        seen = { stage: d.stage, check: d.check, kept: 0, omitted: 0 };
        this.recurring.set(key, seen);
      }
      if (seen.kept < RECURRING_DECISIONS_KEPT) {
        seen.kept++;
        this.decisions.push(d);
      } else {
        seen.omitted++;
      }
    }
    this.updatedAt = this.now();
  }

  /** How many recurring sample decisions each stage and check left out of `decisions`. */
  omittedDecisions(): { stage: string; check: string; count: number }[] {
    return [...this.recurring.values()]
      .filter((r) => r.omitted > 0)
      .map((r) => ({ stage: r.stage, check: r.check, count: r.omitted }));
  }

  /** Keeps the last `keep` passing and failing (or errored) samples of each check of `decisions`. */
  recordMeasurements(decisions: readonly Decision[], keep: number): void {
    keepMeasurements(this.measurements, decisions, keep);
  }

  fail(type: LifecycleFailureType, message: string): void {
    this.error = { type, message };
  }

  /**
   * The rules of `gate`: the spec's, tightened by the platform policy (its quorum at least, signatures where the
   * policy requires them; the spec's approvers are a subset of the policy's, checked at start).
   */
  rulesOf(gate: string): GatePolicy {
    const rules = gatePolicy(this.spec.approval, gate);
    if (!this.policy) return rules;
    const op: Operation = gate === PROMOTE_NOW ? 'promote-now' : 'approve';
    return {
      ...rules,
      quorum: Math.max(rules.quorum, policyGate(this.policy, gate).quorum),
      signed: rules.signed || signatureRequired(this.policy, op),
    };
  }

  openGate(gate: string, timeoutMs: number, escalateAfterMs?: number): void {
    const rules = this.rulesOf(gate);
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
    if (this.enforced) {
      const op = decision === 'approved' ? 'approve' : 'reject';
      this.checkSignedInput(
        op,
        input,
        OperationTarget.gate(this.id, this.runId, pending!.opening!),
        pending!.signed ?? false,
      );
      return;
    }
    if (pending?.signed) this.verifySignature(input, pending.gate, pending.opening!, decision);
  }

  /**
   * Validator half of a privileged operation under the platform policy: a signature where one is required, and one
   * that verifies with the keys loaded at start when they include the person's (the worker checks it again against
   * the keyring as it is now before anything is recorded).
   */
  private checkSignedInput(op: Operation, input: { by: string; signed?: unknown }, target: string, required: boolean) {
    if (!this.policy) throw refuse('the lifecycle is still loading its platform policy: try again in a moment');
    if (input.signed === undefined) {
      if (required || signatureRequired(this.policy, op)) {
        const gate = this.pendingGate?.gate;
        const what =
          (op === 'approve' || op === 'reject') && gate
            ? `gate "${gate}" requires a signed approval`
            : `policy rule ${this.policy.rule} requires a signed ${op}`;
        throw refuse(
          `${what}: sign it with your key (mlctl ${op} --key <file>, or MLCTL_SIGNING_KEY)`,
          ErrorType.Unauthorized,
        );
      }
      return;
    }
    const me = normalizeIdentity(input.by);
    if (!Object.keys(this.keyring).some((who) => normalizeIdentity(who) === me)) return;
    const verdict = verifySignedOperation(input.signed, this.keyring, {
      op,
      target,
      ...this.digests(),
      by: input.by,
      nowMs: Date.now(),
      usedNonces: this.nonces,
    });
    if (!verdict.ok) throw refuse(verdict.reason, ErrorType.Unauthorized);
  }

  /** What signed claims on this lifecycle bind besides their target. */
  digests(): { specDigest: string; artifactDigest: string } {
    return { specDigest: this.specDigest, artifactDigest: this.artifactDigest ?? '' };
  }

  /** Validator of an operator action under the platform policy: the person may do it, signed where required. */
  validateOperator(raw: unknown, action: 'abort' | 'pause' | 'resume'): void {
    const input = parseInput(OperatorAction, raw, action);
    if (!this.enforced) return;
    if (!this.policy) throw refuse('the lifecycle is still loading its platform policy: try again in a moment');
    const allowed = action === 'abort' ? this.policy.operators.abort : this.policy.operators.pause;
    if (!listed(allowed, input.by))
      throw refuse(
        `${input.by} may not ${action} lifecycles of ${this.spec.model}: policy rule ${this.policy.rule} allows ${allowed.join(', ') || 'no one'}`,
        ErrorType.Unauthorized,
      );
    this.checkSignedInput(action, input, OperationTarget.lifecycle(this.id, this.runId), false);
  }

  /** Records the nonce of an authorized operation; false when it was used already (a replay). */
  useNonce(auth: Extract<Authorization, { ok: true }>): boolean {
    if (auth.nonce === null) return true;
    if (this.nonces.has(auth.nonce)) return false;
    this.nonces.add(auth.nonce);
    return true;
  }

  /** An operator action the worker authorized: recorded for the audit trail, then applied. */
  applyOperator(raw: unknown, action: 'abort' | 'pause' | 'resume', auth: Extract<Authorization, { ok: true }>) {
    const input = parseInput(OperatorAction, raw, action);
    const reason = auth.reason ?? input.reason;
    this.operatorActions.push({
      action,
      by: input.by,
      at: this.now(),
      reason,
      ...(auth.keyId ? { keyId: auth.keyId } : {}),
    });
    if (this.operatorActions.length > EVENTS_LIMIT) this.operatorActions.splice(0, 1);
    const signedBy = auth.keyId ? ` (signed, key ${auth.keyId})` : '';
    const plain = { by: input.by, reason };
    if (action === 'abort') this.requestAbort(plain, signedBy);
    else if (action === 'pause') this.pause(plain, signedBy);
    else this.resume(plain, signedBy);
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

  decideGate(
    raw: unknown,
    decision: 'approved' | 'rejected',
    auth?: Extract<Authorization, { ok: true }>,
  ): ApprovalAck {
    const input = parseInput(GateDecisionInput, raw, 'gate decision');
    const gate = this.pendingGate;
    if (!gate || this.gateOutcome !== null) throw refuse('no gate is awaiting a decision', ErrorType.ApprovalRefused);
    // Under the platform policy the worker authorized it (auth); a signed claim's own reason is the one recorded.
    const signature = auth
      ? auth.keyId
        ? { keyId: auth.keyId, nonce: auth.nonce!, reason: auth.reason ?? '' }
        : null
      : gate.signed
        ? this.verifySignature(input, gate.gate, gate.opening!, decision)
        : null;
    const at = this.now();
    const reason = auth ? (auth.reason ?? input.reason) : signature?.reason || input.reason;
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
      ...new Map(
        this.approvals
          .filter((a) => a.opening === gate.opening && a.decision === 'approved')
          .map((a) => [normalizeIdentity(a.by), a.by]),
      ).values(),
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
    if (this.enforced && this.pendingGate) {
      // A promote-now would close the open gate under its own, possibly weaker, rules: decide the gate instead.
      throw refuse(
        `gate "${this.pendingGate.gate}" is open: approve it (its own quorum and signatures apply), then ask for promote-now`,
        ErrorType.ApprovalRefused,
      );
    }
    const rules = this.rulesOf(PROMOTE_NOW);
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
    if (this.enforced) {
      this.checkSignedInput('promote-now', input, OperationTarget.promoteNow(this.id, this.runId), rules.signed);
      return;
    }
    if (rules.signed) this.verifySignature(input, PROMOTE_NOW, `${PROMOTE_NOW}#1`, 'approved');
  }

  requestPromoteNow(raw: unknown, auth?: Extract<Authorization, { ok: true }>): PromoteNowAck {
    const input = parseInput(GateDecisionInput, raw, 'promote-now request');
    const rules = this.rulesOf(PROMOTE_NOW);
    const signature = auth
      ? auth.keyId
        ? { keyId: auth.keyId, nonce: auth.nonce!, reason: auth.reason ?? '' }
        : null
      : rules.signed
        ? this.verifySignature(input, PROMOTE_NOW, `${PROMOTE_NOW}#1`, 'approved')
        : null;
    const at = this.now();
    const reason = auth ? (auth.reason ?? input.reason) : signature?.reason || input.reason;
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
    const requestedBy = [
      ...new Map(
        this.approvals.filter((a) => a.gate === PROMOTE_NOW).map((a) => [normalizeIdentity(a.by), a.by]),
      ).values(),
    ];
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

  pause(raw: unknown, signedBy = ''): void {
    const a = parseInput(OperatorAction, raw, 'operator action');
    if (this.paused) return;
    this.paused = true;
    this.event(`paused by ${a.by}${signedBy}${a.reason ? `: ${a.reason}` : ''}`);
  }

  resume(raw: unknown, signedBy = ''): void {
    const a = parseInput(OperatorAction, raw, 'operator action');
    if (!this.paused) return;
    this.paused = false;
    this.event(`resumed by ${a.by}${signedBy}${a.reason ? `: ${a.reason}` : ''}`);
  }

  requestAbort(raw: unknown, signedBy = ''): void {
    const a = parseInput(OperatorAction, raw, 'operator action');
    if (this.abort) return;
    this.abort = { by: a.by, reason: a.reason, at: this.now() };
    this.event(`abort requested by ${a.by}${signedBy}${a.reason ? `: ${a.reason}` : ''}`);
  }

  status(): LifecycleStatus {
    const omitted = this.omittedDecisions();
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
      // A decided gate is no longer awaiting anyone, though the lifecycle may still be finishing the step it was on
      // when the decision came (an alert on its opening): an approver reading this must not be asked again.
      pendingGate: this.gateOutcome === null ? this.pendingGate : null,
      approvals: this.approvals,
      decisions: this.decisions,
      ...(omitted.length > 0 ? { omittedDecisions: omitted } : {}),
      ...(this.measurements.size > 0 ? { measurements: Object.fromEntries(this.measurements) } : {}),
      events: this.events,
      error: this.error,
      promoteNow: this.promoteNow,
      startedAt: this.startedAt,
      updatedAt: this.updatedAt,
      ...(this.enforced
        ? {
            runId: this.runId,
            specDigest: this.specDigest,
            artifactDigest: this.artifactDigest,
            ...(this.policy ? { policyRule: this.policy.rule } : {}),
            operatorActions: this.operatorActions,
          }
        : {}),
    };
  }

  result(): LifecycleResult {
    return { stage: this.stage, version: this.spec.version, trafficPercent: this.trafficPercent, error: this.error };
  }
}

/** Each check's last passing and failing (or errored) samples, by check name. */
export type Measurements = Map<string, CheckMeasurements>;

/** Keeps the last `keep` passing and failing (or errored) samples of each check of `decisions`, in their order. */
export function keepMeasurements(measurements: Measurements, decisions: readonly Decision[], keep: number): void {
  for (const d of decisions) {
    if (d.outcome === 'inconclusive') continue;
    let m = measurements.get(d.check);
    if (!m) {
      m = { passed: [], failed: [] };
      measurements.set(d.check, m);
    }
    const list = d.outcome === 'pass' ? m.passed : m.failed;
    list.push(d);
    if (list.length > keep) list.splice(0, list.length - keep);
  }
}
