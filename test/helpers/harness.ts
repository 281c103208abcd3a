import type { Logger } from '@temporalio/common';
import { randomBytes } from 'node:crypto';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, type TelemetryOptions, type Worker } from '@temporalio/worker';
import { inject } from 'vitest';
import { createActivities, type Activities, type ActivityDeps } from '../../src/activities';
import { PolicySource } from '../../src/config/policy';
import { LifecycleClient } from '../../src/client/lifecycle-client';
import { loadSpecFile } from '../../src/client/spec-file';
import { projectRoot } from '../../src/config/paths';
import { trainerPython } from '../../src/config/toolchain';
import { LoadGenerator } from '../../src/dev/load-generator';
import type { LifecycleMetrics } from '../../src/metrics/lifecycle-metrics';
import { createGateway, type Gateway as GatewayServer, type GatewayOptions } from '../../src/serving/server';
import { poolStateQuery } from '../../src/shared/messages';
import { QuotaClient } from '../../src/client/quota-client';
import {
  QuotaPoolsFile,
  quotaPoolWorkflowId,
  type QuotaPoolConfigInput,
  type QuotaPoolState,
} from '../../src/shared/quota';
import type { LifecycleSpec } from '../../src/shared/spec';
import type { Alert, Observation } from '../../src/shared/alerts';
import { ALERT_ROUTER_WORKFLOW_ID, observeSignal } from '../../src/shared/monitoring';
import { LIFECYCLE_TASK_QUEUE } from '../../src/shared/task-queues';
import type { AlertSinkConfig } from '../../src/alerts/sinks';
import type { AlertRouteSpec } from '../../src/config/alert-sinks';
import type { LifecycleStatus } from '../../src/shared/status';
import type { GatewayAdminAccess } from '../../src/targets/target';
import { createWorkers } from '../../src/workers/workers';
import { tempDir } from './temp';

export const ROOT = projectRoot();
/** The policy of test stacks that are not about policy: open and unsigned (see the file). */
export const OPEN_POLICY = join(ROOT, 'test/fixtures/policy/open.yaml');
export const EXAMPLE = join(ROOT, 'examples', 'churn');
/** The test workers' secret (ActivityDeps.workerSecret): a QuotaClient with it owns the leases the workers hold. */
export const WORKER_SECRET = 'test-worker-secret-0123456789abcdef';

let runtimeInstalled = false;
/** The alert router's group wait in tests: short, so assertions do not wait 10 s, but long enough to group. */
export const ALERT_GROUP_WAIT_MS = 300;
const noop = () => undefined;

/**
 * One Runtime per process, quiet: test output is the assertions, not the SDK's chatter. A test that checks log lines
 * passes its capturing `logger`, before anything else installs the Runtime.
 */
/**
 * This test file's dev server: files run side by side in forks, and the fork numbered `VITEST_POOL_ID` (1, 2, …)
 * has a dev server of its own (test/global-setup.ts).
 */
export function temporalAddress(): string {
  const addresses = inject('temporalAddresses');
  const pool = Number(process.env.VITEST_POOL_ID ?? '1');
  const address = addresses[(Number.isInteger(pool) && pool > 0 ? pool - 1 : 0) % addresses.length];
  if (!address) throw new Error('test/global-setup.ts provided no Temporal dev server');
  return address;
}

export function installQuietRuntime(
  logger: Logger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop },
  /** The SDK's metrics endpoint, for a test that scrapes it (test/integration/metrics.test.ts). */
  telemetryOptions?: TelemetryOptions,
): void {
  if (runtimeInstalled) return;
  Runtime.install({ logger, ...(telemetryOptions ? { telemetryOptions } : {}) });
  runtimeInstalled = true;
}

