/**
 * How big workflow histories get in three long-running cases, on Temporal's time-skipping test server (days pass in
 * seconds; activities run in real time), with the real activities, a real gateway process and live traffic.
 *
 * 1. **A 24-hour bake sampled every minute**: one lifecycle promotes `v1` quickly, then `v2`, whose canary bakes
 *    `--bake-hours` with `rollout.analysis.interval` `--sample-interval`. The rollout caps the samples of a bake, so the
 *    bench counts the samples actually taken (`analyzeStage` activities of the canary in the history) beside the
 *    samples asked for, and projects the history had every one been taken.
 * 2. **A serving monitor running for a month**: a lifecycle promotes a model with `monitoring.enabled` (so it starts
 *    the serving monitor, `ensureServingMonitor`), then the clock skips `--days` under live traffic. Reports every run
 *    of the monitor (it continues as new every 50 checks), the largest, and the continue-as-new input; and the alert
 *    router's runs, which the monitor reports every check to.
 * 3. **A quota pool with 10,000 leases**: a pool with room for `--leases` leases of `cpu: 1`, reserved by one
 *    QuotaClient (it batches: up to 200 operations per update) in waves of `--wave` concurrent callers, then a fifth
 *    renewed and a fifth released. The pool continues as new every `--pool-can-ops` operations (its
 *    `continueAsNewAfterOps`: the test server never suggests it). Reports every run of the pool, the carried state (the
 *    continue-as-new input: packed since `bounded-state`, beside the same state in the plain form of runs before it),
 *    the `poolStateQuery` answer (whole, and the summary) as the pool fills, and what its monitor's `readPoolState`
 *    activity (a summary) returns.
 *    `--cases pool-dev` runs the same case on a stock dev server (`temporal server start-dev`), where the limits hold:
 *    there the bench shows whether the pool keeps working past the 5,900 leases where the plain form broke.
 *
 * Every history is measured from its events (`fetchHistory`, each event's protobuf size summed; the server's own
 * `historySizeBytes` beside it when it reports one) and set against the stock server's limits: a payload over 2 MB is
 * refused (warning from 512 KB), a history over 50 MB or 51,200 events is terminated (warnings from 10 MB / 10,240
 * events), `continueAsNewSuggested` fires from 4 MB / 4,096 events, a gRPC message is at most 4 MB. The test server
 * enforces none of them, so where a case would cross one the bench says which, and at which size.
 *
 * Ends with a `BENCH_JSON {...}` line. Exits 1 when the bench fails, or when a measured workflow was terminated,
 * failed, or stalled (a limit met): that is printed first.
 *
 * Run: `npm run bench:history` (builds first); `node dist/bench/history-size.js --cases pool,pool-dev`.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { Command, InvalidArgumentError } from 'commander';
import { request } from 'undici';
import { createActivities } from '../src/activities';
import { LifecycleClient } from '../src/client/lifecycle-client';
import { QuotaClient } from '../src/client/quota-client';
import { loadSpecFile } from '../src/client/spec-file';
import { projectRoot } from '../src/config/paths';
import { PolicySource } from '../src/config/policy';
import { temporalTestServerPath, trainerPython } from '../src/config/toolchain';
import { LoadGenerator } from '../src/dev/load-generator';
import { startDevServer, type DevServer } from '../src/dev/dev-server';
import { freePort, waitFor } from '../src/dev/ports';
import { startNode, type ManagedProcess } from '../src/dev/processes';
import { registerSearchAttributes } from '../src/dev/register-search-attributes';
import { formatDurationMs, parseDurationMs } from '../src/shared/duration';
import { isPacked, unpackCarried } from '../src/domain/quota-carry';
import { poolStateQuery } from '../src/shared/messages';
import { ALERT_ROUTER_WORKFLOW_ID, servingMonitorQuery, servingMonitorWorkflowId } from '../src/shared/monitoring';
import {
  MAX_POOL_LEASES,
  QuotaPoolsFile,
  quotaMonitorWorkflowId,
  quotaPoolWorkflowId,
  type QuotaPoolState,
} from '../src/shared/quota';
import { lifecycleWorkflowId, type LifecycleSpec } from '../src/shared/spec';
import type { LifecycleStatus } from '../src/shared/status';
import { createWorkers } from '../src/workers/workers';
import { EventType, type HistoryEvent } from './history';
import { benchFacts, printAligned, printLoad, runBenchmark } from './report';

const root = projectRoot();
const EXAMPLE = join(root, 'examples', 'churn');
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const KB = 1024;
const MB = 1024 * KB;

/** The stock server's defaults (docs.temporal.io, self-hosted defaults), which the test server does not enforce. */
const LIMITS = {
  payloadWarn: 512 * KB,
  payloadError: 2 * MB,
  grpcMessage: 4 * MB,
  suggestBytes: 4 * MB,
  suggestEvents: 4096,
  historyWarnBytes: 10 * MB,
  historyWarnEvents: 10_240,
  historyBytes: 50 * MB,
  historyEvents: 51_200,
} as const;

/** The rollout's cap on samples per bake (MAX_SAMPLES_PER_BAKE of src/workflows/lifecycle/rollout.ts). */
const MAX_SAMPLES_PER_BAKE = 120;
/** Checks per run of the serving monitor (CHECKS_PER_RUN of src/workflows/serving-monitor.ts). */
const MONITOR_CHECKS_PER_RUN = 50;

const WORKER_SECRET = randomBytes(32).toString('base64url');
const children: ManagedProcess[] = [];
const loads: LoadGenerator[] = [];
let env: TestWorkflowEnvironment | undefined;
/** Reads histories: the test server answers a whole history in one page, which may pass a client's default 4 MB. */
let readConnection: Connection | undefined;
let workers: Worker[] = [];
let running: Promise<unknown> | undefined;
let workDir: string | undefined;
/** Warnings and errors the SDK logged (worker and core), by level and message: payload-size warnings land here. */
const sdkLogs = new Map<string, number>();

interface Options {
  cases: string[];
  bakeHours: number;
  sampleInterval: number;
  days: number;
  monitorInterval: number;
  monitorBudget: number;
  leases: number;
  wave: number;
  poolCanOps: number;
  rate: number;
}

