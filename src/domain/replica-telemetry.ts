/**
 * Telemetry of a gateway that runs as several replicas (pure: no I/O). Each replica counts the traffic it served and
 * restarts on its own, so:
 *
 * - a snapshot of the whole (`ModelTelemetry.replicas`) keeps every replica's own counters beside their sum;
 * - a window is differenced replica by replica (each with its own epoch rule, `countersRestarted`) and then summed
 *   ({@link modelWindowOf}): a replica that restarted contributes the traffic since its restart, the others their
 *   difference. Differencing the sums instead would count the other replicas' whole history (or subtract across the
 *   restart).
 *
 * Sums are exact: counters add as integers (a sum past 2^53 is refused, {@link TelemetryMergeError}), histograms and
 * input sketches add bin by bin, quality counters add field by field. Snapshots of one version that cannot be added
 * (another task, other classes, another input profile) are refused too: the replicas do not serve the same thing.
 */
import {
  MAX_UNKNOWN_KEYS_TRACKED,
  MAX_UNSEEN_TRACKED,
  MAX_UNSEEN_TRACKED_TOTAL,
  type DataSketch,
  type FeatureSketch,
} from '../shared/drift';
import { own } from '../shared/own';
import {
  QUALITY_ARRAY_KEYS,
  QUALITY_COUNT_KEYS,
  QUALITY_OPTIONAL_SUM_KEYS,
  QUALITY_SUM_KEYS,
  type QualityCounters,
} from '../shared/quality';
import type { ModelTelemetry, ReplicaTelemetry, ShadowTelemetry, VersionTelemetry } from '../shared/telemetry';
import { shadowWindowOf, windowOf, type ShadowWindow, type WindowTelemetry } from './guardrails';

/** Snapshots of replicas that cannot be added up; the message names the version and the part. */
export class TelemetryMergeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TelemetryMergeError';
  }
}

/** Adds counters; a sum that is no longer an exact integer is refused. */
function addCount(a: number, b: number, what: string): number {
  const sum = a + b;
  if (!Number.isSafeInteger(sum)) throw new TelemetryMergeError(`${what}: the sum ${sum} is past 2^53`);
  return sum;
}

function addFloat(a: number, b: number, what: string): number {
  const sum = a + b;
  if (!Number.isFinite(sum)) throw new TelemetryMergeError(`${what}: the sum is not finite`);
  return sum;
}

/** Element-wise sum of count arrays of one length (`length`, else the first's). */
function addArrays(parts: readonly (readonly number[])[], what: string, length?: number): number[] {
  const n = length ?? parts[0]?.length ?? 0;
  const out = new Array<number>(n).fill(0);
  for (const part of parts) {
    if (part.length !== n) throw new TelemetryMergeError(`${what}: ${part.length} entries where another has ${n}`);
    part.forEach((c, i) => (out[i] = addCount(out[i] as number, c, what)));
  }
  return out;
}

/**
 * Named counts added up, at most `limit` names (the first seen, in part order): the rest go to the returned overflow,
 * as the gateway's own sketch counts names past its bound (see src/drift/sketch.ts).
 */
function addNames(
  parts: readonly Readonly<Record<string, number>>[],
  limit: number,
  what: string,
): { names: Record<string, number>; overflow: number } {
  const names = new Map<string, number>();
  let overflow = 0;
  for (const part of parts) {
    for (const [name, count] of Object.entries(part)) {
      const had = names.get(name);
      if (had !== undefined) names.set(name, addCount(had, count, what));
      else if (names.size < limit) names.set(name, count);
      else overflow = addCount(overflow, count, what);
    }
  }
  return { names: Object.fromEntries(names), overflow };
}

