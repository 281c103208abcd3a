import { describe, expect, it } from 'vitest';
import {
  BUCKET_COUNT,
  InvalidWeightsError,
  bucketOf,
  buildRoutingTable,
  hashString,
  route,
  weightProblems,
} from '../../src/serving/router';

const USERS = Array.from({ length: 50_000 }, (_, i) => `user-${i}`);

function share(weights: Record<string, number>, order: string[]): Map<string, number> {
  const table = buildRoutingTable(weights, order);
  const counts = new Map<string, number>();
  for (const user of USERS) {
    const version = route(table, user);
    counts.set(version, (counts.get(version) ?? 0) + 1);
  }
  return counts;
}

describe('router', () => {
  it('hashes user ids to pinned buckets in [0, 10000)', () => {
    // Pinned values (cross-checked with an independent Python implementation over the UTF-8 bytes): a change of the
    // hash would move users between versions in the middle of a running rollout.
    expect(['', 'user-1', 'alice', 'żółw', '🙂'].map((id) => [hashString(id), bucketOf(id)])).toEqual([
      [2872998923, 8923],
      [2005895916, 5916],
      [3927234078, 4078],
      [1890968323, 8323],
      [1074728266, 8266],
    ]);
    for (const user of USERS.slice(0, 1000)) {
      const bucket = bucketOf(user);
      expect(Number.isInteger(bucket)).toBe(true);
      expect(bucket).toBeGreaterThanOrEqual(0);
      expect(bucket).toBeLessThan(BUCKET_COUNT);
    }
  });

  it('splits traffic over many users according to the weights', () => {
    const counts = share({ v1: 70, v2: 20, v3: 10 }, ['v1', 'v2', 'v3']);
    expect((counts.get('v1') ?? 0) / USERS.length).toBeCloseTo(0.7, 1);
    expect(Math.abs((counts.get('v1') ?? 0) / USERS.length - 0.7)).toBeLessThan(0.01);
    expect(Math.abs((counts.get('v2') ?? 0) / USERS.length - 0.2)).toBeLessThan(0.01);
    expect(Math.abs((counts.get('v3') ?? 0) / USERS.length - 0.1)).toBeLessThan(0.01);
  });

  it('sends no traffic to a zero-weight version and all of it to a 100% version', () => {
    expect(share({ v1: 100, v2: 0 }, ['v1', 'v2'])).toEqual(new Map([['v1', USERS.length]]));
    expect(share({ v2: 100 }, ['v1', 'v2'])).toEqual(new Map([['v2', USERS.length]]));
  });

  it('keeps every user on the same version while the weights hold, across rebuilt tables', () => {
    const first = buildRoutingTable({ stable: 90, canary: 10 }, ['stable', 'canary']);
    const second = buildRoutingTable({ canary: 10, stable: 90 }, ['stable', 'canary']);
    for (const user of USERS.slice(0, 5000)) {
      const version = route(first, user);
      expect(route(first, user)).toBe(version);
      expect(route(second, user)).toBe(version);
    }
  });

  it('never moves a user off the candidate while its weight grows (5 → 25 → 50 → 100)', () => {
    const order = ['stable', 'candidate'];
    let onCandidate = new Set<string>();
    for (const weight of [5, 25, 50, 100]) {
      const table = buildRoutingTable({ stable: 100 - weight, candidate: weight }, order);
      const now = new Set(USERS.filter((user) => route(table, user) === 'candidate'));
      for (const user of onCandidate) expect(now.has(user)).toBe(true);
      expect(Math.abs(now.size / USERS.length - weight / 100)).toBeLessThan(0.01);
      onCandidate = now;
    }
    expect(onCandidate.size).toBe(USERS.length);
  });

  it('gives the newest deployed version the low buckets', () => {
    const table = buildRoutingTable({ old: 50, mid: 25, newest: 25 }, ['old', 'mid', 'newest']);
    expect(table.ranges.map((r) => [r.version, r.from, r.to])).toEqual([
      ['newest', 0, 2500],
      ['mid', 2500, 5000],
      ['old', 5000, BUCKET_COUNT],
    ]);
  });

  it('covers every bucket exactly once even with fractional weights', () => {
    const table = buildRoutingTable({ a: 33.333333333333336, b: 33.33333333333333, c: 33.33333333333333 }, [
      'a',
      'b',
      'c',
    ]);
    expect(table.ranges[0]?.from).toBe(0);
    expect(table.ranges.at(-1)?.to).toBe(BUCKET_COUNT);
    for (let i = 1; i < table.ranges.length; i++) expect(table.ranges[i]?.from).toBe(table.ranges[i - 1]?.to);
  });

  it('refuses weight tables that do not sum to 100, name undeployed versions or are empty', () => {
    const deployed = new Set(['v1', 'v2']);
    expect(weightProblems({ v1: 50, v2: 50 }, deployed)).toEqual([]);
    expect(weightProblems({ v1: 100 - 1e-10, v2: 1e-10 }, deployed)).toEqual([]);
    expect(weightProblems({ v1: 60, v2: 50 }, deployed)).toEqual(['weights must sum to 100, got 110']);
    expect(weightProblems({ v1: 99.9 }, deployed)).toEqual(['weights must sum to 100, got 99.9']);
    expect(weightProblems({ v1: 50, v3: 50 }, deployed)).toEqual(["version 'v3' is not deployed"]);
    expect(weightProblems({}, deployed)).toEqual(['no versions given']);
    expect(weightProblems({ v1: 150, v2: -50 }, deployed)).toHaveLength(2);
    expect(weightProblems({ v1: Number.NaN, v2: 100 }, deployed)).toEqual([
      "weight of 'v1' must be a number in [0, 100], got NaN",
    ]);
    expect(() => buildRoutingTable({ v1: 10, v2: 10 }, ['v1', 'v2'])).toThrow(InvalidWeightsError);
    expect(() => buildRoutingTable({ v9: 100 }, ['v1', 'v2'])).toThrow(/version 'v9' is not deployed/);
  });
});
