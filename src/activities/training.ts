import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { createInterface } from 'node:readline';
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import type { LifecycleMetrics } from '../metrics/lifecycle-metrics';
import { ErrorType } from '../shared/errors';
import { PROFILE_FILE } from '../drift/profile';
import { writeTrainingProfile } from './data';
import { killGroupOnExit, killLeftovers, terminateGroup, type GroupStop } from './process-group';
import { countCsvRows, watchProcess, type ProcessUsage } from './process-usage';

export interface TrainingDeps {
  /** Root of the artifact store: <artifactsDir>/<model>/<version>/<lifecycle>/ */
  artifactsDir: string;
  /** Python that runs the training program. */
  python: string;
  /** Relative program and data paths are resolved against it. */
  root: string;
  /** Renews a quota lease; false when the pool no longer holds it. */
  renewLease?: (lease: TrainingLease) => Promise<boolean>;
  /** Where training durations go (the worker's Prometheus metrics). */
  metrics?: Pick<LifecycleMetrics, 'trainingFinished'>;
  /** Between SIGTERM and SIGKILL to a stopped trainer's process group (default TRAINER_STOP_GRACE_MS). */
  stopGraceMs?: number;
}

/**
 * Grace period of a trainer whose activity is cancelled, timed out or shut down with its worker: the trainer's whole
 * process group gets SIGTERM, then SIGKILL this long after if any of it still runs. Long enough to flush a checkpoint
 * or a log, short enough that the hardware follows its quota lease (released on cancellation) back to the pool soon.
 * The activity reports its cancellation only once the group is gone.
 */
export const TRAINER_STOP_GRACE_MS = 10_000;

/** The quota lease training runs under; renewed while the trainer is alive. */
export interface TrainingLease {
  pool: string;
  leaseId: string;
  ttlMs: number;
}

export interface TrainModelInput {
  lifecycleId: string;
  model: string;
  version: string;
  program: string;
  dataDir: string;
  params: Record<string, unknown>;
  lease?: TrainingLease;
}

export interface TrainModelResult {
  artifactDir: string;
  metrics: Record<string, number>;
  durationMs: number;
  /** True when a completed artifact of an earlier attempt was found and returned instead of training again. */
  reused: boolean;
  /** The activity attempt that produced the result (> 1 after a crashed or killed trainer was retried). */
  attempt: number;
  logTail: string[];
  /** Measured peak memory and CPU of the trainer process (absent when reused or not measurable here). */
  usage: ProcessUsage & { durationMs?: number };
  /** Rows of the training set. */
  datasetRows?: number;
}

const LOG_TAIL_LINES = 40;
const HEARTBEAT_EVERY_MS = 5_000;

/** The trainer exits 2 when its input (params, data paths) is wrong: retrying cannot help. */
const BAD_INPUT_EXIT = 2;

async function readMetrics(dir: string): Promise<Record<string, number> | null> {
  const file = join(dir, 'metrics.json');
  if (!existsSync(file) || !existsSync(join(dir, 'model.onnx')) || !existsSync(join(dir, 'model.json'))) return null;
  const raw = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(raw).filter((e): e is [string, number] => typeof e[1] === 'number'));
}

