/**
 * What the serving gateway adds to a prediction, against the model runtime behind the thinnest HTTP layer, and what
 * nginx adds in front of a gateway (the nginx deployment target, src/targets/nginx.ts).
 *
 * Trains one version of the churn example model (with its training profile, as the training activity writes it),
 * then starts two separate processes on loopback: the real gateway (`dist/src/serving/main.js`) with that version
 * deployed at 100 %, and a "direct" server (this file run with `--direct-server`) that loads the same artifact with
 * `ModelHost.load` and answers `POST /predict` with `prepare` + `run` and nothing else. Then "through nginx": a second
 * gateway in single-version mode (a slot) behind a real nginx, the version deployed and weighted through the nginx
 * target, with the target's config as it is (each client connection closed after its answer: reloads drop nothing)
 * and with client keep-alive (`clientKeepalive: 75s`). Then shadow traffic: a third gateway with a second version
 * deployed beside the first, its shadow set before each run to off, 20 % and 100 % of the requests (the candidate's
 * copies are predicted after each answer; the users' latency is what is measured, against the same gateway with the
 * shadow off). The same undici load generator drives all seven with the same
 * rows: sequential, concurrency 8 and concurrency 32, in six rounds with the order of the targets alternated. Prints
 * req/s, p50 and p99 per phase and target (every round pooled), the ratios gateway / direct and nginx / gateway with
 * the added latency in ms (the median over the rounds of each round's pair of runs), the in-process latency of
 * `prepare` + `run` (no HTTP) as a floor, then a `BENCH_JSON {...}` line.
 * Exits 1 if any request answered something other than 200.
 *
 * Run: `npm run bench:router` (builds, then `node dist/bench/router.js`).
 * `--gateway-cpu-prof DIR` starts the gateway with `--cpu-prof --cpu-prof-dir DIR` (written when it stops).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import Fastify from 'fastify';
import { Agent, request } from 'undici';
import { writeTrainingProfile } from '../src/activities/data';
import { nginxBinary } from '../src/config/nginx-targets';
import { projectRoot } from '../src/config/paths';
import { startNginx, type NginxServer } from '../src/dev/nginx';
import { NginxTarget } from '../src/targets/nginx';
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
const WARMUP = 300;
/**
 * Each phase runs this many times per target, the order of the targets alternating from one round to the next, so
 * that a target's run and its baseline's are next to each other in time. Six short rounds rather than two long ones:
 * the load of other processes on a shared machine comes and goes within seconds (one round of a target at twice the
 * req/s of the other), and the median of the rounds' comparisons stands when one or two rounds are disturbed.
 */
const ROUNDS = 6;
/** In-process floor: `prepare` + `run` calls measured, after as many unmeasured ones. */
const IN_PROCESS_CALLS = 3000;

type TargetName = 'direct' | 'gateway' | 'nginx' | 'nginx keep-alive' | 'shadow off' | 'shadow 20%' | 'shadow 100%';
const TARGETS: readonly TargetName[] = [
  'direct',
  'gateway',
  'nginx',
  'nginx keep-alive',
  'shadow off',
  'shadow 20%',
  'shadow 100%',
];
/** The targets with nginx in front of a gateway, compared with the gateway alone. */
const NGINX_TARGETS = ['nginx', 'nginx keep-alive'] as const;
/**
 * One more gateway with a second version deployed beside the first, its shadow traffic set before each run: off, a
 * copy of 20 % of the requests, of every request. The users' latency with a shadow on, against the same gateway off.
 */
const SHADOW_TARGETS = ['shadow 20%', 'shadow 100%'] as const;
const SHADOW_VERSION = 'v2';

interface PhaseSpec {
  name: string;
  concurrency: number;
  requests: number;
}

const PHASES: PhaseSpec[] = [
  { name: 'sequential', concurrency: 1, requests: 1000 },
  { name: 'concurrency 8', concurrency: 8, requests: 7000 },
  { name: 'concurrency 32', concurrency: 32, requests: 7000 },
];

interface Target {
  name: TargetName;
  url: string;
  /** The processes that serve it (nginx's workers and the gateway behind them), for their CPU time. */
  pids(): number[];
  /** Before each of its runs (the shadow gateway's routes). */
  before?: () => Promise<void>;
}

