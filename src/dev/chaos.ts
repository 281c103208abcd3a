import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { LifecycleClient } from '../client/lifecycle-client';
import { loadSpecFile } from '../client/spec-file';
import { projectRoot } from '../config/paths';
import type { AdminOp, ModelRouting } from '../shared/gateway-api';
import { poolStateQuery, registryStateQuery } from '../shared/messages';
import { own } from '../shared/own';
import { quotaPoolWorkflowId, type QuotaPoolState } from '../shared/quota';
import { registryWorkflowId, type RegistryState } from '../shared/registry';
import type { LifecycleSpec } from '../shared/spec';
import { TERMINAL_STAGES, type LifecycleStatus } from '../shared/status';
import { startDevServer, type DevServer } from './dev-server';
import { LoadGenerator } from './load-generator';
import { freePort, waitFor } from './ports';
import { startNode, type ManagedProcess } from './processes';

/** The processes a chaos case kills with SIGKILL, one at a time. */
export const CHAOS_PROCESSES = ['worker', 'gateway', 'server'] as const;
export type ChaosProcess = (typeof CHAOS_PROCESSES)[number];

/**
 * Where a case kills: each stage of a lifecycle, each ramp step, the post-promotion guard, and a rollback in progress
 * (triggered by an operator's abort during the canary, the kill sent right after the abort is acknowledged).
 */
export const KILL_POINTS = [
  'provisioning',
  'training',
  'validating',
  'awaiting-approval',
  'staging',
  'canary',
  'ramping:50',
  'ramping:100',
  'guarding',
  'rolling-back',
] as const;
export type KillPoint = (typeof KILL_POINTS)[number];

export interface ChaosCase {
  kill: ChaosProcess;
  at: KillPoint;
  /** A good candidate must end promoted; a bad one (skewed predictions) rolled back on its failed check. */
  candidate: 'good' | 'bad';
  /** How long the killed process stays down before it is restarted (default: restarted at once). */
  downMs?: number;
  /** The spec's `rollout.rollback.stuckAfter` (default the spec's). */
  stuckAfterMs?: number;
  /** The spec's `rollout.rollback.giveUpAfter` (default the spec's). */
  giveUpAfterMs?: number;
  /**
   * On a stack of two workers and two gateway replicas: which of the two is killed (default 0). The other one carries
   * on meanwhile.
   */
  replica?: 0 | 1;
  /**
   * Restart the killed process only once the lifecycle has ended (default: after `downMs`): the case then shows that
   * the rest of the stack finishes the rollout without it. Only meaningful where another one of its kind runs.
   */
  restartAfterEnd?: boolean;
}

export interface ChaosStackOptions {
  /** Worker processes, each a full worker on the same task queues (default 1). */
  workers?: 1 | 2;
  /**
   * Gateway replicas (default 1): the workers' GATEWAY_ADMIN_URL lists every replica's admin URL, and the load
   * generator spreads predictions over their public URLs.
   */
  gateways?: 1 | 2;
}

