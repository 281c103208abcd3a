import { z } from 'zod';
import { MAX_DURATION_MS } from './duration';
import { Identity, ModelName, PoolName, VersionName } from './names';
import { clipped } from './text';

/** Alert kinds raised once by a workflow at the moment something happens (each is its own incident). */
export const EVENT_ALERT_KINDS = [
  'training-failed',
  'training-slow',
  'validation-failed',
  'quota-refused',
  'approval-timeout',
  'approval-escalation',
  /** A gate opened: its approvers are asked at once (delivered without the router's group wait). */
  'approval-requested',
  'rollout-inconclusive',
  /** A dry-run check failed: measured and recorded, not enforced. */
  'analysis-dry-run',
  'rollback',
  /** Traffic could not be put back on the stable version: the candidate may still serve (critical, pages). */
  'rollback-stuck',
  /** An error the lifecycle did not expect ended it before anything reached traffic. */
  'lifecycle-failed',
  'deployment-failed',
  'monitor-action',
  /**
   * A lifecycle entered a stage (promotion included): an event for CI systems and dashboards, delivered only to the
   * sinks of routes that name this kind (never to every sink), at once and with an idempotency key per change.
   */
  'stage-changed',
] as const;

/** Alert kinds of the serving monitor's conditions (the keys of a spec's `monitoring.actions`). */
export const SERVING_ALERT_KINDS = [
  'serving-skew',
  'prediction-drift',
  'input-quality',
  'serving-latency',
  'serving-outage',
  'model-quality',
  'estimated-quality',
  'serving-quota',
  /** A metric check of the monitor (Prometheus, web) failed or could not be measured. */
  'serving-metric',
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

/** Longest summary an alert or observation keeps; a longer one is cut (an alert is never dropped for its length). */
export const MAX_SUMMARY_CHARS = 2000;
/** Most JSON one alert's or observation's `details` may take; larger details are replaced by a note of their size. */
export const MAX_DETAILS_BYTES = 32 * 1024;

const Severity = z.enum(['info', 'warning', 'critical']);
const AlertKind = z.enum([...EVENT_ALERT_KINDS, ...CONDITION_ALERT_KINDS]);

/** A summary as given, cut to MAX_SUMMARY_CHARS. */
const Summary = z.string().transform((s) => clipped(s, MAX_SUMMARY_CHARS));

/** JSON size of a value (what it costs in a payload); Infinity when it cannot be serialised. */
function jsonBytes(value: unknown): number {
  try {
    return JSON.stringify(value)?.length ?? 0;
  } catch {
    return Infinity;
  }
}

/** Details as given, or a note of their size when they would make the alert's payload large. */
const Details = z.record(z.string(), z.unknown()).transform((d): Record<string, unknown> => {
  const bytes = jsonBytes(d);
  if (bytes <= MAX_DETAILS_BYTES) return d;
  return { truncated: true, bytes, keys: Object.keys(d).slice(0, 20) };
});

/** An incident stream's or alert's key (`serving:churn:prediction-drift`, `lifecycle-churn-v7:rollback:1`). */
const AlertKey = z
  .string()
  .min(1)
  .max(512)
  .refine((k) => k !== '__proto__', 'not "__proto__"');

/** An alert raised by a workflow or monitor; delivered through the alert path (log sink first). */
export const Alert = z
  .object({
    kind: AlertKind,
    severity: Severity,
    /** The model concerned; absent for alerts about shared resources (a quota pool). */
    model: ModelName.optional(),
    version: VersionName.optional(),
    lifecycleId: z.string().min(1).max(256).optional(),
    /** The quota pool concerned, for quota alerts. */
    pool: PoolName.optional(),
    summary: Summary,
    details: Details.optional(),
    /** Same key, same incident: sinks deduplicate on it. */
    dedupKey: AlertKey,
    /** True on the message that closes the incident `dedupKey` opened. */
    resolved: z.boolean().optional(),
    /**
     * An incident that stays open until its resolve: Alertmanager sinks give it `endsAt` ahead and the router re-sends
     * it (set by the router; one-off alerts leave it out).
     */
    open: z.boolean().optional(),
    /** The team the alert is routed to (the first matching route's owner), when routes name one. */
    owner: z.string().max(256).optional(),
    /** The people it is addressed to (a gate's approvers): routes may match them (`match.audience`). */
    audience: z.array(Identity).max(100).optional(),
  })
  .strict();
export type Alert = z.output<typeof Alert>;

/** Kinds delivered as soon as they are raised, without waiting to be grouped: someone must act on them now. */
export const IMMEDIATE_ALERT_KINDS: readonly AlertKind[] = ['approval-requested', 'stage-changed'];

/** Kinds delivered only to routes that name them: events for machines, which no sink takes unless it asked. */
export const SUBSCRIBED_ALERT_KINDS: readonly AlertKind[] = ['stage-changed'];

export type Severity = z.output<typeof Severity>;

/** What happens when a monitor's incident fires, besides the notification. */
export const MONITOR_ACTIONS = ['notify', 'hold', 'rollback', 'retrain'] as const;
export type MonitorAction = (typeof MONITOR_ACTIONS)[number];

/** M-of-N hysteresis: fire after `fireAfter` bad checks among the last `window`, resolve after `resolveAfter` good ones in a row. */
export const Hysteresis = z
  .object({
    fireAfter: z.number().int().min(1).max(1000),
    window: z.number().int().min(1).max(1000),
    resolveAfter: z.number().int().min(1).max(1000),
  })
  .strict()
  .refine((h) => h.window >= h.fireAfter, 'window must be at least fireAfter');
export type Hysteresis = z.output<typeof Hysteresis>;

export const DEFAULT_HYSTERESIS: Hysteresis = { fireAfter: 3, window: 5, resolveAfter: 3 };

/** Most JSON an observation's retraining spec may take. */
const MAX_RETRAIN_SPEC_BYTES = 256 * 1024;

/**
 * One check of one monitored condition at one moment: `firing` true when the check is bad, false when good, null
 * when it could not tell (too few samples: it neither fires nor resolves). The condition's `key` names the incident
 * stream (`serving:churn:prediction-drift`); the router numbers each incident of it.
 */
export const Observation = z
  .object({
    key: AlertKey,
    kind: AlertKind,
    severity: Severity,
    firing: z.boolean().nullable(),
    summary: Summary,
    model: ModelName.optional(),
    version: VersionName.optional(),
    pool: PoolName.optional(),
    lifecycleId: z.string().min(1).max(256).optional(),
    details: Details.optional(),
    /** Default DEFAULT_HYSTERESIS. */
    hysteresis: Hysteresis.optional(),
    /** Default notify. Held off `actionDelayMs` after firing, so a human can override it. */
    action: z.enum(MONITOR_ACTIONS).optional(),
    actionDelayMs: z.number().int().min(0).max(MAX_DURATION_MS).optional(),
    /**
     * What the action needs: a retraining starts a lifecycle from this spec with a new version; a rollback goes to the
     * registry's previous version.
     */
    actionContext: z
      .object({
        retrainSpec: z
          .unknown()
          .refine((v) => jsonBytes(v) <= MAX_RETRAIN_SPEC_BYTES, `a spec of at most ${MAX_RETRAIN_SPEC_BYTES} bytes`)
          .optional(),
      })
      .strict()
      .optional(),
    /** Whether a rollout of `model` acting on it silences this condition (default true for model conditions). */
    silencedByRollout: z.boolean().optional(),
    /** ISO time of the check. */
    at: z
      .string()
      .max(64)
      .refine((t) => Number.isFinite(Date.parse(t)), 'an ISO time'),
  })
  .strict();
export type Observation = z.output<typeof Observation>;

/** Most observations one `observe` signal carries. */
export const MAX_OBSERVATIONS_PER_SIGNAL = 200;

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
  /** The key `by` signed a silence or override with. */
  keyId?: string;
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
