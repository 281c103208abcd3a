/**
 * Quota pool throughput and time-to-grant benchmark.
 *
 * Starts a stock Temporal dev server (`startDevServer()`: in memory, `temporal server start-dev`), the project's
 * control worker (it runs `quotaPoolWorkflow` and `quotaMonitorWorkflow` on task queue `ml-lifecycle`, bundled from
 * the built workflows) and ONE quota pool whose capacity is so large that nothing ever waits: the figures are those of
 * the pool's update path (an update per reservation, an update per release), not of queueing. After a warm-up it runs
 * one requester doing N sequential reserve → release iterations, then, for each concurrency K and each client lane
 * size L (`new QuotaClient(client, pools, L)`: at most L updates in flight per pool, the rest wait in FIFO order), K
 * requesters doing M iterations each at once. It prints reservations per second and the p50/p99/max time from calling
 * `QuotaClient.reserve` to the grant, the pool's accounting, then a `BENCH_JSON {...}` line.
 *
 * Exits non-zero if any reservation was refused or failed, if a scenario did not finish within its deadline, or if
 * the pool's accounting (leases left, grant and release counters) does not match what the requesters saw.
 *
 * Run: `npm run bench:quota` (builds, then `node dist/bench/quota-throughput.js`). Options (or environment):
 *   --sequential N            iterations of the single requester (QUOTA_BENCH_SEQUENTIAL, 300)
 *   --requesters K[,K...]     concurrent requesters per scenario (QUOTA_BENCH_REQUESTERS, 50)
 *   --lanes L[,L...]          client lane sizes; each concurrent scenario runs once per L (QUOTA_BENCH_LANES, 1,2,4)
 *   --clients C               spread each concurrent scenario's requesters over C QuotaClients, each with its own
 *                             lane, as C processes would (QUOTA_BENCH_CLIENTS, 1)
 *   --per-requester M         iterations of each concurrent requester (QUOTA_BENCH_PER_REQUESTER, 40)
 *   --warmup W                sequential iterations before timing (QUOTA_BENCH_WARMUP, 50)
 *   --deadline S              seconds a scenario may take; later calls fail (QUOTA_BENCH_DEADLINE, 60)
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { createActivities } from '../src/activities';
import { QuotaClient } from '../src/client/quota-client';
import { projectRoot } from '../src/config/paths';
import { temporalCliPath, trainerPython } from '../src/config/toolchain';
import { startDevServer, type DevServer } from '../src/dev/dev-server';
import { QuotaPoolsFile, type QuotaPoolState } from '../src/shared/quota';
import { createWorkers } from '../src/workers/workers';
import { benchFacts, percentile, printAligned, printLoad } from './report';

const POOL = 'bench';
/** So large that no reservation ever waits or is refused for capacity. */
const CAPACITY = { cpu: 1_000_000, memoryGiB: 1_000_000 };
const REQUEST = { cpu: 1 };
/** QuotaClient's default lane size (its constructor's third parameter), used by the warm-up and sequential runs. */
const DEFAULT_LANE = 1;
/**
 * Iterations per concurrent requester. It was 20 with one concurrent scenario per concurrency; with one per lane size
 * (three by default, lane 1 being serial) it is 10, to keep the whole run under about 2 minutes on 2 cores.
 */
const DEFAULT_PER_REQUESTER = 40;

interface Options {
  sequential: number;
  requesters: number[];
  lanes: number[];
  clients: number;
  perRequester: number;
  warmup: number;
  deadlineSeconds: number;
}

interface ScenarioSpec {
  name: string;
  requesters: number;
  /** The QuotaClient's lane size: updates it keeps in flight on the pool. */
  lane: number;
  /** QuotaClients the requesters are spread over (as if in that many processes), each with its own lane. */
  clients: number;
  perRequester: number;
}

