import { IncidentBook, type IncidentBookState, type IncidentEvent } from '../domain/incidents';
import {
  IMMEDIATE_ALERT_KINDS,
  type Alert,
  type AlertRecord,
  type AlertRouterState,
  type ModelSilence,
  type MonitorAction,
  type Observation,
  type OpenIncident,
} from '../shared/alerts';
import { AlertHistoryQuery, OverrideInput, type OverrideAck, type SilenceInput } from '../shared/monitoring';
import { parseInput, refuse } from './handlers';

/** An open incident as the router keeps it. */
export interface Incident {
  info: OpenIncident;
  /** The alert as last observed: what a resolve message and an action refer to. */
  alert: Alert;
  /** Whether notifications went out for it (a suppressed incident resolves quietly). */
  notified: boolean;
  silencedByRollout: boolean;
  retrainSpec?: unknown;
  lastSuppressionCheck: number;
}

/** An automated action waiting for its delay (a human may override it meanwhile). */
export interface PendingAction {
  kind: MonitorAction;
  dueAt: number;
  by?: string;
}

/** An observed batch or a raised alert, waiting for the router's loop. */
export type InboxItem = { observations: Observation[] } | { alert: Alert };

/** What one run of the router hands the next across continue-as-new (plain JSON). */
export interface CarriedRouterState {
  book: IncidentBookState;
  incidents: Incident[];
  silences: ModelSilence[];
  history: AlertRecord[];
  seq: number;
  observations: number;
  deliveries: { done: number; failed: number };
  actions: [string, PendingAction][];
  /** Signals that arrived after the last run stopped taking them. */
  inbox: InboxItem[];
  /** How often open incidents are re-sent to Alertmanager, as routing last said (routers with ALERTMANAGER_RESEND). */
  resendMs?: number;
}

/** What the desk asks of the world: whether a rollout of the model is acting on it now. */
export interface AlertDeskDeps {
  rolloutActing: (model: string) => Promise<{ lifecycleId: string; stage: string } | null>;
}

/** History entries kept and shown by the query. */
export const HISTORY_KEPT = 1000;
/** History entries carried across continue-as-new (the newest). */
export const HISTORY_CARRIED = 300;
/** How long a "no rollout is acting on this model" answer is trusted before asking again. */
const SUPPRESSION_RECHECK_MS = 15_000;

const modelOf = (a: { model?: string }) => a.model;
const groupOf = (a: Alert) => (a.model ? `model:${a.model}` : a.pool ? `pool:${a.pool}` : 'global');
/** The fields of an alert a history entry repeats. */
const about = (a: Alert) => ({
  kind: a.kind,
  severity: a.severity,
  ...(a.model ? { model: a.model } : {}),
  ...(a.version ? { version: a.version } : {}),
  ...(a.pool ? { pool: a.pool } : {}),
});

/**
 * The alert router's state and its rules: incidents with their hysteresis, silences, pending actions, notification
 * groups and the history. The workflow owns the I/O (routing, delivery, actions, authorization) and the loop; the desk
 * decides what each observation, alert, silence and override means, and what is carried to the next run.
 */
export class AlertDesk {
  readonly book: IncidentBook;
  readonly incidents: Map<string, Incident>;
  readonly silences: Map<string, ModelSilence>;
  readonly history: AlertRecord[];
  seq: number;
  observations: number;
  readonly deliveries: { pending: number; done: number; failed: number };
  /** Observed batches and raised alerts not handled yet. */
  readonly inbox: InboxItem[];
  /** Notifications waiting for their group's wait to end. */
  readonly groups = new Map<string, { alerts: Alert[]; dueAt: number }>();
  /** Automated actions waiting for their delay (a human may override them meanwhile). */
  readonly actions: Map<string, PendingAction>;
  /** How often Alertmanager sinks want open incidents re-sent (the smallest interval routing named); unset: none. */
  resendMs: number | undefined;
  /** Set when something changed that the loop must look at before it waits again. */
  wake = false;

