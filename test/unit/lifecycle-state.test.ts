import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSpecFile } from '../../src/client/spec-file';
import { formatStatus } from '../../src/cli/format';
import type { Decision } from '../../src/shared/status';
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

describe('LifecycleState decisions over a long bake', () => {
  const decision = (check: string, sample: number, extra: Partial<Decision>): Decision => ({
    stage: 'canary',
    check,
    value: 0.3,
    threshold: 0.25,
    outcome: 'fail',
    at: `2026-01-01T${String(Math.floor(sample / 60) % 24).padStart(2, '0')}:${String(sample % 60).padStart(2, '0')}:00.000Z`,
    rule: `${check} <= 0.25`,
    detail: 'x'.repeat(200),
    sample,
    ...extra,
  });

  it('keeps the first 20 dry-run and tolerated failures of a check, counts the rest, and always keeps what stops it', () => {
    const lc = openState();
    lc.addDecisions([decision('errorRate', 0, { outcome: 'pass', sample: undefined })]);
    // A 24 h bake sampled every minute: a dry-run check fails every sample, an enforced one is tolerated every other.
    for (let sample = 1; sample <= 1440; sample++) {
      lc.addDecisions([
        decision('predictionDrift', sample, { dryRun: true }),
        ...(sample % 2 === 0 ? [decision('latencyP99', sample, { tolerated: true })] : []),
      ]);
    }
    // The failure that stops the rollout, then the readout of the stage.
    lc.addDecisions([decision('latencyP99', 1441, {})]);
    lc.addDecisions([
      decision('latencyP99', 0, { sample: undefined }),
      decision('featureSkew', 0, { sample: undefined }),
    ]);

    const status = lc.status();
    const of = (check: string) => status.decisions.filter((d) => d.check === check);
    expect(of('predictionDrift').map((d) => d.sample)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(of('latencyP99').map((d) => d.sample)).toEqual([
      ...Array.from({ length: 20 }, (_, i) => 2 * (i + 1)),
      1441,
      undefined,
    ]);
    expect(of('featureSkew')).toHaveLength(1);
    expect(of('errorRate')).toHaveLength(1);
    expect(status.omittedDecisions).toEqual([
      { stage: 'canary', check: 'predictionDrift', count: 1420 },
      { stage: 'canary', check: 'latencyP99', count: 700 },
    ]);
    expect(formatStatus(status)).toContain(
      '(canary predictionDrift: 1420 more tolerated or dry-run failures after the first 20; last ones below)',
    );
    // What a status read carries stays small: about 60 decisions instead of 2,165.
    expect(JSON.stringify(status).length).toBeLessThan(40_000);
  });

  it('counts per stage: each ramp step keeps its own first failures', () => {
    const lc = openState();
    for (const stage of ['canary', 'ramping:50']) {
      for (let sample = 1; sample <= 25; sample++) {
        lc.addDecisions([{ ...decision('predictionDrift', sample, { dryRun: true }), stage }]);
      }
    }
    expect(lc.status().decisions).toHaveLength(40);
    expect(lc.status().omittedDecisions).toEqual([
      { stage: 'canary', check: 'predictionDrift', count: 5 },
      { stage: 'ramping:50', check: 'predictionDrift', count: 5 },
    ]);
    expect(openState().status()).not.toHaveProperty('omittedDecisions');
  });
});