interface ScenarioResult {
  name: string;
  requesters: number;
  lane: number;
  clients: number;
  /** Reserve → release iterations planned, i.e. reservations to send. */
  reservations: number;
  /** Reservations whose grant the requester received. */
  granted: number;
  refused: number;
  /** Releases that returned the lease. */
  released: number;
  /** Releases that found no lease (null). */
  releaseMissing: number;
  /** Calls (reserve or release) that threw, by message. */
  errors: number;
  errorsBy: Record<string, number>;
  /** Iterations not done by the scenario's deadline (calls in flight then included). */
  unfinished: number;
  /** Grants that reported having waited in the pool's queue (should be 0 with this capacity). */
  waitedGrants: number;
  seconds: number;
  reservationsPerSec: number;
  grantP50Ms: number;
  grantP99Ms: number;
  grantMaxMs: number;
  releaseP50Ms: number;
  releaseP99Ms: number;
  /** Continue-as-new of the pool during the scenario. */
  continuedAsNew: number;
  /** Pool counters moved by the scenario. */
  poolGrants: number;
  poolReleases: number;
  /** Leases the pool still held after the scenario (granted but not released); the benchmark releases them. */
  leasesLeft: number;
  /** Warnings and errors the SDK logged during the scenario, by level and message. */
  sdkLogs: Record<string, number>;
}

const root = projectRoot();
const tempDirs: string[] = [];
let server: DevServer | undefined;
let clientConnection: Connection | undefined;
let workerConnection: NativeConnection | undefined;
let workers: Worker[] = [];
let running: Promise<unknown> | undefined;
let stopping = false;
/** Warnings and errors the SDK logged (worker and native core), by level and message. */
const sdkLogs = new Map<string, number>();

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${value}"`);
  return n;
}

function readOptions(): Options {
  const { values } = parseArgs({
    options: {
      sequential: { type: 'string' },
      requesters: { type: 'string' },
      'per-requester': { type: 'string' },
      warmup: { type: 'string' },
      deadline: { type: 'string' },
      lanes: { type: 'string' },
      clients: { type: 'string' },
    },
    strict: true,
  });
  const env = process.env;
  const list = (name: string, value: string): number[] =>
    value.split(',').map((k) => {
      if (k.trim() === '') throw new Error(`${name} must be positive integers separated by commas, got "${value}"`);
      return positiveInt(name, k.trim(), 1);
    });
  return {
    sequential: positiveInt('--sequential', values.sequential ?? env.QUOTA_BENCH_SEQUENTIAL, 300),
    requesters: list('--requesters', values.requesters ?? env.QUOTA_BENCH_REQUESTERS ?? '50'),
    lanes: list('--lanes', values.lanes ?? env.QUOTA_BENCH_LANES ?? '1,2,4'),
    clients: positiveInt('--clients', values.clients ?? env.QUOTA_BENCH_CLIENTS, 1),
    perRequester: positiveInt(
      '--per-requester',
      values['per-requester'] ?? env.QUOTA_BENCH_PER_REQUESTER,
      DEFAULT_PER_REQUESTER,
    ),
    warmup: positiveInt('--warmup', values.warmup ?? env.QUOTA_BENCH_WARMUP, 50),
    deadlineSeconds: positiveInt('--deadline', values.deadline ?? env.QUOTA_BENCH_DEADLINE, 60),
  };
}

function logCounts(): Record<string, number> {
  return Object.fromEntries(sdkLogs);
}

function diffCounts(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) out[k] = v - (before[k] ?? 0);
  return out;
}

