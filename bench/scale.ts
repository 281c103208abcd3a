/**
 * Many lifecycles at once on one dev server, and many models in one gateway.
 *
 * Lifecycles: starts a Temporal dev server (its own SQLite file), the built gateway and the built worker as separate
 * processes, with a quota pool smaller than the crowd (`--capacity` CPUs, one per training lease: reservations wait
 * in the queue) and a trainer that copies a prebuilt artifact (`bench/trainers/copy_trainer.py`: training costs a
 * Python start and a copy; validation still runs for real). Submits `--lifecycles` lifecycles of distinct models at
 * once, each allowed to wait 1 h for quota. Every deploy gate is approved (as alice) as soon as the bench sees it
 * open, and each model in its canary or ramp gets predictions from a load loop (rows of the churn test set, at most
 * `--rate` per second in all) so that its zero-length bakes are judged on real traffic; `--gate-only` stops at the
 * gates instead. Prints how many got there and when (p50/p99/max from submission), lifecycles per minute, the
 * orchestration overhead of each lifecycle and of each stage (the time its workflow tasks and activities other than
 * training were at work, from its history: bakes, quota queues and approval waits are time asked for, not spent),
 * where that time went, the pool's grants, refusals and expirations (a lease that expires while its holder lives is
 * a failure), the peak RSS of the dev server, the worker and the gateway (`VmHWM`), and the largest history.
 *
 * Models: a fresh gateway process, one model deployed and driven at concurrency 8, then `--models` in all (the same
 * artifact deployed under that many names: as many ONNX sessions) and driven with every request to a random one.
 * Prints the gateway's resident memory per loaded model, the deploy time, and p50/p99 latency with one model and with
 * all of them.
 *
 * Ends with a `BENCH_JSON {...}` line. Exits 1 unless every lifecycle reached its gate (and, approving, promoted)
 * with no lease expired and every prediction of the models phase answered 200.
 *
 * Run: `npm run bench:scale` (builds first; 500 lifecycles, 200 models, capacity 8, timeout 60m);
 * `npm run bench:scale -- --lifecycles 200 --models 0` (no models phase), `--lifecycles 0` (models phase only).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { Command, InvalidArgumentError } from 'commander';
import { Agent, request } from 'undici';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { artifactDigest } from '../src/artifacts/digest';
import { LifecycleClient } from '../src/client/lifecycle-client';
import { projectRoot } from '../src/config/paths';
import { startDevServer, type DevServer } from '../src/dev/dev-server';
import { freePort, waitFor } from '../src/dev/ports';
import { startNode, type ManagedProcess } from '../src/dev/processes';
import { registerSearchAttributes } from '../src/dev/register-search-attributes';
import { poolStateQuery } from '../src/shared/messages';
import { quotaPoolWorkflowId } from '../src/shared/quota';
import { LifecycleSpec } from '../src/shared/spec';
import type { LifecycleStatus } from '../src/shared/status';
import { LIFECYCLE_TASK_QUEUE } from '../src/shared/task-queues';
import { adminCall, loadRows, train, type AdminEndpoint, type Row } from './gateway-throughput';
import { busyIntervals, coveredMs, eventMs } from './history';
import { benchFacts, percentile, printAligned, printLoad, runBenchmark } from './report';

const root = projectRoot();
const children: ManagedProcess[] = [];
let server: DevServer | undefined;
let workDir: string | undefined;

/** Stages in which a lifecycle's candidate takes live traffic: the load loop sends its model predictions. */
const TRAFFIC_STAGES = new Set(['canary', 'ramping', 'guarding']);
/** The end of a lifecycle in this bench (monitoring is off: a promoted lifecycle completes). */
const ENDED = new Set(['failed', 'rejected', 'rolled-back', 'rollback-stuck', 'promoted']);
/** Activities that are the user's work, not the orchestration's: the trainer's run. */
const WORK = new Set(['trainModel']);