/** Input sketches of one version (same profile) added up, bin by bin and name by name. */
export function sumSketches(parts: readonly DataSketch[]): DataSketch {
  const first = parts[0];
  if (!first) throw new TelemetryMergeError('no input sketches to add');
  const featureNames = Object.keys(first.features).sort();
  for (const part of parts) {
    const names = Object.keys(part.features).sort();
    if (names.join('\n') !== featureNames.join('\n')) {
      throw new TelemetryMergeError('input sketches of different features (another profile)');
    }
  }
  let unseenTotal = 0;
  const features = new Map<string, FeatureSketch>();
  for (const name of featureNames) {
    const of = parts.map((p) => own(p.features, name) as FeatureSketch);
    const what = `input feature ${JSON.stringify(name)}`;
    const type = of[0]!.type;
    if (of.some((f) => f.type !== type))
      throw new TelemetryMergeError(`${what}: numeric on one, categorical on another`);
    const sum = (key: 'rows' | 'missing' | 'wrongType') => of.reduce((s, f) => addCount(s, f[key], what), 0);
    const base = { rows: sum('rows'), missing: sum('missing'), wrongType: sum('wrongType') };
    const counts = addArrays(
      of.map((f) => f.counts),
      `${what} bins`,
    );
    if (type === 'numeric') {
      const num = of as Extract<FeatureSketch, { type: 'numeric' }>[];
      const add = (key: 'nan' | 'posInf' | 'negInf' | 'belowMin' | 'aboveMax') =>
        num.reduce((s, f) => addCount(s, f[key], what), 0);
      features.set(name, {
        type,
        ...base,
        nan: add('nan'),
        posInf: add('posInf'),
        negInf: add('negInf'),
        counts,
        belowMin: add('belowMin'),
        aboveMax: add('aboveMax'),
        // Not a counter: kept finite as the gateway's sketcher keeps it.
        sum: num.reduce((s, f) => Math.min(Number.MAX_VALUE, Math.max(-Number.MAX_VALUE, s + f.sum)), 0),
      });
    } else {
      const cat = of as Extract<FeatureSketch, { type: 'categorical' }>[];
      const limit = Math.max(0, Math.min(MAX_UNSEEN_TRACKED, MAX_UNSEEN_TRACKED_TOTAL - unseenTotal));
      const unseen = addNames(
        cat.map((f) => f.unseen),
        limit,
        what,
      );
      unseenTotal += Object.keys(unseen.names).length;
      features.set(name, {
        type,
        ...base,
        counts,
        unseen: unseen.names,
        unseenOther: cat.reduce((s, f) => addCount(s, f.unseenOther, what), unseen.overflow),
      });
    }
  }
  const keys = addNames(
    parts.map((p) => p.unknownKeys),
    MAX_UNKNOWN_KEYS_TRACKED,
    'unknown keys',
  );
  const counted = parts.some((p) => p.unknownKeysOther !== undefined) || keys.overflow > 0;
  return {
    rows: parts.reduce((s, p) => addCount(s, p.rows, 'input rows'), 0),
    unknownKeys: keys.names,
    ...(counted
      ? {
          unknownKeysOther: parts.reduce((s, p) => addCount(s, p.unknownKeysOther ?? 0, 'unknown keys'), keys.overflow),
        }
      : {}),
    features: Object.fromEntries(features),
  };
}

/** Quality counters of one version added up, field by field (optional fields when any part has them). */
export function sumQuality(parts: readonly QualityCounters[]): QualityCounters {
  const out = {} as QualityCounters;
  for (const key of QUALITY_COUNT_KEYS) out[key] = parts.reduce((s, q) => addCount(s, q[key], `quality ${key}`), 0);
  for (const key of QUALITY_SUM_KEYS) out[key] = parts.reduce((s, q) => addFloat(s, q[key], `quality ${key}`), 0);
  for (const key of QUALITY_OPTIONAL_SUM_KEYS) {
    if (parts.some((q) => q[key] !== undefined)) {
      out[key] = parts.reduce((s, q) => addFloat(s, q[key] ?? 0, `quality ${key}`), 0);
    }
  }
  for (const key of QUALITY_ARRAY_KEYS) {
    const arrays = parts.flatMap((q) => (q[key] ? [q[key]] : []));
    if (arrays.length > 0) out[key] = addArrays(arrays, `quality ${key}`);
  }
  return out;
}

/**
 * One version's cumulative counters on every replica that has it, added up. The sum has no epoch (the replicated
 * target gives it one made of the replicas'); `lastSuccessAt` is the latest.
 */
