import { ApplicationFailure, log } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import { alertLogLevel, DEFAULT_RESEND_INTERVAL_MS, deliverAlerts, type DeliveryReport } from '../alerts/sinks';
import { routeAlert, type AlertConfig } from '../config/alert-sinks';
import { LifecycleClient, RefusedError } from '../client/lifecycle-client';
import { SUBSCRIBED_ALERT_KINDS, type Alert, type Observation } from '../shared/alerts';
import { ErrorType } from '../shared/errors';
import { pauseSignal } from '../shared/messages';
import {
  ALERT_ROUTER_WORKFLOW_ID,
  monitorPolicySignal,
  observeSignal,
  raiseAlertSignal,
  servingMonitorWorkflowId,
} from '../shared/monitoring';
import { MlModel } from '../shared/search-attributes';
import { LifecycleSpec, lifecycleWorkflowId, type MonitoringSpec } from '../shared/spec';
import { Stage } from '../shared/status';
import { LIFECYCLE_TASK_QUEUE } from '../shared/task-queues';

export interface AlertingDeps {
  client: Client;
  /** Sinks and routes (ALERT_SINKS_FILE); none: the log only. */
  alertConfig?: AlertConfig;
  /** Called with every alert delivered, besides the log and the sinks (tests, embedding). */
  alertSink?: (alert: Alert) => Promise<void> | void;
  /** The router's group wait, when this worker is the one that starts it (ALERT_GROUP_WAIT). */
  groupWaitMs?: number;
  /** Told of every alert delivered (metrics). */
  onDelivered?: (alert: Alert) => void;
}

/** Stages in which a lifecycle moves production traffic: its model's monitor alerts wait while it acts. */
const ACTING_STAGES: readonly string[] = [
  Stage.Staging,
  Stage.Shadow,
  Stage.Canary,
  Stage.Ramping,
  Stage.Guarding,
  Stage.RollingBack,
  Stage.RollbackStuck,
];

