import {
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
  ApplicationFailure,
  isCancellation,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { IncidentBook, type IncidentBookState, type IncidentEvent } from '../domain/incidents';
import {
  Alert,
  IMMEDIATE_ALERT_KINDS,
  MAX_OBSERVATIONS_PER_SIGNAL,
  Observation,
  type AlertRecord,
  type AlertRouterState,
  type ModelSilence,
  type MonitorAction,
  type OpenIncident,
} from '../shared/alerts';
import { ErrorType } from '../shared/errors';
import {
  AlertHistoryQuery,
  alertRouterQuery,
  observeSignal,
  OverrideInput,
  overrideActionUpdate,
  raiseAlertSignal,
  SilenceInput,
  silenceModelUpdate,
  type OverrideAck,
} from '../shared/monitoring';
import { describeIssues } from '../shared/spec';
import { z } from 'zod';
import { cut } from '../shared/text';
import { failureMessage } from './failures';
import { guardedSignal, guardedUpdate, guardedValidator, parseInput, refuse } from './handlers';
import { rollbackWorkflowId } from '../shared/registry';
import { NonceLedger, OperationTarget } from '../shared/signed-operation';
import type { ModelRollbackInput, ModelRollbackResult } from './model-rollback';

export interface AlertRouterInput {
  /** How long the first alert of a group waits for others before one notification carries them all (default 10 s). */
  groupWaitMs?: number;
  /**
   * Events at which a run continues as new (at most, and by default, ROUTER_RUN_EVENTS; at least 100): a lower bound
   * for tests and for namespaces with small history limits.
   */
  runEvents?: number;
  carried?: CarriedRouterState;
}

interface Incident {
  info: OpenIncident;
  /** The alert as last observed: what a resolve message and an action refer to. */
  alert: Alert;
  /** Whether notifications went out for it (a suppressed incident resolves quietly). */
  notified: boolean;
  silencedByRollout: boolean;
  retrainSpec?: unknown;
  lastSuppressionCheck: number;
}

interface CarriedRouterState {
  book: IncidentBookState;
  incidents: Incident[];
  silences: ModelSilence[];
  history: AlertRecord[];
  seq: number;
  observations: number;
  deliveries: { done: number; failed: number };
  actions: [string, { kind: MonitorAction; dueAt: number; by?: string }][];
  /** Signals that arrived after the last run stopped taking them. */
  inbox: ({ observations: Observation[] } | { alert: Alert })[];
  /** How often open incidents are re-sent to Alertmanager, as routing last said (routers with ALERTMANAGER_RESEND). */
  resendMs?: number;
}

const DEFAULT_GROUP_WAIT_MS = 10_000;
/** History entries kept (and carried across continue-as-new). */
const HISTORY_KEPT = 1000;
/** Inbox items handled per run before continuing as new. */
const ITEMS_PER_RUN = 2000;
/** How long a "no rollout is acting on this model" answer is trusted before asking again. */
const SUPPRESSION_RECHECK_MS = 15_000;

/** Quick calls: visibility lookups, signals to lifecycles. */
const quick = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 10 },
});
/**
 * Delivery keeps trying for hours: a receiver down for maintenance gets its alerts when it comes back. Each attempt
 * posts to every sink the alert is routed to (at-least-once; receivers deduplicate on the incident key).
 */
const delivery = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '6 hours',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes' },
});
/**
 * A re-send of open incidents is retried briefly, not for hours: the next one follows an interval later, and the
 * incidents' `endsAt` (3 intervals ahead) outlasts two lost ones.
 */
const resendDelivery = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3 },
});

/** Marks routers that authorize silences and overrides with the platform policy before applying them. */
const AUTHORIZED_OPERATORS = 'authorized-operators';
/**
 * Marks routers that keep open incidents firing in Alertmanager: their alerts are sent as `open` (with `endsAt` ahead)
 * and re-sent every interval until they resolve. Earlier routers posted them once, and Alertmanager resolved them after
 * its `resolve_timeout`.
 */
