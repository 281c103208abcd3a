/**
 * Time from an injected breach to 0 % candidate traffic, on the stack the demo runs, as decided by the built-in
 * telemetry checks and by a PromQL check read from a real Prometheus, side by side.
 *
 * Starts what `npm run demo` starts, as separate processes: a Temporal dev server (`startDevServer()`, in memory,
 * headless, on free ports; the search attributes registered), the serving gateway (`dist/src/serving/main.js`) and the
 * worker (`dist/src/workers/main.js`), each with its own temp data dir and log file; and, when any run needs it, one
 * Prometheus (`startPrometheus()`, Debian's 2.42) scraping the gateway's public `GET /metrics` every
 * SCRAPE_INTERVAL_MS. The worker runs under the shipped platform policy (config/policy.yaml: signatures required),
 * copied into the temp dir with `analysis.urls` set to `http://127.0.0.1:*` so that specs may call the bench's
 * Prometheus on its free port, and with a keyring holding a key made for this run; the bench signs alice's approvals
 * with it. One model, with a fresh name, gets `v1` promoted once from examples/churn/specs/good.yaml. Then each run
 * starts a candidate lifecycle (`v2`, `v3`, …) from the same spec with a long canary bake sampled every `--interval`,
 * under live traffic (`LoadGenerator`, rows of examples/churn/data/test.csv), approves its deploy gate as alice, waits
 * until it is in `canary`, and at a random phase of the sampling makes the candidate fail its predictions
 * (`PUT /admin/models/:model/versions/:v/faults` `{"errorRate": X}`). From that moment it polls
 * `GET /admin/models/:model` every 5 ms until the candidate has no weight: that interval is the figure. It also
 * records the failed decision (check, sample, value), the time the lifecycle reached `rolled-back`, and from the
 * workflow history where the time went (waiting for the sample's timer, the analysis activity, the rollback's weight
 * swap).
 *
 * Providers (`--provider`): a `builtin` candidate is the example's spec, judged by the checks the worker computes from
 * the gateway's telemetry (`outage`, `errorRate`, …), which it reads at every sample. A `prometheus` candidate adds the
 * metric check `prom-error-rate`: the candidate's `increase(mlgw_errors_total[5s]) / increase(mlgw_requests_total[5s])`
 * by an instant query at every sample, at most 0.05; and turns off the built-in checks that would catch the same
 * fault first (`errorRate.max` 1 without `vsStable`, `outage` a dry run), so that its figure is the PromQL check's
 * own. That figure is expected to be larger: the errors reach Prometheus only at its next scrape of the gateway (up to
 * a scrape interval after they happen), the failing sample is the first one after that scrape, and the 5 s lookback
 * mixes the breach's errors with the healthy requests before it, so a partial fault (`--error-rate` near the 0.05
 * threshold) needs more of the window behind it before the ratio crosses. With `both`, the runs alternate builtin,
 * prometheus, builtin, … on the same stack, so that both see the same machine load.
 *
 * Each run asserts that the lifecycle rolled back on a sample of its canary, after the breach, that a prometheus run
 * was stopped by `prom-error-rate` alone, and that the load generator saw no failed request but the candidate's
 * injected 500s (the stable version answered every request it got). Exits 1 if any run fails an assertion; the temp
 * folder (logs, Prometheus's included) is then kept and its path printed.
 *
 * Run: `npm run bench:rollback` (builds, then `node dist/bench/rollback.js`). Options:
 *   --runs N              candidate lifecycles in all, each breached and rolled back (10; with both, N/2 each)
 *   --provider P          builtin, prometheus or both: what judges the candidates (both)
 *   --interval D          rollout.analysis.interval of the candidates, e.g. 1s, 2s (1s; at least 1s)
 *   --error-rate X        share of the candidate's predictions the injected fault fails (1)
 *   --rate R              live predictions per second (100)
 *   --bake D              canary bake of the candidates (60s)
 *   --canary-percent P    canary share of the candidates (the spec's, 10)
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { Agent, request } from 'undici';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { generateApproverKey } from '../src/client/approval-signing';
import { LifecycleClient } from '../src/client/lifecycle-client';
import { loadSpecFile } from '../src/client/spec-file';
import { projectRoot } from '../src/config/paths';
import { loadPolicyFile } from '../src/config/policy';
import { startDevServer, type DevServer } from '../src/dev/dev-server';
import { LoadGenerator } from '../src/dev/load-generator';
import { startPrometheus, waitForScrape, type PrometheusServer } from '../src/dev/prometheus';
import { freePort, waitFor } from '../src/dev/ports';
import { startNode, type ManagedProcess } from '../src/dev/processes';
import { registerSearchAttributes } from '../src/dev/register-search-attributes';
import { MetricCheck, type MetricCheckInput } from '../src/shared/analysis';
import { parseDurationMs } from '../src/shared/duration';
import type { ModelRouting } from '../src/shared/gateway-api';
import { GatewayMetric } from '../src/shared/gateway-metrics';
import type { LifecycleSpec } from '../src/shared/spec';
import { TERMINAL_STAGES, type Decision, type LifecycleStatus } from '../src/shared/status';
import type { ModelTelemetry } from '../src/shared/telemetry';
import { EventType, eventId, eventMs } from './history';
import { benchFacts, percentile, printAligned, printLoad, runBenchmark } from './report';

const root = projectRoot();
const APPROVER = 'alice';
const STABLE = 'v1';
/** Gateway poll period while waiting for the candidate's weight to reach 0. */
const POLL_MS = 5;
/** Minimum sample of every check, as the brief of the benchmark asks (the spec's is 60). */
const MIN_SAMPLES = 20;
/** Canary time before the breach, at least: a few samples of the healthy candidate pass first. */
const SETTLE_MS = 2000;
/** Deadlines: training to the gate, the gate to the canary, the breach to 0 %, 0 % to `rolled-back`. */
const TO_GATE_MS = 180_000;
const TO_CANARY_MS = 60_000;
const TO_ZERO_MS = 60_000;
const TO_ROLLED_BACK_MS = 60_000;

