/**
 * Serving gateway throughput and latency benchmark.
 *
 * Trains the churn example model twice (two versions), starts the built gateway (`dist/src/serving/main.js`) as a
 * separate process on a free port, deploys both versions with weights 90/10 and drives predictions over keep-alive
 * HTTP with undici: sequential, concurrency 8, concurrency 32, and concurrency 8 while the weights are swapped
 * 90/10 ↔ 50/50 every 50 ms. Prints one table row per phase, the gateway's peak RSS and its own (server-side) mean
 * inference latency, then a `BENCH_JSON {...}` line. Exits non-zero if any prediction or weight swap failed.
 *
 * Run: `npm run bench` (builds, then `node dist/bench/gateway-throughput.js`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parse as parseCsv } from 'csv-parse/sync';
import { Agent, request } from 'undici';
import { projectRoot } from '../src/config/paths';
import { trainerPython } from '../src/config/toolchain';
import type { PredictResponse } from '../src/shared/gateway-api';
import type { ModelTelemetry } from '../src/shared/telemetry';
import { artifactDigest } from '../src/artifacts/digest';
import { benchFacts, percentile, printAligned, printLoad, runBenchmark } from './report';
import { writeTrainingProfile } from '../src/activities/data';

const MODEL = 'churn';
const STABLE = 'v1';
const CANDIDATE = 'v2';
const USERS = 5000;
/** Requests before each phase, not counted. */
const WARMUP = 500;
/** Requests at concurrency 8 once before the first phase (JIT, heap and session warm-up), not counted. */
const INITIAL_WARMUP = 5000;
const SWAP_INTERVAL_MS = 50;
const WEIGHTS_A = { [STABLE]: 90, [CANDIDATE]: 10 };
const WEIGHTS_B = { [STABLE]: 50, [CANDIDATE]: 50 };

interface PhaseSpec {
  name: string;
  concurrency: number;
  requests: number;
  /** Swap the weights 90/10 ↔ 50/50 every SWAP_INTERVAL_MS while the phase runs. */
  swapWeights?: boolean;
}

const PHASES: PhaseSpec[] = [
  { name: 'sequential', concurrency: 1, requests: 3000 },
  { name: 'concurrency 8', concurrency: 8, requests: 20_000 },
  { name: 'concurrency 32', concurrency: 32, requests: 20_000 },
  { name: 'c8 + weight swaps', concurrency: 8, requests: 20_000, swapWeights: true },
];

interface PhaseResult {
  name: string;
  concurrency: number;
  requests: number;
  seconds: number;
  reqPerSec: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  non200: number;
  /** Non-200 responses by status (`error` when no response came back). */
  non200By: Record<string, number>;
  byVersion: Record<string, number>;
  /** Mean inference latency measured by the gateway (session.run only) over this phase's successes. */
  serverMeanMs: number;
  weightSwaps?: number;
  weightSwapFailures?: number;
  /** Client-side latency of the weight swaps (PUT /admin/models/:model/weights, persisted before it is applied). */
  weightSwapP50Ms?: number;
  weightSwapMaxMs?: number;
}

export type Row = Record<string, number | string>;

const root = projectRoot();
const tempDirs: string[] = [];
let gateway: ChildProcess | undefined;

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rows of the test set as prediction features: identifier and label dropped, numbers parsed. */
export function loadRows(): Row[] {
  const raw = parseCsv(readFileSync(join(root, 'examples', 'churn', 'data', 'test.csv'), 'utf8'), {
    columns: true,
    skip_empty_lines: true,
  }) as Record<string, string>[];
  const drop = new Set(['customer_id', 'churned']);
  const rows = raw.map((r) =>
    Object.fromEntries(
      Object.entries(r)
        .filter(([k]) => !drop.has(k))
        .map(([k, v]): [string, number | string] => [k, v !== '' && Number.isFinite(Number(v)) ? Number(v) : v]),
    ),
  );
  if (rows.length === 0) throw new Error('examples/churn/data/test.csv has no rows');
  return rows;
}

/** Runs the example trainer into `out`; rejects with its stderr tail on failure. */
export function train(out: string, params: object): Promise<void> {
  const args = ['examples/churn/train.py', '--data-dir', 'examples/churn/data', '--out', out];
  args.push('--params', JSON.stringify(params));
  return new Promise((resolve, reject) => {
    const child = spawn(trainerPython(), args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0 && existsSync(join(out, 'metrics.json'))) resolve();
      else
        reject(
          new Error(`trainer failed (code ${code}, signal ${signal}):\n${stderr.split('\n').slice(-10).join('\n')}`),
        );
    });
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitForHealthz(baseUrl: string, child: ChildProcess, dispatcher: Agent): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the gateway exited during start (code ${child.exitCode}, signal ${child.signalCode})`);
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
  throw new Error('the gateway did not answer /healthz within 20 s');
}

/** The gateway's admin API as a benchmark calls it: the admin listener's URL and the bearer token it was given. */
export interface AdminEndpoint {
  url: string;
  token: string;
}

/** A fresh admin endpoint on a free port, with a random token (give both to the gateway through its environment). */
export async function newAdminEndpoint(): Promise<AdminEndpoint & { port: number }> {
  const port = await freePort();
  return { port, url: `http://127.0.0.1:${port}`, token: randomBytes(32).toString('base64url') };
}