const wholeNumber = (what: string, min: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${what} must be a whole number >= ${min}`);
  return n;
};
const durationOption = (what: string, min: number) => (value: string) => {
  const ms = /^\d+$/.test(value) ? Number(value) : parseDurationMs(value);
  if (ms === undefined || ms < min) throw new InvalidArgumentError(`${what} must be a duration of at least ${min} ms`);
  return ms;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const kib = (bytes: number) => `${(bytes / KB).toFixed(1)} KiB`;
const mib = (bytes: number) => `${(bytes / MB).toFixed(2)} MiB`;
const size = (bytes: number) => (bytes >= MB ? mib(bytes) : kib(bytes));
const count = (n: number) => n.toLocaleString('en-US');
const pct = (part: number, whole: number) => `${((100 * part) / whole).toFixed(1)} %`;
const seconds = (since: number) => (performance.now() - since) / 1000;

// ---------------------------------------------------------------------------------------------------------------------
// Reading histories
// ---------------------------------------------------------------------------------------------------------------------

const { HistoryEvent: HistoryEventMessage } = temporal.api.history.v1;
const { Payloads } = temporal.api.common.v1;
type Payloads = temporal.api.common.v1.IPayloads;
const Status = temporal.api.enums.v1.WorkflowExecutionStatus;

const eventTypeName = (e: HistoryEvent) => (EventType[e.eventType ?? 0] ?? 'EVENT').replace(/^EVENT_TYPE_/, '');
const num = (v: { toString(): string } | number | null | undefined) => Number(v?.toString() ?? 0);

/** The first payload of `payloads` as JSON, or undefined when it is not JSON. */
function decodeJson(payloads: Payloads | null | undefined): unknown {
  const data = payloads?.payloads?.[0]?.data;
  if (!data) return undefined;
  try {
    return JSON.parse(Buffer.from(data).toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

const payloadsBytes = (p: Payloads | null | undefined) => (p ? Payloads.encode(p).finish().length : 0);

/** Every `Payloads` in an event (activity inputs and results, update arguments and outcomes, signals, markers...). */
function payloadsIn(value: unknown, path: string, out: { path: string; bytes: number }[]): void {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return;
  if (Array.isArray((value as Payloads).payloads)) {
    out.push({ path, bytes: payloadsBytes(value as Payloads) });
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => payloadsIn(v, `${path}[${i}]`, out));
    return;
  }
  for (const [k, v] of Object.entries(value)) {
    if (k === 'eventTime' || k === 'low' || k === 'high') continue;
    payloadsIn(v, path ? `${path}.${k}` : k, out);
  }
}

/** One run of a workflow, measured from its events. */
interface RunFacts {
  workflowId: string;
  runId: string;
  status: string;
  events: number;
  /** Sum of the events' protobuf sizes. */
  bytes: number;
  /** The server's own count (describe's `historySizeBytes`), 0 when it reports none. */
  serverBytes: number;
  largestEvent: { bytes: number; what: string };
  largestPayload: { bytes: number; what: string };
  /** The input this run was started (or continued) with, and the input it continued as new with. */
  startInputBytes: number;
  continuedInputBytes: number | null;
  continuedInput: unknown;
  /** Workflow tasks that failed, by cause; the first one's message. */
  taskFailures: Record<string, number>;
  firstTaskFailure: string | null;
  /** First event at which the server suggested continue-as-new (null: never). */
  suggestedAtEvent: number | null;
  /** The event at which the run passed 4 MB, or 4,096 events, where a stock server suggests continuing as new. */
  wouldSuggestAtEvent: number | null;
  previousRunId: string | null;
  /** Why the run ended, when it failed or was terminated. */
  endMessage: string | null;
  lastEvent: string;
  history: HistoryEvent[];
}

async function runFacts(client: Client, workflowId: string, runId?: string): Promise<RunFacts> {
  const handle = client.workflow.getHandle(workflowId, runId);
  const described = await handle.describe();
  const history = (await handle.fetchHistory()).events ?? [];
  const activityNames = new Map<number, string>();
  const updateNames = new Map<string, string>();
  const taskFailures: Record<string, number> = {};
  let firstTaskFailure: string | null = null;
  let bytes = 0;
  let suggestedAtEvent: number | null = null;
  let wouldSuggestAtEvent: number | null = null;
  let largestEvent = { bytes: 0, what: '' };
  let largestPayload = { bytes: 0, what: '' };
  history.forEach((e, i) => {
    const eventBytes = HistoryEventMessage.encode(e).finish().length;
    bytes += eventBytes;
    if (wouldSuggestAtEvent === null && (bytes >= LIMITS.suggestBytes || i + 1 >= LIMITS.suggestEvents))
      wouldSuggestAtEvent = i + 1;
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) activityNames.set(num(e.eventId), scheduled.activityType?.name ?? '?');
    const accepted = e.workflowExecutionUpdateAcceptedEventAttributes;
    if (accepted)
      updateNames.set(
        accepted.acceptedRequest?.meta?.updateId ?? '',
        accepted.acceptedRequest?.input?.name ?? 'update',
      );
    const started = e.workflowTaskStartedEventAttributes;
    if (started?.suggestContinueAsNew && suggestedAtEvent === null) suggestedAtEvent = i + 1;
    const failed = e.workflowTaskFailedEventAttributes;
    if (failed) {
      const cause = (temporal.api.enums.v1.WorkflowTaskFailedCause[failed.cause ?? 0] ?? '?').replace(
        /^WORKFLOW_TASK_FAILED_CAUSE_/,
        '',
      );
      taskFailures[cause] = (taskFailures[cause] ?? 0) + 1;
      firstTaskFailure ??= `${cause}: ${failed.failure?.message ?? ''}`;
    }
    const activity =
      e.activityTaskCompletedEventAttributes ??
      e.activityTaskStartedEventAttributes ??
      e.activityTaskFailedEventAttributes;
    const updateDone = e.workflowExecutionUpdateCompletedEventAttributes;
    const what =
      eventTypeName(e) +
      (scheduled ? ` ${scheduled.activityType?.name ?? ''}` : '') +
      (activity ? ` ${activityNames.get(num(activity.scheduledEventId)) ?? ''}` : '') +
      (accepted ? ` ${accepted.acceptedRequest?.input?.name ?? ''}` : '') +
      (updateDone ? ` ${updateNames.get(updateDone.meta?.updateId ?? '') ?? ''}` : '') +
      (e.workflowExecutionSignaledEventAttributes ? ` ${e.workflowExecutionSignaledEventAttributes.signalName}` : '');
    if (eventBytes > largestEvent.bytes) largestEvent = { bytes: eventBytes, what: `${what} (event ${i + 1})` };
    const found: { path: string; bytes: number }[] = [];
    payloadsIn(e, '', found);
    for (const p of found)
      if (p.bytes > largestPayload.bytes) largestPayload = { bytes: p.bytes, what: `${what} (event ${i + 1})` };
  });
  const first = history[0]?.workflowExecutionStartedEventAttributes;
  const last = history[history.length - 1];
  // The last event, where a run that continued as new records its input (searched for, should the server differ).
  const continued = [...history]
    .reverse()
    .find((e) => e.workflowExecutionContinuedAsNewEventAttributes)?.workflowExecutionContinuedAsNewEventAttributes;
  return {
    workflowId,
    runId: described.runId,
    status: (Status[described.raw.workflowExecutionInfo?.status ?? 0] ?? '?').replace(
      /^WORKFLOW_EXECUTION_STATUS_/,
      '',
    ),
    events: history.length,
    bytes,
    serverBytes: num(described.raw.workflowExecutionInfo?.historySizeBytes),
    largestEvent,
    largestPayload,
    startInputBytes: payloadsBytes(first?.input),
    continuedInputBytes: continued ? payloadsBytes(continued.input) : null,
    continuedInput: continued ? decodeJson(continued.input) : undefined,
    taskFailures,
    firstTaskFailure,
    suggestedAtEvent,
    wouldSuggestAtEvent,
    previousRunId: first?.continuedExecutionRunId || null,
    lastEvent: last ? eventTypeName(last) : '',
    endMessage:
      ([
        last?.workflowExecutionFailedEventAttributes?.failure?.message,
        last?.workflowExecutionFailedEventAttributes?.failure?.cause?.message,
      ]
        .filter(Boolean)
        .join(': ') ||
        last?.workflowExecutionTerminatedEventAttributes?.reason) ??
      null,
    history,
  };
}

/** Every run of a workflow id, oldest first: walked back from the latest through `continuedExecutionRunId`. */
async function allRuns(client: Client, workflowId: string): Promise<RunFacts[]> {
  const runs: RunFacts[] = [];
  let runId: string | undefined;
  for (;;) {
    const run = await runFacts(client, workflowId, runId);
    runs.unshift(run);
    if (!run.previousRunId) return runs;
    runId = run.previousRunId;
  }
}

/** A run ended by something other than its own code (terminated, failed, timed out), or whose tasks fail. */
function brokenRun(run: RunFacts): string | null {
  if (['TERMINATED', 'FAILED', 'TIMED_OUT', 'CANCELED'].includes(run.status))
    return (
      `${run.workflowId} run ${run.runId} ended ${run.status} at ${count(run.events)} events, ${size(run.bytes)}` +
      (run.endMessage ? `: ${run.endMessage}` : '')
    );
  const failures = Object.values(run.taskFailures).reduce((a, b) => a + b, 0);
  if (failures > 0)
    return `${run.workflowId} run ${run.runId}: ${failures} workflow task failures (${run.firstTaskFailure ?? ''})`;
  return null;
}

/** Rows that set one history against the stock server's limits. */
function limitRows(what: string, run: Pick<RunFacts, 'events' | 'bytes' | 'largestPayload'>): string[][] {
  const verdict = (value: number, suggest: number | null, warn: number, limit: number) =>
    value >= limit
      ? 'OVER THE LIMIT'
      : value >= warn
        ? 'past the warning'
        : suggest !== null && value >= suggest
          ? 'past the CAN suggestion'
          : 'under';
  return [
    [
      what,
      'events',
      count(run.events),
      count(LIMITS.suggestEvents),
      count(LIMITS.historyWarnEvents),
      count(LIMITS.historyEvents),
      pct(run.events, LIMITS.historyEvents),
      verdict(run.events, LIMITS.suggestEvents, LIMITS.historyWarnEvents, LIMITS.historyEvents),
    ],
    [
      what,
      'history bytes',
      size(run.bytes),
      size(LIMITS.suggestBytes),
      size(LIMITS.historyWarnBytes),
      size(LIMITS.historyBytes),
      pct(run.bytes, LIMITS.historyBytes),
      verdict(run.bytes, LIMITS.suggestBytes, LIMITS.historyWarnBytes, LIMITS.historyBytes),
    ],
    [
      what,
      'largest payload',
      size(run.largestPayload.bytes),
      '',
      size(LIMITS.payloadWarn),
      size(LIMITS.payloadError),
      pct(run.largestPayload.bytes, LIMITS.payloadError),
      verdict(run.largestPayload.bytes, null, LIMITS.payloadWarn, LIMITS.payloadError),
    ],
  ];
}

const LIMIT_HEADER = ['workflow', 'measure', 'measured', 'CAN suggested', 'warning', 'limit', 'of limit', 'verdict'];

// ---------------------------------------------------------------------------------------------------------------------
// The stack
// ---------------------------------------------------------------------------------------------------------------------

interface Gateway {
  url: string;
  admin: { url: string; token: string };
}

/** The built gateway as a process on free ports, its own data dir, loading artifacts from `artifactRoot` only. */
async function startGateway(artifactRoot: string, logs: string): Promise<Gateway> {
  const port = await freePort();
  const adminPort = await freePort();
  const admin = { url: `http://127.0.0.1:${adminPort}`, token: randomBytes(24).toString('base64url') };
  children.push(
    startNode(
      'gateway',
      join(root, 'dist', 'src', 'serving', 'main.js'),
      {
        GATEWAY_PORT: String(port),
        GATEWAY_ADMIN_PORT: String(adminPort),
        GATEWAY_DATA_DIR: join(workDir!, 'gateway'),
        GATEWAY_ARTIFACT_ROOT: artifactRoot,
        GATEWAY_ADMIN_TOKEN: admin.token,
        LOG_LEVEL: 'warn',
      },
      join(logs, 'gateway.log'),
    ),
  );
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    'gateway /healthz',
    async () => {
      const res = await request(`${url}/healthz`).catch(() => null);
      await res?.body.dump();
      return res?.statusCode === 200;
    },
    20_000,
  );
  return { url, admin };
}