export interface Invariant {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ChaosOutcome {
  case: ChaosCase;
  model: string;
  /** The lifecycle's stage in the last status read before the kill. */
  stageAtKill: string;
  /** The stage it ended in, and why. */
  stage: string;
  reason: string | null;
  /** Restart of the killed process → the lifecycle's view of its traffic and the gateway's weights agree again. */
  consistentMs: number;
  /** Restart → the lifecycle ended. */
  endedMs: number;
  invariants: Invariant[];
  /** Predictions that failed while the case ran (a killed gateway fails its requests until it is back). */
  failedRequests: number;
  /** Alerts the worker logged for this model while the case ran (`kind severity`), in order. */
  alerts: string[];
  /** Of those, how many by the gateway replica (public URL) that was asked. */
  failedByGateway: Record<string, number>;
}

const ROOT = projectRoot();
const EXAMPLE = join(ROOT, 'examples', 'churn');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A whole stack of real processes on their own ports and data: a Temporal dev server persisting to SQLite, the
 * serving gateway and the worker, each killed with SIGKILL and restarted on the same state, plus live traffic.
 */
export class ChaosStack {
  readonly dir = mkdtempSync(join(tmpdir(), 'mll-chaos-'));
  server!: DevServer;
  /** The gateway replicas' processes, by replica (one unless the stack was started with two). */
  readonly gatewayProcs: ManagedProcess[] = [];
  /** The worker processes, by index. */
  readonly workers: ManagedProcess[] = [];
  client!: Client;
  lifecycles!: LifecycleClient;
  /** The first gateway replica's public URL (predictions); its admin API is on {@link gatewayAdminUrl}. */
  gatewayUrl = '';
  gatewayAdminUrl = '';
  /** Every replica's public and admin URL, in replica order. */
  readonly gatewayUrls: string[] = [];
  readonly gatewayAdminUrls: string[] = [];
  /** A fresh admin token per stack, given to the gateway and the worker through their environment only. */
  private readonly adminToken = randomBytes(32).toString('base64url');
  private serverPort = 0;
  private readonly gatewayPorts: { public: number; admin: number }[] = [];
  private restarts = 0;
  /** Which start of each worker runs now (for its process name). */
  private readonly workerStarts: number[] = [];

  static async start(options: ChaosStackOptions = {}): Promise<ChaosStack> {
    const stack = new ChaosStack();
    stack.serverPort = await freePort();
    for (let i = 0; i < (options.gateways ?? 1); i++) {
      const ports = { public: await freePort(), admin: await freePort() };
      stack.gatewayPorts.push(ports);
      stack.gatewayUrls.push(`http://127.0.0.1:${ports.public}`);
      stack.gatewayAdminUrls.push(`http://127.0.0.1:${ports.admin}`);
    }
    stack.gatewayUrl = stack.gatewayUrls[0]!;
    stack.gatewayAdminUrl = stack.gatewayAdminUrls[0]!;
    try {
      await stack.startServer();
      await Promise.all(stack.gatewayPorts.map((_, i) => stack.startGateway(i)));
      for (let i = 0; i < (options.workers ?? 1); i++) stack.startWorker(i);
      stack.client = new Client({ connection: await Connection.connect({ address: stack.address }) });
      stack.lifecycles = new LifecycleClient(stack.client);
    } catch (err) {
      // Nothing of a stack that did not start outlives it: no caller holds it to close.
      await stack.close().catch(() => undefined);
      throw err;
    }
    return stack;
  }

  get address(): string {
    return `127.0.0.1:${this.serverPort}`;
  }

  /** The first gateway replica's process. */
  get gateway(): ManagedProcess {
    return this.gatewayProcs[0]!;
  }

  /** The first worker's process. */
  get worker(): ManagedProcess {
    return this.workers[0]!;
  }

  get workerLog(): string {
    return this.workerLogOf(0);
  }

  /** The log of worker `i` (the first keeps the name `worker.log`). */
  workerLogOf(i: number): string {
    return join(this.dir, i === 0 ? 'worker.log' : `worker-${i}.log`);
  }

  /** Every worker's log. */
  get workerLogs(): string[] {
    return this.workers.map((_, i) => this.workerLogOf(i));
  }

  private async startServer(): Promise<void> {
    this.server = await startDevServer({ port: this.serverPort, dbFile: join(this.dir, 'temporal.db') });
  }

  /** Replica `i` on its ports and its own data folder (the first keeps the names of a one-gateway stack). */
  private async startGateway(i = 0): Promise<void> {
    const suffix = i === 0 ? '' : `-${i}`;
    const ports = this.gatewayPorts[i]!;
    this.gatewayProcs[i] = startNode(
      `gateway${suffix}`,
      join(ROOT, 'dist', 'src', 'serving', 'main.js'),
      {
        GATEWAY_PORT: String(ports.public),
        GATEWAY_ADMIN_PORT: String(ports.admin),
        GATEWAY_DATA_DIR: join(this.dir, `gateway${suffix}`),
        // The worker's ML_DATA_DIR/artifacts: where it trains, and so the one folder the gateway loads from.
        GATEWAY_ARTIFACT_ROOT: join(this.dir, 'data', 'artifacts'),
        GATEWAY_ADMIN_TOKEN: this.adminToken,
        LOG_LEVEL: 'warn',
      },
      join(this.dir, `gateway${suffix}.log`),
    );
    const url = this.gatewayUrls[i]!;
    // Both listeners up and the routing restored: an admin read answers only then.
    await waitFor(
      `gateway on ${url}`,
      async () => (await fetch(`${url}/healthz`)).ok && (await this.admin('/admin/models', i)).ok,
      30_000,
      100,
    );
  }

