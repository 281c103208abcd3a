/** An alert raised by a workflow or monitor; delivered through the alert path (log sink first). */
export interface Alert {
  kind:
    | 'training-failed'
    | 'validation-failed'
    | 'quota-refused'
    | 'approval-timeout'
    | 'rollout-inconclusive'
    | 'rollback'
    | 'deployment-failed';
  severity: 'info' | 'warning' | 'critical';
  model: string;
  version?: string;
  lifecycleId?: string;
  summary: string;
  details?: Record<string, unknown>;
  /** Same key, same incident: sinks deduplicate on it. */
  dedupKey: string;
}
