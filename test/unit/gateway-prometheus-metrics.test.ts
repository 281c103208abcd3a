import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createGatewayMetrics, versionWeightsOf, type VersionWeight } from '../../src/serving/prometheus-metrics';
import { TelemetryRegistry, predictionBinIndex, valueBinIndex } from '../../src/serving/telemetry';
import { GatewayMetric } from '../../src/shared/gateway-metrics';
import { LATENCY_BUCKETS_MS, PREDICTION_BINS } from '../../src/shared/telemetry';
import { parsePrometheusText, samplesOf, type PromPage } from '../helpers/prometheus-text';

const LE = [...LATENCY_BUCKETS_MS.map((ms) => String(ms / 1000)), '+Inf'];
/** Latencies (ms) of the binary version's successful requests: every bucket edge case, the overflow included. */
const LATENCIES_MS = [0.4, 1, 1.5, 3, 7, 7, 150, 4999, 5000, 12_000];

async function scrape(registry: Registry): Promise<PromPage> {
  return parsePrometheusText(await registry.metrics());
}

/** The value of the one sample named `name` with these labels (among others). */
function value(page: PromPage, name: string, labels: Record<string, string>): number | undefined {
  const matches = samplesOf(page, name, labels);
  expect(matches.length, `${name} ${JSON.stringify(labels)}`).toBeLessThanOrEqual(1);
  return matches[0]?.value;
}

/** A registry by hand: a binary classifier, a multiclass one and a regression, with known traffic. */
function filledTelemetry(): TelemetryRegistry {
  const telemetry = new TelemetryRegistry('boot-1');
  const binary = telemetry.counters('churn', 'v1');
  binary.binPredictions({ task: 'binary-classification' });
  LATENCIES_MS.forEach((ms, i) => binary.recordSuccess(ms, [{ label: i % 3 === 0 ? 1 : 0, binned: i / 10 }]));
  binary.recordSuccess(2, [
    { label: 1, binned: 0.97 },
    { label: 1, binned: 1 },
  ]);
  binary.recordError(3);
  binary.recordInvalid(4);

  const multiclass = telemetry.counters('iris', 'v7');
  multiclass.binPredictions({ task: 'multiclass-classification', classes: 3 });
  multiclass.recordSuccess(1, [
    { binned: 0.8, classIndex: 2 },
    { binned: 0.6, classIndex: 0 },
    { binned: 0.9, classIndex: 2 },
  ]);

  const regression = telemetry.counters('price', 'v1');
  const edges = Array.from({ length: PREDICTION_BINS - 1 }, (_, i) => (i + 1) * 10);
  regression.binPredictions({ task: 'regression', edges });
  regression.recordSuccess(30, [{ binned: 5 }, { binned: 55 }, { binned: 1e6 }]);
  return telemetry;
}

const WEIGHTS: VersionWeight[] = [
  { model: 'churn', version: 'v1', percent: 90 },
  { model: 'churn', version: 'v2', percent: 10 },
  { model: 'iris', version: 'v7', percent: 100 },
  { model: 'price', version: 'v1', percent: 0 },
];

