import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ARTIFACT_DIGEST_PATTERN, artifactDigest } from '../../src/artifacts/digest';
import {
  createTrainingActivities,
  DEFAULT_TRAINER_ENV,
  removeOrphanedWorkDirs,
  type TrainerPolicy,
  type TrainModelInput,
  type TrainModelResult,
  trainerEnv,
  workerSecrets,
} from '../../src/activities/training';
import { projectRoot } from '../../src/config/paths';
import { trainerPython } from '../../src/config/toolchain';
import { ErrorType } from '../../src/shared/errors';
import { tempDir } from '../helpers/temp';

const ROOT = projectRoot();
const PROBE = join(ROOT, 'test', 'fixtures', 'trainers', 'env-probe-trainer.py');
const CHURN = join(ROOT, 'examples', 'churn');
const API_KEY = 'sk-live-4f9c2a7e1b3d5f60a8c9e2b4d6f8a0c1';

/** The failure of a trainModel run that must fail. */
async function failureOf(run: Promise<TrainModelResult>): Promise<ApplicationFailure> {
  const err = await run.then(
    () => {
      throw new Error('trainModel succeeded, but it should have failed');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

/** The log tail of a TrainingFailed failure. */
function tailOf(failure: ApplicationFailure): string[] {
  return (failure.details?.[0] as { logTail: string[] }).logTail;
}

/**
 * The environment variable names the probe trainer printed, less LC_CTYPE: Python sets that one itself when it
 * coerces the C locale (PEP 538).
 */
function envNamesIn(tail: string[]): string[] {
  const line = tail.find((l) => l.startsWith('env names: '));
  expect(line).toBeDefined();
  return line!
    .slice('env names: '.length)
    .split(',')
    .filter((n) => n !== '' && n !== 'LC_CTYPE');
}

/**
 * trainModel as a worker runs it, in the SDK's activity test environment, on real trainer processes: what a trainer
 * can see of the worker (environment, working folder), which programs may run, what of its output leaves the worker,
 * and the digest of what it produced.
 */
describe('trainModel runs the trainer with least privilege', () => {
  const dir = tempDir('training-isolation-');
  let runs = 0;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // The worker's own secret, as envconfig reads it; restored after each test.
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env.TEMPORAL_API_KEY;
    process.env.TEMPORAL_API_KEY = API_KEY;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.TEMPORAL_API_KEY;
    else process.env.TEMPORAL_API_KEY = saved;
  });

  const train = (input: Partial<TrainModelInput>, trainerPolicy?: (model: string) => TrainerPolicy) => {
    const { trainModel } = createTrainingActivities({
      artifactsDir: join(dir, 'artifacts'),
      python: trainerPython(),
      root: ROOT,
      ...(trainerPolicy ? { trainerPolicy } : {}),
    });
    return new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') }).run<
      [TrainModelInput],
      TrainModelResult,
      typeof trainModel
    >(trainModel, {
      lifecycleId: `run-${++runs}`,
      model: 'probe',
      version: 'v1',
      program: PROBE,
      dataDir: dir,
      params: {},
      ...input,
    });
  };

  it("keeps the worker's credentials out of the trainer's environment and out of the failure's log tail", async () => {
    // A credentials file the trainer found on the worker's disk: its contents are printed raw.
    const found = join(dir, 'temporal-credentials');
    writeFileSync(found, `api_key ${API_KEY}\n`);
    const failure = await failureOf(
      train({
        params: {
          secretFile: found,
          print: ['DB_PASSWORD=hunter2-hunter2', 'Authorization: Bearer abcdefghijklmnopqrstuvwxyz', 'auc=0.83'],
        },
      }),
    );

    expect(failure.type).toBe(ErrorType.TrainingFailed);
    expect(failure.nonRetryable).toBe(false);
    const tail = tailOf(failure);
    const text = JSON.stringify({ tail, message: failure.message });
    expect(text).not.toContain(API_KEY);
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('abcdefghijklmnopqrstuvwxyz');
    expect(tail).toContain('key from env: None');
    expect(tail).toContain('found: api_key [redacted]');
    expect(tail).toContain('DB_PASSWORD=[redacted]');
    expect(tail).toContain('Authorization: Bearer [redacted]');
    expect(tail).toContain('auc=0.83');
    // Only allowlisted names reach the trainer.
    const names = envNamesIn(tail);
    expect(names).not.toContain('TEMPORAL_API_KEY');
    expect(names).toContain('PATH');
    for (const name of names) expect(DEFAULT_TRAINER_ENV).toContain(name);
    // Its own working folder, not the project, and gone after the run.
    const cwd = tail.find((l) => l.startsWith('cwd: '))!.slice('cwd: '.length);
    expect(cwd).not.toBe(ROOT);
    expect(cwd.startsWith(ROOT)).toBe(false);
    // Named for its worker, so that a worker of the host that starts after this one was killed can remove it.
    expect(basename(cwd)).toMatch(new RegExp(`^ml-train-${process.pid}-probe-`));
    expect(existsSync(cwd)).toBe(false);
  }, 30_000);

  it("passes exactly the policy's environment variables", async () => {
    process.env.ML_TEST_TRAINER_EXTRA = 'extra-value';
    try {
      const failure = await failureOf(
        train({}, () => ({ env: ['PATH', 'ML_TEST_TRAINER_EXTRA', 'ML_TEST_UNSET', 'toString'], programRoots: ['.'] })),
      );
      expect(envNamesIn(tailOf(failure))).toEqual(['ML_TEST_TRAINER_EXTRA', 'PATH']);
    } finally {
      delete process.env.ML_TEST_TRAINER_EXTRA;
    }
  }, 30_000);

  it('refuses a program outside the allowed roots, alike whether or not it exists', async () => {
    const outside = join(dir, 'elsewhere');
    mkdirSync(outside, { recursive: true });
    copyFileSync(PROBE, join(outside, 'train.py'));
    const exists = await failureOf(train({ program: join(outside, 'train.py') }));
    const missing = await failureOf(train({ program: join(outside, 'missing.py') }));

    for (const [failure, program] of [
      [exists, join(outside, 'train.py')],
      [missing, join(outside, 'missing.py')],
    ] as const) {
      expect(failure.type).toBe(ErrorType.InvalidSpec);
      expect(failure.nonRetryable).toBe(true);
      expect(failure.message).toBe(`training program ${program} is not under an allowed program root (${ROOT})`);
    }
  }, 30_000);

  it('follows links: a link under an allowed root to a program outside it is refused', async () => {
    const allowed = join(dir, 'trainers');
    const outside = join(dir, 'outside');
    mkdirSync(allowed, { recursive: true });
    mkdirSync(outside, { recursive: true });
    copyFileSync(PROBE, join(outside, 'train.py'));
    symlinkSync(join(outside, 'train.py'), join(allowed, 'link.py'));
    symlinkSync(outside, join(allowed, 'dir-link'));
    const policy = () => ({ env: DEFAULT_TRAINER_ENV, programRoots: [allowed] });

    for (const program of [join(allowed, 'link.py'), join(allowed, 'dir-link', 'missing.py'), '../../etc/passwd']) {
      const failure = await failureOf(train({ program }, policy));
      expect(failure.type).toBe(ErrorType.InvalidSpec);
      expect(failure.message).toContain('is not under an allowed program root');
    }
    // A real file under the root runs (and fails on its own terms); a missing one there is named as such.
    copyFileSync(PROBE, join(allowed, 'train.py'));
    expect((await failureOf(train({ program: join(allowed, 'train.py') }, policy))).type).toBe(
      ErrorType.TrainingFailed,
    );
    const missing = await failureOf(train({ program: join(allowed, 'nope.py') }, policy));
    expect(missing.type).toBe(ErrorType.InvalidSpec);
    expect(missing.message).toBe(`training program ${join(allowed, 'nope.py')} is not a readable file`);
    // No roots at all: nothing runs.
    const none = await failureOf(train({}, () => ({ env: DEFAULT_TRAINER_ENV, programRoots: [] })));
    expect(none.message).toContain('(none allowed)');
  }, 60_000);

  it('builds the environment from own, set variables only, and searches the log for the rest of long values', () => {
    const worker = { PATH: '/usr/bin:/bin', HOME: ROOT, TEMPORAL_API_KEY: API_KEY, SHORT: 'abc', CWD: ROOT };
    const env = trainerEnv(['PATH', 'HOME', 'UNSET', 'toString', 'constructor'], worker);
    expect(env).toEqual({ PATH: '/usr/bin:/bin', HOME: ROOT });
    // Existing folders are no secret, nor is what the trainer was given anyway.
    expect(workerSecrets(env, { ...worker, OTHER_HOME: ROOT, DSN: 'postgres://u:p@h/db' })).toEqual([
      API_KEY,
      'postgres://u:p@h/db',
    ]);
  });

  it("returns the digest of the example trainer's artifact, and the digest changes when model.onnx does", async () => {
    const input: Partial<TrainModelInput> = {
      lifecycleId: 'churn-digest',
      model: 'churn',
      program: join(CHURN, 'train.py'),
      dataDir: join(CHURN, 'data'),
      params: { nEstimators: 20 },
    };
    const trained = await train(input);

    expect(trained.reused).toBe(false);
    expect(trained.artifactDigest).toMatch(ARTIFACT_DIGEST_PATTERN);
    expect(trained.artifactDigest).toBe(await artifactDigest(trained.artifactDir));
    expect(existsSync(join(trained.artifactDir, 'profile.json'))).toBe(true);

    appendFileSync(join(trained.artifactDir, 'model.onnx'), Buffer.from([0]));
    const changed = await artifactDigest(trained.artifactDir);
    expect(changed).not.toBe(trained.artifactDigest);

    // A retry that finds the complete artifact returns it with the digest of what is there now.
    const reused = await train(input);
    expect(reused.reused).toBe(true);
    expect(reused.artifactDigest).toBe(changed);
  }, 120_000);
  it('names the interpreter it cannot start, and leaves nothing behind', async () => {
    const missing = join(dir, 'no-such-python');
    const { trainModel } = createTrainingActivities({
      artifactsDir: join(dir, 'artifacts'),
      python: missing,
      root: ROOT,
    });
    const failure = await failureOf(
      new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') }).run(trainModel, {
        lifecycleId: 'no-python',
        model: 'probe',
        version: 'v1',
        program: PROBE,
        dataDir: dir,
        params: {},
      }),
    );
    expect(failure.type).toBe(ErrorType.TrainingFailed);
    expect(failure.message).toMatch(new RegExp(`^cannot start ${missing}: .*${missing}`));
    expect(readdirSync(join(dir, 'artifacts', 'probe', 'v1')).filter((n) => n.startsWith('no-python'))).toEqual([]);
  });

  it('removes the working folders of dead workers only', async () => {
    const tmp = tempDir('orphaned-work-dirs-');
    // A pid that no longer runs: a process that has exited and been reaped.
    const exited = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
      encoding: 'utf8',
    });
    const dead = Number(exited.stdout);
    const names = [
      `ml-train-${dead}-churn-a1b2c3`,
      `ml-train-${process.pid}-churn-d4e5f6`,
      `ml-train-1-churn-g7h8i9`,
      'ml-train-churn-j0k1l2',
      'other-folder',
    ];
    for (const name of names) mkdirSync(join(tmp, name, 'nested'), { recursive: true });
    expect(await removeOrphanedWorkDirs(tmp)).toEqual([join(tmp, names[0]!)]);
    expect(readdirSync(tmp).sort()).toEqual(names.slice(1).sort());
  });
});