/** A unique suffix for models, task queues and pools of one test. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** A random bearer token, as an operator would generate one (`openssl rand -base64 32`). */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** An in-process gateway on two loopback ports, with fresh admin and labels tokens. */
export interface Gateway {
  server: GatewayServer;
  /** The public listener: predictions, labels (with {@link labelsToken}). */
  url: string;
  /** The admin listener: every /admin/... route (with {@link adminToken}). */
  adminUrl: string;
  adminToken: string;
  labelsToken: string;
  /** How the worker's activities reach it (createActivities, resolveTarget). */
  access: GatewayAdminAccess;
  dataDir: string;
  /** The only folder it loads artifacts from. */
  artifactRoot: string;
  /** `fetch` of its admin API at `path`, with the admin token. */
  admin(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

export async function startGateway(
  options: { dataDir?: string; artifactRoot?: string } & Partial<Omit<GatewayOptions, 'dataDir' | 'artifactRoot'>> = {},
): Promise<Gateway> {
  // Folders made here are removed when the gateway closes; a caller's own are left to it (a restart reuses them).
  const made: string[] = [];
  const temp = (prefix: string) => {
    const dir = tempDir(prefix);
    made.push(dir);
    return dir;
  };
  const dataDir = options.dataDir ?? temp('mll-gw-');
  const artifactRoot = options.artifactRoot ?? temp('mll-gw-art-');
  const removeMade = () => {
    for (const dir of made) rmSync(dir, { recursive: true, force: true });
  };
  const adminToken = options.adminToken ?? newToken();
  const labelsToken = options.labelsToken ?? newToken();
  const server = await createGateway({ ...options, dataDir, artifactRoot, adminToken, labelsToken });
  const loopback = { port: 0, host: '127.0.0.1' };
  const urls = await server.listen({ public: loopback, admin: loopback }).catch(async (err: unknown) => {
    await server.close();
    removeMade();
    throw err;
  });
  const admin = (path: string, init: RequestInit = {}) =>
    fetch(`${urls.admin}${path}`, {
      ...init,
      headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${adminToken}` },
    });
  return {
    server,
    url: urls.public,
    adminUrl: urls.admin,
    adminToken,
    labelsToken,
    access: { url: urls.admin, token: adminToken },
    dataDir,
    artifactRoot,
    admin,
    close: async () => {
      await server.close();
      removeMade();
    },
  };
}

export interface Stack {
  client: Client;
  lifecycles: LifecycleClient;
  gateway: Gateway;
  artifactsDir: string;
  alerts: Alert[];
  address: string;
  /** Starts the in-process workers (idempotent). */
  startWorkers(): Promise<void>;
  stopWorkers(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The real stack for a test file: the shared dev server, an in-process gateway on its own port and data dir, and
 * in-process workers running the real activities (real trainer process, real HTTP).
 */
export async function startStack(
  options: {
    workers?: boolean;
    /** Replaces the default pool (its name may be `default`). */
    pool?: QuotaPoolConfigInput;
    /** More pools besides the default one. */
    pools?: QuotaPoolConfigInput[];
    /** Hardware catalog for the planner (default: config/hardware-catalog.yaml). */
    hardwareCatalogFile?: string;
    /** Approver keyring signed approvals are verified with. */
    approverKeysFile?: string;
    /** The platform policy of the stack's worker (default: test/fixtures/policy/open.yaml, unsigned and open). */
    policyFile?: string;
    /** Alert sinks and routes of the stack's worker (ALERT_SINKS_FILE's). */
    alertSinks?: AlertSinkConfig[];
    alertRoutes?: AlertRouteSpec[];
    /** Prometheus metrics the activities and the lifecycle sink report to, built on the stack's client and pools. */
    metrics?: (deps: { client: Client; quotaPools: QuotaPoolsFile }) => LifecycleMetrics;
    /**
     * The worker's nginx routers (what ML_NGINX_TARGETS gives the worker), read on every activity: a test may fill the
     * map once the stack's admin token and artifact folder exist.
     */
    nginxTargets?: ActivityDeps['nginxTargets'];
  } = {},
): Promise<Stack> {
  installQuietRuntime();
  const address = temporalAddress();
  const client = new Client({ connection: await Connection.connect({ address }) });
  // The workers train into artifactsDir: the gateway's artifact root, as in a deployment.
  const artifactsDir = tempDir('mll-art-');
  const gateway = await startGateway({ artifactRoot: artifactsDir });
  const alerts: Alert[] = [];
  const quotaPools = QuotaPoolsFile.parse({
    pools: [options.pool ?? { name: 'default', capacity: { cpu: 64, memoryGiB: 256 } }, ...(options.pools ?? [])],
  });
  const metrics = options.metrics?.({ client, quotaPools });
  const activities: Activities = createActivities({
    client,
    gateway: gateway.access,
    ...(options.nginxTargets ? { nginxTargets: options.nginxTargets } : {}),
    artifactsDir,
    python: trainerPython(),
    root: ROOT,
    quotaPools,
    alertSink: (a) => void alerts.push(a),
    analysisPollIntervalMs: 250,
    // Every test file's stack uses the same short wait, whichever starts the router.
    alertGroupWaitMs: ALERT_GROUP_WAIT_MS,
    ...(options.alertSinks ? { alertSinks: options.alertSinks, alertRoutes: options.alertRoutes ?? [] } : {}),
    metrics,
    ...(options.hardwareCatalogFile ? { hardwareCatalogFile: options.hardwareCatalogFile } : {}),
    ...(options.approverKeysFile ? { approverKeysFile: options.approverKeysFile } : {}),
    policy: new PolicySource(options.policyFile ?? OPEN_POLICY, options.approverKeysFile, ROOT),
    workerSecret: WORKER_SECRET,
  });
  let workers: Worker[] = [];
  let running: Promise<unknown> | null = null;
  let nativeConnection: NativeConnection | null = null;
  const stack: Stack = {
    client,
    lifecycles: new LifecycleClient(client),
    gateway,
    artifactsDir,
    alerts,
    address,
    async startWorkers() {
      if (running) return;
      nativeConnection = await NativeConnection.connect({ address });
      workers = await createWorkers({
        connection: nativeConnection,
        activities,
        workflowBundle: { codePath: inject('workflowBundlePath') },
        metrics,
      });
      running = Promise.all(workers.map((w) => w.run()));
      // The pool takes this stack's configuration, as a worker does at start.
      await new QuotaClient(client, quotaPools).configureAll();
    },
    async stopWorkers() {
      if (!running) return;
      for (const w of workers) w.shutdown();
      await running;
      running = null;
      await nativeConnection?.close();
    },
    async close() {
      await stack.stopWorkers();
      await gateway.close();
      await client.connection.close();
      rmSync(artifactsDir, { recursive: true, force: true });
    },
  };
  if (options.workers !== false) await stack.startWorkers();
  return stack;
}

/**
 * An example's spec for a test (the churn example's unless `example` names another folder): a unique model name,
 * short bakes and a small minimum sample so a test finishes in seconds.
 */
export function testSpec(
  model: string,
  version: string,
  variant: 'good' | 'bad' = 'good',
  patch: (s: LifecycleSpec) => void = noop,
  example: string = EXAMPLE,
): LifecycleSpec {
  const spec = loadSpecFile(join(example, 'specs', `${variant}.yaml`), { version });
  const out: LifecycleSpec = structuredClone({ ...spec, model });
  out.rollout.canary.bake = 1500;
  out.rollout.steps = [
    { percent: 50, bake: 1000, approval: false },
    { percent: 100, bake: 500, approval: false },
  ];
  out.rollout.analysis.minSamples = 60;
  out.rollout.analysis.maxWaitForSamples = 30_000;
  // Two cores shared by the dev server, worker, trainer, gateway and load generators: a few ms of jitter is normal
  // there and must not read as a latency regression against a sub-millisecond stable version.
  out.rollout.analysis.latencyP99Ms.ratioFloorMs = 10;
  // A serving monitor runs until terminated: only the tests about monitoring start one (and stop it).
  out.monitoring.enabled = false;
  patch(out);
  return out;
}

/** Live traffic for a model on a gateway's public URL (rows of the example's test set). */
export function liveTraffic(gatewayUrl: string, model: string, ratePerSecond = 100): LoadGenerator {
  const load = new LoadGenerator({
    gatewayUrl,
    model,
    rowsCsv: join(EXAMPLE, 'data', 'test.csv'),
    labelColumn: 'churned',
    dropColumns: ['customer_id'],
    ratePerSecond,
  });
  load.start();
  return load;
}

/** Polls a lifecycle's status until `done` holds (real progress, not a fixed sleep). */
export async function waitForStatus(
  lifecycles: LifecycleClient,
  id: string,
  done: (s: LifecycleStatus) => boolean,
  timeoutMs = 90_000,
): Promise<LifecycleStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: LifecycleStatus | undefined;
  while (Date.now() < deadline) {
    try {
      last = await lifecycles.status(id);
      if (done(last)) return last;
    } catch {
      // not started or worker not yet answering queries
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(
    `timed out waiting on ${id}; last status: ${JSON.stringify(
      last && {
        stage: last.stage,
        events: last.events.slice(-8),
        decisions: last.decisions.filter((d) => d.outcome !== 'pass').slice(-5),
      },
    )}`,
  );
}

/** Approves every gate of a lifecycle as it opens, until the lifecycle ends. */
export async function approveAll(
  lifecycles: LifecycleClient,
  id: string,
  by = 'alice',
  timeoutMs = 180_000,
): Promise<LifecycleStatus> {
  for (;;) {
    const s = await waitForStatus(
      lifecycles,
      id,
      (x) => x.pendingGate !== null || ['promoted', 'rolled-back', 'rejected', 'failed'].includes(x.stage),
      timeoutMs,
    );
    if (s.pendingGate === null) return s;
    await lifecycles.approve(id, { by, gate: s.pendingGate.gate, reason: 'test approver' });
  }
}

export async function poolState(client: Client, pool = 'default'): Promise<QuotaPoolState> {
  return client.workflow.getHandle(quotaPoolWorkflowId(pool)).query(poolStateQuery);
}

/**
 * With `RECORD_HISTORIES=1`, writes a finished workflow's history as a replay fixture (`test/fixtures/histories`),
 * which the replay test then runs against every later version of the workflow code.
 */
export async function recordHistory(client: Client, id: string, name: string): Promise<void> {
  if (process.env.RECORD_HISTORIES !== '1') return;
  const history = await client.workflow.getHandle(id).fetchHistory();
  writeFileSync(join(ROOT, 'test', 'fixtures', 'histories', `${name}.json`), historyToJSON(history));
  // Replayed under its own id: signed claims name the lifecycle, and verify only there.
  writeFileSync(join(ROOT, 'test', 'fixtures', 'histories', `${name}.workflow-id`), `${id}\n`);
}

/** Reports monitor checks straight to the alert router (starting it if needed), as a monitor's activity does. */
export async function observe(client: Client, observations: Observation[]): Promise<void> {
  await client.workflow.signalWithStart('alertRouterWorkflow', {
    workflowId: ALERT_ROUTER_WORKFLOW_ID,
    taskQueue: LIFECYCLE_TASK_QUEUE,
    args: [{}],
    signal: observeSignal,
    signalArgs: [observations],
  });
}
