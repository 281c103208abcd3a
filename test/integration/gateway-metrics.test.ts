import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactDigest } from '../../src/artifacts/digest';
import { trainerPython } from '../../src/config/toolchain';
import { BatchPredictResponse, PredictResponse } from '../../src/shared/gateway-api';
import { GatewayMetric } from '../../src/shared/gateway-metrics';
import { LATENCY_BUCKETS_MS, ModelTelemetry, PREDICTION_BINS } from '../../src/shared/telemetry';
import { EXAMPLE, ROOT, startGateway, type Gateway } from '../helpers/harness';
import { parsePrometheusText, samplesOf, type PromPage } from '../helpers/prometheus-text';

const DATA = path.join(EXAMPLE, 'data');
const NUMERIC = new Set(['age', 'tenure_months', 'monthly_charges', 'support_calls']);
const FEATURES = ['age', 'tenure_months', 'monthly_charges', 'support_calls', 'plan', 'region'];
const MODEL = 'churn';
const GOOD_REQUESTS = 24;
const BATCH_ROWS = 3;

type Features = Record<string, number | string>;
interface Reply<T = unknown> {
  status: number;
  body: T;
}

let workDir: string;
let artifact: string;
let digest: string;
let rows: Features[];
let gateway: Gateway;

async function call<T = unknown>(base: string, method: string, url: string, body?: unknown, token?: string) {
  const response = await fetch(base + url, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as T } satisfies Reply<T>;
}

function admin<T = unknown>(method: string, url: string, body?: unknown): Promise<Reply<T>> {
  return call<T>(gateway.adminUrl, method, url, body, gateway.adminToken);
}

async function deploy(version: string): Promise<void> {
  const reply = await admin('PUT', `/admin/models/${MODEL}/versions/${version}`, {
    opId: `deploy-${version}`,
    artifactDir: artifact,
    artifactDigest: digest,
  });
  expect(reply.status, JSON.stringify(reply.body)).toBe(200);
}

