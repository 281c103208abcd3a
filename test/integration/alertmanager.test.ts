import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAlertConfig } from '../../src/config/alert-sinks';
import { alertmanagerAlerts, startAlertmanager, type AlertmanagerServer } from '../../src/dev/prometheus';
import type { Alert, AlertRouterState, Observation } from '../../src/shared/alerts';
import {
  ALERT_ROUTER_WORKFLOW_ID,
  alertRouterQuery,
  observeSignal,
  raiseAlertSignal,
} from '../../src/shared/monitoring';
import { LIFECYCLE_TASK_QUEUE } from '../../src/shared/task-queues';
import { ALERT_GROUP_WAIT_MS, observe, recordHistory, startStack, uniqueName, type Stack } from '../helpers/harness';
import { tempDir } from '../helpers/temp';

/** Alertmanager's `resolve_timeout`: an alert nobody re-sends resolves this long after it was last posted. */
const RESOLVE_TIMEOUT_MS = Number(process.env.MLL_ALERTMANAGER_RESOLVE_TIMEOUT_MS ?? 4_000);
/**
 * The sink's `resendInterval`, as the sinks file below says it. The long run of the closing note:
 * `MLL_ALERTMANAGER_RESOLVE_TIMEOUT_MS=300000 MLL_ALERTMANAGER_RESEND_MS=20000 MLL_ALERTMANAGER_HOLD_MS=720000
 * npx vitest run test/integration/alertmanager.test.ts -t "keeps an open incident"` (12 minutes, Alertmanager's default
 * resolve_timeout).
 */
const RESEND_MS = Number(process.env.MLL_ALERTMANAGER_RESEND_MS ?? 2_000);
/** How long the open incident must stay firing in Alertmanager: default five resolve timeouts. */
const HOLD_MS = Number(process.env.MLL_ALERTMANAGER_HOLD_MS ?? 20_000);
const POLL_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Alertmanager as a first-class sink, against a real Alertmanager: the router re-sends open incidents with `endsAt`
 * ahead, so they stay firing exactly as long as they are open, far past Alertmanager's `resolve_timeout`, and resolve
 * when they resolve; one-off alerts are posted once, as before.
 */