const wholeNumber = (what: string, min: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${what} must be a whole number >= ${min}`);
  return n;
};

/** A process's resident memory, MiB: `VmHWM` (peak) or `VmRSS` (now); undefined off Linux or once it exited. */
function rssMiB(pid: number | undefined, which: 'VmHWM' | 'VmRSS' = 'VmHWM'): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const kb = new RegExp(`${which}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fixed = (n: number | undefined, digits = 1) => (n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(digits));
const sorted = (values: number[]) => Float64Array.from(values).sort();

interface Options {
  lifecycles: number;
  models: number;
  capacity: number;
  timeout: number;
  rate: number;
  gateOnly: boolean;
  workers: number;
}

/** A gateway process on free ports with its own data dir and a fresh admin token. */
async function startGateway(name: string, artifactRoot: string, logs: string) {
  const port = await freePort();
  const adminPort = await freePort();
  const admin: AdminEndpoint = { url: `http://127.0.0.1:${adminPort}`, token: randomBytes(24).toString('base64url') };
  const process = startNode(
    name,
    join(root, 'dist', 'src', 'serving', 'main.js'),
    {
      GATEWAY_PORT: String(port),
      GATEWAY_ADMIN_PORT: String(adminPort),
      GATEWAY_DATA_DIR: join(workDir!, name),
      GATEWAY_ARTIFACT_ROOT: artifactRoot,
      GATEWAY_ADMIN_TOKEN: admin.token,
      LOG_LEVEL: 'warn',
    },
    join(logs, `${name}.log`),
  );
  children.push(process);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    `${name} /healthz`,
    async () => {
      const res = await request(`${url}/healthz`).catch(() => null);
      await res?.body.dump();
      return res?.statusCode === 200;
    },
    20_000,
  );
  return { url, admin, process };
}

/** One prediction for `model`; its latency in ms, or NaN when it did not answer 200. */
async function predict(agent: Agent, url: string, model: string, row: Row, user: number): Promise<number> {
  const started = performance.now();
  try {
    const res = await request(`${url}/v1/models/${model}/predict`, {
      dispatcher: agent,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: `user-${user}`, features: row }),
    });
    await res.body.dump();
    return res.statusCode === 200 ? performance.now() - started : NaN;
  } catch {
    return NaN;
  }
}

/** The lifecycles phase: what it measured, and whether it held. */
interface LifecyclesResult {
  ok: boolean;
  json: Record<string, unknown>;
}

