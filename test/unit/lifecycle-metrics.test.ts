import type { Client } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import type { WorkflowInfo } from '@temporalio/workflow';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DriftReport } from '../../src/drift/compare';
import { LifecycleMetrics, RUNNING_LIFECYCLES_QUERY, lifecycleMetricsSinks } from '../../src/metrics/lifecycle-metrics';
import { startMetricsServer, type MetricsServer } from '../../src/metrics/server';
import { QuotaPoolsFile, type QuotaPoolState } from '../../src/shared/quota';
import { MlStage } from '../../src/shared/search-attributes';
import type { Decision } from '../../src/shared/status';

type Labels = Record<string, string | number>;

/** The value of one sample (series name as exposed, e.g. `x_bucket`), or undefined when it is not there. */
async function sample(metrics: LifecycleMetrics, name: string, labels: Labels = {}): Promise<number | undefined> {
  for (const family of await metrics.registry.getMetricsAsJSON()) {
    for (const v of family.values) {
      const sampleName = (v as { metricName?: string }).metricName ?? family.name;
      if (sampleName !== name) continue;
      if (Object.entries(labels).every(([k, x]) => String(v.labels[k]) === String(x))) return v.value;
    }
  }
  return undefined;
}

/** Every label set of a series. */
async function series(metrics: LifecycleMetrics, name: string): Promise<Labels[]> {
  const family = (await metrics.registry.getMetricsAsJSON()).find((f) => f.name === name);
  return (family?.values ?? []).map((v) => v.labels as Labels);
}

const decision = (check: string, value: number | null, outcome: Decision['outcome'] = 'pass'): Decision => ({
  stage: 'canary',
  check,
  value,
  threshold: 1,
  outcome,
  at: '2025-01-01T00:00:00.000Z',
});

/** A fake Temporal client: visibility lists lifecycles in `stages`; pools answer `pools[name]`. */
function fakeClient(opts: {
  stages?: () => Promise<(string | undefined)[]>;
  pools?: Record<string, Partial<QuotaPoolState>>;
}) {
  const list = vi.fn((_: { query: string }) => {
    const load = opts.stages ?? (async () => []);
    return (async function* () {
      for (const stage of await load()) {
        yield { typedSearchAttributes: new TypedSearchAttributes(stage ? [{ key: MlStage, value: stage }] : []) };
      }
    })();
  });
  const getHandle = (id: string) => ({
    query: async () => {
      const pool = Object.entries(opts.pools ?? {}).find(([name]) => id.endsWith(name))?.[1];
      if (!pool) throw new Error(`no pool behind ${id}`);
      return pool;
    },
  });
  const deadlines: number[] = [];
  const withDeadline = (deadline: number, fn: () => Promise<unknown>) => {
    deadlines.push(deadline);
    return fn();
  };
  return { list, deadlines, client: { workflow: { list, getHandle }, withDeadline } as unknown as Client };
}

