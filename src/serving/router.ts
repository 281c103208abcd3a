/**
 * Weighted, sticky traffic routing for one model (pure: no I/O, no clock, no randomness).
 *
 * A user id is hashed to a bucket in [0, {@link BUCKET_COUNT}): FNV-1a 32-bit over the id's UTF-8 bytes, finalised
 * with murmur3's `fmix32` so that ids differing only in their last characters (`user-1`, `user-2`, …) still spread
 * evenly, then taken modulo {@link BUCKET_COUNT}. The bucket of a user never changes.
 *
 * The versions of a table own contiguous bucket ranges laid out in a fixed order: **newest deploy first**. The
 * newest version (normally the candidate) owns `[0, w₁·100)`, the next one `[w₁·100, (w₁+w₂)·100)`, and so on.
 * Consequences:
 * - a user keeps its version while the weights hold (same bucket, same ranges);
 * - monotone ramp: when the candidate's weight grows (5 → 25 → 50 → 100) its range only grows from its upper end,
 *   so users already on the candidate stay on it, and when it shrinks (roll back) only users at its upper end leave.
 */

import { mapOf } from '../shared/own';

/** Number of hash buckets; one bucket is 0.01% of the traffic. */
export const BUCKET_COUNT = 10_000;

/** Tolerance on the sum of the weights (percentages) against 100. */
export const WEIGHT_SUM_TOLERANCE = 1e-9;

/** One version's share of a routing table: the buckets `[from, to)` it owns. */
export interface RoutingRange {
  readonly version: string;
  readonly weight: number;
  readonly from: number;
  readonly to: number;
}

/** An immutable routing table; replace the whole object to change the routing. */
export interface RoutingTable {
  /** Every version named in the weights (zero weights included), in routing order (newest deploy first). */
  readonly ranges: readonly RoutingRange[];
  /** The weights the table was built from, by version name. */
  readonly weights: ReadonlyMap<string, number>;
  /** Upper bucket bounds (exclusive) of the versions with a non-empty range, parallel to `routedVersions`. */
  readonly upperBounds: Uint16Array;
  readonly routedVersions: readonly string[];
}

/** A weight table that cannot be used; `problems` lists every reason, one line each. */
export class InvalidWeightsError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid weights: ${problems.join('; ')}`);
    this.name = 'InvalidWeightsError';
  }
}

/** FNV-1a 32-bit over the UTF-8 bytes of `value`, finalised with murmur3's fmix32; an unsigned 32-bit integer. */
export function hashString(value: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < value.length; i++) {
    let c = value.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
      continue;
    }
    // Encode the code point as UTF-8 so the hash does not depend on JavaScript's UTF-16 strings.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < value.length) {
      const low = value.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
        i++;
      }
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), 0x01000193);
    } else if (c < 0x10000) {
      h = Math.imul(h ^ (0xe0 | (c >> 12)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193);
    } else {
      h = Math.imul(h ^ (0xf0 | (c >> 18)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), 0x01000193);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193);
    }
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The bucket in [0, BUCKET_COUNT) of a user id; stable across processes and releases. */
export function bucketOf(userId: string): number {
  return hashString(userId) % BUCKET_COUNT;
}

/** Weights by version name: a Map, or a JSON object (its own properties). */
export type Weights = ReadonlyMap<string, number> | Readonly<Record<string, number>>;

function weightMap(weights: Weights): ReadonlyMap<string, number> {
  return weights instanceof Map ? weights : mapOf(weights as Readonly<Record<string, number>>);
}

/**
 * Every problem of a weight table against the deployed versions: unknown versions, weights that are not finite
 * percentages in [0, 100], a sum other than 100 (± {@link WEIGHT_SUM_TOLERANCE}). Empty when the table is usable.
 */
export function weightProblems(weights: Weights, deployed: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  let sum = 0;
  let allNumbers = true;
  const table = weightMap(weights);
  for (const [version, weight] of table) {
    if (!deployed.has(version)) problems.push(`version '${version}' is not deployed`);
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0 || weight > 100) {
      problems.push(`weight of '${version}' must be a number in [0, 100], got ${String(weight)}`);
      allNumbers = false;
    } else {
      sum += weight;
    }
  }
  if (table.size === 0) problems.push('no versions given');
  else if (allNumbers && Math.abs(sum - 100) > WEIGHT_SUM_TOLERANCE)
    problems.push(`weights must sum to 100, got ${sum}`);
  return problems;
}

/**
 * Builds the routing table for `weights`. `deployOrder` lists the deployed versions from oldest to newest deploy;
 * ranges are laid out newest first (see the module comment). Throws {@link InvalidWeightsError} on any problem.
 */
export function buildRoutingTable(weights: Weights, deployOrder: readonly string[]): RoutingTable {
  const table = new Map(weightMap(weights));
  const problems = weightProblems(table, new Set(deployOrder));
  if (problems.length > 0) throw new InvalidWeightsError(problems);

  const ranges: RoutingRange[] = [];
  const routedVersions: string[] = [];
  const bounds: number[] = [];
  let cumulative = 0;
  let from = 0;
  for (let i = deployOrder.length - 1; i >= 0; i--) {
    const version = deployOrder[i] as string;
    const weight = table.get(version);
    if (weight === undefined) continue;
    cumulative += weight;
    // Cumulative rounding keeps every bound a pure, monotone function of the weights before it, and the total exact.
    const to = Math.min(BUCKET_COUNT, Math.round(cumulative * (BUCKET_COUNT / 100)));
    ranges.push({ version, weight, from, to });
    if (to > from) {
      routedVersions.push(version);
      bounds.push(to);
    }
    from = to;
  }
  // The sum is 100 within 1e-9, so rounding already reaches BUCKET_COUNT; pin it so no bucket is ever unowned.
  if (bounds.length > 0) bounds[bounds.length - 1] = BUCKET_COUNT;
  return Object.freeze({
    ranges: Object.freeze(ranges),
    weights: table,
    upperBounds: Uint16Array.from(bounds),
    routedVersions: Object.freeze(routedVersions),
  });
}

/** The version serving `userId` under `table`. */
export function route(table: RoutingTable, userId: string): string {
  const bucket = bucketOf(userId);
  const bounds = table.upperBounds;
  let i = 0;
  // A handful of versions at most: a linear scan beats a binary search here.
  while (i < bounds.length - 1 && bucket >= (bounds[i] as number)) i++;
  return table.routedVersions[i] as string;
}
