import type { ApprovalSpec } from '../shared/spec';
import type { ApprovalRecord, PendingGate } from '../shared/status';
import { own } from '../shared/own';
import { listed, normalizeIdentity, sameIdentity } from '../shared/policy';

/** The rules of one gate: the lifecycle's approval policy with the gate's own overrides applied. */
export interface GatePolicy {
  gate: string;
  approvers: string[];
  /** Approvals from distinct approvers the gate needs. */
  quorum: number;
  /** Approvals must carry the approver's signature. */
  signed: boolean;
}

export function gatePolicy(approval: ApprovalSpec, gate: string): GatePolicy {
  const rules = own(approval.gates, gate);
  return {
    gate,
    approvers: [...(rules?.approvers ?? approval.approvers)],
    quorum: rules?.quorum ?? approval.quorum ?? 1,
    signed: rules?.signed ?? approval.signed ?? false,
  };
}

export interface GatePolicyInput {
  pending: PendingGate | null;
  /** The gate the caller names, if any. */
  gate: string | undefined;
  by: string;
  submittedBy: string;
  approvers: readonly string[];
  decision: 'approved' | 'rejected';
  /** Decisions already recorded on this gate. */
  recorded: readonly ApprovalRecord[];
}

export type GatePolicyResult = { ok: true; gate: string } | { ok: false; reason: string };

/**
 * Who may decide a gate: only a named approver, never the lifecycle's submitter, only while that gate is pending,
 * and once per person per opening of the gate (so a quorum counts distinct people).
 */
export function checkGateDecision(input: GatePolicyInput): GatePolicyResult {
  const { pending } = input;
  if (!pending) return { ok: false, reason: 'no gate is awaiting a decision' };
  if (input.gate !== undefined && input.gate !== pending.gate) {
    return { ok: false, reason: `gate "${input.gate}" is not pending (pending: "${pending.gate}")` };
  }
  if (sameIdentity(input.by, input.submittedBy)) {
    return { ok: false, reason: `"${input.by}" submitted this lifecycle and cannot approve or reject its own gates` };
  }
  if (!listed(input.approvers, input.by)) {
    return {
      ok: false,
      reason: `"${input.by}" is not an approver of gate "${pending.gate}" (approvers: ${input.approvers.join(', ')})`,
    };
  }
  const sameOpening = (r: ApprovalRecord) =>
    r.gate === pending.gate &&
    (pending.opening === undefined || r.opening === undefined || r.opening === pending.opening);
  if (input.recorded.some((r) => sameOpening(r) && sameIdentity(r.by, input.by))) {
    return { ok: false, reason: `"${input.by}" has already decided gate "${pending.gate}"` };
  }
  return { ok: true, gate: pending.gate };
}

/**
 * Where a gate stands after its recorded decisions: rejected by any one rejection, approved once `quorum` distinct
 * approvers approved, otherwise still open.
 */
export function gateOutcome(pending: PendingGate, recorded: readonly ApprovalRecord[]): 'approved' | 'rejected' | null {
  const mine = recorded.filter((r) => r.gate === pending.gate && r.opening === pending.opening && r.by !== 'system');
  if (mine.some((r) => r.decision === 'rejected')) return 'rejected';
  const approvedBy = new Set(mine.filter((r) => r.decision === 'approved').map((r) => normalizeIdentity(r.by)));
  return approvedBy.size >= (pending.quorum ?? 1) ? 'approved' : null;
}