/** The pool's state; the query is tried for up to 60 s, as a pool whose workflow tasks stall cannot answer it. */
async function poolState(quota: QuotaClient): Promise<QuotaPoolState> {
  const until = Date.now() + 60_000;
  for (;;) {
    try {
      const state = await quota.state(POOL);
      if (!state) throw new Error(`pool "${POOL}" has not started`);
      return state;
    } catch (err) {
      if (Date.now() >= until || stopping) throw err;
      process.stderr.write(`pool state query failed (${(err as Error).message}), trying again\n`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

/**
 * `spec.requesters` requesters, each doing `spec.perRequester` iterations of reserve (a new lease id) then release,
 * all at once. Latencies are client-side: from calling `reserve` to its result, from calling `release` to its result.
 * After `deadlineMs` no iteration starts and the calls in flight fail (gRPC deadline). Leases left in the pool afterwards are
 * released, so that the next scenario starts from an empty pool.
 */
async function runScenario(
  client: Client,
  quotas: QuotaClient[],
  spec: ScenarioSpec,
  deadlineMs: number,
  failure: Promise<never>,
): Promise<ScenarioResult> {
  const total = spec.requesters * spec.perRequester;
  const grantMs = new Float64Array(total);
  const releaseMs = new Float64Array(total);
  let grantCount = 0;
  let releaseCount = 0;
  const outcome = { granted: 0, refused: 0, released: 0, releaseMissing: 0, errors: 0, waitedGrants: 0 };
  const errorsBy: Record<string, number> = {};
  let finished = 0;
  // Every call gets the scenario's deadline as its gRPC deadline: past it, no iteration starts and calls fail fast
  // (an AbortSignal would not do: the client's retries of RESOURCE_EXHAUSTED start calls it no longer cancels).
  const deadlineAt = Date.now() + deadlineMs;
  const expired = (): boolean => Date.now() >= deadlineAt;
  const complain = (what: string): void => {
    if (outcome.refused + outcome.errors + outcome.releaseMissing <= 3) process.stderr.write(`${what}\n`);
  };
  const failed = (what: string, err: unknown): void => {
    if (expired()) return;
    outcome.errors++;
    // The SDK's errors name the call ("Workflow Update failed"); the reason is in their cause.
    const cause = (err as { cause?: Error }).cause;
    const message = (err as Error).message + (cause?.message ? `: ${cause.message}` : '');
    errorsBy[message] = (errorsBy[message] ?? 0) + 1;
    complain(`${what} failed: ${message}`);
  };

  const quota = quotas[0] as QuotaClient;
  const requester = async (r: number): Promise<void> => {
    const mine = quotas[r % quotas.length] as QuotaClient;
    const slug = spec.name.replace(/[^A-Za-z0-9]+/g, '-');
    const holder = `bench-${slug}-${r}`;
    for (let i = 0; i < spec.perRequester && !stopping && !expired(); i++) {
      const leaseId = `${slug}-r${r}-i${i}`;
      let started = performance.now();
      try {
        const result = await client.withDeadline(deadlineAt, () =>
          mine.reserve(POOL, { leaseId, holder, kind: 'experiment', resources: REQUEST }),
        );
        const elapsed = performance.now() - started;
        if (!result.granted) {
          outcome.refused++;
          finished++;
          complain(`reservation ${leaseId} refused (${result.reason}): ${result.message}`);
          continue;
        }
        grantMs[grantCount++] = elapsed;
        outcome.granted++;
        if (result.waitedMs > 0) outcome.waitedGrants++;
      } catch (err) {
        failed(`reserve ${leaseId}`, err);
        if (!expired()) finished++;
        continue;
      }
      started = performance.now();
      try {
        const released = await client.withDeadline(deadlineAt, () => mine.release(POOL, { leaseId }));
        releaseMs[releaseCount++] = performance.now() - started;
        if (released === null) {
          outcome.releaseMissing++;
          complain(`release ${leaseId}: the pool did not hold it`);
        } else outcome.released++;
        finished++;
      } catch (err) {
        failed(`release ${leaseId}`, err);
        if (!expired()) finished++;
      }
    }
  };

  const before = await poolState(quota);
  const logsBefore = logCounts();
  const started = performance.now();
  await Promise.race([Promise.all(Array.from({ length: spec.requesters }, (_, r) => requester(r))), failure]);
  const seconds = (performance.now() - started) / 1000;
  const after = await poolState(quota);
  const logs = diffCounts(logCounts(), logsBefore);
  // Leases left (a release failed or was cut by the deadline, or a grant the requester never received): released.
  for (const lease of after.leases) await quota.release(POOL, { leaseId: lease.leaseId });

  const grants = grantMs.subarray(0, grantCount).slice().sort();
  const releases = releaseMs.subarray(0, releaseCount).slice().sort();
  return {
    name: spec.name,
    requesters: spec.requesters,
    lane: spec.lane,
    clients: spec.clients,
    reservations: total,
    ...outcome,
    errorsBy,
    unfinished: total - finished,
    seconds,
    reservationsPerSec: outcome.granted / seconds,
    grantP50Ms: percentile(grants, 50),
    grantP99Ms: percentile(grants, 99),
    grantMaxMs: grants[grants.length - 1] ?? 0,
    releaseP50Ms: percentile(releases, 50),
    releaseP99Ms: percentile(releases, 99),
    continuedAsNew: after.stats.continuedAsNew - before.stats.continuedAsNew,
    poolGrants: after.stats.grants - before.stats.grants,
    poolReleases: after.stats.releases - before.stats.releases,
    leasesLeft: after.leases.length,
    sdkLogs: logs,
  };
}

function printTable(results: ScenarioResult[]): void {
  const header = [
    'scenario',
    'requesters',
    'lane',
    'clients',
    'reservations',
    'granted',
    'seconds',
    'res/s',
    'grant p50 ms',
    'grant p99 ms',
    'grant max ms',
    'release p50 ms',
    'release p99 ms',
    'refused',
    'errors',
  ];
  const body = results.map((r) => [
    r.name,
    String(r.requesters),
    String(r.lane),
    String(r.clients),
    String(r.reservations),
    String(r.granted),
    r.seconds.toFixed(2),
    r.reservationsPerSec.toFixed(1),
    r.grantP50Ms.toFixed(1),
    r.grantP99Ms.toFixed(1),
    r.grantMaxMs.toFixed(1),
    r.releaseP50Ms.toFixed(1),
    r.releaseP99Ms.toFixed(1),
    String(r.refused),
    String(r.errors),
  ]);
  printAligned(header, body);
}

function temporalVersion(): string {
  try {
    return execFileSync(temporalCliPath(), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'temporal version unknown';
  }
}

function sdkVersion(): string {
  try {
    const pkg = join(root, 'node_modules', '@temporalio', 'worker', 'package.json');
    return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function problemsOf(r: ScenarioResult): string[] {
  const out: string[] = [];
  if (r.refused > 0) out.push(`${r.name}: ${r.refused} reservations refused`);
  if (r.errors > 0) out.push(`${r.name}: ${r.errors} calls failed (${JSON.stringify(r.errorsBy)})`);
  if (r.unfinished > 0) out.push(`${r.name}: ${r.unfinished} iterations not done by the deadline`);
  if (r.releaseMissing > 0) out.push(`${r.name}: ${r.releaseMissing} releases found no lease`);
  if (r.poolGrants !== r.granted)
    out.push(`${r.name}: the pool granted ${r.poolGrants}, the requesters saw ${r.granted}`);
  if (r.poolReleases !== r.released)
    out.push(`${r.name}: the pool counted ${r.poolReleases} releases, the requesters saw ${r.released}`);
  if (r.leasesLeft > 0) out.push(`${r.name}: the pool still held ${r.leasesLeft} leases afterwards (released then)`);
  return out;
}

async function main(): Promise<number> {
  const options = readOptions();
  const loadBefore = loadavg();
  console.log(
    `machine: node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), ` +
      `load average (1 min) ${(loadBefore[0] ?? 0).toFixed(2)}; ${temporalVersion()}; Temporal TS SDK ${sdkVersion()}`,
  );
  console.log(
    'stock dev server (it admits 10 in-flight updates per workflow), worker and requesters in this one machine',
  );

  // One quiet Runtime: the SDK's warnings and errors (its own and the native core's) are counted, not printed. No
  // shutdown signals: cleanup() stops the worker.
  const count =
    (level: string) =>
    (message: string): void => {
      const key = `${level} ${message}`;
      sdkLogs.set(key, (sdkLogs.get(key) ?? 0) + 1);
    };
  const noop = (): undefined => undefined;
  Runtime.install({
    logger: {
      log: (level, message) => (level === 'WARN' || level === 'ERROR' ? count(level)(message) : undefined),
      trace: noop,
      debug: noop,
      info: noop,
      warn: count('WARN'),
      error: count('ERROR'),
    },
    telemetryOptions: { logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} } },
    shutdownSignals: [],
  });

  let t = performance.now();
  server = await startDevServer();
  const address = server.address;
  console.log(`Temporal dev server (in memory) on ${address} in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  clientConnection = await Connection.connect({ address });
  const client = new Client({ connection: clientConnection });
  workerConnection = await NativeConnection.connect({ address });
  const quotaPools = QuotaPoolsFile.parse({ pools: [{ name: POOL, capacity: CAPACITY }] });
  const artifactsDir = mkdtempSync(join(tmpdir(), 'mll-bench-quota-'));
  tempDirs.push(artifactsDir);
  const activities = createActivities({
    client,
    // Nothing here calls the gateway or trains.
    gateway: { url: 'http://127.0.0.1:9', token: 'unused-nothing-calls-the-gateway' },
    artifactsDir,
    python: trainerPython(),
    root,
    quotaPools,
  });

  t = performance.now();
  // The control worker only (it runs the pool workflow): nothing trains here, so no training worker.
  workers = await createWorkers({ connection: workerConnection, activities, trainingClasses: [] });
  console.log(`control worker created (workflows bundled) in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  running = Promise.all(workers.map((w) => w.run()));
  const failure = running.then(
    () => {
      throw new Error('the worker stopped during the benchmark');
    },
    (err: unknown) => {
      throw new Error(`the worker failed: ${(err as Error).message}`);
    },
  );
  failure.catch(() => undefined);

  // The default lane (the constructor's default, DEFAULT_LANE) for set-up, warm-up, the sequential run and the checks.
  const quota = new QuotaClient(client, quotaPools);
  t = performance.now();
  await Promise.race([quota.configure(POOL), failure]);
  console.log(
    `pool "${POOL}" started in ${(performance.now() - t).toFixed(0)} ms, capacity ${JSON.stringify(CAPACITY)}`,
  );

  const deadlineMs = options.deadlineSeconds * 1000;
  t = performance.now();
  const warm = await runScenario(
    client,
    [quota],
    { name: 'warm-up', requesters: 1, lane: DEFAULT_LANE, clients: 1, perRequester: options.warmup },
    deadlineMs,
    failure,
  );
  console.log(
    `warm-up (not counted): ${options.warmup} sequential reserve + release in ` +
      `${((performance.now() - t) / 1000).toFixed(1)} s\n`,
  );

  const specs: ScenarioSpec[] = [
    { name: 'sequential', requesters: 1, lane: DEFAULT_LANE, clients: 1, perRequester: options.sequential },
    ...options.requesters.flatMap((k) =>
      options.lanes.map((lane) => ({
        name: `${k} concurrent, ${options.clients > 1 ? `${options.clients} clients × ` : ''}lane ${lane}`,
        requesters: k,
        lane,
        clients: options.clients,
        perRequester: options.perRequester,
      })),
    ),
  ];
  const results: ScenarioResult[] = [];
  for (const spec of specs) {
    if (stopping) break;
    // New clients per concurrent scenario: each one's lane bounds the updates it keeps in flight on the pool.
    const quotas =
      spec === specs[0]
        ? [quota]
        : Array.from({ length: spec.clients }, () => new QuotaClient(client, quotaPools, spec.lane));
    results.push(await runScenario(client, quotas, spec, deadlineMs, failure));
  }

  const final = await poolState(quota);
  const loadAfter = loadavg();
  const all = [warm, ...results];
  const seen = all.reduce((n, r) => n + r.granted, 0);
  const problems = all.flatMap(problemsOf);
  if (final.leases.length !== 0) problems.push(`the pool holds ${final.leases.length} leases at the end`);
  if (final.waiting.length !== 0) problems.push(`${final.waiting.length} reservations wait in the pool at the end`);
  if (final.stats.grants !== seen) problems.push(`pool stats.grants ${final.stats.grants}, requesters saw ${seen}`);
  if (final.stats.releases + final.stats.expirations !== final.stats.grants)
    problems.push(
      `pool stats: ${final.stats.grants} grants but ${final.stats.releases} releases + ` +
        `${final.stats.expirations} expirations`,
    );
  if (final.stats.refusals !== 0) problems.push(`pool stats.refusals ${final.stats.refusals}, expected 0`);
  if (Object.values(final.used).some((v) => v !== 0)) problems.push(`pool usage ${JSON.stringify(final.used)}`);
  if (stopping) problems.push('interrupted');

  printTable(results);
  console.log('');
  console.log(
    'each iteration is one reserve then one release of a new lease id; the client batches them into updates;',
  );
  console.log(
    'lane = batch updates each QuotaClient keeps in flight on the pool (calls queue in the client meanwhile);',
  );
  console.log('clients = QuotaClients the requesters are spread over (at most lane × clients updates in flight);');
  console.log('res/s = reservations granted / wall seconds of the whole reserve + release loop (releases included);');
  console.log('grant ms = client-side time from calling reserve to the grant (release ms likewise), nearest rank');
  for (const r of results) {
    console.log(
      `${r.name}: ${r.granted}/${r.reservations} granted, ${r.waitedGrants} waited in the queue, ` +
        `pool continued as new ${r.continuedAsNew} time(s)` +
        (r.unfinished > 0 ? `, ${r.unfinished} iterations cut by the ${options.deadlineSeconds} s deadline` : ''),
    );
    for (const [message, n] of Object.entries(r.errorsBy)) console.log(`  ${n}× error: ${message}`);
    for (const [message, n] of Object.entries(r.sdkLogs)) console.log(`  SDK logged ${n}× ${message}`);
  }
  console.log(
    `pool at the end: ${final.leases.length} leases, ${final.waiting.length} waiting, stats.grants ` +
      `${final.stats.grants} (requesters saw ${seen}, warm-up included), releases ${final.stats.releases}, ` +
      `expirations ${final.stats.expirations}, refusals ${final.stats.refusals}, continued as new ` +
      `${final.stats.continuedAsNew} time(s)`,
  );
  printLoad(loadBefore, loadAfter);
  console.log(problems.length === 0 ? 'accounting OK: every reservation granted and released' : 'FAILED:');
  for (const p of problems) console.log(`  - ${p}`);

  console.log(
    `BENCH_JSON ${JSON.stringify({
      ...benchFacts('quota-throughput', loadBefore, loadAfter),
      temporal: temporalVersion(),
      sdk: sdkVersion(),
      options,
      scenarios: results,
      warmup: warm,
      finalPool: { leases: final.leases.length, waiting: final.waiting.length, stats: final.stats },
      problems,
      ok: problems.length === 0,
    })}`,
  );
  return problems.length === 0 ? 0 : 1;
}

let cleaning: Promise<void> | undefined;

/** Stops the worker, closes the connections, stops the dev server and removes the temp folders; runs once. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    stopping = true;
    for (const w of workers) {
      try {
        w.shutdown();
      } catch {
        // not running (never started, or already stopped)
      }
    }
    if (running) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        running.catch(() => undefined),
        new Promise((r) => {
          timer = setTimeout(r, 15_000);
        }),
      ]);
      clearTimeout(timer);
    }
    await workerConnection?.close().catch(() => undefined);
    await clientConnection?.close().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  })();
  return cleaning;
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: stopping the worker and the dev server\n`);
    void cleanup().finally(() => process.exit(code));
  });
}

main().then(
  async (code) => {
    await cleanup();
    process.exitCode = code;
  },
  async (err: unknown) => {
    if (!stopping) process.stderr.write(`quota benchmark failed: ${(err as Error).stack ?? String(err)}\n`);
    await cleanup();
    process.exitCode = 1;
  },
);
