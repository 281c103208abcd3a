import { describe, expect, it } from 'vitest';
import { assess, breakdown, earliestRelease, LeaseBook, ResourceSums } from '../../src/domain/quota';
import { QuotaPoolConfig, type PipelineKind, type QuotaLease, type Resources } from '../../src/shared/quota';

/** A small deterministic PRNG (mulberry32): the same sequences on every run. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  return { next, pick };
}

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

function lease(
  leaseId: string,
  resources: Resources,
  holder: string,
  kind: PipelineKind,
  expiresAt: string | null,
  expectedReleaseAt?: string,
): QuotaLease {
  return {
    leaseId,
    holder,
    kind,
    resources,
    grantedAt: iso(T0),
    renewedAt: iso(T0),
    expiresAt,
    ttlMs: expiresAt === null ? null : 600_000,
    ...(expectedReleaseAt ? { expectedReleaseAt } : {}),
    waitedMs: 0,
  };
}

const POOL = QuotaPoolConfig.parse({
  name: 'shared',
  capacity: { cpu: 40, memoryGiB: 200, 'gpu:t4': 6, 'gpu:a100': 3 },
  caps: { perPipeline: { 'gpu:*': 0.5, cpu: 0.4 }, perKind: { experiment: 0.3, data: { memoryGiB: 0.2 } } },
});

const KINDS: PipelineKind[] = ['training', 'serving', 'validation', 'data', 'experiment'];
const RESOURCES = ['cpu', 'memoryGiB', 'gpu:t4', 'gpu:a100', 'tpu:v5e'];

/** The sum `assess` and `breakdown` make of some leases, in their order. */
function sumOf(leases: QuotaLease[]): ResourceSums {
  const sums = new ResourceSums();
  for (const l of leases) sums.add(l.resources);
  return sums;
}

/**
 * Random grants, renewals, releases and expiries on a LeaseBook and on a plain Map side by side; after every step the
 * book must answer exactly what the functions over the Map's leases answer.
 */
function simulate(seed: number, steps: number, amounts: readonly number[]) {
  const r = rng(seed);
  const book = new LeaseBook();
  const map = new Map<string, QuotaLease>();
  let nextId = 0;
  let now = T0;
  const holders = ['a', 'b', 'c', 'd', 'e', 'f'];
  const resourcesOf = (): Resources => {
    const out: Resources = {};
    // Random resources in a random order (the order `breakdown` names them in is the order of first naming).
    const names = [...RESOURCES].sort(() => r.next() - 0.5).slice(0, 1 + Math.floor(r.next() * 3));
    for (const name of names) out[name] = r.next() < 0.08 ? 0 : r.pick(amounts);
    return out;
  };
  const check = () => {
    const leases = [...map.values()];
    expect([...book.values()]).toEqual(leases);
    expect(book.size).toBe(map.size);
    const want = breakdown(leases);
    // Same numbers, same resources, same order: the journal's `used` is the same JSON.
    expect(JSON.stringify(book.used())).toBe(JSON.stringify(want.used));
    for (const resource of RESOURCES) {
      expect(Object.is(book.pool.get(resource), sumOf(leases).get(resource))).toBe(true);
      for (const h of holders)
        expect(book.holder(h).get(resource)).toBe(sumOf(leases.filter((l) => l.holder === h)).get(resource));
      for (const k of KINDS)
        expect(book.kind(k).get(resource)).toBe(sumOf(leases.filter((l) => l.kind === k)).get(resource));
    }
    expect(book.byKind()).toEqual(want.byKind);
    for (let i = 0; i < 3; i++) {
      const request = { holder: r.pick(holders), kind: r.pick(KINDS), resources: resourcesOf() };
      const blocked = new Set(r.next() < 0.2 ? [r.pick(RESOURCES)] : []);
      expect(assess(POOL, book, request, blocked)).toEqual(assess(POOL, leases, request, blocked));
      const asked = RESOURCES.filter(() => r.next() < 0.5);
      expect(book.earliestRelease(asked)).toBe(earliestRelease(leases, asked));
    }
    const expiries = leases.filter((l) => l.expiresAt !== null).map((l) => Date.parse(l.expiresAt!));
    expect(book.nextExpiryMs()).toBe(expiries.length ? Math.min(...expiries) : undefined);
    const probe = now + Math.floor(r.next() * 20) * 60_000;
    expect(book.expired(probe)).toEqual(leases.filter((l) => l.expiresAt !== null && Date.parse(l.expiresAt) <= probe));
  };

  for (let step = 0; step < steps; step++) {
    const roll = r.next();
    now += Math.floor(r.next() * 90_000);
    const held = [...map.keys()];
    if (roll < 0.45 || held.length === 0) {
      // A new lease, or now and then an id released before (granted again: the end of the order).
      const id = r.next() < 0.1 && nextId > 0 ? `l${Math.floor(r.next() * nextId)}` : `l${nextId++}`;
      if (map.has(id)) continue;
      const ttl = r.next() < 0.1 ? null : now + Math.floor(r.next() * 15) * 60_000;
      const expected = r.next() < 0.3 ? iso(now + Math.floor(r.next() * 30) * 60_000) : undefined;
      const l = lease(id, resourcesOf(), r.pick(holders), r.pick(KINDS), ttl === null ? null : iso(ttl), expected);
      map.set(id, l);
      book.set(id, l);
    } else if (roll < 0.6) {
      // A renewal: a new object in the same place.
      const id = r.pick(held);
      const renewed = { ...map.get(id)!, expiresAt: iso(now + 600_000), renewedAt: iso(now) };
      map.set(id, renewed);
      book.set(id, renewed);
    } else if (roll < 0.9) {
      const id = r.pick(held);
      map.delete(id);
      expect(book.delete(id)).toBe(true);
    } else {
      // Expiry as the pool does it: every lease due, in order.
      for (const l of book.expired(now)) {
        map.delete(l.leaseId);
        book.delete(l.leaseId);
      }
    }
    check();
  }
  return { book, map };
}

