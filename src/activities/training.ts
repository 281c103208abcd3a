import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, isAbsolute, join, relative, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import { artifactDigest, ArtifactReadError } from '../artifacts/digest';
import { ArtifactStoreError, type ArtifactStore } from '../artifacts/store';
import type { LifecycleMetrics } from '../metrics/lifecycle-metrics';
import { ErrorType } from '../shared/errors';
import { lineRedactor, MIN_KNOWN_SECRET_LENGTH } from '../shared/redact';
import { clipped } from '../shared/text';
import { PROFILE_FILE } from '../drift/profile';
import { writeTrainingProfile } from './data';
import {
  killGroupOnExit,
  killLeftovers,
  processExists,
  terminateGroup,
  underParentDeathSignal,
  type GroupStop,
} from './process-group';
import { countCsvRows } from '../drift/csv';
import { watchProcess, type ProcessUsage } from './process-usage';

export interface TrainingDeps {
  /** Where this worker trains: <artifactsDir>/<model>/<version>/<lifecycle>/ */
  artifactsDir: string;
  /**
   * The store every finished artifact is put into, for the other hosts to fetch it from (absent: none; the result then
   * has no `artifactUri` and readers use `artifactDir`, as before the store).
   */
  artifactStore?: ArtifactStore;
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
  /** Worker-side rules for a model's trainer, from the platform policy (absent: DEFAULT_TRAINER_POLICY). */
  trainerPolicy?: (model: string) => TrainerPolicy;
}

/** What a model's trainer may use of the worker: decided on the worker (platform policy), never by the spec. */
export interface TrainerPolicy {
  /** Names of the worker's environment variables the trainer gets, when set; nothing else of the environment. */
  env: readonly string[];
  /**
   * Folders the training program must resolve under (symbolic links followed); relative ones are from the project
   * root. Empty: no program may run.
   */
  programRoots: readonly string[];
}

/**
 * What a Python trainer needs to run, and nothing with credentials: the search path, home and temp folders, locale
 * and time zone, the interpreter's module path and virtualenv, thread counts of the numeric libraries, and the GPUs
 * the worker was given.
 */
export const DEFAULT_TRAINER_ENV: readonly string[] = [
  'PATH',
  'HOME',
  'LANG',
  'LC_ALL',
  'LC_CTYPE',
  'TZ',
  'TMPDIR',
  'PYTHONPATH',
  'VIRTUAL_ENV',
  'PYTHONHASHSEED',
  'OMP_NUM_THREADS',
  'OPENBLAS_NUM_THREADS',
  'MKL_NUM_THREADS',
  'CUDA_VISIBLE_DEVICES',
];

/** The default environment, and programs only from the project itself. */
export const DEFAULT_TRAINER_POLICY: TrainerPolicy = { env: DEFAULT_TRAINER_ENV, programRoots: ['.'] };

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
  /** `artifactDigest` of the artifact folder, computed once the trainer had exited and profile.json was written. */
  artifactDigest: string;
  /** Where the artifact store has it (`<store>/<model>/<version>/<lifecycle>/sha256-<hex>`); absent without a store. */
  artifactUri?: string;
}

const LOG_TAIL_LINES = 40;
/** A log-tail line is cut to this: the tail goes into workflow history and alerts. */
const LOG_LINE_CHARS = 2_000;
const HEARTBEAT_EVERY_MS = 5_000;

/** The trainer exits 2 when its input (params, data paths) is wrong: retrying cannot help. */
const BAD_INPUT_EXIT = 2;

async function readMetrics(dir: string): Promise<Record<string, number> | null> {
  const file = join(dir, 'metrics.json');
  if (!existsSync(file) || !existsSync(join(dir, 'model.onnx')) || !existsSync(join(dir, 'model.json'))) return null;
  const raw = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(raw).filter((e): e is [string, number] => typeof e[1] === 'number'));
}

/** The trainer's environment: the variables of `names` that the worker has set (own properties only), nothing else. */
export function trainerEnv(names: readonly string[], from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return Object.fromEntries(
    names.flatMap((name) => {
      const value = Object.hasOwn(from, name) ? from[name] : undefined;
      return value === undefined ? [] : [[name, value] as const];
    }),
  );
}

