import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure, CancelledFailure, type LogLevel, type LogMetadata, type Logger } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { createTrainingActivities, type TrainModelInput } from '../../src/activities/training';
import { projectRoot } from '../../src/config/paths';
import { trainerPython } from '../../src/config/toolchain';
import { ErrorType } from '../../src/shared/errors';
import { tempDir } from '../helpers/temp';

const ROOT = projectRoot();
const TRAINER = join(ROOT, 'test', 'fixtures', 'trainers', 'forking-trainer.py');

class CapturingLogger implements Logger {
  readonly entries: { level: LogLevel; message: string; meta?: LogMetadata }[] = [];
  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    this.entries.push({ level, message, ...(meta ? { meta } : {}) });
  }
  trace = (m: string, meta?: LogMetadata) => this.log('TRACE', m, meta);
  debug = (m: string, meta?: LogMetadata) => this.log('DEBUG', m, meta);
  info = (m: string, meta?: LogMetadata) => this.log('INFO', m, meta);
  warn = (m: string, meta?: LogMetadata) => this.log('WARN', m, meta);
  error = (m: string, meta?: LogMetadata) => this.log('ERROR', m, meta);
}

/**
 * Whether `pid` still runs. A zombie counts as gone: it is dead and only waits to be reaped, and an orphan's new
 * parent may never reap it (this sandbox's PID 1 does not, nor does a container's init that is not a real init).
 */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !['Z', 'X'].includes(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return false;
  }
}

/**
 * trainModel as a worker runs it, in the SDK's activity test environment, on a real trainer process that forks a
 * worker process: stopping the trainer must stop both.
 */
describe('trainModel stops the trainer process group', () => {
  const dir = tempDir('training-cancellation-');
  const started: number[] = [];
  afterAll(() => {
    // A failed assertion must not leave sleepers behind.
    for (const pid of started) if (running(pid)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const setup = (stopGraceMs: number, params: Record<string, unknown>) => {
    const { trainModel } = createTrainingActivities({
      artifactsDir: join(dir, 'artifacts'),
      python: trainerPython(),
      root: ROOT,
      stopGraceMs,
    });
    const logger = new CapturingLogger();
    const env = new MockActivityEnvironment(undefined, { logger });
    const beats: unknown[] = [];
    env.on('heartbeat', (details: unknown) => beats.push(details));
    const name = `run-${started.length}-${Date.now()}`;
    const pidFile = join(dir, `${name}.pids`);
    const input: TrainModelInput = {
      lifecycleId: name,
      model: 'forking',
      version: 'v1',
      program: TRAINER,
      dataDir: dir,
      params: { ...params, pidFile },
    };
    const run = env.run(trainModel, input).catch((err: unknown) => err);
    const pids = async () => {
      await expect.poll(() => existsSync(pidFile)).toBe(true);
      const both = JSON.parse(readFileSync(pidFile, 'utf8')) as { trainer: number; worker: number };
      started.push(both.trainer, both.worker);
      return both;
    };
    return { env, logger, beats, run, pids };
  };

  it('kills a trainer that ignores SIGTERM, and the worker it forked, with SIGKILL after the grace period', async () => {
    const graceMs = 1_000;
    const { env, logger, beats, run, pids } = setup(graceMs, { ignoreSigterm: true });
    const { trainer, worker } = await pids();
    expect([running(trainer), running(worker)]).toEqual([true, true]);

    const cancelledAt = performance.now();
    env.cancel();
    const failure = await run;
    const tookMs = performance.now() - cancelledAt;

    expect(failure).toBeInstanceOf(CancelledFailure);
    // The activity reports its cancellation only once the whole group is gone.
    expect([running(trainer), running(worker)]).toEqual([false, false]);
    expect(tookMs).toBeGreaterThanOrEqual(graceMs - 50);
    expect(tookMs).toBeLessThan(graceMs + 5_000);
    expect(beats.at(-1)).toMatchObject({
      step: 'stopped',
      pgid: trainer,
      reason: 'CANCELLED',
      endedBy: 'SIGKILL',
      killed: expect.arrayContaining([trainer, worker]),
      survivors: [],
    });
    expect(logger.entries).toContainEqual(
      expect.objectContaining({ level: 'WARN', message: 'trainer stopped: SIGKILL was needed after the grace period' }),
    );
  }, 20_000);

  it('stops a timed-out trainer that honours SIGTERM without waiting for the grace period', async () => {
    const graceMs = 8_000;
    const { env, beats, run, pids } = setup(graceMs, {});
    const { trainer, worker } = await pids();

    const cancelledAt = performance.now();
    // As the worker delivers a heartbeat or start-to-close timeout.
    env.cancel('TIMED_OUT');
    const failure = await run;

    expect(failure).toBeInstanceOf(CancelledFailure);
    expect(performance.now() - cancelledAt).toBeLessThan(graceMs);
    expect([running(trainer), running(worker)]).toEqual([false, false]);
    expect(beats.at(-1)).toMatchObject({
      step: 'stopped',
      reason: 'TIMED_OUT',
      endedBy: 'SIGTERM',
      terminated: expect.arrayContaining([trainer, worker]),
      killed: [],
    });
  }, 20_000);

  it('fails a trainer that exits leaving its forked worker running, and kills the worker', async () => {
    const { beats, logger, run, pids } = setup(60_000, { ignoreSigterm: true, exitCode: 1 });
    const { worker } = await pids();

    // The worker holds the trainer's stdout open: the activity ends only because it is killed.
    const failure = await run;

    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({
      type: ErrorType.TrainingFailed,
      message: 'trainer exited with code 1: trainer giving up',
    });
    expect(running(worker)).toBe(false);
    expect(beats.at(-1)).toMatchObject({
      step: 'stopped',
      reason: 'trainer-exited',
      endedBy: 'SIGKILL',
      killed: [worker],
    });
    expect(logger.entries).toContainEqual(
      expect.objectContaining({
        level: 'WARN',
        message: 'trainer exited leaving processes running in its group: killed them with SIGKILL',
      }),
    );
  }, 20_000);
});
