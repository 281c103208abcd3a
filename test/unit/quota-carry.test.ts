import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CarryError,
  fitCarried,
  isPacked,
  jsonBytes,
  packCarried,
  unpackCarried,
  utf8Bytes,
  type CarriedState,
} from '../../src/domain/quota-carry';
import type { QuotaJournalEntry, QuotaLease, QuotaRun, QuotaWaiting } from '../../src/shared/quota';

const T = Date.parse('2026-12-05T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const digest = (s: string) => createHash('sha256').update(s).digest('hex');
/** Through JSON, as a continue-as-new input travels. */
const wire = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
const roundTrip = (state: CarriedState, t0 = T + 60_000) => unpackCarried(wire(packCarried(state, t0)));

/** A lease as the pool makes one, its keys in the pool's order. */
const lease = (i: number, over: Partial<QuotaLease> = {}): QuotaLease => {
  const granted = T + Math.floor(i / 3) * 1000;
  const l: QuotaLease = {
    leaseId: `job-${String(i).padStart(5, '0')}`,
    holder: `pipeline-${i % 4}`,
    kind: 'training',
    resources: { cpu: 1 },
    grantedAt: iso(granted),
    renewedAt: iso(granted + (i % 2) * 500),
    expiresAt: iso(granted + (i % 2) * 500 + 600_000),
    ttlMs: 600_000,
    waitedMs: 0,
    ...over,
  };
  const { expectedReleaseAt, profile, waitedMs, ...rest } = l;
  return {
    ...rest,
    ...(expectedReleaseAt !== undefined ? { expectedReleaseAt } : {}),
    ...(profile !== undefined ? { profile } : {}),
    waitedMs,
  };
};

const empty = (): CarriedState => ({
  leases: [],
  waiting: [],
  timedOut: [],
  journal: [],
  runs: [],
  samples: [],
  capRefusals: [],
  stats: {},
  owners: [],
  nonces: [],
});

/** A state with every kind of row and every optional field, some of them in unusual forms. */
function fullState(names: { holder: string; resource: string; leaseId: string }): CarriedState {
  const profile = { model: 'churn', family: 'tree-ensemble', datasetRows: 1000, device: 'cpu-4', estimatedMs: 12 };
  const leases: QuotaLease[] = [
    lease(0),
    lease(1, { holder: names.holder, resources: { [names.resource]: 2, cpu: 0.5 } }),
    lease(2, { leaseId: names.leaseId, ttlMs: null, expiresAt: null, profile }),
    lease(3, { expectedReleaseAt: iso(T + 3_600_000), waitedMs: 1234, kind: 'serving' }),
    // Not what the pool derives: kept as they are.
    lease(4, { expiresAt: iso(T + 5), renewedAt: '2026-12-05T10:00:00Z' }),
    lease(5, { grantedAt: 'not a time', expectedReleaseAt: iso(T - 10) }),
    lease(6, { expiresAt: null }),
  ];
  const waiting: QuotaWaiting[] = [
    {
      leaseId: 'waiter',
      holder: names.holder,
      kind: 'data',
      resources: { memoryGiB: 4 },
      priority: 5,
      enqueuedAt: iso(T + 100),
      deadline: iso(T + 60_100),
      ttlMs: null,
      expectedDurationMs: 3_600_000,
      profile,
      notify: { workflowId: `lifecycle-${names.holder}` },
    },
    {
      leaseId: 'plain-waiter',
      holder: 'w',
      kind: 'experiment',
      resources: { cpu: 1 },
      priority: -3,
      enqueuedAt: iso(T + 200),
      deadline: iso(T + 200),
    },
    {
      leaseId: 'ttl-waiter',
      holder: 'w',
      kind: 'validation',
      resources: { cpu: 1 },
      priority: 0,
      enqueuedAt: iso(T + 300),
      deadline: iso(T + 900),
      ttlMs: 5000,
    },
  ];
  const journal: QuotaJournalEntry[] = [
    { at: iso(T), op: 'configure', used: {} },
    { at: iso(T), op: 'grant', leaseId: 'job-00000', holder: 'pipeline-0', resources: { cpu: 1 }, used: { cpu: 1 } },
    { at: iso(T + 1), op: 'refuse', leaseId: 'x', holder: names.holder, resources: { cpu: 9 }, reason: 'capacity' },
    { at: iso(T + 2), op: 'refuse', leaseId: 'y', holder: 'h', resources: { cpu: 1 }, reason: 'pool-full' },
    {
      at: iso(T + 3),
      op: 'release',
      leaseId: 'z',
      holder: 'h',
      resources: { cpu: 1 },
      by: 'ops',
      keyId: 'ops-1',
      used: { cpu: 0 },
    },
    { at: iso(T + 4), op: 'renew', leaseId: 'z', holder: 'h', by: names.holder },
  ];
  const runs: QuotaRun[] = [
    {
      leaseId: 'r1',
      holder: names.holder,
      kind: 'training',
      resources: { cpu: 2 },
      grantedAt: iso(T - 5000),
      endedAt: iso(T),
      heldMs: 5000,
      ended: 'released',
      profile,
      usage: { peakMemoryGiB: 1.5, avgCpuCores: 0.7, durationMs: 4000 },
      releasedBy: 'ops',
      keyId: 'ops-1',
    },
    {
      leaseId: 'r2',
      holder: 'h',
      kind: 'data',
      resources: { cpu: 1 },
      grantedAt: iso(T - 10),
      endedAt: iso(T + 50),
      heldMs: 7,
      ended: 'expired',
    },
  ];
  return {
    leases,
    waiting,
    timedOut: [
      [
        'late',
        {
          granted: false,
          reason: 'wait-timeout',
          shortfalls: [{ resource: 'cpu', requested: 2, available: 1, limit: 4, scope: 'pool' }],
          earliestRelease: null,
          message: 'pool "p": still not granted',
        },
      ],
    ],
    journal,
    runs,
    samples: [
      { atMs: T, used: {} },
      { atMs: T + 5, used: { cpu: 1 } },
      { atMs: T + 5.5, used: { [names.resource]: 2 } },
    ],
    capRefusals: [[names.holder, [T - 100, T - 50]]],
    stats: { grants: 7, refusals: 2, releases: 1, expirations: 1, continuedAsNew: 3 },
    owners: [
      ['job-00000', digest('a')],
      [names.leaseId, digest('b')],
      ['waiter', digest('c')],
      // Not of a lease or a waiter, and not a hex digest: kept all the same.
      ['gone', digest('d')],
      ['job-00003', 'NOT-HEX'],
    ],
    nonces: ['n1', 'n2'],
  };
}

describe('the packed state a quota pool carries across continue-as-new', () => {
  it('gives back exactly what was packed, field for field and in the same order', () => {
    const state = fullState({ holder: 'churn/v7 (staging)', resource: 'gpu:t4', leaseId: 'serve:churn:v7' });
    const back = roundTrip(state);
    expect(back).toEqual(state);
    // Same keys in the same order too: a query answers the same JSON before and after.
    expect(JSON.stringify(back)).toBe(JSON.stringify(state));
    // Owners as the pool reads them, a Map.
    expect(new Map(back.owners)).toEqual(new Map(state.owners));
  });

  it('keeps hostile names as plain values: __proto__, constructor, toString, unicode', () => {
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'ünïcødé 🚀 名前', '']) {
      const state = fullState({ holder: name || 'h', resource: name || 'r', leaseId: `${name}🚀x` });
      const back = roundTrip(state);
      expect(back).toEqual(state);
      expect(JSON.stringify(back)).toBe(JSON.stringify(state));
      const resources = back.leases[1]!.resources;
      expect(Object.getPrototypeOf(resources)).toBe(Object.prototype);
      expect(Object.hasOwn(resources, name || 'r')).toBe(true);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('never splits a surrogate pair when it front-codes lease ids', () => {
    const state = { ...empty(), leases: [lease(0, { leaseId: 'a🚀b' }), lease(1, { leaseId: 'a🚁c' })] };
    expect(roundTrip(state)).toEqual(state);
  });

  it('carries 10,000 leases as the bench makes them in well under 1 MiB, about 66 bytes each', () => {
    const state = empty();
    for (let i = 0; i < 10_000; i++) {
      const l = lease(i, { holder: `pipeline-${i % 500}`, ttlMs: 7_200_000 });
      l.expiresAt = iso(Date.parse(l.renewedAt) + 7_200_000);
      state.leases.push(l);
      state.owners.push([l.leaseId, digest(l.leaseId)]);
    }
    const packed = jsonBytes(packCarried(state, T));
    const plain = jsonBytes(state);
    expect(roundTrip(state)).toEqual(state);
    expect(packed / 10_000).toBeLessThan(75);
    expect(plain / packed).toBeGreaterThan(4);
  });

  it('refuses a corrupted state with one error naming where', () => {
    const state = fullState({ holder: 'h', resource: 'cpu', leaseId: 'l' });
    const packed = () => wire(packCarried(state, T)) as unknown as Record<string, Record<string, unknown>>;
    const refusal = (mutate: (p: Record<string, Record<string, unknown>>) => void): string => {
      const p = packed();
      mutate(p);
      try {
        unpackCarried(p);
      } catch (err) {
        expect(err).toBeInstanceOf(CarryError);
        return (err as Error).message;
      }
      return 'accepted';
    };
    expect(refusal((p) => (p.v = 2 as never))).toMatch(/^carried state: v: version 2, this worker reads 1$/);
    expect(refusal((p) => delete p.leases)).toBe('carried state: leases: missing');
    expect(refusal((p) => (p.leases!.holder as number[]).splice(0, 1))).toMatch(/leases\.holder: 6 rows, not 7/);
    expect(refusal((p) => ((p.leases!.holder as number[])[2] = 999))).toMatch(/leases\.holder\[2\]: not one of the/);
    expect(refusal((p) => ((p.leases!.holder as unknown[])[2] = '1'))).toMatch(/leases\.holder\[2\]/);
    expect(refusal((p) => ((p.leases!.grantedAt as unknown[])[0] = 1.5))).toMatch(/leases\.grantedAt\[0\]: not a time/);
    expect(refusal((p) => ((p.leases!.grantedAt as unknown[])[0] = 9e15))).toMatch(/out of range/);
    expect(refusal((p) => ((p.journal!.op as unknown[])[0] = 0))).toMatch(/journal\.op\[0\]: ".*" is none of/);
    expect(refusal((p) => ((p.owners as Record<string, unknown>).digests = 'abc'))).toMatch(/owners\.digests: not 3/);
    expect(refusal((p) => ((p as Record<string, unknown>).vectors = [[0, 'x']]))).toMatch(/vectors\[0\]\[1\]/);
    expect(refusal((p) => (p.stats!.grants = -1))).toMatch(/stats\.grants: not a count/);
    expect(refusal((p) => ((p as Record<string, unknown>).timedOut = [['x', { granted: true }]]))).toMatch(/timedOut/);
    expect(() => unpackCarried(null)).toThrow(CarryError);
    expect(() => unpackCarried([])).toThrow(CarryError);
  });

  it('tells the packed form from the plain one, whose parts a worker from before would refuse', () => {
    const packed = wire(packCarried(empty(), T));
    expect(isPacked(packed)).toBe(true);
    expect(isPacked(empty())).toBe(false);
    // An older worker maps over `leases` and pushes to `journal`: on objects both throw, so its task fails and is
    // retried until a worker that reads the packed form takes it, instead of starting the pool empty.
    expect(Array.isArray(packed.leases)).toBe(false);
    expect(Array.isArray(packed.journal)).toBe(false);
  });

  it('drops the oldest history, never a lease, owner or nonce, to fit a budget', () => {
    const state = empty();
    for (let i = 0; i < 200; i++) {
      state.leases.push(lease(i));
      state.owners.push([lease(i).leaseId, digest(String(i))]);
    }
    state.nonces = ['n'];
    for (let i = 0; i < 1000; i++)
      state.journal.push({ at: iso(T + i), op: 'grant', leaseId: `j${i}`, holder: 'h', used: { cpu: i } });
    for (let i = 0; i < 500; i++)
      state.runs.push({
        leaseId: `r${i}`,
        holder: `h${i}`,
        kind: 'data',
        resources: { cpu: 1 },
        grantedAt: iso(T),
        endedAt: iso(T + i),
        heldMs: i,
        ended: 'released',
      });
    for (let i = 0; i < 2000; i++) state.samples.push({ atMs: T + i, used: { cpu: i % 300 } });
    const measure = (p: unknown) => jsonBytes({ config: { name: 'p' }, carried: p });
    const whole = measure(packCarried(state, T));
    const budget = Math.floor(whole * 0.7);
    const fit = fitCarried(state, T, budget, measure);
    expect(fit.before).toBe(whole);
    expect(fit.bytes).toBeLessThanOrEqual(budget);
    expect(fit.over).toBe(false);
    const back = unpackCarried(wire(fit.packed));
    expect(back.leases).toEqual(state.leases);
    expect(back.owners).toEqual(state.owners);
    expect(back.nonces).toEqual(state.nonces);
    // The newest entries of each part are kept; the oldest went.
    expect(fit.dropped.journal).toBeGreaterThan(0);
    expect(back.journal).toEqual(state.journal.slice(fit.dropped.journal));
    expect(back.runs).toEqual(state.runs.slice(fit.dropped.runs ?? 0));
    expect(back.samples).toEqual(state.samples.slice(fit.dropped.samples ?? 0));
    // Under budget already: nothing dropped.
    expect(fitCarried(state, T, whole, measure).dropped).toEqual({});
    // A budget the leases alone pass: all history goes, the leases stay, and it says it is over.
    const tight = fitCarried(state, T, 1000, measure);
    expect(tight.over).toBe(true);
    expect(unpackCarried(wire(tight.packed)).leases).toEqual(state.leases);
    expect(tight.dropped).toMatchObject({ journal: 1000, runs: 500, samples: 2000 });
  });

  it('counts UTF-8 bytes as a payload weighs them', () => {
    for (const s of ['', 'abc', 'ünï', '名前', '🚀', 'a\uD800b'])
      expect(utf8Bytes(s)).toBe(new TextEncoder().encode(s).length);
  });
});
