import type { RolloutSpec } from '../shared/spec';

/** One traffic stage of a rollout. */
export interface RampStage {
  /** Index in the plan; part of every idempotency key of the stage. */
  index: number;
  kind: 'canary' | 'ramping';
  /** Label used in decisions and approvals: `canary`, `ramping:25`, `initial:100`. */
  label: string;
  percent: number;
  bakeMs: number;
  /** Name of the approval gate that must pass before traffic moves to this stage, if any. */
  gate: string | null;
}

/**
 * The stages a candidate goes through. With a stable version to compare against: the canary, then each ramp step.
 * Without one (the model's first deployment) there is no one to share traffic with, so the candidate takes all of it
 * at once and bakes for the canary's bake under the absolute checks only.
 */
export function buildRampPlan(rollout: RolloutSpec, hasStable: boolean): RampStage[] {
  if (!hasStable) {
    return [{ index: 0, kind: 'canary', label: 'initial:100', percent: 100, bakeMs: rollout.canary.bake, gate: null }];
  }
  const stages: RampStage[] = [
    {
      index: 0,
      kind: 'canary',
      label: 'canary',
      percent: rollout.canary.percent,
      bakeMs: rollout.canary.bake,
      gate: null,
    },
  ];
  rollout.steps.forEach((step, i) => {
    stages.push({
      index: i + 1,
      kind: 'ramping',
      label: `ramping:${step.percent}`,
      percent: step.percent,
      bakeMs: step.bake,
      gate: step.approval ? `ramp-${step.percent}` : null,
    });
  });
  return stages;
}

/** Gateway weights for a stage: the candidate's share and the rest to the stable version. */
export function stageWeights(candidate: string, stable: string | null, percent: number): Record<string, number> {
  if (stable === null || percent >= 100)
    return stable === null ? { [candidate]: 100 } : { [candidate]: 100, [stable]: 0 };
  return { [candidate]: percent, [stable]: 100 - percent };
}

/** Total bake time of a plan, for estimates in status and docs. */
export function totalBakeMs(stages: readonly RampStage[]): number {
  return stages.reduce((sum, s) => sum + s.bakeMs, 0);
}
