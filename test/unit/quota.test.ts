import { describe, expect, it } from 'vitest';
import {
  assess,
  breakdown,
  capShare,
  checkCapacity,
  describeRefusal,
  earliestRelease,
  estimateFromRuns,
  estimateServing,
  faultyPipelines,
  poolAlerts,
  resourceUsage,
  soonestToExpire,
  usedResources,
  type UsageSample,
} from '../../src/domain/quota';
import { checkPool } from '../../src/client/quota-planning';
import { describeIssues } from '../../src/shared/spec';
import {
  QuotaPoolConfig,
  QuotaPoolsFile,
  ReserveQuotaInput,
  type PipelineKind,
  type QuotaLease,
  type QuotaPoolState,
  type QuotaRun,
  type Resources,
} from '../../src/shared/quota';

function lease(leaseId: string, resources: Resources, holder = `lc-${leaseId}`, kind: PipelineKind = 'training') {
  return {
    leaseId,
    holder,
    kind,
    resources,
    grantedAt: '2025-01-01T00:00:00.000Z',
    renewedAt: '2025-01-01T00:00:00.000Z',
    expiresAt: '2025-01-01T00:10:00.000Z',
    ttlMs: 600_000,
    waitedMs: 0,
  } satisfies QuotaLease;
}

const POOL = QuotaPoolConfig.parse({
  name: 'shared',
  capacity: { cpu: 16, memoryGiB: 64, 'gpu:t4': 2, 'gpu:a100': 4 },
  caps: { perPipeline: { 'gpu:*': 0.5 }, perKind: { experiment: 0.3 } },
});
const req = (resources: Resources, holder = 'p', kind: PipelineKind = 'training') => ({ holder, kind, resources });

describe('usedResources', () => {
  it('sums every resource over all leases', () => {
    const leases = [
      lease('a', { cpu: 4, memoryGiB: 16 }),
      lease('b', { cpu: 2, memoryGiB: 8, 'gpu:t4': 1 }),
      lease('c', { cpu: 0.5 }),
    ];
    expect(usedResources(leases)).toEqual({ cpu: 6.5, memoryGiB: 24, 'gpu:t4': 1 });
    expect(usedResources([])).toEqual({});
  });
});

describe('capShare', () => {
  it('applies a number to every resource and a pattern to every type of a family', () => {
    expect(capShare(0.3, 'cpu')).toBe(0.3);
    expect(capShare({ 'gpu:*': 0.5 }, 'gpu:t4')).toBe(0.5);
    expect(capShare({ 'gpu:*': 0.5, 'gpu:t4': 1 }, 'gpu:t4')).toBe(1);
    expect(capShare({ 'gpu:*': 0.5 }, 'cpu')).toBeUndefined();
    expect(capShare(undefined, 'cpu')).toBeUndefined();
  });
});