async function lifecyclesPhase(options: Options, prebuilt: string, logs: string): Promise<LifecyclesResult> {
  // Training leases (4 CPUs each on cpu-4) come from a small pool, so the crowd queues; every device of the catalog
  // draws on it. Serving leases come from the lifecycle's own pool, with room for every model in production: a
  // promoted version keeps its lease.
  const poolsFile = join(workDir!, 'quota-pools.yaml');
  writeFileSync(
    poolsFile,
    stringifyYaml({
      pools: [
        {
          name: 'training',
          capacity: { cpu: options.capacity * 4, memoryGiB: options.capacity * 16 },
          leaseTtl: '10m',
          maxWait: '2h',
        },
        {
          name: 'default',
          capacity: { cpu: options.lifecycles + 10, memoryGiB: options.lifecycles + 10 },
          leaseTtl: '10m',
          maxWait: '2h',
        },
      ],
    }),
  );
  const catalogFile = join(workDir!, 'hardware-catalog.yaml');
  const catalog = parseYaml(readFileSync(join(root, 'config', 'hardware-catalog.yaml'), 'utf8')) as {
    devices: Record<string, unknown>[];
  };
  writeFileSync(catalogFile, stringifyYaml({ devices: catalog.devices.map((d) => ({ ...d, pool: 'training' })) }));
  const policyFile = join(workDir!, 'policy.yaml');
  writeFileSync(
    policyFile,
    'version: 1\ndefaults:\n  approval:\n    approvers: [alice]\n  signatures:\n    required: false\n' +
      `  training:\n    roots: [bench, examples]\n`,
  );
  server = await startDevServer({ dbFile: join(workDir!, 'temporal', 'temporal.db'), port: await freePort() });
  const gateway = await startGateway('gateway', join(workDir!, 'data', 'artifacts'), logs);
  // One or more worker processes on the same task queues, as a fleet scales its control plane out.
  const workers = Array.from({ length: options.workers }, (_, i) =>
    startNode(
      options.workers === 1 ? 'worker' : `worker-${i + 1}`,
      join(root, 'dist', 'src', 'workers', 'main.js'),
      {
        TEMPORAL_ADDRESS: server!.address,
        TEMPORAL_NAMESPACE: 'default',
        GATEWAY_ADMIN_URL: gateway.admin.url,
        GATEWAY_ADMIN_TOKEN: gateway.admin.token,
        ML_DATA_DIR: join(workDir!, 'data'),
        QUOTA_POOLS_FILE: poolsFile,
        HARDWARE_CATALOG_FILE: catalogFile,
        ML_POLICY_FILE: policyFile,
        TRAINING_CLASSES: 'cpu',
        LOG_LEVEL: 'warn',
      },
      join(logs, options.workers === 1 ? 'worker.log' : `worker-${i + 1}.log`),
    ),
  );
  children.push(...workers);

  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  await registerSearchAttributes(connection, 'default');
  const lifecycles = new LifecycleClient(client);
  const poolState = (name = 'training') => client.workflow.getHandle(quotaPoolWorkflowId(name)).query(poolStateQuery);

  const spec = (i: number) =>
    LifecycleSpec.parse({
      apiVersion: 'ml-lifecycle/v1',
      kind: 'Lifecycle',
      model: `scale-${i}`,
      version: 'v1',
      submittedBy: 'ci@pipelines',
      training: {
        program: join(root, 'bench', 'trainers', 'copy_trainer.py'),
        dataDir: join(root, 'examples', 'churn', 'data'),
        params: { source: prebuilt },
        resources: { cpu: 1, memoryGiB: 2 },
        timeout: 600_000,
      },
      hardware: { architecture: 'tree-ensemble', parameters: 20_000, trainingClasses: ['cpu-4'] },
      approval: { approvers: ['alice'], timeout: 7_200_000 },
      // Zero-length bakes: each stage is judged by one readout of at least 20 predictions.
      rollout: {
        canary: { percent: 10, bake: 1 },
        steps: [{ percent: 100, bake: 1 }],
        analysis: {
          minSamples: 20,
          interval: 1000,
          maxWaitForSamples: 1_800_000,
          // Each stage tests every feature's skew at alpha / features: at the default alpha of 0.001, 1,000 stage
          // readouts of good candidates roll one back by chance. The bench measures orchestration, not that rate.
          featureSkew: { maxPsi: 0.5, alpha: 1e-6 },
        },
      },
      quota: { wait: 3_600_000 },
      monitoring: { enabled: false },
    });

  // The worker polls before anything is submitted: its start (bundle, connections) is not a lifecycle's overhead.
  await waitFor(
    'the worker polling the lifecycle task queue',
    async () => {
      const queue = await connection.workflowService.describeTaskQueue({
        namespace: 'default',
        taskQueue: { name: LIFECYCLE_TASK_QUEUE },
        taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
      });
      return new Set(queue.pollers?.map((p) => p.identity)).size >= options.workers;
    },
    60_000,
  );

  // Submitted at once, as a pipeline's nightly run would.
  const submitted = performance.now();
  const ids = await Promise.all(
    Array.from({ length: options.lifecycles }, async (_, i) => (await lifecycles.start(spec(i))).id),
  );
  const submitSeconds = (performance.now() - submitted) / 1000;
  const startedAt = Date.now();
  console.log(
    `submitted ${ids.length} lifecycles in ${submitSeconds.toFixed(1)} s; pool capacity ${options.capacity}; ` +
      (options.gateOnly ? 'stopping at the gates' : `approving every gate, traffic up to ${options.rate}/s`),
  );

  // The load loop: models whose candidate takes traffic, round robin, paced to the rate in all.
  const inTraffic = new Set<string>();
  const rows = loadRows();
  const loadAgent = new Agent({ connections: 8, keepAliveTimeout: 30_000 });
  let stopLoad = false;
  let sent = 0;
  let failedPredictions = 0;
  const loadLoop = async (lane: number, lanes: number) => {
    const gapMs = (1000 * lanes) / options.rate;
    let turn = lane;
    while (!stopLoad) {
      const models = [...inTraffic];
      if (models.length === 0) {
        await sleep(200);
        continue;
      }
      const began = performance.now();
      const model = models[turn++ % models.length]!;
      const n = sent++;
      if (Number.isNaN(await predict(loadAgent, gateway.url, model, rows[n % rows.length]!, n % 5000)))
        failedPredictions++;
      const left = gapMs - (performance.now() - began);
      if (left > 0) await sleep(left);
    }
  };
  const lanes = Array.from({ length: 4 }, (_, lane) => loadLoop(lane, 4));

  const deadline = startedAt + options.timeout * 60_000;
  // Watched through the server's visibility store (the MlStage search attribute), never by querying 500 workflows:
  // queries are answered by the worker, and asking each lifecycle every 2 s would be a load of its own.
  const mine = new Set(ids);
  const stageOf = new Map<string, string>();
  const gateSeen = new Set<string>();
  const approved = new Set<string>();
  const endedIds = new Set<string>();
  let peakServer = 0;
  let peakWorker = 0;
  let lastReport = 0;
  const done = () => (options.gateOnly ? gateSeen.size : endedIds.size) >= ids.length;
  while (!done() && Date.now() < deadline) {
    await sleep(2000);
    for await (const wf of client.workflow.list({ query: "WorkflowType = 'modelLifecycleWorkflow'" })) {
      if (!mine.has(wf.workflowId)) continue;
      const stage = String(wf.searchAttributes?.MlStage?.[0] ?? '');
      const model = String(wf.searchAttributes?.MlModel?.[0] ?? '');
      stageOf.set(wf.workflowId, stage);
      if (TRAFFIC_STAGES.has(stage)) inTraffic.add(model);
      else inTraffic.delete(model);
      if (stage === 'awaiting-approval' || TRAFFIC_STAGES.has(stage) || ENDED.has(stage)) gateSeen.add(wf.workflowId);
      if (ENDED.has(stage) || wf.status.name !== 'RUNNING') endedIds.add(wf.workflowId);
      if (stage === 'awaiting-approval' && !options.gateOnly && !approved.has(wf.workflowId)) {
        const id = wf.workflowId;
        approved.add(id);
        // Visibility trails the workflow a little: a gate not open yet is approved on a later look.
        void lifecycles.approve(id, { by: 'alice', reason: 'scale benchmark' }).catch(() => approved.delete(id));
      }
    }
    peakServer = Math.max(peakServer, rssMiB(server.process.pid) ?? 0);
    for (const w of workers) peakWorker = Math.max(peakWorker, rssMiB(w.child.pid) ?? 0);
    if (Date.now() - lastReport > 30_000) {
      lastReport = Date.now();
      const pool = await poolState().catch(() => null);
      const promoted = [...stageOf.values()].filter((stage) => stage === 'promoted').length;
      console.log(
        `${((Date.now() - startedAt) / 1000).toFixed(0)} s: ${gateSeen.size} reached their gate, ${inTraffic.size} in ` +
          `traffic, ${promoted} promoted, ${endedIds.size - promoted} ended otherwise; ${sent} predictions; pool: ` +
          `${pool?.leases.length ?? '?'} leases, ${pool?.waiting.length ?? '?'} waiting, ` +
          `${pool?.stats.refusals ?? '?'} refusals, ${pool?.stats.expirations ?? '?'} expired`,
      );
    }
  }
  stopLoad = true;
  await Promise.all(lanes);
  await loadAgent.close();
  const peakGateway = rssMiB(gateway.process.child.pid) ?? 0;
  const pool = await poolState();
  const servingPool = await poolState('default');
  // Each lifecycle's own record, once, at the end: when its gate opened and how it ended.
  const gateAt = new Map<string, number>();
  const ended = new Map<string, { stage: string; at: number; status: LifecycleStatus }>();
  for (const id of ids) {
    const s = await lifecycles.status(id).catch(() => null);
    if (!s) continue;
    const gate = s.events.find((e) => e.stage === 'awaiting-approval');
    if (gate) gateAt.set(id, Date.parse(gate.at));
    if (ENDED.has(s.stage)) {
      const at = s.events.find((e) => e.stage === s.stage)?.at ?? s.updatedAt;
      ended.set(id, { stage: s.stage, at: Date.parse(at), status: s });
    }
  }

  // Orchestration overhead, from each lifecycle's history: per lifecycle and per stage it went through.
  const perLifecycle: number[] = [];
  const perStage: number[] = [];
  const byStage = new Map<string, number[]>();
  const busyBy = new Map<string, { queued: number; ran: number }>();
  let largest = { id: '', events: 0, bytes: 0 };
  for (const id of ids) {
    const handle = client.workflow.getHandle(id);
    const d = await handle.describe();
    const bytes = Number(d.raw.workflowExecutionInfo?.historySizeBytes ?? 0);
    if (bytes > largest.bytes) largest = { id, events: d.historyLength, bytes };
    const end = ended.get(id);
    if (!end) continue;
    const events = (await handle.fetchHistory()).events ?? [];
    const { intervals, byActivity } = busyIntervals(events, WORK);
    for (const [name, { queued, ran }] of byActivity) {
      const sum = busyBy.get(name) ?? { queued: 0, ran: 0 };
      busyBy.set(name, { queued: sum.queued + queued, ran: sum.ran + ran });
    }
    const first = events.length ? eventMs(events[0]!) : NaN;
    const last = events.length ? eventMs(events[events.length - 1]!) : NaN;
    perLifecycle.push(coveredMs(intervals, first, last) / 1000);
    // Stages as the lifecycle's own events mark them: each from its first event to the next stage's first.
    const starts: { stage: string; at: number }[] = [];
    for (const e of end.status.events)
      if (e.stage !== starts[starts.length - 1]?.stage) starts.push({ stage: e.stage, at: Date.parse(e.at) });
    starts.push({ stage: '', at: last });
    for (let i = 0; i + 1 < starts.length; i++) {
      const ms = coveredMs(intervals, starts[i]!.at, starts[i + 1]!.at);
      perStage.push(ms / 1000);
      const list = byStage.get(starts[i]!.stage) ?? [];
      list.push(ms / 1000);
      byStage.set(starts[i]!.stage, list);
    }
  }
  const loadAfterLifecycles = loadavg();
  const gates = sorted([...gateAt.values()].map((at) => (at - startedAt) / 1000));
  const promotedAt = sorted(
    [...ended.values()].filter((e) => e.stage === 'promoted').map((e) => (e.at - startedAt) / 1000),
  );
  const rowOf = (what: string, times: Float64Array) => {
    const lastAt = times.length ? times[times.length - 1]! : 0;
    return [
      what,
      String(times.length),
      times.length ? percentile(times, 50).toFixed(1) : 'n/a',
      times.length ? percentile(times, 99).toFixed(1) : 'n/a',
      lastAt.toFixed(1),
      lastAt > 0 ? ((times.length / lastAt) * 60).toFixed(1) : 'n/a',
    ];
  };
  console.log(`\nlifecycles: ${ids.length} submitted at once`);
  printAligned(
    ['reached', 'count', 'p50 s', 'p99 s', 'max s', 'per minute'],
    [rowOf('their gate', gates), ...(options.gateOnly ? [] : [rowOf('promoted', promotedAt)])],
  );
  const overheadLifecycle = sorted(perLifecycle);
  const overheadStage = sorted(perStage);
  if (overheadLifecycle.length > 0) {
    console.log(
      `orchestration overhead (workflow tasks and activities other than training at work): per lifecycle p50 ` +
        `${percentile(overheadLifecycle, 50).toFixed(2)} s, p99 ${percentile(overheadLifecycle, 99).toFixed(2)} s; ` +
        `per stage (${overheadStage.length} stages) p50 ${percentile(overheadStage, 50).toFixed(3)} s, p99 ` +
        `${percentile(overheadStage, 99).toFixed(3)} s, max ${overheadStage[overheadStage.length - 1]!.toFixed(3)} s`,
    );
    console.log('overhead per stage:');
    printAligned(
      ['stage', 'count', 'p50 s', 'p99 s', 'max s'],
      [...byStage].map(([stage, list]) => {
        const times = sorted(list);
        return [
          stage,
          String(times.length),
          percentile(times, 50).toFixed(3),
          percentile(times, 99).toFixed(3),
          times[times.length - 1]!.toFixed(3),
        ];
      }),
    );
    const n = overheadLifecycle.length;
    const total = [...busyBy.values()].reduce((a, b) => a + b.queued + b.ran, 0);
    const top = [...busyBy].sort((a, b) => b[1].queued + b[1].ran - (a[1].queued + a[1].ran)).slice(0, 8);
    console.log('where it went (summed over lifecycles, overlaps counted each; mean per lifecycle):');
    printAligned(
      ['task', 'queued s', 'ran s', 'share'],
      top.map(([name, t]) => [
        name,
        (t.queued / 1000 / n).toFixed(3),
        (t.ran / 1000 / n).toFixed(3),
        `${((100 * (t.queued + t.ran)) / total).toFixed(0)} %`,
      ]),
    );
  }
  const endedOtherwise = new Map<string, number>();
  for (const e of ended.values())
    if (e.stage !== 'promoted') endedOtherwise.set(e.stage, (endedOtherwise.get(e.stage) ?? 0) + 1);
  if (endedOtherwise.size > 0) {
    const first = [...ended].find(([, e]) => e.stage !== 'promoted');
    console.log(
      `ended otherwise: ${[...endedOtherwise].map(([s, n]) => `${n} ${s}`).join(', ')}; the first, ${first?.[0]}: ` +
        `${first?.[1].status.error?.message ?? 'no error recorded'}`,
    );
  }
  console.log(
    `training pool: ${pool.stats.grants} grants, ${pool.stats.refusals} refusals, ${pool.stats.expirations} leases expired, ` +
      `${pool.leases.length} held, ${pool.waiting.length} waiting at the end, continued as new ${pool.stats.continuedAsNew}×`,
  );
  console.log(
    `serving pool: ${servingPool.stats.grants} grants, ${servingPool.stats.refusals} refusals, ` +
      `${servingPool.stats.expirations} leases expired, ${servingPool.leases.length} held at the end`,
  );
  console.log(
    `predictions sent by the load loop: ${sent}, ${failedPredictions} not answered 200 (a model between stages)`,
  );
  console.log(
    `peak RSS: dev server ${peakServer.toFixed(0)} MiB, worker ${peakWorker.toFixed(0)} MiB` +
      `${options.workers > 1 ? ` (the largest of ${options.workers})` : ''}, gateway ` +
      `${peakGateway.toFixed(0)} MiB; largest history ${largest.id} ${largest.events} events, ` +
      `${(largest.bytes / 1024).toFixed(0)} KiB`,
  );
  const promoted = promotedAt.length;
  const ok =
    gateAt.size === ids.length &&
    pool.stats.expirations === 0 &&
    servingPool.stats.expirations === 0 &&
    (options.gateOnly || promoted === ids.length);
  for (const id of ids)
    await client.workflow
      .getHandle(id)
      .terminate('benchmark over')
      .catch(() => undefined);
  await connection.close();
  await Promise.allSettled(children.splice(0).map((c) => c.stop()));
  await server.stop();
  server = undefined;
  const stat = (times: Float64Array) =>
    times.length ? { p50: percentile(times, 50), p99: percentile(times, 99), max: times[times.length - 1]! } : null;
  return {
    ok,
    json: {
      lifecycles: ids.length,
      capacity: options.capacity,
      workers: options.workers,
      submitSeconds,
      atGate: gateAt.size,
      promoted,
      endedOtherwise: Object.fromEntries(endedOtherwise),
      gateSeconds: stat(gates),
      promotedSeconds: stat(promotedAt),
      overheadSeconds: {
        perLifecycle: stat(overheadLifecycle),
        perStage: stat(overheadStage),
        byStage: Object.fromEntries([...byStage].map(([stage, list]) => [stage, stat(sorted(list))])),
      },
      busyShare: Object.fromEntries([...busyBy].map(([k, v]) => [k, v])),
      pool: pool.stats,
      servingPool: servingPool.stats,
      predictions: { sent, failed: failedPredictions },
      peakRssMiB: { devServer: peakServer, worker: peakWorker, gateway: peakGateway },
      largestHistory: largest,
      loadAfter: loadAfterLifecycles,
    },
  };
}