/** Scrapes the public listener, without a token, as Prometheus does. */
async function scrape(): Promise<{ text: string; page: PromPage }> {
  const response = await fetch(`${gateway.url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  const text = await response.text();
  return { text, page: parsePrometheusText(text) };
}

/** Sum of the samples named `name` whose labels include `labels`. */
const total = (page: PromPage, name: string, labels: Record<string, string> = {}) =>
  samplesOf(page, name, labels).reduce((n, s) => n + s.value, 0);

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'gateway-metrics-'));
  artifact = path.join(workDir, 'model');
  const [csv] = await Promise.all([
    readFile(path.join(DATA, 'test.csv'), 'utf8'),
    promisify(execFile)(
      trainerPython(),
      [path.join(EXAMPLE, 'train.py'), '--data-dir', DATA, '--out', artifact, '--params', '{"nEstimators":30}'],
      { cwd: ROOT },
    ),
  ]);
  digest = await artifactDigest(artifact);
  const records = parseCsv(csv, { columns: true, skip_empty_lines: true }) as Record<string, string>[];
  rows = records.map((r) =>
    Object.fromEntries(FEATURES.map((name) => [name, NUMERIC.has(name) ? Number(r[name]) : (r[name] as string)])),
  );
  gateway = await startGateway({ artifactRoot: workDir });
});

afterAll(async () => {
  await gateway?.close();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('gateway Prometheus metrics over HTTP', () => {
  it('serves per-version counters, latency histogram, prediction bins and weights at /metrics without a token', async () => {
    await deploy('v1');
    await deploy('v2');
    const weights = await admin('PUT', `/admin/models/${MODEL}/weights`, {
      opId: 'weights-1',
      weights: { v1: 70, v2: 30 },
    });
    expect(weights.status, JSON.stringify(weights.body)).toBe(200);

    // Before any traffic: every deployed version's series exist, at zero.
    let { page } = await scrape();
    for (const version of ['v1', 'v2']) {
      expect(samplesOf(page, GatewayMetric.requests, { model: MODEL, version })).toMatchObject([{ value: 0 }]);
    }

    const rowsPerVersion = new Map<string, number>([
      ['v1', 0],
      ['v2', 0],
    ]);
    const requestsPerVersion = new Map(rowsPerVersion);
    const count = (version: string, n: number) => {
      rowsPerVersion.set(version, (rowsPerVersion.get(version) ?? 0) + n);
      requestsPerVersion.set(version, (requestsPerVersion.get(version) ?? 0) + 1);
    };
    for (let i = 0; i < GOOD_REQUESTS; i++) {
      const reply = await call(gateway.url, 'POST', `/v1/models/${MODEL}/predict`, {
        userId: `user-${i}`,
        features: rows[i % rows.length],
      });
      expect(reply.status, JSON.stringify(reply.body)).toBe(200);
      count(PredictResponse.parse(reply.body).version, 1);
    }
    const batch = await call(gateway.url, 'POST', `/v1/models/${MODEL}/predict`, {
      userId: 'user-batch',
      rows: rows.slice(0, BATCH_ROWS),
    });
    expect(batch.status, JSON.stringify(batch.body)).toBe(200);
    count(BatchPredictResponse.parse(batch.body).version, BATCH_ROWS);
    // One row without a feature the model needs: refused, and counted against the version the user is routed to.
    const { age: _age, ...withoutAge } = rows[0]!;
    const invalid = await call(gateway.url, 'POST', `/v1/models/${MODEL}/predict`, {
      userId: 'user-invalid',
      features: withoutAge,
    });
    expect(invalid.status).toBe(400);

    const scraped = await scrape();
    page = scraped.page;
    // Names and counts only: no artifact path, digest or token.
    for (const secret of [workDir, digest, gateway.adminToken, gateway.labelsToken]) {
      expect(scraped.text).not.toContain(secret);
    }
    const labelNames = new Set(page.samples.flatMap((s) => Object.keys(s.labels)));
    expect([...labelNames].sort()).toEqual(['bin', 'le', 'model', 'version']);

    expect(total(page, GatewayMetric.requests)).toBe(GOOD_REQUESTS + BATCH_ROWS);
    expect(total(page, GatewayMetric.errors)).toBe(0);
    expect(total(page, GatewayMetric.invalidRequests)).toBe(1);
    const telemetry = await admin<unknown>('GET', `/admin/models/${MODEL}/telemetry`);
    const snapshot = ModelTelemetry.parse(telemetry.body);

    for (const version of ['v1', 'v2']) {
      const labels = { model: MODEL, version };
      const successfulRows = rowsPerVersion.get(version)!;
      expect(total(page, GatewayMetric.requests, labels), version).toBe(successfulRows);
      expect(total(page, GatewayMetric.errors, labels)).toBe(0);
      // The scrape and the admin telemetry read the same counters.
      const counters = snapshot.versions[version]!;
      expect(total(page, GatewayMetric.invalidRequests, labels)).toBe(counters.invalidRequests);

      const buckets = samplesOf(page, `${GatewayMetric.requestDuration}_bucket`, labels);
      expect(buckets.map((s) => s.labels.le)).toEqual([...LATENCY_BUCKETS_MS.map((ms) => String(ms / 1000)), '+Inf']);
      const cumulative = buckets.map((s) => s.value);
      cumulative.slice(1).forEach((n, i) => expect(n).toBeGreaterThanOrEqual(cumulative[i]!));
      const requestCount = total(page, `${GatewayMetric.requestDuration}_count`, labels);
      expect(requestCount).toBe(requestsPerVersion.get(version));
      expect(cumulative.at(-1)).toBe(requestCount);
      expect(total(page, `${GatewayMetric.requestDuration}_sum`, labels)).toBeCloseTo(counters.latencySumMs / 1000, 9);
      expect(total(page, `${GatewayMetric.requestDuration}_sum`, labels)).toBeGreaterThan(0);

      const bins = samplesOf(page, GatewayMetric.predictions, labels);
      expect(bins).toHaveLength(PREDICTION_BINS);
      expect(bins.reduce((n, s) => n + s.value, 0)).toBe(successfulRows);
      expect(bins.map((s) => s.value)).toEqual(counters.predictionBinCounts);
      expect(total(page, GatewayMetric.positivePredictions, labels)).toBe(counters.positiveCount);
      expect(total(page, GatewayMetric.positivePredictions, labels)).toBeLessThanOrEqual(successfulRows);
    }
    // Routing hashes the user id (deterministic): these 24 users at 70/30 reach both versions.
    expect(rowsPerVersion.get('v1')).toBeGreaterThan(0);
    expect(rowsPerVersion.get('v2')).toBeGreaterThan(0);
    expect(samplesOf(page, GatewayMetric.trafficWeight).map((s) => [s.labels.version, s.value])).toEqual([
      ['v2', 30],
      ['v1', 70],
    ]);
  });

  it('shows a deployed version without traffic at weight 0 and drops the series of an undeployed one', async () => {
    await deploy('v3');
    let { page } = await scrape();
    expect(samplesOf(page, GatewayMetric.trafficWeight, { model: MODEL, version: 'v3' })).toMatchObject([{ value: 0 }]);
    expect(samplesOf(page, GatewayMetric.requests, { model: MODEL, version: 'v3' })).toMatchObject([{ value: 0 }]);

    const undeploy = await admin('DELETE', `/admin/models/${MODEL}/versions/v3?opId=undeploy-v3`);
    expect(undeploy.status, JSON.stringify(undeploy.body)).toBe(200);
    ({ page } = await scrape());
    expect(page.samples.filter((s) => s.labels.version === 'v3')).toEqual([]);
    expect(total(page, GatewayMetric.requests)).toBe(GOOD_REQUESTS + BATCH_ROWS);
  });

  it('serves every gateway series the Grafana dashboard queries', async () => {
    const dashboard = readFileSync(path.join(ROOT, 'deploy', 'grafana', 'ml-lifecycle-dashboard.json'), 'utf8');
    const queried = new Set([...dashboard.matchAll(/\bmlgw_[a-z_]+/g)].map((m) => m[0]));
    expect(queried.size).toBeGreaterThanOrEqual(5);
    const { page } = await scrape();
    expect([...queried].filter((name) => !page.names.has(name))).toEqual([]);
  });

  it('keeps /metrics off the admin listener without its token', async () => {
    const response = await fetch(`${gateway.adminUrl}/metrics`);
    expect(response.status).toBe(401);
  });
});