/**
 * Values of the worker's environment the trainer was not given, redacted wherever they appear in its log: it may have
 * found them another way (a credentials file, another process). Short values are left out, and so are existing folders
 * and search paths: they are no secret, and redacting them would garble every path the trainer logs.
 */
export function workerSecrets(
  given: Readonly<Record<string, string>>,
  from: NodeJS.ProcessEnv = process.env,
): string[] {
  const passed = new Set(Object.values(given));
  return Object.entries(from).flatMap(([name, value]) =>
    value === undefined ||
    Object.hasOwn(given, name) ||
    passed.has(value) ||
    value.length < MIN_KNOWN_SECRET_LENGTH ||
    existingPaths(value)
      ? []
      : [value],
  );
}

function existingPaths(value: string): boolean {
  const parts = value.split(delimiter).filter((p) => p !== '');
  return parts.length > 0 && parts.every((p) => isAbsolute(p) && existsSync(p));
}

/**
 * Where `path` really is: its real path when it resolves, else the real path of its deepest ancestor that does with
 * the rest appended (a link in that ancestor still counts, so a missing file behind a link is placed where it points).
 */
async function realLocation(path: string): Promise<{ real: string; found: boolean }> {
  const real = await realpath(path).catch(() => null);
  if (real !== null) return { real, found: true };
  const rest: string[] = [];
  for (let dir = path; dirname(dir) !== dir;) {
    rest.unshift(basename(dir));
    dir = dirname(dir);
    const ancestor = await realpath(dir).catch(() => null);
    if (ancestor !== null) return { real: join(ancestor, ...rest), found: false };
  }
  return { real: path, found: false };
}

/**
 * The real path of the training program, which must be a file under one of `roots` (real paths compared, links
 * followed); else a non-retryable InvalidSpec. A program outside the roots gets the same refusal whether or not it
 * exists: the spec's author learns nothing about the worker's files outside them.
 */
async function allowedProgram(program: string, named: string, roots: readonly string[]): Promise<string> {
  const realRoots = (await Promise.all(roots.map((r) => realpath(r).catch(() => null)))).filter(
    (r): r is string => r !== null,
  );
  const { real, found } = await realLocation(program);
  const refuse = (why: string) =>
    ApplicationFailure.create({
      type: ErrorType.InvalidSpec,
      message: `training program ${named} ${why}`,
      nonRetryable: true,
      details: [{ program: named, programRoots: roots }],
    });
  if (!realRoots.some((root) => real.startsWith(root.endsWith(sep) ? root : root + sep))) {
    throw refuse(`is not under an allowed program root (${roots.join(', ') || 'none allowed'})`);
  }
  const file =
    found &&
    (await stat(real).then(
      (s) => s.isFile(),
      () => false,
    ));
  if (!file) throw refuse('is not a readable file');
  return real;
}

/** A trainer's working folder in the temp dir: `ml-train-<worker pid>-<model>-<random>`. */
const WORK_DIR_PREFIX = 'ml-train-';
const WORK_DIR_OWNER = /^ml-train-(\d+)-/;

/**
 * Removes the trainers' working folders in `dir` (default: the temp dir) whose worker process no longer exists: a
 * worker killed mid-training never got to remove its trainer's folder. A folder of a live process (this one or
 * another worker on the host) stays, and so does one whose pid was reused since. Returns the folders removed.
 */
export async function removeOrphanedWorkDirs(dir: string = tmpdir()): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const owner = WORK_DIR_OWNER.exec(name);
    if (!owner) continue;
    const pid = Number(owner[1]);
    if (pid === process.pid || processExists(pid)) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(join(dir, name));
  }
  return removed;
}

