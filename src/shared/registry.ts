import type { DeploymentTargetSpec } from '../targets/spec';

/** Model registry: which version serves production, and the history of how it got there. */
export interface PromotionRecord {
  model: string;
  version: string;
  artifactDir: string;
  metrics: Record<string, number>;
  /** The lifecycle that promoted it: the idempotency key of the promotion. */
  lifecycleId: string;
  by: string;
  at: string;
  /** `rollback` when a rollback put this version back (its `lifecycleId` is then the rollback's workflow id). */
  kind?: 'promotion' | 'rollback';
  reason?: string;
  /** The quota the version holds while it serves, so a rollback can hand it back and take it again. */
  serving?: { pool: string; leaseId: string; resources: Record<string, number> };
  /** Where it serves, when not the worker's gateway: a rollback acts on the same target. */
  target?: DeploymentTargetSpec;
}

export interface RegistryState {
  model: string;
  production: PromotionRecord | null;
  previous: PromotionRecord | null;
  history: PromotionRecord[];
}

/** Workflow id of a model's registry entity workflow. */
export function registryWorkflowId(model: string): string {
  return `model-registry-${model}`;
}

/** Workflow id of a rollback of `model` requested at `at` (epoch ms). */
export function rollbackWorkflowId(model: string, at: number): string {
  return `rollback-${model}-${at.toString(36)}`;
}

/** Steps of a gradual rollback: the restored version's percentages, increasing within (0, 100] and ending at 100. */
export function validRollbackSteps(steps: readonly number[]): boolean {
  return steps.at(-1) === 100 && steps.every((p, i) => p > 0 && p <= 100 && (i === 0 || p > steps[i - 1]!));
}
