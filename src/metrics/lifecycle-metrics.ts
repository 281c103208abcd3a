import type { Client } from '@temporalio/client';
import type { InjectedSinks } from '@temporalio/worker';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { QuotaClient } from '../client/quota-client';
import type { DriftReport } from '../drift/compare';
import type { Alert } from '../shared/alerts';
import type { QuotaPoolsFile, QuotaPoolState } from '../shared/quota';
import { MlStage } from '../shared/search-attributes';
import { Stage, type Decision } from '../shared/status';
import type { LifecycleFailed, LifecycleMetricsSinks, StageEnded } from '../shared/metrics-sink';

/** Prefix of every series of the project's own metrics. */
export const METRIC_PREFIX = 'ml_lifecycle_';

/** The visibility query of the running-lifecycles gauge. */
export const RUNNING_LIFECYCLES_QUERY = `WorkflowType = 'modelLifecycleWorkflow' AND ExecutionStatus = 'Running'`;

/** pino's call shape (`logger.warn(obj, msg)`), so the worker's root logger fits. */
export interface MetricsLogger {
  warn(obj: object, msg: string): void;
}

export interface LifecycleMetricsOptions {
  /** Temporal client: visibility for the running-lifecycles gauge and quota pool state. Absent: neither is read. */
  client?: Client;
  /** Pools whose usage the quota gauges read at scrape time (the worker's QUOTA_POOLS_FILE). */
  quotaPools?: QuotaPoolsFile;
  /** How long a visibility listing or pool read serves later scrapes before it is read again (default 5 s). */
  cacheMs?: number;
  /** Most running lifecycles one listing reads (default 10 000); past it the gauge counts what it read and warns. */
  maxListed?: number;
  /** How long a scrape waits for visibility or a pool before serving the last values (default 3 s). */
  collectTimeoutMs?: number;
  /** Deadline of one visibility listing or pool read, retries included (default 10 s); a late read lands later. */
  readDeadlineMs?: number;
  logger?: MetricsLogger;
  /** Also expose the Node process's metrics (memory, CPU, event loop lag, GC). */
  processMetrics?: boolean;
}

/** Versions of one model whose canary readouts are kept; an older version's series are removed. */
const READOUT_VERSIONS_PER_MODEL = 3;
const KNOWN_STAGES = new Set<string>(Object.values(Stage));
/** Seconds: from a few seconds of a test stage to a week-long approval wait or bake. */
const STAGE_BUCKETS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86_400, 3 * 86_400, 7 * 86_400];
/** Seconds: a small model trains in seconds, a big one in hours. */
const TRAINING_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 2 * 3600, 6 * 3600, 24 * 3600];

/**
 * The worker's Prometheus metrics, in a registry of its own (tests build several). Stage durations and failures
 * arrive from workflow code through the `lifecycleMetrics` sink; training, analysis and alert activities call the
 * methods below; running lifecycles and quota usage are read when Prometheus scrapes.
 */
export class LifecycleMetrics {
  readonly registry = new Registry();
  private readonly runningLifecycles: Gauge<'stage'>;
  private readonly stageDuration: Histogram<'stage'>;
  private readonly failures: Counter<'outcome' | 'stage' | 'reason'>;
  private readonly trainingDuration: Histogram<'hardware_class' | 'outcome'>;
  private readonly quotaUsed: Gauge<'pool' | 'resource'>;
  private readonly quotaCapacity: Gauge<'pool' | 'resource'>;
  private readonly quotaWaiting: Gauge<'pool'>;
  private readonly quotaLeases: Gauge<'pool'>;
  private readonly driftPsi: Gauge<'model' | 'feature' | 'kind'>;
  private readonly canaryReadout: Gauge<'model' | 'version' | 'check'>;
  private readonly canaryDecisions: Counter<'model' | 'check' | 'outcome'>;
  private readonly alerts: Counter<'kind' | 'severity' | 'resolved'>;
  private readonly collectErrors: Counter<'source'>;
  /** Per model, the versions with readout series (oldest first) and the checks each has. */
  private readonly readoutVersions = new Map<string, Map<string, Set<string>>>();
  private readonly running: ScrapeCache;
  private readonly quota: ScrapeCache;

