import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadGenerator } from '../../src/dev/load-generator';
import { startPrometheus, waitForScrape, type PrometheusServer } from '../../src/dev/prometheus';
import type { MetricCheckInput } from '../../src/shared/analysis';
import { createMonitoringActivities } from '../../src/activities/monitoring';
import { formatStatus } from '../../src/cli/format';
import { QuotaClient } from '../../src/client/quota-client';
import { QuotaPoolsFile } from '../../src/shared/quota';
import { MonitoringSpec, type LifecycleSpec } from '../../src/shared/spec';
import type { LifecycleStatus } from '../../src/shared/status';
import {
  approveAll,
  liveTraffic,
  recordHistory,
  ROOT,
  startStack,
  testSpec,
  uniqueName,
  waitForStatus,
  type Stack,
} from '../helpers/harness';

/** Prometheus scrape interval, and the candidates' analysis interval. */
const SCRAPE_MS = 1000;
const INTERVAL_MS = 2000;

/**
 * Rollout checks read from metric providers on a real stack: the gateway's own Prometheus metrics scraped by a real
 * Prometheus (Debian's `prometheus`, installed by scripts/setup.mjs), and a JSON web service, judged with Argo
 * Rollouts' semantics (failure limits in all, provider errors apart, dry runs).
 */
