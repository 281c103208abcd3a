/**
 * Quota accounting (pure): what a request lacks against capacity and caps, usage breakdowns, burn rate and
 * exhaustion forecast, the alerts a pool's state calls for, and estimates from similar past runs.
 */
import type {
  Cap,
  PipelineKind,
  QuotaAlertState,
  QuotaLease,
  QuotaPoolConfig,
  QuotaRun,
  QuotaShortfall,
  RefusalReason,
  ResourceUsage,
  Resources,
} from '../shared/quota';
import { own } from '../shared/own';

/**
 * Tolerance that keeps fractional requests (0.5 cpu) from being refused by float rounding. Reservations ask for 0 or at
 * least MIN_REQUEST_AMOUNT (0.001) of a resource (the zod schema refuses less), a million times this tolerance, so a
 * full pool grants nothing: no request fits in the rounding slack.
 */
const EPS = 1e-9;

/**
 * Sums of resources by name. Resource names come from callers (`toString` is a valid one), so sums are kept in a
 * `Map` and turned into JSON with `Object.fromEntries`; a plain object would read inherited members.
 */
export class ResourceSums {
  private readonly sums = new Map<string, number>();

  add(resources: Resources, sign = 1): this {
    for (const [resource, amount] of Object.entries(resources)) {
      const next = (this.sums.get(resource) ?? 0) + sign * amount;
      this.sums.set(resource, Math.abs(next) < EPS ? 0 : next);
    }
    return this;
  }

  get(resource: string): number {
    return this.sums.get(resource) ?? 0;
  }

  entries(): IterableIterator<[string, number]> {
    return this.sums.entries();
  }

  toJSON(): Resources {
    return Object.fromEntries(this.sums);
  }
}

/** Sum of the resources of all leases. */
export function usedResources(leases: Iterable<Pick<QuotaLease, 'resources'>>): Resources {
  const used = new ResourceSums();
  for (const lease of leases) used.add(lease.resources);
  return used.toJSON();
}

/** The share a cap gives `resource` (undefined: not capped). `gpu:*` matches every `gpu:<type>`. */
export function capShare(cap: Cap | undefined, resource: string): number | undefined {
  if (cap === undefined) return undefined;
  if (typeof cap === 'number') return cap;
  const share = own(cap, resource);
  if (share !== undefined) return share;
  const family = resource.includes(':') ? `${resource.split(':')[0]}:*` : undefined;
  return family ? own(cap, family) : undefined;
}

/** A pool's capacity of `resource` (0 when it has none). */
const capacityOf = (capacity: Resources, resource: string): number => own(capacity, resource) ?? 0;

export interface Assessment {
  fits: boolean;
  reason?: RefusalReason;
  shortfalls: QuotaShortfall[];
}

export interface RequestLike {
  holder: string;
  kind: PipelineKind;
  resources: Resources;
}

/**
 * Whether `request` can be granted now given `leases`. Checks, in order: resources the pool does not have or that a
 * limit can never hold (`never-fits`), the holder's cap, the kind's cap, then free capacity, skipping `blocked`
 * resources promised to reservations waiting ahead (`queued-ahead`).
 */
