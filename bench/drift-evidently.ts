/**
 * The drift benchmark's Evidently side: a Python environment of its own, `.tools/bench-venv`, with the versions
 * pinned in `bench/drift_evidently_requirements.txt` (evidently 0.7.23 and all it installs). It is made here on first
 * use, not by `npm install` (scripts/setup.mjs builds the project's venv on every install; Evidently and its ~80
 * packages are for this benchmark only), and made again when the requirements file changes (a stamp of its hash
 * sits in the venv). `ML_BENCH_EVIDENTLY_PYTHON` names another Python with Evidently to use as it is.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../src/config/paths';
import { executable } from '../src/config/toolchain';

export const EVIDENTLY_REQUIREMENTS = join(projectRoot(), 'bench', 'drift_evidently_requirements.txt');
export const BENCH_VENV = join(projectRoot(), '.tools', 'bench-venv');

/** The last lines of a tool's output, for a one-line reason. */
const tail = (text: string | null | undefined) =>
  (text ?? '')
    .trim()
    .split('\n')
    .slice(-3)
    .map((l) => l.trim())
    .join(' | ');

/** A Python >= 3.10 (Evidently 0.7.23 needs it) to make the venv with: `PYTHON`, else python3, else python. */
function basePython(): string | undefined {
  for (const candidate of [process.env.PYTHON, 'python3', 'python']) {
    if (!candidate) continue;
    const r = spawnSync(candidate, ['-c', 'import sys; print(sys.version_info >= (3, 10))'], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim() === 'True') return candidate;
  }
  return undefined;
}

/**
 * The Python to run `bench/drift_evidently.py` with, making or updating `.tools/bench-venv` first when needed (pip
 * prints its progress on stderr; the first install takes a minute or two), or why there is none.
 */
export function evidentlyPython(log: (line: string) => void): { python: string } | { skipped: string } {
  const given = process.env.ML_BENCH_EVIDENTLY_PYTHON;
  if (given) {
    return executable(given)
      ? { python: given }
      : { skipped: `ML_BENCH_EVIDENTLY_PYTHON=${given} is not an executable file` };
  }
  const python = join(BENCH_VENV, 'bin', 'python');
  const stamp = join(BENCH_VENV, '.requirements.sha256');
  const want = createHash('sha256').update(readFileSync(EVIDENTLY_REQUIREMENTS)).digest('hex');
  if (executable(python) && existsSync(stamp) && readFileSync(stamp, 'utf8') === want) return { python };

  if (!executable(python)) {
    const base = basePython();
    if (!base) return { skipped: 'no Python >= 3.10 to make .tools/bench-venv with (set PYTHON)' };
    log(`evidently: creating ${BENCH_VENV} with ${base}`);
    const venv = spawnSync(base, ['-m', 'venv', BENCH_VENV], { encoding: 'utf8' });
    if (venv.status !== 0) return { skipped: `${base} -m venv failed: ${tail(venv.stderr) || venv.error?.message}` };
  }
  log(`evidently: installing ${EVIDENTLY_REQUIREMENTS} into ${BENCH_VENV} (once; a minute or two)`);
  const pip = spawnSync(
    python,
    ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', EVIDENTLY_REQUIREMENTS],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  if (pip.status !== 0) {
    return { skipped: `pip install into ${BENCH_VENV} failed: ${tail(pip.stderr) || pip.error?.message}` };
  }
  writeFileSync(stamp, want);
  return { python };
}