/** What judges a candidate: the worker's checks on the gateway's telemetry, or a PromQL check. */
const PROVIDERS = ['builtin', 'prometheus'] as const;
type Provider = (typeof PROVIDERS)[number];
/** How often the bench's Prometheus scrapes the gateway. */
const SCRAPE_INTERVAL_MS = 1000;
/** The PromQL check's lookback: at least a few scrapes, so that `increase` has two points whatever the phase. */
const PROM_LOOKBACK = '5s';
const PROM_CHECK = 'prom-error-rate';
const PROM_MAX_ERROR_RATE = 0.05;
const PROM_SELECTOR = '{model="{{model}}",version="{{version}}"}';
/** The candidate's error rate over the lookback, from the gateway's counters as Prometheus scraped them. */
const PROM_QUERY =
  `sum(increase(${GatewayMetric.errors}${PROM_SELECTOR}[${PROM_LOOKBACK}])) / ` +
  `sum(increase(${GatewayMetric.requests}${PROM_SELECTOR}[${PROM_LOOKBACK}]))`;

interface Options {
  runs: number;
  provider: Provider | 'both';
  intervalMs: number;
  rate: number;
  bakeMs: number;
  canaryPercent: number | undefined;
  /** Share of the candidate's predictions the injected fault fails. */
  errorRate: number;
}

/** Where the time between the breach and 0 % went, in ms, from the workflow history and the poll. */
interface Breakdown {
  /** Breach → the timer of the sample that failed fired (the sample's wait). */
  waitForSampleMs: number;
  /** That timer → the analysis activity's completion (workflow task, telemetry read, checks). */
  analysisMs: number;
  /** Analysis completed → 0 % seen by the poll (workflow task, weights activity, the gateway's swap, the poll). */
  swapMs: number;
  /**
   * Breach → the start of the failing sample's window (the completion of the analysis before it, which read the
   * telemetry the window starts from); negative when the window began before the breach. Null for a first sample.
   */
  windowStartMs: number | null;
  /** The failing sample's timer: the duration it was started with, and how long after its start it fired. */
  timerRequestedMs: number;
  timerFiredAfterMs: number;
}

interface RunResult {
  run: number;
  provider: Provider;
  version: string;
  lifecycleId: string;
  /** Breach → the first poll that saw the candidate without weight. */
  toZeroMs: number;
  /** Round trip of that poll: the figure's resolution is this plus POLL_MS. */
  lastPollMs: number;
  polls: number;
  /** Canary time before the breach. */
  canaryBeforeBreachMs: number;
  /** Failed checks of the deciding sample, e.g. `outage` or `outage+errorRate` (dry runs left out). */
  failedCheck: string;
  /** The first deciding check's value (for `prom-error-rate`, the PromQL error rate). */
  failedValue: number | null;
  /** Sample of the bake that failed (1, 2, …); null if the end-of-bake readout failed. */
  sample: number | null;
  /** Candidate requests in the failing sample's window. */
  sampleSize: number | null;
  /** Breach → the failing decision's telemetry read (its `at`, ms resolution). */
  decisionMs: number;
  /** Breach → the `rolled-back` event of the lifecycle (workflow time). */
  rolledBackMs: number;
  breakdown: Breakdown | null;
  /** Load generator of the run: requests sent, answered, failed by status. */
  sent: number;
  ok: number;
  failedBy: Record<string, number>;
  /** Errors of the stable version on the gateway during the run. */
  stableErrors: number;
  problems: string[];
}

const tempDirs: string[] = [];
const children: ManagedProcess[] = [];
let server: DevServer | null = null;
let connection: Connection | null = null;
let prom: PrometheusServer | null = null;
const loads = new Set<LoadGenerator>();
const pollAgent = new Agent({ connections: 2, keepAliveTimeout: 30_000 });
let keepTemp = false;

function positiveNumber(name: string, value: string | undefined, fallback: number, integer = false): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n)))
    throw new Error(`${name} must be a positive ${integer ? 'integer' : 'number'}, got "${value}"`);
  return n;
}

function duration(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = /^\d+$/.test(value) ? Number(value) : parseDurationMs(value);
  if (ms === undefined || ms <= 0) throw new Error(`${name} must be a duration such as 1s or 500ms, got "${value}"`);
  return ms;
}

function readOptions(): Options {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string' },
      interval: { type: 'string' },
      rate: { type: 'string' },
      bake: { type: 'string' },
      'canary-percent': { type: 'string' },
      'error-rate': { type: 'string' },
      provider: { type: 'string' },
    },
    strict: true,
  });
  const provider = values.provider ?? 'both';
  if (provider !== 'both' && !(PROVIDERS as readonly string[]).includes(provider))
    throw new Error(`--provider must be ${PROVIDERS.join(', ')} or both, got "${provider}"`);
  const options: Options = {
    runs: positiveNumber('--runs', values.runs, 10, true),
    provider: provider as Options['provider'],
    intervalMs: duration('--interval', values.interval, 1000),
    rate: positiveNumber('--rate', values.rate, 100),
    bakeMs: duration('--bake', values.bake, 60_000),
    canaryPercent:
      values['canary-percent'] === undefined
        ? undefined
        : positiveNumber('--canary-percent', values['canary-percent'], 10),
    errorRate: values['error-rate'] === undefined ? 1 : Number(values['error-rate']),
  };
  if (!(options.errorRate > 0 && options.errorRate <= 1)) throw new Error('--error-rate must be in (0, 1]');
  if (options.intervalMs < 1000) throw new Error('--interval must be at least 1s (the spec refuses less)');
  // The breach lands at most SETTLE_MS + interval into the canary and is caught within about two intervals; the bake
  // samples only while more than an interval of it is left.
  const needed = SETTLE_MS + 4 * Math.max(options.intervalMs, 1000) + 10_000;
  if (options.bakeMs < needed) throw new Error(`--bake must be at least ${needed} ms with this interval`);
  return options;
}