describe('LifecycleMetrics', () => {
  const servers: MetricsServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('observes stage durations and counts failures from the workflow sink, never during replay', async () => {
    const metrics = new LifecycleMetrics();
    const sinks = metrics.workflowSinks().lifecycleMetrics;
    expect(sinks.stageEnded.callDuringReplay).toBe(false);
    expect(sinks.lifecycleFailed.callDuringReplay).toBe(false);
    const info = {} as WorkflowInfo;
    await sinks.stageEnded.fn(info, { stage: 'canary', durationMs: 12_000 });
    await sinks.stageEnded.fn(info, { stage: 'canary', durationMs: 3_000 });
    await sinks.stageEnded.fn(info, { stage: 'training', durationMs: 400 });
    await sinks.lifecycleFailed.fn(info, { outcome: 'rolled-back', stage: 'canary', reason: 'CheckFailed' });

    const name = 'ml_lifecycle_stage_duration_seconds';
    expect(await sample(metrics, `${name}_count`, { stage: 'canary' })).toBe(2);
    expect(await sample(metrics, `${name}_sum`, { stage: 'canary' })).toBe(15);
    expect(await sample(metrics, `${name}_bucket`, { stage: 'canary', le: 5 })).toBe(1);
    expect(await sample(metrics, `${name}_bucket`, { stage: 'canary', le: 15 })).toBe(2);
    expect(await sample(metrics, `${name}_count`, { stage: 'training' })).toBe(1);
    expect(await sample(metrics, `${name}_sum`, { stage: 'training' })).toBeCloseTo(0.4);
    expect(
      await sample(metrics, 'ml_lifecycle_failures_total', {
        outcome: 'rolled-back',
        stage: 'canary',
        reason: 'CheckFailed',
      }),
    ).toBe(1);
  });

  it('drops sink calls when the worker has no metrics, so the sink is still registered', async () => {
    const sinks = lifecycleMetricsSinks().lifecycleMetrics;
    expect(sinks.stageEnded.callDuringReplay).toBe(false);
    expect(() => sinks.stageEnded.fn({} as WorkflowInfo, { stage: 'canary', durationMs: 1 })).not.toThrow();
  });

  it('histograms training runs by hardware class and outcome', async () => {
    const metrics = new LifecycleMetrics();
    metrics.trainingFinished({ hardwareClass: 'cpu', outcome: 'succeeded', durationMs: 8_000 });
    metrics.trainingFinished({ hardwareClass: 'cpu', outcome: 'succeeded', durationMs: 2_000 });
    metrics.trainingFinished({ hardwareClass: 'gpu', outcome: 'failed', durationMs: 500 });
    const name = 'ml_lifecycle_training_duration_seconds';
    expect(await sample(metrics, `${name}_count`, { hardware_class: 'cpu', outcome: 'succeeded' })).toBe(2);
    expect(await sample(metrics, `${name}_sum`, { hardware_class: 'cpu', outcome: 'succeeded' })).toBe(10);
    expect(await sample(metrics, `${name}_count`, { hardware_class: 'gpu', outcome: 'failed' })).toBe(1);
    expect(await sample(metrics, `${name}_count`, { hardware_class: 'gpu', outcome: 'succeeded' })).toBeUndefined();
  });

  it('keeps the last readout per version and check, counts every decision, and sets drift per feature', async () => {
    const metrics = new LifecycleMetrics();
    const skew = {
      features: [
        { name: 'tenure', role: 'feature', statistics: { psi: 0.031 } },
        { name: 'monthly_charges', role: 'feature', statistics: { psi: 0.42 } },
        { name: 'plan', role: 'feature', statistics: {}, skipped: 'no values' },
        { name: 'churned', role: 'label', statistics: { psi: 0.9 } },
      ],
    } as unknown as DriftReport;
    metrics.stageAnalyzed({
      model: 'churn',
      version: 'v2',
      decisions: [decision('errorRate', 0.02, 'fail'), decision('predictionDrift', 0.07), decision('outage', 5)],
      inputSkew: skew,
    });
    metrics.stageAnalyzed({
      model: 'churn',
      version: 'v2',
      decisions: [decision('errorRate', 0.004), decision('latencyP99Ms', null, 'inconclusive')],
    });

    const readout = 'ml_lifecycle_canary_readout';
    expect(await sample(metrics, readout, { model: 'churn', version: 'v2', check: 'errorRate' })).toBe(0.004);
    expect(await sample(metrics, readout, { model: 'churn', version: 'v2', check: 'predictionDrift' })).toBe(0.07);
    // A check without a value has no readout.
    expect(await sample(metrics, readout, { check: 'latencyP99Ms' })).toBeUndefined();
    const decisions = 'ml_lifecycle_canary_decisions_total';
    expect(await sample(metrics, decisions, { model: 'churn', check: 'errorRate', outcome: 'fail' })).toBe(1);
    expect(await sample(metrics, decisions, { model: 'churn', check: 'errorRate', outcome: 'pass' })).toBe(1);
    expect(await sample(metrics, decisions, { check: 'latencyP99Ms', outcome: 'inconclusive' })).toBe(1);
    const drift = 'ml_lifecycle_drift_psi';
    expect(await sample(metrics, drift, { model: 'churn', feature: 'monthly_charges', kind: 'feature-skew' })).toBe(
      0.42,
    );
    expect(await sample(metrics, drift, { model: 'churn', feature: 'tenure', kind: 'feature-skew' })).toBe(0.031);
    expect(await sample(metrics, drift, { model: 'churn', feature: 'prediction', kind: 'prediction-drift' })).toBe(
      0.07,
    );
    // Skipped features and the label are not drift of live inputs.
    expect((await series(metrics, drift)).map((l) => l.feature).sort()).toEqual([
      'monthly_charges',
      'prediction',
      'tenure',
    ]);
  });

  it('keeps readout series of the latest three versions of a model only', async () => {
    const metrics = new LifecycleMetrics();
    for (const version of ['v1', 'v2', 'v3', 'v4']) {
      metrics.stageAnalyzed({ model: 'churn', version, decisions: [decision('errorRate', 0.001)] });
    }
    metrics.stageAnalyzed({ model: 'other', version: 'v1', decisions: [decision('errorRate', 0.002)] });
    const kept = (await series(metrics, 'ml_lifecycle_canary_readout')).map((l) => `${l.model} ${l.version}`);
    expect(kept.sort()).toEqual(['churn v2', 'churn v3', 'churn v4', 'other v1']);
  });

  it('counts delivered alerts by kind, severity and resolution', async () => {
    const metrics = new LifecycleMetrics();
    metrics.alertDelivered({ kind: 'rollback', severity: 'critical' });
    metrics.alertDelivered({ kind: 'rollback', severity: 'critical' });
    metrics.alertDelivered({ kind: 'quota-usage-high', severity: 'warning', resolved: true });
    const name = 'ml_lifecycle_alerts_total';
    expect(await sample(metrics, name, { kind: 'rollback', severity: 'critical', resolved: 'false' })).toBe(2);
    expect(await sample(metrics, name, { kind: 'quota-usage-high', severity: 'warning', resolved: 'true' })).toBe(1);
  });

  it('counts running lifecycles by stage from visibility at scrape time, cached between scrapes', async () => {
    const { client, list } = fakeClient({
      stages: async () => ['canary', 'canary', 'awaiting-approval', 'made-up-stage', undefined],
    });
    const metrics = new LifecycleMetrics({ client, cacheMs: 60_000 });
    const name = 'ml_lifecycle_running_lifecycles';
    expect(await sample(metrics, name, { stage: 'canary' })).toBe(2);
    expect(await sample(metrics, name, { stage: 'awaiting-approval' })).toBe(1);
    expect(await sample(metrics, name, { stage: 'training' })).toBe(0);
    // Anything that is not a stage of the workflow is counted as `unknown`: the label stays bounded.
    expect(await sample(metrics, name, { stage: 'unknown' })).toBe(2);
    expect(list).toHaveBeenCalledTimes(1);
    expect(list.mock.calls[0]![0]).toEqual({ query: RUNNING_LIFECYCLES_QUERY });
    await metrics.expose();
    expect(list).toHaveBeenCalledTimes(1);
  });

  it('puts a deadline on each read, and reads nothing more once closed, after waiting for the read in flight', async () => {
    let release: () => void = () => undefined;
    const { client, list, deadlines } = fakeClient({
      stages: () => new Promise((resolve) => (release = () => resolve(['canary']))),
    });
    const metrics = new LifecycleMetrics({ client, cacheMs: 0, collectTimeoutMs: 50, readDeadlineMs: 4_000 });
    const before = Date.now();
    await metrics.expose(); // the listing is slower than the scrape waits
    expect(deadlines[0]! - before).toBeGreaterThanOrEqual(4_000);
    expect(deadlines[0]! - before).toBeLessThan(5_000);
    let closed = false;
    const closing = metrics.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(closed).toBe(false);
    release();
    await closing;
    expect(await sample(metrics, 'ml_lifecycle_running_lifecycles', { stage: 'canary' })).toBe(1);
    expect(list).toHaveBeenCalledTimes(1);
  });

  it('bounds the listing to maxListed lifecycles', async () => {
    const { client } = fakeClient({ stages: async () => new Array<string>(50).fill('canary') });
    const warn = vi.fn();
    const metrics = new LifecycleMetrics({ client, maxListed: 10, logger: { warn } });
    expect(await sample(metrics, 'ml_lifecycle_running_lifecycles', { stage: 'canary' })).toBe(10);
    expect(warn).toHaveBeenCalledWith({ listed: 10, max: 10 }, expect.stringMatching(/more running lifecycles/));
  });

  it('serves the last values when visibility fails or is slow, and logs and counts the failure', async () => {
    let call = 0;
    const { client } = fakeClient({
      stages: async () => {
        call++;
        if (call === 2 || call >= 4) throw new Error('visibility unavailable');
        if (call === 3) await new Promise((r) => setTimeout(r, 500));
        return call === 3 ? ['training'] : ['canary'];
      },
    });
    const warn = vi.fn();
    const metrics = new LifecycleMetrics({ client, cacheMs: 0, collectTimeoutMs: 100, logger: { warn } });
    const name = 'ml_lifecycle_running_lifecycles';
    expect(await sample(metrics, name, { stage: 'canary' })).toBe(1);
    // Second scrape: the listing fails; the scrape still answers, with the last counts.
    expect(await sample(metrics, name, { stage: 'canary' })).toBe(1);
    expect(await sample(metrics, 'ml_lifecycle_metrics_collect_errors_total', { source: 'visibility' })).toBe(1);
    expect(warn).toHaveBeenCalledWith(
      expect.objectContaining({ source: 'visibility', err: expect.any(Error) as unknown }),
      expect.any(String),
    );
    // Third: slower than the collect timeout, so the scrape answers with the last counts ...
    const started = Date.now();
    expect(await sample(metrics, name, { stage: 'canary' })).toBe(1);
    expect(Date.now() - started).toBeLessThan(400);
    // ... and the late listing lands for later scrapes (whose own listings fail again).
    await new Promise((r) => setTimeout(r, 600));
    expect(await sample(metrics, name, { stage: 'training' })).toBe(1);
    expect(await sample(metrics, name, { stage: 'canary' })).toBe(0);
    expect(call).toBe(5);
  });

  it('reads quota usage and capacity per pool and resource at scrape time', async () => {
    const quotaPools = QuotaPoolsFile.parse({
      pools: [
        { name: 'default', capacity: { cpu: 64, memoryGiB: 256 } },
        { name: 'gpus', capacity: { cpu: 8, 'gpu:t4': 2 } },
      ],
    });
    const { client } = fakeClient({
      pools: {
        default: {
          name: 'default',
          resources: [
            { resource: 'cpu', capacity: 64, used: 6, share: 6 / 64, burnPerHour: 0, exhaustedAt: null },
            { resource: 'memoryGiB', capacity: 256, used: 12, share: 12 / 256, burnPerHour: 0, exhaustedAt: null },
          ],
          waiting: [],
          leases: [{} as QuotaPoolState['leases'][number], {} as QuotaPoolState['leases'][number]],
        },
        gpus: {
          name: 'gpus',
          resources: [{ resource: 'gpu:t4', capacity: 2, used: 2, share: 1, burnPerHour: 0, exhaustedAt: null }],
          waiting: [{} as QuotaPoolState['waiting'][number]],
          leases: [{} as QuotaPoolState['leases'][number]],
        },
      },
    });
    const metrics = new LifecycleMetrics({ client, quotaPools });
    expect(await sample(metrics, 'ml_lifecycle_quota_used', { pool: 'default', resource: 'cpu' })).toBe(6);
    expect(await sample(metrics, 'ml_lifecycle_quota_capacity', { pool: 'default', resource: 'memoryGiB' })).toBe(256);
    expect(await sample(metrics, 'ml_lifecycle_quota_used', { pool: 'gpus', resource: 'gpu:t4' })).toBe(2);
    expect(await sample(metrics, 'ml_lifecycle_quota_waiting', { pool: 'gpus' })).toBe(1);
    expect(await sample(metrics, 'ml_lifecycle_quota_waiting', { pool: 'default' })).toBe(0);
    expect(await sample(metrics, 'ml_lifecycle_quota_leases', { pool: 'default' })).toBe(2);
  });

  it('keeps one registry per instance', async () => {
    const a = new LifecycleMetrics();
    const b = new LifecycleMetrics();
    a.alertDelivered({ kind: 'rollback', severity: 'critical' });
    expect(await sample(a, 'ml_lifecycle_alerts_total', { kind: 'rollback' })).toBe(1);
    expect(await sample(b, 'ml_lifecycle_alerts_total', { kind: 'rollback' })).toBeUndefined();
  });

  it('serves the exposition text on GET /metrics, and /healthz', async () => {
    const metrics = new LifecycleMetrics();
    metrics.alertDelivered({ kind: 'rollback', severity: 'critical' });
    const server = await startMetricsServer(metrics, { port: 0 });
    servers.push(server);
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const body = await res.text();
    expect(body).toContain('# TYPE ml_lifecycle_alerts_total counter');
    expect(body).toContain('ml_lifecycle_alerts_total{kind="rollback",severity="critical",resolved="false"} 1');
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.url}/nothing`)).status).toBe(404);
    expect((await fetch(`${server.url}/metrics`, { method: 'POST' })).status).toBe(405);
  });
});
