/**
 * The gateway's Prometheus metrics, per model and version, served at `GET /metrics` on its public listener (no token:
 * the page holds model and version names and counts, nothing else). Nothing here runs on the prediction path: the
 * counters are the gateway's telemetry (src/serving/telemetry.ts), read when Prometheus scrapes and handed to
 * prom-client for the text format. They are cumulative since the version was deployed on this gateway process, so a
 * restart or a redeploy starts them from zero again (a counter reset, which `rate()` handles).
 *
 * Series (names in src/shared/gateway-metrics.ts; every one has the labels `model` and `version`):
 * - `mlgw_requests_total` counter: rows whose prediction was attempted, successful or failed (a batch counts its
 *   rows); rows refused as invalid input are not counted.
 * - `mlgw_errors_total` counter: rows whose prediction failed on the server side (inference error, model not loaded).
 * - `mlgw_invalid_requests_total` counter: rows refused as invalid input (400).
 * - `mlgw_request_duration_seconds` histogram: latency of successful prediction requests (a batch once), buckets
 *   `le` = LATENCY_BUCKETS_MS / 1000 and `+Inf`; `_count` counts requests, not rows.
 * - `mlgw_predictions_total{bin}` counter: successful rows per prediction bin, `bin` "0" to PREDICTION_BINS − 1
 *   (src/shared/prediction-bins.ts says what a bin holds for each task); the bins of a version sum to its successful
 *   rows, `mlgw_requests_total − mlgw_errors_total`.
 * - `mlgw_predicted_class_total{class}` counter, multiclass classifiers only: successful rows per predicted class,
 *   `class` its index in the manifest's order ("0", "1", ...).
 * - `mlgw_positive_predictions_total` counter, binary classifiers only: successful rows predicted positive.
 * - `mlgw_traffic_weight_percent` gauge: the routed weight (0-100) of each deployed version; 0 for a deployed
 *   version without traffic.
 *
 * For example, a canary's error rate is
 * `sum by (version) (rate(mlgw_errors_total{model="churn"}[5m])) / sum by (version) (rate(mlgw_requests_total{model="churn"}[5m]))`.
 */
import { Registry, type Metric } from 'prom-client';
import type { ModelRouting } from '../shared/gateway-api';
import { GatewayMetric } from '../shared/gateway-metrics';
import { own } from '../shared/own';
import { LATENCY_BUCKETS_MS } from '../shared/telemetry';
import type { TelemetryRegistry, VersionCounters } from './telemetry';

/** The routed weight of one deployed version. */
export interface VersionWeight {
  model: string;
  version: string;
  /** 0-100. */
  percent: number;
}

/** One sample, as prom-client's own metrics return them from `get()` (lib/counter.js, lib/histogram.js). */
interface Sample {
  labels: Record<string, string | number>;
  value: number;
  /** A histogram's `<name>_bucket`, `_sum` or `_count`; absent: the metric's name. */
  metricName?: string;
}

type MetricType = 'counter' | 'gauge' | 'histogram';

/**
 * What prom-client's Registry needs of a metric (lib/registry.js: `name`, `help`, `type`, `get()`; `reset()` for
 * `resetMetrics()`); its typings only admit its own classes, whose values live in the metric itself.
 */
interface CollectedMetric {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly aggregator: 'sum';
  get(): Promise<{ name: string; help: string; type: MetricType; values: Sample[]; aggregator: 'sum' }>;
  reset(): void;
}

/** Upper bounds of the duration buckets in seconds, as the `le` label carries them. */
const LE_SECONDS: readonly number[] = LATENCY_BUCKETS_MS.map((ms) => ms / 1000);

/** A metric whose samples are read from `collect` at every scrape. */
function collected(name: string, type: MetricType, help: string, collect: (out: Sample[]) => void): CollectedMetric {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    async get() {
      const values: Sample[] = [];
      collect(values);
      return { name, help, type, values, aggregator: 'sum' };
    },
    // The counters belong to the gateway's telemetry: a registry reset does not clear them.
    reset() {},
  };
}

/** Samples of every version: `sample` appends the version's own to `out`. */
function perVersion(
  telemetry: TelemetryRegistry,
  sample: (out: Sample[], labels: { model: string; version: string }, counters: VersionCounters) => void,
): (out: Sample[]) => void {
  return (out) => {
    for (const [model, version, counters] of telemetry.entries()) sample(out, { model, version }, counters);
  };
}

