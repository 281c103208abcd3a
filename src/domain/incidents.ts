/**
 * Incidents from observations: M-of-N hysteresis before firing, K good checks in a row before resolving, one numbered
 * incident per firing (`serving:churn:prediction-drift#3`). Pure and workflow-safe: the alert router keeps one book
 * and carries its state across continue-as-new.
 */
import { DEFAULT_HYSTERESIS, type Alert, type Hysteresis, type Observation, type Severity } from '../shared/alerts';

interface Stream {
  /** Last checks, oldest first, at most the hysteresis window long (inconclusive checks are not kept). */
  window: boolean[];
  /** Good checks in a row since the last bad one. */
  clear: number;
  /** Incidents of this stream so far: the next one is numbered `count + 1`. */
  count: number;
  /** The open incident's id, if one is open. */
  open: string | null;
  severity: Severity | null;
}

export interface IncidentBookState {
  streams: Record<string, Stream>;
  /** The latest raised alerts by dedup key, oldest first (at most MAX_RAISED_KEPT). */
  raised?: [string, { severity: Severity; open: boolean }][];
}

/** Raised alerts remembered for deduplication. */
const MAX_RAISED_KEPT = 2000;

export type IncidentEvent =
  | { type: 'fire'; incident: string; key: string; severity: Severity; bad: number; of: number }
  | { type: 'escalate'; incident: string; key: string; severity: Severity }
  | { type: 'resolve'; incident: string; key: string; clear: number };

const RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 };

export function validHysteresis(h: Hysteresis): boolean {
  return (
    Number.isInteger(h.fireAfter) &&
    Number.isInteger(h.window) &&
    Number.isInteger(h.resolveAfter) &&
    h.fireAfter >= 1 &&
    h.window >= h.fireAfter &&
    h.resolveAfter >= 1
  );
}

export class IncidentBook {
  private readonly streams: Map<string, Stream>;
  private readonly raised: Map<string, { severity: Severity; open: boolean }>;

  constructor(state?: IncidentBookState) {
    this.streams = new Map(Object.entries(state?.streams ?? {}));
    this.raised = new Map(state?.raised ?? []);
  }

  state(): IncidentBookState {
    // Streams with nothing open and nothing seen lately are dropped, so the book does not grow with every key ever seen.
    const kept = [...this.streams].filter(([, s]) => s.open !== null || s.window.some(Boolean) || s.count > 0);
    return { streams: Object.fromEntries(kept), raised: [...this.raised] };
  }

  openIncident(key: string): string | null {
    return this.streams.get(key)?.open ?? null;
  }

  private stream(key: string): Stream {
    let s = this.streams.get(key);
    if (!s) {
      s = { window: [], clear: 0, count: 0, open: null, severity: null };
      this.streams.set(key, s);
    }
    return s;
  }

  /** Takes one check of a condition; answers the incident it opened, escalated or closed, if any. */
  observe(obs: Pick<Observation, 'key' | 'firing' | 'severity' | 'hysteresis'>): IncidentEvent | null {
    if (obs.firing === null) return null;
    const h = obs.hysteresis && validHysteresis(obs.hysteresis) ? obs.hysteresis : DEFAULT_HYSTERESIS;
    const s = this.stream(obs.key);
    s.window.push(obs.firing);
    while (s.window.length > h.window) s.window.shift();
    s.clear = obs.firing ? 0 : s.clear + 1;
    const bad = s.window.filter(Boolean).length;
    if (s.open === null) {
      if (!obs.firing || bad < h.fireAfter) return null;
      s.count++;
      s.open = `${obs.key}#${s.count}`;
      s.severity = obs.severity;
      return { type: 'fire', incident: s.open, key: obs.key, severity: obs.severity, bad, of: s.window.length };
    }
    if (obs.firing) {
      if (s.severity !== null && RANK[obs.severity] > RANK[s.severity]) {
        s.severity = obs.severity;
        return { type: 'escalate', incident: s.open, key: obs.key, severity: obs.severity };
      }
      return null;
    }
    if (s.clear < h.resolveAfter) return null;
    const incident = s.open;
    s.open = null;
    s.severity = null;
    // A resolved incident starts a fresh window: old bad checks do not count toward the next one.
    s.window = [];
    return { type: 'resolve', incident, key: obs.key, clear: s.clear };
  }

  /**
   * An alert raised by a workflow: its dedup key is the incident. Raising an open incident again is a duplicate (an
   * activity retried after its signal went through) unless the severity rose (escalate); a resolve closes it, and the
   * same key may then open a new incident (a quota monitor's usage alert, say). One-off alerts are never resolved and
   * stay deduplicated while remembered (the latest MAX_RAISED_KEPT keys).
   */
  raise(alert: Pick<Alert, 'dedupKey' | 'severity' | 'resolved'>): IncidentEvent | null {
    const key = alert.dedupKey;
    const seen = this.raised.get(key);
    if (alert.resolved) {
      if (!seen?.open) return null;
      this.remember(key, { severity: seen.severity, open: false });
      return { type: 'resolve', incident: key, key, clear: 0 };
    }
    if (seen?.open) {
      if (RANK[alert.severity] <= RANK[seen.severity]) return null;
      this.remember(key, { severity: alert.severity, open: true });
      return { type: 'escalate', incident: key, key, severity: alert.severity };
    }
    this.remember(key, { severity: alert.severity, open: true });
    return { type: 'fire', incident: key, key, severity: alert.severity, bad: 1, of: 1 };
  }

  private remember(key: string, entry: { severity: Severity; open: boolean }): void {
    this.raised.delete(key);
    this.raised.set(key, entry);
    for (const oldest of this.raised.keys()) {
      if (this.raised.size <= MAX_RAISED_KEPT) break;
      this.raised.delete(oldest);
    }
  }
}