  /**
   * The worker's pools: room for every case's production version (each keeps its serving lease) and the training
   * and serving leases of the case running, so that a long matrix never runs out of quota.
   */
  private get poolsFile(): string {
    const file = join(this.dir, 'quota-pools.yaml');
    writeFileSync(
      file,
      'pools:\n  - name: default\n    capacity: { cpu: 4096, memoryGiB: 16384 }\n    leaseTtl: 10m\n',
    );
    return file;
  }

  /**
   * The worker's platform policy: the chaos approver may approve unsigned. What is under test here is what survives
   * a kill, not who may approve (test/e2e/security.test.ts is about that).
   */
  private get policyFile(): string {
    const file = join(this.dir, 'policy.yaml');
    writeFileSync(
      file,
      [
        'version: 1',
        'defaults:',
        '  approval: { approvers: [alice, bob] }',
        '  signatures: { required: false }',
        "  training: { roots: ['.'] }",
        'quota: { operators: [alice] }',
        '',
      ].join('\n'),
    );
    return file;
  }

  /**
   * Worker `i`. Workers share ML_DATA_DIR (one machine's volume: the artifacts one trains are the ones another deploys,
   * and the worker secret is the same for all), and name every gateway replica.
   */
  private startWorker(i = 0): void {
    this.workerStarts[i] = (this.workerStarts[i] ?? 0) + 1;
    this.restarts++;
    this.workers[i] = startNode(
      i === 0 ? `worker-${this.workerStarts[i]}` : `worker${i}-${this.workerStarts[i]}`,
      join(ROOT, 'dist', 'src', 'workers', 'main.js'),
      {
        TEMPORAL_ADDRESS: this.address,
        GATEWAY_ADMIN_URL: this.gatewayAdminUrls.join(','),
        GATEWAY_ADMIN_TOKEN: this.adminToken,
        ML_DATA_DIR: join(this.dir, 'data'),
        ALERT_GROUP_WAIT: '300ms',
        QUOTA_POOLS_FILE: this.poolsFile,
        ML_POLICY_FILE: this.policyFile,
        LOG_LEVEL: 'warn',
      },
      this.workerLogOf(i),
    );
  }

