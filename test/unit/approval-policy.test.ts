import { describe, expect, it } from 'vitest';
import { checkGateDecision, gateOutcome, gatePolicy, type GatePolicyInput } from '../../src/domain/approval-policy';
import type { ApprovalRecord, PendingGate } from '../../src/shared/status';

const PENDING: PendingGate = {
  gate: 'deploy',
  approvers: ['alice', 'bob'],
  openedAt: '2025-01-01T00:00:00.000Z',
  deadline: '2025-01-02T00:00:00.000Z',
};

function input(overrides: Partial<GatePolicyInput> = {}): GatePolicyInput {
  return {
    pending: PENDING,
    gate: undefined,
    by: 'alice',
    submittedBy: 'ci@pipelines',
    approvers: ['alice', 'bob'],
    decision: 'approved',
    recorded: [],
    ...overrides,
  };
}

function record(overrides: Partial<ApprovalRecord>): ApprovalRecord {
  return {
    gate: 'deploy',
    stage: 'awaiting-approval',
    by: 'alice',
    decision: 'approved',
    reason: '',
    at: '2025-01-01T01:00:00.000Z',
    ...overrides,
  };
}

describe('checkGateDecision', () => {
  it('accepts a named approver deciding the pending gate, and returns that gate', () => {
    expect(checkGateDecision(input())).toEqual({ ok: true, gate: 'deploy' });
    expect(checkGateDecision(input({ gate: 'deploy', by: 'bob', decision: 'rejected' }))).toEqual({
      ok: true,
      gate: 'deploy',
    });
  });

  it('refuses any decision when no gate is pending', () => {
    expect(checkGateDecision(input({ pending: null }))).toEqual({
      ok: false,
      reason: 'no gate is awaiting a decision',
    });
    expect(checkGateDecision(input({ pending: null, gate: 'deploy' })).ok).toBe(false);
  });

  it('refuses a decision on a gate other than the pending one, naming both', () => {
    expect(checkGateDecision(input({ gate: 'ramp-50' }))).toEqual({
      ok: false,
      reason: 'gate "ramp-50" is not pending (pending: "deploy")',
    });
  });

  it('refuses the submitter deciding its own lifecycle, even when listed as an approver', () => {
    const result = checkGateDecision(input({ by: 'alice', submittedBy: 'alice' }));
    expect(result).toEqual({
      ok: false,
      reason: '"alice" submitted this lifecycle and cannot approve or reject its own gates',
    });
    expect(checkGateDecision(input({ by: 'alice', submittedBy: 'alice', decision: 'rejected' })).ok).toBe(false);
  });

  it('refuses someone who is not an approver, and names the approvers in the reason', () => {
    expect(checkGateDecision(input({ by: 'mallory' }))).toEqual({
      ok: false,
      reason: '"mallory" is not an approver of gate "deploy" (approvers: alice, bob)',
    });
  });

  it('refuses a second decision by the same person on the same gate', () => {
    const result = checkGateDecision(input({ by: 'alice', recorded: [record({ by: 'alice' })] }));
    expect(result).toEqual({ ok: false, reason: '"alice" has already decided gate "deploy"' });
  });

  it('lets another approver decide a gate someone else already decided', () => {
    expect(checkGateDecision(input({ by: 'bob', recorded: [record({ by: 'alice' })] }))).toEqual({
      ok: true,
      gate: 'deploy',
    });
  });

  it('lets a person decide a new gate after deciding an earlier one', () => {
    const pending: PendingGate = { ...PENDING, gate: 'ramp-50' };
    expect(checkGateDecision(input({ pending, recorded: [record({ gate: 'deploy', by: 'alice' })] }))).toEqual({
      ok: true,
      gate: 'ramp-50',
    });
  });
});

describe('quorum', () => {
  const pending: PendingGate = { ...PENDING, opening: 'deploy#2', quorum: 2 };
  const at = (by: string, decision: 'approved' | 'rejected', opening = 'deploy#2') => record({ by, decision, opening });

  it('stays open until the quorum of distinct approvers approved', () => {
    expect(gateOutcome(pending, [])).toBeNull();
    expect(gateOutcome(pending, [at('alice', 'approved')])).toBeNull();
    expect(gateOutcome(pending, [at('alice', 'approved'), at('bob', 'approved')])).toBe('approved');
  });

  it('is rejected by any one rejection, whatever the approvals', () => {
    expect(gateOutcome(pending, [at('alice', 'approved'), at('bob', 'rejected')])).toBe('rejected');
  });

  it('counts only decisions on this opening of the gate', () => {
    expect(gateOutcome(pending, [at('alice', 'approved', 'deploy#1'), at('bob', 'approved')])).toBeNull();
    // The same person may decide a later opening of a gate they decided before.
    expect(checkGateDecision(input({ pending, by: 'alice', recorded: [at('alice', 'approved', 'deploy#1')] }))).toEqual(
      { ok: true, gate: 'deploy' },
    );
    expect(checkGateDecision(input({ pending, by: 'alice', recorded: [at('alice', 'approved')] })).ok).toBe(false);
  });

  it('takes approvers, quorum and signatures from the gate when it overrides them', () => {
    const approval = {
      approvers: ['alice', 'bob', 'carol'],
      quorum: 2,
      timeout: 1000,
      escalateTo: [],
      signed: false,
      gates: { 'ramp-100': { quorum: 3, signed: true }, 'promote-now': { approvers: ['carol'], quorum: 1 } },
    };
    expect(gatePolicy(approval, 'deploy')).toEqual({
      gate: 'deploy',
      approvers: ['alice', 'bob', 'carol'],
      quorum: 2,
      signed: false,
    });
    expect(gatePolicy(approval, 'ramp-100')).toMatchObject({ quorum: 3, signed: true });
    expect(gatePolicy(approval, 'promote-now')).toMatchObject({ approvers: ['carol'], quorum: 1, signed: false });
  });
});