/** The provider of run `run` (1, 2, …): with `both`, builtin and prometheus alternate, builtin first. */
function providerOf(run: number, choice: Options['provider']): Provider {
  if (choice !== 'both') return choice;
  return run % 2 === 1 ? 'builtin' : 'prometheus';
}

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** The last element that satisfies `pred` (Array.prototype.findLast is ES2023; the project targets ES2022). */
function lastOf<T>(items: readonly T[], pred: (item: T) => boolean): T | undefined {
  for (let i = items.length - 1; i >= 0; i--) if (pred(items[i] as T)) return items[i];
  return undefined;
}

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));
/** Wall-clock ms with sub-ms precision, comparable with the server's and the worker's timestamps. */
const wallNow = () => performance.timeOrigin + performance.now();

/** A fresh admin token for the run's gateway and worker (through their environment only). */
const adminToken = randomBytes(32).toString('base64url');

/** A call of the gateway's admin API (an admin URL), with the run's token. */
async function getJson<T>(url: string, init: { method?: 'GET' | 'PUT'; body?: unknown } = {}): Promise<T> {
  const res = await request(url, {
    method: init.method ?? 'GET',
    dispatcher: pollAgent,
    headers: {
      authorization: `Bearer ${adminToken}`,
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${init.method ?? 'GET'} ${url}: ${res.statusCode} ${text}`);
  return JSON.parse(text) as T;
}

async function waitForStatus(
  lifecycles: LifecycleClient,
  id: string,
  what: string,
  done: (s: LifecycleStatus) => boolean,
  timeoutMs: number,
  everyMs = 100,
): Promise<LifecycleStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: LifecycleStatus | undefined;
  while (Date.now() < deadline) {
    last = await lifecycles.status(id).catch(() => last);
    if (last && done(last)) return last;
    if (last && TERMINAL_STAGES.includes(last.stage))
      throw new Error(`${id} ended ${last.stage} while waiting for ${what}: ${last.error?.message ?? ''}`);
    await sleep(everyMs);
  }
  const tail = last?.events.slice(-4).map((e) => `${e.stage}: ${e.message}`);
  throw new Error(`${id}: no ${what} within ${timeoutMs / 1000} s; last events: ${JSON.stringify(tail)}`);
}

/**
 * The example's good spec for `model` and `version`, its analysis sampled every `intervalMs`. With `prometheus`, the
 * PromQL error-rate check at `promUrl` decides alone: the built-in checks that see the same fault cannot stop it.
 */
function specFor(
  model: string,
  version: string,
  bakeMs: number,
  options: Options,
  judge: { provider: 'builtin' } | { provider: 'prometheus'; promUrl: string } = { provider: 'builtin' },
): LifecycleSpec {
  const spec = structuredClone({
    ...loadSpecFile(join(root, 'examples', 'churn', 'specs', 'good.yaml'), { version }),
    model,
  });
  spec.description = `rollback benchmark ${version}`;
  spec.rollout.canary.bake = bakeMs;
  if (options.canaryPercent !== undefined) spec.rollout.canary.percent = options.canaryPercent;
  spec.rollout.analysis.interval = options.intervalMs;
  spec.rollout.analysis.minSamples = MIN_SAMPLES;
  spec.rollout.analysis.maxWaitForSamples = 20_000;
  if (judge.provider === 'prometheus') {
    const analysis = spec.rollout.analysis;
    analysis.errorRate = { ...analysis.errorRate, max: 1, vsStable: false };
    analysis.outage = { ...analysis.outage, dryRun: true };
    const check: MetricCheckInput = {
      name: PROM_CHECK,
      provider: { prometheus: { address: judge.promUrl, query: PROM_QUERY, timeout: 2000 } },
      successCondition: `result <= ${PROM_MAX_ERROR_RATE}`,
    };
    analysis.metrics = [...analysis.metrics, MetricCheck.parse(check)];
  }
  return spec;
}

/**
 * The worker's platform policy, written into `dir`: the shipped one (config/policy.yaml, signatures required) with
 * `analysis.urls` allowing any port of 127.0.0.1, where the bench's Prometheus listens on a free port. Checked as the
 * worker will check it, so a bad copy fails here rather than as a worker that exits at start.
 */
function writePolicy(dir: string): string {
  const file = join(dir, 'policy.yaml');
  const policy = parseYaml(readFileSync(join(root, 'config', 'policy.yaml'), 'utf8')) as {
    defaults?: { analysis?: Record<string, unknown> };
  };
  policy.defaults = { ...policy.defaults, analysis: { ...policy.defaults?.analysis, urls: ['http://127.0.0.1:*'] } };
  writeFileSync(file, stringifyYaml(policy));
  loadPolicyFile(file);
  return file;
}

/**
 * A signing key for the approver, made for this run, and the keyring file the worker trusts with its public half:
 * the shipped policy refuses unsigned approvals.
 */
function writeKeyring(dir: string): { keyring: string; privateKeyPem: string } {
  const key = generateApproverKey();
  const keyring = join(dir, 'keyring.yaml');
  writeFileSync(keyring, stringifyYaml({ approvers: { [APPROVER]: { keys: [key.publicKey] } } }));
  return { keyring, privateKeyPem: key.privateKeyPem };
}

/** Approves each gate as it opens, signed with `privateKeyPem`, until the lifecycle reaches one of `stages` (or ends). */
async function approveUntil(
  lifecycles: LifecycleClient,
  id: string,
  stages: string[],
  privateKeyPem: string,
): Promise<LifecycleStatus> {
  for (;;) {
    const s = await waitForStatus(
      lifecycles,
      id,
      `a gate or ${stages.join('/')}`,
      (x) => x.pendingGate !== null || stages.includes(x.stage),
      TO_GATE_MS,
    );
    if (s.pendingGate === null) return s;
    await lifecycles.approve(
      id,
      { by: APPROVER, gate: s.pendingGate.gate, reason: 'rollback benchmark' },
      privateKeyPem,
    );
  }
}

/**
 * Splits breach → 0 % with the lifecycle's history: the rollback's `setTrafficWeights` is the last one scheduled; the
 * analysis that decided it is the last `analyzeStage` completed before it, and its sample's timer the last one fired
 * before that analysis was scheduled.
 */
async function breakdownOf(client: Client, id: string, breachAt: number, zeroAt: number): Promise<Breakdown | null> {
  const history = await client.workflow.getHandle(id).fetchHistory();
  const events = history.events ?? [];
  const names = new Map<number, string>();
  for (const e of events) {
    if (e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
      names.set(eventId(e), e.activityTaskScheduledEventAttributes?.activityType?.name ?? '');
  }
  const swap = lastOf(
    events,
    (e) =>
      e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED && names.get(eventId(e)) === 'setTrafficWeights',
  );
  if (!swap) return null;
  const analysisDone = lastOf(
    events,
    (e) =>
      e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED &&
      eventId(e) < eventId(swap) &&
      names.get(Number(e.activityTaskCompletedEventAttributes?.scheduledEventId?.toString())) === 'analyzeStage',
  );
  if (!analysisDone) return null;
  const analysisScheduled = Number(analysisDone.activityTaskCompletedEventAttributes?.scheduledEventId?.toString());
  const timer = lastOf(
    events,
    (e) => e.eventType === EventType.EVENT_TYPE_TIMER_FIRED && eventId(e) < analysisScheduled,
  );
  if (!timer) return null;
  const previous = lastOf(
    events,
    (e) =>
      e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED &&
      eventId(e) < analysisScheduled &&
      names.get(Number(e.activityTaskCompletedEventAttributes?.scheduledEventId?.toString())) === 'analyzeStage',
  );
  const timerStarted = events.find(
    (e) => eventId(e) === Number(timer.timerFiredEventAttributes?.startedEventId?.toString()),
  );
  const timeout = timerStarted?.timerStartedEventAttributes?.startToFireTimeout;
  return {
    windowStartMs: previous ? eventMs(previous) - breachAt : null,
    timerRequestedMs: timeout ? Number(timeout.seconds?.toString() ?? 0) * 1000 + (timeout.nanos ?? 0) / 1e6 : NaN,
    timerFiredAfterMs: timerStarted ? eventMs(timer) - eventMs(timerStarted) : NaN,
    waitForSampleMs: eventMs(timer) - breachAt,
    analysisMs: eventMs(analysisDone) - eventMs(timer),
    swapMs: zeroAt - eventMs(analysisDone),
  };
}

async function stopLoad(load: LoadGenerator): Promise<void> {
  loads.delete(load);
  await load.stop();
}

function startLoad(gatewayUrl: string, model: string, rate: number): LoadGenerator {
  const load = new LoadGenerator({
    gatewayUrl,
    model,
    rowsCsv: join(root, 'examples', 'churn', 'data', 'test.csv'),
    labelColumn: 'churned',
    dropColumns: ['customer_id'],
    ratePerSecond: rate,
  });
  loads.add(load);
  load.start();
  return load;
}

/** One candidate: train, approve, canary, breach, time to 0 %, rolled back; then the checks of the run. */
async function runOnce(
  run: number,
  ctx: {
    client: Client;
    lifecycles: LifecycleClient;
    gatewayUrl: string;
    gatewayAdminUrl: string;
    model: string;
    options: Options;
    privateKeyPem: string;
    /** The bench's Prometheus; null when no run is judged by it. */
    promUrl: string | null;
  },
): Promise<RunResult> {
  const { client, lifecycles, gatewayUrl, gatewayAdminUrl, model, options, privateKeyPem, promUrl } = ctx;
  const version = `v${run + 1}`;
  const provider = providerOf(run, options.provider);
  if (provider === 'prometheus' && promUrl === null) throw new Error('a prometheus run without a Prometheus');
  const telemetryUrl = `${gatewayAdminUrl}/admin/models/${model}/telemetry`;
  const routingUrl = `${gatewayAdminUrl}/admin/models/${model}`;
  const stableErrorsNow = async () =>
    (await getJson<ModelTelemetry>(telemetryUrl)).versions[STABLE]?.errors ?? Number.NaN;

  const load = startLoad(gatewayUrl, model, options.rate);
  const stableErrorsBefore = await stableErrorsNow();
  const judge = provider === 'prometheus' ? { provider, promUrl: promUrl as string } : { provider };
  const { id } = await lifecycles.start(specFor(model, version, options.bakeMs, options, judge));
  const inCanary = await approveUntil(lifecycles, id, ['canary', 'ramping'], privateKeyPem);
  if (inCanary.stage !== 'canary') throw new Error(`${id} reached ${inCanary.stage} instead of canary`);
  const canaryAt = Date.parse(lastOf(inCanary.events, (e) => e.stage === 'canary')?.at ?? '') || Date.now();

  // A random phase of the sampling, so that the wait for the next sample is what an operator would see on average.
  // The samples come at least a second apart whatever the interval (the server fires shorter timers after ~1 s).
  const period = Math.max(options.intervalMs, 1000);
  await sleep(Math.max(0, canaryAt + SETTLE_MS - Date.now()) + Math.random() * period);
  const before = await lifecycles.status(id);
  if (before.stage !== 'canary') throw new Error(`${id} left the canary before the breach: ${before.stage}`);
  const weightBefore = (await getJson<ModelRouting>(routingUrl)).weights[version] ?? 0;
  if (!(weightBefore > 0)) throw new Error(`${id}: ${version} has no weight on the gateway in its canary`);

  const breachAt = wallNow();
  const breachPerf = performance.now();
  await getJson(`${gatewayAdminUrl}/admin/models/${model}/versions/${version}/faults`, {
    method: 'PUT',
    body: { errorRate: options.errorRate },
  });
  let polls = 0;
  let lastPollMs = 0;
  let toZeroMs = Number.NaN;
  while (performance.now() - breachPerf < TO_ZERO_MS) {
    const sent = performance.now();
    const routing = await getJson<ModelRouting>(routingUrl);
    const now = performance.now();
    polls++;
    lastPollMs = now - sent;
    if (!((routing.weights[version] ?? 0) > 0)) {
      toZeroMs = now - breachPerf;
      break;
    }
    await sleep(POLL_MS);
  }
  if (Number.isNaN(toZeroMs))
    throw new Error(`${id}: ${version} still had traffic ${TO_ZERO_MS / 1000} s after the breach`);
  const zeroAt = breachAt + toZeroMs;

  const end = await waitForStatus(
    lifecycles,
    id,
    'rolled-back',
    (s) => s.stage === 'rolled-back',
    TO_ROLLED_BACK_MS,
    50,
  ).catch(async (err: unknown) => {
    const s = await lifecycles.status(id).catch(() => null);
    if (s?.stage === 'rolled-back') return s;
    throw err;
  });
  await stopLoad(load);
  const stableErrors = (await stableErrorsNow()) - stableErrorsBefore;

  const problems: string[] = [];
  // Dry-run failures are recorded too (marked `dryRun`), but decide nothing.
  const failed: Decision[] = end.decisions.filter((d) => d.outcome === 'fail' && !d.tolerated && d.dryRun !== true);
  const deciding = failed.filter((d) => d.stage === 'canary');
  const first = deciding[0];
  if (!first) problems.push(`no failed canary decision (failed: ${JSON.stringify(failed)})`);
  if (provider === 'prometheus' && deciding.some((d) => d.check !== PROM_CHECK))
    problems.push(`stopped by ${deciding.map((d) => d.check).join('+')}, not by ${PROM_CHECK} alone`);
  if (failed.length !== deciding.length)
    problems.push(`failed decisions outside the canary: ${JSON.stringify(failed)}`);
  const decisionAt = first ? Date.parse(first.at) : Number.NaN;
  // Decision times have ms resolution: one before the breach's ms is a breach the bench did not cause.
  if (first && decisionAt < Math.floor(breachAt)) problems.push(`the canary failed before the breach: ${first.at}`);
  if (first && first.sample === undefined) problems.push('caught by the end-of-bake readout, not by a sample');
  if (end.trafficPercent !== 0) problems.push(`status trafficPercent ${end.trafficPercent} after the rollback`);
  const weightsAfter = (await getJson<ModelRouting>(routingUrl)).weights;
  if (weightsAfter[STABLE] !== 100) problems.push(`weights after the rollback: ${JSON.stringify(weightsAfter)}`);
  const stats = load.stats;
  const otherFailures = Object.entries(stats.failedBy).filter(([status]) => status !== '500');
  if (otherFailures.length > 0) problems.push(`failed requests other than 500: ${JSON.stringify(stats.failedBy)}`);
  if (stableErrors !== 0) problems.push(`the stable version ${STABLE} had ${stableErrors} errors`);
  if (stats.failed > 0 && !stats.lastError?.includes('injected fault')) {
    problems.push(`a failure that was not injected: ${stats.lastError}`);
  }
  const rolledBackEvent = lastOf(end.events, (e) => e.stage === 'rolled-back');
  // The rollback's own reason names the checks that stopped it (`canary failed: prom-error-rate=0.4 (…)`).
  if (provider === 'prometheus' && !rolledBackEvent?.message.includes(`${PROM_CHECK}=`))
    problems.push(`rolled back for another reason: ${rolledBackEvent?.message ?? 'no rolled-back event'}`);
  const breakdown = await breakdownOf(client, id, breachAt, zeroAt);
  if (!breakdown) problems.push('the history has no analysis → weights sequence to break the time down with');

  return {
    run,
    provider,
    version,
    lifecycleId: id,
    toZeroMs,
    lastPollMs,
    polls,
    canaryBeforeBreachMs: breachAt - canaryAt,
    failedCheck: deciding.map((d) => d.check).join('+') || 'none',
    failedValue: first?.value ?? null,
    sample: first?.sample ?? null,
    sampleSize: first?.sampleSize ?? null,
    decisionMs: decisionAt - breachAt,
    rolledBackMs: rolledBackEvent ? Date.parse(rolledBackEvent.at) - breachAt : Number.NaN,
    breakdown,
    sent: stats.sent,
    ok: stats.ok,
    failedBy: { ...stats.failedBy },
    stableErrors,
    problems,
  };
}

type Spread = ReturnType<typeof spread>;

function spread(values: number[]) {
  const sorted = Float64Array.from(values).sort();
  const mean = values.reduce((s, v) => s + v, 0) / Math.max(1, values.length);
  return {
    min: sorted[0] ?? 0,
    median: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    max: sorted[sorted.length - 1] ?? 0,
    mean,
  };
}

const ms = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(0));

/** The figures of one provider's runs. */
function summarize(rs: RunResult[]) {
  const withBreakdown = rs.flatMap((r) => (r.breakdown ? [r.breakdown] : []));
  const failedChecks: Record<string, number> = {};
  for (const r of rs) failedChecks[r.failedCheck] = (failedChecks[r.failedCheck] ?? 0) + 1;
  return {
    runs: rs.length,
    toZeroMs: spread(rs.map((r) => r.toZeroMs)),
    waitForSampleMs: spread(withBreakdown.map((b) => b.waitForSampleMs)),
    restMs: spread(withBreakdown.map((b) => b.analysisMs + b.swapMs)),
    analysisMs: spread(withBreakdown.map((b) => b.analysisMs)),
    swapMs: spread(withBreakdown.map((b) => b.swapMs)),
    rolledBackMs: spread(rs.map((r) => r.rolledBackMs)),
    windowStartMs: spread(withBreakdown.flatMap((b) => (b.windowStartMs === null ? [] : [b.windowStartMs]))),
    timerFiredAfterMs: spread(withBreakdown.map((b) => b.timerFiredAfterMs)),
    failedChecks,
  };
}
type Summary = ReturnType<typeof summarize>;

async function main(): Promise<number> {
  const options = readOptions();
  const loadBefore = loadavg();
  const started = performance.now();
  const dir = tempDir('mll-bench-rollback-');
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const runProviders = Array.from({ length: options.runs }, (_, i) => providerOf(i + 1, options.provider));
  const policyFile = writePolicy(dir);
  const { keyring, privateKeyPem } = writeKeyring(dir);

  server = await startDevServer({});
  connection = await Connection.connect({ address: server.address });
  const registered = await registerSearchAttributes(connection, 'default');
  const client = new Client({ connection });
  const lifecycles = new LifecycleClient(client);

  const gatewayPort = await freePort();
  const gatewayAdminPort = await freePort();
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const gatewayAdminUrl = `http://127.0.0.1:${gatewayAdminPort}`;
  const gateway = startNode(
    'gateway',
    join(root, 'dist', 'src', 'serving', 'main.js'),
    {
      GATEWAY_PORT: String(gatewayPort),
      GATEWAY_ADMIN_PORT: String(gatewayAdminPort),
      GATEWAY_ADMIN_TOKEN: adminToken,
      GATEWAY_DATA_DIR: join(dir, 'gateway'),
      // The worker's ML_DATA_DIR/artifacts: what it trains is what the gateway may load.
      GATEWAY_ARTIFACT_ROOT: join(dir, 'data', 'artifacts'),
    },
    join(logs, 'gateway.log'),
  );
  children.push(gateway);
  await waitFor(
    'serving gateway',
    async () => (await fetch(`${gatewayUrl}/healthz`)).ok && (await fetch(`${gatewayAdminUrl}/healthz`)).ok,
    30_000,
  );
  // Started now, its first scrape (about 5 s after the start in Prometheus 2.42) comes while v1 trains.
  if (runProviders.includes('prometheus')) {
    prom = await startPrometheus({
      scrapeTargets: [{ job: 'gateway', targets: [`127.0.0.1:${gatewayPort}`] }],
      scrapeIntervalMs: SCRAPE_INTERVAL_MS,
      logFile: join(logs, 'prometheus.log'),
    });
  }
  const worker = startNode(
    'worker',
    join(root, 'dist', 'src', 'workers', 'main.js'),
    {
      TEMPORAL_ADDRESS: server.address,
      TEMPORAL_NAMESPACE: 'default',
      GATEWAY_ADMIN_URL: gatewayAdminUrl,
      GATEWAY_ADMIN_TOKEN: adminToken,
      ML_DATA_DIR: join(dir, 'data'),
      ML_POLICY_FILE: policyFile,
      ML_APPROVER_KEYS: keyring,
    },
    join(logs, 'worker.log'),
  );
  children.push(worker);
  worker.child.once('exit', (code, signal) => {
    if (code !== 0 && signal === null) process.stderr.write(`worker exited with code ${code}; see ${logs}\n`);
  });

  const model = `rollback-${Date.now().toString(36)}`;
  console.log(
    `Temporal dev server ${server.address} (pid ${server.process.pid}, in memory; search attributes ` +
      `${registered.length ? `registered: ${registered.join(', ')}` : 'given on its command line'}), gateway ` +
      `${gatewayUrl} (pid ${gateway.child.pid}), worker pid ${worker.child.pid}` +
      `${prom ? `, Prometheus ${prom.url} scraping the gateway every ${SCRAPE_INTERVAL_MS} ms` : ''}; logs in ${logs}`,
  );
  const canaryPercent = specFor(model, 'v2', options.bakeMs, options).rollout.canary.percent;
  const count = (p: Provider) => runProviders.filter((x) => x === p).length;
  console.log(
    `model ${model}: ${options.runs} candidates (${PROVIDERS.map((p) => `${count(p)} ${p}`).join(', ')}), canary ` +
      `${canaryPercent}% baking ${options.bakeMs} ms, analysis interval ${options.intervalMs} ms, minSamples ${MIN_SAMPLES}, ` +
      `${options.rate} predictions/s of live traffic; breach: {"errorRate": ${options.errorRate}} on the candidate; poll every ${POLL_MS} ms`,
  );
  if (prom) {
    console.log(
      `prometheus candidates: ${PROM_CHECK} = ${PROM_QUERY} <= ${PROM_MAX_ERROR_RATE}, an instant query at every ` +
        'sample; their errorRate (max 1, vsStable off) and outage (dry run) checks cannot stop them',
    );
  }
  console.log('');

  // v1 once: the first deployment takes all traffic at once (`initial:100`); a short bake so that it promotes soon.
  const setupStarted = performance.now();
  const setupLoad = startLoad(gatewayUrl, model, options.rate);
  const first = await lifecycles.start(specFor(model, STABLE, 3000, options));
  const promoted = await approveUntil(lifecycles, first.id, ['promoted'], privateKeyPem).then((s) =>
    s.stage === 'promoted'
      ? s
      : waitForStatus(lifecycles, first.id, 'promoted', (x) => x.stage === 'promoted', TO_CANARY_MS),
  );
  await stopLoad(setupLoad);
  console.log(
    `${STABLE} promoted in ${((performance.now() - setupStarted) / 1000).toFixed(1)} s (${promoted.id}); its traffic: ` +
      `${setupLoad.stats.ok} answered, failed by status ${JSON.stringify(setupLoad.stats.failedBy)} ` +
      '(404s until it was deployed)\n',
  );
  if (prom) await waitForScrape(prom, 'gateway', 30_000);

  const results: RunResult[] = [];
  for (let run = 1; run <= options.runs; run++) {
    const runStarted = performance.now();
    const r = await runOnce(run, {
      client,
      lifecycles,
      gatewayUrl,
      gatewayAdminUrl,
      model,
      options,
      privateKeyPem,
      promUrl: prom?.url ?? null,
    });
    results.push(r);
    console.log(
      `run ${run} ${r.version} ${r.provider}: ${r.toZeroMs.toFixed(0)} ms to 0% (${r.failedCheck}` +
        `${r.failedValue === null ? '' : ` = ${Number(r.failedValue.toPrecision(3))}`}, sample ${r.sample ?? 'end'}, ` +
        `n=${r.sampleSize ?? '?'}; rolled-back at +${ms(r.rolledBackMs)} ms) ` +
        `[run ${((performance.now() - runStarted) / 1000).toFixed(1)} s]${r.problems.length ? ` PROBLEMS: ${r.problems.join('; ')}` : ''}`,
    );
  }
  const loadAfter = loadavg();

  console.log('');
  printAligned(
    [
      'run',
      'version',
      'provider',
      'ms to 0%',
      'failed check',
      'value',
      'sample',
      'n',
      'window start',
      'wait for sample',
      'analysis',
      'swap',
      'decision at',
      'rolled-back at',
      'sent',
      'failed (500)',
      'stable errors',
      'ok',
    ],
    results.map((r) => [
      String(r.run),
      r.version,
      r.provider,
      r.toZeroMs.toFixed(1),
      r.failedCheck,
      r.failedValue === null ? 'n/a' : String(Number(r.failedValue.toPrecision(3))),
      String(r.sample ?? 'end'),
      String(r.sampleSize ?? '?'),
      ms(r.breakdown?.windowStartMs),
      ms(r.breakdown?.waitForSampleMs),
      ms(r.breakdown?.analysisMs),
      ms(r.breakdown?.swapMs),
      ms(r.decisionMs),
      ms(r.rolledBackMs),
      String(r.sent),
      String(r.failedBy['500'] ?? 0),
      String(r.stableErrors),
      r.problems.length ? 'NO' : 'yes',
    ]),
  );
  const providers = PROVIDERS.filter((p) => results.some((r) => r.provider === p));
  const summaries = Object.fromEntries(
    providers.map((p) => [p, summarize(results.filter((r) => r.provider === p))]),
  ) as Partial<Record<Provider, Summary>>;
  const of = (p: Provider) => summaries[p] as Summary;
  const both = providers.length === PROVIDERS.length;

  console.log('');
  console.log(
    `breach → 0% candidate traffic by provider (ms; nearest rank; resolution: ${POLL_MS} ms poll + one GET)` +
      (prom ? `; Prometheus scrape interval ${SCRAPE_INTERVAL_MS} ms, lookback ${PROM_LOOKBACK}` : ''),
  );
  const figures: [string, (s: Spread) => number][] = [
    ['min', (s) => s.min],
    ['p50', (s) => s.median],
    ['p90', (s) => s.p90],
    ['max', (s) => s.max],
    ['mean', (s) => s.mean],
  ];
  printAligned(
    ['breach → 0% (ms)', ...providers, ...(both ? ['prometheus − builtin'] : [])],
    [
      ['runs', ...providers.map((p) => String(of(p).runs)), ...(both ? [''] : [])],
      ...figures.map(([name, pick]) => [
        name,
        ...providers.map((p) => pick(of(p).toZeroMs).toFixed(0)),
        ...(both ? [(pick(of('prometheus').toZeroMs) - pick(of('builtin').toZeroMs)).toFixed(0)] : []),
      ]),
    ],
  );
  const perWindow = (options.rate * canaryPercent * options.intervalMs) / 100_000;
  console.log(
    `analysis interval ${options.intervalMs} ms; failed checks: ` +
      `${providers.map((p) => `${p} ${JSON.stringify(of(p).failedChecks)}`).join(', ')}; about ` +
      `${perWindow.toFixed(0)} candidate requests per sample window (${canaryPercent}% of ${options.rate}/s): ` +
      (perWindow < MIN_SAMPLES
        ? `below minSamples ${MIN_SAMPLES}, so a sample's window grows over several intervals until it holds enough ` +
          `for the built-in checks, while the outage check judges each interval on its own and ${PROM_CHECK} ` +
          `its ${PROM_LOOKBACK} lookback at every sample`
        : `at least minSamples ${MIN_SAMPLES}, so errorRate can fail the sample the breach lands in`),
  );
  printAligned(
    ['breakdown (ms)', 'min', 'median', 'p90', 'max', 'mean'],
    providers.flatMap((p) =>
      (
        [
          [`${p}: wait for the sample`, of(p).waitForSampleMs],
          ['  the rest', of(p).restMs],
          ['    analysis', of(p).analysisMs],
          ['    weight swap', of(p).swapMs],
          ['  breach → rolled-back', of(p).rolledBackMs],
          ['  window start', of(p).windowStartMs],
          ['  sample timer fired', of(p).timerFiredAfterMs],
        ] as [string, Spread][]
      ).map(([name, v]) => [name, ...[v.min, v.median, v.p90, v.max, v.mean].map((x) => x.toFixed(0))]),
    ),
  );
  console.log(
    "window start: breach → the failing sample's window began (the sample before it read the telemetry; negative: " +
      'before the breach). wait for the sample: breach → the timer of the failing sample fired (history, server clock); analysis: that ' +
      'timer → analyzeStage completed (for prometheus, the PromQL query included); weight swap: analyzeStage completed → the poll saw 0% (workflow task, ' +
      'setTrafficWeights activity, gateway swap, poll). Same machine clock throughout.',
  );
  if (both) {
    const extra = of('prometheus').waitForSampleMs.median - of('builtin').waitForSampleMs.median;
    console.log(
      `prometheus − builtin, median wait for the sample: ${extra.toFixed(0)} ms. The breach's errors reach Prometheus ` +
        `at its next scrape (0–${SCRAPE_INTERVAL_MS} ms later); the sample after that scrape is the first that can see ` +
        `them, and the ${PROM_LOOKBACK} lookback mixes them with the healthy requests before the breach, so the ratio ` +
        `crosses ${PROM_MAX_ERROR_RATE} only once enough of the window lies after it (sooner for --error-rate 1 than ` +
        'for a fault near the threshold).',
    );
  }
  const timerFired = spread(results.flatMap((r) => (r.breakdown ? [r.breakdown.timerFiredAfterMs] : [])));
  console.log(
    `sample timer fired: how long after it started the failing sample's ${options.intervalMs} ms timer fired ` +
      '(TimerStarted → TimerFired)' +
      (timerFired.median > options.intervalMs * 1.2
        ? `: later than asked; the Temporal server fires timers shorter than about 1 s after about 1 s, so the ` +
          'samples come about every second whatever the interval below that'
        : ''),
  );
  const wallSeconds = (performance.now() - started) / 1000;
  console.log(
    `total ${wallSeconds.toFixed(0)} s; node ${process.version}, ${cpus().length} CPUs ` +
      `(${cpus()[0]?.model.trim() ?? 'unknown'}); Temporal, gateway, worker, ${prom ? 'Prometheus ' : ''}and load ` +
      'on the same machine',
  );
  printLoad(loadBefore, loadAfter);

  const failedRuns = results.filter((r) => r.problems.length > 0);
  for (const r of failedRuns) console.log(`run ${r.run} FAILED: ${r.problems.join('; ')}`);
  if (failedRuns.length > 0) {
    keepTemp = true;
    console.log(`logs kept in ${logs}`);
  }
  console.log(
    `BENCH_JSON ${JSON.stringify({
      ...benchFacts('rollback', loadBefore, loadAfter),
      runs: options.runs,
      provider: options.provider,
      intervalMs: options.intervalMs,
      rate: options.rate,
      bakeMs: options.bakeMs,
      canaryPercent,
      errorRate: options.errorRate,
      minSamples: MIN_SAMPLES,
      pollMs: POLL_MS,
      scrapeIntervalMs: prom ? SCRAPE_INTERVAL_MS : null,
      promCheck: prom ? { name: PROM_CHECK, query: PROM_QUERY, max: PROM_MAX_ERROR_RATE } : null,
      providers: summaries,
      perRun: results,
      wallSeconds,
      ok: failedRuns.length === 0,
    })}`,
  );
  return failedRuns.length === 0 ? 0 : 1;
}

async function cleanup(): Promise<void> {
  await Promise.allSettled([...loads].map((l) => l.stop()));
  loads.clear();
  await connection?.close().catch(() => undefined);
  await pollAgent.close().catch(() => undefined);
  for (const child of children.splice(0).reverse()) await child.stop().catch(() => undefined);
  await prom?.stop().catch(() => undefined);
  prom = null;
  await server?.stop().catch(() => undefined);
  server = null;
  if (keepTemp) return;
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

// Last resort if the process exits without cleanup (an uncaught exception): no child may outlive the benchmark.
process.once('exit', () => {
  for (const p of [...children.map((c) => c.child), ...(server ? [server.process] : [])]) {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
});

runBenchmark(
  'rollback benchmark',
  () =>
    main().catch((err: unknown) => {
      // Keep the logs of a run that broke off: the worker's and the gateway's say why.
      keepTemp = true;
      if (tempDirs[0]) process.stderr.write(`logs kept in ${join(tempDirs[0], 'logs')}\n`);
      throw err;
    }),
  cleanup,
);