describe('alert router and a real Alertmanager', () => {
  let am: AlertmanagerServer;
  let stack: Stack;
  let dir: string;

  beforeAll(async () => {
    am = await startAlertmanager({ resolveTimeoutMs: RESOLVE_TIMEOUT_MS });
    // Through the sinks file, as an operator configures it.
    dir = tempDir('mll-am-sinks-');
    const file = join(dir, 'alert-sinks.yaml');
    writeFileSync(
      file,
      [
        'sinks:',
        '  - name: pager',
        '    kind: alertmanager',
        `    url: ${am.alertsUrl}`,
        `    resendInterval: ${RESEND_MS}ms`,
      ].join('\n'),
    );
    const config = loadAlertConfig(file, {});
    expect(config.sinks[0]!.resendIntervalMs).toBe(RESEND_MS);
    stack = await startStack({ alertSinks: config.sinks, alertRoutes: config.routes });
    // The namespace's router, with the tests' short group wait (the observe helper would start it with the default).
    await stack.client.workflow.start('alertRouterWorkflow', {
      workflowId: ALERT_ROUTER_WORKFLOW_ID,
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ groupWaitMs: ALERT_GROUP_WAIT_MS }],
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
  });
  afterAll(async () => {
    await stack?.close();
    await am?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const latency = (model: string, firing: boolean): Observation => ({
    key: `serving:${model}:serving-latency`,
    kind: 'serving-latency',
    severity: 'warning',
    firing,
    summary: `${model} v1: p99 latency ${firing ? 'over' : 'under'} its limit`,
    model,
    version: 'v1',
    hysteresis: { fireAfter: 1, window: 1, resolveAfter: 1 },
    silencedByRollout: false,
    at: new Date().toISOString(),
  });
  const active = async (labels: Record<string, string>) =>
    (await alertmanagerAlerts(am.url, labels)).filter((a) => a.status.state === 'active');

  it(
    'keeps an open incident firing past resolve_timeout by re-sending it, and resolves it when it resolves',
    async () => {
      const model = uniqueName('am-open');
      const labels = { alertname: 'serving-latency', model };
      await observe(stack.client, [latency(model, true)]);
      await expect.poll(async () => (await active(labels)).length, { timeout: 15_000, interval: 100 }).toBe(1);
      const [first] = await active(labels);
      expect(first!.labels).toMatchObject({ severity: 'warning', dedup_key: `serving:${model}:serving-latency#1` });

      // Every poll of the hold period must find it active; a gap is recorded with when it happened.
      const gaps: { atMs: number; found: number }[] = [];
      const updates = new Set<string>();
      let polls = 0;
      let maxAheadMs = 0;
      const start = Date.now();
      while (Date.now() - start < HOLD_MS) {
        const found = await active(labels);
        polls++;
        if (found.length !== 1) gaps.push({ atMs: Date.now() - start, found: found.length });
        for (const a of found) {
          updates.add(a.updatedAt);
          maxAheadMs = Math.max(maxAheadMs, Date.parse(a.endsAt) - Date.now());
          // The same alert throughout: it started when the incident fired, however often it was re-sent.
          expect(a.startsAt).toBe(first!.startsAt);
        }
        await sleep(POLL_MS);
      }
      console.log(
        `open incident held ${Date.now() - start} ms (${(HOLD_MS / RESOLVE_TIMEOUT_MS).toFixed(1)}× resolve_timeout): ` +
          `${polls} polls, ${gaps.length} gaps, ${updates.size} distinct updates seen, endsAt at most ${maxAheadMs} ms ahead`,
      );
      expect(gaps).toEqual([]);
      // Re-sent about every interval (each moves updatedAt), with endsAt 3 intervals ahead, never further.
      expect(updates.size).toBeGreaterThanOrEqual(Math.floor(HOLD_MS / RESEND_MS / 2));
      expect(maxAheadMs).toBeLessThanOrEqual(3 * RESEND_MS + 1_000);
      expect(maxAheadMs).toBeGreaterThan(2 * RESEND_MS);

      const resolvedAt = Date.now();
      await observe(stack.client, [latency(model, false)]);
      while ((await active(labels)).length > 0) {
        expect(Date.now() - resolvedAt, 'still active in Alertmanager after its resolve').toBeLessThan(30_000);
        await sleep(100);
      }
      const resolveMs = Date.now() - resolvedAt;
      console.log(
        `resolve → gone from Alertmanager in ${resolveMs} ms (limit: resendInterval ${RESEND_MS} ms + 2000 ms)`,
      );
      expect(resolveMs).toBeLessThanOrEqual(RESEND_MS + 2_000);
      const state: AlertRouterState = await stack.client.workflow
        .getHandle(ALERT_ROUTER_WORKFLOW_ID)
        .query(alertRouterQuery, { model, limit: 1000 });
      expect(state.open).toEqual([]);
      // Re-sends write no history: one delivery of the firing alert, one of its resolve; no failures.
      expect(state.history.filter((h) => h.event === 'delivered').map((h) => h.summary)).toEqual([
        latency(model, true).summary,
        `resolve of serving:${model}:serving-latency#1`,
      ]);
      expect(state.history.filter((h) => h.event === 'delivery-failed')).toEqual([]);
      // Resolved incidents are no longer re-sent: it stays gone.
      await sleep(RESEND_MS + 1_000);
      expect(await active(labels)).toEqual([]);
    },
    HOLD_MS + 60_000,
  );

  it('posts a one-off alert once, without endsAt, so Alertmanager resolves it after resolve_timeout as before', async () => {
    const model = uniqueName('am-oneoff');
    const rollback: Alert = {
      kind: 'rollback',
      severity: 'critical',
      model,
      version: 'v2',
      summary: `${model} v2 rolled back to v1`,
      dedupKey: `lifecycle-${model}-v2:rollback:1`,
    };
    await stack.client.workflow.getHandle(ALERT_ROUTER_WORKFLOW_ID).signal(raiseAlertSignal, rollback);
    const labels = { alertname: 'rollback', model };
    await expect.poll(async () => (await active(labels)).length, { timeout: 15_000, interval: 100 }).toBe(1);
    const [posted] = await active(labels);
    // Alertmanager gave it its own end: resolve_timeout after it was posted, not 3 re-send intervals ahead.
    const aheadMs = Date.parse(posted!.endsAt) - Date.parse(posted!.updatedAt);
    expect(aheadMs).toBeGreaterThan(RESOLVE_TIMEOUT_MS - 1_000);
    expect(aheadMs).toBeLessThanOrEqual(RESOLVE_TIMEOUT_MS + 1_000);
    // Not re-sent: it is gone once resolve_timeout has passed.
    await expect
      .poll(async () => (await active(labels)).length, { timeout: RESOLVE_TIMEOUT_MS + 5_000, interval: 250 })
      .toBe(0);
    expect(stack.alerts.find((a) => a.dedupKey === rollback.dedupKey)).not.toHaveProperty('open');
  });

  it('records a router history with re-sends for the replay test (fire, re-send, resolve)', async () => {
    if (process.env.RECORD_HISTORIES !== '1') return;
    const model = uniqueName('fixture-am');
    const router = await stack.client.workflow.start('alertRouterWorkflow', {
      workflowId: `fixture-router-${model}`,
      taskQueue: LIFECYCLE_TASK_QUEUE,
      args: [{ groupWaitMs: 200 }],
    });
    const labels = { alertname: 'serving-latency', model };
    await router.signal(observeSignal, [latency(model, true)]);
    await expect.poll(async () => (await active(labels)).length, { timeout: 15_000, interval: 100 }).toBe(1);
    // Two re-sends: each moves the alert's updatedAt.
    const seen = new Set<string>();
    await expect
      .poll(
        async () => {
          for (const a of await active(labels)) seen.add(a.updatedAt);
          return seen.size;
        },
        { timeout: 4 * RESEND_MS + 5_000, interval: 200 },
      )
      .toBeGreaterThanOrEqual(3);
    await router.signal(observeSignal, [latency(model, false)]);
    await expect.poll(async () => (await active(labels)).length, { timeout: 15_000, interval: 100 }).toBe(0);
    await expect
      .poll(async () => (await router.query(alertRouterQuery)).deliveries)
      .toMatchObject({
        pending: 0,
        done: 2,
      });
    await recordHistory(stack.client, router.workflowId, 'alert-router-resend');
    await router.terminate('fixture recorded');
  });
});
