import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { SortScratch, sortedFinite } from './sort';
import { compareNumeric, profileNumeric, type NumericComparison, type NumericSummary } from './kernels';
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

/** Memory a thread reuses from task to task: the sort's scratch array and the current column's sorted copy. */
export class KernelBuffers {
  readonly scratch = new SortScratch();
  readonly current = new SortScratch();
}

/**
 * Runs one task; `shared` puts a profile's sorted values on shared memory (for later work in workers). The sorted
 * copy of a current column lives only for its task, in `buffers`.
 */
export function runKernel(task: KernelTask, shared = false, buffers = new KernelBuffers()): KernelResult {
  if (task.kind === 'profile') {
    // profileNumeric completes the sort as it reads the values.
    const sorted = sortedFinite(task.values, { shared, scratch: buffers.scratch, partial: true });
    return { summary: profileNumeric(sorted, task.bins), sorted };
  }
  const current = sortedFinite(task.current, {
    scratch: buffers.scratch,
    into: buffers.current.take(task.current.length),
  });
  return compareNumeric(task.reference, current, task.edges, task.alternative, task.ksMode);
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

/** How long worker threads are kept once idle: a profile is usually followed at once by a comparison. */
export const WORKER_IDLE_MS = 1000;

/** Idle worker threads (unref'd: they never keep the process alive), closed WORKER_IDLE_MS after the last run. */
const idle: Worker[] = [];
const exited = new WeakSet<Worker>();
let idleTimer: NodeJS.Timeout | undefined;

function takeWorkers(script: string, count: number): Worker[] {
  clearTimeout(idleTimer);
  const pool = idle.splice(0, count).filter((w) => !exited.has(w));
  for (const w of pool) w.ref();
  while (pool.length < count) {
    const worker = new Worker(script);
    worker.once('exit', () => exited.add(worker));
    pool.push(worker);
  }
  return pool;
}

/** Keeps the workers of a run that ended well (up to one per core), for the next run. */
function releaseWorkers(pool: Worker[]): void {
  for (const worker of pool) {
    if (idle.length < availableParallelism() && !exited.has(worker)) {
      worker.unref();
      idle.push(worker);
    } else void worker.terminate();
  }
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    for (const worker of idle.splice(0)) void worker.terminate();
  }, WORKER_IDLE_MS);
  idleTimer.unref();
}

/**
 * Runs the tasks, on `workers` worker threads (largest first, each worker taking the next when it is done) or on this
 * thread when `workers` is 0 or no compiled worker script exists. Every copy of a column (its finite values) is made
 * inside the task, so the calling thread only hands out work (and may do other work while the tasks run: the tasks
 * are posted before this returns). Worker threads are reused from the previous run when it ended less than
 * WORKER_IDLE_MS ago: starting one and compiling its code again costs tens of milliseconds.
 */
export async function runKernels(tasks: readonly KernelTask[], workers: number): Promise<KernelResult[]> {
  const script = workers > 0 ? workerScript() : null;
  if (!script) {
    const buffers = new KernelBuffers();
    return tasks.map((t) => runKernel(t, false, buffers));
  }
  const order = tasks.map((_, i) => i).sort((a, b) => sizeOf(tasks[b]!) - sizeOf(tasks[a]!));
  const results = new Array<KernelResult>(tasks.length);
  let next = 0;
  const pool = takeWorkers(script, workers);
  const detach: (() => void)[] = [];
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
            const onMessage = (m: { index: number; result?: KernelResult; error?: string }) => {
              if (m.error !== undefined) {
                reject(new Error(m.error));
                return;
              }
              results[m.index] = m.result!;
              take();
            };
            const onExit = (code: number) => reject(new Error(`drift worker exited with code ${code}`));
            worker.on('message', onMessage);
            worker.on('error', reject);
            worker.on('exit', onExit);
            detach.push(() => {
              worker.off('message', onMessage);
              worker.off('error', reject);
              worker.off('exit', onExit);
            });
            take();
          }),
      ),
    );
  } catch (err) {
    // Other workers may still be busy with a task of this run: none is reused.
    for (const d of detach) d();
    await Promise.all(pool.map((w) => w.terminate()));
    throw err;
  }
  for (const d of detach) d();
  releaseWorkers(pool);
  return results;
}