/** The histogram samples of a version's latency counts, shaped as prom-client's Histogram exports them. */
function durationSamples(out: Sample[], labels: { model: string; version: string }, counters: VersionCounters): void {
  const buckets = counters.latencyBucketCounts;
  const name = GatewayMetric.requestDuration;
  let cumulative = 0;
  for (let i = 0; i < LE_SECONDS.length; i++) {
    cumulative += buckets[i] as number;
    out.push({ labels: { ...labels, le: LE_SECONDS[i] as number }, value: cumulative, metricName: `${name}_bucket` });
  }
  const count = cumulative + (buckets[LE_SECONDS.length] as number);
  out.push({ labels: { ...labels, le: '+Inf' }, value: count, metricName: `${name}_bucket` });
  out.push({ labels, value: counters.latencySumMs / 1000, metricName: `${name}_sum` });
  out.push({ labels, value: count, metricName: `${name}_count` });
}

/** Samples of `counts`, one per index, labelled `label` = the index. */
function indexedSamples(
  out: Sample[],
  labels: { model: string; version: string },
  label: string,
  counts: Readonly<Float64Array>,
): void {
  for (let i = 0; i < counts.length; i++) out.push({ labels: { ...labels, [label]: String(i) }, value: counts[i]! });
}

/**
 * A Prometheus registry of the gateway's series (see the header of this file), read from `telemetry` and `weights`
 * at every scrape: serve `await registry.metrics()` with `registry.contentType`.
 */
export function createGatewayMetrics(telemetry: TelemetryRegistry, weights: () => Iterable<VersionWeight>): Registry {
  const metrics = [
    collected(
      GatewayMetric.requests,
      'counter',
      'Rows whose prediction was attempted (successful or failed), excluding rows refused as invalid input.',
      perVersion(telemetry, (out, labels, c) => out.push({ labels, value: c.requests })),
    ),
    collected(
      GatewayMetric.errors,
      'counter',
      'Rows whose prediction failed on the server side (inference error, model not loaded).',
      perVersion(telemetry, (out, labels, c) => out.push({ labels, value: c.errors })),
    ),
    collected(
      GatewayMetric.invalidRequests,
      'counter',
      'Rows refused as invalid input (400).',
      perVersion(telemetry, (out, labels, c) => out.push({ labels, value: c.invalidRequests })),
    ),
    collected(
      GatewayMetric.requestDuration,
      'histogram',
      'Latency of successful prediction requests (a batch counts once).',
      perVersion(telemetry, durationSamples),
    ),
    collected(
      GatewayMetric.predictions,
      'counter',
      'Successful rows per prediction bin.',
      perVersion(telemetry, (out, labels, c) => indexedSamples(out, labels, 'bin', c.predictionBinCounts)),
    ),
    collected(
      GatewayMetric.predictedClasses,
      'counter',
      'Successful rows per predicted class (multiclass classifiers; class is its index).',
      perVersion(telemetry, (out, labels, c) => {
        const classes = c.predictedClassCounts;
        if (classes) indexedSamples(out, labels, 'class', classes);
      }),
    ),
    collected(
      GatewayMetric.positivePredictions,
      'counter',
      'Successful rows predicted positive (binary classifiers).',
      perVersion(telemetry, (out, labels, c) => {
        if (c.task === 'binary-classification') out.push({ labels, value: c.positiveCount });
      }),
    ),
    collected(
      GatewayMetric.trafficWeight,
      'gauge',
      'Routed traffic weight (percent) of each deployed version.',
      (out) => {
        for (const { model, version, percent } of weights()) out.push({ labels: { model, version }, value: percent });
      },
    ),
  ];
  const registry = new Registry();
  // prom-client formats any object with a name, help, type and get() (lib/registry.js); its typings do not say so.
  for (const metric of metrics) registry.registerMetric(metric as unknown as Metric);
  return registry;
}

/** Every deployed version's weight, from the gateway's routing (`GET /admin/models`); 0 for a version without one. */
export function* versionWeightsOf(routing: Iterable<ModelRouting>): Generator<VersionWeight> {
  for (const { model, versions, weights } of routing) {
    for (const { version } of versions) yield { model, version, percent: own(weights, version) ?? 0 };
  }
}