describe('gateway Prometheus metrics', () => {
  it('exports the counters of every version with its model and version labels', async () => {
    const page = await scrape(createGatewayMetrics(filledTelemetry(), () => WEIGHTS));
    const churn = { model: 'churn', version: 'v1' };
    expect(value(page, GatewayMetric.requests, churn)).toBe(LATENCIES_MS.length + 2 + 3);
    expect(value(page, GatewayMetric.errors, churn)).toBe(3);
    expect(value(page, GatewayMetric.invalidRequests, churn)).toBe(4);
    expect(value(page, GatewayMetric.requests, { model: 'iris', version: 'v7' })).toBe(3);
    expect(value(page, GatewayMetric.errors, { model: 'price', version: 'v1' })).toBe(0);

    for (const [name, type] of [
      [GatewayMetric.requests, 'counter'],
      [GatewayMetric.errors, 'counter'],
      [GatewayMetric.invalidRequests, 'counter'],
      [GatewayMetric.requestDuration, 'histogram'],
      [GatewayMetric.predictions, 'counter'],
      [GatewayMetric.predictedClasses, 'counter'],
      [GatewayMetric.positivePredictions, 'counter'],
      [GatewayMetric.trafficWeight, 'gauge'],
    ] as const) {
      expect(page.families.get(name)?.type, name).toBe(type);
    }
    // Nothing but model, version and each metric's own label.
    const labelNames = new Set(page.samples.flatMap((s) => Object.keys(s.labels)));
    expect([...labelNames].sort()).toEqual(['bin', 'class', 'le', 'model', 'version']);
  });

  it('exports latency as a cumulative histogram in seconds, as prom-client Histogram would for the same requests', async () => {
    const page = await scrape(createGatewayMetrics(filledTelemetry(), () => []));
    const churn = { model: 'churn', version: 'v1' };
    const buckets = samplesOf(page, `${GatewayMetric.requestDuration}_bucket`, churn);
    expect(buckets.map((s) => s.labels.le)).toEqual(LE);
    const counts = buckets.map((s) => s.value);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    const requests = LATENCIES_MS.length + 1;
    expect(counts.at(-1)).toBe(requests);
    expect(value(page, `${GatewayMetric.requestDuration}_count`, churn)).toBe(requests);
    const sumMs = LATENCIES_MS.reduce((a, b) => a + b, 0) + 2;
    expect(value(page, `${GatewayMetric.requestDuration}_sum`, churn)).toBeCloseTo(sumMs / 1000, 9);
    expect(value(page, `${GatewayMetric.requestDuration}_bucket`, { ...churn, le: '0.001' })).toBe(2); // 0.4, 1
    expect(value(page, `${GatewayMetric.requestDuration}_bucket`, { ...churn, le: '5' })).toBe(requests - 1);

    // prom-client's own Histogram, fed the same latencies, exports the same series.
    const reference = new Registry();
    const histogram = new Histogram({
      name: GatewayMetric.requestDuration,
      help: 'reference',
      labelNames: ['model', 'version'],
      buckets: LATENCY_BUCKETS_MS.map((ms) => ms / 1000),
      registers: [reference],
    });
    for (const ms of [...LATENCIES_MS, 2]) histogram.observe(churn, ms / 1000);
    const expected = (await scrape(reference)).samples;
    const ours = page.samples.filter(
      (s) => s.name.startsWith(GatewayMetric.requestDuration) && s.labels.model === 'churn',
    );
    expect(ours.map((s) => [s.name, s.labels, s.value])).toEqual(
      expected.map((s) => [s.name, s.labels, expect.closeTo(s.value, 12)]),
    );
  });

  it('exports the prediction distribution: bins of every task, positives of binary and classes of multiclass ones', async () => {
    const page = await scrape(createGatewayMetrics(filledTelemetry(), () => []));
    const churn = { model: 'churn', version: 'v1' };
    const bins = samplesOf(page, GatewayMetric.predictions, churn);
    expect(bins.map((s) => s.labels.bin)).toEqual(Array.from({ length: PREDICTION_BINS }, (_, i) => String(i)));
    const successes = LATENCIES_MS.length + 2;
    expect(bins.reduce((n, s) => n + s.value, 0)).toBe(successes);
    expect(value(page, GatewayMetric.predictions, { ...churn, bin: String(PREDICTION_BINS - 1) })).toBe(2);
    expect(value(page, GatewayMetric.predictions, { ...churn, bin: String(predictionBinIndex(0.3)) })).toBe(1);
    expect(value(page, GatewayMetric.positivePredictions, churn)).toBe(4 + 2); // i = 0, 3, 6, 9 and the batch

    const iris = { model: 'iris', version: 'v7' };
    expect(samplesOf(page, GatewayMetric.predictedClasses, iris).map((s) => [s.labels.class, s.value])).toEqual([
      ['0', 1],
      ['1', 0],
      ['2', 2],
    ]);
    expect(samplesOf(page, GatewayMetric.predictions, iris).reduce((n, s) => n + s.value, 0)).toBe(3);
    expect(samplesOf(page, GatewayMetric.positivePredictions, iris)).toEqual([]);

    const price = { model: 'price', version: 'v1' };
    const edges = Array.from({ length: PREDICTION_BINS - 1 }, (_, i) => (i + 1) * 10);
    for (const v of [5, 55, 1e6]) {
      expect(value(page, GatewayMetric.predictions, { ...price, bin: String(valueBinIndex(v, edges)) })).toBe(1);
    }
    expect(samplesOf(page, GatewayMetric.positivePredictions, price)).toEqual([]);
    expect(samplesOf(page, GatewayMetric.predictedClasses, { model: 'churn' })).toEqual([]);
    expect(samplesOf(page, GatewayMetric.predictedClasses, price)).toEqual([]);
  });

  it('reads counters and weights at every scrape, and forgets an undeployed version', async () => {
    const telemetry = filledTelemetry();
    let weights = WEIGHTS;
    const registry = createGatewayMetrics(telemetry, () => weights);
    const churn = { model: 'churn', version: 'v1' };
    let page = await scrape(registry);
    expect(
      samplesOf(page, GatewayMetric.trafficWeight).map((s) => [s.labels.model, s.labels.version, s.value]),
    ).toEqual(WEIGHTS.map((w) => [w.model, w.version, w.percent]));

    telemetry.counters('churn', 'v1').recordError();
    weights = [{ model: 'churn', version: 'v1', percent: 100 }];
    page = await scrape(registry);
    expect(value(page, GatewayMetric.errors, churn)).toBe(4);
    expect(samplesOf(page, GatewayMetric.trafficWeight).map((s) => s.value)).toEqual([100]);

    telemetry.drop('iris', 'v7');
    page = await scrape(registry);
    expect(page.samples.filter((s) => s.labels.model === 'iris')).toEqual([]);
    // Every family is declared even without a sample, so that a dashboard finds each name.
    expect(page.families.get(GatewayMetric.predictedClasses)?.samples).toEqual([]);
  });

  it('escapes model and version names in label values', async () => {
    const telemetry = new TelemetryRegistry('boot-1');
    const odd = 'a"b\\c\nd';
    telemetry.counters(odd, odd).recordError();
    const page = await scrape(createGatewayMetrics(telemetry, () => []));
    expect(value(page, GatewayMetric.errors, { model: odd, version: odd })).toBe(1);
  });

  it('takes the weight of every deployed version from the routing, 0 for one without traffic', () => {
    const weights = [
      ...versionWeightsOf([
        {
          model: 'churn',
          versions: [
            { version: 'v2', artifactDir: '/a/2', deployedAt: '2030-01-01T00:00:00Z' },
            { version: 'v1', artifactDir: '/a/1', deployedAt: '2030-01-01T00:00:00Z' },
            { version: 'constructor', artifactDir: '/a/c', deployedAt: '2030-01-01T00:00:00Z' },
          ],
          weights: { v1: 75, v2: 25 },
        },
      ]),
    ];
    expect(weights).toEqual([
      { model: 'churn', version: 'v2', percent: 25 },
      { model: 'churn', version: 'v1', percent: 75 },
      { model: 'churn', version: 'constructor', percent: 0 },
    ]);
  });

  it('scrapes the counters of 200 deployed versions cheaply', async () => {
    const telemetry = new TelemetryRegistry('boot-1');
    const weights: VersionWeight[] = [];
    for (let m = 0; m < 20; m++) {
      for (let v = 0; v < 10; v++) {
        const counters = telemetry.counters(`model-${m}`, `v${v}`);
        counters.binPredictions({ task: 'binary-classification' });
        for (let i = 0; i < 50; i++) counters.recordSuccess(i % 40, [{ label: i % 2, binned: (i % 10) / 10 }]);
        weights.push({ model: `model-${m}`, version: `v${v}`, percent: 10 });
      }
    }
    const registry = createGatewayMetrics(telemetry, () => weights);
    for (let i = 0; i < 5; i++) await registry.metrics(); // warm-up (JIT)
    const scrapes = 20;
    const timings: number[] = [];
    let text = '';
    for (let i = 0; i < scrapes; i++) {
      const started = performance.now();
      text = await registry.metrics();
      timings.push(performance.now() - started);
    }
    timings.sort((a, b) => a - b);
    const page = parsePrometheusText(text);
    // 200 versions × (3 counters + 15 histogram series + 20 bins + positives + weight) = 8,000 series.
    expect(page.samples).toHaveLength(200 * (3 + LE.length + 2 + PREDICTION_BINS + 1 + 1));
    console.log(
      `gateway metrics: 200 versions, ${page.samples.length} series, ${(text.length / 1024).toFixed(0)} KiB: ` +
        `scrape median ${timings[scrapes >> 1]!.toFixed(2)} ms, max ${timings.at(-1)!.toFixed(2)} ms`,
    );
  });
});
