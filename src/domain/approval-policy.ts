import type { ApprovalRecord, PendingGate } from '../shared/status';

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
 * and once per person per gate.
 */
export function checkGateDecision(input: GatePolicyInput): GatePolicyResult {
  const { pending } = input;
  if (!pending) return { ok: false, reason: 'no gate is awaiting a decision' };
  if (input.gate !== undefined && input.gate !== pending.gate) {
    return { ok: false, reason: `gate "${input.gate}" is not pending (pending: "${pending.gate}")` };
  }
  if (input.by === input.submittedBy) {
    return { ok: false, reason: `"${input.by}" submitted this lifecycle and cannot approve or reject its own gates` };
  }
  if (!input.approvers.includes(input.by)) {
    return {
      ok: false,
      reason: `"${input.by}" is not an approver of this lifecycle (approvers: ${input.approvers.join(', ')})`,
    };
  }
  if (input.recorded.some((r) => r.gate === pending.gate && r.by === input.by)) {
    return { ok: false, reason: `"${input.by}" has already decided gate "${pending.gate}"` };
  }
  return { ok: true, gate: pending.gate };
}
