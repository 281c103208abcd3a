import {
  continueAsNew,
  deprecatePatch,
  log,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { poolAlerts } from '../domain/quota';
import type { Alert } from '../shared/alerts';
import { quotaMonitorQuery } from '../shared/messages';
import type { QuotaAlertState, QuotaMonitorState } from '../shared/quota';
import { PoolName } from '../shared/names';
import { parseInput } from './handlers';
import { setLogContext } from './log-context';
import { backoff } from './activity-options';

export interface QuotaMonitorInput {
  pool: string;
  carried?: { alerts: QuotaAlertState[]; lastExpiredAt: string | null; delivered: number };
}

const control = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: backoff('1 second', '1 minute', 10),
});

/**
 * Marks monitor runs that hand their alerts to the alert router. Retired: a monitor run ends within CHECKS_PER_RUN
 * checks, so every run that started before it has ended. Its call goes at 0.2 (docs/versioning.md).
 */
const ALERT_ROUTER = 'alert-router';

/** Checks per run before continuing as new (each check is a handful of events). */
const CHECKS_PER_RUN = 500;
/** When the pool has not been used yet, look again after this long. */
const IDLE_MS = 60_000;

/**
 * Watches one quota pool: on a timer it reads the pool's state (a query: nothing is written to the pool's history)
 * and fires an alert once per incident — usage above a threshold, exhaustion forecast within the horizon, a pipeline
 * flagged faulty, a lease expired because its holder stopped renewing — and a resolve message when the incident
 * clears. Alert delivery runs here, not in the pool, so the pool's workflow does nothing but grant and release.
 */
export async function quotaMonitorWorkflow(input: QuotaMonitorInput): Promise<void> {
  parseInput(PoolName, input?.pool, 'quota monitor pool');
  setLogContext({ pool: input.pool });
  const open = new Map<string, QuotaAlertState>((input.carried?.alerts ?? []).map((a) => [a.key, a]));
  // Leases that expired before the monitor first started are history, not news.
  let lastExpiredAt = input.carried ? input.carried.lastExpiredAt : new Date().toISOString();
  let delivered = input.carried?.delivered ?? 0;
  let lastCheckAt: string | null = null;
  let checks = 0;
  setHandler(quotaMonitorQuery, (): QuotaMonitorState => ({
    pool: input.pool,
    alerts: [...open.values()],
    lastCheckAt,
    checks,
    delivered,
  }));

  const deliver = async (alert: Alert) => {
    try {
      // Through the alert router: retried delivery, routes, history.
      deprecatePatch(ALERT_ROUTER);
      await control.raiseAlert(alert);
      delivered++;
    } catch (err) {
      log.error('quota alert delivery failed', { key: alert.dedupKey, error: String(err) });
    }
  };

  while (checks < CHECKS_PER_RUN && !workflowInfo().continueAsNewSuggested) {
    // A summary: the whole state grows with the leases (2 MB, the payload limit, at about 8,300 of them).
    const state = await control.readPoolState({ pool: input.pool, summary: true });
    checks++;
    lastCheckAt = new Date().toISOString();
    if (!state) {
      await sleep(IDLE_MS);
      continue;
    }
    const now = Date.parse(state.at);
    const wanted = poolAlerts(state.config, state.resources, state.faulty, open, now);
    const wantedKeys = new Set(wanted.map((w) => w.key));
    for (const w of wanted) {
      const current = open.get(w.key);
      if (current && current.severity === w.severity) {
        open.set(w.key, { ...current, summary: w.summary, details: w.details });
        continue;
      }
      open.set(w.key, { ...w, since: current?.since ?? state.at });
      await deliver({
        kind: w.kind as Alert['kind'],
        severity: w.severity,
        pool: input.pool,
        summary: w.summary,
        details: w.details,
        dedupKey: w.key,
      });
    }
    for (const [key, current] of [...open]) {
      if (wantedKeys.has(key)) continue;
      open.delete(key);
      await deliver({
        kind: current.kind as Alert['kind'],
        severity: 'info',
        pool: input.pool,
        summary: `resolved: ${current.summary}`,
        details: current.details,
        dedupKey: key,
        resolved: true,
      });
    }
    // Leases that expired since the last look: their holder stopped renewing (crashed, killed, lost).
    const expired = state.runs.filter(
      (r) => r.ended === 'expired' && (lastExpiredAt === null || r.endedAt > lastExpiredAt),
    );
    for (const run of expired) {
      await deliver({
        kind: 'quota-lease-expired',
        severity: 'warning',
        pool: input.pool,
        summary: `pool "${input.pool}": lease ${run.leaseId} of ${run.holder} expired unrenewed (holder gone?); its quota is back in the pool`,
        details: { run },
        dedupKey: `quota:${input.pool}:expired:${run.leaseId}`,
      });
      lastExpiredAt = run.endedAt;
    }
    // An idle pool (nothing held or waiting, nothing open) is looked at a quarter as often, at most every 5 minutes.
    // Counts come with a summary; recorded histories (and pools from before it) answered the whole state.
    const held = state.counts?.leases ?? state.leases.length;
    const waiting = state.counts?.waiting ?? state.waiting.length;
    const idle = held === 0 && waiting === 0 && open.size === 0;
    const every = state.config.alerts.checkEvery;
    await sleep(idle ? Math.max(every, Math.min(every * 4, IDLE_MS * 5)) : every);
  }
  await continueAsNew<typeof quotaMonitorWorkflow>({
    pool: input.pool,
    carried: { alerts: [...open.values()], lastExpiredAt, delivered },
  });
}
