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
  QuotaPoolState,
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

/** A sum within EPS of 0 is 0 (what is left of adding and taking away fractions). */
const snap = (x: number): number => (Math.abs(x) < EPS ? 0 : x);

/**
 * Sums of resources by name. Resource names come from callers (`toString` is a valid one), so sums are kept in a
 * `Map` and turned into JSON with `Object.fromEntries`; a plain object would read inherited members.
 */
export class ResourceSums {
  private readonly sums = new Map<string, number>();

  add(resources: Resources, sign = 1): this {
    for (const [resource, amount] of Object.entries(resources))
      this.sums.set(resource, snap((this.sums.get(resource) ?? 0) + sign * amount));
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

/** What some leases hold, by resource. */
export interface HeldAmounts {
  get(resource: string): number;
}

/** What a pool's leases hold in all, per holder and per kind, kept as they change (a {@link LeaseBook}). */
export interface HeldUsage {
  readonly pool: HeldAmounts;
  holder(holder: string): HeldAmounts;
  kind(kind: PipelineKind): HeldAmounts;
}

const isHeldUsage = (x: Iterable<QuotaLease> | HeldUsage): x is HeldUsage =>
  typeof (x as Partial<HeldUsage>).holder === 'function';

/** The usage of `leases`, summed in their order. */
function heldUsageOf(leases: Iterable<QuotaLease>): HeldUsage {
  const all = [...leases];
  const sum = (of: QuotaLease[]) => {
    const sums = new ResourceSums();
    for (const lease of of) sums.add(lease.resources);
    return sums;
  };
  return {
    get pool() {
      return sum(all);
    },
    holder: (holder) => sum(all.filter((l) => l.holder === holder)),
    kind: (kind) => sum(all.filter((l) => l.kind === kind)),
  };
}

/**
 * Whether `request` can be granted now given `leases` (a list, or a {@link LeaseBook}'s running sums: the same
 * answer). Checks, in order: resources the pool does not have or that a limit can never hold (`never-fits`), the
 * holder's cap, the kind's cap, then free capacity, skipping `blocked` resources promised to reservations waiting ahead
 * (`queued-ahead`).
 */
export function assess(
  config: Pick<QuotaPoolConfig, 'capacity' | 'caps'>,
  leases: Iterable<QuotaLease> | HeldUsage,
  request: RequestLike,
  blocked: ReadonlySet<string> = new Set(),
): Assessment {
  const held = isHeldUsage(leases) ? leases : heldUsageOf(leases);
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

  const check = (scope: QuotaShortfall['scope'], of: HeldAmounts): QuotaShortfall[] => {
    const out: QuotaShortfall[] = [];
    for (const [resource, amount] of requested) {
      const limit = limitFor(scope, resource);
      if (limit === undefined) continue;
      const available = Math.max(0, limit - of.get(resource));
      if (amount > available + EPS) out.push({ resource, requested: amount, available, limit, scope });
    }
    return out;
  };
  const pipeline = check('pipeline', held.holder(request.holder));
  if (pipeline.length > 0) return { fits: false, reason: 'pipeline-cap', shortfalls: pipeline };
  const kind = check('kind', held.kind(request.kind));
  if (kind.length > 0) return { fits: false, reason: 'kind-cap', shortfalls: kind };
  const pool = check('pool', held.pool);
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

// --- Running usage ---------------------------------------------------------------------------------------------------

/**
 * Amounts on a grid of 2^-20 (whole numbers, halves, quarters...) add without rounding while a sum stays below 2^33
 * (2^53 steps of the grid): then a sum less a lease's amount is exactly the sum of the others, in any order. Any other
 * amount (0.1, 0.001) rounds, and the sum of floats depends on their order.
 */
const GRID = 2 ** 20;
const EXACT_BELOW = 2 ** 33;
const onGrid = (amount: number): boolean => amount >= 0 && Number.isInteger(amount * GRID);

interface RunningSum {
  /** The sum in the group's order, as ResourceSums gives it. */
  sum: number;
  /** Leases of the group naming the resource (a sum of 0 is still named). */
  count: number;
  /** Of them, those whose amount is off the grid. */
  offGrid: number;
}

/**
 * The resources of some leases summed as `breakdown` sums them (in the order they were added, the same rounding, the
 * same resources named in the same order), kept as leases come and go. Adding a lease adds its amounts: that is the
 * next step of the same sum. Taking one away subtracts its amounts while every amount is on the grid and the sum
 * small enough for that to be exact; otherwise the group sums its leases again, in order, when next read.
 */
class UsageGroup implements HeldAmounts {
  private readonly members = new Map<string, Resources>();
  private sums = new Map<string, RunningSum>();
  /** The lease that first names each resource (the resources' order is that of their first naming). */
  private first = new Map<string, string>();
  /** The sums must be summed again (a fraction was taken away). */
  private stale = false;
  /** The lease first naming a resource was taken away: the resources' order must be found again. */
  private reorder = false;

  get size(): number {
    return this.members.size;
  }

  add(leaseId: string, resources: Resources): void {
    this.members.set(leaseId, resources);
    for (const [resource, amount] of Object.entries(resources)) {
      let s = this.sums.get(resource);
      if (!s) {
        this.sums.set(resource, (s = { sum: 0, count: 0, offGrid: 0 }));
        this.first.set(resource, leaseId);
      }
      s.sum = snap(s.sum + amount);
      s.count++;
      if (!onGrid(amount)) s.offGrid++;
    }
  }

  remove(leaseId: string): void {
    const resources = this.members.get(leaseId);
    if (!resources) return;
    this.members.delete(leaseId);
    for (const [resource, amount] of Object.entries(resources)) {
      const s = this.sums.get(resource)!;
      const exact = !this.stale && s.offGrid === 0 && s.sum < EXACT_BELOW;
      s.count--;
      if (!onGrid(amount)) s.offGrid--;
      if (s.count === 0) {
        this.sums.delete(resource);
        this.first.delete(resource);
        continue;
      }
      if (exact) s.sum = snap(s.sum - amount);
      else this.stale = true;
      if (this.first.get(resource) === leaseId) this.reorder = true;
    }
  }

  get(resource: string): number {
    if (this.stale) this.resum();
    return this.sums.get(resource)?.sum ?? 0;
  }

  toJSON(): Resources {
    if (this.stale) this.resum();
    if (this.reorder) this.findOrder();
    return Object.fromEntries([...this.sums].map(([resource, s]) => [resource, s.sum]));
  }

  /** Sums every member again, in order: what `breakdown` does. */
  private resum(): void {
    const sums = new Map<string, RunningSum>();
    const first = new Map<string, string>();
    for (const [leaseId, resources] of this.members) {
      for (const [resource, amount] of Object.entries(resources)) {
        let s = sums.get(resource);
        if (!s) {
          sums.set(resource, (s = { sum: 0, count: 0, offGrid: 0 }));
          first.set(resource, leaseId);
        }
        s.sum = snap(s.sum + amount);
        s.count++;
        if (!onGrid(amount)) s.offGrid++;
      }
    }
    this.sums = sums;
    this.first = first;
    this.stale = false;
    this.reorder = false;
  }

  /** Puts the resources in the order their first members name them (usually the oldest member names them all). */
  private findOrder(): void {
    const order = new Map<string, RunningSum>();
    const first = new Map<string, string>();
    for (const [leaseId, resources] of this.members) {
      for (const resource of Object.keys(resources)) {
        if (order.has(resource)) continue;
        order.set(resource, this.sums.get(resource)!);
        first.set(resource, leaseId);
      }
      if (order.size === this.sums.size) break;
    }
    this.sums = order;
    this.first = first;
    this.reorder = false;
  }
}

/** A binary min-heap whose entries go stale instead of being removed: they are dropped when they reach the top. */
class LazyMinHeap<K extends number | string, T> {
  private items: { key: K; item: T }[] = [];

  constructor(private readonly live: (item: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  push(key: K, item: T): void {
    this.items.push({ key, item });
    this.up(this.items.length - 1);
  }

  /** The smallest live entry, dropping the stale ones above it. */
  peek(): { key: K; item: T } | undefined {
    while (this.items.length > 0 && !this.live(this.items[0]!.item)) this.pop();
    return this.items[0];
  }

  pop(): { key: K; item: T } | undefined {
    const top = this.items[0];
    const last = this.items.pop();
    if (top !== undefined && last !== undefined && this.items.length > 0) {
      this.items[0] = last;
      this.down(0);
    }
    return top;
  }

  /** Drops every stale entry when they outnumber `live` (so renewals do not grow it without bound). */
  compact(live: number): void {
    if (this.items.length <= 2 * live + 64) return;
    this.items = this.items.filter((e) => this.live(e.item));
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  private up(i: number): void {
    const items = this.items;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]!.key <= items[i]!.key) return;
      [items[parent], items[i]] = [items[i]!, items[parent]!];
      i = parent;
    }
  }

  private down(i: number): void {
    const items = this.items;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let least = i;
      if (l < items.length && items[l]!.key < items[least]!.key) least = l;
      if (r < items.length && items[r]!.key < items[least]!.key) least = r;
      if (least === i) return;
      [items[least], items[i]] = [items[i]!, items[least]!];
      i = least;
    }
  }
}

/**
 * A pool's leases by id, in the order a `Map` keeps them (a renewal keeps its place), with what every operation asks
 * of them kept as they change, so that none walks every lease: usage in all, per holder and per kind (exactly what
 * `breakdown` and `assess` compute from the list), the next expiry, the leases due, and the earliest expected release
 * per resource (exactly `earliestRelease`).
 */
export class LeaseBook implements HeldUsage {
  private readonly leases = new Map<string, QuotaLease>();
  /** Each lease's place: leases due expire in the book's order, as they did when the pool walked them all. */
  private readonly place = new Map<string, number>();
  private nextPlace = 0;
  private all = new UsageGroup();
  private readonly holders = new Map<string, UsageGroup>();
  private readonly kinds = new Map<PipelineKind, UsageGroup>();
  private readonly current = (lease: QuotaLease) => this.leases.get(lease.leaseId) === lease;
  /** Leases by expiry (ms); a renewed lease's old entry goes stale. */
  private readonly expiries = new LazyMinHeap<number, QuotaLease>(this.current);
  /** Per resource, leases holding some of it by expected end (ISO time: its expected release, else its expiry). */
  private readonly ends = new Map<string, LazyMinHeap<string, QuotaLease>>();

  constructor(leases: Iterable<QuotaLease> = []) {
    for (const lease of leases) this.set(lease.leaseId, lease);
  }

  get size(): number {
    return this.leases.size;
  }

  get(leaseId: string): QuotaLease | undefined {
    return this.leases.get(leaseId);
  }

  has(leaseId: string): boolean {
    return this.leases.has(leaseId);
  }

  values(): IterableIterator<QuotaLease> {
    return this.leases.values();
  }

  /** Adds a lease at the end, or replaces one in its place (a renewal), as `Map.set` does. */
  set(leaseId: string, lease: QuotaLease): this {
    const before = this.leases.get(leaseId);
    this.leases.set(leaseId, lease);
    if (before === undefined) {
      this.place.set(leaseId, this.nextPlace++);
      this.count(leaseId, lease);
    } else if (before.resources !== lease.resources || before.holder !== lease.holder || before.kind !== lease.kind) {
      // Not what the pool does (a renewal keeps them): the lease keeps its place, and every sum starts over.
      this.all = new UsageGroup();
      this.holders.clear();
      this.kinds.clear();
      for (const [id, l] of this.leases) this.count(id, l);
    }
    if (lease.expiresAt !== null) {
      this.expiries.push(expiryMs(lease), lease);
      this.expiries.compact(this.leases.size);
    }
    const end = lease.expectedReleaseAt ?? lease.expiresAt;
    if (end) {
      for (const [resource, amount] of Object.entries(lease.resources)) {
        if (!(amount > 0)) continue;
        let heap = this.ends.get(resource);
        if (!heap) this.ends.set(resource, (heap = new LazyMinHeap<string, QuotaLease>(this.current)));
        heap.push(end, lease);
        heap.compact(this.leases.size);
      }
    }
    return this;
  }

  delete(leaseId: string): boolean {
    const lease = this.leases.get(leaseId);
    if (!lease) return false;
    this.leases.delete(leaseId);
    this.place.delete(leaseId);
    this.forget(leaseId, lease);
    return true;
  }

  /** Sum of the resources of all leases: `breakdown(leases).used`, the same numbers in the same order. */
  used(): Resources {
    return this.all.toJSON();
  }

  /** Usage per kind (kinds in no particular order). */
  byKind(): Partial<Record<PipelineKind, Resources>> {
    return Object.fromEntries([...this.kinds].map(([kind, g]) => [kind, g.toJSON()]));
  }

  get pool(): HeldAmounts {
    return this.all;
  }

  holder(holder: string): HeldAmounts {
    return this.holders.get(holder) ?? NOTHING;
  }

  /** What `holder` holds now, per resource (empty when nothing). */
  heldBy(holder: string): Resources {
    return this.holders.get(holder)?.toJSON() ?? {};
  }

  kind(kind: PipelineKind): HeldAmounts {
    return this.kinds.get(kind) ?? NOTHING;
  }

  /** When the next lease expires (ms), if one ever does. */
  nextExpiryMs(): number | undefined {
    return this.expiries.peek()?.key;
  }

  /** The leases expired at `nowMs` (expiry at or before it), in the book's order. They stay until deleted. */
  expired(nowMs: number): QuotaLease[] {
    const due = new Set<QuotaLease>();
    for (let top = this.expiries.peek(); top !== undefined && top.key <= nowMs; top = this.expiries.peek()) {
      this.expiries.pop();
      due.add(top.item);
    }
    for (const lease of due) this.expiries.push(expiryMs(lease), lease);
    return [...due].sort((a, b) => this.place.get(a.leaseId)! - this.place.get(b.leaseId)!);
  }

  /** Earliest expected end of a lease holding one of `resources`: `earliestRelease(leases, resources)`. */
  earliestRelease(resources: readonly string[]): string | null {
    let best: string | null = null;
    for (const resource of new Set(resources)) {
      const at = this.ends.get(resource)?.peek()?.key;
      if (at !== undefined && (best === null || at < best)) best = at;
    }
    return best;
  }

  private count(leaseId: string, lease: QuotaLease): void {
    this.all.add(leaseId, lease.resources);
    for (const [groups, key] of [
      [this.holders, lease.holder],
      [this.kinds, lease.kind],
    ] as [Map<string, UsageGroup>, string][]) {
      let g = groups.get(key);
      if (!g) groups.set(key, (g = new UsageGroup()));
      g.add(leaseId, lease.resources);
    }
  }

  private forget(leaseId: string, lease: QuotaLease): void {
    this.all.remove(leaseId);
    for (const [groups, key] of [
      [this.holders, lease.holder],
      [this.kinds, lease.kind],
    ] as [Map<string, UsageGroup>, string][]) {
      const g = groups.get(key);
      g?.remove(leaseId);
      if (g?.size === 0) groups.delete(key);
    }
  }
}

const NOTHING: HeldAmounts = { get: () => 0 };

/**
 * The usage a pool's summary states (`poolStateQuery` with `summary` and `holder`): in all, per kind, and for the holder
 * it was asked about. {@link assess} answers the same on it as on the leases for that holder.
 */
export function summaryUsage(state: Pick<QuotaPoolState, 'used' | 'byKind' | 'byPipeline'>): HeldUsage {
  const amounts = (resources: Resources | undefined): HeldAmounts =>
    resources ? { get: (resource) => own(resources, resource) ?? 0 } : NOTHING;
  return {
    pool: amounts(state.used),
    holder: (holder) => amounts(own(state.byPipeline, holder)),
    kind: (kind) => amounts(own(state.byKind, kind)),
  };
}

/** Whether `run` is of `of`'s kind (and model family, when it names one): what a summary's `runsOf` keeps. */
export function runOf(run: QuotaRun, of: { kind: PipelineKind; family?: string | undefined }): boolean {
  return run.kind === of.kind && (of.family === undefined || run.profile?.family === of.family);
}

/** A lease's expiry in ms; one that cannot be read is due at once (as when the pool compared every lease's). */
const expiryMs = (lease: QuotaLease): number => {
  const ms = Date.parse(lease.expiresAt ?? '');
  return Number.isNaN(ms) ? -Infinity : ms;
};

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

/** The first `limit` of `leases` to expire, soonest first (leases that never expire last, then by lease id). */
export function soonestToExpire(leases: readonly QuotaLease[], limit: number): QuotaLease[] {
  const at = (l: QuotaLease) => (l.expiresAt === null ? Infinity : Date.parse(l.expiresAt));
  return [...leases]
    .sort((a, b) => at(a) - at(b) || (a.leaseId < b.leaseId ? -1 : a.leaseId > b.leaseId ? 1 : 0))
    .slice(0, limit);
}