export function sumVersionTelemetry(parts: readonly VersionTelemetry[]): VersionTelemetry {
  const first = parts[0];
  if (!first) throw new TelemetryMergeError('no counters to add');
  const what = `version ${JSON.stringify(first.version)}`;
  const tasks = new Set(parts.map((p) => p.task).filter((t) => t !== undefined));
  if (tasks.size > 1) throw new TelemetryMergeError(`${what}: predicts ${[...tasks].join(' on one, ')} on another`);
  const add = (key: 'requests' | 'errors' | 'invalidRequests' | 'positiveCount') =>
    parts.reduce((s, p) => addCount(s, p[key], `${what} ${key}`), 0);
  const classes = parts.flatMap((p) => (p.classCounts ? [p.classCounts] : []));
  const inputs = parts.flatMap((p) => (p.inputs ? [p.inputs] : []));
  const quality = parts.flatMap((p) => (p.quality ? [p.quality] : []));
  const lastSuccess = parts
    .map((p) => p.lastSuccessAt)
    .filter((t) => t !== undefined)
    .sort()
    .pop();
  let sketch: DataSketch | undefined;
  try {
    sketch = inputs.length > 0 ? sumSketches(inputs) : undefined;
  } catch (err) {
    throw new TelemetryMergeError(`${what}: ${(err as Error).message}`);
  }
  return {
    version: first.version,
    ...(tasks.size > 0 ? { task: [...tasks][0] } : {}),
    requests: add('requests'),
    errors: add('errors'),
    invalidRequests: add('invalidRequests'),
    latencyBucketCounts: addArrays(
      parts.map((p) => p.latencyBucketCounts),
      `${what} latency buckets`,
    ),
    latencySumMs: parts.reduce((s, p) => addFloat(s, p.latencySumMs, `${what} latencySumMs`), 0),
    predictionBinCounts: addArrays(
      parts.map((p) => p.predictionBinCounts),
      `${what} prediction bins`,
    ),
    positiveCount: add('positiveCount'),
    ...(classes.length > 0 ? { classCounts: addArrays(classes, `${what} class counts`) } : {}),
    ...(lastSuccess !== undefined ? { lastSuccessAt: lastSuccess } : {}),
    ...(sketch ? { inputs: sketch } : {}),
    ...(quality.length > 0 ? { quality: sumQuality(quality) } : {}),
  };
}

/** Shadow counters of one version added up. */
export function sumShadowTelemetry(parts: readonly ShadowTelemetry[]): ShadowTelemetry {
  return {
    candidate: sumVersionTelemetry(parts.map((p) => p.candidate)),
    primary: sumVersionTelemetry(parts.map((p) => p.primary)),
    compared: parts.reduce((s, p) => addCount(s, p.compared, 'shadow compared'), 0),
    agreed: parts.reduce((s, p) => addCount(s, p.agreed, 'shadow agreed'), 0),
    scoreDiffSum: parts.reduce((s, p) => addFloat(s, p.scoreDiffSum, 'shadow scoreDiffSum'), 0),
    dropped: parts.reduce((s, p) => addCount(s, p.dropped, 'shadow dropped'), 0),
  };
}

/** Windows of one version on several replicas added up (a window of nothing when there are none). */
export function sumWindows(parts: readonly WindowTelemetry[]): WindowTelemetry {
  if (parts.length === 1) return parts[0]!;
  const empty = windowOf(undefined, undefined);
  const sum = (key: 'requests' | 'errors' | 'invalidRequests' | 'successes' | 'predictedRows') =>
    parts.reduce((s, p) => s + p[key], 0);
  const inputs = parts.flatMap((p) => (p.inputs ? [p.inputs] : []));
  const quality = parts.flatMap((p) => (p.quality ? [p.quality] : []));
  const classes = Math.max(0, ...parts.map((p) => p.classCounts?.length ?? 0));
  return {
    ...(inputs.length > 0 ? { inputs: sumSketches(inputs) } : {}),
    requests: sum('requests'),
    errors: sum('errors'),
    invalidRequests: sum('invalidRequests'),
    latencyBucketCounts: addArrays(
      parts.map((p) => p.latencyBucketCounts),
      'latency buckets',
      empty.latencyBucketCounts.length,
    ),
    predictionBinCounts: addArrays(
      parts.map((p) => p.predictionBinCounts),
      'prediction bins',
      empty.predictionBinCounts.length,
    ),
    ...(classes > 0
      ? {
          classCounts: addArrays(
            parts.map((p) => p.classCounts ?? new Array<number>(classes).fill(0)),
            'class counts',
            classes,
          ),
        }
      : {}),
    successes: sum('successes'),
    predictedRows: sum('predictedRows'),
    ...(quality.length > 0 ? { quality: sumQuality(quality) } : {}),
  };
}