/** Drives `total` predictions at `concurrency`, each to the model `pick` names; latencies in ms, sorted. */
async function drive(
  agent: Agent,
  url: string,
  rows: Row[],
  total: number,
  concurrency: number,
  pick: (n: number) => string,
): Promise<{ latencies: Float64Array; failed: number; seconds: number }> {
  const latencies: number[] = [];
  let failed = 0;
  let next = 0;
  const began = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const n = next++;
        const ms = await predict(agent, url, pick(n), rows[n % rows.length]!, n % 5000);
        if (Number.isNaN(ms)) failed++;
        else latencies.push(ms);
      }
    }),
  );
  return { latencies: sorted(latencies), failed, seconds: (performance.now() - began) / 1000 };
}

/** The models phase: one gateway, one model then `models` of them; memory per model and latency. */
async function modelsPhase(models: number, prebuilt: string, logs: string) {
  const gateway = await startGateway('gateway-models', workDir!, logs);
  const pid = gateway.process.child.pid;
  const admin = new Agent({ connections: 2 });
  const load = new Agent({ connections: 8, keepAliveTimeout: 30_000 });
  const rows = loadRows();
  const digest = await artifactDigest(prebuilt);
  const deployMs: number[] = [];
  const deploy = async (i: number) => {
    const began = performance.now();
    await adminCall(admin, gateway.admin, 'PUT', `/admin/models/m-${i}/versions/v1`, {
      opId: `bench-deploy-m-${i}`,
      artifactDir: prebuilt,
      artifactDigest: digest,
    });
    await adminCall(admin, gateway.admin, 'PUT', `/admin/models/m-${i}/weights`, {
      opId: `bench-weights-m-${i}`,
      weights: { v1: 100 },
    });
    deployMs.push(performance.now() - began);
  };
  const baseline = rssMiB(pid, 'VmRSS') ?? NaN;
  await deploy(0);
  await drive(load, gateway.url, rows, 3000, 8, () => 'm-0');
  const one = await drive(load, gateway.url, rows, 20_000, 8, () => 'm-0');
  const withOne = rssMiB(pid, 'VmRSS') ?? NaN;
  for (let i = 1; i < models; i++) await deploy(i);
  const loaded = rssMiB(pid, 'VmRSS') ?? NaN;
  let seed = 1;
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  await drive(load, gateway.url, rows, 3000, 8, () => `m-${Math.floor(random() * models)}`);
  const many = await drive(load, gateway.url, rows, 20_000, 8, () => `m-${Math.floor(random() * models)}`);
  const after = rssMiB(pid, 'VmRSS') ?? NaN;
  const peak = rssMiB(pid) ?? NaN;
  await admin.close();
  await load.close();
  const perModel = models > 1 ? (after - withOne) / (models - 1) : NaN;
  const deploys = sorted(deployMs);
  console.log(`\nmodels in one gateway: ${models} (the same artifact under ${models} names)`);
  const row = (count: number, run: Awaited<ReturnType<typeof drive>>, rss: number) => [
    String(count),
    String(run.latencies.length + run.failed),
    (20_000 / run.seconds).toFixed(0),
    fixed(percentile(run.latencies, 50), 2),
    fixed(percentile(run.latencies, 99), 2),
    String(run.failed),
    fixed(rss, 0),
  ];
  printAligned(
    ['models', 'requests', 'req/s', 'p50 ms', 'p99 ms', 'not 200', 'RSS MiB'],
    [row(1, one, withOne), row(models, many, after)],
  );
  console.log(
    `gateway memory: ${fixed(baseline, 0)} MiB with none loaded, ${fixed(loaded, 0)} MiB with ${models} loaded ` +
      `before their traffic, ${fixed(after, 0)} after (peak ${fixed(peak, 0)}): ${fixed(perModel, 2)} MiB per model; ` +
      `deploy (version + weights) p50 ${fixed(percentile(deploys, 50), 1)} ms, p99 ${fixed(percentile(deploys, 99), 1)} ms`,
  );
  const stop = children.splice(children.indexOf(gateway.process), 1);
  await Promise.allSettled(stop.map((c) => c.stop()));
  return {
    ok: one.failed === 0 && many.failed === 0,
    json: {
      models,
      rssMiB: { none: baseline, one: withOne, loaded, afterTraffic: after, peak },
      perModelMiB: perModel,
      deployMs: { p50: percentile(deploys, 50), p99: percentile(deploys, 99) },
      oneModel: { p50: percentile(one.latencies, 50), p99: percentile(one.latencies, 99), rps: 20_000 / one.seconds },
      allModels: {
        p50: percentile(many.latencies, 50),
        p99: percentile(many.latencies, 99),
        rps: 20_000 / many.seconds,
      },
      failed: one.failed + many.failed,
    },
  };
}