export function assess(
  config: Pick<QuotaPoolConfig, 'capacity' | 'caps'>,
  leases: Iterable<QuotaLease>,
  request: RequestLike,
  blocked: ReadonlySet<string> = new Set(),
): Assessment {
  const all = [...leases];
  const requested = Object.entries(request.resources).filter(([, amount]) => amount > 0);
  const limitFor = (scope: QuotaShortfall['scope'], resource: string): number | undefined => {
    const capacity = capacityOf(config.capacity, resource);
    if (scope === 'pool') return capacity;
    const share = capShare(
      scope === 'pipeline' ? config.caps.perPipeline : own(config.caps.perKind, request.kind),
      resource,
    );
    return share === undefined ? undefined : share * capacity;
  };

  // Never: more than a limit allows even with the pool empty.
  const never: QuotaShortfall[] = [];
  for (const [resource, amount] of requested) {
    for (const scope of ['pool', 'kind', 'pipeline'] as const) {
      const limit = limitFor(scope, resource);
      if (limit !== undefined && amount > limit + EPS) {
        never.push({ resource, requested: amount, available: limit, limit, scope });
        break;
      }
    }
  }
  if (never.length > 0) return { fits: false, reason: 'never-fits', shortfalls: never };

  const check = (scope: QuotaShortfall['scope'], held: ResourceSums): QuotaShortfall[] => {
    const out: QuotaShortfall[] = [];
    for (const [resource, amount] of requested) {
      const limit = limitFor(scope, resource);
      if (limit === undefined) continue;
      const available = Math.max(0, limit - held.get(resource));
      if (amount > available + EPS) out.push({ resource, requested: amount, available, limit, scope });
    }
    return out;
  };
  const sum = (of: QuotaLease[]) => {
    const sums = new ResourceSums();
    for (const lease of of) sums.add(lease.resources);
    return sums;
  };
  const pipeline = check('pipeline', sum(all.filter((l) => l.holder === request.holder)));
  if (pipeline.length > 0) return { fits: false, reason: 'pipeline-cap', shortfalls: pipeline };
  const kind = check('kind', sum(all.filter((l) => l.kind === request.kind)));
  if (kind.length > 0) return { fits: false, reason: 'kind-cap', shortfalls: kind };
  const pool = check('pool', sum(all));
  if (pool.length > 0) return { fits: false, reason: 'capacity', shortfalls: pool };
  const ahead = requested
    .filter(([resource]) => blocked.has(resource))
    .map(([resource, amount]) => {
      const limit = capacityOf(config.capacity, resource);
      return { resource, requested: amount, available: 0, limit, scope: 'pool' as const };
    });
  if (ahead.length > 0) return { fits: false, reason: 'queued-ahead', shortfalls: ahead };
  return { fits: true, shortfalls: [] };
}

/** Earliest expected end of a lease holding one of `resources`: its expected release, else its expiry. */
export function earliestRelease(leases: Iterable<QuotaLease>, resources: readonly string[]): string | null {
  let best: string | null = null;
  for (const lease of leases) {
    if (!resources.some((r) => (own(lease.resources, r) ?? 0) > 0)) continue;
    const at = lease.expectedReleaseAt ?? lease.expiresAt;
    if (at && (best === null || at < best)) best = at;
  }
  return best;
}

const fmt = (n: number) => String(Math.round(n * 100) / 100);

/** The detail of a `pool-full` refusal by count: what the pool holds against its `maxLeases`. */
export function poolFullByCount(held: number, maxLeases: number): string {
  return `it holds ${held} leases and waiting reservations, its bound (maxLeases ${maxLeases}); release some first`;
}

/** The detail of a `pool-full` refusal by size: what the pool must carry across continue-as-new against its budget. */
export function poolFullBySize(held: number, bytes: number, budget: number): string {
  const mib = (b: number) => `${(b / 1_048_576).toFixed(2)} MiB`;
  return (
    `its ${held} leases and waiting reservations take ${mib(bytes)} of the ${mib(budget)} it may carry across ` +
    'continue-as-new (long lease ids, holders or profiles); release some first'
  );
}

/**
 * One line saying why `pool` refused: the reason, what is short by how much, and `detail` where the reason has more to
 * say (`pool-full`: the bound it met).
 */
export function describeRefusal(
  pool: string,
  reason: RefusalReason,
  shortfalls: readonly QuotaShortfall[],
  detail?: string,
): string {
  const what: Record<RefusalReason, string> = {
    capacity: 'not enough free capacity',
    'pipeline-cap': 'the pipeline would exceed its cap',
    'kind-cap': 'the pipeline kind would exceed its cap',
    'queued-ahead': 'free capacity is promised to reservations waiting ahead',
    'never-fits': 'the request can never fit',
    'wait-timeout': 'waited in the queue for the whole timeout',
    'pool-full': 'the pool is full',
  };
  const scopeName = { pool: 'capacity', kind: 'kind cap', pipeline: 'pipeline cap' } as const;
  const items = shortfalls.map(
    (s) => `${s.resource} needs ${fmt(s.requested)}, ${fmt(s.available)} of ${fmt(s.limit)} (${scopeName[s.scope]})`,
  );
  const more = [...(detail ? [detail] : []), ...items];
  return `pool "${pool}" cannot grant: ${what[reason]}${more.length ? `: ${more.join('; ')}` : ''}`;
}

