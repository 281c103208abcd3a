/**
 * A real S3-compatible server for tests and local runs: SeaweedFS (`weed mini`: its master, volume server, filer and
 * S3 gateway in one process), which scripts/setup-s3.mjs builds into .tools/seaweedfs. It listens on free loopback
 * ports, keeps everything (data, config, logs) in a fresh temp dir, has one identity with random credentials and one
 * bucket, and runs in its own process group so that `stop()` and `kill()` leave nothing behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client, type S3Connection } from '../artifacts/s3-store';
import { projectRoot } from '../config/paths';
import { executable } from '../config/toolchain';
import { freePort, waitFor } from './ports';

const READY_TIMEOUT_MS = 60_000;
/** SeaweedFS drains for ~15 s on SIGTERM; a test server has nothing worth that wait. */
const STOP_GRACE_MS = 3_000;

/** The SeaweedFS binary: SEAWEEDFS_PATH, else the build scripts/setup-s3.mjs puts in .tools/seaweedfs/bin. */
export function seaweedfsBinary(): string {
  const fromEnv = process.env.SEAWEEDFS_PATH;
  if (fromEnv) {
    if (!executable(fromEnv)) throw new Error(`SEAWEEDFS_PATH=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  const local = join(projectRoot(), '.tools', 'seaweedfs', 'bin', 'weed');
  if (executable(local)) return local;
  throw new Error(
    'SeaweedFS is missing: run `node scripts/setup-s3.mjs` (it builds it into .tools/seaweedfs with Go) or set ' +
      'SEAWEEDFS_PATH to a weed binary',
  );
}

export interface S3ServerOptions {
  /** The bucket to create; default `artifacts`. */
  bucket?: string;
  /** Where stdout and stderr go; default `weed.log` in the temp dir (removed by `stop()`). */
  logFile?: string;
}

export interface S3Server extends S3Connection {
  /** `http://127.0.0.1:<port>` of the S3 API. */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  dataDir: string;
  logFile: string;
  /** The server process's pid (also its process group's id). */
  readonly pid: number | undefined;
  /** SIGTERM to the process group, SIGKILL after 3 s; waits for the exit and removes the temp dir. Safe to repeat. */
  stop(): Promise<void>;
  /** SIGKILL to the process group: an outage. The temp dir stays until `stop()`. */
  kill(): Promise<void>;
}

function logTail(file: string, bytes = 3_000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.length > bytes ? `…${text.slice(-bytes)}` : text || '(empty)';
  } catch {
    return '(no log)';
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Signals the whole process group of `child` (it was spawned detached: it leads its own group). */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || exited(child)) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

async function stopGroup(child: ChildProcess, graceMs: number): Promise<void> {
  if (exited(child)) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signalGroup(child, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
  // The group may outlive its leader for a moment (none is expected: weed is one process); make sure it is gone.
  signalGroup(child, 'SIGKILL');
}

/**
 * Starts SeaweedFS on free 127.0.0.1 ports with one admin identity (random keys) and `bucket`, and waits until an
 * object can be written and read back through the S3 API (the volume server has registered and the filer is up).
 */
export async function startS3Server(options: S3ServerOptions = {}): Promise<S3Server> {
  const binary = seaweedfsBinary();
  const dir = mkdtempSync(join(tmpdir(), 'mll-s3-'));
  const dataDir = join(dir, 'data');
  // glog writes its log files to TMPDIR: kept in the temp dir, not spread over /tmp.
  const tmp = join(dir, 'tmp');
  mkdirSync(dataDir);
  mkdirSync(tmp);
  const logFile = options.logFile ?? join(dir, 'weed.log');
  const bucket = options.bucket ?? 'artifacts';
  const accessKeyId = `MLL${randomBytes(8).toString('hex').toUpperCase()}`;
  const secretAccessKey = randomBytes(24).toString('base64url');
  const configFile = join(dir, 's3.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      identities: [
        {
          name: 'ml-lifecycle',
          credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }],
          actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'],
        },
      ],
    }),
    { mode: 0o600 },
  );
  const ports = {
    master: await freePort(),
    masterGrpc: await freePort(),
    volume: await freePort(),
    volumeGrpc: await freePort(),
    filer: await freePort(),
    filerGrpc: await freePort(),
    s3: await freePort(),
    s3Grpc: await freePort(),
    admin: await freePort(),
    adminGrpc: await freePort(),
  };
  // `weed mini`, not `weed server`: a single master pinned to its own volume server allocates volumes at once, where
  // `weed server` holds the first allocation for ~5 s. Every port is a free one (the defaults are fixed numbers, which
  // two servers at once would fight over); the WebDAV, Iceberg and Lance listeners are off, and so is telemetry (it
  // would report to a host outside this machine).
  const args = [
    'mini',
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    `-dir=${dataDir}`,
    '-master.telemetry=false',
    `-master.port=${ports.master}`,
    `-master.port.grpc=${ports.masterGrpc}`,
    // Small volumes: a test writes megabytes, and a volume's size limit is what the free disk is divided by.
    '-master.volumeSizeLimitMB=64',
    '-volume.preStopSeconds=0',
    `-volume.port=${ports.volume}`,
    `-volume.port.grpc=${ports.volumeGrpc}`,
    `-filer.port=${ports.filer}`,
    `-filer.port.grpc=${ports.filerGrpc}`,
    `-filer.localSocket=${join(dir, 'filer.sock')}`,
    `-s3.port=${ports.s3}`,
    `-s3.port.grpc=${ports.s3Grpc}`,
    `-s3.localSocket=${join(dir, 's3.sock')}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    `-s3.config=${configFile}`,
    '-webdav=false',
    '-admin.ui=false',
    `-admin.port=${ports.admin}`,
    `-admin.port.grpc=${ports.adminGrpc}`,
    '-admin.port.legacy=0',
  ];
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    // detached: the server leads its own process group, which stop() and kill() signal as a whole.
    child = spawn(binary, args, { stdio: ['ignore', fd, fd], detached: true, env: { ...process.env, TMPDIR: tmp } });
  } finally {
    closeSync(fd);
  }
  let exit: string | null = null;
  child.once('exit', (code, signal) => {
    exit = `exited with ${signal ?? `code ${code}`}`;
  });
  child.once('error', (err) => {
    exit = `failed to start: ${err.message}`;
  });
  const endpoint = `http://127.0.0.1:${ports.s3}`;
  const connection: S3Connection = { endpoint, region: 'us-east-1', accessKeyId, secretAccessKey };
  const cleanup = () => {
    rmSync(dir, { recursive: true, force: true });
    // weed also puts gRPC Unix sockets in /tmp under its ports' numbers; a killed one cannot remove them itself.
    for (const [kind, port] of [
      ['master-grpc', ports.masterGrpc],
      ['volume-grpc', ports.volumeGrpc],
      ['filer-grpc', ports.filerGrpc],
      ['s3-grpc', ports.s3Grpc],
      ['admin-grpc', ports.adminGrpc],
    ] as const) {
      rmSync(`/tmp/seaweedfs-${kind}-${port}.sock`, { force: true });
    }
  };
  try {
    const client = new S3Client(connection, { headersTimeoutMs: 5_000, bodyTimeoutMs: 5_000 });
    const probe = Buffer.from('ready');
    const sha256 = createHash('sha256').update(probe).digest('hex');
    await waitFor(
      `SeaweedFS S3 on ${endpoint}`,
      async () => {
        if (exit !== null) return true;
        await client.createBucket(bucket);
        await client.putObject(bucket, '.ready-probe', probe, probe.length, sha256);
        const back = await client.getObjectBytes(bucket, '.ready-probe', 100);
        await client.deleteObject(bucket, '.ready-probe');
        return back?.equals(probe) ?? false;
      },
      READY_TIMEOUT_MS,
      250,
    );
    if (exit) throw new Error(`SeaweedFS ${exit as string}`);
  } catch (err) {
    await stopGroup(child, STOP_GRACE_MS);
    const message = `${(err as Error).message}; its log ends:\n${logTail(logFile)}`;
    cleanup();
    throw new Error(message);
  }
  let stopped = false;
  // The server is in a process group of its own, which no signal to ours reaches: if this process exits without
  // stop() (a test that threw, a forgotten server), the group is killed on the way out instead of living on.
  const onExit = () => signalGroup(child, 'SIGKILL');
  process.once('exit', onExit);
  return {
    ...connection,
    bucket,
    dataDir,
    logFile,
    get pid() {
      return child.pid;
    },
    async stop() {
      await stopGroup(child, STOP_GRACE_MS);
      process.removeListener('exit', onExit);
      if (!stopped) cleanup();
      stopped = true;
    },
    async kill() {
      if (exited(child)) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      signalGroup(child, 'SIGKILL');
      await gone;
    },
  };
}