describe('assess', () => {
  it('grants what fits in capacity and caps', () => {
    expect(assess(POOL, [lease('a', { cpu: 8 })], req({ cpu: 8, memoryGiB: 64 }))).toEqual({
      fits: true,
      shortfalls: [],
    });
  });

  it('refuses for capacity naming every short resource with what is left', () => {
    const a = assess(POOL, [lease('a', { cpu: 12, memoryGiB: 60 })], req({ cpu: 6, memoryGiB: 8 }));
    expect(a.reason).toBe('capacity');
    expect(a.shortfalls).toEqual([
      { resource: 'cpu', requested: 6, available: 4, limit: 16, scope: 'pool' },
      { resource: 'memoryGiB', requested: 8, available: 4, limit: 64, scope: 'pool' },
    ]);
  });

  it('holds one pipeline to half of a GPU type however many leases it asks for', () => {
    const held = [lease('a', { 'gpu:a100': 2 }, 'greedy')];
    const a = assess(POOL, held, req({ 'gpu:a100': 1 }, 'greedy'));
    expect(a.reason).toBe('pipeline-cap');
    expect(a.shortfalls[0]).toMatchObject({ resource: 'gpu:a100', available: 0, limit: 2, scope: 'pipeline' });
    // Another pipeline still gets the rest.
    expect(assess(POOL, held, req({ 'gpu:a100': 2 }, 'other')).fits).toBe(true);
  });

  it('holds all experiments together to 30% of every resource', () => {
    const held = [lease('e1', { cpu: 4 }, 'exp-1', 'experiment')];
    const a = assess(POOL, held, req({ cpu: 1 }, 'exp-2', 'experiment'));
    expect(a.reason).toBe('kind-cap');
    expect(a.shortfalls[0]).toMatchObject({ resource: 'cpu', requested: 1, scope: 'kind' });
    expect(a.shortfalls[0]!.limit).toBeCloseTo(4.8);
    expect(assess(POOL, held, req({ cpu: 1 }, 'train-1', 'training')).fits).toBe(true);
  });

  it('says a request can never fit when it exceeds capacity, a cap, or names a resource the pool lacks', () => {
    expect(assess(POOL, [], req({ cpu: 17 })).reason).toBe('never-fits');
    expect(assess(POOL, [], req({ 'gpu:a100': 3 })).reason).toBe('never-fits');
    expect(assess(POOL, [], req({ cpu: 5 }, 'x', 'experiment')).reason).toBe('never-fits');
    const lacking = assess(POOL, [], req({ cpu: 1, 'tpu:v5e': 1 }));
    expect(lacking).toMatchObject({ reason: 'never-fits', shortfalls: [{ resource: 'tpu:v5e', limit: 0 }] });
  });

  it('keeps resources promised to reservations waiting ahead', () => {
    const a = assess(POOL, [], req({ cpu: 1, 'gpu:t4': 1 }), new Set(['gpu:t4']));
    expect(a).toMatchObject({ fits: false, reason: 'queued-ahead', shortfalls: [{ resource: 'gpu:t4' }] });
    expect(assess(POOL, [], req({ cpu: 1 }), new Set(['gpu:t4'])).fits).toBe(true);
  });

  it('does not refuse a fractional request over float rounding, but refuses one really over', () => {
    const pool = QuotaPoolConfig.parse({ name: 'f', capacity: { cpu: 0.3 } });
    expect(0.3 - 0.1 < 0.2).toBe(true);
    expect(assess(pool, [lease('a', { cpu: 0.1 })], req({ cpu: 0.2 })).fits).toBe(true);
    expect(assess(pool, [lease('a', { cpu: 0.1 })], req({ cpu: 0.21 })).reason).toBe('capacity');
  });

  it('ignores zero amounts and refuses everything while capacity is lowered below what is held', () => {
    expect(assess(POOL, [], req({ cpu: 1, 'tpu:v5e': 0 })).fits).toBe(true);
    const lowered = QuotaPoolConfig.parse({ name: 'l', capacity: { cpu: 4 } });
    expect(assess(lowered, [lease('a', { cpu: 6 })], req({ cpu: 1 })).shortfalls[0]).toMatchObject({ available: 0 });
  });
});

describe('describeRefusal and earliestRelease', () => {
  it('names the pool, the reason and each shortfall with its numbers and the limit that applies', () => {
    const a = assess(POOL, [lease('a', { cpu: 12 })], req({ cpu: 6 }));
    expect(describeRefusal('shared', a.reason!, a.shortfalls)).toBe(
      'pool "shared" cannot grant: not enough free capacity: cpu needs 6, 4 of 16 (capacity)',
    );
  });

  it('is the earliest expected release (else expiry) among leases holding a short resource', () => {
    const a = { ...lease('a', { cpu: 4 }), expiresAt: '2025-01-01T01:00:00.000Z' };
    const b = { ...lease('b', { cpu: 4 }), expectedReleaseAt: '2025-01-01T00:30:00.000Z' };
    const c = { ...lease('c', { memoryGiB: 4 }), expiresAt: '2025-01-01T00:01:00.000Z' };
    expect(earliestRelease([a, b, c], ['cpu'])).toBe('2025-01-01T00:30:00.000Z');
    expect(earliestRelease([a, b, c], ['gpu:t4'])).toBeNull();
  });
});

