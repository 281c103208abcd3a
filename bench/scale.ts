/**
 * Many lifecycles at once on one dev server: do they all get through provisioning, training and validation to their
 * deploy gate, how fast, and what does it cost the server and the worker?
 *
 * Starts a Temporal dev server (its own SQLite file), the built gateway and the built worker as separate processes,
 * with a quota pool smaller than the crowd (`--capacity` CPUs, one per training lease: reservations wait in the queue)
 * and a trainer that copies a prebuilt artifact (`bench/trainers/copy_trainer.py`: training costs a Python start and a
 * copy; validation still runs for real). Submits `--lifecycles` lifecycles of distinct models at once, each allowed to
 * wait 1 h for quota, then watches until every one waits at its deploy gate or `--timeout` passes. Prints how many
 * got there and when (p50/p99/max from submission to the gate opening, lifecycles per minute), the pool's grants,
 * refusals and expirations (a lease that expires while its holder lives is a failure), the peak RSS of the dev
 * server and the worker (`VmHWM`), and the largest history; then a `BENCH_JSON {...}` line. Exits 1 unless every
 * lifecycle reached its gate with no lease expired.
 *
 * Run: `npm run bench:scale -- --lifecycles 200` (builds first; default 500, capacity 8, timeout 40m).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { Command, InvalidArgumentError } from 'commander';
import { LifecycleClient } from '../src/client/lifecycle-client';
import { projectRoot } from '../src/config/paths';
import { startDevServer, type DevServer } from '../src/dev/dev-server';
import { freePort } from '../src/dev/ports';
import { startNode, type ManagedProcess } from '../src/dev/processes';
import { registerSearchAttributes } from '../src/dev/register-search-attributes';
import { poolStateQuery } from '../src/shared/messages';
import { quotaPoolWorkflowId } from '../src/shared/quota';
import { LifecycleSpec } from '../src/shared/spec';
import { benchFacts, percentile, printAligned, printLoad, runBenchmark } from './report';
import { train } from './gateway-throughput';

const root = projectRoot();
const children: ManagedProcess[] = [];
let server: DevServer | undefined;
let workDir: string | undefined;

const positive = (what: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${what} must be a whole number >= 1`);
  return n;
};

/** Peak resident memory of a process, MiB (`VmHWM`); undefined off Linux or once it exited. */
function peakRssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