/** One phase against one target over every round: latencies pooled, throughput = requests / summed seconds. */
interface TargetResult {
  requests: number;
  seconds: number;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Each round's figures, in round order: what comparisons pair. */
  roundReqPerSec: number[];
  roundP50Ms: number[];
  roundP99Ms: number[];
  /** CPU time (user + system) the server process spent per measured request, µs; undefined off Linux. */
  serverCpuUsPerReq: number | undefined;
  roundCpuUsPerReq: (number | undefined)[];
  non200: number;
}

/** One measured run: the load generator's outcome and the server's CPU seconds over it. */
interface Run {
  outcome: LoadOutcome;
  serverCpuSeconds: number | undefined;
}

/**
 * A target against its baseline (the gateway against direct, nginx in front of a gateway against the gateway alone, a
 * shadow against none): each figure is the median over the rounds of that round's target run against its baseline's
 * run, which ran next to it. Ratios are target / baseline, added latencies target − baseline in ms.
 */
interface Comparison {
  p50Ratio: number;
  p99Ratio: number;
  throughputRatio: number;
  addedP50Ms: number;
  addedP99Ms: number;
  /** Server CPU per request; undefined off Linux. */
  cpuRatio: number | undefined;
  /** Each round's throughput ratio and added p99, to show the spread. */
  roundThroughputRatio: number[];
  roundAddedP99Ms: number[];
}

type PhaseResult = Record<TargetName, TargetResult> &
  Comparison & {
    name: string;
    concurrency: number;
    throughNginx: Record<(typeof NGINX_TARGETS)[number], Comparison>;
    /** The shadow gateway with its shadow on / off. */
    withShadow: Record<(typeof SHADOW_TARGETS)[number], Comparison>;
  };

const root = projectRoot();
const tempDirs: string[] = [];
const children: ChildProcess[] = [];
const nginxServers: NginxServer[] = [];

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

