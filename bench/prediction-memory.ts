/**
 * The gateway's memory of recent predictions (src/serving/prediction-memory.ts) at steady state: full, so that every
 * prediction remembered forgets the oldest one. Compared in the same run with the plain approach it replaced, which
 * took the Map's first entry (`for (const [key] of map) { map.delete(key); break }`): V8 leaves a deleted slot behind
 * in its ordered hash table until it compacts it, and every fresh iterator walks past all of them, so that one grows
 * with the number of predictions served since the last compaction.
 *
 * Remembers N predictions (default 600,000: six times the default capacity of 100,000) into each, timing every block
 * of 100,000; prints µs per prediction per block and overall, and a `BENCH_JSON {...}` line. Exits 1 if the memory's
 * contents differ between the two at the end.
 *
 * Run: `npm run bench:memory` (builds, then `node dist/bench/prediction-memory.js [N]`).
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { DEFAULT_PREDICTION_MEMORY, PredictionMemory } from '../src/serving/prediction-memory';
import { VersionCounters } from '../src/serving/telemetry';
import { benchFacts, printAligned, printLoad, runBenchmark } from './report';

const BLOCK = 100_000;

/** The eviction the gateway used before: the Map's first entry, through a fresh iterator each time. */
class FirstEntryMemory {
  readonly entries = new Map<string, { atMs: number }>();
  constructor(private readonly maxEntries: number) {}
  remember(model: string, requestId: string): void {
    const key = `${model}\n${requestId}`;
    this.entries.delete(key);
    this.entries.set(key, { atMs: Date.now() });
    for (const [oldest] of this.entries) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(oldest);
    }
  }
}

async function main(): Promise<number> {
  const total = Number(process.argv[2] ?? 6 * DEFAULT_PREDICTION_MEMORY.maxEntries);
  if (!(Number.isInteger(total) && total >= BLOCK)) throw new Error(`N must be a whole number >= ${BLOCK}`);
  const loadBefore = loadavg();
  const counters = new VersionCounters('v1', 'bench');
  const prediction = { version: 'v1', counters, task: 'binary-classification' as const, classes: [0, 1], label: 1 };
  const ids = Array.from({ length: total }, (_, i) => `req-${i.toString(36)}-${(i * 7919) % 1000}`);

  const time = (remember: (id: string) => void): number[] => {
    const blocks: number[] = [];
    for (let from = 0; from < total; from += BLOCK) {
      const started = performance.now();
      for (let i = from; i < Math.min(total, from + BLOCK); i++) remember(ids[i]!);
      blocks.push(((performance.now() - started) * 1000) / Math.min(BLOCK, total - from));
    }
    return blocks;
  };
  const memory = new PredictionMemory();
  const queued = time((id) => memory.remember('churn', id, prediction));
  const firstEntry = new FirstEntryMemory(DEFAULT_PREDICTION_MEMORY.maxEntries);
  const reference = time((id) => firstEntry.remember('churn', id));
  const loadAfter = loadavg();

  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  printAligned(
    ['predictions', 'queue µs/prediction', 'first entry µs/prediction', 'ratio'],
    queued.map((q, i) => [
      `${(i * BLOCK).toLocaleString('en')}–${Math.min(total, (i + 1) * BLOCK).toLocaleString('en')}`,
      q.toFixed(3),
      reference[i]!.toFixed(3),
      `${(reference[i]! / q).toFixed(1)}×`,
    ]),
  );
  console.log(
    `\nall ${total.toLocaleString('en')}: queue ${mean(queued).toFixed(3)} µs, first entry ${mean(reference).toFixed(3)} µs ` +
      `per prediction; once full (after ${DEFAULT_PREDICTION_MEMORY.maxEntries.toLocaleString('en')}): queue ` +
      `${mean(queued.slice(1)).toFixed(3)} µs, first entry ${mean(reference.slice(1)).toFixed(3)} µs`,
  );
  printLoad(loadBefore, loadAfter);
  const same =
    memory.size === firstEntry.entries.size &&
    ids
      .slice(-memory.size)
      .every((id) => memory.find('churn', id) !== undefined && firstEntry.entries.has(`churn\n${id}`));
  console.log(same ? 'both hold the same newest predictions' : 'MISMATCH: the two memories hold different predictions');
  console.log(
    `BENCH_JSON ${JSON.stringify({
      ...benchFacts('prediction-memory', loadBefore, loadAfter),
      predictions: total,
      capacity: DEFAULT_PREDICTION_MEMORY.maxEntries,
      queueUsPerPrediction: queued,
      firstEntryUsPerPrediction: reference,
      ok: same,
    })}`,
  );
  return same ? 0 : 1;
}

runBenchmark('prediction memory benchmark', main, () => undefined);
