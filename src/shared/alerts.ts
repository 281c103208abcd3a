/** An alert raised by a workflow or monitor; delivered through the alert path (log sink first). */
export interface Alert {
  kind:
    | 'training-failed'
    | 'validation-failed'
    | 'quota-refused'
    | 'approval-timeout'
    | 'approval-escalation'
    | 'rollout-inconclusive'
    | 'rollback'
    | 'deployment-failed'
    | 'quota-usage-high'
    | 'quota-exhaustion-forecast'
    | 'quota-faulty-pipeline'
    | 'quota-lease-expired';
  severity: 'info' | 'warning' | 'critical';
  /** The model concerned; absent for alerts about shared resources (a quota pool). */
  model?: string;
  version?: string;
  lifecycleId?: string;
  /** The quota pool concerned, for quota alerts. */
  pool?: string;
  summary: string;
  details?: Record<string, unknown>;
  /** Same key, same incident: sinks deduplicate on it. */
  dedupKey: string;
  /** True on the message that closes the incident `dedupKey` opened. */
  resolved?: boolean;
}