/** The children of a process (nginx's workers of its master); none off Linux or when it has none. */
function childrenOf(pid: number | undefined): number[] {
  if (pid === undefined) return [];
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds of several processes together, or undefined when one cannot be read. */
function cpuSecondsOfAll(pids: number[]): number | undefined {
  let total = 0;
  for (const pid of pids) {
    const seconds = cpuSecondsOf(pid);
    if (seconds === undefined) return undefined;
    total += seconds;
  }
  return total;
}

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
    roundCpuUsPerReq: measured.map((m) =>
      m.serverCpuSeconds === undefined ? undefined : (1e6 * m.serverCpuSeconds) / m.outcome.latencies.length,
    ),
    non200: runs.reduce((n, r) => n + r.non200, 0),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** `t` against `base`, round by round (see {@link Comparison}). */
function compare(t: TargetResult, base: TargetResult): Comparison {
  const rounds = t.roundReqPerSec.map((_, i) => i);
  const ofRounds = (f: (i: number) => number) => rounds.map(f);
  const roundThroughputRatio = ofRounds((i) => t.roundReqPerSec[i]! / base.roundReqPerSec[i]!);
  const roundAddedP99Ms = ofRounds((i) => t.roundP99Ms[i]! - base.roundP99Ms[i]!);
  const cpu = ofRounds((i) => (t.roundCpuUsPerReq[i] ?? Number.NaN) / (base.roundCpuUsPerReq[i] ?? Number.NaN));
  return {
    p50Ratio: median(ofRounds((i) => t.roundP50Ms[i]! / base.roundP50Ms[i]!)),
    p99Ratio: median(ofRounds((i) => t.roundP99Ms[i]! / base.roundP99Ms[i]!)),
    throughputRatio: median(roundThroughputRatio),
    addedP50Ms: median(ofRounds((i) => t.roundP50Ms[i]! - base.roundP50Ms[i]!)),
    addedP99Ms: median(roundAddedP99Ms),
    cpuRatio: cpu.some(Number.isNaN) ? undefined : median(cpu),
    roundThroughputRatio,
    roundAddedP99Ms,
  };
}

/** One table of targets against their baseline: ratios and added latency per phase. */
function printComparison<N extends string>(
  title: string,
  results: PhaseResult[],
  names: readonly N[],
  of: (r: PhaseResult) => Record<N, Comparison>,
): void {
  console.log(title);
  printAligned(
    ['phase', 'target', 'p50 ratio', 'p99 ratio', 'throughput ratio', 'added p50 ms', 'added p99 ms'],
    results.flatMap((r) =>
      names.map((name) => {
        const t = of(r)[name];
        return [
          r.name,
          name,
          `${t.p50Ratio.toFixed(2)}×`,
          `${t.p99Ratio.toFixed(2)}×`,
          `${t.throughputRatio.toFixed(2)}×`,
          t.addedP50Ms.toFixed(3),
          t.addedP99Ms.toFixed(3),
        ];
      }),
    ),
  );
  console.log('');
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
  printComparison(
    'through nginx: nginx in front of a single-version gateway / that gateway alone',
    results,
    NGINX_TARGETS,
    (r) => r.throughNginx,
  );
  printComparison(
    "shadow traffic: a gateway copying that share of requests to a second version / the same gateway's shadow off",
    results,
    SHADOW_TARGETS,
    (r) => r.withShadow,
  );
  console.log('');
  for (const r of results) {
    const rounds = TARGETS.map((name) => `${name} ${r[name].roundReqPerSec.map((v) => v.toFixed(0)).join('/')}`);
    console.log(`${r.name} req/s by round: ${rounds.join('; ')}`);
    console.log(
      `${r.name} gateway / direct by round: throughput ${r.roundThroughputRatio.map((v) => v.toFixed(2)).join('/')}, ` +
        `added p99 ${r.roundAddedP99Ms.map((v) => v.toFixed(3)).join('/')} ms`,
    );
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
  // Through nginx: a gateway of its own in single-version mode (a slot of the nginx target), with the same token.
  const slotPort = await freePort();
  const slotBase = `http://127.0.0.1:${slotPort}`;
  const slotAdmin = await newAdminEndpoint();
  const slot = startChild([mainJs], {
    ...process.env,
    GATEWAY_PORT: String(slotPort),
    GATEWAY_HOST: '127.0.0.1',
    GATEWAY_ADMIN_PORT: String(slotAdmin.port),
    GATEWAY_ADMIN_TOKEN: admin.token,
    GATEWAY_ARTIFACT_ROOT: artifactRoot,
    GATEWAY_DATA_DIR: tempDir('mll-bench-router-slot-'),
    GATEWAY_SINGLE_VERSION: 'true',
    LOG_LEVEL: 'warn',
  });

  // With shadow traffic: the same gateway code, a second version beside the first.
  const shadowPort = await freePort();
  const shadowBase = `http://127.0.0.1:${shadowPort}`;
  const shadowAdmin = await newAdminEndpoint();
  const shadowGateway = startChild([mainJs], {
    ...process.env,
    GATEWAY_PORT: String(shadowPort),
    GATEWAY_HOST: '127.0.0.1',
    GATEWAY_ADMIN_PORT: String(shadowAdmin.port),
    GATEWAY_ADMIN_TOKEN: shadowAdmin.token,
    GATEWAY_ARTIFACT_ROOT: artifactRoot,
    GATEWAY_DATA_DIR: tempDir('mll-bench-router-shadow-'),
    LOG_LEVEL: 'warn',
  });

  const maxConcurrency = Math.max(...PHASES.map((p) => p.concurrency));
  const loadAgent = new Agent({ connections: maxConcurrency, keepAliveTimeout: 30_000, pipelining: 1 });
  const adminAgent = new Agent({ connections: 2, keepAliveTimeout: 30_000 });
  try {
    await Promise.all([
      waitForHealthz('direct', directBase, direct, adminAgent),
      waitForHealthz('gateway', gatewayBase, gateway, adminAgent),
      waitForHealthz('slot gateway', slotBase, slot, adminAgent),
      waitForHealthz('shadow gateway', shadowBase, shadowGateway, adminAgent),
    ]);
    const shadowDigest = await artifactDigest(artifactDir);
    for (const version of [VERSION, SHADOW_VERSION]) {
      await adminCall(adminAgent, shadowAdmin, 'PUT', `/admin/models/${MODEL}/versions/${version}`, {
        opId: `bench-shadow-deploy-${version}`,
        artifactDir,
        artifactDigest: shadowDigest,
      });
    }
    await adminCall(adminAgent, shadowAdmin, 'PUT', `/admin/models/${MODEL}/weights`, {
      opId: 'bench-shadow-weights',
      weights: { [VERSION]: 100 },
    });
    let routesOp = 0;
    const shadowAt = (percent: number) => async () => {
      await adminCall(adminAgent, shadowAdmin, 'PUT', `/admin/models/${MODEL}/routes`, {
        opId: `bench-shadow-routes-${++routesOp}`,
        pins: [],
        ...(percent > 0 ? { shadow: { version: SHADOW_VERSION, percent } } : {}),
      });
    };
    await adminCall(adminAgent, admin, 'PUT', `/admin/models/${MODEL}/versions/${VERSION}`, {
      opId: `bench-deploy-${VERSION}`,
      artifactDir,
      artifactDigest: await artifactDigest(artifactDir),
    });
    await adminCall(adminAgent, admin, 'PUT', `/admin/models/${MODEL}/weights`, {
      opId: 'bench-weights-1',
      weights: { [VERSION]: 100 },
    });
    // Two routers in front of the slot, set up as a lifecycle would: deploy, then the whole traffic to the version.
    const routers = new Map<(typeof NGINX_TARGETS)[number], NginxServer>();
    const digest = await artifactDigest(artifactDir);
    for (const [name, routerName, clientKeepaliveMs] of [
      ['nginx', 'bench', 0],
      ['nginx keep-alive', 'bench-keepalive', 75_000],
    ] as const) {
      const confDir = tempDir('mll-bench-router-nginx-');
      // A master started as root runs its workers as nobody: they must reach the temp folders inside.
      chmodSync(confDir, 0o755);
      const listen = { host: '127.0.0.1', port: await freePort() };
      const router = new NginxTarget(
        {
          name: routerName,
          confDir,
          listen,
          userHeader: 'x-ml-user',
          nginx: nginxBinary(),
          clientKeepaliveMs,
          slots: [{ name: 'a', publicUrl: slotBase, server: `127.0.0.1:${slotPort}`, adminUrl: slotAdmin.url }],
        },
        admin.token,
      );
      await router.prepare();
      const server = await startNginx({ prefix: confDir, configFile: router.configFile, listen });
      nginxServers.push(server);
      const opId = `bench-${routerName}`;
      await router.deploy({ model: MODEL, version: VERSION, artifactDir, artifactDigest: digest, opId: `${opId}-1` });
      await router.setWeights({ model: MODEL, weights: { [VERSION]: 100 }, opId: `${opId}-2` });
      routers.set(name, server);
    }
    const viaNginx = (name: (typeof NGINX_TARGETS)[number]): Target => {
      const server = routers.get(name)!;
      return {
        name,
        url: `${server.url}/v1/models/${MODEL}/predict`,
        // nginx's workers (read when a run starts: a reload replaces them) and the gateway behind them.
        pids: () => [...childrenOf(server.pid), slot.pid!],
      };
    };
    const targets = {
      direct: { name: 'direct', url: `${directBase}/predict`, pids: () => [direct.pid!] },
      gateway: { name: 'gateway', url: `${gatewayBase}/v1/models/${MODEL}/predict`, pids: () => [gateway.pid!] },
      nginx: viaNginx('nginx'),
      'nginx keep-alive': viaNginx('nginx keep-alive'),
      ...Object.fromEntries(
        (
          [
            ['shadow off', 0],
            ['shadow 20%', 20],
            ['shadow 100%', 100],
          ] as const
        ).map(([name, percent]) => [
          name,
          {
            name,
            url: `${shadowBase}/v1/models/${MODEL}/predict`,
            pids: () => [shadowGateway.pid!],
            before: shadowAt(percent),
          },
        ]),
      ),
    } as Record<TargetName, Target>;
    console.log(
      `trained ${VERSION} in ${trainSeconds.toFixed(1)} s (with its training profile: the gateway sketches inputs); ` +
        `direct pid ${direct.pid} on ${directBase}, gateway pid ${gateway.pid} on ${gatewayBase}, ` +
        `nginx on ${targets.nginx.url} and ${targets['nginx keep-alive'].url} in front of gateway pid ${slot.pid}` +
        `${profDir ? ` (CPU profile into ${resolve(profDir)})` : ''}; ${rows.length} rows; ` +
        `warm-up (not counted): ${INITIAL_WARMUP} requests at concurrency 8 per target once, ` +
        `then ${WARMUP} before each run; ${ROUNDS} rounds, target order alternating; comparisons are medians of ` +
        'the rounds\n',
    );

    // Same cursor over the rows and user ids for both targets: the n-th request of a run is the same for both.
    let warmupFailures = 0;
    for (const name of TARGETS) {
      await targets[name].before?.();
      const warm = await drive(loadAgent, targets[name].url, rows, INITIAL_WARMUP, 8, { next: 0 });
      warmupFailures += warm.non200;
    }

    const runs: Record<string, Record<TargetName, Run[]>> = {};
    for (const spec of PHASES) {
      const phaseRuns = Object.fromEntries(TARGETS.map((name) => [name, [] as Run[]])) as Record<TargetName, Run[]>;
      runs[spec.name] = phaseRuns;
      for (let round = 0; round < ROUNDS; round++) {
        const order = round % 2 === 0 ? TARGETS : [...TARGETS].reverse();
        for (const name of order) {
          await targets[name].before?.();
          const url = targets[name].url;
          const warm = await drive(loadAgent, url, rows, WARMUP, spec.concurrency, { next: 0 });
          warmupFailures += warm.non200;
          const pids = targets[name].pids();
          const cpuBefore = cpuSecondsOfAll(pids);
          const outcome = await drive(loadAgent, url, rows, spec.requests, spec.concurrency, { next: 0 });
          const cpuAfter = cpuSecondsOfAll(pids);
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
      const n = summarize(phaseRuns.nginx);
      const k = summarize(phaseRuns['nginx keep-alive']);
      const off = summarize(phaseRuns['shadow off']);
      const s20 = summarize(phaseRuns['shadow 20%']);
      const s100 = summarize(phaseRuns['shadow 100%']);
      return {
        name: spec.name,
        concurrency: spec.concurrency,
        direct: d,
        gateway: g,
        nginx: n,
        'nginx keep-alive': k,
        'shadow off': off,
        'shadow 20%': s20,
        'shadow 100%': s100,
        throughNginx: { nginx: compare(n, g), 'nginx keep-alive': compare(k, g) },
        withShadow: { 'shadow 20%': compare(s20, off), 'shadow 100%': compare(s100, off) },
        ...compare(g, d),
      };
    });

    printResults(results);
    console.log(
      `in-process floor (prepare + run, no HTTP, one at a time): p50 ${floor.p50Ms.toFixed(3)} ms, ` +
        `p99 ${floor.p99Ms.toFixed(3)} ms over ${IN_PROCESS_CALLS} calls`,
    );
    console.log(
      `ratios are gateway / direct (throughput: < 1 means the gateway answers fewer req/s); added = gateway − direct; ` +
        `each the median over the rounds of the round's two runs (the table of targets pools the rounds); ` +
        `through nginx: nginx / gateway and nginx − gateway (nginx's srv CPU: its workers and the gateway behind); ` +
        `latencies client-side, nearest rank; srv CPU = the server process's user + system ` +
        `time over the measured requests (/proc/<pid>/stat) divided by their number`,
    );
    console.log(
      `client: node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), ` +
        'client and servers on the same machine',
    );
    printLoad(loadBefore, loadAfter);
    // The copies were made and compared: how many, and how many the in-flight cap dropped under load.
    const shadowTelemetry = (await adminCall(adminAgent, shadowAdmin, 'GET', `/admin/models/${MODEL}/telemetry`)) as {
      shadow?: Record<string, { compared: number; dropped: number; agreed: number }>;
    };
    const copies = shadowTelemetry.shadow?.[SHADOW_VERSION];
    console.log(
      `shadow copies predicted and compared: ${copies?.compared ?? 0} (agreeing ${copies?.agreed ?? 0}), ` +
        `dropped at the in-flight cap: ${copies?.dropped ?? 0}`,
    );

    const failed = warmupFailures > 0 || results.some((r) => TARGETS.some((name) => r[name].non200 > 0));
    console.log(
      `BENCH_JSON ${JSON.stringify({
        ...benchFacts('router', loadBefore, loadAfter),
        rounds: ROUNDS,
        warmup: WARMUP,
        initialWarmup: INITIAL_WARMUP,
        trainSeconds,
        inProcess: { calls: IN_PROCESS_CALLS, ...floor },
        phases: results,
        shadowCopies: copies ?? null,
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
  await Promise.allSettled(nginxServers.splice(0).map((server) => server.stop()));
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