/** Live traffic for a model: rows of the churn test set, 5000 sticky users. */
function liveTraffic(gatewayUrl: string, model: string, ratePerSecond: number): LoadGenerator {
  const load = new LoadGenerator({
    gatewayUrl,
    model,
    rowsCsv: join(EXAMPLE, 'data', 'test.csv'),
    labelColumn: 'churned',
    dropColumns: ['customer_id'],
    ratePerSecond,
  });
  loads.push(load);
  load.start();
  return load;
}

/**
 * The churn example's good spec under another model name with short bakes (as the project's tests shape it): a canary
 * of 1.5 s and two ramp steps, 60 samples to judge, monitoring off unless `patch` turns it on.
 */
function specOf(model: string, version: string, patch: (s: LifecycleSpec) => void = () => undefined): LifecycleSpec {
  const spec = structuredClone({ ...loadSpecFile(join(EXAMPLE, 'specs', 'good.yaml'), { version }), model });
  spec.rollout.canary.bake = 1500;
  spec.rollout.steps = [
    { percent: 50, bake: 1000, approval: false },
    { percent: 100, bake: 500, approval: false },
  ];
  spec.rollout.analysis.minSamples = 60;
  spec.rollout.analysis.maxWaitForSamples = 30_000;
  // Two cores shared by the test server, worker, trainer, gateway and load generator: a few ms of jitter is no
  // latency regression of a sub-millisecond model.
  spec.rollout.analysis.latencyP99Ms.ratioFloorMs = 10;
  // Gates wait in real time here, but a skipped clock must never time one out.
  spec.approval.timeout = 48 * HOUR;
  spec.monitoring.enabled = false;
  patch(spec);
  return spec;
}

/** Polls a lifecycle's status until `done` holds. */
async function waitForStatus(
  lifecycles: LifecycleClient,
  id: string,
  done: (s: LifecycleStatus) => boolean,
  timeoutMs = 180_000,
): Promise<LifecycleStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: LifecycleStatus | undefined;
  while (Date.now() < deadline) {
    last = await lifecycles.status(id).catch(() => undefined);
    if (last && done(last)) return last;
    await sleep(200);
  }
  throw new Error(`${id}: timed out waiting; last stage ${last?.stage ?? 'unknown'}`);
}

const ENDED = ['promoted', 'rolled-back', 'rejected', 'failed', 'rollback-stuck'];

/**
 * Starts a lifecycle, approves its deploy gate as soon as it opens (as alice; the clock stands still meanwhile), then
 * awaits its end with the clock skipping. Throws unless it promoted.
 */
async function promote(lifecycles: LifecycleClient, spec: LifecycleSpec): Promise<LifecycleStatus> {
  const id = lifecycleWorkflowId(spec.model, spec.version);
  await lifecycles.start(spec);
  const gate = await waitForStatus(lifecycles, id, (s) => s.pendingGate !== null || ENDED.includes(s.stage));
  if (gate.pendingGate)
    await lifecycles.approve(id, { by: 'alice', gate: gate.pendingGate.gate, reason: 'history-size benchmark' });
  // Awaiting the result lets the test server skip the clock to each next timer.
  const end = await lifecycles.waitForEnd(id);
  if (end.stage !== 'promoted')
    throw new Error(`${id} ended ${end.stage}: ${end.error?.message ?? end.events.at(-1)?.message ?? ''}`);
  return end;
}

// ---------------------------------------------------------------------------------------------------------------------
// Case 1: a long bake
// ---------------------------------------------------------------------------------------------------------------------