async function main(): Promise<number> {
  const options = new Command()
    .option('--lifecycles <n>', 'lifecycles submitted at once (0: none)', wholeNumber('--lifecycles', 0), 500)
    .option('--models <n>', 'models served by one gateway (0: no models phase)', wholeNumber('--models', 0), 200)
    .option('--capacity <n>', 'training leases the pool holds at once', wholeNumber('--capacity', 1), 8)
    .option('--timeout <minutes>', 'how long to wait for every lifecycle', wholeNumber('--timeout', 1), 60)
    .option('--rate <n>', 'predictions per second in all to models in traffic', wholeNumber('--rate', 1), 200)
    .option('--gate-only', 'stop at the deploy gates (no approvals, no traffic)', false)
    .option('--workers <n>', 'worker processes on the same task queues', wholeNumber('--workers', 1), 1)
    .parse(process.argv)
    .opts<Options>();
  const loadBefore = loadavg();
  workDir = mkdtempSync(join(tmpdir(), 'mll-bench-scale-'));
  const logs = join(workDir, 'logs');
  mkdirSync(logs);
  const prebuilt = join(workDir, 'prebuilt');
  await train(prebuilt, {});
  const lifecycles = options.lifecycles > 0 ? await lifecyclesPhase(options, prebuilt, logs) : null;
  const models = options.models > 0 ? await modelsPhase(options.models, prebuilt, logs) : null;
  const loadAfter = loadavg();
  printLoad(loadBefore, loadAfter);
  const ok = (lifecycles?.ok ?? true) && (models?.ok ?? true);
  console.log(
    `BENCH_JSON ${JSON.stringify({
      ...benchFacts('scale', loadBefore, loadAfter),
      lifecycles: lifecycles?.json ?? null,
      models: models?.json ?? null,
      ok,
    })}`,
  );
  return ok ? 0 : 1;
}

async function cleanup(): Promise<void> {
  await Promise.allSettled(children.splice(0).map((c) => c.stop()));
  await server?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
}

runBenchmark('scale benchmark', main, cleanup);