  constructor(
    carried: CarriedRouterState | undefined,
    private readonly groupWaitMs: number,
    private readonly deps: AlertDeskDeps,
  ) {
    this.book = new IncidentBook(carried?.book);
    this.incidents = new Map((carried?.incidents ?? []).map((i) => [i.info.incident, i]));
    this.silences = new Map((carried?.silences ?? []).map((s) => [s.model, s]));
    this.history = [...(carried?.history ?? [])];
    this.seq = carried?.seq ?? 0;
    this.observations = carried?.observations ?? 0;
    this.deliveries = { pending: 0, done: carried?.deliveries.done ?? 0, failed: carried?.deliveries.failed ?? 0 };
    this.inbox = [...(carried?.inbox ?? [])];
    this.actions = new Map(carried?.actions ?? []);
    this.resendMs = carried?.resendMs;
  }

  /** Routers that do not re-send open incidents carry no re-send interval. */
  keepResends(resending: boolean): void {
    if (!resending) this.resendMs = undefined;
  }

  record(r: Omit<AlertRecord, 'seq' | 'at'>): void {
    this.history.push({ seq: ++this.seq, at: new Date().toISOString(), ...r });
    while (this.history.length > HISTORY_KEPT) this.history.shift();
  }

  /** The router's query: open incidents (with their pending action), silences and history, of one model or all. */
  view(raw: unknown): AlertRouterState {
    const q = parseInput(AlertHistoryQuery.optional(), raw, 'alert history query');
    const model = q?.model;
    const limit = Math.max(1, Math.min(q?.limit ?? 100, HISTORY_KEPT));
    const mine = <T extends { model?: string }>(x: T) => model === undefined || modelOf(x) === model;
    return {
      open: [...this.incidents.values()]
        .map((i) => {
          const action = this.actions.get(i.info.incident);
          return {
            ...i.info,
            ...(action ? { action: { kind: action.kind, dueAt: new Date(action.dueAt).toISOString() } } : {}),
          };
        })
        .filter(mine),
      silences: [...this.silences.values()].filter(mine),
      history: this.history.filter(mine).slice(-limit),
      observations: this.observations,
      deliveries: { ...this.deliveries },
    };
  }

