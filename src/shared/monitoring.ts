import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { Alert, AlertRouterState, ModelSilence, MonitorAction, Observation } from './alerts';
import type { MonitoringSpec } from './spec';

/** The one alert router of a namespace: every alert and observation goes through it. */
export const ALERT_ROUTER_WORKFLOW_ID = 'ml-alert-router';

/** Workflow id of a model's serving monitor (one per production model). */
export function servingMonitorWorkflowId(model: string): string {
  return `serving-monitor-${model}`;
}

/** A newly promoted version's monitoring policy and spec, for its model's serving monitor. */
export const monitorPolicySignal = defineSignal<[{ monitoring: MonitoringSpec; spec: unknown }]>('monitorPolicy');

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

export interface SilenceInput {
  model: string;
  /** How long from now (ms); 0 lifts the silence. */
  forMs: number;
  by: string;
  reason?: string;
}
/** Silences a model's alerts for a while (incidents still open and resolve, quietly); `forMs: 0` lifts it. */
export const silenceModelUpdate = defineUpdate<ModelSilence | null, [SilenceInput]>('silenceModel');

export interface OverrideInput {
  /** The incident whose pending action is overridden (`serving:churn:prediction-drift#2`). */
  incident: string;
  /** What to do instead: `notify` cancels the action; another action replaces it and runs now. */
  action: MonitorAction;
  by: string;
  reason?: string;
}
export interface OverrideAck {
  incident: string;
  was: MonitorAction;
  now: MonitorAction;
  at: string;
}
/** A human override of an automated action while it waits (its `actionDelay`). */
export const overrideActionUpdate = defineUpdate<OverrideAck, [OverrideInput]>('overrideAction');

export interface AlertHistoryQuery {
  model?: string;
  limit?: number;
}
export const alertRouterQuery = defineQuery<AlertRouterState, [AlertHistoryQuery?]>('alertRouter');