describe('resourceUsage', () => {
  const t0 = Date.parse('2025-01-01T00:00:00.000Z');
  it('measures the burn rate over the window and forecasts exhaustion', () => {
    const samples = [
      { atMs: t0, used: { cpu: 2 } },
      { atMs: t0 + 10 * 60_000, used: { cpu: 6 } },
    ];
    const [cpu] = resourceUsage({ cpu: 16 }, { cpu: 6 }, samples, t0 + 15 * 60_000, 15 * 60_000);
    // 2 → 6 cpu in the 15-minute window: 16 cpu/hour; 10 free: exhausted in 37.5 minutes.
    expect(cpu).toMatchObject({ resource: 'cpu', capacity: 16, used: 6, share: 0.375, burnPerHour: 16 });
    expect(cpu!.exhaustedAt).toBe(new Date(t0 + 15 * 60_000 + 37.5 * 60_000).toISOString());
  });

  it('reads one lease granted just after the pool started as a step over the window, not a steep climb', () => {
    const samples: UsageSample[] = [
      { atMs: t0, used: {} },
      { atMs: t0 + 60_000, used: { cpu: 1 } },
    ];
    const [cpu] = resourceUsage({ cpu: 32 }, { cpu: 1 }, samples, t0 + 90_000, 15 * 60_000);
    // 1 cpu over the 15-minute window: 4 cpu/hour, 31 free: runs out in 7.75 hours, far beyond a 1-hour horizon.
    expect(cpu!.burnPerHour).toBe(4);
    expect(Date.parse(cpu!.exhaustedAt!) - (t0 + 90_000)).toBe(7.75 * 3_600_000);
    expect(poolAlerts(POOL, [{ ...cpu!, capacity: 32 }], [], new Map(), t0 + 90_000)).toEqual([]);
  });

  it('has no exhaustion time when usage is flat or falling', () => {
    const samples = [{ atMs: t0, used: { cpu: 8 } }];
    const [cpu] = resourceUsage({ cpu: 16 }, { cpu: 4 }, samples, t0 + 60 * 60_000, 15 * 60_000);
    expect(cpu!.burnPerHour).toBeLessThanOrEqual(0);
    expect(cpu!.exhaustedAt).toBeNull();
  });
});

describe('poolAlerts', () => {
  const now = Date.parse('2025-01-01T00:00:00.000Z');
  const usage = (share: number, burnPerHour = 0, exhaustedAt: string | null = null) => [
    { resource: 'cpu', capacity: 100, used: share * 100, share, burnPerHour, exhaustedAt },
  ];
  it('warns at 80% and is critical at 95%', () => {
    expect(poolAlerts(POOL, usage(0.79), [], new Map(), now)).toEqual([]);
    expect(poolAlerts(POOL, usage(0.8), [], new Map(), now)[0]).toMatchObject({
      kind: 'quota-usage-high',
      severity: 'warning',
      key: 'quota:shared:cpu:usage',
    });
    expect(poolAlerts(POOL, usage(0.96), [], new Map(), now)[0]!.severity).toBe('critical');
  });

  it('keeps an open alert until usage falls 5 points below its threshold', () => {
    const open = poolAlerts(POOL, usage(0.82), [], new Map(), now)[0]!;
    const active = new Map([[open.key, { ...open, since: '' }]]);
    expect(poolAlerts(POOL, usage(0.77), [], active, now)).toHaveLength(1);
    expect(poolAlerts(POOL, usage(0.74), [], active, now)).toHaveLength(0);
  });

  it('forecasts exhaustion within the horizon, and flags faulty pipelines', () => {
    const soon = new Date(now + 30 * 60_000).toISOString();
    const late = new Date(now + 3 * 3_600_000).toISOString();
    expect(poolAlerts(POOL, usage(0.5, 100, soon), [], new Map(), now).map((a) => a.kind)).toEqual([
      'quota-exhaustion-forecast',
    ]);
    expect(poolAlerts(POOL, usage(0.5, 10, late), [], new Map(), now)).toEqual([]);
    const faulty = poolAlerts(POOL, [], [{ holder: 'loop', capRefusals: 7 }], new Map(), now);
    expect(faulty[0]).toMatchObject({ kind: 'quota-faulty-pipeline', key: 'quota:shared:faulty:loop' });
  });
});