/** Which counters of a snapshot a window is about: a version's, its shadow copies', a pinned route's. */
export type CountersOf = (snapshot: ReplicaTelemetry) => VersionTelemetry | undefined;

/**
 * The window `after − before` of the counters `pick` selects. A replicated gateway's snapshots are differenced
 * replica by replica (a replica absent from `before` contributes its counters whole, as a version deployed after the
 * window started does) and summed; a single gateway's as `windowOf` does.
 */
export function modelWindowOf(
  after: ModelTelemetry,
  before: ModelTelemetry | undefined,
  pick: CountersOf,
): WindowTelemetry {
  if (!after.replicas) return windowOf(pick(after), before && pick(before));
  return sumWindows(
    Object.entries(after.replicas).map(([replica, now]) => {
      const then = before?.replicas ? own(before.replicas, replica) : undefined;
      return windowOf(pick(now), then && pick(then));
    }),
  );
}

/** The shadow comparison's window of `version`, replica by replica and summed (see {@link modelWindowOf}). */
export function modelShadowWindowOf(
  after: ModelTelemetry,
  before: ModelTelemetry | undefined,
  version: string,
): ShadowWindow {
  const shadow = (t: ReplicaTelemetry | undefined) => (t?.shadow ? own(t.shadow, version) : undefined);
  if (!after.replicas) return shadowWindowOf(shadow(after), shadow(before));
  const parts = Object.entries(after.replicas).map(([replica, now]) =>
    shadowWindowOf(shadow(now), shadow(before?.replicas ? own(before.replicas, replica) : undefined)),
  );
  return {
    compared: parts.reduce((s, p) => s + p.compared, 0),
    agreed: parts.reduce((s, p) => s + p.agreed, 0),
    scoreDiffSum: parts.reduce((s, p) => s + p.scoreDiffSum, 0),
    dropped: parts.reduce((s, p) => s + p.dropped, 0),
  };
}

/**
 * The sum of the replicas' snapshots, in the shape of one gateway's (`versions`, `pinned`, `shadow` added up version by
 * version over the replicas that have it; `at` the earliest), without epochs or `replicas`. Throws
 * {@link TelemetryMergeError} when two replicas' counters of one version cannot be added.
 */
export function sumReplicaTelemetry(replicas: readonly ReplicaTelemetry[]): ReplicaTelemetry {
  const byName = <T>(records: readonly (Readonly<Record<string, T>> | undefined)[], sum: (parts: T[]) => T) => {
    const parts = new Map<string, T[]>();
    for (const record of records) {
      for (const [name, value] of Object.entries(record ?? {})) parts.set(name, [...(parts.get(name) ?? []), value]);
    }
    return parts.size === 0 ? undefined : Object.fromEntries([...parts].map(([name, p]) => [name, sum(p)]));
  };
  const at = replicas
    .map((r) => r.at)
    .sort()
    .shift();
  const pinned = byName(
    replicas.map((r) => r.pinned),
    sumVersionTelemetry,
  );
  const shadow = byName(
    replicas.map((r) => r.shadow),
    sumShadowTelemetry,
  );
  return {
    at: at ?? new Date(0).toISOString(),
    versions:
      byName(
        replicas.map((r) => r.versions),
        sumVersionTelemetry,
      ) ?? {},
    ...(pinned ? { pinned } : {}),
    ...(shadow ? { shadow } : {}),
  };
}
