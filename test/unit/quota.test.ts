import { describe, expect, it } from 'vitest';
import { describeShortfalls, shortfalls, usedResources } from '../../src/domain/quota';
import type { QuotaLease, Resources } from '../../src/shared/quota';

function lease(leaseId: string, resources: Resources): QuotaLease {
  return {
    leaseId,
    holder: `lifecycle-${leaseId}`,
    kind: 'training',
    resources,
    grantedAt: '2025-01-01T00:00:00.000Z',
  };
}

const CAPACITY: Resources = { cpu: 16, memoryGiB: 64, 'gpu:t4': 2 };

describe('usedResources', () => {
  it('sums every resource over all leases', () => {
    const leases = [
      lease('a', { cpu: 4, memoryGiB: 16 }),
      lease('b', { cpu: 2, memoryGiB: 8, 'gpu:t4': 1 }),
      lease('c', { cpu: 0.5 }),
    ];
    expect(usedResources(leases)).toEqual({ cpu: 6.5, memoryGiB: 24, 'gpu:t4': 1 });
  });

  it('is empty when nothing is leased', () => {
    expect(usedResources([])).toEqual({});
  });
});

describe('shortfalls', () => {
  it('is empty when the request fits in what the leases leave', () => {
    const leases = [lease('a', { cpu: 8, memoryGiB: 32 })];
    expect(shortfalls(CAPACITY, leases, { cpu: 8, memoryGiB: 32, 'gpu:t4': 2 })).toEqual([]);
  });

  it('reports the one resource that is short, with requested, available and capacity', () => {
    const leases = [lease('a', { cpu: 12, memoryGiB: 16 })];
    expect(shortfalls(CAPACITY, leases, { cpu: 6, memoryGiB: 16 })).toEqual([
      { resource: 'cpu', requested: 6, available: 4, capacity: 16 },
    ]);
  });

  it('reports every resource that is short', () => {
    const leases = [lease('a', { cpu: 12, memoryGiB: 60, 'gpu:t4': 1 })];
    expect(shortfalls(CAPACITY, leases, { cpu: 6, memoryGiB: 8, 'gpu:t4': 1 })).toEqual([
      { resource: 'cpu', requested: 6, available: 4, capacity: 16 },
      { resource: 'memoryGiB', requested: 8, available: 4, capacity: 64 },
    ]);
  });

  it('does not refuse a fractional request over float rounding', () => {
    // 0.3 - 0.1 is 0.19999999999999998 in floating point: without a tolerance 0.2 cpu would not fit.
    expect(0.3 - 0.1 < 0.2).toBe(true);
    expect(shortfalls({ cpu: 0.3 }, [lease('a', { cpu: 0.1 })], { cpu: 0.2 })).toEqual([]);
  });

  it('still refuses a fractional request that is really over', () => {
    expect(shortfalls({ cpu: 0.3 }, [lease('a', { cpu: 0.1 })], { cpu: 0.21 })).toEqual([
      { resource: 'cpu', requested: 0.21, available: 0.3 - 0.1, capacity: 0.3 },
    ]);
  });

  it('treats a resource the pool does not have as capacity 0', () => {
    expect(shortfalls(CAPACITY, [], { cpu: 1, 'gpu:a100': 1 })).toEqual([
      { resource: 'gpu:a100', requested: 1, available: 0, capacity: 0 },
    ]);
  });

  it('ignores a zero request, even for a resource the pool does not have', () => {
    expect(shortfalls(CAPACITY, [], { cpu: 1, 'gpu:a100': 0 })).toEqual([]);
  });

  it('counts leases that overdraw a resource as negative availability', () => {
    // Capacity was lowered in config below what is already leased.
    expect(shortfalls({ cpu: 4 }, [lease('a', { cpu: 6 })], { cpu: 1 })).toEqual([
      { resource: 'cpu', requested: 1, available: -2, capacity: 4 },
    ]);
  });
});

describe('describeShortfalls', () => {
  it('names the pool and each missing resource with its numbers', () => {
    const items = shortfalls(CAPACITY, [lease('a', { cpu: 12, 'gpu:t4': 2 })], { cpu: 6, 'gpu:t4': 1 });
    expect(describeShortfalls('default', items)).toBe(
      'pool "default" cannot grant: cpu needs 6, 4 of 16 available; gpu:t4 needs 1, 0 of 2 available',
    );
  });
});