const ROUTER_WORKFLOW = 'alertRouterWorkflow';
const quoted = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/** Activities of the alert path: getting alerts to the router, delivering them, and the router's actions. */
export function createAlertingActivities(deps: AlertingDeps) {
  const { client } = deps;
  const config: AlertConfig = deps.alertConfig ?? { sinks: [], routes: [] };
  const routerStart = {
    workflowId: ALERT_ROUTER_WORKFLOW_ID,
    taskQueue: LIFECYCLE_TASK_QUEUE,
    args: [{ ...(deps.groupWaitMs !== undefined ? { groupWaitMs: deps.groupWaitMs } : {}) }] as const,
    staticSummary: 'alert router: groups, silences and delivers alerts; runs monitor rollbacks, holds and retraining',
  };
  const running = async (model: string) => {
    const query = `WorkflowType = 'modelLifecycleWorkflow' AND ExecutionStatus = 'Running' AND MlModel = ${quoted(model)}`;
    const found: { workflowId: string; stage: string }[] = [];
    for await (const wf of client.workflow.list({ query })) {
      const stage = wf.searchAttributes?.MlStage?.[0];
      found.push({ workflowId: wf.workflowId, stage: typeof stage === 'string' ? stage : '' });
      if (found.length >= 100) break;
    }
    return found;
  };

  return {
    /** Hands a workflow's alert to the router (starting it if needed); the router delivers it. */
    async raiseAlert(alert: Alert): Promise<void> {
      // An event kind (stage changes) goes only to routes that name it. With none, it is not sent to the router at
      // all: every lifecycle signals that one workflow, and six stage events each per lifecycle were most of its load.
      if (SUBSCRIBED_ALERT_KINDS.includes(alert.kind) && routeAlert(alert, config).sinks.length === 0) {
        log.debug(`${alert.kind}: ${alert.summary} (no route subscribes to it)`, { alert });
        return;
      }
      await client.workflow.signalWithStart(ROUTER_WORKFLOW, {
        ...routerStart,
        args: [...routerStart.args],
        signal: raiseAlertSignal,
        signalArgs: [alert],
      });
    },

    /** Hands a monitor's checks to the router (starting it if needed). */
    async reportObservations(observations: Observation[]): Promise<void> {
      if (observations.length === 0) return;
      await client.workflow.signalWithStart(ROUTER_WORKFLOW, {
        ...routerStart,
        args: [...routerStart.args],
        signal: observeSignal,
        signalArgs: [observations],
      });
    },

    /**
     * The first step of delivering a group of alerts: each goes to the log (always) and the in-process sink, is
     * counted, and is routed: the answer names, per sink, the alerts its routes send there (each with its route's
     * owner), and for an Alertmanager sink how often it wants open incidents re-sent (`resendMs`). The router then
     * delivers to each sink on its own, so a failing receiver is retried without repeating the others.
     *
     * With `resend`, the alerts are open incidents the router re-sends to keep them firing in Alertmanager: nothing is
     * logged, handed to the in-process sink or counted (nothing new happened), and only Alertmanager routes come back.
     */
    async routeAlerts({ alerts, resend = false }: { alerts: Alert[]; resend?: boolean }): Promise<{
      owner?: string;
      routes: { sink: string; alerts: Alert[]; resendMs?: number }[];
    }> {
      const perSink = new Map<string, Alert[]>();
      let owner: string | undefined;
      for (const a of alerts) {
        const route = routeAlert(a, config);
        owner ??= route.owner;
        const alert: Alert = route.owner ? { ...a, owner: route.owner } : a;
        const sinks = resend ? route.sinks.filter((s) => s.kind === 'alertmanager') : route.sinks;
        for (const sink of sinks) perSink.set(sink.name, [...(perSink.get(sink.name) ?? []), alert]);
        if (resend) continue;
        // Events (stage changes) are for the machines that subscribed to them; the log keeps them at debug.
        const level = SUBSCRIBED_ALERT_KINDS.includes(alert.kind) ? 'debug' : alertLogLevel(alert);
        log[level](`${alert.resolved ? 'RESOLVED' : 'ALERT'} ${alert.kind}: ${alert.summary}`, {
          alert,
          sinks: sinks.map((s) => s.name),
        });
        await deps.alertSink?.(alert);
        deps.onDelivered?.(alert);
      }
      const resendMs = (name: string) => {
        const sink = config.sinks.find((s) => s.name === name);
        return sink?.kind === 'alertmanager' ? { resendMs: sink.resendIntervalMs ?? DEFAULT_RESEND_INTERVAL_MS } : {};
      };
      return {
        ...(owner ? { owner } : {}),
        routes: [...perSink].map(([sink, routed]) => ({ sink, alerts: routed, ...resendMs(sink) })),
      };
    },

    /**
     * Posts alerts to one sink (see `deliverAlerts` in src/alerts/sinks.ts for the bodies). A sink that cannot take
     * them now fails the attempt retryably (the router retries it for hours); a 4xx refusal is logged and not retried;
     * a sink no longer configured (the worker restarted with another sinks file) is skipped.
     */
    async deliverToSink(input: { sink: string; alerts: Alert[] }): Promise<DeliveryReport> {
      const sink = config.sinks.find((s) => s.name === input.sink);
      if (!sink) {
        log.warn(`alert sink ${input.sink} is not configured on this worker; its alerts are dropped`);
        return { delivered: [], refused: [], skipped: [input.sink] };
      }
      return deliverAlerts(input.alerts, [sink], fetch, log);
    },

    /**
     * Starts the model's serving monitor, or hands a running one the newly promoted version's policy and spec
     * (signal-with-start: one monitor per model, whichever version is in production).
     */
    async ensureServingMonitor(input: { model: string; monitoring: MonitoringSpec; spec: unknown }): Promise<void> {
      await client.workflow.signalWithStart('servingMonitorWorkflow', {
        workflowId: servingMonitorWorkflowId(input.model),
        taskQueue: LIFECYCLE_TASK_QUEUE,
        args: [{ model: input.model, monitoring: input.monitoring, spec: input.spec }],
        signal: monitorPolicySignal,
        signalArgs: [{ monitoring: input.monitoring, spec: input.spec }],
        typedSearchAttributes: new TypedSearchAttributes([{ key: MlModel, value: input.model }]),
        staticSummary: `serving monitor of ${input.model}: drift, quality, latency and outages of production`,
      });
    },

    /** The lifecycle of `model` moving production traffic now, if any (its alerts from monitors are held). */
    async rolloutActing({ model }: { model: string }): Promise<{ lifecycleId: string; stage: string } | null> {
      const acting = (await running(model)).find((w) => ACTING_STAGES.includes(w.stage));
      return acting ? { lifecycleId: acting.workflowId, stage: acting.stage } : null;
    },

    /** Pauses every running lifecycle of `model` (the pause takes effect at its next safe point). */
    async holdRollouts(input: { model: string; by: string; reason: string }): Promise<{ held: string[] }> {
      const held: string[] = [];
      for (const wf of await running(input.model)) {
        await client.workflow.getHandle(wf.workflowId).signal(pauseSignal, { by: input.by, reason: input.reason });
        held.push(wf.workflowId);
      }
      return { held };
    },

    /**
     * Starts a lifecycle that retrains the model from the production version's spec, as version
     * `<version>-retrain-<incident number>` (an earlier `-retrain-N` suffix is replaced); idempotent by that id.
     */
    async startRetraining(input: {
      spec: unknown;
      incident: string;
    }): Promise<{ lifecycleId: string; version: string }> {
      const parsed = LifecycleSpec.safeParse(input.spec);
      if (!parsed.success)
        throw ApplicationFailure.create({
          type: ErrorType.InvalidSpec,
          message: `cannot retrain: the production spec is invalid: ${parsed.error.issues[0]?.message ?? ''}`,
          nonRetryable: true,
        });
      const n = /#(\d+)$/.exec(input.incident)?.[1] ?? '1';
      const version = `${parsed.data.version.replace(/-retrain-\d+$/, '')}-retrain-${n}`;
      const spec = {
        ...parsed.data,
        version,
        submittedBy: 'monitor',
        description: `retraining after ${input.incident}`,
      };
      const lifecycleId = lifecycleWorkflowId(spec.model, version);
      try {
        await new LifecycleClient(client).start(spec);
      } catch (err) {
        // Started by an earlier attempt of this activity: the same lifecycle.
        if (!(err instanceof RefusedError)) throw err;
      }
      return { lifecycleId, version };
    },
  };
}