export interface UsageBreakdown {
  used: Resources;
  byKind: Partial<Record<PipelineKind, Resources>>;
  byPipeline: Record<string, Resources>;
}

/** Usage in all, per kind and per pipeline (holder); holders are caller-chosen names, so they key a Map. */
export function breakdown(leases: Iterable<QuotaLease>): UsageBreakdown {
  const used = new ResourceSums();
  const byKind = new Map<PipelineKind, ResourceSums>();
  const byPipeline = new Map<string, ResourceSums>();
  const into = <K>(map: Map<K, ResourceSums>, key: K) => {
    let sums = map.get(key);
    if (!sums) map.set(key, (sums = new ResourceSums()));
    return sums;
  };
  for (const lease of leases) {
    used.add(lease.resources);
    into(byKind, lease.kind).add(lease.resources);
    into(byPipeline, lease.holder).add(lease.resources);
  }
  const json = <K extends string>(map: Map<K, ResourceSums>) =>
    Object.fromEntries([...map].map(([k, v]) => [k, v.toJSON()])) as Record<K, Resources>;
  return { used: used.toJSON(), byKind: json(byKind), byPipeline: json(byPipeline) };
}

/** Usage of the pool right after a change, for burn rates. */
export interface UsageSample {
  atMs: number;
  used: Resources;
}

/**
 * Per resource: usage, share of capacity, burn rate (change of usage per hour between the start of the window and
 * now, usage being a step function of the samples) and when it runs out at that rate.
 */
export function resourceUsage(
  capacity: Resources,
  used: Resources,
  samples: readonly UsageSample[],
  nowMs: number,
  windowMs: number,
): ResourceUsage[] {
  const from = nowMs - windowMs;
  // Usage at the start of the window: the last sample at or before it; nothing before the first sample (the pool
  // starts empty). The rate is always over the whole window, so one grant a minute after the pool started reads as
  // a step within the window, not as a steep climb (a forecast alert at 3% usage is noise).
  const lastBefore = samples.filter((s) => s.atMs <= from).at(-1);
  const start: Resources = lastBefore ? lastBefore.used : {};
  const hours = windowMs / 3_600_000;
  const names = [...new Set([...Object.keys(capacity), ...Object.keys(used)])].sort();
  return names.map((resource) => {
    const cap = own(capacity, resource) ?? 0;
    const u = own(used, resource) ?? 0;
    const burnPerHour = (u - (own(start, resource) ?? 0)) / hours;
    const free = cap - u;
    const exhaustedAt =
      burnPerHour > EPS && free > 0 ? new Date(nowMs + (free / burnPerHour) * 3_600_000).toISOString() : null;
    return { resource, capacity: cap, used: u, share: cap > 0 ? u / cap : 0, burnPerHour, exhaustedAt };
  });
}