describe('faultyPipelines', () => {
  it('flags a holder refused by its cap faultyAfter times within the window', () => {
    const now = 1_000_000_000;
    const times = new Map([
      ['loop', [now - 1000, now - 900, now - 800, now - 700, now - 600]],
      ['slow', [now - 2 * 3_600_000, now - 3_600_000, now - 1000, now - 500, now - 100]],
    ]);
    expect(faultyPipelines(times, POOL, now)).toEqual([{ holder: 'loop', capRefusals: 5, sinceMs: now - 1000 }]);
  });
});

describe('estimateFromRuns', () => {
  const run = (rows: number, durationMs: number, peakMemoryGiB: number, family = 'tree-ensemble'): QuotaRun => ({
    leaseId: `r${rows}-${durationMs}`,
    holder: 'h',
    kind: 'training',
    resources: { cpu: 2, memoryGiB: 4 },
    grantedAt: '2025-01-01T00:00:00.000Z',
    endedAt: '2025-01-01T00:01:00.000Z',
    heldMs: durationMs + 500,
    ended: 'released',
    profile: { family, datasetRows: rows },
    usage: { durationMs, peakMemoryGiB, avgCpuCores: 0.9 },
  });

  it('uses runs of the same family within the size factor, scaling duration by dataset size', () => {
    const runs = [
      run(1000, 10_000, 0.5),
      run(2000, 22_000, 0.7),
      run(50_000, 500_000, 4),
      run(1000, 1000, 9, 'transformer'),
    ];
    const e = estimateFromRuns(runs, { kind: 'training', family: 'tree-ensemble', datasetRows: 2000, declared: {} });
    expect(e.basis).toBe('history');
    expect(e.similarRuns).toBe(2);
    // 1000 rows in 10 s scales to 20 s for 2000; 2000 rows took 22 s.
    expect(e.durationMs).toEqual({ low: 20_000, mid: 21_000, high: 22_000 });
    expect(e.peakMemoryGiB).toEqual({ low: 0.5, mid: 0.6, high: 0.7 });
    // 0.7 GiB × 1.2 headroom, rounded up to a half; 0.9 cores × 1.2 → 1.5.
    expect(e.recommended).toEqual({ memoryGiB: 1, cpu: 1.5 });
  });

  it('falls back to the declared request and says so when no run is similar', () => {
    const e = estimateFromRuns([run(100_000, 1, 1)], {
      kind: 'training',
      family: 'tree-ensemble',
      datasetRows: 1000,
      declared: { cpu: 2, memoryGiB: 4 },
    });
    expect(e).toMatchObject({ basis: 'declared', similarRuns: 0, recommended: { cpu: 2, memoryGiB: 4 } });
  });
});

describe('estimateServing', () => {
  it('sizes replicas from measured service time at a target utilisation', () => {
    const e = estimateServing({
      qps: 500,
      latencyMs: { mean: 2, p50: 1.5, p99: 10 },
      concurrencyPerReplica: 1,
      perReplica: { cpu: 1, memoryGiB: 1 },
      basis: 'test',
    });
    // Mean 2 ms → 500 rps per replica; at 70%: 350 → 2 replicas. p50 1.5 ms → 466.7 → 2; p99 10 ms → 70 → 8.
    expect(e.perReplicaRps).toEqual({ low: 100, mid: 500, high: expect.closeTo(666.67, 1) as number });
    expect(e.replicas).toEqual({ low: 2, mid: 2, high: 8 });
    expect(e.resources).toEqual({ cpu: 2, memoryGiB: 2 });
  });
});

