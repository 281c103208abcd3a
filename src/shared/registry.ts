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
