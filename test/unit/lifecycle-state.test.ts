import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSpecFile } from '../../src/client/spec-file';
import { LifecycleState } from '../../src/workflows/lifecycle/state';

const SPEC = loadSpecFile(join(__dirname, '..', '..', 'examples', 'churn', 'specs', 'good.yaml'), { version: 'v1' });

function openState(quorum = 1): LifecycleState {
  const spec = structuredClone(SPEC);
  spec.approval.quorum = quorum;
  const lc = new LifecycleState(spec, 'lifecycle-churn-v1', '2026-01-01T00:00:00.000Z', () => undefined);
  lc.openGate('deploy', 3_600_000);
  return lc;
}

describe('LifecycleState gate as its status shows it', () => {
  it('stops showing a gate as pending the moment it is decided, before the workflow closes it', () => {
    const lc = openState();
    expect(lc.status().pendingGate).toMatchObject({ gate: 'deploy', opening: 'deploy#1' });
    lc.validateGate({ by: 'alice' }, 'approved');
    expect(lc.decideGate({ by: 'alice' }, 'approved').outcome).toBe('approved');
    // The workflow may still be on the step it was on when the approval came (the alert on the gate's opening):
    // nobody reading the status is asked to decide again, and a second approval is refused.
    expect(lc.status().pendingGate).toBeNull();
    expect(() => lc.validateGate({ by: 'bob' }, 'approved')).toThrow('no gate is awaiting a decision');
    expect(lc.status().approvals.map((a) => a.by)).toEqual(['alice']);
  });

  it('keeps a quorum gate pending, with who approved so far, until the quorum is reached', () => {
    const lc = openState(2);
    lc.decideGate({ by: 'alice' }, 'approved');
    expect(lc.status().pendingGate).toMatchObject({ gate: 'deploy', quorum: 2, approvedBy: ['alice'] });
    lc.decideGate({ by: 'bob' }, 'approved');
    expect(lc.status().pendingGate).toBeNull();
  });
});