describe('analysis from metric providers', () => {
  let stack: Stack;
  let load: LoadGenerator;
  let prom: PrometheusServer;
  let web: Server;
  let webUrl: string;
  /** What the web service answers per path: a fixed value, or the next of a cycle. */
  const answers = new Map<string, { values: number[]; served: number }>();
  const model = uniqueName('prov');

  beforeAll(async () => {
    stack = await startStack();
    web = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const a = answers.get(path);
      if (!a) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"no such metric"}');
        return;
      }
      const value = a.values[a.served++ % a.values.length];
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: { value } }));
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    webUrl = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
    prom = await startPrometheus({
      scrapeTargets: [{ job: 'gateway', targets: [new URL(stack.gateway.url).host] }],
      scrapeIntervalMs: SCRAPE_MS,
    });
    load = liveTraffic(stack.gateway.url, model);
    const { id } = await stack.lifecycles.start(testSpec(model, 'v1'));
    expect((await approveAll(stack.lifecycles, id)).stage).toBe('promoted');
    // Prometheus takes up its targets on a 5 s tick: that wait overlaps v1's lifecycle.
    await waitForScrape(prom, 'gateway', 30_000);
  });
  afterAll(async () => {
    await load?.stop();
    await prom?.stop();
    await new Promise((r) => web?.close(r));
    await stack?.close();
  });

  /**
   * The candidate's error rate over the last 10 s, from the gateway's metrics in Prometheus. Ten scrapes: on a loaded
   * machine Prometheus scrapes late, and a window with fewer than two samples has no data (an inconclusive readout,
   * which holds the rollout for a human).
   */
  const promErrorRate = (over: Partial<MetricCheckInput> = {}): MetricCheckInput => ({
    name: 'prom-error-rate',
    provider: {
      prometheus: {
        address: prom.url,
        query:
          'sum(increase(mlgw_errors_total{model="{{model}}",version="{{version}}"}[10s])) / ' +
          'sum(increase(mlgw_requests_total{model="{{model}}",version="{{version}}"}[10s]))',
        timeout: 2000,
      },
    },
    successCondition: 'result <= 0.05',
    ...over,
  });
  const webCheck = (name: string, path: string, over: Partial<MetricCheckInput> = {}): MetricCheckInput => ({
    name,
    provider: { web: { url: `${webUrl}${path}?model={{model}}&version={{version}}`, jsonPath: '$.data.value' } },
    successCondition: 'result >= 0.1',
    ...over,
  });
  /** A candidate whose rollout is judged by `metrics` (parsed as a spec file's would be), its built-in error checks off. */
  const candidate = (version: string, metrics: MetricCheckInput[], patch: (s: LifecycleSpec) => void = () => {}) =>
    testSpec(model, version, 'good', (s) => {
      s.rollout.analysis.interval = INTERVAL_MS;
      s.rollout.analysis.metrics = metrics as LifecycleSpec['rollout']['analysis']['metrics'];
      patch(s);
    });
  const run = async (spec: LifecycleSpec) => {
    const { id } = await stack.lifecycles.start(spec);
    // Within the test's own timeout, so that a lifecycle that does not end says where it stands.
    return { id, end: await approveAll(stack.lifecycles, id, 'alice', 100_000) };
  };
  const of = (s: LifecycleStatus, check: string) => s.decisions.filter((d) => d.check === check);

  it('promotes a good candidate under a PromQL check, and records and alerts a failing dry-run check', async () => {
    answers.set('/dry', { values: [0.01], served: 0 });
    const { id, end } = await run(
      candidate('v2', [promErrorRate(), webCheck('conversion-dry', '/dry', { dryRun: true })], (s) => {
        // A second of warm-up at each stage, left out of its windows.
        s.rollout.analysis.initialDelay = 1000;
      }),
    );
    expect(end.events.filter((e) => /warm-up of 1000 ms over/.test(e.message)).map((e) => e.stage)).toEqual([
      'canary',
      'ramping',
      'ramping',
    ]);
    expect(end.stage, JSON.stringify(end.decisions.filter((d) => d.outcome !== 'pass'))).toBe('promoted');
    // Every stage measured the PromQL check; its passing samples are kept.
    const passed = end.measurements?.['prom-error-rate']?.passed ?? [];
    expect(passed.length).toBeGreaterThan(0);
    expect(passed.every((d) => d.provider === 'prometheus' && d.value !== null && d.value <= 0.05)).toBe(true);
    expect(new Set(of(end, 'prom-error-rate').map((d) => d.stage))).toEqual(
      new Set(['canary', 'ramping:50', 'ramping:100']),
    );
    // The dry run failed, was recorded and alerted, and changed nothing.
    const dry = of(end, 'conversion-dry');
    expect(dry.length).toBeGreaterThan(0);
    expect(dry.every((d) => d.outcome === 'fail' && d.dryRun === true)).toBe(true);
    expect(end.measurements?.['conversion-dry']?.failed.length).toBeGreaterThan(0);
    await expect.poll(() => stack.alerts.some((a) => a.kind === 'analysis-dry-run' && a.lifecycleId === id)).toBe(true);
    // `RECORD_HISTORIES=1 npx vitest run test/integration/analysis-providers.test.ts` refreshes the replay fixtures.
    await recordHistory(stack.client, id, 'lifecycle-metric-checks-promoted');
  });

  it('gives the serving monitor the same providers: each metric check is an incident of its own', async () => {
    answers.set('/live-conversion', { values: [0.01], served: 0 });
    const monitoring = createMonitoringActivities({
      client: stack.client,
      root: ROOT,
      gateway: stack.gateway.access,
      quota: new QuotaClient(
        stack.client,
        QuotaPoolsFile.parse({ pools: [{ name: 'default', capacity: { cpu: 64, memoryGiB: 256 } }] }),
      ),
    });
    const policy = MonitoringSpec.parse({
      interval: '5s',
      metrics: [
        { ...promErrorRate(), name: 'live-error-rate', severity: 'critical' },
        { ...webCheck('live-conversion', '/live-conversion'), severity: 'warning' },
        {
          name: 'live-traffic',
          provider: {
            prometheus: {
              address: prom.url,
              query: 'sum(rate(mlgw_requests_total{model="{{model}}",version="{{version}}"}[5s]))',
              range: { lookback: '10s', step: '1s', reduce: 'max' },
            },
          },
          successCondition: 'result > 10',
          severity: 'warning',
        },
        { ...webCheck('live-missing', '/no-such-metric'), severity: 'warning' },
      ],
    });
    const first = await monitoring.checkServing({ model, monitoring: policy, since: null });
    expect(first.version).not.toBeNull();
    await new Promise((r) => setTimeout(r, 1500));
    const second = await monitoring.checkServing({ model, monitoring: policy, since: first.since });
    const metric = (name: string) =>
      second.observations.find((o) => o.key === `serving:${model}:serving-metric:${name}`);
    const all = JSON.stringify(second.observations.filter((o) => o.kind === 'serving-metric'));
    expect(metric('live-error-rate'), all).toMatchObject({
      kind: 'serving-metric',
      severity: 'critical',
      firing: false,
    });
    expect(metric('live-conversion')).toMatchObject({ kind: 'serving-metric', firing: true });
    // A range query reduced to one number: the highest request rate over the last 10 s (about the 100/s sent).
    expect(metric('live-traffic'), all).toMatchObject({ firing: false });
    expect((metric('live-traffic')!.details as { value: number }).value).toBeGreaterThan(50);
    expect(metric('live-conversion')!.summary).toMatch(/live-conversion = 0\.01 \(web: success when result >= 0\.1\)/);
    // A provider that cannot answer neither fires nor resolves.
    expect(metric('live-missing')).toMatchObject({ firing: null });
    expect(metric('live-missing')!.summary).toMatch(/could not be measured/);
  });

  it('rolls back a candidate whose error rate Prometheus sees rise, within scrape + analysis interval + 2 s', async () => {
    const spec = candidate('v3', [promErrorRate()], (s) => {
      s.rollout.canary.bake = 60_000;
      // Only the Prometheus check may catch it.
      s.rollout.analysis.errorRate = { ...s.rollout.analysis.errorRate, max: 1, vsStable: false };
    });
    const { id } = await stack.lifecycles.start(spec);
    const gate = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 180_000);
    await stack.lifecycles.approve(id, { by: 'alice', gate: gate.pendingGate!.gate, reason: 'test' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary' && s.trafficPercent > 0);
    // Let a sample or two pass, then break the candidate.
    await new Promise((r) => setTimeout(r, INTERVAL_MS + 500));
    const res = await stack.gateway.admin(`/admin/models/${model}/versions/v3/faults`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ errorRate: 0.5 }),
    });
    expect(res.status).toBe(200);
    const breach = Date.now();
    let zeroAt = 0;
    while (Date.now() - breach < 30_000) {
      const r = (await (await stack.gateway.admin(`/admin/models/${model}`)).json()) as {
        weights: Record<string, number>;
      };
      if (!r.weights.v3) {
        zeroAt = Date.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const ms = zeroAt - breach;
    console.log(`prometheus provider: breach → 0 % in ${ms} ms (scrape ${SCRAPE_MS} ms, interval ${INTERVAL_MS} ms)`);
    expect(zeroAt).toBeGreaterThan(0);
    expect(ms).toBeLessThanOrEqual(SCRAPE_MS + INTERVAL_MS + 2000);
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rolled-back');
    const failed = end.decisions.filter((d) => d.outcome === 'fail' && !d.tolerated);
    expect(failed.map((d) => [d.stage, d.check])).toEqual([['canary', 'prom-error-rate']]);
    expect(failed[0]!.value).toBeGreaterThan(0.05);
  });

  it('stops a rollout whose web check alternates fail and pass once it failed more than failureLimit: 2 samples', async () => {
    answers.set('/alternating', { values: [0.01, 0.5], served: 0 });
    const { id, end } = await run(
      candidate('v4', [webCheck('conversion', '/alternating', { failureLimit: 2 })], (s) => {
        s.rollout.canary.bake = 60_000;
      }),
    );
    expect(end.stage).toBe('rolled-back');
    const samples = of(end, 'conversion');
    // Three failures in all (the first two tolerated), never two in a row: the third one stops it.
    expect(samples.filter((d) => d.outcome === 'fail').map((d) => d.tolerated ?? false)).toEqual([true, true, false]);
    expect(end.measurements?.conversion?.passed.length).toBeGreaterThanOrEqual(2);
    // `mlctl status` shows each check's last samples, passing and failing.
    const shown = formatStatus(end);
    expect(shown).toContain('measurements (last samples of each check):');
    expect(shown).toMatch(/\nconversion\s+web\s+\d+\s+3\s+.*fail:0\.01 0\.5 fail:0\.01/);
    expect(end.error?.message ?? end.events.at(-1)?.message).toMatch(/conversion/);
    await recordHistory(stack.client, id, 'lifecycle-metric-checks-rolled-back');
  });

  it('counts a Prometheus outage as provider errors, not failures, and stops past consecutiveErrorLimit', async () => {
    const spec = candidate('v5', [promErrorRate({ consecutiveErrorLimit: 2 })], (s) => {
      s.rollout.canary.bake = 60_000;
    });
    const { id } = await stack.lifecycles.start(spec);
    const s = await waitForStatus(stack.lifecycles, id, (x) => x.pendingGate !== null, 180_000);
    await stack.lifecycles.approve(id, { by: 'alice', gate: s.pendingGate!.gate, reason: 'test' });
    await waitForStatus(stack.lifecycles, id, (x) => (x.measurements?.['prom-error-rate']?.passed.length ?? 0) > 0);
    await prom.kill();
    try {
      const end = await waitForStatus(stack.lifecycles, id, (x) => x.stage === 'rolled-back', 60_000);
      const samples = of(end, 'prom-error-rate');
      expect(samples.some((d) => d.outcome === 'fail')).toBe(false);
      const errors = samples.filter((d) => d.outcome === 'error');
      expect(errors.map((d) => d.tolerated ?? false)).toEqual([true, true, false]);
      expect(errors[0]!.detail).toMatch(/127\.0\.0\.1/);
      expect(end.events.map((e) => e.message).join('\n')).toMatch(/could not be measured/);
    } finally {
      await prom.restart();
    }
  });
});
