import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/dev/ports';
import type { LoadGenerator } from '../../src/dev/load-generator';
import { LifecycleMetrics } from '../../src/metrics/lifecycle-metrics';
import { startMetricsServer, temporalPrometheusTelemetry, type MetricsServer } from '../../src/metrics/server';
import { LIFECYCLE_TASK_QUEUE } from '../../src/shared/task-queues';
import {
  ROOT,
  approveAll,
  installQuietRuntime,
  liveTraffic,
  startStack,
  testSpec,
  uniqueName,
  waitForStatus,
  type Stack,
} from '../helpers/harness';
import { parsePrometheusText, samplesOf, type PromPage } from '../helpers/prometheus-text';

async function scrape(url: string): Promise<PromPage> {
  const res = await fetch(url);
  expect(res.status, url).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return parsePrometheusText(await res.text());
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when there is none. */
function value(page: PromPage, name: string, labels: Record<string, string>): number | undefined {
  const [m, ...more] = samplesOf(page, name, labels);
  expect(more, `${name} ${JSON.stringify(labels)} matches one series`).toEqual([]);
  return m?.value;
}

/** Sum of the samples named `name` whose labels include `labels`. */
const total = (page: PromPage, name: string, labels: Record<string, string> = {}) =>
  samplesOf(page, name, labels).reduce((n, s) => n + s.value, 0);

/**
 * Metric names a PromQL expression reads: what is left after removing strings, label matchers, ranges, grouping
 * clauses, Grafana variables, numbers, function calls and keywords.
 */
function promqlSeries(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ');
  const keywords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or']);
  keywords.add('unless').add('offset').add('inf').add('nan');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const after = stripped.slice(m.index + m[0].length);
    if (/^\s*\(/.test(after) || keywords.has(m[0].toLowerCase())) continue;
    if (/[0-9.]$/.test(stripped.slice(0, m.index))) continue; // a duration or number suffix (5m, 1e3)
    names.add(m[0]);
  }
  return [...names];
}

interface DashboardPanel {
  title: string;
  datasource?: { uid?: string };
  targets?: { expr: string; datasource?: { uid?: string } }[];
  panels?: DashboardPanel[];
}
interface Dashboard {
  schemaVersion: number;
  panels: DashboardPanel[];
  templating?: { list: { name: string; query?: unknown }[] };
}

/** Panels, those inside collapsed rows included. */
const panelsOf = (panels: DashboardPanel[]): DashboardPanel[] =>
  panels.flatMap((p) => [p, ...panelsOf(p.panels ?? [])]);

/**
 * The worker's metrics on the real stack: lifecycles through the shared dev server, real trainer, gateway and live
 * traffic, the worker's endpoint and the Temporal Runtime's scraped over HTTP.
 */
describe('Prometheus metrics of the worker', () => {
  let stack: Stack;
  let metrics: LifecycleMetrics | undefined;
  let server: MetricsServer;
  let temporalMetricsUrl: string;
  const loads: LoadGenerator[] = [];
  const model = uniqueName('metrics');

  beforeAll(async () => {
    // The Runtime is installed once per process (each vitest file runs in a fork of its own): with the SDK's
    // Prometheus endpoint here, before startStack's quiet install would make it a Runtime without one.
    const port = await freePort();
    temporalMetricsUrl = `http://127.0.0.1:${port}/metrics`;
    installQuietRuntime(undefined, {
      ...temporalPrometheusTelemetry(`127.0.0.1:${port}`),
      // The core's own log lines (the failing workflow task below) go to the quiet logger, not the console.
      logging: { forward: {} },
    });
    stack = await startStack({
      // As the worker's (src/workers/main.ts), with a short cache so the test sees visibility catch up.
      metrics: (deps) => (metrics = new LifecycleMetrics({ ...deps, cacheMs: 200, processMetrics: true })),
    });
    server = await startMetricsServer(metrics!, { port: 0 });
  });
  afterAll(async () => {
    await Promise.all(loads.map((l) => l.stop()));
    await server?.close();
    await metrics?.close();
    await stack?.close();
  });

  it('exposes stage durations, failures, training, quota, readouts, drift, alerts and running lifecycles', async () => {
    const started = Date.now();
    loads.push(liveTraffic(stack.gateway.url, model, 100));
    // A lifecycle whose trainer refuses its parameters: a failed training run, a failure in `training`, an alert.
    const bad = await stack.lifecycles.start(
      testSpec(model, 'v0', 'good', (s) => (s.training.params = { algorithm: 'quantum_forest' })),
    );
    const v1 = await stack.lifecycles.start(testSpec(model, 'v1'));
    expect((await approveAll(stack.lifecycles, v1.id)).stage).toBe('promoted');
    expect((await waitForStatus(stack.lifecycles, bad.id, (s) => s.stage === 'failed')).error?.type).toBe(
      'TrainingFailed',
    );

    // A candidate against v1: canary and ramp with a stable version to compare with.
    const v2 = await stack.lifecycles.start(testSpec(model, 'v2'));
    await waitForStatus(stack.lifecycles, v2.id, (s) => s.pendingGate !== null, 60_000);
    // Visibility catches up with the search attribute within moments; the gauge reads it at scrape time.
    let waiting = 0;
    for (const deadline = Date.now() + 15_000; waiting < 1 && Date.now() < deadline;) {
      const page = await scrape(`${server.url}/metrics`);
      waiting = value(page, 'ml_lifecycle_running_lifecycles', { stage: 'awaiting-approval' }) ?? 0;
      if (waiting < 1) await new Promise((r) => setTimeout(r, 250));
    }
    expect(waiting).toBeGreaterThanOrEqual(1);
    const end = await approveAll(stack.lifecycles, v2.id);
    expect(end.stage, JSON.stringify(end.decisions.filter((d) => d.outcome !== 'pass'))).toBe('promoted');

    const page = await scrape(`${server.url}/metrics`);
    // Stage durations, observed by the workflow sink as each stage ended (workflow time).
    const stageSeconds = 'ml_lifecycle_stage_duration_seconds';
    for (const stage of ['provisioning', 'training', 'validating', 'awaiting-approval', 'canary', 'ramping']) {
      expect(value(page, `${stageSeconds}_count`, { stage }), stage).toBeGreaterThanOrEqual(1);
    }
    // v1's initial stage and v2's canary each baked 1.5 s, then waited for their minimum sample.
    const canaries = value(page, `${stageSeconds}_count`, { stage: 'canary' })!;
    const canarySeconds = value(page, `${stageSeconds}_sum`, { stage: 'canary' })!;
    expect(canaries).toBeGreaterThanOrEqual(2);
    expect(canarySeconds / canaries).toBeGreaterThanOrEqual(1.4);
    expect(value(page, `${stageSeconds}_bucket`, { stage: 'canary', le: '+Inf' })).toBe(canaries);
    expect(
      value(page, 'ml_lifecycle_failures_total', { outcome: 'failed', stage: 'training', reason: 'TrainingFailed' }),
    ).toBeGreaterThanOrEqual(1);

    // Training runs, by the hardware class of their task queue.
    const trainingSeconds = 'ml_lifecycle_training_duration_seconds';
    expect(total(page, `${trainingSeconds}_count`, { outcome: 'succeeded' })).toBeGreaterThanOrEqual(2);
    expect(total(page, `${trainingSeconds}_count`, { outcome: 'failed' })).toBeGreaterThanOrEqual(1);
    expect(total(page, `${trainingSeconds}_sum`, { outcome: 'succeeded' })).toBeGreaterThan(0);
    expect(samplesOf(page, `${trainingSeconds}_count`).map((m) => m.labels.hardware_class)).toContain('cpu');

    // Quota of the stack's pool, read from the pool's entity workflow at scrape time: v2 holds its serving lease.
    expect(value(page, 'ml_lifecycle_quota_capacity', { pool: 'default', resource: 'cpu' })).toBe(64);
    expect(value(page, 'ml_lifecycle_quota_capacity', { pool: 'default', resource: 'memoryGiB' })).toBe(256);
    expect(value(page, 'ml_lifecycle_quota_used', { pool: 'default', resource: 'cpu' })).toBeGreaterThanOrEqual(1);
    expect(value(page, 'ml_lifecycle_quota_leases', { pool: 'default' })).toBeGreaterThanOrEqual(1);
    expect(value(page, 'ml_lifecycle_quota_waiting', { pool: 'default' })).toBeGreaterThanOrEqual(0);

    // The candidate's last readouts and the decisions of every analysis.
    const readout = (check: string) => value(page, 'ml_lifecycle_canary_readout', { model, version: 'v2', check });
    expect(readout('errorRate')).toBeGreaterThanOrEqual(0);
    expect(readout('errorRate')).toBeLessThanOrEqual(0.01);
    expect(readout('latencyP99Ms')).toBeGreaterThan(0);
    expect(readout('outage')).toBeGreaterThan(0);
    expect(readout('featureSkew')).toBeGreaterThanOrEqual(0);
    expect(readout('predictionDrift')).toBeGreaterThanOrEqual(0);
    expect(value(page, 'ml_lifecycle_canary_readout', { model, version: 'v1', check: 'errorRate' })).toBeDefined();
    expect(
      value(page, 'ml_lifecycle_canary_decisions_total', { model, check: 'errorRate', outcome: 'pass' }),
    ).toBeGreaterThanOrEqual(4);
    expect(samplesOf(page, 'ml_lifecycle_canary_decisions_total', { model, outcome: 'fail' })).toEqual([]);

    // Drift of live traffic: every feature's skew against the training profile, and the prediction drift.
    const skew = samplesOf(page, 'ml_lifecycle_drift_psi', { model, kind: 'feature-skew' });
    expect(skew.length).toBeGreaterThanOrEqual(5);
    for (const m of skew) expect(m.value, m.labels.feature).toBeLessThan(0.5);
    expect(
      value(page, 'ml_lifecycle_drift_psi', { model, feature: 'prediction', kind: 'prediction-drift' }),
    ).toBeGreaterThanOrEqual(0);

    // Alerts: as many as the alert path delivered of each kind.
    const delivered = stack.alerts.filter((a) => a.kind === 'training-failed').length;
    expect(delivered).toBeGreaterThanOrEqual(1);
    expect(
      value(page, 'ml_lifecycle_alerts_total', { kind: 'training-failed', severity: 'warning', resolved: 'false' }),
    ).toBe(delivered);
    console.log(`metrics test: lifecycles ran in ${Date.now() - started} ms`);
  });

  it('serves every series the Grafana dashboard queries, from the worker, the gateway and the Temporal SDK endpoints', async () => {
    // This file's lifecycles (the test above) produced the event series; two more failures here for the SDK's:
    // a lifecycle refuses an invalid spec (a failed workflow) ...
    const invalid = await stack.client.workflow.start('modelLifecycleWorkflow', {
      taskQueue: LIFECYCLE_TASK_QUEUE,
      workflowId: uniqueName('invalid-spec'),
      args: [{ spec: { model: 'x' } }],
    });
    await expect(invalid.result()).rejects.toBeInstanceOf(WorkflowFailedError);
    // ... and a workflow type the bundle lacks fails its workflow task (what non-determinism looks like).
    const unknown = await stack.client.workflow.start('noSuchWorkflow', {
      taskQueue: LIFECYCLE_TASK_QUEUE,
      workflowId: uniqueName('no-such-workflow'),
    });
    let temporal = await scrape(temporalMetricsUrl);
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; temporal = await scrape(temporalMetricsUrl)) {
      if (temporal.names.has('temporal_workflow_task_execution_failed_total')) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    await unknown.terminate('metrics test: done');

    const worker = await scrape(`${server.url}/metrics`);
    // The live-traffic panels read the gateway's own metrics (the test above left its versions deployed).
    const gateway = await scrape(`${stack.gateway.url}/metrics`);
    const served = new Set([...worker.names, ...temporal.names, ...gateway.names]);
    const dashboard = JSON.parse(
      readFileSync(join(ROOT, 'deploy', 'grafana', 'ml-lifecycle-dashboard.json'), 'utf8'),
    ) as Dashboard;
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    const queried = [
      ...panelsOf(dashboard.panels).flatMap((p) =>
        (p.targets ?? []).flatMap((t) => {
          expect(p.datasource?.uid ?? t.datasource?.uid, p.title).toBe('${DS_PROMETHEUS}');
          return promqlSeries(t.expr).map((name) => ({ panel: p.title, name }));
        }),
      ),
      // Template variables: label_values(metric, label).
      ...(dashboard.templating?.list ?? []).flatMap((v) =>
        [...JSON.stringify(v.query ?? '').matchAll(/label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/g)].map((m) => ({
          panel: `variable ${v.name}`,
          name: m[1]!,
        })),
      ),
    ];
    expect(queried.length).toBeGreaterThan(30);
    expect(queried.filter((q) => !served.has(q.name))).toEqual([]);
    expect(queried.some((q) => q.name.startsWith('temporal_'))).toBe(true);
    // Every series of the worker's own is on the dashboard.
    const own = [...worker.families.keys()].filter((n) => n.startsWith('ml_lifecycle_'));
    const onDashboard = new Set(queried.map((q) => q.name.replace(/_(bucket|sum|count)$/, '')));
    expect(own.filter((n) => !onDashboard.has(n) && n !== 'ml_lifecycle_metrics_collect_errors_total')).toEqual([]);
  });
});