export async function adminCall(
  dispatcher: Agent,
  admin: AdminEndpoint,
  method: 'PUT' | 'GET',
  path: string,
  body?: unknown,
): Promise<unknown> {
  const res = await request(`${admin.url}${path}`, {
    dispatcher,
    method,
    headers: {
      authorization: `Bearer ${admin.token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${method} ${path}: HTTP ${res.statusCode}: ${text}`);
  return JSON.parse(text) as unknown;
}

/** Successes and summed server-side inference latency over every version of the model. */
async function serverTotals(
  dispatcher: Agent,
  admin: AdminEndpoint,
): Promise<{ successes: number; latencySumMs: number }> {
  const t = (await adminCall(dispatcher, admin, 'GET', `/admin/models/${MODEL}/telemetry`)) as ModelTelemetry;
  let successes = 0;
  let latencySumMs = 0;
  for (const v of Object.values(t.versions)) {
    successes += v.requests - v.errors;
    latencySumMs += v.latencySumMs;
  }
  return { successes, latencySumMs };
}

export interface LoadOutcome {
  latencies: Float64Array;
  seconds: number;
  non200: number;
  non200By: Record<string, number>;
  byVersion: Record<string, number>;
}

/** Sends `total` predictions with `concurrency` requests in flight; returns client-side latencies and outcomes. */
export async function drive(
  dispatcher: Agent,
  url: string,
  rows: Row[],
  total: number,
  concurrency: number,
  cursor: { next: number },
): Promise<LoadOutcome> {
  const latencies = new Float64Array(total);
  const outcome: LoadOutcome = { latencies, seconds: 0, non200: 0, non200By: {}, byVersion: {} };
  let issued = 0;
  const fail = (kind: string): void => {
    outcome.non200++;
    outcome.non200By[kind] = (outcome.non200By[kind] ?? 0) + 1;
  };
  const worker = async (): Promise<void> => {
    while (issued < total) {
      const slot = issued++;
      const n = cursor.next++;
      const body = JSON.stringify({ userId: `user-${n % USERS}`, features: rows[n % rows.length] });
      const started = performance.now();
      try {
        const res = await request(url, {
          dispatcher,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        const text = await res.body.text();
        latencies[slot] = performance.now() - started;
        if (res.statusCode === 200) {
          const version = (JSON.parse(text) as PredictResponse).version;
          outcome.byVersion[version] = (outcome.byVersion[version] ?? 0) + 1;
        } else {
          fail(String(res.statusCode));
          if (outcome.non200 <= 3) process.stderr.write(`HTTP ${res.statusCode}: ${text.slice(0, 300)}\n`);
        }
      } catch (err) {
        latencies[slot] = performance.now() - started;
        fail('error');
        if (outcome.non200 <= 3) process.stderr.write(`request failed: ${(err as Error).message}\n`);
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  outcome.seconds = (performance.now() - started) / 1000;
  return outcome;
}

async function runPhase(
  spec: PhaseSpec,
  predictAgent: Agent,
  adminAgent: Agent,
  baseUrl: string,
  admin: AdminEndpoint,
  rows: Row[],
  cursor: { next: number },
  opSeq: { next: number },
): Promise<PhaseResult> {
  const url = `${baseUrl}/v1/models/${MODEL}/predict`;
  const warm = await drive(predictAgent, url, rows, WARMUP, spec.concurrency, cursor);
  const before = await serverTotals(adminAgent, admin);

  let swaps = 0;
  let swapFailures = 0;
  const swapLatencies: number[] = [];
  let swapping = spec.swapWeights === true;
  const swapLoop = (async () => {
    // Fixed rate: the k-th swap is due SWAP_INTERVAL_MS·k after the start; a slow swap is followed at once.
    const start = performance.now();
    let useB = true;
    for (let k = 1; swapping; k++) {
      await sleep(Math.max(0, start + k * SWAP_INTERVAL_MS - performance.now()));
      if (!swapping) break;
      const started = performance.now();
      try {
        await adminCall(adminAgent, admin, 'PUT', `/admin/models/${MODEL}/weights`, {
          opId: `bench-weights-${opSeq.next++}`,
          weights: useB ? WEIGHTS_B : WEIGHTS_A,
        });
        swapLatencies.push(performance.now() - started);
        swaps++;
        useB = !useB;
      } catch (err) {
        swapFailures++;
        process.stderr.write(`weight swap failed: ${(err as Error).message}\n`);
      }
    }
  })();

  let run: LoadOutcome;
  try {
    run = await drive(predictAgent, url, rows, spec.requests, spec.concurrency, cursor);
  } finally {
    swapping = false;
    await swapLoop;
  }
  const after = await serverTotals(adminAgent, admin);
  if (spec.swapWeights) {
    // Leave the phase with the starting weights, as the next run would find them.
    await adminCall(adminAgent, admin, 'PUT', `/admin/models/${MODEL}/weights`, {
      opId: `bench-weights-${opSeq.next++}`,
      weights: WEIGHTS_A,
    });
  }

  const sorted = run.latencies.slice().sort();
  const successes = after.successes - before.successes;
  const result: PhaseResult = {
    name: spec.name,
    concurrency: spec.concurrency,
    requests: spec.requests,
    seconds: run.seconds,
    reqPerSec: spec.requests / run.seconds,
    p50Ms: percentile(sorted, 50),
    p90Ms: percentile(sorted, 90),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1] ?? 0,
    non200: run.non200 + warm.non200,
    non200By: mergeCounts(run.non200By, warm.non200By),
    byVersion: run.byVersion,
    serverMeanMs: successes > 0 ? (after.latencySumMs - before.latencySumMs) / successes : 0,
  };
  if (spec.swapWeights) {
    result.weightSwaps = swaps;
    result.weightSwapFailures = swapFailures;
    const sortedSwaps = Float64Array.from(swapLatencies).sort();
    result.weightSwapP50Ms = percentile(sortedSwaps, 50);
    result.weightSwapMaxMs = sortedSwaps[sortedSwaps.length - 1] ?? 0;
  }
  return result;
}

function mergeCounts(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/** Peak resident set size (VmHWM) of a process in KiB, or undefined off Linux. */
function peakRssKiB(pid: number): number | undefined {
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

function printTable(results: PhaseResult[]): void {
  const header = ['phase', 'requests', 'seconds', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'srv ms', 'non-200'];
  const body = results.map((r) => [
    r.name,
    String(r.requests),
    r.seconds.toFixed(2),
    r.reqPerSec.toFixed(0),
    r.p50Ms.toFixed(2),
    r.p90Ms.toFixed(2),
    r.p99Ms.toFixed(2),
    r.maxMs.toFixed(2),
    r.serverMeanMs.toFixed(3),
    String(r.non200),
  ]);
  printAligned(header, body);
}

function stopGateway(): Promise<void> {
  const child = gateway;
  gateway = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function removeTempDirs(): void {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

async function main(): Promise<number> {
  const mainJs = join(root, 'dist', 'src', 'serving', 'main.js');
  if (!existsSync(mainJs)) throw new Error(`${mainJs} is missing: run \`npm run build\` first`);
  const rows = loadRows();
  const loadBefore = loadavg();

  const trainStarted = performance.now();
  // Both artifacts under one folder: the gateway's artifact root, the only place it loads from.
  const artifactRoot = tempDir('mll-bench-artifacts-');
  const stableDir = join(artifactRoot, STABLE);
  const candidateDir = join(artifactRoot, CANDIDATE);
  await Promise.all([train(stableDir, {}), train(candidateDir, { seed: 11 })]);
  // As the training activity does: the training profile in the artifact, so the gateway sketches every request's
  // inputs (the cost measured here). `--no-input-sketch` leaves it out.
  const sketch = !process.argv.includes('--no-input-sketch');
  if (sketch) {
    for (const dir of [stableDir, candidateDir]) {
      await writeTrainingProfile(dir, join(root, 'examples', 'churn', 'data', 'train.csv'));
    }
  }
  const trainSeconds = (performance.now() - trainStarted) / 1000;
  console.log(
    `trained ${STABLE} and ${CANDIDATE} in ${trainSeconds.toFixed(1)} s; input sketches ${sketch ? 'on' : 'off (--no-input-sketch)'}`,
  );

  const dataDir = tempDir('mll-bench-gw-');
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const admin = await newAdminEndpoint();
  gateway = spawn(process.execPath, [mainJs], {
    cwd: root,
    env: {
      ...process.env,
      GATEWAY_PORT: String(port),
      GATEWAY_HOST: '127.0.0.1',
      GATEWAY_ADMIN_PORT: String(admin.port),
      GATEWAY_ADMIN_TOKEN: admin.token,
      GATEWAY_ARTIFACT_ROOT: artifactRoot,
      GATEWAY_DATA_DIR: dataDir,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const gatewayPid = gateway.pid;
  if (gatewayPid === undefined) throw new Error('cannot start the gateway process');

  const maxConcurrency = Math.max(...PHASES.map((p) => p.concurrency));
  const predictAgent = new Agent({ connections: maxConcurrency, keepAliveTimeout: 30_000, pipelining: 1 });
  const adminAgent = new Agent({ connections: 2, keepAliveTimeout: 30_000 });
  try {
    await waitForHealthz(baseUrl, gateway, adminAgent);
    const opSeq = { next: 1 };
    for (const [version, dir] of [
      [STABLE, stableDir],
      [CANDIDATE, candidateDir],
    ] as const) {
      await adminCall(adminAgent, admin, 'PUT', `/admin/models/${MODEL}/versions/${version}`, {
        opId: `bench-deploy-${version}`,
        artifactDir: dir,
        artifactDigest: await artifactDigest(dir),
      });
    }
    await adminCall(adminAgent, admin, 'PUT', `/admin/models/${MODEL}/weights`, {
      opId: `bench-weights-${opSeq.next++}`,
      weights: WEIGHTS_A,
    });
    console.log(
      `gateway pid ${gatewayPid} on ${baseUrl}; ${MODEL} ${STABLE}/${CANDIDATE} at 90/10; ` +
        `${rows.length} rows, ${USERS} users; warm-up (not counted): ${INITIAL_WARMUP} requests at concurrency 8 once, ` +
        `then ${WARMUP} before each phase\n`,
    );

    const cursor = { next: 0 };
    const initial = await drive(predictAgent, `${baseUrl}/v1/models/${MODEL}/predict`, rows, INITIAL_WARMUP, 8, cursor);
    if (initial.non200 > 0) throw new Error(`${initial.non200} of the ${INITIAL_WARMUP} warm-up requests failed`);
    const results: PhaseResult[] = [];
    for (const spec of PHASES) {
      results.push(await runPhase(spec, predictAgent, adminAgent, baseUrl, admin, rows, cursor, opSeq));
    }

    const total = await serverTotals(adminAgent, admin);
    const serverMeanMs = total.successes > 0 ? total.latencySumMs / total.successes : 0;
    const peakKiB = peakRssKiB(gatewayPid);
    const loadAfter = loadavg();

    printTable(results);
    console.log('');
    for (const r of results) {
      const split = Object.entries(r.byVersion)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([v, n]) => `${v} ${((100 * n) / r.requests).toFixed(1)}%`)
        .join(', ');
      const swaps =
        r.weightSwaps === undefined
          ? ''
          : `; ${r.weightSwaps} weight swaps (${(r.weightSwaps / r.seconds).toFixed(1)}/s, ` +
            `p50 ${r.weightSwapP50Ms?.toFixed(1)} ms, max ${r.weightSwapMaxMs?.toFixed(1)} ms), ` +
            `${r.weightSwapFailures} failed`;
      const failures = r.non200 > 0 ? `; non-200 by status ${JSON.stringify(r.non200By)}` : '';
      console.log(`${r.name}: ${split}${swaps}${failures}`);
    }
    console.log(
      `gateway peak RSS (VmHWM): ${peakKiB === undefined ? 'n/a' : `${(peakKiB / 1024).toFixed(1)} MiB`}; ` +
        `server-side mean inference latency: ${serverMeanMs.toFixed(3)} ms over ${total.successes} predictions`,
    );
    console.log(
      `client: node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), ` +
        `srv ms = the gateway's own per-phase mean of session.run`,
    );
    printLoad(loadBefore, loadAfter);

    const failed =
      results.some((r) => r.non200 > 0) || results.some((r) => (r.weightSwapFailures ?? 0) > 0 || r.weightSwaps === 0);
    console.log(
      `BENCH_JSON ${JSON.stringify({
        ...benchFacts('gateway-throughput', loadBefore, loadAfter),
        users: USERS,
        warmup: WARMUP,
        initialWarmup: INITIAL_WARMUP,
        trainSeconds,
        phases: results,
        gatewayPeakRssKiB: peakKiB ?? null,
        serverMeanInferenceMs: serverMeanMs,
        serverSuccesses: total.successes,
        ok: !failed,
      })}`,
    );
    return failed ? 1 : 0;
  } finally {
    await Promise.allSettled([predictAgent.close(), adminAgent.close()]);
  }
}

async function cleanup(): Promise<void> {
  await stopGateway().catch(() => undefined);
  removeTempDirs();
}

// Only when run as a program: other benchmarks import the helpers above.
if (require.main === module) runBenchmark('gateway benchmark', main, cleanup);
