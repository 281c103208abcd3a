import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { sortFloat64 } from './sort';
import { compareNumeric, finiteValues, profileNumeric, type NumericComparison, type NumericSummary } from './kernels';
import type { Alternative, KsMode } from './stats';

/**
 * One feature's numeric work, on a column as read (NaN where a cell had no finite number). Arrays on a
 * SharedArrayBuffer are shared with a worker; others are copied into it.
 */
export type KernelTask =
  | { kind: 'profile'; values: Float64Array; bins: number }
  | {
      kind: 'compare';
      /** Sorted finite reference values (from a profile). */
      reference: Float64Array;
      current: Float64Array;
      edges: number[];
      alternative: Alternative;
      ksMode: KsMode;
    };

/** A profile task's result: the summary and the sorted finite values (on shared memory when made in a worker). */
export interface ProfiledColumn {
  summary: NumericSummary;
  sorted: Float64Array;
}

export type KernelResult = ProfiledColumn | NumericComparison;

/** Runs one task; `shared` puts a profile's sorted values on shared memory (for later work in workers). */
export function runKernel(task: KernelTask, shared = false): KernelResult {
  if (task.kind === 'profile') {
    const sorted = sortFloat64(finiteValues(task.values, shared));
    return { summary: profileNumeric(sorted, task.bins), sorted };
  }
  return compareNumeric(
    task.reference,
    sortFloat64(finiteValues(task.current, false)),
    task.edges,
    task.alternative,
    task.ksMode,
  );
}

/** Below this many values in all tasks together, starting workers costs more than it saves. */
export const PARALLEL_MIN_VALUES = 2_000_000;

/** The compiled worker script: next to this module when running from `dist`, else the build's copy, if any. */
function workerScript(): string | null {
  const beside = join(__dirname, 'worker.js');
  if (existsSync(beside)) return beside;
  const built = join(__dirname, '..', '..', 'dist', 'src', 'drift', 'worker.js');
  return existsSync(built) ? built : null;
}

const sizeOf = (t: KernelTask) => (t.kind === 'profile' ? t.values.length : t.reference.length + t.current.length);

/**
 * How many worker threads to use by default for `tasks` tasks over `values` values in all: one per core when the work
 * is large enough to pay for starting them and there are at least two tasks, otherwise none (this thread).
 */
export function autoWorkers(values: number, tasks: number): number {
  if (values < PARALLEL_MIN_VALUES || tasks < 2) return 0;
  return Math.min(availableParallelism(), tasks);
}

/**
 * Runs the tasks, on `workers` worker threads (largest first, each worker taking the next when it is done) or on this
 * thread when `workers` is 0 or no compiled worker script exists. Every copy of a column (its finite values) is made
 * inside the task, so the calling thread only hands out work.
 */
export async function runKernels(tasks: readonly KernelTask[], workers: number): Promise<KernelResult[]> {
  const script = workers > 0 ? workerScript() : null;
  if (!script) return tasks.map((t) => runKernel(t));
  const order = tasks.map((_, i) => i).sort((a, b) => sizeOf(tasks[b]!) - sizeOf(tasks[a]!));
  const results = new Array<KernelResult>(tasks.length);
  let next = 0;
  const pool = Array.from({ length: workers }, () => new Worker(script));
  try {
    await Promise.all(
      pool.map(
        (worker) =>
          new Promise<void>((resolve, reject) => {
            const take = () => {
              if (next >= order.length) {
                resolve();
                return;
              }
              const index = order[next++]!;
              worker.postMessage({ index, task: tasks[index] });
            };
            worker.on('message', (m: { index: number; result?: KernelResult; error?: string }) => {
              if (m.error !== undefined) {
                reject(new Error(m.error));
                return;
              }
              results[m.index] = m.result!;
              take();
            });
            worker.on('error', reject);
            worker.on('exit', (code) => {
              if (next < order.length || code !== 0) reject(new Error(`drift worker exited with code ${code}`));
            });
            take();
          }),
      ),
    );
  } finally {
    await Promise.all(pool.map((w) => w.terminate()));
  }
  return results;
}
