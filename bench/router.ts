/**
 * What the serving gateway adds to a prediction, against the model runtime behind the thinnest HTTP layer.
 *
 * Trains one version of the churn example model (with its training profile, as the training activity writes it),
 * then starts two separate processes on loopback: the real gateway (`dist/src/serving/main.js`) with that version
 * deployed at 100 %, and a "direct" server (this file run with `--direct-server`) that loads the same artifact with
 * `ModelHost.load` and answers `POST /predict` with `prepare` + `run` and nothing else. The same undici load generator
 * drives both with the same rows: sequential, concurrency 8 and concurrency 32, in two rounds with the order of the
 * targets alternated. Prints req/s, p50 and p99 per phase and target, the ratios gateway / direct and the added
 * latency in ms, the in-process latency of `prepare` + `run` (no HTTP) as a floor, then a `BENCH_JSON {...}` line.
 * Exits 1 if any request answered something other than 200.
 *
 * Run: `npm run bench:router` (builds, then `node dist/bench/router.js`).
 * `--gateway-cpu-prof DIR` starts the gateway with `--cpu-prof --cpu-prof-dir DIR` (written when it stops).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import Fastify from 'fastify';
import { Agent, request } from 'undici';
import { writeTrainingProfile } from '../src/activities/data';
import { projectRoot } from '../src/config/paths';
import { ModelHost, type Features } from '../src/serving/model-host';
import { artifactDigest } from '../src/artifacts/digest';
import {
  adminCall,
  drive,
  freePort,
  loadRows,
  newAdminEndpoint,
  train,
  type LoadOutcome,
  type Row,
} from './gateway-throughput';
import { benchFacts, percentile, printAligned, printLoad, runBenchmark } from './report';

const MODEL = 'churn';
const VERSION = 'v1';
/** Requests at concurrency 8 sent once to each target before the first phase (JIT, heap, session), not counted. */
const INITIAL_WARMUP = 5000;
/** Requests before each measured run, not counted. */
const WARMUP = 500;
/** Each phase runs this many times per target, the order of the targets alternating from one round to the next. */
const ROUNDS = 2;
/** In-process floor: `prepare` + `run` calls measured, after as many unmeasured ones. */
const IN_PROCESS_CALLS = 3000;

type TargetName = 'direct' | 'gateway';
const TARGETS: readonly TargetName[] = ['direct', 'gateway'];

interface PhaseSpec {
  name: string;
  concurrency: number;
  requests: number;
}

const PHASES: PhaseSpec[] = [
  { name: 'sequential', concurrency: 1, requests: 3000 },
  { name: 'concurrency 8', concurrency: 8, requests: 20_000 },
  { name: 'concurrency 32', concurrency: 32, requests: 20_000 },
];

interface Target {
  name: TargetName;
  url: string;
  process: ChildProcess;
}

/** One phase against one target over every round: latencies pooled, throughput = requests / summed seconds. */
interface TargetResult {
  requests: number;
  seconds: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** req/s of each round, to show the spread. */
  roundReqPerSec: number[];
  roundP50Ms: number[];
  roundP99Ms: number[];
  /** CPU time (user + system) the server process spent per measured request, µs; undefined off Linux. */
  serverCpuUsPerReq: number | undefined;
  non200: number;
}

/** One measured run: the load generator's outcome and the server's CPU seconds over it. */
interface Run {
  outcome: LoadOutcome;
  serverCpuSeconds: number | undefined;
}

interface PhaseResult {
  name: string;
  concurrency: number;
  direct: TargetResult;
  gateway: TargetResult;
  /** gateway / direct. */
  p50Ratio: number;
  p99Ratio: number;
  throughputRatio: number;
  /** gateway − direct, ms. */
  addedP50Ms: number;
  addedP99Ms: number;
  /** gateway / direct server CPU per request. */
  cpuRatio: number | undefined;
}

const root = projectRoot();
const tempDirs: string[] = [];
const children: ChildProcess[] = [];

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/**
 * The direct server: the model runtime behind a bare fastify route, no routing, no schema validation beyond what
 * `prepare` checks, no telemetry. Answers `{ label, probability }`.
 */
