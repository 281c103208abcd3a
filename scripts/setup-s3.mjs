#!/usr/bin/env node
// Installs SeaweedFS (Apache-2.0; master, volume server, filer and S3 gateway in one `weed` binary), the real
// S3-compatible server the artifact store's tests run against (src/dev/s3-server.ts), into the git-ignored .tools/:
//   .tools/seaweedfs/bin/weed, built with `go build` from the pinned module version the Go module proxy serves.
// `go install …/weed@version` refuses the module (its go.mod has a replace directive), so a two-line wrapper module in
// .tools/seaweedfs/build requires it with the same replace, and `go build` builds the `weed` package from it.
//
// Not part of `npm install` (scripts/setup.mjs): a clean build takes about 5 minutes on 2 cores and fills Go's module
// and build caches with ~5 GB; only test/integration/artifact-store.test.ts needs it, and runs this script from its
// beforeAll. Idempotent: does nothing when the pinned build is there, or when SEAWEEDFS_PATH names a binary.
// Needs Go >= 1.26 on PATH (GOTOOLCHAIN may fetch the version SeaweedFS's go.mod names through the module proxy).
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODULE = 'github.com/seaweedfs/seaweedfs';
// Version 4.53 of SeaweedFS ("30GB" build) as the Go module proxy serves it: a pseudo-version, as the project tags
// releases without the Go module `v` prefix.
const VERSION = 'v0.0.0-20261109003541-7506e5f91cd6';
// Copied from that version's go.mod: a replace in a dependency is ignored, so the wrapper must repeat it.
const REPLACES = ['github.com/tyler-smith/go-bip39=github.com/cosmos/go-bip39@v1.0.0'];
const dir = join(root, '.tools', 'seaweedfs');
const bin = join(dir, 'bin', 'weed');
const stamp = join(dir, 'VERSION');

function fail(message) {
  console.error(`setup-s3: ${message}`);
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

function go(args, cwd, what) {
  const r = spawnSync('go', args, {
    cwd,
    stdio: ['ignore', 'inherit', 'inherit'],
    // -mod=mod: the wrapper's go.sum is written by `go get` (checked against the checksum database).
    env: { ...process.env, GOFLAGS: `${process.env.GOFLAGS ?? ''} -mod=mod`.trim(), CGO_ENABLED: '0' },
  });
  if (r.error) fail(`${what}: ${r.error.message} (is Go installed and on PATH?)`);
  if (r.status !== 0) fail(`${what} failed (exit ${r.status}); see the go output above`);
}

const fromEnv = process.env.SEAWEEDFS_PATH;
if (fromEnv) {
  if (!isExecutable(fromEnv)) fail(`SEAWEEDFS_PATH=${fromEnv} is not an executable file`);
  console.log(`setup-s3: weed: using SEAWEEDFS_PATH=${fromEnv}`);
  process.exit(0);
}
if (isExecutable(bin) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === VERSION) {
  console.log(`setup-s3: weed: present at ${bin}`);
  process.exit(0);
}
const goVersion = spawnSync('go', ['env', 'GOVERSION'], { encoding: 'utf8' });
if (goVersion.error || goVersion.status !== 0) {
  fail('cannot build SeaweedFS: no `go` on PATH (install Go >= 1.26, or set SEAWEEDFS_PATH to a weed binary)');
}
// The build may run beside tests (the artifact store test's beforeAll, while another file runs): lowest CPU priority,
// which the go processes inherit, so it takes the cores only when the tests leave them idle.
try {
  setPriority(19);
} catch {
  // Not allowed here: build at normal priority.
}
const started = Date.now();
console.log(`setup-s3: building SeaweedFS ${MODULE}@${VERSION} with ${goVersion.stdout.trim()} into ${bin}`);
const build = join(dir, 'build');
rmSync(build, { recursive: true, force: true });
mkdirSync(build, { recursive: true });
mkdirSync(dirname(bin), { recursive: true });
writeFileSync(join(build, 'go.mod'), 'module ml-lifecycle/tools/seaweedfs\n\ngo 1.26\n');
go(['mod', 'edit', `-require=${MODULE}@${VERSION}`, ...REPLACES.map((r) => `-replace=${r}`)], build, 'go mod edit');
go(['get', `${MODULE}/weed@${VERSION}`], build, `go get ${MODULE}/weed@${VERSION}`);
// Built beside the target and renamed: a concurrent run or an interrupted build never leaves a partial binary there.
const partial = `${bin}.${process.pid}.tmp`;
go(['build', '-trimpath', '-ldflags=-s -w', '-o', partial, `${MODULE}/weed`], build, 'go build weed');
renameSync(partial, bin);
writeFileSync(stamp, `${VERSION}\n`);
rmSync(build, { recursive: true, force: true });
console.log(`setup-s3: weed built in ${Math.round((Date.now() - started) / 1000)} s`);