/** Alerts the pool's state calls for right now (keyed per incident); the pool fires new keys and resolves gone ones. */
export function poolAlerts(
  config: QuotaPoolConfig,
  usage: readonly ResourceUsage[],
  faulty: readonly { holder: string; capRefusals: number }[],
  active: ReadonlyMap<string, QuotaAlertState>,
  nowMs: number,
): Omit<QuotaAlertState, 'since'>[] {
  const out: Omit<QuotaAlertState, 'since'>[] = [];
  const thresholds = [...config.alerts.usageThresholds].sort((a, b) => a - b);
  // Hysteresis: an alert raised at a threshold clears only when usage falls 5 points below it.
  const HYSTERESIS = 0.05;
  for (const r of usage) {
    if (r.capacity <= 0) continue;
    const key = `quota:${config.name}:${r.resource}:usage`;
    const previous = active.get(key)?.details?.threshold as number | undefined;
    let crossed = thresholds.filter((t) => r.share >= t - EPS).at(-1);
    if (crossed === undefined && previous !== undefined && r.share >= previous - HYSTERESIS) crossed = previous;
    if (crossed !== undefined) {
      const top = crossed === thresholds.at(-1);
      out.push({
        key,
        kind: 'quota-usage-high',
        severity: top ? 'critical' : 'warning',
        summary: `pool "${config.name}": ${r.resource} at ${Math.round(r.share * 100)}% of ${fmt(r.capacity)} (threshold ${Math.round(crossed * 100)}%)`,
        details: { pool: config.name, resource: r.resource, used: r.used, capacity: r.capacity, threshold: crossed },
      });
    }
    if (r.exhaustedAt !== null && Date.parse(r.exhaustedAt) - nowMs <= config.alerts.forecastHorizon) {
      const minutes = Math.max(0, Math.round((Date.parse(r.exhaustedAt) - nowMs) / 60_000));
      out.push({
        key: `quota:${config.name}:${r.resource}:forecast`,
        kind: 'quota-exhaustion-forecast',
        severity: 'warning',
        summary: `pool "${config.name}": ${r.resource} runs out in about ${minutes} min at ${fmt(r.burnPerHour)}/h`,
        details: {
          pool: config.name,
          resource: r.resource,
          burnPerHour: r.burnPerHour,
          exhaustedAt: r.exhaustedAt,
          used: r.used,
          capacity: r.capacity,
        },
      });
    }
  }
  for (const f of faulty) {
    out.push({
      key: `quota:${config.name}:faulty:${f.holder}`,
      kind: 'quota-faulty-pipeline',
      severity: 'warning',
      summary: `pool "${config.name}": pipeline ${f.holder} hit its cap ${f.capRefusals} times within ${Math.round(config.alerts.faultyWindow / 60_000)} min`,
      details: { pool: config.name, holder: f.holder, capRefusals: f.capRefusals },
    });
  }
  return out;
}

/** Holders refused by their cap at least `faultyAfter` times within the window, from their refusal times. */
export function faultyPipelines(
  capRefusals: ReadonlyMap<string, readonly number[]>,
  config: QuotaPoolConfig,
  nowMs: number,
): { holder: string; capRefusals: number; sinceMs: number }[] {
  const out: { holder: string; capRefusals: number; sinceMs: number }[] = [];
  for (const [holder, times] of capRefusals) {
    const recent = times.filter((t) => t > nowMs - config.alerts.faultyWindow);
    if (recent.length >= config.alerts.faultyAfter)
      out.push({ holder, capRefusals: recent.length, sinceMs: recent[0] ?? nowMs });
  }
  return out;
}

// --- Estimates -----------------------------------------------------------------------------------------------------

export interface Range {
  low: number;
  mid: number;
  high: number;
}

export interface RunEstimate {
  kind: PipelineKind;
  /** `history`: from similar runs; `declared`: no similar run, the spec's own request. */
  basis: 'history' | 'declared';
  similarRuns: number;
  criteria: string;
  durationMs: Range | null;
  peakMemoryGiB: Range | null;
  cpuCores: Range | null;
  /** What to reserve: the high end of the measured range with headroom, never below a 0.5 step. */
  recommended: Resources;
  similar: { leaseId: string; datasetRows?: number; heldMs: number; durationMs?: number; usage?: QuotaRun['usage'] }[];
}

function quantile(sorted: readonly number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = sorted[Math.floor(pos)] ?? 0;
  const hi = sorted[Math.ceil(pos)] ?? lo;
  return lo + (hi - lo) * (pos - Math.floor(pos));
}

function range(values: number[]): Range | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  // With few runs the range is the observed spread; with many, the 10th-90th percentile.
  const many = sorted.length >= 10;
  return {
    low: quantile(sorted, many ? 0.1 : 0),
    mid: quantile(sorted, 0.5),
    high: quantile(sorted, many ? 0.9 : 1),
  };
}