  /** Whether each worker runs, and the last lines of its log: what a stuck case reports. */
  workerState(lines = 25): string {
    return this.workers
      .map((worker, i) => {
        const child = worker.child;
        const state =
          child.exitCode !== null || child.signalCode !== null
            ? `exited (${child.exitCode ?? child.signalCode})`
            : `running (pid ${child.pid})`;
        let tail = '';
        try {
          tail = readFileSync(this.workerLogOf(i), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
        } catch {
          tail = '(no log)';
        }
        return `worker ${i} (start ${this.workerStarts[i]}): ${state}; its log ends:\n${tail}`;
      })
      .join('\n');
  }

  /** SIGKILL, waiting until the process is gone; `replica` picks the worker or gateway replica (default the first). */
  async kill(which: ChaosProcess, replica = 0): Promise<void> {
    const child =
      which === 'server'
        ? this.server.process
        : which === 'gateway'
          ? this.gatewayProcs[replica]!.child
          : this.workers[replica]!.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }

  /** Starts the process again on the same ports and state. */
  async restart(which: ChaosProcess, replica = 0): Promise<void> {
    if (which === 'server') await this.startServer();
    else if (which === 'gateway') await this.startGateway(replica);
    else this.startWorker(replica);
  }

  traffic(model: string, ratePerSecond = 50): LoadGenerator {
    const load = new LoadGenerator({
      gatewayUrl: this.gatewayUrl,
      ...(this.gatewayUrls.length > 1 ? { gatewayUrls: this.gatewayUrls } : {}),
      model,
      rowsCsv: join(EXAMPLE, 'data', 'test.csv'),
      labelColumn: 'churned',
      dropColumns: ['customer_id'],
      ratePerSecond,
    });
    load.start();
    return load;
  }

  /** A GET of a replica's admin API (default the first), with the stack's token. */
  private admin(path: string, replica = 0): Promise<Response> {
    return fetch(`${this.gatewayAdminUrls[replica]}${path}`, {
      headers: { authorization: `Bearer ${this.adminToken}` },
    });
  }

  async routing(model: string, replica = 0): Promise<ModelRouting | null> {
    const all = (await (await this.admin('/admin/models', replica)).json()) as ModelRouting[];
    return all.find((r) => r.model === model) ?? null;
  }

  async ops(model: string, replica = 0): Promise<(AdminOp & { applied?: boolean })[]> {
    return (await (await this.admin(`/admin/ops?model=${encodeURIComponent(model)}`, replica)).json()) as never;
  }

  /**
   * The version each replica routes each of `users` user ids to (one prediction per user and replica, user i with row
   * i of the example's test set); null where the replica did not answer with a prediction.
   */
  async routedVersions(model: string, users: readonly string[]): Promise<(string | null)[][]> {
    // A row per user from the test set: the probes are live traffic the stage judges, so they must look like it.
    const rows = exampleRows();
    return Promise.all(
      this.gatewayUrls.map((url) =>
        Promise.all(
          users.map(async (userId, u) => {
            const row = rows[u % rows.length];
            try {
              const res = await fetch(`${url}/v1/models/${encodeURIComponent(model)}/predict`, {
                method: 'POST',
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify({ userId, features: row }),
              });
              const body = (await res.json()) as { version?: string };
              return res.ok && typeof body.version === 'string' ? body.version : null;
            } catch {
              return null;
            }
          }),
        ),
      ),
    );
  }

  async registry(model: string): Promise<RegistryState> {
    return this.client.workflow.getHandle(registryWorkflowId(model)).query(registryStateQuery);
  }

  async pool(name = 'default'): Promise<QuotaPoolState> {
    return this.client.workflow.getHandle(quotaPoolWorkflowId(name)).query(poolStateQuery);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop()));
    await Promise.all(this.gatewayProcs.map((g) => g.stop()));
    await this.client?.connection.close();
    await this.server?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

let exampleRowsCache: Record<string, number | string>[] | null = null;

/** The rows of the example's test set, as the load generator sends them (label and identifier dropped). */
function exampleRows(): Record<string, number | string>[] {
  if (exampleRowsCache) return exampleRowsCache;
  const [header = '', ...lines] = readFileSync(join(EXAMPLE, 'data', 'test.csv'), 'utf8')
    .trim()
    .split('\n');
  const names = header.trim().split(',');
  const cell = (v: string): number | string => (v !== '' && Number.isFinite(Number(v)) ? Number(v) : v);
  exampleRowsCache = lines.map((line) => {
    const values = line.trim().split(',');
    return Object.fromEntries(
      names.map((n, i) => [n, cell(values[i] ?? '')] as const).filter(([n]) => n !== 'churned' && n !== 'customer_id'),
    );
  });
  return exampleRowsCache;
}

/** The example's spec with short bakes, shaped for the kill point (a staging route, a guard window). */
export function chaosSpec(
  model: string,
  version: string,
  c: Pick<ChaosCase, 'at' | 'candidate' | 'stuckAfterMs' | 'giveUpAfterMs'>,
) {
  const spec = loadSpecFile(join(EXAMPLE, 'specs', `${c.candidate}.yaml`), { version });
  const out: LifecycleSpec = structuredClone({ ...spec, model });
  out.rollout.canary.bake = c.at === 'canary' || c.at === 'rolling-back' ? 6000 : 3000;
  out.rollout.steps = [
    { percent: 50, bake: c.at === 'ramping:50' ? 6000 : 3000, approval: false },
    { percent: 100, bake: c.at === 'ramping:100' ? 5000 : 1500, approval: false },
  ];
  // Samples every 2 s: a kill lands between samples, and a dead gateway is noticed within seconds.
  out.rollout.analysis.interval = 2000;
  out.rollout.analysis.minSamples = 60;
  out.rollout.analysis.maxWaitForSamples = 60_000;
  out.rollout.analysis.latencyP99Ms.ratioFloorMs = 10;
  // Every process of the case shares two cores: a worker replaying its lifecycles after a kill, or starting again (its
  // workflow bundle), starves the gateways for up to a second, and a sample's p99 shows it (967 ms measured once, a
  // good candidate rolled back). Such a stall delays both versions' requests, so the check relative to the stable
  // version stays as the spec has it; the absolute bound is for a machine whose gateways have cores of their own.
  out.rollout.analysis.latencyP99Ms.max = 2000;
  if (c.at === 'staging') out.deployment.staging = { bake: 4000, gate: false };
  if (c.at === 'guarding') out.rollout.postPromotion = { window: 6000 };
  if (c.stuckAfterMs !== undefined) out.rollout.rollback.stuckAfter = c.stuckAfterMs;
  if (c.giveUpAfterMs !== undefined) out.rollout.rollback.giveUpAfter = c.giveUpAfterMs;
  out.monitoring.enabled = false;
  return out;
}

const ended = (s: LifecycleStatus | null) => s !== null && TERMINAL_STAGES.includes(s.stage);

/** Whether the status read now shows the lifecycle at the kill point. */
function atKillPoint(s: LifecycleStatus, at: KillPoint): boolean {
  if (at === 'awaiting-approval') return s.pendingGate !== null;
  if (at === 'ramping:50') return s.stage === 'ramping' && s.trafficPercent === 50;
  if (at === 'ramping:100') return s.stage === 'ramping' && s.trafficPercent === 100;
  if (at === 'rolling-back') return s.stage === 'canary';
  return s.stage === at;
}

/**
 * One chaos case on a running stack: a stable v1 promoted under live traffic, then v2 (good or bad) started; at the
 * kill point the process is killed, left down for `downMs`, restarted; the lifecycle is driven to its end (gates
 * approved as they open) and the four invariants are checked.
 */
export async function runChaosCase(
  stack: ChaosStack,
  c: ChaosCase,
  name: string,
  budgetMs = 60 * 60_000,
): Promise<ChaosOutcome> {
  const model = name;
  const { lifecycles } = stack;
  // Every phase waits at most its own limit and what is left of the case's budget, so that a stuck case fails with
  // the phase it was in, the lifecycle's last status and the worker's last words, not with a bare test timeout.
  const caseDeadline = Date.now() + budgetMs;
  const within = (limitMs: number) => Math.max(0, Math.min(limitMs, caseDeadline - Date.now()));
  const load = stack.traffic(model);
  // Staging serves a route of its own: it needs traffic of its own to be judged.
  const staging = c.at === 'staging' ? stack.traffic(`${model}-staging`) : null;
  const logStart = stack.workerLogs.map((f) => safeSize(f));
  const replica = c.replica ?? 0;
  const replicated = stack.gatewayUrls.length > 1;
  const probeUsers = Array.from({ length: 200 }, (_, i) => `probe-${i}`);
  const extra: Invariant[] = [];
  try {
    const v1 = await lifecycles.start(chaosSpec(model, 'v1', { at: 'provisioning', candidate: 'good' }));
    const first = await drive(stack, v1.id, () => false, within(180_000), 'driving v1 to promotion');
    if (first.stage !== 'promoted') throw new Error(`v1 ended ${first.stage}: ${first.error?.message}`);
    const failedBefore = load.stats.failed;
    const failedBeforeBy = load.stats.failedByGateway;

    const { id } = await lifecycles.start(chaosSpec(model, 'v2', c));
    const atKill = await drive(stack, id, (s) => atKillPoint(s, c.at), within(180_000), `driving v2 to ${c.at}`);
    if (ended(atKill)) throw new Error(`v2 ended ${atKill.stage} before reaching ${c.at}`);
    if (c.at === 'rolling-back') {
      await lifecycles.abort(id, { by: 'alice', reason: 'chaos: roll back now' });
    }
    if (replicated) {
      // Mid-ramp, every replica routes every user the same way (same table, same deploy order, same hash).
      extra.push(stickyInvariant('sticky at kill', await stack.routedVersions(model, probeUsers), probeUsers));
    }
    await stack.kill(c.kill, replica);
    if (c.downMs) extra.push(await rampHeld(stack, id, atKill.trafficPercent, c.downMs));
    if (!c.restartAfterEnd) await stack.restart(c.kill, replica);
    const restarted = Date.now();
    const consistentMs = await timeToConsistent(stack, id, model, within(15 * 60_000));
    const end = await drive(
      stack,
      id,
      () => false,
      within(15 * 60_000),
      `driving v2 to its end after the ${c.kill} ${c.restartAfterEnd ? 'kill' : 'restart'}`,
    );
    const endedMs = Date.now() - restarted;
    if (c.restartAfterEnd) await stack.restart(c.kill, replica);
    if (replicated) {
      extra.push(stickyInvariant('sticky at end', await stack.routedVersions(model, probeUsers), probeUsers));
    }
    await load.stop();
    // The alert router delivers after its group wait: give the last alert of the case time to reach the log.
    await sleep(2000);
    return {
      case: c,
      model,
      stageAtKill: atKill.stage,
      stage: end.stage,
      reason: end.error?.message ?? null,
      consistentMs,
      endedMs,
      invariants: [...(await checkInvariants(stack, c, model, id, end)), ...extra],
      failedRequests: load.stats.failed - failedBefore,
      alerts: stack.workerLogs.flatMap((f, i) => alertsSince(f, logStart[i] ?? 0, model)),
      failedByGateway: Object.fromEntries(
        Object.entries(load.stats.failedByGateway).map(([url, n]) => [url, n - (own(failedBeforeBy, url) ?? 0)]),
      ),
    };
  } finally {
    await load.stop();
    await staging?.stop();
  }
}

/**
 * Reads the lifecycle's status until `until` holds or it ends, approving every gate that opens (as alice); errors
 * while a process is down are waited out.
 */
async function drive(
  stack: ChaosStack,
  id: string,
  until: (s: LifecycleStatus) => boolean,
  timeoutMs: number,
  phase: string,
): Promise<LifecycleStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: LifecycleStatus | null = null;
  let lastError = '';
  const approved = new Set<string>();
  while (Date.now() < deadline) {
    try {
      last = await stack.lifecycles.status(id);
      if (until(last) || ended(last)) return last;
      const gate = last.pendingGate;
      const key = gate ? `${gate.gate}:${gate.opening ?? ''}` : '';
      if (gate && !approved.has(key)) {
        await stack.lifecycles.approve(id, { by: 'alice', gate: gate.gate, reason: 'chaos approver' });
        approved.add(key);
      }
    } catch (err) {
      // a process is down, or the worker has not picked the workflow up yet
      lastError = err instanceof Error ? err.message : String(err);
    }
    await sleep(50);
  }
  throw new Error(
    `${phase}: ${id} did not get there in ${timeoutMs} ms; last status ` +
      `${JSON.stringify(
        last && {
          stage: last.stage,
          trafficPercent: last.trafficPercent,
          events: last.events.slice(-5),
          // What held it: the checks of the last readout that were not a pass.
          unsettled: last.decisions.filter((d) => d.outcome !== 'pass').slice(-6),
        },
      )}` +
      `${lastError ? `; last error: ${lastError}` : ''}\n${stack.workerState()}`,
  );
}

/** Polls until the lifecycle answers and its traffic share of the candidate is the gateway's weight of it. */
async function timeToConsistent(stack: ChaosStack, id: string, model: string, timeoutMs: number): Promise<number> {
  const started = Date.now();
  let seen = '';
  for (;;) {
    try {
      const s = await stack.lifecycles.status(id);
      const weights = await Promise.all(
        stack.gatewayUrls.map(async (_, i) => (await stack.routing(model, i))?.weights['v2'] ?? 0),
      );
      seen = `lifecycle ${s.stage} at ${s.trafficPercent}%, gateway weight of v2 ${weights.join(' / ')}`;
      const agree = (w: number) => w === s.trafficPercent || (ended(s) && w === (s.stage === 'promoted' ? 100 : 0));
      if (weights.every(agree)) return Date.now() - started;
    } catch (err) {
      seen = `not answering: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (Date.now() - started > timeoutMs) {
      throw new Error(
        `lifecycle ${id} and the gateway did not agree within ${timeoutMs} ms (last: ${seen || 'nothing read'})\n` +
          stack.workerState(),
      );
    }
    await sleep(100);
  }
}

/**
 * The four invariants: the right outcome for the right reason; the gateway's weights are the registry's production
 * version at 100% (and nothing else loaded); the pool holds exactly the production version's serving lease; no step
 * ran twice with effect (one deploy of the candidate, each of the lifecycle's steps applied once, one promotion).
 */
async function checkInvariants(
  stack: ChaosStack,
  c: ChaosCase,
  model: string,
  id: string,
  end: LifecycleStatus,
): Promise<Invariant[]> {
  const out: Invariant[] = [];
  const check = (name: string, ok: boolean, detail: string) => out.push({ name, ok, detail });
  // An outage only when the one gateway was down: with replicas the others serve and the rollout waits.
  const outage = (c.downMs ?? 0) > 0 && c.kill === 'gateway' && stack.gatewayUrls.length === 1;
  const expected =
    c.at === 'rolling-back' || outage ? 'rolled-back' : c.candidate === 'good' ? 'promoted' : 'rolled-back';
  const reason = end.error?.message ?? '';
  const rightReason =
    expected === 'promoted'
      ? end.error === null
      : c.at === 'rolling-back'
        ? reason.includes('aborted by alice')
        : outage
          ? reason.includes('could not go on')
          : /failed: .*predictionDrift/.test(reason);
  check('outcome', end.stage === expected && rightReason, `${end.stage} (${reason || 'no error'}), wanted ${expected}`);

  const registry = await stack.registry(model);
  const production = registry.production?.version ?? null;
  const routing = await stack.routing(model);
  const weights = routing?.weights ?? {};
  const loaded = (routing?.versions ?? []).map((v) => v.version).sort();
  check(
    'traffic',
    production !== null &&
      JSON.stringify(weights) === JSON.stringify({ [production]: 100 }) &&
      loaded.join() === production,
    `registry production ${production}; gateway weights ${JSON.stringify(weights)}, loaded [${loaded.join(', ')}]` +
      `; traffic lease ${registry.traffic ? registry.traffic.workflowId : 'free'}`,
  );
  const staging = await stack.routing(`${model}-staging`);
  if (staging && Object.values(staging.weights).some((w) => w > 0)) {
    check('traffic', false, `staging route still routes ${JSON.stringify(staging.weights)}`);
  }
  if (registry.traffic) check('traffic', false, `traffic lease still held by ${registry.traffic.workflowId}`);

  const leases = (await stack.pool()).leases.filter((l) => l.leaseId.includes(model)).map((l) => l.leaseId);
  check(
    'quota',
    JSON.stringify(leases) === JSON.stringify([`serve:${model}:${production}`]),
    `leases [${leases.join(', ')}], wanted [serve:${model}:${production}]`,
  );

  const promotions = registry.history.filter((h) => h.lifecycleId === id && h.kind !== 'rollback').length;
  const wantPromotions = expected === 'promoted' || c.at === 'guarding' ? 1 : 0;
  // Every replica applied every step of the lifecycle once, and the same steps.
  const stepsOf: string[] = [];
  for (let i = 0; i < stack.gatewayUrls.length; i++) {
    const all = await stack.ops(model, i);
    const ops = all.filter((o) => o.opId.startsWith(`${id}@`) && o.applied !== false);
    const steps = ops.map((o) => o.opId.slice(o.opId.indexOf(':', id.length) + 1));
    const twice = steps.filter((s, j) => steps.indexOf(s) !== j);
    const deploys = all.filter((o) => o.kind === 'deploy' && o.version === 'v2' && o.applied !== false).length;
    stepsOf.push(JSON.stringify([...steps].sort()));
    check(
      'once',
      twice.length === 0 && deploys === 1 && promotions === wantPromotions,
      `${i > 0 ? `replica ${i}: ` : ''}steps applied [${steps.join(', ')}]` +
        `${twice.length ? `, twice: ${twice.join(', ')}` : ''}; ` +
        `v2 deployed ${deploys}×; promotion records ${promotions} (wanted ${wantPromotions})`,
    );
  }
  if (stack.gatewayUrls.length > 1) {
    // Both replicas end with the same routing: weights, loaded versions in routing order, routes.
    const routings = await Promise.all(stack.gatewayUrls.map((_, i) => stack.routing(model, i)));
    const shape = (r: ModelRouting | null) =>
      JSON.stringify({
        weights: Object.entries(r?.weights ?? {}).sort(),
        versions: (r?.versions ?? []).map((v) => `${v.version}@${v.artifactDigest ?? ''}`),
        routes: r?.routes ?? null,
      });
    const shapes = routings.map(shape);
    check(
      'replicas',
      shapes.every((x) => x === shapes[0]),
      `replica routings ${shapes.join(' vs ')}`,
    );
    check(
      'replicas',
      stepsOf.every((x) => x === stepsOf[0]),
      `steps applied by replica: ${stepsOf.join(' vs ')}`,
    );
  }
  return out;
}

/**
 * Every replica answered every probe user, and with the same version; on a mid-ramp table both versions must show up
 * (else the probe proves nothing).
 */
function stickyInvariant(name: string, byReplica: (string | null)[][], users: readonly string[]): Invariant {
  const [first, ...others] = byReplica;
  const unanswered = byReplica.flat().filter((v) => v === null).length;
  const differ = users.filter((_, u) => others.some((r) => r[u] !== first?.[u]));
  const versions = [...new Set(first ?? [])].sort();
  const midRamp = name.includes('kill');
  return {
    name,
    ok: unanswered === 0 && differ.length === 0 && (!midRamp || versions.length === 2),
    detail:
      `${users.length} users on ${byReplica.length} replicas: ${unanswered} unanswered, ${differ.length} routed ` +
      `differently (${differ.slice(0, 5).join(', ')}); versions seen ${versions.join(', ')}`,
  };
}

/**
 * Waits `downMs` while a process is down, reading the lifecycle's traffic share: it must not move past what it was at
 * the kill (no replica, or no worker, can confirm a step now that would need it).
 */
async function rampHeld(stack: ChaosStack, id: string, atKill: number, downMs: number): Promise<Invariant> {
  const until = Date.now() + downMs;
  const seen = new Set<number>();
  while (Date.now() < until) {
    try {
      seen.add((await stack.lifecycles.status(id)).trafficPercent);
    } catch {
      // the server may be the one down
    }
    await sleep(200);
  }
  const max = Math.max(atKill, ...seen);
  return {
    name: 'held while down',
    ok: max <= atKill,
    detail: `traffic share ${atKill}% at the kill; seen while down: ${[...seen].sort((a, b) => a - b).join(', ')}%`,
  };
}

function safeSize(file: string): number {
  try {
    return readFileSync(file).length;
  } catch {
    return 0;
  }
}

/** `kind severity` of each alert the worker logged for the model since `offset` (its log is JSON lines). */
function alertsSince(file: string, offset: number, model: string): string[] {
  let text = '';
  try {
    text = readFileSync(file).subarray(offset).toString('utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"alert"') || !line.includes(model)) continue;
    try {
      const alert = (JSON.parse(line) as { alert?: { kind: string; severity: string; model?: string } }).alert;
      if (alert && alert.model === model) out.push(`${alert.kind} ${alert.severity}`);
    } catch {
      // a line cut by a kill
    }
  }
  return out;
}
