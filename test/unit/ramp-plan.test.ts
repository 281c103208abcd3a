import { describe, expect, it } from 'vitest';
import { buildRampPlan, stageWeights, totalBakeMs } from '../../src/domain/ramp-plan';
import { RolloutSpec } from '../../src/shared/spec';

const rollout = RolloutSpec.parse({
  canary: { percent: 5, bake: '2m' },
  steps: [
    { percent: 25, bake: '5m' },
    { percent: 50, bake: '10m', approval: true },
    { percent: 100, bake: '30s', approval: true },
  ],
});

describe('buildRampPlan', () => {
  it('starts with the canary and follows every ramp step in order when a stable version exists', () => {
    expect(buildRampPlan(rollout, true)).toEqual([
      { index: 0, kind: 'canary', label: 'canary', percent: 5, bakeMs: 120_000, gate: null },
      { index: 1, kind: 'ramping', label: 'ramping:25', percent: 25, bakeMs: 300_000, gate: null },
      { index: 2, kind: 'ramping', label: 'ramping:50', percent: 50, bakeMs: 600_000, gate: 'ramp-50' },
      { index: 3, kind: 'ramping', label: 'ramping:100', percent: 100, bakeMs: 30_000, gate: 'ramp-100' },
    ]);
  });

  it('gives a first deployment one 100% stage that bakes for the canary bake, with no gate', () => {
    expect(buildRampPlan(rollout, false)).toEqual([
      { index: 0, kind: 'canary', label: 'initial:100', percent: 100, bakeMs: 120_000, gate: null },
    ]);
  });

  it('opens a gate only before the steps that ask for an approval', () => {
    const plan = buildRampPlan(rollout, true);
    expect(plan.filter((s) => s.gate !== null).map((s) => [s.label, s.gate])).toEqual([
      ['ramping:50', 'ramp-50'],
      ['ramping:100', 'ramp-100'],
    ]);
  });

  it('labels and indexes stages uniquely so they can key idempotent stage work', () => {
    const plan = buildRampPlan(rollout, true);
    expect(new Set(plan.map((s) => s.label)).size).toBe(plan.length);
    expect(plan.map((s) => s.index)).toEqual([0, 1, 2, 3]);
  });
});

describe('stageWeights', () => {
  it('splits traffic between the candidate and the stable version', () => {
    expect(stageWeights('v2', 'v1', 10)).toEqual({ v2: 10, v1: 90 });
    expect(stageWeights('v2', 'v1', 50)).toEqual({ v2: 50, v1: 50 });
  });

  it('keeps the stable version at weight 0 when the candidate takes all traffic', () => {
    expect(stageWeights('v2', 'v1', 100)).toEqual({ v2: 100, v1: 0 });
  });

  it('gives the candidate all traffic when there is no stable version, whatever the percent', () => {
    expect(stageWeights('v1', null, 100)).toEqual({ v1: 100 });
    expect(stageWeights('v1', null, 10)).toEqual({ v1: 100 });
  });

  it('always sums the weights to 100', () => {
    for (const percent of [1, 5, 33, 99, 100]) {
      const weights = stageWeights('cand', 'stab', percent);
      expect(Object.values(weights).reduce((a, b) => a + b, 0)).toBe(100);
    }
  });
});

describe('totalBakeMs', () => {
  it('adds the bake of every stage of the plan', () => {
    expect(totalBakeMs(buildRampPlan(rollout, true))).toBe(120_000 + 300_000 + 600_000 + 30_000);
    expect(totalBakeMs(buildRampPlan(rollout, false))).toBe(120_000);
  });

  it('is zero for an empty plan', () => {
    expect(totalBakeMs([])).toBe(0);
  });
});