const roundUpHalf = (x: number) => Math.max(0.5, Math.ceil(x * 2) / 2);

/** Completed runs like `target`: same kind and model family, dataset within `factor`; durations scaled to its size. */
export function similarRuns(
  runs: readonly QuotaRun[],
  target: { kind: PipelineKind; family?: string; datasetRows?: number },
  factor = 2,
): { runs: QuotaRun[]; scaledDurationsMs: number[] } {
  const rows = target.datasetRows;
  const similar = runs.filter(
    (r) =>
      r.ended === 'released' &&
      r.kind === target.kind &&
      (target.family === undefined || r.profile?.family === target.family) &&
      (rows === undefined ||
        (r.profile?.datasetRows !== undefined &&
          r.profile.datasetRows > 0 &&
          rows / r.profile.datasetRows <= factor &&
          r.profile.datasetRows / rows <= factor)),
  );
  const scale = (r: QuotaRun) => (rows !== undefined && r.profile?.datasetRows ? rows / r.profile.datasetRows : 1);
  return { runs: similar, scaledDurationsMs: similar.map((r) => (r.usage?.durationMs ?? r.heldMs) * scale(r)) };
}

/**
 * The p95 of similar runs' durations (scaled to this run's dataset), or null with fewer than `minRuns` of them: a run
 * taking longer than it is slow.
 */
export function durationP95(
  runs: readonly QuotaRun[],
  target: { kind: PipelineKind; family?: string; datasetRows?: number },
  options: { factor?: number; minRuns?: number } = {},
): { p95Ms: number | null; similarRuns: number } {
  const { scaledDurationsMs } = similarRuns(runs, target, options.factor ?? 2);
  if (scaledDurationsMs.length < (options.minRuns ?? 3)) return { p95Ms: null, similarRuns: scaledDurationsMs.length };
  return {
    p95Ms: quantile(
      [...scaledDurationsMs].sort((a, b) => a - b),
      0.95,
    ),
    similarRuns: scaledDurationsMs.length,
  };
}

/**
 * Estimate of a training or data run from similar completed runs: same kind and model family, dataset size within a
 * `factor` of this one. Durations scale linearly with the dataset size; memory and cores are taken as measured.
 * Without similar runs the declared request stands, and the estimate says so.
 */
export function estimateFromRuns(
  runs: readonly QuotaRun[],
  target: { kind: PipelineKind; family?: string; datasetRows?: number; declared: Resources },
  options: { factor?: number; headroom?: number } = {},
): RunEstimate {
  const factor = options.factor ?? 2;
  const headroom = options.headroom ?? 1.2;
  const rows = target.datasetRows;
  const { runs: similar, scaledDurationsMs } = similarRuns(runs, target, factor);
  const criteria =
    `kind ${target.kind}` +
    (target.family ? `, family ${target.family}` : '') +
    (rows !== undefined ? `, dataset within ×${factor} of ${rows} rows` : '');
  if (similar.length === 0) {
    return {
      kind: target.kind,
      basis: 'declared',
      similarRuns: 0,
      criteria,
      durationMs: null,
      peakMemoryGiB: null,
      cpuCores: null,
      recommended: { ...target.declared },
      similar: [],
    };
  }
  const durationMs = range(scaledDurationsMs);
  const mem = similar.map((r) => r.usage?.peakMemoryGiB).filter((v): v is number => v !== undefined);
  const cores = similar.map((r) => r.usage?.avgCpuCores).filter((v): v is number => v !== undefined);
  const peakMemoryGiB = range(mem);
  const cpuCores = range(cores);
  const recommended: Resources = { ...target.declared };
  if (peakMemoryGiB) recommended.memoryGiB = roundUpHalf(peakMemoryGiB.high * headroom);
  if (cpuCores) recommended.cpu = roundUpHalf(cpuCores.high * headroom);
  return {
    kind: target.kind,
    basis: 'history',
    similarRuns: similar.length,
    criteria,
    durationMs,
    peakMemoryGiB,
    cpuCores,
    recommended,
    similar: similar.slice(-20).map((r) => ({
      leaseId: r.leaseId,
      datasetRows: r.profile?.datasetRows,
      heldMs: r.heldMs,
      durationMs: r.usage?.durationMs,
      usage: r.usage,
    })),
  };
}