async function bakeCase(client: Client, lifecycles: LifecycleClient, gateway: Gateway, options: Options) {
  const model = `bake-${Date.now().toString(36)}`;
  const bakeMs = options.bakeHours * HOUR;
  const asked = Math.floor(bakeMs / options.sampleInterval);
  console.log(
    `\n== case 1: a ${options.bakeHours} h canary bake sampled every ${formatDurationMs(options.sampleInterval)} ` +
      `(model ${model})`,
  );
  const started = performance.now();
  const load = liveTraffic(gateway.url, model, options.rate);
  await promote(lifecycles, specOf(model, 'v1'));
  console.log(`v1 promoted in ${seconds(started).toFixed(1)} s`);
  const v2Started = performance.now();
  await promote(
    lifecycles,
    specOf(model, 'v2', (s) => {
      s.rollout.canary.bake = bakeMs;
      s.rollout.analysis.interval = options.sampleInterval;
    }),
  );
  const wall = seconds(v2Started);
  await load.stop();
  console.log(`v2 promoted after its ${options.bakeHours} h canary in ${wall.toFixed(1)} s of wall time`);

  const run = await runFacts(client, lifecycleWorkflowId(model, 'v2'));
  // A bake of more samples than MAX_SAMPLES_PER_BAKE runs them in child workflows (bake segments); a shorter one, or
  // a run from before segments, in the lifecycle itself. Either way every canary sample is an analyzeStage scheduled
  // with no wait for samples (maxWaitForSamples 0), the readout one with it.
  const segmentIds = run.history
    .map((e) => e.childWorkflowExecutionStartedEventAttributes)
    .filter((a) => a?.workflowType?.name === 'bakeSegmentWorkflow')
    .map((a) => a!.workflowExecution!.workflowId!);
  const segments: RunFacts[] = [];
  for (const id of segmentIds) segments.push(await runFacts(client, id));
  const canaryAnalyses = (history: HistoryEvent[]) => {
    let samples = 0;
    let readouts = 0;
    for (const e of history) {
      const s = e.activityTaskScheduledEventAttributes;
      if (s?.activityType?.name !== 'analyzeStage') continue;
      const input = decodeJson(s.input) as { stage?: string; rules?: { maxWaitForSamples?: number } } | undefined;
      if (input?.stage !== 'canary') continue;
      if (input.rules?.maxWaitForSamples === 0) samples++;
      else readouts++;
    }
    return { samples, readouts };
  };
  const own = canaryAnalyses(run.history);
  const inSegments = segments.map((r) => canaryAnalyses(r.history).samples);
  const taken = own.samples + inSegments.reduce((a, b) => a + b, 0);
  const readouts = own.readouts;
  const largestSegment = segments.reduce<RunFacts | null>((a, r) => (a === null || r.bytes > a.bytes ? r : a), null);
  const segmentEvents = segments.reduce((a, r) => a + r.events, 0);
  const segmentBytes = segments.reduce((a, r) => a + r.bytes, 0);
  const perSampleBytes = segments.length > 0 ? segmentBytes / Math.max(taken - own.samples, 1) : NaN;
  const perSampleEvents = segments.length > 0 ? segmentEvents / Math.max(taken - own.samples, 1) : NaN;
  const renewals = run.history.filter(
    (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'renewQuota',
  ).length;
  const effectiveInterval =
    segments.length > 0
      ? options.sampleInterval
      : Math.max(options.sampleInterval, Math.ceil(bakeMs / MAX_SAMPLES_PER_BAKE));

  printAligned(
    ['lifecycle v2', 'value'],
    [
      ['canary bake / interval asked', `${options.bakeHours} h / ${formatDurationMs(options.sampleInterval)}`],
      ['samples asked', count(asked)],
      [
        'samples taken (analyzeStage)',
        `${count(taken)}, one per ${formatDurationMs(effectiveInterval)} ` +
          `(${count(own.samples)} in the lifecycle, ${count(taken - own.samples)} in ${segments.length} segment(s)), ` +
          `+ ${readouts} readout(s)`,
      ],
      ['lifecycle: events', count(run.events)],
      [
        'lifecycle: history bytes',
        `${size(run.bytes)}${run.serverBytes ? ` (server: ${size(run.serverBytes)})` : ' (server reports none)'}`,
      ],
      ['lifecycle: largest payload', `${size(run.largestPayload.bytes)}: ${run.largestPayload.what}`],
      [
        'largest segment',
        largestSegment
          ? `${count(largestSegment.events)} events, ${size(largestSegment.bytes)}; largest payload ` +
            `${size(largestSegment.largestPayload.bytes)}: ${largestSegment.largestPayload.what}`
          : 'none (the bake sampled in the lifecycle)',
      ],
      [
        'all segments',
        segments.length > 0
          ? `${count(segmentEvents)} events, ${size(segmentBytes)}: per sample ${size(perSampleBytes)}, ` +
            `${perSampleEvents.toFixed(1)} events`
          : '-',
      ],
      ['serving lease renewals', `${renewals} in the lifecycle`],
      ['wall time of v2', `${wall.toFixed(1)} s`],
    ],
  );
  const problems = [run, ...segments].map(brokenRun).filter((p): p is string => p !== null);
  if (taken < asked - 1) problems.push(`${count(taken)} samples taken of the ${count(asked)} asked`);
  return {
    limits: [
      ...limitRows('bake v2 (lifecycle)', run),
      ...(largestSegment ? limitRows('bake v2 (largest segment)', largestSegment) : []),
    ],
    problems,
    json: {
      model,
      bakeHours: options.bakeHours,
      intervalMs: options.sampleInterval,
      effectiveIntervalMs: effectiveInterval,
      samplesAsked: asked,
      samplesTaken: taken,
      samplesInLifecycle: own.samples,
      readouts,
      events: run.events,
      bytes: run.bytes,
      serverBytes: run.serverBytes,
      largestEvent: run.largestEvent,
      largestPayload: run.largestPayload,
      segments: segments.map((r) => ({ events: r.events, bytes: r.bytes, serverBytes: r.serverBytes })),
      perSampleBytes,
      perSampleEvents,
      renewals,
      suggestedAtEvent: run.suggestedAtEvent,
      wouldSuggestAtEvent: run.wouldSuggestAtEvent,
      wallSeconds: wall,
      problems,
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Case 2: a serving monitor for a month
// ---------------------------------------------------------------------------------------------------------------------

function runRows(runs: RunFacts[]): string[][] {
  return runs.map((r, i) => [
    String(i + 1),
    r.status.toLowerCase(),
    count(r.events),
    size(r.bytes),
    r.serverBytes ? size(r.serverBytes) : 'n/a',
    size(r.largestPayload.bytes),
    size(r.startInputBytes),
    r.continuedInputBytes === null ? '' : size(r.continuedInputBytes),
  ]);
}
/** Run rows, the middle ones folded into one row of ranges when there are many (a month of a monitor: ~60 runs). */
function foldedRunRows(runs: RunFacts[]): string[][] {
  if (runs.length <= 8) return runRows(runs);
  const middle = runs.slice(3, -2);
  const range = (values: number[], show: (n: number) => string) => {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    return lo === hi ? show(lo) : `${show(lo)} – ${show(hi)}`;
  };
  const statuses = [...new Set(middle.map((r) => r.status.toLowerCase()))].join(', ');
  const folded = [
    `${4}–${runs.length - 2}`,
    statuses,
    range(
      middle.map((r) => r.events),
      count,
    ),
    range(
      middle.map((r) => r.bytes),
      size,
    ),
    middle.some((r) => r.serverBytes)
      ? range(
          middle.map((r) => r.serverBytes),
          size,
        )
      : 'n/a',
    range(
      middle.map((r) => r.largestPayload.bytes),
      size,
    ),
    range(
      middle.map((r) => r.startInputBytes),
      size,
    ),
    range(
      middle.map((r) => r.continuedInputBytes ?? 0),
      size,
    ),
  ];
  const rows = runRows(runs);
  return [...rows.slice(0, 3), folded, ...rows.slice(-2)];
}
const RUN_HEADER = ['run', 'status', 'events', 'bytes', 'server bytes', 'largest payload', 'input', 'CAN input'];
const largestRun = (runs: RunFacts[]) => runs.reduce((a, b) => (b.bytes > a.bytes ? b : a));

async function monitorCase(
  testEnv: TestWorkflowEnvironment,
  reader: Client,
  lifecycles: LifecycleClient,
  gateway: Gateway,
  options: Options,
) {
  const client = testEnv.client;
  const model = `monitor-${Date.now().toString(36)}`;
  const checksAsked = Math.floor((options.days * DAY) / options.monitorInterval);
  console.log(
    `\n== case 2: a serving monitor for ${options.days} days, checking every ` +
      `${formatDurationMs(options.monitorInterval)} (${count(checksAsked)} checks; model ${model})`,
  );
  const load = liveTraffic(gateway.url, model, options.rate);
  const started = performance.now();
  await promote(
    lifecycles,
    specOf(model, 'v1', (s) => {
      s.monitoring.enabled = true;
      s.monitoring.interval = options.monitorInterval;
    }),
  );
  const monitorId = servingMonitorWorkflowId(model);
  const monitor = client.workflow.getHandle(monitorId);
  await waitFor('the serving monitor', async () => (await monitor.describe()).runId !== '', 30_000);
  console.log(`v1 promoted with monitoring in ${seconds(started).toFixed(1)} s; skipping ${options.days} days`);
  const routerBefore = await allRuns(reader, ALERT_ROUTER_WORKFLOW_ID).catch(() => []);

  // A day at a time, so that the progress shows and a wall-time budget can stop it early.
  const skipStarted = performance.now();
  let days = 0;
  while (days < options.days) {
    await testEnv.sleep(DAY);
    days++;
    if (days % 5 === 0 || days === options.days) {
      const state = await monitor.query(servingMonitorQuery).catch(() => null);
      console.log(
        `  day ${days}: ${state?.checks ?? '?'} checks, ${seconds(skipStarted).toFixed(0)} s of wall time, ` +
          `${load.stats.sent} predictions sent`,
      );
    }
    if (seconds(skipStarted) > options.monitorBudget && days < options.days) {
      console.log(`  wall-time budget of ${options.monitorBudget} s spent: stopping at day ${days}`);
      break;
    }
  }
  const skipWall = seconds(skipStarted);
  const state = await monitor.query(servingMonitorQuery);
  await load.stop();
  const runs = await allRuns(reader, monitorId);
  await monitor.terminate('history-size benchmark over').catch(() => undefined);
  const router = (await allRuns(reader, ALERT_ROUTER_WORKFLOW_ID).catch(() => [])).filter(
    (r) => !routerBefore.some((b) => b.runId === r.runId && b.status !== 'RUNNING'),
  );

  console.log(`serving monitor ${monitorId}: one row per run, oldest first`);
  printAligned(RUN_HEADER, foldedRunRows(runs));
  const biggest = largestRun(runs);
  const continued = runs.filter((r) => r.continuedInputBytes !== null);
  const canInputs = continued.map((r) => r.continuedInputBytes!);
  printAligned(
    ['serving monitor', 'value'],
    [
      ['days skipped / asked', `${days} / ${options.days}`],
      ['checks done / asked', `${count(state.checks)} / ${count(Math.floor((days * DAY) / options.monitorInterval))}`],
      ['runs', `${runs.length} (continued as new ${continued.length}×, every ${MONITOR_CHECKS_PER_RUN} checks)`],
      ['largest run', `${count(biggest.events)} events, ${size(biggest.bytes)} (run ${runs.indexOf(biggest) + 1})`],
      ['largest payload', `${size(biggest.largestPayload.bytes)}: ${biggest.largestPayload.what}`],
      [
        'continue-as-new input',
        canInputs.length ? `${size(Math.min(...canInputs))} – ${size(Math.max(...canInputs))}` : 'none yet',
      ],
      ['all runs together', `${count(runs.reduce((a, r) => a + r.events, 0))} events, ${size(sum(runs))}`],
      [
        'wall time of the skip',
        `${skipWall.toFixed(1)} s (${((skipWall / Math.max(state.checks, 1)) * 1000).toFixed(0)} ms per check)`,
      ],
    ],
  );
  if (router.length > 0) {
    const biggestRouter = largestRun(router);
    console.log(
      `alert router ${ALERT_ROUTER_WORKFLOW_ID} (every check reports to it): ${router.length} run(s) since the ` +
        `monitor started, largest ${count(biggestRouter.events)} events, ${size(biggestRouter.bytes)}, largest ` +
        `payload ${size(biggestRouter.largestPayload.bytes)} (${biggestRouter.largestPayload.what})`,
    );
  }
  const problems = [...runs, ...router].map(brokenRun).filter((p): p is string => p !== null);
  return {
    limits: [
      ...limitRows('monitor, largest run', biggest),
      ...(router.length > 0 ? limitRows('alert router, largest run', largestRun(router)) : []),
    ],
    problems,
    json: {
      model,
      intervalMs: options.monitorInterval,
      daysAsked: options.days,
      daysSkipped: days,
      checksAsked,
      checks: state.checks,
      runs: runs.map(runJson),
      continuedAsNew: continued.length,
      largestRun: runJson(biggest),
      continueAsNewInputBytes: canInputs,
      alertRouter: router.map(runJson),
      skipWallSeconds: skipWall,
      problems,
    },
  };
}

const sum = (runs: RunFacts[]) => runs.reduce((a, r) => a + r.bytes, 0);

function runJson(r: RunFacts) {
  return {
    runId: r.runId,
    status: r.status,
    events: r.events,
    bytes: r.bytes,
    serverBytes: r.serverBytes,
    largestEvent: r.largestEvent,
    largestPayload: r.largestPayload,
    startInputBytes: r.startInputBytes,
    continuedInputBytes: r.continuedInputBytes,
    taskFailures: r.taskFailures,
    lastEvent: r.lastEvent,
    suggestedAtEvent: r.suggestedAtEvent,
    wouldSuggestAtEvent: r.wouldSuggestAtEvent,
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Case 3: a quota pool with 10,000 leases
// ---------------------------------------------------------------------------------------------------------------------

/**
 * The sizes (JSON bytes) of the carried state's parts, the leases it carries, its form (packed by pools with
 * `bounded-state`, src/domain/quota-carry.ts; plain before), and for a packed one what the whole continue-as-new input
 * would have weighed in the plain form (the same state unpacked).
 */
function carriedBreakdown(
  input: unknown,
): { leases: number; packed: boolean; plainBytes: number | null; parts: Record<string, number> } | null {
  const carried = (input as { carried?: Record<string, unknown> } | undefined)?.carried;
  if (!carried) return null;
  const parts: Record<string, number> = {};
  for (const [k, v] of Object.entries(carried)) parts[k] = Buffer.byteLength(JSON.stringify(v));
  const packed = isPacked(carried);
  let plainBytes: number | null = null;
  if (packed) {
    try {
      plainBytes = Buffer.byteLength(JSON.stringify({ ...(input as object), carried: unpackCarried(carried) }));
    } catch {
      plainBytes = null;
    }
  }
  const leases = packed
    ? Number((carried.leases as { n?: unknown } | undefined)?.n ?? 0)
    : Array.isArray(carried.leases)
      ? carried.leases.length
      : 0;
  return { leases, packed, plainBytes, parts };
}

/** Resolves with `work`'s result, or with 'timeout' after `ms`. */
async function within<T>(work: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => {
    timer = setTimeout(() => r('timeout'), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Longest a wave of case 3 may take (a wave of 1,000 at 10,000 leases took about 20 s on the test server). */
const WAVE_MS = 90_000;
/** The waves' calls not settled yet: connections close only after them. */
const inFlight = new Set<Promise<unknown>>();
/** Waits (at most a wave's deadline) for the calls in flight, which end by their deadline at the latest. */
const settleInFlight = () => within(Promise.allSettled([...inFlight]), WAVE_MS + 5_000);

/** Case 3's pool: room for every lease, leases that outlive the case. */
const BENCH_POOL = 'history-bench';
const benchPool = (options: Options) => ({
  name: BENCH_POOL,
  capacity: { cpu: options.leases },
  leaseTtl: '2h',
  // Its monitor reads a summary through an activity (readPoolState); every 5 s (default 30 s), so that it reads
  // the pool several times while it fills (a minute or two here, hours in a real deployment).
  alerts: { checkEvery: '5s' },
  ...(options.poolCanOps > 0 ? { continueAsNewAfterOps: options.poolCanOps } : {}),
  // Room for every lease of the case (its default, DEFAULT_MAX_LEASES, is 5,000), up to the most a pool accepts.
  maxLeases: Math.min(options.leases, MAX_POOL_LEASES),
});

async function poolCase(
  client: Client,
  reader: Client,
  pools: QuotaPoolsFile,
  options: Options,
  server: 'test server' | 'dev server',
) {
  const pool = BENCH_POOL;
  const poolId = quotaPoolWorkflowId(pool);
  const label = server === 'test server' ? 'pool' : 'pool on the dev server';
  console.log(
    `\n== case 3${server === 'dev server' ? ' on a stock dev server (its limits enforced)' : ''}: a quota pool with ` +
      `${count(options.leases)} leases of cpu: 1, reserved in waves of ` +
      `${count(options.wave)} callers through one QuotaClient (batches of up to 200 operations), ` +
      (options.poolCanOps > 0
        ? `continuing as new every ${count(options.poolCanOps)} operations (continueAsNewAfterOps)`
        : 'continuing as new when the server suggests it'),
  );
  const quota = new QuotaClient(client, pools, { ownerSecret: WORKER_SECRET });
  await quota.configure(pool);
  const handle = client.workflow.getHandle(poolId);
  const waves: string[][] = [];
  const wavesJson: Record<string, unknown>[] = [];
  const problems: string[] = [];
  const querySize = async (): Promise<{ bytes: number; error: string | null; state: QuotaPoolState | null }> => {
    try {
      const state = await within(handle.query(poolStateQuery), 30_000);
      if (state === 'timeout') return { bytes: NaN, error: 'no answer within 30 s', state: null };
      return { bytes: Buffer.byteLength(JSON.stringify(state)), error: null, state };
    } catch (err) {
      return { bytes: NaN, error: (err as Error).message, state: null };
    }
  };
  /**
   * The summary its monitor reads (`{ summary: true }`): its JSON bytes (NaN when it gets no answer) and the counts.
   * Where the pool stands comes from it: a stock server refuses the whole answer past 2 MB (about 8,300 leases here).
   */
  const summarySize = async (): Promise<{ bytes: number; state: QuotaPoolState | null }> => {
    try {
      const state = await within(handle.query(poolStateQuery, { summary: true }), 30_000);
      return state === 'timeout'
        ? { bytes: NaN, state: null }
        : { bytes: Buffer.byteLength(JSON.stringify(state)), state };
    } catch {
      return { bytes: NaN, state: null };
    }
  };
  const leaseId = (i: number) => `job-${String(i).padStart(5, '0')}`;
  let granted = 0;
  let broke = null as { what: string; granted: number; why: string } | null;
  /**
   * Resolves with why the pool cannot go on, once it cannot: a run that ended otherwise than by continuing as new, or a
   * workflow task that keeps failing (attempt 3 or more: a payload the server or the SDK refuses, say).
   */
  const watch = (stop: { done: boolean }) =>
    new Promise<string>((resolve) => {
      const look = async () => {
        while (!stop.done) {
          await sleep(2000);
          const d = await handle.describe().catch(() => null);
          const status = (Status[d?.raw.workflowExecutionInfo?.status ?? 0] ?? '').replace(
            /^WORKFLOW_EXECUTION_STATUS_/,
            '',
          );
          const attempt = d?.raw.pendingWorkflowTask?.attempt ?? 0;
          if (d && status !== 'RUNNING') return resolve(`the pool's run ended ${status}`);
          if (attempt >= 3) return resolve(`the pool's workflow task is failing (attempt ${attempt})`);
        }
      };
      void look();
    });

  /** One wave of concurrent calls, then where the pool stands. */
  const wave = async (what: string, calls: () => Promise<unknown>[]): Promise<boolean> => {
    const began = performance.now();
    const stop = { done: false };
    // Every call of the wave carries the wave's deadline: a call to a stalled pool fails then, instead of retrying on
    // after the bench has closed its connection (the client's retry timer would throw into nothing).
    const all = client.withDeadline(Date.now() + WAVE_MS, () =>
      Promise.allSettled(
        calls().map((c) =>
          c.then((v) => {
            if ((v as { granted?: boolean } | null)?.granted === true) granted++;
            return v;
          }),
        ),
      ),
    );
    inFlight.add(all);
    void all.finally(() => inFlight.delete(all));
    const outcome = await within(Promise.race([all, watch(stop)]), WAVE_MS);
    stop.done = true;
    const took = seconds(began);
    const settled = typeof outcome === 'string' ? 'timeout' : outcome;
    const why =
      outcome === 'timeout' ? `not done within ${WAVE_MS / 1000} s` : typeof outcome === 'string' ? outcome : null;
    const current = await runFacts(reader, poolId).catch(() => null);
    const q = await querySize();
    const sum = await summarySize();
    const failed = settled === 'timeout' ? 0 : settled.filter((s) => s.status === 'rejected').length;
    const firstError =
      settled === 'timeout'
        ? null
        : ((settled.find((s) => s.status === 'rejected') as PromiseRejectedResult | undefined)?.reason as
            Error | undefined);
    const refused =
      settled === 'timeout'
        ? 0
        : settled.filter(
            (s) => s.status === 'fulfilled' && (s.value as { granted?: boolean } | null)?.granted === false,
          ).length;
    const held = sum.state?.counts?.leases ?? q.state?.leases.length ?? (settled === 'timeout' ? granted : undefined);
    const continued = (sum.state ?? q.state)?.stats.continuedAsNew;
    waves.push([
      what,
      settled === 'timeout' ? 'STALLED' : took.toFixed(1),
      held === undefined ? '?' : count(held),
      continued === undefined ? '?' : String(continued),
      current ? count(current.events) : '?',
      current ? size(current.bytes) : '?',
      current ? size(current.largestPayload.bytes) : '?',
      q.error ? `failed: ${q.error.slice(0, 60)}` : size(q.bytes),
      Number.isFinite(sum.bytes) ? size(sum.bytes) : 'failed',
      String(failed + refused),
    ]);
    wavesJson.push({
      what,
      seconds: took,
      stalled: settled === 'timeout',
      leases: held ?? null,
      continuedAsNew: continued ?? null,
      runEvents: current?.events ?? null,
      runBytes: current?.bytes ?? null,
      largestPayload: current?.largestPayload ?? null,
      queryBytes: q.bytes,
      queryError: q.error,
      summaryBytes: sum.bytes,
      summaryFailed: sum.state === null,
      failed,
      refused,
    });
    if (firstError) problems.push(`${what}: ${failed} calls failed, first: ${firstError.message}`);
    if (refused > 0) problems.push(`${what}: ${refused} refused`);
    if (why) {
      broke ??= { what, granted, why };
      problems.push(`${label}, ${what}: stalled with ${count(granted)} leases granted: ${why}`);
    }
    const broken = current ? brokenRun(current) : null;
    if (broken && !problems.includes(broken)) problems.push(broken);
    return settled !== 'timeout' && broken === null;
  };

  const began = performance.now();
  let ok = true;
  for (let from = 0; ok && from < options.leases; from += options.wave) {
    const to = Math.min(from + options.wave, options.leases);
    ok = await wave(`reserve ${count(from + 1)}–${count(to)}`, () =>
      Array.from({ length: to - from }, (_, k) =>
        quota.reserve(pool, {
          leaseId: leaseId(from + k),
          holder: `pipeline-${(from + k) % 500}`,
          kind: 'training',
          resources: { cpu: 1 },
        }),
      ),
    );
  }
  const full = ok ? await querySize() : null;
  const fullSummary = ok ? (await summarySize()).bytes : NaN;
  const share = Math.floor(options.leases / 5);
  if (ok)
    ok = await wave(`renew ${count(share)} (every 5th)`, () =>
      Array.from({ length: share }, (_, k) => quota.renew(pool, { leaseId: leaseId(k * 5) })),
    );
  if (ok)
    ok = await wave(`release ${count(share)} (the last)`, () =>
      Array.from({ length: share }, (_, k) => quota.release(pool, { leaseId: leaseId(options.leases - 1 - k) })),
    );
  const wall = seconds(began);
  printAligned(
    [
      'wave',
      'seconds',
      'leases held',
      'CAN so far',
      'run events',
      'run bytes',
      'largest payload',
      'query answer',
      'summary',
      'failed',
    ],
    waves,
  );

  const runs = await allRuns(reader, poolId);
  console.log(`quota pool ${poolId} (${server}): one row per run, oldest first`);
  printAligned(
    [...RUN_HEADER, 'form', 'leases carried', 'leases part', 'owners part', 'journal', 'runs', 'samples', 'plain form'],
    runs.map((r, i) => {
      const b = carriedBreakdown(r.continuedInput);
      return [
        ...(runRows([r])[0] ?? []).map((c, j) => (j === 0 ? String(i + 1) : c)),
        b ? (b.packed ? 'packed' : 'plain') : '',
        b ? count(b.leases) : '',
        b ? size(b.parts.leases ?? 0) : '',
        b ? size(b.parts.owners ?? 0) : '',
        b ? size(b.parts.journal ?? 0) : '',
        b ? size(b.parts.runs ?? 0) : '',
        b ? size(b.parts.samples ?? 0) : '',
        b?.plainBytes ? size(b.plainBytes) : '',
      ];
    }),
  );
  // Where the carried state crosses the payload limits: its size grows with the leases it carries.
  const points = runs
    .map((r) => ({ bytes: r.continuedInputBytes, b: carriedBreakdown(r.continuedInput) }))
    .filter(
      (p): p is { bytes: number; b: NonNullable<ReturnType<typeof carriedBreakdown>> } =>
        p.bytes !== null && p.b !== null,
    )
    .filter((p) => p.b.leases > 0);
  const fit = fitPerLease(points.map((p) => ({ x: p.b.leases, y: p.bytes })));
  const leasesAt = (bytes: number) => (fit ? Math.floor((bytes - fit.fixed) / fit.perLease) : NaN);
  // The whole answer: what mlctl reads (the pool's monitor reads a summary, whose size does not grow with the leases).
  const queryPoints = wavesJson
    .filter((w) => typeof w.leases === 'number' && Number.isFinite(w.queryBytes))
    .map((w) => ({ x: w.leases as number, y: w.queryBytes as number }));
  const queryFit = fitPerLease(queryPoints);
  const queryLeasesAt = (bytes: number) => (queryFit ? Math.floor((bytes - queryFit.fixed) / queryFit.perLease) : NaN);
  const firstOver = (bytes: number) => {
    const i = runs.findIndex((r) => (r.continuedInputBytes ?? 0) >= bytes);
    const b = i >= 0 ? carriedBreakdown(runs[i]!.continuedInput) : null;
    return i >= 0 ? `run ${i + 1}, carrying ${count(b?.leases ?? 0)} leases` : 'never';
  };
  const overPage = runs.filter((r) => r.bytes > LIMITS.grpcMessage).length;
  // The pool's monitor reads a summary through an activity (readPoolState) every 5 s of (real) time here.
  const monitorRuns = await allRuns(reader, quotaMonitorWorkflowId(pool));
  const monitorBiggest = monitorRuns.reduce((a, b) => (b.largestPayload.bytes > a.largestPayload.bytes ? b : a));
  const monitorChecks = monitorRuns.reduce(
    (n, r) =>
      n +
      r.history.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'readPoolState').length,
    0,
  );
  const final = await querySize();
  // Measured: the pool and its monitor stop here, so that no task of theirs is in flight when the workers stop.
  for (const id of [quotaMonitorWorkflowId(pool), poolId])
    await client.workflow
      .getHandle(id)
      .terminate('history-size benchmark over')
      .catch(() => undefined);
  const biggest = largestRun(runs);
  const maxCarried = Math.max(0, ...runs.map((r) => r.continuedInputBytes ?? 0));
  // The carried state when the pool held the most leases, packed, beside the same state in the plain form.
  const fullest = runs
    .map((r) => ({ bytes: r.continuedInputBytes ?? 0, b: carriedBreakdown(r.continuedInput) }))
    .filter((p) => p.b !== null)
    .reduce<{ bytes: number; b: ReturnType<typeof carriedBreakdown> } | null>(
      (best, p) => (best === null || p.b!.leases > best.b!.leases ? p : best),
      null,
    );
  const heldMost = Math.max(0, ...wavesJson.map((w) => (typeof w.leases === 'number' ? w.leases : 0)));
  printAligned(
    ['quota pool', 'value'],
    [
      ['leases reserved / renewed / released', `${count(options.leases)} / ${count(share)} / ${count(share)}`],
      ...(broke
        ? [
            [
              'STALLED',
              `in "${broke.what}" with ${count(broke.granted)} leases granted: ${broke.why}` +
                (fit ? `; their carried state: ~${size(fit.fixed + fit.perLease * broke.granted)} (fit)` : ''),
            ],
          ]
        : []),
      ['wall time', `${wall.toFixed(1)} s`],
      ['runs', `${runs.length} (continued as new ${runs.length - 1}×)`],
      ['largest run', `${count(biggest.events)} events, ${size(biggest.bytes)} (run ${runs.indexOf(biggest) + 1})`],
      ['largest payload', `${size(biggest.largestPayload.bytes)}: ${biggest.largestPayload.what}`],
      ['largest carried state (CAN input)', maxCarried ? size(maxCarried) : 'none'],
      [
        'carried state at the most leases carried',
        fullest?.b
          ? `${size(fullest.bytes)} for ${count(fullest.b.leases)} leases, ${fullest.b.packed ? 'packed' : 'plain'}` +
            (fullest.b.plainBytes
              ? ` (${(fullest.bytes / fullest.b.leases).toFixed(0)} B per lease in all); the plain form: ` +
                `${size(fullest.b.plainBytes)}, ${(fullest.b.plainBytes / fullest.bytes).toFixed(1)}× as much`
              : '')
          : 'none',
      ],
      [
        'kept working past 5,900 leases',
        (() => {
          const bad = wavesJson.find((w) => w.stalled || (w.failed as number) > 0 || w.summaryFailed);
          const past = `${count(heldMost)} leases held at most`;
          const whole = wavesJson.find((w) => w.queryError);
          const note = whole
            ? `; the whole state answer failed from "${String(whole.what)}" on: ${String(whole.queryError)}`
            : '';
          return bad
            ? `${past}; from "${String(bad.what)}" on it did not answer (see the waves)${note}`
            : `yes: ${past}${note}`;
        })(),
      ],
      [
        'carried state per lease',
        fit ? `${fit.perLease.toFixed(0)} B + ${size(fit.fixed)} fixed (fit over ${points.length} runs)` : 'n/a',
      ],
      [
        'carried state reaches',
        fit
          ? `512 KiB at ~${count(leasesAt(LIMITS.payloadWarn))} leases, 2 MiB at ~${count(leasesAt(LIMITS.payloadError))}`
          : 'n/a',
      ],
      ['CAN input first over 512 KiB', firstOver(LIMITS.payloadWarn)],
      ['CAN input first over 2 MiB', firstOver(LIMITS.payloadError)],
      ...(server === 'test server'
        ? [
            [
              'runs over 4 MiB',
              `${overPage} of ${runs.length} (the test server answers a history in one page: a client with the ` +
                'default 4 MiB receive limit cannot read them)',
            ],
          ]
        : []),
      [
        'poolStateQuery answer per lease',
        queryFit
          ? `${queryFit.perLease.toFixed(0)} B; 2 MiB (the payload limit) at ~` +
            `${count(queryLeasesAt(LIMITS.payloadError))} leases, 4 MiB (gRPC) at ~${count(queryLeasesAt(LIMITS.grpcMessage))}`
          : 'n/a',
      ],
      [
        `poolStateQuery answer at ${count(options.leases)} leases`,
        full ? (full.error ? `failed: ${full.error}` : size(full.bytes)) : 'not reached',
      ],
      [
        `poolStateQuery summary at ${count(options.leases)} leases`,
        full ? (Number.isFinite(fullSummary) ? size(fullSummary) : 'failed') : 'not reached',
      ],
      [
        'pool monitor (readPoolState, a summary)',
        `${monitorChecks} reads; largest payload ${size(monitorBiggest.largestPayload.bytes)}: ` +
          monitorBiggest.largestPayload.what,
      ],
      ['poolStateQuery answer at the end', final.error ? `failed: ${final.error}` : size(final.bytes)],
    ],
  );
  for (const p of [...runs, ...monitorRuns].map(brokenRun)) if (p && !problems.includes(p)) problems.push(p);
  const carriedRow = (bytes: number): string[] => [
    `${label}, largest CAN input`,
    'payload',
    size(bytes),
    '',
    size(LIMITS.payloadWarn),
    size(LIMITS.payloadError),
    pct(bytes, LIMITS.payloadError),
    bytes >= LIMITS.payloadError ? 'OVER THE LIMIT' : bytes >= LIMITS.payloadWarn ? 'past the warning' : 'under',
  ];
  const queryRow = (bytes: number): string[] => [
    `${label}, query at ${count(options.leases)}`,
    'gRPC message',
    size(bytes),
    '',
    '',
    size(LIMITS.grpcMessage),
    pct(bytes, LIMITS.grpcMessage),
    bytes >= LIMITS.grpcMessage ? 'OVER THE LIMIT' : 'under',
  ];
  return {
    limits: [
      ...limitRows(`${label}, largest run`, biggest),
      ...(maxCarried ? [carriedRow(maxCarried)] : []),
      ...limitRows(`${label}, its monitor`, monitorBiggest).slice(2),
      ...(full && !full.error ? [queryRow(full.bytes)] : []),
    ],
    problems,
    json: {
      pool,
      server,
      leases: options.leases,
      wave: options.wave,
      continueAsNewAfterOps: options.poolCanOps || null,
      waves: wavesJson,
      runs: runs.map((r) => ({ ...runJson(r), carried: carriedBreakdown(r.continuedInput) })),
      carriedPerLeaseBytes: fit?.perLease ?? null,
      carriedAtMostLeases: fullest?.b
        ? { leases: fullest.b.leases, bytes: fullest.bytes, packed: fullest.b.packed, plainBytes: fullest.b.plainBytes }
        : null,
      heldMost,
      carriedFixedBytes: fit?.fixed ?? null,
      carriedLeasesAtWarning: fit ? leasesAt(LIMITS.payloadWarn) : null,
      carriedLeasesAtLimit: fit ? leasesAt(LIMITS.payloadError) : null,
      queryPerLeaseBytes: queryFit?.perLease ?? null,
      queryLeasesAtPayloadLimit: queryFit ? queryLeasesAt(LIMITS.payloadError) : null,
      queryLeasesAtGrpcLimit: queryFit ? queryLeasesAt(LIMITS.grpcMessage) : null,
      runsOver4MiB: overPage,
      monitor: { reads: monitorChecks, runs: monitorRuns.map(runJson) },
      queryBytesFull: full?.bytes ?? null,
      summaryBytesFull: Number.isFinite(fullSummary) ? fullSummary : null,
      queryErrorFull: full?.error ?? null,
      queryBytesEnd: final.bytes,
      wallSeconds: wall,
      stalled: broke,
      problems,
    },
  };
}

/** Least squares y = fixed + perLease · x over at least two points. */
function fitPerLease(points: { x: number; y: number }[]): { perLease: number; fixed: number } | null {
  if (points.length < 2) return null;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  const sxx = points.reduce((a, p) => a + (p.x - mx) ** 2, 0);
  if (sxx === 0) return null;
  const perLease = points.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0) / sxx;
  return { perLease, fixed: my - perLease * mx };
}

// ---------------------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const options = new Command()
    .option(
      '--cases <list>',
      'cases to run: bake, monitor, pool (and pool-dev: case 3 again on a stock dev server)',
      (v) => v.split(','),
      ['bake', 'monitor', 'pool'],
    )
    .option('--bake-hours <n>', 'the canary bake of case 1, hours', wholeNumber('--bake-hours', 1), 24)
    .option(
      '--sample-interval <d>',
      'rollout.analysis.interval of case 1',
      durationOption('--sample-interval', 1000),
      MINUTE,
    )
    .option('--days <n>', 'days the serving monitor of case 2 runs', wholeNumber('--days', 1), 30)
    .option(
      '--monitor-interval <d>',
      'monitoring.interval of case 2',
      durationOption('--monitor-interval', 1000),
      15 * MINUTE,
    )
    .option('--monitor-budget <s>', 'wall seconds case 2 may skip for', wholeNumber('--monitor-budget', 10), 300)
    .option('--leases <n>', 'leases reserved in case 3', wholeNumber('--leases', 10), 10_000)
    .option('--wave <n>', 'concurrent callers per wave in case 3', wholeNumber('--wave', 1), 1000)
    .option(
      '--pool-can-ops <n>',
      "the pool's continueAsNewAfterOps (0: the server's suggestion only)",
      wholeNumber('--pool-can-ops', 0),
      2000,
    )
    .option('--rate <n>', 'live predictions per second', wholeNumber('--rate', 1), 100)
    .parse(process.argv)
    .opts<Options>();
  for (const c of options.cases)
    if (!['bake', 'monitor', 'pool', 'pool-dev'].includes(c)) throw new InvalidArgumentError(`unknown case "${c}"`);
  const loadBefore = loadavg();
  const wallStarted = performance.now();
  workDir = mkdtempSync(join(tmpdir(), 'mll-bench-history-'));
  const logs = join(workDir, 'logs');
  const artifactsDir = join(workDir, 'artifacts');
  mkdirSync(logs);
  mkdirSync(artifactsDir);
  const policyFile = join(workDir, 'policy.yaml');
  writeFileSync(
    policyFile,
    'version: 1\ndefaults:\n  approval:\n    approvers: [alice, bob]\n  signatures:\n    required: false\n' +
      '  training:\n    roots: [examples]\n',
  );

  // One quiet Runtime: the SDK's warnings and errors are counted (a payload-size warning would be one), not printed.
  const tally = (level: string) => (message: string, meta?: Record<string, unknown>) => {
    const where = meta?.workflowType ?? meta?.activityType;
    const key = `${level} ${message.slice(0, 160)}${typeof where === 'string' ? ` (${where})` : ''}`;
    sdkLogs.set(key, (sdkLogs.get(key) ?? 0) + 1);
  };
  const noop = () => undefined;
  Runtime.install({
    logger: {
      log: (level, message, meta) => (level === 'WARN' || level === 'ERROR' ? tally(level)(message, meta) : undefined),
      trace: noop,
      debug: noop,
      info: noop,
      warn: tally('WARN'),
      error: tally('ERROR'),
    },
    telemetryOptions: { logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} } },
    shutdownSignals: [],
  });

  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: temporalTestServerPath() } },
  });
  await registerSearchAttributes(env.connection, 'default');
  const gateway = await startGateway(artifactsDir, logs);
  const quotaPools = QuotaPoolsFile.parse({
    pools: [
      // Its monitor looks daily: the skipped month must not be spent on pool checks.
      { name: 'default', capacity: { cpu: 64, memoryGiB: 256 }, alerts: { checkEvery: '1d' } },
      // Known to the worker (its monitor's activity reads it by name), started only by case 3, after the skip.
      benchPool(options),
    ],
  });
  const activities = createActivities({
    client: env.client,
    gateway: gateway.admin,
    artifactsDir,
    python: trainerPython(),
    root,
    quotaPools,
    policy: new PolicySource(policyFile, undefined, root),
    workerSecret: WORKER_SECRET,
    analysisPollIntervalMs: 250,
  });
  const t = performance.now();
  workers = await createWorkers({ connection: env.nativeConnection, activities, trainingClasses: ['cpu'] });
  running = Promise.all(workers.map((w) => w.run()));
  running.catch(() => undefined);
  await new QuotaClient(env.client, quotaPools, { ownerSecret: WORKER_SECRET }).configure('default');
  console.log(
    `time-skipping test server, gateway process, workers (workflows bundled in ${seconds(t).toFixed(1)} s) ready`,
  );
  const lifecycles = new LifecycleClient(env.client);
  readConnection = await Connection.connect({
    address: env.address,
    channelArgs: { 'grpc.max_receive_message_length': 256 * MB },
  });
  const reader = new Client({ connection: readConnection });

  const bake = options.cases.includes('bake') ? await bakeCase(reader, lifecycles, gateway, options) : null;
  const monitor = options.cases.includes('monitor')
    ? await monitorCase(env, reader, lifecycles, gateway, options)
    : null;
  const pool = options.cases.includes('pool')
    ? await poolCase(env.client, reader, quotaPools, options, 'test server')
    : null;
  const poolDev = options.cases.includes('pool-dev') ? await poolOnDevServer(options, quotaPools, gateway) : null;

  console.log('\n== against the stock server limits (the test server enforces none of them, a dev server does)');
  const cases = [bake, monitor, pool, poolDev];
  printAligned(
    LIMIT_HEADER,
    cases.flatMap((c) => c?.limits ?? []),
  );
  const problems = [...new Set(cases.flatMap((c) => c?.problems ?? []))];
  if (sdkLogs.size > 0) {
    console.log('SDK warnings and errors (counted):');
    for (const [message, n] of [...sdkLogs].sort((a, b) => b[1] - a[1]).slice(0, 10)) console.log(`  ${n}× ${message}`);
  }
  const wall = seconds(wallStarted);
  const loadAfter = loadavg();
  console.log(`wall time ${wall.toFixed(0)} s`);
  printLoad(loadBefore, loadAfter);
  if (problems.length > 0) {
    console.log('BROKEN:');
    for (const p of problems) console.log(`  - ${p}`);
  }
  console.log(
    `BENCH_JSON ${JSON.stringify({
      ...benchFacts('history-size', loadBefore, loadAfter),
      options,
      limits: LIMITS,
      bake: bake?.json ?? null,
      monitor: monitor?.json ?? null,
      pool: pool?.json ?? null,
      poolOnDevServer: poolDev?.json ?? null,
      sdkLogs: Object.fromEntries(sdkLogs),
      wallSeconds: wall,
      problems,
      ok: problems.length === 0,
    })}`,
  );
  return problems.length === 0 ? 0 : 1;
}