export function createTrainingActivities(deps: TrainingDeps) {
  const resolve = (p: string) => (isAbsolute(p) ? p : join(deps.root, p));
  const artifactsDir = resolve(deps.artifactsDir);
  const graceMs = deps.stopGraceMs ?? TRAINER_STOP_GRACE_MS;
  const policyOf = deps.trainerPolicy ?? (() => DEFAULT_TRAINER_POLICY);
  /**
   * Puts the finished folder into the store, heartbeating while it uploads. Idempotent: the URI ends in the digest and
   * a complete artifact already there is left as is, so a retried activity (or a reused artifact) uploads nothing
   * twice. The key is the folder's own path below artifactsDir, one per lifecycle run.
   */
  const stored = async (artifactDir: string, digest: string): Promise<{ artifactUri?: string }> => {
    const store = deps.artifactStore;
    if (!store) return {};
    const ctx = Context.current();
    const key = relative(artifactsDir, artifactDir).split(sep).map(keySegment).join('/');
    const beat = setInterval(() => ctx.heartbeat({ step: 'storing', key }), HEARTBEAT_EVERY_MS);
    try {
      const put = await store.put(artifactDir, key);
      if (put.digest !== digest) {
        // The folder changed between the digest and the upload: what the store has is not what was recorded.
        throw ApplicationFailure.create({
          type: ErrorType.ArtifactInvalid,
          message: `${artifactDir} changed while it was stored (digest ${put.digest}, recorded ${digest})`,
        });
      }
      log.info('artifact stored', { uri: put.uri, uploaded: put.uploaded, files: put.files, bytes: put.bytes });
      return { artifactUri: put.uri };
    } catch (err) {
      if (!(err instanceof ArtifactStoreError) || err.kind === 'unavailable') throw err;
      throw ApplicationFailure.create({
        type: ErrorType.ArtifactInvalid,
        message: `the artifact cannot be stored (${err.kind}): ${err.message}`,
        nonRetryable: err.kind === 'invalid',
      });
    } finally {
      clearInterval(beat);
    }
  };
  const activities = {
    /**
     * Runs the training program as a real process and heartbeats its progress. The artifact is written to a
     * per-attempt folder and renamed into place only when complete, so a retry after a crash finds either a finished
     * artifact (returned as is: training is done once) or nothing, never a half-written one.
     *
     * The trainer runs with least privilege: a program from the policy's roots only, the policy's environment
     * variables only, in a working folder of its own (removed after the run), in its own process group. Its log tail
     * is redacted, and the artifact's digest is taken once it has exited.
     */
    async trainModel(input: TrainModelInput): Promise<TrainModelResult> {
      const ctx = Context.current();
      const policy = policyOf(input.model);
      const program = await allowedProgram(resolve(input.program), input.program, policy.programRoots.map(resolve));
      const safeId = input.lifecycleId.replace(/[^A-Za-z0-9._-]/g, '_');
      const artifactDir = join(artifactsDir, input.model, input.version, safeId);
      const trainCsv = join(resolve(input.dataDir), 'train.csv');
      const datasetRows = await countCsvRows(trainCsv);
      const existing = await readMetrics(artifactDir);
      if (existing) {
        log.info('training artifact already complete; reusing it', { artifactDir });
        if (!existsSync(join(artifactDir, PROFILE_FILE))) await writeTrainingProfile(artifactDir, trainCsv);
        const digest = await artifactDigest(artifactDir).catch((err: unknown) => {
          if (!(err instanceof ArtifactReadError)) throw err;
          return null;
        });
        if (digest !== null) {
          return {
            ...(await stored(artifactDir, digest)),
            artifactDir,
            metrics: existing,
            durationMs: 0,
            reused: true,
            logTail: [],
            attempt: ctx.info.attempt,
            usage: {},
            datasetRows,
            artifactDigest: digest,
          };
        }
        // Not an artifact the gateway would load (a link, a folder where a file should be): train afresh.
        log.warn('training artifact of an earlier attempt is unusable; training again', { artifactDir });
        await rm(artifactDir, { recursive: true, force: true });
      }
      const attemptDir = `${artifactDir}.attempt-${ctx.info.attempt}.tmp`;
      await rm(attemptDir, { recursive: true, force: true });
      await mkdir(attemptDir, { recursive: true });

      // Every path the trainer gets is absolute: it runs in a working folder of its own, not in the project.
      const args = [
        program,
        '--data-dir',
        resolve(input.dataDir),
        '--out',
        attemptDir,
        '--params',
        JSON.stringify(input.params),
      ];
      const env = trainerEnv(policy.env);
      const known = workerSecrets(env);
      const workDir = await mkdtemp(join(tmpdir(), `${WORK_DIR_PREFIX}${process.pid}-${input.model}-`));
      log.info('starting training', {
        program,
        attempt: ctx.info.attempt,
        attemptDir,
        workDir,
        env: Object.keys(env),
      });
      const started = performance.now();
      const tail: string[] = [];
      const keep = (line: string) => {
        tail.push(clipped(line, LOG_LINE_CHARS));
        if (tail.length > LOG_TAIL_LINES) tail.shift();
      };
      let progress: unknown = { step: 'start' };

      // detached: the trainer leads its own process group, so that stopping it reaches every process it forked (data
      // loaders, workers). Not unref'd: the worker still waits for the trainer and reads its output. Under the
      // parent-death signal: a worker killed outright takes its trainer with it (SIGTERM), rather than leaving it on
      // the accelerator while Temporal retries the training on another host.
      const run = underParentDeathSignal(deps.python, args);
      if (!run.guarded) log.warn('no setpriv here: this trainer outlives its worker if the worker is killed', {});
      const child = spawn(run.command, run.args, {
        cwd: workDir,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
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
      // Every line is redacted before it is kept or heartbeated: both leave the worker (history, alerts).
      const redactOut = lineRedactor(known);
      createInterface({ input: child.stdout }).on('line', (raw) => {
        const line = redactOut(raw);
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
      const redactErr = lineRedactor(known);
      createInterface({ input: child.stderr }).on('line', (raw) => keep(redactErr(raw)));
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
      // The working folder goes once the trainer's group has: nothing of it outlives the run.
      await rm(workDir, { recursive: true, force: true });

      if (exit.error || exit.code !== 0) {
        await rm(attemptDir, { recursive: true, force: true });
        if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
        // setpriv reports a program it cannot execute as exit 126/127 and one stderr line.
        const notStarted =
          run.guarded && (exit.code === 126 || exit.code === 127)
            ? tail.find((line) => line.startsWith('setpriv: failed to execute'))
            : undefined;
        const why = exit.error
          ? `cannot start ${deps.python}: ${exit.error.message}`
          : notStarted
            ? `cannot start ${deps.python}: ${notStarted}`
            : exit.signal
              ? `trainer killed by ${exit.signal}`
              : `trainer exited with code ${exit.code}`;
        const lastLine = tail.at(-1);
        throw ApplicationFailure.create({
          type: exit.code === BAD_INPUT_EXIT ? ErrorType.TrainingBadInput : ErrorType.TrainingFailed,
          message: lastLine && !notStarted ? `${why}: ${lastLine}` : why,
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
        await writeTrainingProfile(attemptDir, trainCsv);
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
      // Taken from the final folder, after the trainer's whole group has gone: what is recorded is what is served,
      // and any later change of the model files is caught by the gateway's digest check.
      let digest: string;
      try {
        digest = await artifactDigest(artifactDir);
      } catch (err) {
        if (!(err instanceof ArtifactReadError)) throw err;
        await rm(artifactDir, { recursive: true, force: true });
        throw ApplicationFailure.create({
          type: ErrorType.ArtifactInvalid,
          message: `the trainer's artifact cannot be served: ${err.message}`,
          details: [{ logTail: tail }],
        });
      }
      log.info('training finished', { artifactDir, artifactDigest: digest, durationMs: Math.round(durationMs) });
      return {
        ...(await stored(artifactDir, digest)),
        artifactDir,
        metrics,
        durationMs,
        reused: false,
        logTail: tail,
        attempt: ctx.info.attempt,
        usage: measured,
        datasetRows,
        artifactDigest: digest,
      };
    },
  };
  return { trainModel: timed(activities.trainModel, deps.metrics) };
}

/**
 * A store key's segment for a folder name: as is when the store takes it (at most 128 characters of `[A-Za-z0-9._-]`:
 * always so for model and version names), else a readable prefix and a hash (a lifecycle id of up to 256 characters).
 */
function keySegment(name: string): string {
  if (/^[A-Za-z0-9._-]{1,128}$/.test(name) && name !== '.' && name !== '..') return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 16);
  return `${name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100)}-${hash}`;
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
