/** Alert kinds raised once by a workflow at the moment something happens (each is its own incident). */
export const EVENT_ALERT_KINDS = [
  'training-failed',
  'training-slow',
  'validation-failed',
  'quota-refused',
  'approval-timeout',
  'approval-escalation',
  'rollout-inconclusive',
  'rollback',
  'deployment-failed',
  'monitor-action',
] as const;

/** Alert kinds of the serving monitor's conditions (the keys of a spec's `monitoring.actions`). */
export const SERVING_ALERT_KINDS = [
  'serving-skew',
  'prediction-drift',
  'input-quality',
  'serving-latency',
  'serving-outage',
  'model-quality',
  'serving-quota',
] as const;

/** Alert kinds of conditions a monitor observes over time: they fire after M of N bad checks and resolve. */
export const CONDITION_ALERT_KINDS = [
  'quota-usage-high',
  'quota-exhaustion-forecast',
  'quota-faulty-pipeline',
  'quota-lease-expired',
  ...SERVING_ALERT_KINDS,
  'data-drift',
  'label-drift',
  'data-types',
  'data-quota-rate',
] as const;

export type AlertKind = (typeof EVENT_ALERT_KINDS)[number] | (typeof CONDITION_ALERT_KINDS)[number];

/** An alert raised by a workflow or monitor; delivered through the alert path (log sink first). */
export interface Alert {
  kind: AlertKind;
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
  /** The team the alert is routed to (the first matching route's owner), when routes name one. */
  owner?: string;
}

export type Severity = Alert['severity'];

/** What happens when a monitor's incident fires, besides the notification. */
export const MONITOR_ACTIONS = ['notify', 'hold', 'rollback', 'retrain'] as const;
export type MonitorAction = (typeof MONITOR_ACTIONS)[number];

/** M-of-N hysteresis: fire after `fireAfter` bad checks among the last `window`, resolve after `resolveAfter` good ones in a row. */
export interface Hysteresis {
  fireAfter: number;
  window: number;
  resolveAfter: number;
}

export const DEFAULT_HYSTERESIS: Hysteresis = { fireAfter: 3, window: 5, resolveAfter: 3 };

/**
 * One check of one monitored condition at one moment: `firing` true when the check is bad, false when good, null
 * when it could not tell (too few samples: it neither fires nor resolves). The condition's `key` names the incident
 * stream (`serving:churn:prediction-drift`); the router numbers each incident of it.
 */
export interface Observation {
  key: string;
  kind: AlertKind;
  severity: Severity;
  firing: boolean | null;
  summary: string;
  model?: string;
  version?: string;
  pool?: string;
  lifecycleId?: string;
  details?: Record<string, unknown>;
  /** Default DEFAULT_HYSTERESIS. */
  hysteresis?: Hysteresis;
  /** Default notify. Held off `actionDelayMs` after firing, so a human can override it. */
  action?: MonitorAction;
  actionDelayMs?: number;
  /**
   * What the action needs: a retraining starts a lifecycle from this spec with a new version; a rollback goes to the
   * registry's previous version.
   */
  actionContext?: { retrainSpec?: unknown };
  /** Whether a rollout of `model` acting on it silences this condition (default true for model conditions). */
  silencedByRollout?: boolean;
  /** ISO time of the check. */
  at: string;
}

export type IncidentState = 'pending' | 'firing' | 'suppressed';

/** An entry of the alert history: what was raised, fired, resolved, suppressed, delivered, acted on. */
export interface AlertRecord {
  seq: number;
  at: string;
  event:
    | 'fired'
    | 'resolved'
    | 'suppressed'
    | 'delivered'
    | 'delivery-failed'
    | 'action-scheduled'
    | 'action-taken'
    | 'action-overridden'
    | 'action-failed'
    | 'silenced'
    | 'unsilenced';
  incident?: string;
  kind?: AlertKind;
  severity?: Severity;
  model?: string;
  version?: string;
  pool?: string;
  summary: string;
  owner?: string;
  sinks?: string[];
  by?: string;
}

/** An open incident as the router holds it. */
export interface OpenIncident {
  incident: string;
  key: string;
  kind: AlertKind;
  severity: Severity;
  state: IncidentState;
  since: string;
  summary: string;
  model?: string;
  version?: string;
  pool?: string;
  /** The pending automated action and when it runs, if any. */
  action?: { kind: MonitorAction; dueAt: string; by?: string };
}

export interface ModelSilence {
  model: string;
  until: string;
  by: string;
  reason: string;
}

export interface AlertRouterState {
  open: OpenIncident[];
  silences: ModelSilence[];
  history: AlertRecord[];
  observations: number;
  deliveries: { pending: number; done: number; failed: number };
}