describe('checkCapacity', () => {
  it('says whether every pipeline fits together and which resource falls short where', () => {
    const ok = checkCapacity(POOL, [
      { name: 'train', kind: 'training', resources: { cpu: 8, 'gpu:a100': 2 } },
      { name: 'serve', kind: 'serving', resources: { cpu: 4 } },
    ]);
    expect(ok.fits).toBe(true);
    const bad = checkCapacity(POOL, [
      { name: 'train', kind: 'training', resources: { cpu: 12, 'gpu:a100': 3 } },
      { name: 'exp', kind: 'experiment', resources: { cpu: 6 } },
    ]);
    expect(bad.fits).toBe(false);
    expect(bad.problems).toEqual([
      { resource: 'gpu:a100', scope: 'pipeline', who: 'train', need: 3, limit: 2 },
      { resource: 'cpu', scope: 'kind', who: 'experiment', need: 6, limit: expect.closeTo(4.8) as number },
      { resource: 'cpu', scope: 'pool', who: 'all pipelines', need: 18, limit: 16 },
    ]);
  });
});

describe('soonestToExpire and a check on a summary that lists some experiments', () => {
  it('lists the leases soonest to expire first, never-expiring ones last, ties by lease id', () => {
    const at = (id: string, expiresAt: string | null) => ({ ...lease(id, { cpu: 1 }), expiresAt });
    const leases = [
      at('c', null),
      at('b', '2025-01-01T00:05:00.000Z'),
      at('a', '2025-01-01T00:05:00.000Z'),
      at('d', '2025-01-01T00:01:00.000Z'),
      at('e', null),
    ];
    expect(soonestToExpire(leases, 10).map((l) => l.leaseId)).toEqual(['d', 'a', 'b', 'c', 'e']);
    expect(soonestToExpire(leases, 2).map((l) => l.leaseId)).toEqual(['d', 'a']);
    expect(leases.map((l) => l.leaseId)).toEqual(['c', 'b', 'a', 'd', 'e']);
  });

  it('counts the experiments a summary did not list as one pipeline holding the rest of their usage', () => {
    const listed = [lease('x1', { cpu: 1 }, 'x1', 'experiment'), lease('x2', { cpu: 1.5 }, 'x2', 'experiment')];
    const state = {
      leases: listed,
      byKind: { experiment: { cpu: 5.5 }, training: { cpu: 8 } },
      counts: { leases: 9, waiting: 0, matching: 5 },
    } as unknown as QuotaPoolState;
    const check = checkPool(POOL, state, []);
    expect(check.pipelines).toEqual([
      { name: 'x1', kind: 'experiment', resources: { cpu: 1 }, source: 'running (x1)' },
      { name: 'x2', kind: 'experiment', resources: { cpu: 1.5 }, source: 'running (x2)' },
      { name: '3 more running experiments', kind: 'experiment', resources: { cpu: 3 }, source: 'running (not listed)' },
    ]);
    // 5.5 cpu of experiments against the 30 % kind cap of 16 cpu (4.8).
    expect(check.fits).toBe(false);
    expect(check.problems).toContainEqual(expect.objectContaining({ scope: 'kind', who: 'experiment', need: 5.5 }));
    // A whole state (no counts) lists every experiment: nothing is added.
    expect(checkPool(POOL, { leases: listed, byKind: {} } as unknown as QuotaPoolState, []).pipelines).toHaveLength(2);
  });
});

describe('quota pools file', () => {
  it('names every problem with its path', () => {
    const r = QuotaPoolsFile.safeParse({
      pools: [
        {
          name: 'Bad Name',
          capacity: { cpu: -1, 'GPU t4': 1 },
          caps: { perPipeline: 1.5, perKind: { experiment: { 'gpu:*': 0.3 }, batch: 0.2 } },
          leaseTtl: 'soon',
        },
        { name: 'ok', capacity: { cpu: 1 } },
        { name: 'ok', capacity: { cpu: 1 } },
      ],
    });
    expect(r.success).toBe(false);
    const issues = describeIssues(r.error!);
    for (const path of [
      'pools.0.name:',
      'pools.0.capacity.cpu:',
      'pools.0.capacity.GPU t4:',
      'pools.0.caps.perPipeline:',
      'pools.0.caps.perKind: Unrecognized key: "batch"',
      'pools.0.leaseTtl: invalid duration "soon"',
      'pools.0.caps.perKind.experiment.gpu:*: caps a resource the pool does not have',
      'pools.2.name: pool "ok" twice',
    ])
      expect(
        issues.some((i) => i.startsWith(path)),
        `${path} in ${issues.join(' | ')}`,
      ).toBe(true);
    expect(issues).toHaveLength(8);
  });

  it('fills in defaults: 10-minute TTL, 80% and 95% thresholds, no caps', () => {
    const p = QuotaPoolConfig.parse({ name: 'p', capacity: { cpu: 1 } });
    expect(p).toMatchObject({ leaseTtl: 600_000, alerts: { usageThresholds: [0.8, 0.95] }, caps: { perKind: {} } });
  });
});

