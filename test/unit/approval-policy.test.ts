import { describe, expect, it } from 'vitest';
import { checkGateDecision, type GatePolicyInput } from '../../src/domain/approval-policy';
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
      reason: '"mallory" is not an approver of this lifecycle (approvers: alice, bob)',
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
