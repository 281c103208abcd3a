import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { z } from 'zod';
import {
  MONITOR_ACTIONS,
  type Alert,
  type AlertRouterState,
  type ModelSilence,
  type MonitorAction,
  type Observation,
} from './alerts';
import { MAX_DURATION_MS } from './duration';
import { Identity, ModelName } from './names';
import { MonitoringSpec } from './spec';
import type { VersionTelemetry } from './telemetry';

/** One check of a production model by its serving monitor (the `checkServing` activity). */
export interface CheckServingInput {
  model: string;
  monitoring: MonitoringSpec;
  /** The previous check's snapshot of the production version: this check judges the traffic since. */
  since: { version: string; telemetry: VersionTelemetry } | null;
  /** The production spec, carried into observations whose action is a retraining. */
  retrainSpec?: unknown;
}

export interface CheckServingResult {
  /** The production version checked, or null when the model has none. */
  version: string | null;
  /** Where the next check's window starts. */
  since: { version: string; telemetry: VersionTelemetry } | null;
  observations: Observation[];
  /** The traffic the checks judged (requests in the window). */
  requests: number;
}

/** The one alert router of a namespace: every alert and observation goes through it. */
export const ALERT_ROUTER_WORKFLOW_ID = 'ml-alert-router';

/** Workflow id of a model's serving monitor (one per production model). */
export function servingMonitorWorkflowId(model: string): string {
  return `serving-monitor-${model}`;
}

/** A newly promoted version's monitoring policy and the lifecycle spec a `retrain` action starts from. */
export const MonitorPolicy = z.object({ monitoring: MonitoringSpec, spec: z.unknown().optional() }).strict();
export type MonitorPolicy = z.input<typeof MonitorPolicy>;
/** A newly promoted version's monitoring policy and spec, for its model's serving monitor. */
export const monitorPolicySignal = defineSignal<[MonitorPolicy]>('monitorPolicy');

export interface ServingMonitorState {
  model: string;
  version: string | null;
  enabled: boolean;
  checks: number;
  lastCheckAt: string | null;
  lastRequests: number;
  /** The latest observation of each condition. */
  latest: Pick<Observation, 'kind' | 'firing' | 'summary' | 'at'>[];
}
export const servingMonitorQuery = defineQuery<ServingMonitorState>('servingMonitor');

/** Checks of a monitor, reported together. */
export const observeSignal = defineSignal<[Observation[]]>('observe');
/** An alert raised once by a workflow (a training failure, a rollback). */
export const raiseAlertSignal = defineSignal<[Alert]>('raiseAlert');

export const SilenceInput = z
  .object({
    model: ModelName,
    /** How long from now (ms), at most 365 days; 0 lifts the silence. */
    forMs: z.number().int().min(0).max(MAX_DURATION_MS, 'at most 365 days'),
    by: Identity,
    reason: z.string().max(2000).optional(),
    /** The operator's signed claim (`mlctl alerts silence --key`), where the platform policy requires one. */
    signed: z.unknown().optional(),
  })
  .strict();
export type SilenceInput = z.output<typeof SilenceInput>;
/** Silences a model's alerts for a while (incidents still open and resolve, quietly); `forMs: 0` lifts it. */
export const silenceModelUpdate = defineUpdate<ModelSilence | null, [SilenceInput]>('silenceModel');

export const OverrideInput = z
  .object({
    /** The incident whose pending action is overridden (`serving:churn:prediction-drift#2`). */
    incident: z.string().min(1).max(600),
    /** What to do instead: `notify` cancels the action; another action replaces it and runs now. */
    action: z.enum(MONITOR_ACTIONS),
    by: Identity,
    reason: z.string().max(2000).optional(),
    /** The operator's signed claim (`mlctl alerts override --key`), where the platform policy requires one. */
    signed: z.unknown().optional(),
  })
  .strict();
export type OverrideInput = z.output<typeof OverrideInput>;
export interface OverrideAck {
  incident: string;
  was: MonitorAction;
  now: MonitorAction;
  at: string;
}
/** A human override of an automated action while it waits (its `actionDelay`). */
export const overrideActionUpdate = defineUpdate<OverrideAck, [OverrideInput]>('overrideAction');

export const AlertHistoryQuery = z
  .object({ model: ModelName.optional(), limit: z.number().int().min(1).max(1000).optional() })
  .strict();
export type AlertHistoryQuery = z.output<typeof AlertHistoryQuery>;
export const alertRouterQuery = defineQuery<AlertRouterState, [AlertHistoryQuery?]>('alertRouter');