async function main(): Promise<number> {
  const options = new Command()
    .option('--lifecycles <n>', 'lifecycles submitted at once', positive('--lifecycles'), 500)
    .option('--capacity <n>', 'training leases the pool holds at once', positive('--capacity'), 8)
    .option('--timeout <minutes>', 'how long to wait for every gate', positive('--timeout'), 40)
    .parse(process.argv)
    .opts<{ lifecycles: number; capacity: number; timeout: number }>();
  const loadBefore = loadavg();
  workDir = mkdtempSync(join(tmpdir(), 'mll-bench-scale-'));
  const prebuilt = join(workDir, 'prebuilt');
  await train(prebuilt, {});

  const poolsFile = join(workDir, 'quota-pools.yaml');
  writeFileSync(
    poolsFile,
    `pools:\n  - name: default\n    capacity: { cpu: ${options.capacity * 4}, memoryGiB: ${options.capacity * 16} }\n` +
      '    leaseTtl: 10m\n    maxWait: 2h\n',
  );
  const policyFile = join(workDir, 'policy.yaml');
  writeFileSync(
    policyFile,
    'version: 1\ndefaults:\n  approval:\n    approvers: [alice]\n  signatures:\n    required: false\n' +
      `  training:\n    roots: [bench, examples]\n`,
  );
  const adminToken = `bench-admin-${Date.now()}-0123456789`;
  const port = await freePort();
  server = await startDevServer({ dbFile: join(workDir, 'temporal', 'temporal.db'), port });
  const gatewayPort = await freePort();
  const gatewayAdminPort = await freePort();
  const logs = join(workDir, 'logs');
  mkdirSync(logs);
  const gateway = startNode(
    'gateway',
    join(root, 'dist', 'src', 'serving', 'main.js'),
    {
      GATEWAY_PORT: String(gatewayPort),
      GATEWAY_ADMIN_PORT: String(gatewayAdminPort),
      GATEWAY_DATA_DIR: join(workDir, 'gateway'),
      GATEWAY_ARTIFACT_ROOT: join(workDir, 'data', 'artifacts'),
      GATEWAY_ADMIN_TOKEN: adminToken,
      LOG_LEVEL: 'warn',
    },
    join(logs, 'gateway.log'),
  );
  children.push(gateway);
  const worker = startNode(
    'worker',
    join(root, 'dist', 'src', 'workers', 'main.js'),
    {
      TEMPORAL_ADDRESS: server.address,
      TEMPORAL_NAMESPACE: 'default',
      GATEWAY_ADMIN_URL: `http://127.0.0.1:${gatewayAdminPort}`,
      GATEWAY_ADMIN_TOKEN: adminToken,
      ML_DATA_DIR: join(workDir, 'data'),
      QUOTA_POOLS_FILE: poolsFile,
      ML_POLICY_FILE: policyFile,
      TRAINING_CLASSES: 'cpu',
      LOG_LEVEL: 'warn',
    },
    join(logs, 'worker.log'),
  );
  children.push(worker);

  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  await registerSearchAttributes(connection, 'default');
  const lifecycles = new LifecycleClient(client);
  const poolState = () => client.workflow.getHandle(quotaPoolWorkflowId('default')).query(poolStateQuery);

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
      rollout: { canary: { percent: 10, bake: 1 }, steps: [{ percent: 100, bake: 1 }] },
      quota: { wait: 3_600_000 },
      monitoring: { enabled: false },
    });

  // Submitted at once, as a pipeline's nightly run would.
  const submitted = performance.now();
  const ids = await Promise.all(
    Array.from({ length: options.lifecycles }, async (_, i) => (await lifecycles.start(spec(i))).id),
  );
  const submitSeconds = (performance.now() - submitted) / 1000;
  const startedAt = Date.now();
  console.log(`submitted ${ids.length} lifecycles in ${submitSeconds.toFixed(1)} s; pool capacity ${options.capacity}`);

  const deadline = startedAt + options.timeout * 60_000;
  const gateAt = new Map<string, number>();
  const ended = new Map<string, string>();
  let peakServer = 0;
  let peakWorker = 0;
  let lastReport = 0;
  while (gateAt.size + ended.size < ids.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5000));
    for (const id of ids) {
      if (gateAt.has(id) || ended.has(id)) continue;
      const s = await lifecycles.status(id).catch(() => null);
      if (!s) continue;
      if (s.pendingGate) gateAt.set(id, Date.parse(s.pendingGate.openedAt));
      else if (['failed', 'rejected', 'rolled-back', 'promoted'].includes(s.stage)) {
        ended.set(id, s.stage);
        if (ended.size === 1) console.log(`${id} ended ${s.stage}: ${s.error?.message ?? ''}`);
      }
    }
    peakServer = Math.max(peakServer, peakRssMiB(server.process.pid) ?? 0);
    peakWorker = Math.max(peakWorker, peakRssMiB(worker.child.pid) ?? 0);
    if (Date.now() - lastReport > 30_000) {
      lastReport = Date.now();
      const pool = await poolState().catch(() => null);
      console.log(
        `${((Date.now() - startedAt) / 1000).toFixed(0)} s: ${gateAt.size} at their gate, ${ended.size} ended; pool: ` +
          `${pool?.leases.length ?? '?'} leases, ${pool?.waiting.length ?? '?'} waiting, ` +
          `${pool?.stats.refusals ?? '?'} refusals, ${pool?.stats.expirations ?? '?'} expired`,
      );
    }
  }
  const pool = await poolState();
  const times = Float64Array.from([...gateAt.values()].map((at) => (at - startedAt) / 1000)).sort();
  let largest = { id: '', events: 0, bytes: 0 };
  for (const id of ids) {
    const d = await client.workflow.getHandle(id).describe();
    const bytes = Number(d.raw.workflowExecutionInfo?.historySizeBytes ?? 0);
    if (bytes > largest.bytes) largest = { id, events: d.historyLength, bytes };
  }
  const loadAfter = loadavg();
  const lastGate = times.length ? times[times.length - 1]! : 0;
  printAligned(
    ['lifecycles', 'at their gate', 'ended early', 'p50 s', 'p99 s', 'max s', 'per minute'],
    [
      [
        String(ids.length),
        String(gateAt.size),
        String(ended.size),
        times.length ? percentile(times, 50).toFixed(1) : 'n/a',
        times.length ? percentile(times, 99).toFixed(1) : 'n/a',
        lastGate.toFixed(1),
        lastGate > 0 ? ((gateAt.size / lastGate) * 60).toFixed(1) : 'n/a',
      ],
    ],
  );
  console.log(
    `pool: ${pool.stats.grants} grants, ${pool.stats.refusals} refusals, ${pool.stats.expirations} leases expired, ` +
      `${pool.leases.length} held, ${pool.waiting.length} waiting at the end, continued as new ${pool.stats.continuedAsNew}×`,
  );
  console.log(
    `peak RSS: dev server ${peakServer.toFixed(0)} MiB, worker ${peakWorker.toFixed(0)} MiB; largest history ` +
      `${largest.id} ${largest.events} events, ${(largest.bytes / 1024).toFixed(0)} KiB`,
  );
  if (ended.size > 0) {
    const why = new Map<string, number>();
    for (const stage of ended.values()) why.set(stage, (why.get(stage) ?? 0) + 1);
    console.log(`ended before their gate: ${[...why].map(([s, n]) => `${n} ${s}`).join(', ')}`);
  }
  printLoad(loadBefore, loadAfter);
  const ok = gateAt.size === ids.length && pool.stats.expirations === 0;
  console.log(
    `BENCH_JSON ${JSON.stringify({
      ...benchFacts('scale', loadBefore, loadAfter),
      lifecycles: ids.length,
      capacity: options.capacity,
      submitSeconds,
      atGate: gateAt.size,
      endedEarly: Object.fromEntries(
        [...ended.values()].map((s) => [s, [...ended.values()].filter((x) => x === s).length]),
      ),
      gateSeconds: times.length ? { p50: percentile(times, 50), p99: percentile(times, 99), max: lastGate } : null,
      pool: pool.stats,
      peakRssMiB: { devServer: peakServer, worker: peakWorker },
      largestHistory: largest,
      ok,
    })}`,
  );
  for (const id of ids)
    await client.workflow
      .getHandle(id)
      .terminate('benchmark over')
      .catch(() => undefined);
  await connection.close();
  return ok ? 0 : 1;
}

async function cleanup(): Promise<void> {
  await Promise.allSettled(children.splice(0).map((c) => c.stop()));
  await server?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
}

runBenchmark('scale benchmark', main, cleanup);