  /** Applies an authorized silence (`forMs: 0` lifts one): the silence now, or the one lifted (null: there was none). */
  silence(s: SilenceInput, keyId: string | null): ModelSilence | null {
    const signedBy = keyId ? { keyId } : {};
    if (s.forMs === 0) {
      const was = this.silences.get(s.model) ?? null;
      this.silences.delete(s.model);
      this.record({
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
    this.silences.set(s.model, silence);
    this.record({
      event: 'silenced',
      model: s.model,
      summary: `alerts of ${s.model} silenced until ${silence.until}${s.reason ? `: ${s.reason}` : ''}`,
      by: s.by,
      ...signedBy,
    });
    return silence;
  }

  /** The override, checked against what is open and pending now; a typed refusal otherwise. */
  checkOverride(raw: unknown): OverrideInput {
    const o = parseInput(OverrideInput, raw, 'override');
    const incident = this.incidents.get(o.incident);
    if (!incident) throw refuse(`override: no open incident "${o.incident}"`);
    if (!this.actions.has(o.incident))
      throw refuse(`override: incident "${o.incident}" has no pending action (it only notifies, or already acted)`);
    if (o.action === 'retrain' && incident.retrainSpec === undefined)
      throw refuse(`override: incident "${o.incident}" has no spec to retrain from`);
    return o;
  }

  /** Applies a checked, authorized override: `notify` cancels the pending action, another replaces it and runs now. */
  override(o: OverrideInput, keyId: string | null): OverrideAck {
    const pending = this.actions.get(o.incident)!;
    const at = new Date().toISOString();
    const incident = this.incidents.get(o.incident)!;
    this.record({
      event: 'action-overridden',
      incident: o.incident,
      ...about(incident.alert),
      summary: `${pending.kind} → ${o.action}${o.reason ? `: ${o.reason}` : ''}`,
      by: o.by,
      ...(keyId ? { keyId } : {}),
    });
    if (o.action === 'notify') this.actions.delete(o.incident);
    else this.actions.set(o.incident, { kind: o.action, dueAt: Date.now(), by: o.by });
    this.wake = true;
    return { incident: o.incident, was: pending.kind, now: o.action, at };
  }

  /** Queues a notification: alone and due now for the kinds that cannot wait, else in its group. */
  notify(alert: Alert): void {
    if (IMMEDIATE_ALERT_KINDS.includes(alert.kind)) {
      // Alone and at once: waiting to be grouped would keep an approver from a gate that is open now.
      this.groups.set(`now:${alert.dedupKey}`, { alerts: [alert], dueAt: Date.now() });
      this.wake = true;
      return;
    }
    const key = groupOf(alert);
    const group = this.groups.get(key);
    if (group) group.alerts.push(alert);
    else this.groups.set(key, { alerts: [alert], dueAt: Date.now() + this.groupWaitMs });
  }

  /** An alert as delivered: marked `open` while its incident is (Alertmanager keeps it firing until we stop). */
  marked(a: Alert): Alert {
    if (this.incidents.has(a.dedupKey) && !a.resolved) return { ...a, open: true };
    if (a.open === undefined) return a;
    const { open: _open, ...oneOff } = a;
    return oneOff;
  }

  /**
   * What routing says of re-sends. A re-send lists every incident to keep firing, so its routes are the whole answer
   * (no Alertmanager route: nothing to re-send). A notification's may name one Alertmanager sink of several: the
   * interval only shrinks, so every sink's incidents are re-sent at least as often as it asks.
   */
  learnResendMs(routes: { resendMs?: number }[], resend: boolean): void {
    const intervals = routes.flatMap((r) => (r.resendMs !== undefined ? [r.resendMs] : []));
    const known = resend ? Infinity : (this.resendMs ?? Infinity);
    const learned = intervals.length > 0 ? Math.min(known, ...intervals) : resend ? undefined : this.resendMs;
    if (learned === this.resendMs) return;
    this.resendMs = learned;
    this.wake = true; // the loop sets (or clears) the re-send deadline
  }

  /** Records that a sink (none: the log alone) took an alert. */
  delivered(a: Alert, sinks: string[], owner: string | undefined): void {
    this.record({
      event: 'delivered',
      incident: a.dedupKey,
      ...about(a),
      summary: a.resolved ? `resolve of ${a.dedupKey}` : a.summary,
      ...(owner ? { owner } : {}),
      sinks,
    });
  }

  /** Records that `sink` (or `routing`) did not take an alert, and why. */
  deliveryFailed(a: Alert, sink: string, why: string, resend: boolean): void {
    this.record({
      event: 'delivery-failed',
      incident: a.dedupKey,
      ...about(a),
      summary: `${resend ? 're-send: ' : ''}${sink}: ${why}`,
      sinks: [sink],
    });
  }

  /**
   * Incidents Alertmanager keeps firing: notified and still open. One whose notification still waits in a group is
   * left to it (it goes out with its `endsAt`).
   */
  toResend(): Incident[] {
    const waiting = new Set([...this.groups.values()].flatMap((g) => g.alerts.map((a) => a.dedupKey)));
    return [...this.incidents.values()].filter(
      (i) => i.notified && i.info.state !== 'suppressed' && !waiting.has(i.info.incident),
    );
  }

  /** When groups and pending actions fall due. */
  deadlines(): number[] {
    return [...[...this.groups.values()].map((g) => g.dueAt), ...[...this.actions.values()].map((a) => a.dueAt)];
  }

  /** The groups due at `now`, taken out, oldest first. */
  dueGroups(now: number): Alert[][] {
    const due: Alert[][] = [];
    for (const [key, group] of [...this.groups]) {
      if (group.dueAt > now) continue;
      this.groups.delete(key);
      due.push(group.alerts);
    }
    return due;
  }

  /** The actions due at `now`, taken out, oldest first. */
  dueActions(now: number): [string, PendingAction][] {
    const due: [string, PendingAction][] = [];
    for (const [incident, pending] of [...this.actions]) {
      if (pending.dueAt > now) continue;
      this.actions.delete(incident);
      due.push([incident, pending]);
    }
    return due;
  }

  /** Why a model's incident stays quiet now: a silence, or its own rollout acting on it; null when it may speak. */
  async suppression(incident: Incident): Promise<string | null> {
    const model = incident.alert.model;
    if (!model) return null;
    const silence = this.silences.get(model);
    if (silence && Date.parse(silence.until) > Date.now())
      return `silenced by ${silence.by} until ${silence.until}${silence.reason ? ` (${silence.reason})` : ''}`;
    if (silence) this.silences.delete(model);
    if (!incident.silencedByRollout) return null;
    incident.lastSuppressionCheck = Date.now();
    const acting = await this.deps.rolloutActing(model);
    return acting ? `rollout ${acting.lifecycleId} is acting on ${model} (${acting.stage})` : null;
  }

  private speak(incident: Incident, action: MonitorAction, delayMs: number): void {
    incident.info.state = 'firing';
    incident.notified = true;
    this.notify(incident.alert);
    if (action !== 'notify' && incident.alert.model) {
      this.actions.set(incident.info.incident, { kind: action, dueAt: Date.now() + delayMs });
      this.record({
        event: 'action-scheduled',
        incident: incident.info.incident,
        ...about(incident.alert),
        summary: `${action} in ${Math.round(delayMs / 1000)} s unless overridden`,
      });
    }
  }

  private async fire(
    ev: Extract<IncidentEvent, { type: 'fire' }>,
    alert: Alert,
    options: { action: MonitorAction; delayMs: number; silencedByRollout: boolean; retrainSpec?: unknown },
  ): Promise<void> {
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
    this.incidents.set(ev.incident, incident);
    const quiet = await this.suppression(incident);
    if (quiet) {
      incident.info.state = 'suppressed';
      this.record({
        event: 'suppressed',
        incident: ev.incident,
        ...about(alert),
        summary: `${alert.summary} — ${quiet}`,
      });
      return;
    }
    this.record({ event: 'fired', incident: ev.incident, ...about(alert), summary: alert.summary });
    this.speak(incident, options.action, options.delayMs);
  }

  private resolve(incidentId: string, summary?: string): void {
    const incident = this.incidents.get(incidentId);
    if (!incident) return;
    this.incidents.delete(incidentId);
    this.actions.delete(incidentId);
    const text = `resolved: ${summary ?? incident.alert.summary}`;
    this.record({ event: 'resolved', incident: incidentId, ...about(incident.alert), summary: text });
    if (incident.notified)
      this.notify({ ...incident.alert, severity: 'info', summary: text, resolved: true, dedupKey: incidentId });
  }

  /**
   * One check of a monitor: through the incident book's hysteresis it may open an incident (fired, or suppressed by a
   * silence or the model's own rollout), resolve one, escalate one, or only refresh the open one's latest reading.
   */
  async observe(obs: Observation): Promise<void> {
    this.observations++;
    const ev = this.book.observe(obs);
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
    const open = this.book.openIncident(obs.key);
    if (ev?.type === 'fire') {
      await this.fire(ev, alert, {
        action: obs.action ?? 'notify',
        delayMs: obs.actionDelayMs ?? 0,
        silencedByRollout: obs.silencedByRollout ?? Boolean(obs.model),
        ...(obs.actionContext?.retrainSpec !== undefined ? { retrainSpec: obs.actionContext.retrainSpec } : {}),
      });
      return;
    }
    if (ev?.type === 'resolve') {
      this.resolve(ev.incident, obs.summary);
      return;
    }
    const incident = open ? this.incidents.get(open) : undefined;
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
      const quiet = await this.suppression(incident);
      if (quiet) return;
      this.record({
        event: 'fired',
        incident: open!,
        ...about(incident.alert),
        summary: `${obs.summary} (no longer suppressed)`,
      });
      this.speak(incident, obs.action ?? 'notify', obs.actionDelayMs ?? 0);
    } else if (ev?.type === 'escalate') {
      this.record({
        event: 'fired',
        incident: open!,
        ...about(incident.alert),
        summary: `escalated to ${ev.severity}: ${obs.summary}`,
      });
      this.notify(incident.alert);
    }
  }

  /** A one-off alert a workflow raised: fired, escalated or resolved by its dedup key, unless its model is silenced. */
  // Async though it awaits nothing: the loop awaits it as it awaits observe, and the router's histories record the
  // commands in the order those awaits give.
  async raise(alert: Alert): Promise<void> {
    const ev = this.book.raise(alert);
    if (!ev) return;
    if (ev.type === 'resolve') {
      this.record({ event: 'resolved', incident: alert.dedupKey, ...about(alert), summary: alert.summary });
      this.notify(alert);
      return;
    }
    const model = alert.model;
    const silence = model ? this.silences.get(model) : undefined;
    if (silence && Date.parse(silence.until) > Date.now()) {
      this.record({
        event: 'suppressed',
        incident: alert.dedupKey,
        ...about(alert),
        summary: `${alert.summary} — silenced by ${silence.by}`,
      });
      return;
    }
    this.record({
      event: 'fired',
      incident: alert.dedupKey,
      ...about(alert),
      summary: ev.type === 'escalate' ? `escalated to ${ev.severity}: ${alert.summary}` : alert.summary,
    });
    this.notify(alert);
  }

  /** Records an action that ran and notifies about it. */
  actionTaken(incidentId: string, incident: Incident, pending: { kind: MonitorAction; by?: string }, done: string) {
    const model = incident.alert.model!;
    this.record({
      event: 'action-taken',
      incident: incidentId,
      ...about(incident.alert),
      summary: done,
      ...(pending.by ? { by: pending.by } : {}),
    });
    this.notify({
      kind: 'monitor-action',
      severity: 'warning',
      model,
      ...(incident.alert.version ? { version: incident.alert.version } : {}),
      summary: `${done}, after ${incident.alert.kind}: ${incident.alert.summary}`,
      details: { incident: incidentId, action: pending.kind },
      dedupKey: `${incidentId}:action:${pending.kind}`,
    });
  }

  /** Records an action that failed and pages about it. */
  actionFailed(incidentId: string, incident: Incident, pending: { kind: MonitorAction }, message: string): void {
    const model = incident.alert.model!;
    this.record({
      event: 'action-failed',
      incident: incidentId,
      ...about(incident.alert),
      summary: `${pending.kind}: ${message}`,
    });
    this.notify({
      kind: 'monitor-action',
      severity: 'critical',
      model,
      summary: `${pending.kind} of ${model} after ${incident.alert.kind} failed: ${message}`,
      details: { incident: incidentId, action: pending.kind },
      dedupKey: `${incidentId}:action:${pending.kind}:failed`,
    });
  }

  /** What the next run starts from: everything but notifications still grouped (they are delivered first). */
  carried(): CarriedRouterState {
    return {
      book: this.book.state(),
      incidents: [...this.incidents.values()],
      silences: [...this.silences.values()],
      history: this.history.slice(-HISTORY_CARRIED),
      seq: this.seq,
      observations: this.observations,
      deliveries: { done: this.deliveries.done, failed: this.deliveries.failed },
      actions: [...this.actions],
      inbox: this.inbox,
      ...(this.resendMs !== undefined ? { resendMs: this.resendMs } : {}),
    };
  }
}