export interface ServingEstimate {
  qps: number;
  /** Requests per second one replica sustains, from the measured service time (low: at p99, high: at the mean). */
  perReplicaRps: Range;
  targetUtilization: number;
  replicas: Range;
  resources: Resources;
  basis: string;
}

/**
 * Replicas for a predicted QPS from measured per-replica service times: one replica serves 1000/latency requests per
 * second per concurrent slot, kept at `targetUtilization`. The recommendation sizes on the mean service time (what
 * sets a server's capacity); the range goes from the median (fewest replicas) to the p99 (most).
 */
export function estimateServing(input: {
  qps: number;
  latencyMs: { mean: number; p50: number; p99: number };
  concurrencyPerReplica: number;
  perReplica: Resources;
  targetUtilization?: number;
  basis: string;
}): ServingEstimate {
  const util = input.targetUtilization ?? 0.7;
  const rps = (ms: number) => (1000 / Math.max(ms, 0.01)) * input.concurrencyPerReplica;
  const { mean, p50, p99 } = input.latencyMs;
  // Capacity is set by the mean service time; the p99 bounds the slow side, the median the fast side.
  const perReplicaRps = { low: rps(Math.max(p99, mean)), mid: rps(mean), high: rps(Math.min(p50, mean)) };
  const need = (r: number) => Math.max(1, Math.ceil(input.qps / (r * util)));
  const replicas = { low: need(perReplicaRps.high), mid: need(perReplicaRps.mid), high: need(perReplicaRps.low) };
  const resources: Resources = Object.fromEntries(
    Object.entries(input.perReplica).map(([k, v]) => [k, v * replicas.mid]),
  );
  return { qps: input.qps, perReplicaRps, targetUtilization: util, replicas, resources, basis: input.basis };
}

export interface CapacityCheck {
  fits: boolean;
  demand: Resources;
  byKind: Partial<Record<PipelineKind, Resources>>;
  problems: { resource: string; scope: 'pool' | 'kind' | 'pipeline'; who: string; need: number; limit: number }[];
}

/** Whether the pool can run every given pipeline at once, within its capacity and caps; names what falls short. */
export function checkCapacity(
  config: Pick<QuotaPoolConfig, 'capacity' | 'caps'>,
  pipelines: readonly { name: string; kind: PipelineKind; resources: Resources }[],
): CapacityCheck {
  const demand = new ResourceSums();
  const byKind = new Map<PipelineKind, ResourceSums>();
  const problems: CapacityCheck['problems'] = [];
  for (const p of pipelines) {
    demand.add(p.resources);
    let kind = byKind.get(p.kind);
    if (!kind) byKind.set(p.kind, (kind = new ResourceSums()));
    kind.add(p.resources);
    for (const [resource, need] of Object.entries(p.resources)) {
      const share = capShare(config.caps.perPipeline, resource);
      const limit = share === undefined ? undefined : share * capacityOf(config.capacity, resource);
      if (limit !== undefined && need > limit + EPS)
        problems.push({ resource, scope: 'pipeline', who: p.name, need, limit });
    }
  }
  for (const [kind, used] of byKind) {
    for (const [resource, need] of used.entries()) {
      const share = capShare(own(config.caps.perKind, kind), resource);
      const limit = share === undefined ? undefined : share * capacityOf(config.capacity, resource);
      if (limit !== undefined && need > limit + EPS) problems.push({ resource, scope: 'kind', who: kind, need, limit });
    }
  }
  for (const [resource, need] of demand.entries()) {
    const limit = capacityOf(config.capacity, resource);
    if (need > limit + EPS) problems.push({ resource, scope: 'pool', who: 'all pipelines', need, limit });
  }
  return {
    fits: problems.length === 0,
    demand: demand.toJSON(),
    byKind: Object.fromEntries([...byKind].map(([k, v]) => [k, v.toJSON()])),
    problems,
  };
}