describe('LeaseBook', () => {
  it('keeps the same usage, assessments, expiries and releases as walking the leases (whole amounts)', () => {
    for (const seed of [1, 2, 3]) simulate(seed, 400, [1, 2, 4, 8, 16, 0.5, 0.25, 1.5, 1e9, 1e12]);
  });

  it('keeps exactly the same sums as breakdown with fractions that round (0.1, 0.001, 1/3)', () => {
    for (const seed of [4, 5, 6, 7]) simulate(seed, 400, [0.1, 0.2, 0.3, 0.7, 0.001, 0.003, 1 / 3, 1, 2.5, 1e11]);
  });

  it('sums again, in order, when taking away a fraction would round differently', () => {
    const leases = [
      lease('a', { cpu: 0.1 }, 'p', 'training', null),
      lease('b', { cpu: 0.2 }, 'p', 'training', null),
      lease('c', { cpu: 0.3 }, 'p', 'training', null),
    ];
    const book = new LeaseBook(leases);
    expect(book.used()).toEqual(breakdown(leases).used);
    book.delete('a');
    // Subtracting would give 0.6000000000000001 - 0.1 = 0.5000000000000001; the list sums to 0.5.
    expect(breakdown(leases.slice(1)).used.cpu).toBe(0.5);
    expect(book.used().cpu).toBe(0.5);
    expect(book.holder('p').get('cpu')).toBe(0.5);
  });

  it('names the resources in the order the remaining leases first name them', () => {
    const a = lease('a', { cpu: 1, 'gpu:t4': 1 }, 'p', 'training', null);
    const b = lease('b', { memoryGiB: 4, 'gpu:t4': 1, cpu: 2 }, 'q', 'serving', null);
    const book = new LeaseBook([a, b]);
    expect(Object.keys(book.used())).toEqual(['cpu', 'gpu:t4', 'memoryGiB']);
    book.delete('a');
    expect(Object.keys(book.used())).toEqual(Object.keys(breakdown([b]).used));
    expect(Object.keys(book.used())).toEqual(['memoryGiB', 'gpu:t4', 'cpu']);
    book.delete('b');
    expect(book.used()).toEqual({});
    expect(book.holder('q').get('cpu')).toBe(0);
  });

  it('keeps a sum of amounts that are all 0 (the resource stays named)', () => {
    const book = new LeaseBook([lease('a', { cpu: 1, 'gpu:t4': 0 }, 'p', 'training', null)]);
    expect(JSON.stringify(book.used())).toBe('{"cpu":1,"gpu:t4":0}');
  });

  it('lists the leases due in their order, whatever their expiry, and keeps them until they are deleted', () => {
    const book = new LeaseBook([
      lease('late', { cpu: 1 }, 'p', 'training', iso(T0 + 5_000)),
      lease('never', { cpu: 1 }, 'p', 'training', null),
      lease('early', { cpu: 1 }, 'p', 'training', iso(T0 + 1_000)),
    ]);
    expect(book.nextExpiryMs()).toBe(T0 + 1_000);
    expect(book.expired(T0 + 5_000).map((l) => l.leaseId)).toEqual(['late', 'early']);
    expect(book.expired(T0 + 5_000).map((l) => l.leaseId)).toEqual(['late', 'early']);
    book.delete('early');
    expect(book.nextExpiryMs()).toBe(T0 + 5_000);
    // A renewal moves the expiry; the old one no longer counts.
    book.set('late', { ...book.get('late')!, expiresAt: iso(T0 + 60_000) });
    expect(book.expired(T0 + 5_000)).toEqual([]);
    expect(book.nextExpiryMs()).toBe(T0 + 60_000);
  });

  it('stays bounded when leases are renewed again and again', () => {
    const l = lease('a', { cpu: 1 }, 'p', 'training', iso(T0), iso(T0 + 1));
    const book = new LeaseBook([l]);
    for (let i = 1; i <= 10_000; i++) book.set('a', { ...l, expiresAt: iso(T0 + i) });
    const heaps = book as unknown as {
      expiries: { size: number };
      ends: Map<string, { size: number }>;
    };
    expect(heaps.expiries.size).toBeLessThan(200);
    expect(heaps.ends.get('cpu')!.size).toBeLessThan(200);
    expect(book.nextExpiryMs()).toBe(T0 + 10_000);
    expect(book.earliestRelease(['cpu'])).toBe(iso(T0 + 1));
  });

  it('answers as the list does when a lease is replaced with other resources (not what a pool does)', () => {
    const a = lease('a', { cpu: 1 }, 'p', 'training', null);
    const b = lease('b', { cpu: 2, memoryGiB: 1 }, 'q', 'data', null);
    const book = new LeaseBook([a, b]);
    const a2 = { ...a, resources: { memoryGiB: 3, cpu: 0.1 }, holder: 'q' };
    book.set('a', a2);
    expect([...book.values()]).toEqual([a2, b]);
    expect(JSON.stringify(book.used())).toBe(JSON.stringify(breakdown([a2, b]).used));
    expect(book.holder('p').get('cpu')).toBe(0);
    expect(book.holder('q').get('cpu')).toBe(sumOf([a2, b]).get('cpu'));
  });
});