describe('caller-chosen names', () => {
  const HOSTILE = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'];
  const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort();

  it('breaks usage down by holders named like Object.prototype members without touching it', () => {
    const before = prototypeKeys();
    const leases = HOSTILE.map((holder, i) => lease(`h${i}`, { cpu: i + 1 }, holder));
    const { byPipeline, used } = breakdown(leases);
    expect(prototypeKeys()).toEqual(before);
    expect(({} as Record<string, unknown>).cpu).toBeUndefined();
    expect(used).toEqual({ cpu: 15 });
    for (const [i, holder] of HOSTILE.entries()) {
      expect(Object.hasOwn(byPipeline, holder)).toBe(true);
      expect(Object.getOwnPropertyDescriptor(byPipeline, holder)?.value).toEqual({ cpu: i + 1 });
    }
    expect(JSON.parse(JSON.stringify(byPipeline))).toEqual(
      Object.fromEntries(HOSTILE.map((h, i) => [h, { cpu: i + 1 }])),
    );
  });

  it('never reads an inherited member as a capacity, a cap or a usage', () => {
    const pool = QuotaPoolConfig.parse({ name: 'p', capacity: { cpu: 4 }, caps: { perPipeline: 0.5 } });
    for (const resource of ['toString', 'constructor', 'valueOf', 'hasOwnProperty']) {
      const a = assess(pool, [], req({ [resource]: 1 }));
      expect(a).toMatchObject({ fits: false, reason: 'never-fits' });
      expect(a.shortfalls[0]).toMatchObject({ resource, limit: 0 });
    }
    // A held resource named like a member is counted as a number, not concatenated with a function.
    const held = [lease('x', { toString: 2, cpu: 1 }, 'constructor')];
    expect(usedResources(held)).toEqual({ toString: 2, cpu: 1 });
    expect(assess(pool, held, req({ cpu: 2 }, 'constructor'))).toMatchObject({ fits: false, reason: 'pipeline-cap' });
    expect(assess(pool, held, req({ cpu: 2 }, 'toString'))).toMatchObject({ fits: true });
  });

  it('refuses __proto__ and malformed names at the edge, naming the field', () => {
    const base = { leaseId: 'l1', holder: 'ci', kind: 'experiment', resources: { cpu: 1 } } as const;
    const problems = (input: unknown) => {
      const r = ReserveQuotaInput.safeParse(input);
      return r.success ? [] : describeIssues(r.error);
    };
    expect(problems(base)).toEqual([]);
    expect(problems({ ...base, holder: 'constructor' })).toEqual([]);
    expect(problems({ ...base, holder: '__proto__' })).toEqual([expect.stringMatching(/^holder: /)]);
    expect(problems({ ...base, holder: 'a;b' })).toEqual([expect.stringMatching(/^holder: a holder: letters/)]);
    expect(problems({ ...base, leaseId: 'x'.repeat(300) })).toEqual([expect.stringMatching(/^leaseId: /)]);
    expect(problems({ ...base, resources: JSON.parse('{"__proto__": 1}') })).not.toEqual([]);
    expect(problems({ ...base, ttlMs: 400 * 86_400_000 })).toEqual([expect.stringMatching(/^ttlMs: at most/)]);
    expect(problems({ ...base, wait: { timeoutMs: 1e300 } })).not.toEqual([]);
  });
});