/** Case 3 again on a stock dev server (`temporal server start-dev`, in memory), whose limits are enforced. */
async function poolOnDevServer(options: Options, quotaPools: QuotaPoolsFile, gateway: Gateway) {
  devServer = await startDevServer();
  const connection = await Connection.connect({ address: devServer.address });
  const big = await Connection.connect({
    address: devServer.address,
    channelArgs: { 'grpc.max_receive_message_length': 256 * MB },
  });
  devConnections.push(connection, big);
  const client = new Client({ connection });
  const native = await NativeConnection.connect({ address: devServer.address });
  devConnections.push(native);
  const activities = createActivities({
    client,
    gateway: gateway.admin,
    artifactsDir: join(workDir!, 'artifacts'),
    python: trainerPython(),
    root,
    quotaPools,
    workerSecret: WORKER_SECRET,
  });
  devWorkers = await createWorkers({ connection: native, activities, trainingClasses: [] });
  devRunning = Promise.all(devWorkers.map((w) => w.run()));
  devRunning.catch(() => undefined);
  try {
    return await poolCase(client, new Client({ connection: big }), quotaPools, options, 'dev server');
  } finally {
    await stopDevServer();
  }
}

let devServer: DevServer | undefined;
let devWorkers: Worker[] = [];
let devRunning: Promise<unknown> | undefined;
const devConnections: { close(): Promise<void> }[] = [];