export function createTrainingActivities(deps: TrainingDeps) {
  const resolve = (p: string) => (isAbsolute(p) ? p : join(deps.root, p));
  const graceMs = deps.stopGraceMs ?? TRAINER_STOP_GRACE_MS;
  const activities = {
    /**
     * Runs the training program as a real process and heartbeats its progress. The artifact is written to a
     * per-attempt folder and renamed into place only when complete, so a retry after a crash finds either a finished
     * artifact (returned as is: training is done once) or nothing, never a half-written one.
     */
    async trainModel(input: TrainModelInput): Promise<TrainModelResult> {
      const ctx = Context.current();
      const safeId = input.lifecycleId.replace(/[^A-Za-z0-9._-]/g, '_');
      const artifactDir = join(deps.artifactsDir, input.model, input.version, safeId);
      const existing = await readMetrics(artifactDir);
      const datasetRows = await countCsvRows(join(resolve(input.dataDir), 'train.csv'));
      if (existing) {
        log.info('training artifact already complete; reusing it', { artifactDir });
        if (!existsSync(join(artifactDir, PROFILE_FILE))) {
          await writeTrainingProfile(artifactDir, join(resolve(input.dataDir), 'train.csv'));
        }
        return {
          artifactDir,
          metrics: existing,
          durationMs: 0,
          reused: true,
          logTail: [],
          attempt: ctx.info.attempt,
          usage: {},
          datasetRows,
        };
      }
      const attemptDir = `${artifactDir}.attempt-${ctx.info.attempt}.tmp`;
      await rm(attemptDir, { recursive: true, force: true });
      await mkdir(attemptDir, { recursive: true });

      const program = resolve(input.program);
      const args = [
        program,
        '--data-dir',
        resolve(input.dataDir),
        '--out',
        attemptDir,
        '--params',
        JSON.stringify(input.params),
      ];
      log.info('starting training', { program, attempt: ctx.info.attempt, attemptDir });
      const started = performance.now();
      const tail: string[] = [];
      const keep = (line: string) => {
        tail.push(line);
        if (tail.length > LOG_TAIL_LINES) tail.shift();
      };
      let progress: unknown = { step: 'start' };

      // detached: the trainer leads its own process group, so that stopping it reaches every process it forked (data
      // loaders, workers). Not unref'd: the worker still waits for the trainer and reads its output.
      const child = spawn(deps.python, args, { cwd: deps.root, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const pgid = child.pid;
      const untrack = pgid === undefined ? () => false : killGroupOnExit(pgid);
      // Set once, by whichever comes first: cancellation (SIGTERM, SIGKILL after the grace period) or the trainer's
      // own exit (SIGKILL at once to whatever it left running, which would also hold its stdout open).
      const stop: { done?: Promise<GroupStop> } = {};
      const onCancel = () => {
        if (pgid === undefined || stop.done) return;
        const why: unknown = ctx.cancellationSignal.reason;
        const reason = why instanceof Error ? why.message : String(why);
        // ctx.log, not log: the abort event runs outside the activity's async context.
        ctx.log.warn('stopping the trainer: SIGTERM to its process group', { pgid, reason, graceMs });
        ctx.heartbeat({ step: 'stopping', pgid, reason, graceMs });
        stop.done = terminateGroup(pgid, graceMs, reason);
      };
      ctx.cancellationSignal.addEventListener('abort', onCancel);
      // A cancellation that came while the attempt folder was prepared was before this listener.
      if (ctx.cancellationSignal.aborted) onCancel();
      child.on('exit', () => {
        if (pgid !== undefined && !stop.done) stop.done = killLeftovers(pgid, 'trainer-exited');
      });
      createInterface({ input: child.stdout }).on('line', (line) => {
        keep(line);
        try {
          const event = JSON.parse(line) as { event?: string };
          if (event.event === 'progress') {
            progress = event;
            ctx.heartbeat(progress);
          }
        } catch {
          // Not every stdout line is an event.
        }
      });
      createInterface({ input: child.stderr }).on('line', keep);
      const beat = setInterval(() => ctx.heartbeat(progress), HEARTBEAT_EVERY_MS);
      const usage = child.pid ? watchProcess(child.pid) : null;
      // The lease lives while the trainer does: renew it well within its TTL; a lost lease is logged, not fatal.
      const lease = input.lease;
      const renew =
        lease && deps.renewLease
          ? setInterval(
              () => {
                deps.renewLease!(lease).then(
                  (held) => {
                    if (!held) log.warn('quota lease no longer held by the pool (expired)', { leaseId: lease.leaseId });
                  },
                  (err: unknown) => log.warn('quota lease renewal failed', { error: String(err) }),
                );
              },
              Math.max(Math.min(lease.ttlMs / 3, 60_000), 100),
            )
          : null;
      const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((done) => {
        child.on('error', (error) => done({ code: null, signal: null, error }));
        child.on('close', (code, signal) => done({ code, signal }));
      }).finally(() => {
        clearInterval(beat);
        if (renew) clearInterval(renew);
        ctx.cancellationSignal.removeEventListener('abort', onCancel);
      });
      const stopped = await stop.done;
      if (stopped) reportStop(ctx, stopped);
      if (!stopped?.survivors.length) untrack();
      const durationMs = performance.now() - started;
      const measured = { ...usage?.stop(durationMs), durationMs };

      if (exit.error || exit.code !== 0) {
        await rm(attemptDir, { recursive: true, force: true });
        if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
        const why = exit.error
          ? `cannot start ${deps.python}: ${exit.error.message}`
          : exit.signal
            ? `trainer killed by ${exit.signal}`
            : `trainer exited with code ${exit.code}`;
        const lastLine = tail.at(-1);
        throw ApplicationFailure.create({
          type: exit.code === BAD_INPUT_EXIT ? ErrorType.TrainingBadInput : ErrorType.TrainingFailed,
          message: lastLine ? `${why}: ${lastLine}` : why,
          nonRetryable: exit.code === BAD_INPUT_EXIT,
          details: [{ exitCode: exit.code, signal: exit.signal, logTail: tail, attempt: ctx.info.attempt }],
        });
      }
      const metrics = await readMetrics(attemptDir);
      if (!metrics) {
        throw ApplicationFailure.create({
          type: ErrorType.ArtifactInvalid,
          message: `trainer exited 0 but ${attemptDir} lacks model.onnx, model.json or metrics.json`,
          details: [{ logTail: tail }],
        });
      }
      // The training set's profile travels with the artifact: every later drift check compares against it.
      try {
        await writeTrainingProfile(attemptDir, join(resolve(input.dataDir), 'train.csv'));
      } catch (err) {
        await rm(attemptDir, { recursive: true, force: true });
        throw ApplicationFailure.create({
          type: ErrorType.TrainingBadInput,
          message: `cannot profile the training set: ${(err as Error).message}`,
          nonRetryable: true,
        });
      }
      await rm(artifactDir, { recursive: true, force: true });
      await rename(attemptDir, artifactDir);
      log.info('training finished', { artifactDir, durationMs: Math.round(durationMs) });
      return {
        artifactDir,
        metrics,
        durationMs,
        reused: false,
        logTail: tail,
        attempt: ctx.info.attempt,
        usage: measured,
        datasetRows,
      };
    },
  };
  return { trainModel: timed(activities.trainModel, deps.metrics) };
}

/** Logs (and heartbeats) how a trainer's process group was stopped: always after a cancellation, else if it left any. */
function reportStop(ctx: Context, stopped: GroupStop): void {
  const cancelled = stopped.reason !== 'trainer-exited';
  if (!cancelled && stopped.killed.length === 0) return;
  ctx.heartbeat({ step: 'stopped', ...stopped });
  const message = !cancelled
    ? 'trainer exited leaving processes running in its group: killed them with SIGKILL'
    : stopped.endedBy === 'SIGKILL'
      ? 'trainer stopped: SIGKILL was needed after the grace period'
      : stopped.endedBy === 'SIGTERM'
        ? 'trainer stopped: SIGTERM sufficed'
        : 'trainer stopped: it had already exited';
  if (stopped.survivors.length > 0) ctx.log.error(`${message}, but some processes survived SIGKILL`, { ...stopped });
  else if (stopped.endedBy === 'SIGKILL') ctx.log.warn(message, { ...stopped });
  else ctx.log.info(message, { ...stopped });
}

/**
 * Reports each training run to the metrics, by the hardware class of the worker's task queue (`train-gpu` → `gpu`):
 * the trainer's process time of a finished run, the time until a failed or cancelled one gave up. A reused artifact
 * is no run.
 */
function timed(
  train: (input: TrainModelInput) => Promise<TrainModelResult>,
  metrics: TrainingDeps['metrics'],
): (input: TrainModelInput) => Promise<TrainModelResult> {
  if (!metrics) return train;
  return async (input) => {
    const ctx = Context.current();
    const hardwareClass = ctx.info.taskQueue.replace(/^train-/, '');
    const started = performance.now();
    try {
      const result = await train(input);
      if (!result.reused)
        metrics.trainingFinished({ hardwareClass, outcome: 'succeeded', durationMs: result.durationMs });
      return result;
    } catch (err) {
      const outcome = ctx.cancellationSignal.aborted ? 'cancelled' : 'failed';
      metrics.trainingFinished({ hardwareClass, outcome, durationMs: performance.now() - started });
      throw err;
    }
  };
}