const ALERTMANAGER_RESEND = 'alertmanager-resend';
/**
 * Marks routers whose runs also end at ROUTER_RUN_EVENTS events or ROUTER_RUN_BYTES of history, whichever comes first
 * (with the ITEMS_PER_RUN of before): a run of 2,000 items reached about 4,000 events and 2.3 MB, and a worker that had
 * to replay it took seconds per workflow task. Earlier runs ended at ITEMS_PER_RUN or the server's suggestion only.
 */
const BOUNDED_RUNS = 'router-bounded-runs';
const ROUTER_RUN_EVENTS = 2_000;
const ROUTER_RUN_BYTES = 1024 * 1024;

const modelOf = (a: { model?: string }) => a.model;
const groupOf = (a: Alert) => (a.model ? `model:${a.model}` : a.pool ? `pool:${a.pool}` : 'global');

/**
 * The alert path of the namespace. Monitors report checks (`observe`); workflows raise one-off alerts (`raiseAlert`).
 * The router turns checks into incidents with M-of-N hysteresis, numbers them, suppresses those of a model under a
 * silence or while the model's own rollout is acting on it, groups notifications per model (or pool) for `groupWaitMs`,
 * delivers them through a retried activity (log, routes, webhook/Slack/Alertmanager sinks), sends a resolve message
 * when an incident clears, runs the action a monitor's policy names (hold the rollout, roll back, retrain) after a
 * delay a human can override in, and keeps a queryable history. It is the only writer of alert state, so nothing
 * races; deliveries and actions run beside the loop so a slow receiver holds up nobody.
 */