  constructor(private readonly options: LifecycleMetricsOptions = {}) {
    const registers = [this.registry];
    const name = (n: string) => `${METRIC_PREFIX}${n}`;
    const cacheMs = options.cacheMs ?? 5_000;
    const timeoutMs = options.collectTimeoutMs ?? 3_000;
    this.collectErrors = new Counter({
      name: name('metrics_collect_errors_total'),
      help: 'Scrape-time reads that failed (visibility, quota pools); the gauges kept their last values.',
      labelNames: ['source'],
      registers,
    });
    const onError = (source: string) => (err: unknown) => {
      this.collectErrors.inc({ source });
      options.logger?.warn({ err, source }, 'metrics: scrape-time read failed; serving the last values');
    };
    const client = options.client;
    // A deadline bounds the client's own retries, so `close()` can wait for the reads before the connection closes.
    const readDeadlineMs = options.readDeadlineMs ?? 10_000;
    const bounded = (read: (c: Client) => Promise<void>) =>
      client ? () => client.withDeadline(Date.now() + readDeadlineMs, () => read(client)) : null;
    this.running = new ScrapeCache(
      bounded((c) => this.countRunning(c)),
      cacheMs,
      timeoutMs,
      onError('visibility'),
    );
    const poolNames = options.quotaPools?.pools.map((p) => p.name) ?? [];
    const quota = client && poolNames.length > 0 ? new QuotaClient(client, options.quotaPools!) : null;
    this.quota = new ScrapeCache(
      quota ? bounded(() => this.readPools(quota, poolNames)) : null,
      cacheMs,
      timeoutMs,
      onError('quota'),
    );

    this.runningLifecycles = new Gauge({
      name: name('running_lifecycles'),
      help: 'Running model lifecycles by stage (Temporal visibility, MlStage search attribute).',
      labelNames: ['stage'],
      registers,
      collect: () => this.running.refresh(),
    });
    this.stageDuration = new Histogram({
      name: name('stage_duration_seconds'),
      help: 'How long lifecycle stages lasted, observed when a lifecycle leaves the stage (workflow time).',
      labelNames: ['stage'],
      buckets: STAGE_BUCKETS,
      registers,
    });
    this.failures = new Counter({
      name: name('failures_total'),
      help: 'Lifecycles that ended rolled back or failed, by the stage they failed in and the kind of reason.',
      labelNames: ['outcome', 'stage', 'reason'],
      registers,
    });
    this.trainingDuration = new Histogram({
      name: name('training_duration_seconds'),
      help: 'Training runs by hardware class and outcome: the trainer process time, or the time until it failed.',
      labelNames: ['hardware_class', 'outcome'],
      buckets: TRAINING_BUCKETS,
      registers,
    });
    const quotaGauge = <L extends string>(n: string, help: string, labelNames: L[]) =>
      new Gauge<L>({ name: name(n), help, labelNames, registers, collect: () => this.quota.refresh() });
    this.quotaUsed = quotaGauge('quota_used', 'Quota held by leases, per pool and resource.', ['pool', 'resource']);
    this.quotaCapacity = quotaGauge('quota_capacity', 'Capacity of a quota pool, per resource.', ['pool', 'resource']);
    this.quotaWaiting = quotaGauge('quota_waiting', 'Reservations queued for quota in a pool.', ['pool']);
    this.quotaLeases = quotaGauge('quota_leases', 'Leases a quota pool holds.', ['pool']);
    this.driftPsi = new Gauge({
      name: name('drift_psi'),
      help:
        'Latest drift of live traffic (PSI) by model: kind="feature-skew" per feature against the training profile, ' +
        'kind="prediction-drift" (feature="prediction") of the candidate against the stable version.',
      labelNames: ['model', 'feature', 'kind'],
      registers,
    });
    this.canaryReadout = new Gauge({
      name: name('canary_readout'),
      help: 'Latest value of each rollout check of a candidate version (error rate, p99 latency ms, PSI, ...).',
      labelNames: ['model', 'version', 'check'],
      registers,
    });
    this.canaryDecisions = new Counter({
      name: name('canary_decisions_total'),
      help: 'Rollout check evaluations (every sample and readout of the analysis) by outcome.',
      labelNames: ['model', 'check', 'outcome'],
      registers,
    });
    this.alerts = new Counter({
      name: name('alerts_total'),
      help: 'Alerts delivered, by kind, severity and whether the message resolved an incident.',
      labelNames: ['kind', 'severity', 'resolved'],
      registers,
    });
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** Sink registration for the control worker (`Worker.create({ sinks })`); replays do not call it. */
  workflowSinks(): InjectedSinks<LifecycleMetricsSinks> {
    return {
      lifecycleMetrics: {
        stageEnded: { fn: (_info, e) => this.stageEnded(e), callDuringReplay: false },
        lifecycleFailed: { fn: (_info, e) => this.lifecycleFailed(e), callDuringReplay: false },
      },
    };
  }

  stageEnded(e: StageEnded): void {
    this.stageDuration.observe({ stage: stageLabel(e.stage) }, e.durationMs / 1000);
  }

  lifecycleFailed(e: LifecycleFailed): void {
    this.failures.inc({ outcome: e.outcome, stage: stageLabel(e.stage), reason: e.reason });
  }

  /** A training run ended (reused artifacts are not runs: do not report them). */
  trainingFinished(e: { hardwareClass: string; outcome: 'succeeded' | 'failed' | 'cancelled'; durationMs: number }) {
    this.trainingDuration.observe({ hardware_class: e.hardwareClass, outcome: e.outcome }, e.durationMs / 1000);
  }

  /**
   * One analysis of a rollout stage: each check's value becomes the version's readout and its outcome is counted;
   * the input skew report sets the per-feature drift, the prediction-drift check the prediction drift.
   */
  stageAnalyzed(e: { model: string; version: string; decisions: readonly Decision[]; inputSkew?: DriftReport }): void {
    const checks = this.readoutChecks(e.model, e.version);
    for (const d of e.decisions) {
      this.canaryDecisions.inc({ model: e.model, check: d.check, outcome: d.outcome });
      if (d.value === null || !Number.isFinite(d.value)) continue;
      this.canaryReadout.set({ model: e.model, version: e.version, check: d.check }, d.value);
      checks.add(d.check);
      if (d.check === 'predictionDrift') {
        this.driftPsi.set({ model: e.model, feature: 'prediction', kind: 'prediction-drift' }, d.value);
      }
    }
    for (const f of e.inputSkew?.features ?? []) {
      const psi = f.statistics.psi;
      if (f.role !== 'feature' || f.skipped || psi === undefined || !Number.isFinite(psi)) continue;
      this.driftPsi.set({ model: e.model, feature: f.name, kind: 'feature-skew' }, psi);
    }
  }

  /** An alert went out through the alert path; every delivery activity calls this once it delivered. */
  alertDelivered(alert: Pick<Alert, 'kind' | 'severity' | 'resolved'>): void {
    this.alerts.inc({ kind: alert.kind, severity: alert.severity, resolved: String(alert.resolved === true) });
  }

  /** Starts no more scrape-time reads and waits for those in flight: call it before closing the client. */
  async close(): Promise<void> {
    await Promise.all([this.running.close(), this.quota.close()]);
  }

  /** The exposition text of every series (what `GET /metrics` serves). */
  async expose(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** The checks with readout series of a model's version; a model keeps the latest few versions only. */
  private readoutChecks(model: string, version: string): Set<string> {
    let versions = this.readoutVersions.get(model);
    if (!versions) this.readoutVersions.set(model, (versions = new Map()));
    let checks = versions.get(version);
    if (!checks) {
      versions.set(version, (checks = new Set()));
      for (const [old, oldChecks] of versions) {
        if (versions.size <= READOUT_VERSIONS_PER_MODEL) break;
        for (const check of oldChecks) this.canaryReadout.remove({ model, version: old, check });
        versions.delete(old);
      }
    }
    return checks;
  }

  private async countRunning(client: Client): Promise<void> {
    const max = this.options.maxListed ?? 10_000;
    const counts = new Map<string, number>();
    let listed = 0;
    for await (const wf of client.workflow.list({ query: RUNNING_LIFECYCLES_QUERY })) {
      if (listed >= max) {
        this.options.logger?.warn({ listed, max }, 'metrics: more running lifecycles than the listing reads');
        break;
      }
      listed++;
      const stage = stageLabel(wf.typedSearchAttributes.get(MlStage));
      counts.set(stage, (counts.get(stage) ?? 0) + 1);
    }
    this.runningLifecycles.reset();
    for (const stage of KNOWN_STAGES) this.runningLifecycles.set({ stage }, counts.get(stage) ?? 0);
    if (counts.has('unknown')) this.runningLifecycles.set({ stage: 'unknown' }, counts.get('unknown')!);
  }

  private async readPools(quota: QuotaClient, pools: string[]): Promise<void> {
    // Summaries: usage and counts, small at any number of leases (a whole state passes 2 MB at ~8,300 leases).
    const states = await Promise.all(pools.map((pool) => quota.state(pool, { summary: true })));
    this.quotaUsed.reset();
    this.quotaCapacity.reset();
    this.quotaWaiting.reset();
    this.quotaLeases.reset();
    for (const state of states) if (state) this.setPool(state);
  }

  private setPool(state: QuotaPoolState): void {
    const pool = state.name;
    for (const r of state.resources) {
      this.quotaUsed.set({ pool, resource: r.resource }, r.used);
      this.quotaCapacity.set({ pool, resource: r.resource }, r.capacity);
    }
    this.quotaWaiting.set({ pool }, state.counts?.waiting ?? state.waiting.length);
    this.quotaLeases.set({ pool }, state.counts?.leases ?? state.leases.length);
  }
}

/** Sink registration for a control worker; without metrics the calls are dropped (an unregistered sink logs errors). */
export function lifecycleMetricsSinks(metrics?: LifecycleMetrics): InjectedSinks<LifecycleMetricsSinks> {
  if (metrics) return metrics.workflowSinks();
  const drop = { fn: () => undefined, callDuringReplay: false };
  return { lifecycleMetrics: { stageEnded: drop, lifecycleFailed: drop } };
}

/** A known stage, else `unknown` (the label stays bounded whatever a search attribute holds). */
function stageLabel(stage: string | undefined): string {
  return stage !== undefined && KNOWN_STAGES.has(stage) ? stage : 'unknown';
}

/**
 * A scrape-time read shared by concurrent scrapes and reused for `ttlMs`. A failed read keeps the last values; a
 * slow one lets the scrape go on with them, and its result lands for a later scrape.
 */
class ScrapeCache {
  private readAt = -Infinity;
  private inFlight: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly read: (() => Promise<void>) | null,
    private readonly ttlMs: number,
    private readonly timeoutMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  async refresh(): Promise<void> {
    if (!this.read || this.closed || Date.now() - this.readAt < this.ttlMs) return;
    this.inFlight ??= this.read()
      .then(
        () => void (this.readAt = Date.now()),
        (err: unknown) => this.onError(err),
      )
      .finally(() => (this.inFlight = null));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.timeoutMs)));
    await Promise.race([this.inFlight, late]).finally(() => clearTimeout(timer));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.inFlight;
  }
}