async function stopDevServer(): Promise<void> {
  await settleInFlight();
  for (const w of devWorkers.splice(0)) {
    try {
      w.shutdown();
    } catch {
      // not running
    }
  }
  // A pool whose workflow tasks fail is replayed from its run's start on every attempt (a long task at thousands of
  // leases): its worker may take a while to stop, and must stop before its server does.
  if (devRunning)
    await within(
      devRunning.catch(() => undefined),
      60_000,
    );
  devRunning = undefined;
  for (const c of devConnections.splice(0)) await c.close().catch(() => undefined);
  await devServer?.stop().catch(() => undefined);
  devServer = undefined;
}

let cleaning: Promise<void> | undefined;

/** Stops the load, the workers, the gateway and the test server, and removes the temp folder; runs once. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    // After the report, a call the client retries on a timer may find its channel closed and throw from that timer:
    // that is the end of a call nobody waits for any more, not a failure of the run.
    process.on('uncaughtException', (err) => {
      if (err.message === 'Channel has been shut down') return;
      process.stderr.write(`${err.stack ?? String(err)}\n`);
      process.exit(1);
    });
    await Promise.allSettled(loads.splice(0).map((l) => l.stop()));
    await settleInFlight();
    for (const w of workers) {
      try {
        w.shutdown();
      } catch {
        // not running
      }
    }
    // A busy pool's workflow task can take seconds at thousands of leases: the workers finish it before they stop, and
    // they must stop before their connections close.
    if (
      running &&
      (await within(
        running.catch(() => undefined),
        60_000,
      )) === 'timeout'
    )
      process.stderr.write('the workers did not stop within 60 s\n');
    await stopDevServer();
    await Promise.allSettled(children.splice(0).map((c) => c.stop()));
    await readConnection?.close().catch(() => undefined);
    await env?.teardown().catch(() => undefined);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    // A worker that did not stop in time (its native side) would keep the process alive after the report: leave then,
    // with the exit code the run set.
    setTimeout(() => process.exit(), 10_000).unref();
  })();
  return cleaning;
}

runBenchmark('history-size benchmark', main, cleanup);