export async function alertRouterWorkflow(input: AlertRouterInput = {}): Promise<void> {
  const groupWaitMs = input.groupWaitMs ?? DEFAULT_GROUP_WAIT_MS;
  const carried = input.carried;
  const book = new IncidentBook(carried?.book);
  const incidents = new Map<string, Incident>((carried?.incidents ?? []).map((i) => [i.info.incident, i]));
  const silences = new Map<string, ModelSilence>((carried?.silences ?? []).map((s) => [s.model, s]));
  const history: AlertRecord[] = [...(carried?.history ?? [])];
  let seq = carried?.seq ?? 0;
  let observations = carried?.observations ?? 0;
  const deliveries = { pending: 0, done: carried?.deliveries.done ?? 0, failed: carried?.deliveries.failed ?? 0 };
  let actionsRunning = 0;

  type InboxItem = { observations: Observation[] } | { alert: Alert };
  const inbox: InboxItem[] = [...(carried?.inbox ?? [])];
  /** Notifications waiting for their group's wait to end. */
  const groups = new Map<string, { alerts: Alert[]; dueAt: number }>();
  /** Automated actions waiting for their delay (a human may override them meanwhile). */
  const actions = new Map<string, { kind: MonitorAction; dueAt: number; by?: string }>(carried?.actions ?? []);
  let wake = false;

  const record = (r: Omit<AlertRecord, 'seq' | 'at'>) => {
    history.push({ seq: ++seq, at: new Date().toISOString(), ...r });
    while (history.length > HISTORY_KEPT) history.shift();
  };
  const about = (a: Alert) => ({
    kind: a.kind,
    severity: a.severity,
    ...(a.model ? { model: a.model } : {}),
    ...(a.version ? { version: a.version } : {}),
    ...(a.pool ? { pool: a.pool } : {}),
  });

  // Each observation of a batch is checked on its own: one malformed check does not drop its monitor's others.
  setHandler(
    observeSignal,
    guardedSignal('observe', z.array(z.unknown()).min(1).max(MAX_OBSERVATIONS_PER_SIGNAL), (batch) => {
      const good: Observation[] = [];
      for (const [i, raw] of batch.entries()) {
        const obs = Observation.safeParse(raw);
        if (obs.success) good.push(obs.data);
        else log.warn('ignored malformed observation', { index: i, problems: describeIssues(obs.error).slice(0, 10) });
      }
      if (good.length > 0) inbox.push({ observations: good });
    }),
  );
  setHandler(
    raiseAlertSignal,
    guardedSignal('raiseAlert', Alert, (alert) => void inbox.push({ alert })),
  );
  setHandler(alertRouterQuery, (raw): AlertRouterState => {
    const q = parseInput(AlertHistoryQuery.optional(), raw, 'alert history query');
    const model = q?.model;
    const limit = Math.max(1, Math.min(q?.limit ?? 100, HISTORY_KEPT));
    const mine = <T extends { model?: string }>(x: T) => model === undefined || modelOf(x) === model;
    return {
      open: [...incidents.values()]
        .map((i) => ({
          ...i.info,
          ...(actions.has(i.info.incident)
            ? {
                action: {
                  kind: actions.get(i.info.incident)!.kind,
                  dueAt: new Date(actions.get(i.info.incident)!.dueAt).toISOString(),
                },
              }
            : {}),
        }))
        .filter(mine),
      silences: [...silences.values()].filter(mine),
      history: history.filter(mine).slice(-limit),
      observations,
      deliveries: { ...deliveries },
    };
  });
  // Silences and overrides are privileged: the worker checks them with the platform policy and keyring as they are
  // now. Routers started before this check (their histories) apply them as they did then.
  const enforced = patched(AUTHORIZED_OPERATORS);
  const resending = patched(ALERTMANAGER_RESEND);
  /** How often Alertmanager sinks want open incidents re-sent (the smallest interval routing named); unset: none. */
  let resendMs = resending ? carried?.resendMs : undefined;
  /** When open incidents are next re-sent; unset while there is nothing to re-send. */
  let nextResendAt: number | undefined;
  let resendInFlight = false;
  const usedNonces = new NonceLedger();
  /** The signing key id when the operation may happen (null: unsigned and allowed); a refusal otherwise. */
  const authorize = async (op: {
    op: 'alert-silence' | 'alert-override';
    model: string | undefined;
    by: string;
    signed: unknown;
    target: string;
  }): Promise<string | null> => {
    if (!enforced) return null;
    if (op.model === undefined) throw refuse(`${op.op}: the incident names no model, so no policy rule covers it`);
    const verdict = await quick.authorizeOperation({
      model: op.model,
      request: {
        op: op.op,
        by: op.by,
        ...(op.signed !== undefined ? { signed: op.signed } : {}),
        target: op.target,
        specDigest: '',
        artifactDigest: '',
      },
    });
    if (!verdict.ok) throw refuse(verdict.reason, ErrorType.Unauthorized);
    if (verdict.nonce !== null && !usedNonces.take(verdict.nonce))
      throw refuse(`the claim's nonce ${verdict.nonce} was already used: replayed`, ErrorType.Unauthorized);
    return verdict.keyId;
  };
  setHandler(
    silenceModelUpdate,
    guardedUpdate('silenceModel', async (raw: SilenceInput) => {
      const s = parseInput(SilenceInput, raw, 'silence');
      const keyId = await authorize({
        op: 'alert-silence',
        model: s.model,
        by: s.by,
        signed: s.signed,
        target: OperationTarget.silence(s.model, s.forMs),
      });
      const signedBy = keyId ? { keyId } : {};
      if (s.forMs === 0) {
        const was = silences.get(s.model) ?? null;
        silences.delete(s.model);
        record({
          event: 'unsilenced',
          model: s.model,
          summary: `alerts of ${s.model} unsilenced`,
          by: s.by,
          ...signedBy,
        });
        return was;
      }
      const silence: ModelSilence = {
        model: s.model,
        until: new Date(Date.now() + s.forMs).toISOString(),
        by: s.by,
        reason: s.reason ?? '',
      };
      silences.set(s.model, silence);
      record({
        event: 'silenced',
        model: s.model,
        summary: `alerts of ${s.model} silenced until ${silence.until}${s.reason ? `: ${s.reason}` : ''}`,
        by: s.by,
        ...signedBy,
      });
      return silence;
    }),
    { validator: guardedValidator('silenceModel', (raw) => void parseInput(SilenceInput, raw, 'silence')) },
  );
  /** The override, checked against what is open and pending now; a typed refusal otherwise. */
  const checkOverride = (raw: unknown): OverrideInput => {
    const o = parseInput(OverrideInput, raw, 'override');
    if (!incidents.has(o.incident)) throw refuse(`override: no open incident "${o.incident}"`);
    if (!actions.has(o.incident))
      throw refuse(`override: incident "${o.incident}" has no pending action (it only notifies, or already acted)`);
    if (o.action === 'retrain' && incidents.get(o.incident)!.retrainSpec === undefined)
      throw refuse(`override: incident "${o.incident}" has no spec to retrain from`);
    return o;
  };
  setHandler(
    overrideActionUpdate,
    guardedUpdate('overrideAction', async (raw: OverrideInput): Promise<OverrideAck> => {
      let o = checkOverride(raw);
      const model = incidents.get(o.incident)!.alert.model;
      const keyId = await authorize({
        op: 'alert-override',
        model,
        by: o.by,
        signed: o.signed,
        target: OperationTarget.incident(o.incident, o.action),
      });
      o = checkOverride(raw); // the incident may have resolved or acted while the worker was asked
      const pending = actions.get(o.incident)!;
      const at = new Date().toISOString();
      const incident = incidents.get(o.incident)!;
      record({
        event: 'action-overridden',
        incident: o.incident,
        ...about(incident.alert),
        summary: `${pending.kind} → ${o.action}${o.reason ? `: ${o.reason}` : ''}`,
        by: o.by,
        ...(keyId ? { keyId } : {}),
      });
      if (o.action === 'notify') actions.delete(o.incident);
      else actions.set(o.incident, { kind: o.action, dueAt: Date.now(), by: o.by });
      wake = true;
      return { incident: o.incident, was: pending.kind, now: o.action, at };
    }),
    { validator: guardedValidator('overrideAction', (raw) => void checkOverride(raw)) },
  );

  const notify = (alert: Alert) => {
    if (IMMEDIATE_ALERT_KINDS.includes(alert.kind)) {
      // Alone and at once: waiting to be grouped would keep an approver from a gate that is open now.
      groups.set(`now:${alert.dedupKey}`, { alerts: [alert], dueAt: Date.now() });
      wake = true;
      return;
    }
    const key = groupOf(alert);
    const group = groups.get(key);
    if (group) group.alerts.push(alert);
    else groups.set(key, { alerts: [alert], dueAt: Date.now() + groupWaitMs });
  };

  /** An alert as delivered: marked `open` while its incident is (Alertmanager keeps it firing until we stop). */
  const marked = (a: Alert): Alert => {
    if (incidents.has(a.dedupKey) && !a.resolved) return { ...a, open: true };
    if (a.open === undefined) return a;
    const { open: _open, ...oneOff } = a;
    return oneOff;
  };

  /**
   * What routing says of re-sends. A re-send lists every incident to keep firing, so its routes are the whole answer
   * (no Alertmanager route: nothing to re-send). A notification's may name one Alertmanager sink of several: the
   * interval only shrinks, so every sink's incidents are re-sent at least as often as it asks.
   */
  const learnResendMs = (routes: { resendMs?: number }[], resend: boolean) => {
    const intervals = routes.flatMap((r) => (r.resendMs !== undefined ? [r.resendMs] : []));
    const known = resend ? Infinity : (resendMs ?? Infinity);
    const learned = intervals.length > 0 ? Math.min(known, ...intervals) : resend ? undefined : resendMs;
    if (learned === resendMs) return;
    resendMs = learned;
    wake = true; // the loop sets (or clears) the re-send deadline
  };

  /**
   * Logs and routes a group (one quick activity), then delivers to each sink on its own: a receiver that is down is
   * retried for hours while the others have their alerts already. A re-send (`resend`) goes to Alertmanager sinks only,
   * is retried briefly, and leaves no history but its failures.
   */
  const deliver = (group: Alert[], resend = false) => {
    const alerts = resending && !resend ? group.map(marked) : group;
    deliveries.pending++;
    const delivered = (a: Alert, sinks: string[], owner: string | undefined) =>
      record({
        event: 'delivered',
        incident: a.dedupKey,
        ...about(a),
        summary: a.resolved ? `resolve of ${a.dedupKey}` : a.summary,
        ...(owner ? { owner } : {}),
        sinks,
      });
    const failed = (a: Alert, sink: string, err: unknown) =>
      record({
        event: 'delivery-failed',
        incident: a.dedupKey,
        ...about(a),
        summary: `${resend ? 're-send: ' : ''}${sink}: ${failureMessage(err)}`,
        sinks: [sink],
      });
    const run = async () => {
      // A re-send still posting could land after a resolve and open its incident again for 3 intervals: it goes first.
      if (resending && !resend && alerts.some((a) => a.resolved)) await condition(() => !resendInFlight);
      const routed = await quick.routeAlerts(resend ? { alerts, resend } : { alerts });
      if (resending) learnResendMs(routed.routes, resend);
      // Logged (and handed to the in-process sink) by the routing step: with no sink configured that is delivery.
      if (routed.routes.length === 0 && !resend) for (const a of alerts) delivered(a, [], routed.owner);
      let ok = true;
      await Promise.all(
        routed.routes.map(async (r) => {
          try {
            await (resend ? resendDelivery : delivery).deliverToSink(r);
            if (!resend) for (const a of r.alerts) delivered(a, [r.sink], routed.owner);
          } catch (err) {
            ok = false;
            for (const a of r.alerts) failed(a, r.sink, err);
          }
        }),
      );
      // Re-sends are upkeep, not deliveries: the counts stay those of notifications.
      if (resend) return;
      if (ok) deliveries.done++;
      else deliveries.failed++;
    };
    run()
      .catch((err: unknown) => {
        if (!resend) deliveries.failed++;
        for (const a of alerts) failed(a, 'routing', err);
      })
      .finally(() => {
        deliveries.pending--;
        if (resend) resendInFlight = false;
      });
  };

  /**
   * Incidents Alertmanager keeps firing: notified and still open. One whose notification still waits in a group is
   * left to it (it goes out with its `endsAt`).
   */
  const toResend = (): Incident[] => {
    const waiting = new Set([...groups.values()].flatMap((g) => g.alerts.map((a) => a.dedupKey)));
    return [...incidents.values()].filter(
      (i) => i.notified && i.info.state !== 'suppressed' && !waiting.has(i.info.incident),
    );
  };

  /** Why a model's incident stays quiet now: a silence, or its own rollout acting on it; null when it may speak. */
  const suppression = async (incident: Incident): Promise<string | null> => {
    const model = incident.alert.model;
    if (!model) return null;
    const silence = silences.get(model);
    if (silence && Date.parse(silence.until) > Date.now())
      return `silenced by ${silence.by} until ${silence.until}${silence.reason ? ` (${silence.reason})` : ''}`;
    if (silence) silences.delete(model);
    if (!incident.silencedByRollout) return null;
    incident.lastSuppressionCheck = Date.now();
    const acting = await quick.rolloutActing({ model });
    return acting ? `rollout ${acting.lifecycleId} is acting on ${model} (${acting.stage})` : null;
  };

  const speak = (incident: Incident, action: MonitorAction, delayMs: number) => {
    incident.info.state = 'firing';
    incident.notified = true;
    notify(incident.alert);
    if (action !== 'notify' && incident.alert.model) {
      actions.set(incident.info.incident, { kind: action, dueAt: Date.now() + delayMs });
      record({
        event: 'action-scheduled',
        incident: incident.info.incident,
        ...about(incident.alert),
        summary: `${action} in ${Math.round(delayMs / 1000)} s unless overridden`,
      });
    }
  };

  const onFire = async (
    ev: Extract<IncidentEvent, { type: 'fire' }>,
    alert: Alert,
    options: { action: MonitorAction; delayMs: number; silencedByRollout: boolean; retrainSpec?: unknown },
  ) => {
    const incident: Incident = {
      info: {
        incident: ev.incident,
        key: ev.key,
        kind: alert.kind,
        severity: ev.severity,
        state: 'pending',
        since: new Date().toISOString(),
        summary: alert.summary,
        ...(alert.model ? { model: alert.model } : {}),
        ...(alert.version ? { version: alert.version } : {}),
        ...(alert.pool ? { pool: alert.pool } : {}),
      },
      alert: { ...alert, dedupKey: ev.incident },
      notified: false,
      silencedByRollout: options.silencedByRollout,
      ...(options.retrainSpec !== undefined ? { retrainSpec: options.retrainSpec } : {}),
      lastSuppressionCheck: 0,
    };
    incidents.set(ev.incident, incident);
    const quiet = await suppression(incident);
    if (quiet) {
      incident.info.state = 'suppressed';
      record({ event: 'suppressed', incident: ev.incident, ...about(alert), summary: `${alert.summary} — ${quiet}` });
      return;
    }
    record({ event: 'fired', incident: ev.incident, ...about(alert), summary: alert.summary });
    speak(incident, options.action, options.delayMs);
  };

  const onResolve = (incidentId: string, summary?: string) => {
    const incident = incidents.get(incidentId);
    if (!incident) return;
    incidents.delete(incidentId);
    const pending = actions.get(incidentId);
    if (pending) actions.delete(incidentId);
    const text = `resolved: ${summary ?? incident.alert.summary}`;
    record({ event: 'resolved', incident: incidentId, ...about(incident.alert), summary: text });
    if (incident.notified)
      notify({ ...incident.alert, severity: 'info', summary: text, resolved: true, dedupKey: incidentId });
  };

  const handleObservation = async (obs: Observation) => {
    observations++;
    const ev = book.observe(obs);
    const alert: Alert = {
      kind: obs.kind,
      severity: obs.severity,
      summary: obs.summary,
      dedupKey: obs.key,
      ...(obs.model ? { model: obs.model } : {}),
      ...(obs.version ? { version: obs.version } : {}),
      ...(obs.pool ? { pool: obs.pool } : {}),
      ...(obs.lifecycleId ? { lifecycleId: obs.lifecycleId } : {}),
      ...(obs.details ? { details: obs.details } : {}),
    };
    const open = book.openIncident(obs.key);
    if (ev?.type === 'fire') {
      await onFire(ev, alert, {
        action: obs.action ?? 'notify',
        delayMs: obs.actionDelayMs ?? 0,
        silencedByRollout: obs.silencedByRollout ?? Boolean(obs.model),
        ...(obs.actionContext?.retrainSpec !== undefined ? { retrainSpec: obs.actionContext.retrainSpec } : {}),
      });
      return;
    }
    if (ev?.type === 'resolve') {
      onResolve(ev.incident, obs.summary);
      return;
    }
    const incident = open ? incidents.get(open) : undefined;
    if (!incident || obs.firing !== true) return;
    // Still bad: the incident keeps the latest reading.
    incident.alert = {
      ...alert,
      severity: ev?.type === 'escalate' ? ev.severity : incident.alert.severity,
      dedupKey: open!,
    };
    incident.info.summary = obs.summary;
    if (ev?.type === 'escalate') incident.info.severity = ev.severity;
    if (incident.info.state === 'suppressed') {
      if (Date.now() - incident.lastSuppressionCheck < SUPPRESSION_RECHECK_MS) return;
      const quiet = await suppression(incident);
      if (quiet) return;
      record({
        event: 'fired',
        incident: open!,
        ...about(incident.alert),
        summary: `${obs.summary} (no longer suppressed)`,
      });
      speak(incident, obs.action ?? 'notify', obs.actionDelayMs ?? 0);
    } else if (ev?.type === 'escalate') {
      record({
        event: 'fired',
        incident: open!,
        ...about(incident.alert),
        summary: `escalated to ${ev.severity}: ${obs.summary}`,
      });
      notify(incident.alert);
    }
  };

  const handleRaised = async (alert: Alert) => {
    const ev = book.raise(alert);
    if (!ev) return;
    if (ev.type === 'resolve') {
      record({ event: 'resolved', incident: alert.dedupKey, ...about(alert), summary: alert.summary });
      notify(alert);
      return;
    }
    const model = alert.model;
    const silence = model ? silences.get(model) : undefined;
    if (silence && Date.parse(silence.until) > Date.now()) {
      record({
        event: 'suppressed',
        incident: alert.dedupKey,
        ...about(alert),
        summary: `${alert.summary} — silenced by ${silence.by}`,
      });
      return;
    }
    record({
      event: 'fired',
      incident: alert.dedupKey,
      ...about(alert),
      summary: ev.type === 'escalate' ? `escalated to ${ev.severity}: ${alert.summary}` : alert.summary,
    });
    notify(alert);
  };

  const act = async (incidentId: string, pending: { kind: MonitorAction; by?: string }) => {
    const incident = incidents.get(incidentId);
    if (!incident?.alert.model) return;
    const model = incident.alert.model;
    // Within the 2000 characters a rollback or a pause takes as its reason.
    const reason = cut(`${incidentId}: ${incident.alert.summary}`, 2000);
    actionsRunning++;
    try {
      let done: string;
      if (pending.kind === 'rollback') {
        const child = await startChild<(i: ModelRollbackInput) => Promise<ModelRollbackResult>>(
          'modelRollbackWorkflow',
          {
            workflowId: rollbackWorkflowId(model, Date.now()),
            args: [{ model, by: pending.by ?? 'monitor', reason }],
            parentClosePolicy: ParentClosePolicy.ABANDON,
          },
        );
        const result = await child.result();
        done = `rolled ${model} back from ${result.from} to ${result.to} (${child.workflowId})`;
      } else if (pending.kind === 'hold') {
        const { held } = await quick.holdRollouts({ model, by: pending.by ?? 'monitor', reason });
        done = held.length ? `held the rollouts of ${model}: ${held.join(', ')}` : `no rollout of ${model} to hold`;
      } else {
        if (incident.retrainSpec === undefined)
          throw ApplicationFailure.create({
            type: ErrorType.InvalidSpec,
            message: 'no spec to retrain from',
            nonRetryable: true,
          });
        const started = await quick.startRetraining({ spec: incident.retrainSpec, incident: incidentId });
        done = `started retraining ${model} as ${started.version} (${started.lifecycleId})`;
      }
      record({
        event: 'action-taken',
        incident: incidentId,
        ...about(incident.alert),
        summary: done,
        ...(pending.by ? { by: pending.by } : {}),
      });
      notify({
        kind: 'monitor-action',
        severity: 'warning',
        model,
        ...(incident.alert.version ? { version: incident.alert.version } : {}),
        summary: `${done}, after ${incident.alert.kind}: ${incident.alert.summary}`,
        details: { incident: incidentId, action: pending.kind },
        dedupKey: `${incidentId}:action:${pending.kind}`,
      });
    } catch (err) {
      const message = failureMessage(err);
      log.warn('monitor action failed', { incident: incidentId, action: pending.kind, error: message });
      record({
        event: 'action-failed',
        incident: incidentId,
        ...about(incident.alert),
        summary: `${pending.kind}: ${message}`,
      });
      notify({
        kind: 'monitor-action',
        severity: 'critical',
        model,
        summary: `${pending.kind} of ${model} after ${incident.alert.kind} failed: ${message}`,
        details: { incident: incidentId, action: pending.kind },
        dedupKey: `${incidentId}:action:${pending.kind}:failed`,
      });
    } finally {
      actionsRunning--;
      wake = true;
    }
  };

  const bounded = patched(BOUNDED_RUNS);
  const runEvents =
    Number.isInteger(input.runEvents) && input.runEvents! >= 100
      ? Math.min(input.runEvents!, ROUTER_RUN_EVENTS)
      : ROUTER_RUN_EVENTS;
  const runIsLong = () => {
    const { historyLength, historySize } = workflowInfo();
    return bounded && (historyLength >= runEvents || historySize >= ROUTER_RUN_BYTES);
  };
  let handled = 0;
  while (handled < ITEMS_PER_RUN && !workflowInfo().continueAsNewSuggested && !runIsLong()) {
    if (resending) {
      // A resolved incident has left `incidents`: once none is left to keep firing, the re-sends stop.
      if (resendMs === undefined || toResend().length === 0) nextResendAt = undefined;
      else nextResendAt = Math.min(nextResendAt ?? Infinity, Date.now() + resendMs);
    }
    const deadlines = [
      ...[...groups.values()].map((g) => g.dueAt),
      ...[...actions.values()].map((a) => a.dueAt),
      ...(nextResendAt !== undefined ? [nextResendAt] : []),
    ];
    const next = deadlines.length ? Math.min(...deadlines) : null;
    if (inbox.length === 0 && !wake) {
      if (next === null) await condition(() => inbox.length > 0 || wake);
      else if (next > Date.now()) await condition(() => inbox.length > 0 || wake, next - Date.now());
    }
    wake = false;
    while (inbox.length > 0) {
      const item = inbox.shift()!;
      handled++;
      // Inputs were checked when they arrived; should handling one still throw, it is logged and dropped rather than
      // failing the task on every replay (which would stop all alerting of the namespace).
      try {
        if ('alert' in item) await handleRaised(item.alert);
        else for (const obs of item.observations) await handleObservation(obs);
      } catch (err) {
        if (isCancellation(err)) throw err;
        log.error('alert router dropped an item it could not handle', {
          item: 'alert' in item ? item.alert.dedupKey : item.observations.map((o) => o.key),
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    const now = Date.now();
    for (const [key, group] of [...groups]) {
      if (group.dueAt > now) continue;
      groups.delete(key);
      deliver(group.alerts);
    }
    for (const [incident, pending] of [...actions]) {
      if (pending.dueAt > now) continue;
      actions.delete(incident);
      void act(incident, pending);
    }
    if (nextResendAt !== undefined && resendMs !== undefined && nextResendAt <= now) {
      nextResendAt = now + resendMs;
      const open = toResend();
      // One re-send at a time: one still retrying is overtaken by the next interval's, not doubled.
      if (open.length > 0 && !resendInFlight) {
        resendInFlight = true;
        deliver(
          open.map((i) => ({ ...i.alert, open: true })),
          true,
        );
      }
    }
  }
  // Everything in flight finishes in this run; what is still waiting in a group or for its delay is carried.
  await condition(() => deliveries.pending === 0 && actionsRunning === 0 && allHandlersFinished());
  for (const group of groups.values()) deliver(group.alerts);
  await condition(() => deliveries.pending === 0);
  await continueAsNew<typeof alertRouterWorkflow>({
    groupWaitMs,
    ...(input.runEvents !== undefined ? { runEvents: input.runEvents } : {}),
    carried: {
      book: book.state(),
      incidents: [...incidents.values()],
      silences: [...silences.values()],
      history: history.slice(-300),
      seq,
      observations,
      deliveries: { done: deliveries.done, failed: deliveries.failed },
      actions: [...actions],
      inbox,
      ...(resendMs !== undefined ? { resendMs } : {}),
    },
  });
}