async function directServer(artifactDir: string, port: number): Promise<void> {
  const host = await ModelHost.load(artifactDir);
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ ok: true }));
  app.post<{ Body: { features: Features } }>('/predict', async (req) => {
    const prediction = await host.predict(req.body.features);
    return { label: prediction.label, probability: prediction.probability };
  });
  await app.listen({ port, host: '127.0.0.1' });
  const shutdown = (): void => {
    void app
      .close()
      .then(() => host.release())
      .finally(() => process.exit(0));
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

function startChild(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] });
  if (child.pid === undefined) throw new Error(`cannot start ${args.join(' ')}`);
  children.push(child);
  return child;
}

async function waitForHealthz(name: string, baseUrl: string, child: ChildProcess, dispatcher: Agent): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the ${name} server exited during start (code ${child.exitCode}, signal ${child.signalCode})`);
    }
    try {
      const res = await request(`${baseUrl}/healthz`, { dispatcher });
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`the ${name} server did not answer /healthz within 20 s`);
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** CPU seconds (user + system) a process has used so far, or undefined off Linux. */
function cpuSecondsOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, utime 14 and stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
  } catch {
    return undefined;
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      done();
    });
    child.kill('SIGTERM');
  });
}

/** `prepare` + `run` in this process, one call at a time: what a prediction costs with no HTTP at all. */
async function inProcessFloor(artifactDir: string, rows: Row[]): Promise<{ p50Ms: number; p99Ms: number }> {
  const host = await ModelHost.load(artifactDir);
  try {
    const latencies = new Float64Array(IN_PROCESS_CALLS);
    for (let i = 0; i < 2 * IN_PROCESS_CALLS; i++) {
      const features = rows[i % rows.length] as Features;
      const started = performance.now();
      await host.predict(features);
      if (i >= IN_PROCESS_CALLS) latencies[i - IN_PROCESS_CALLS] = performance.now() - started;
    }
    latencies.sort();
    return { p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
  } finally {
    await host.release();
  }
}

function summarize(measured: Run[]): TargetResult {
  const runs = measured.map((m) => m.outcome);
  const total = runs.reduce((n, r) => n + r.latencies.length, 0);
  const pooled = new Float64Array(total);
  let offset = 0;
  for (const r of runs) {
    pooled.set(r.latencies, offset);
    offset += r.latencies.length;
  }
  pooled.sort();
  const seconds = runs.reduce((s, r) => s + r.seconds, 0);
  const sortedOf = (r: LoadOutcome): Float64Array => r.latencies.slice().sort();
  return {
    requests: total,
    seconds,
    reqPerSec: total / seconds,
    p50Ms: percentile(pooled, 50),
    p99Ms: percentile(pooled, 99),
    roundReqPerSec: runs.map((r) => r.latencies.length / r.seconds),
    roundP50Ms: runs.map((r) => percentile(sortedOf(r), 50)),
    roundP99Ms: runs.map((r) => percentile(sortedOf(r), 99)),
    serverCpuUsPerReq: measured.every((m) => m.serverCpuSeconds !== undefined)
      ? (1e6 * measured.reduce((s, m) => s + (m.serverCpuSeconds ?? 0), 0)) / total
      : undefined,
    non200: runs.reduce((n, r) => n + r.non200, 0),
  };
}

function printResults(results: PhaseResult[]): void {
  const header = ['phase', 'target', 'requests', 'req/s', 'p50 ms', 'p99 ms', 'srv CPU µs/req', 'non-200'];
  const body: string[][] = [];
  for (const r of results) {
    for (const name of TARGETS) {
      const t = r[name];
      body.push([
        r.name,
        name,
        String(t.requests),
        t.reqPerSec.toFixed(0),
        t.p50Ms.toFixed(3),
        t.p99Ms.toFixed(3),
        t.serverCpuUsPerReq?.toFixed(0) ?? 'n/a',
        String(t.non200),
      ]);
    }
  }
  printAligned(header, body);
  console.log('');
  printAligned(
    ['phase', 'p50 ratio', 'p99 ratio', 'throughput ratio', 'CPU/req ratio', 'added p50 ms', 'added p99 ms'],
    results.map((r) => [
      r.name,
      `${r.p50Ratio.toFixed(2)}×`,
      `${r.p99Ratio.toFixed(2)}×`,
      `${r.throughputRatio.toFixed(2)}×`,
      r.cpuRatio === undefined ? 'n/a' : `${r.cpuRatio.toFixed(2)}×`,
      r.addedP50Ms.toFixed(3),
      r.addedP99Ms.toFixed(3),
    ]),
  );
  console.log('');
  for (const r of results) {
    const rounds = TARGETS.map(
      (name) =>
        `${name} ${r[name].roundReqPerSec.map((v) => v.toFixed(0)).join('/')} req/s, ` +
        `p50 ${r[name].roundP50Ms.map((v) => v.toFixed(3)).join('/')} ms`,
    ).join('; ');
    console.log(`${r.name} by round: ${rounds}`);
  }
}

async function main(): Promise<number> {
  const mainJs = join(root, 'dist', 'src', 'serving', 'main.js');
  if (!existsSync(mainJs)) throw new Error(`${mainJs} is missing: run \`npm run build\` first`);
  const profIndex = process.argv.indexOf('--gateway-cpu-prof');
  const profDir = profIndex >= 0 ? process.argv[profIndex + 1] : undefined;
  if (profIndex >= 0 && !profDir) throw new Error('--gateway-cpu-prof needs a folder');
  const rows = loadRows();
  const loadBefore = loadavg();

  const trainStarted = performance.now();
  // Inside a folder of its own: the gateway's artifact root, the only place it loads from.
  const artifactRoot = tempDir('mll-bench-router-artifacts-');
  const artifactDir = join(artifactRoot, VERSION);
  await train(artifactDir, {});
  // As the training activity does: with the profile in the artifact the gateway sketches every request's inputs.
  await writeTrainingProfile(artifactDir, join(root, 'examples', 'churn', 'data', 'train.csv'));
  const trainSeconds = (performance.now() - trainStarted) / 1000;

  const floor = await inProcessFloor(artifactDir, rows);

  const directPort = await freePort();
  const gatewayPort = await freePort();
  const directBase = `http://127.0.0.1:${directPort}`;
  const gatewayBase = `http://127.0.0.1:${gatewayPort}`;
  const admin = await newAdminEndpoint();
  const direct = startChild([__filename, '--direct-server', artifactDir, String(directPort)], process.env);
  const gatewayArgs = profDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(profDir), mainJs] : [mainJs];
  const gateway = startChild(gatewayArgs, {
    ...process.env,
    GATEWAY_PORT: String(gatewayPort),
    GATEWAY_HOST: '127.0.0.1',
    GATEWAY_ADMIN_PORT: String(admin.port),
    GATEWAY_ADMIN_TOKEN: admin.token,
    GATEWAY_ARTIFACT_ROOT: artifactRoot,
    GATEWAY_DATA_DIR: tempDir('mll-bench-router-gw-'),
    LOG_LEVEL: 'warn',
  });

  const maxConcurrency = Math.max(...PHASES.map((p) => p.concurrency));
  const loadAgent = new Agent({ connections: maxConcurrency, keepAliveTimeout: 30_000, pipelining: 1 });
  const adminAgent = new Agent({ connections: 2, keepAliveTimeout: 30_000 });
  try {
    await Promise.all([
      waitForHealthz('direct', directBase, direct, adminAgent),
      waitForHealthz('gateway', gatewayBase, gateway, adminAgent),
    ]);
    await adminCall(adminAgent, admin, 'PUT', `/admin/models/${MODEL}/versions/${VERSION}`, {
      opId: `bench-deploy-${VERSION}`,
      artifactDir,
      artifactDigest: await artifactDigest(artifactDir),
    });
    await adminCall(adminAgent, admin, 'PUT', `/admin/models/${MODEL}/weights`, {
      opId: 'bench-weights-1',
      weights: { [VERSION]: 100 },
    });
    const targets: Record<TargetName, Target> = {
      direct: { name: 'direct', url: `${directBase}/predict`, process: direct },
      gateway: { name: 'gateway', url: `${gatewayBase}/v1/models/${MODEL}/predict`, process: gateway },
    };
    console.log(
      `trained ${VERSION} in ${trainSeconds.toFixed(1)} s (with its training profile: the gateway sketches inputs); ` +
        `direct pid ${direct.pid} on ${directBase}, gateway pid ${gateway.pid} on ${gatewayBase}` +
        `${profDir ? ` (CPU profile into ${resolve(profDir)})` : ''}; ${rows.length} rows; ` +
        `warm-up (not counted): ${INITIAL_WARMUP} requests at concurrency 8 per target once, ` +
        `then ${WARMUP} before each run; ${ROUNDS} rounds, target order alternating\n`,
    );

    // Same cursor over the rows and user ids for both targets: the n-th request of a run is the same for both.
    let warmupFailures = 0;
    for (const name of TARGETS) {
      const warm = await drive(loadAgent, targets[name].url, rows, INITIAL_WARMUP, 8, { next: 0 });
      warmupFailures += warm.non200;
    }

    const runs: Record<string, Record<TargetName, Run[]>> = {};
    for (const spec of PHASES) {
      const phaseRuns: Record<TargetName, Run[]> = { direct: [], gateway: [] };
      runs[spec.name] = phaseRuns;
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? TARGETS : [...TARGETS].reverse();
        for (const name of order) {
          const url = targets[name].url;
          const warm = await drive(loadAgent, url, rows, WARMUP, spec.concurrency, { next: 0 });
          warmupFailures += warm.non200;
          const pid = targets[name].process.pid;
          const cpuBefore = cpuSecondsOf(pid);
          const outcome = await drive(loadAgent, url, rows, spec.requests, spec.concurrency, { next: 0 });
          const cpuAfter = cpuSecondsOf(pid);
          const serverCpuSeconds = cpuBefore === undefined || cpuAfter === undefined ? undefined : cpuAfter - cpuBefore;
          phaseRuns[name].push({ outcome, serverCpuSeconds });
        }
      }
    }
    const loadAfter = loadavg();

    const results: PhaseResult[] = PHASES.map((spec) => {
      const phaseRuns = runs[spec.name] as Record<TargetName, Run[]>;
      const d = summarize(phaseRuns.direct);
      const g = summarize(phaseRuns.gateway);
      return {
        name: spec.name,
        concurrency: spec.concurrency,
        direct: d,
        gateway: g,
        p50Ratio: g.p50Ms / d.p50Ms,
        p99Ratio: g.p99Ms / d.p99Ms,
        throughputRatio: g.reqPerSec / d.reqPerSec,
        addedP50Ms: g.p50Ms - d.p50Ms,
        addedP99Ms: g.p99Ms - d.p99Ms,
        cpuRatio:
          g.serverCpuUsPerReq === undefined || d.serverCpuUsPerReq === undefined
            ? undefined
            : g.serverCpuUsPerReq / d.serverCpuUsPerReq,
      };
    });

    printResults(results);
    console.log(
      `in-process floor (prepare + run, no HTTP, one at a time): p50 ${floor.p50Ms.toFixed(3)} ms, ` +
        `p99 ${floor.p99Ms.toFixed(3)} ms over ${IN_PROCESS_CALLS} calls`,
    );
    console.log(
      `ratios are gateway / direct (throughput: < 1 means the gateway answers fewer req/s); added = gateway − direct; ` +
        `latencies client-side, nearest rank, both rounds pooled; srv CPU = the server process's user + system ` +
        `time over the measured requests (/proc/<pid>/stat) divided by their number`,
    );
    console.log(
      `client: node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), ` +
        'client and servers on the same machine',
    );
    printLoad(loadBefore, loadAfter);

    const failed = warmupFailures > 0 || results.some((r) => r.direct.non200 > 0 || r.gateway.non200 > 0);
    console.log(
      `BENCH_JSON ${JSON.stringify({
        ...benchFacts('router', loadBefore, loadAfter),
        rounds: ROUNDS,
        warmup: WARMUP,
        initialWarmup: INITIAL_WARMUP,
        trainSeconds,
        inProcess: { calls: IN_PROCESS_CALLS, ...floor },
        phases: results,
        warmupFailures,
        ok: !failed,
      })}`,
    );
    return failed ? 1 : 0;
  } finally {
    await Promise.allSettled([loadAgent.close(), adminAgent.close()]);
  }
}

async function cleanup(): Promise<void> {
  await Promise.allSettled(children.splice(0).map(stopChild));
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

if (process.argv[2] === '--direct-server') {
  const [artifactDir, port] = process.argv.slice(3);
  if (!artifactDir || !port) {
    process.stderr.write('usage: router.js --direct-server ARTIFACT_DIR PORT\n');
    process.exit(2);
  }
  directServer(artifactDir, Number(port)).catch((err: unknown) => {
    process.stderr.write(`direct server failed to start: ${(err as Error).message}\n`);
    process.exit(1);
  });
} else {
  runBenchmark('router benchmark', main, cleanup);
}
