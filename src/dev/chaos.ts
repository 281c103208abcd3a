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
  gateway!: ManagedProcess;
  worker!: ManagedProcess;
  client!: Client;
  lifecycles!: LifecycleClient;
  /** The gateway's public URL (predictions); its admin API is on {@link gatewayAdminUrl}. */
  gatewayUrl = '';
  gatewayAdminUrl = '';
  /** A fresh admin token per stack, given to the gateway and the worker through their environment only. */
  private readonly adminToken = randomBytes(32).toString('base64url');
  private serverPort = 0;
  private gatewayPort = 0;
  private gatewayAdminPort = 0;
  private restarts = 0;

  static async start(): Promise<ChaosStack> {
    const stack = new ChaosStack();
    stack.serverPort = await freePort();
    stack.gatewayPort = await freePort();
    stack.gatewayAdminPort = await freePort();
    stack.gatewayUrl = `http://127.0.0.1:${stack.gatewayPort}`;
    stack.gatewayAdminUrl = `http://127.0.0.1:${stack.gatewayAdminPort}`;
    await stack.startServer();
    await stack.startGateway();
    stack.startWorker();
    stack.client = new Client({ connection: await Connection.connect({ address: stack.address }) });
    stack.lifecycles = new LifecycleClient(stack.client);
    return stack;
  }

  get address(): string {
    return `127.0.0.1:${this.serverPort}`;
  }

  get workerLog(): string {
    return join(this.dir, 'worker.log');
  }

  private async startServer(): Promise<void> {
    this.server = await startDevServer({ port: this.serverPort, dbFile: join(this.dir, 'temporal.db') });
  }

  private async startGateway(): Promise<void> {
    this.gateway = startNode(
      'gateway',
      join(ROOT, 'dist', 'src', 'serving', 'main.js'),
      {
        GATEWAY_PORT: String(this.gatewayPort),
        GATEWAY_ADMIN_PORT: String(this.gatewayAdminPort),
        GATEWAY_DATA_DIR: join(this.dir, 'gateway'),
        // The worker's ML_DATA_DIR/artifacts: where it trains, and so the one folder the gateway loads from.
        GATEWAY_ARTIFACT_ROOT: join(this.dir, 'data', 'artifacts'),
        GATEWAY_ADMIN_TOKEN: this.adminToken,
        LOG_LEVEL: 'warn',
      },
      join(this.dir, 'gateway.log'),
    );
    // Both listeners up and the routing restored: an admin read answers only then.
    await waitFor(
      `gateway on ${this.gatewayUrl}`,
      async () => (await fetch(`${this.gatewayUrl}/healthz`)).ok && (await this.admin('/admin/models')).ok,
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

  private startWorker(): void {
    this.worker = startNode(
      `worker-${++this.restarts}`,
      join(ROOT, 'dist', 'src', 'workers', 'main.js'),
      {
        TEMPORAL_ADDRESS: this.address,
        GATEWAY_ADMIN_URL: this.gatewayAdminUrl,
        GATEWAY_ADMIN_TOKEN: this.adminToken,
        ML_DATA_DIR: join(this.dir, 'data'),
        ALERT_GROUP_WAIT: '300ms',
        QUOTA_POOLS_FILE: this.poolsFile,
        ML_POLICY_FILE: this.policyFile,
        LOG_LEVEL: 'warn',
      },
      this.workerLog,
    );
  }

  /** Whether the worker runs, and the last lines of its log: what a stuck case reports. */
  workerState(lines = 25): string {
    const child = this.worker.child;
    const state =
      child.exitCode !== null || child.signalCode !== null
        ? `exited (${child.exitCode ?? child.signalCode})`
        : `running (pid ${child.pid})`;
    let tail = '';
    try {
      tail = readFileSync(this.workerLog, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      tail = '(no log)';
    }
    return `worker ${this.restarts}: ${state}; its log ends:\n${tail}`;
  }

  /** SIGKILL, waiting until the process is gone. */
  async kill(which: ChaosProcess): Promise<void> {
    const child =
      which === 'server' ? this.server.process : which === 'gateway' ? this.gateway.child : this.worker.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }

  /** Starts the process again on the same ports and state. */
  async restart(which: ChaosProcess): Promise<void> {
    if (which === 'server') await this.startServer();
    else if (which === 'gateway') await this.startGateway();
    else this.startWorker();
  }

  traffic(model: string, ratePerSecond = 50): LoadGenerator {
    const load = new LoadGenerator({
      gatewayUrl: this.gatewayUrl,
      model,
      rowsCsv: join(EXAMPLE, 'data', 'test.csv'),
      labelColumn: 'churned',
      dropColumns: ['customer_id'],
      ratePerSecond,
    });
    load.start();
    return load;
  }

  /** A GET of the gateway's admin API, with the stack's token. */
  private admin(path: string): Promise<Response> {
    return fetch(`${this.gatewayAdminUrl}${path}`, { headers: { authorization: `Bearer ${this.adminToken}` } });
  }

  async routing(model: string): Promise<ModelRouting | null> {
    const all = (await (await this.admin('/admin/models')).json()) as ModelRouting[];
    return all.find((r) => r.model === model) ?? null;
  }

  async ops(model: string): Promise<(AdminOp & { applied?: boolean })[]> {
    return (await (await this.admin(`/admin/ops?model=${encodeURIComponent(model)}`)).json()) as never;
  }

  async registry(model: string): Promise<RegistryState> {
    return this.client.workflow.getHandle(registryWorkflowId(model)).query(registryStateQuery);
  }

  async pool(name = 'default'): Promise<QuotaPoolState> {
    return this.client.workflow.getHandle(quotaPoolWorkflowId(name)).query(poolStateQuery);
  }

  async close(): Promise<void> {
    await this.worker?.stop();
    await this.gateway?.stop();
    await this.client?.connection.close();
    await this.server?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
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
  const logStart = safeSize(stack.workerLog);
  try {
    const v1 = await lifecycles.start(chaosSpec(model, 'v1', { at: 'provisioning', candidate: 'good' }));
    const first = await drive(stack, v1.id, () => false, within(180_000), 'driving v1 to promotion');
    if (first.stage !== 'promoted') throw new Error(`v1 ended ${first.stage}: ${first.error?.message}`);
    const failedBefore = load.stats.failed;

    const { id } = await lifecycles.start(chaosSpec(model, 'v2', c));
    const atKill = await drive(stack, id, (s) => atKillPoint(s, c.at), within(180_000), `driving v2 to ${c.at}`);
    if (ended(atKill)) throw new Error(`v2 ended ${atKill.stage} before reaching ${c.at}`);
    if (c.at === 'rolling-back') {
      await lifecycles.abort(id, { by: 'alice', reason: 'chaos: roll back now' });
    }
    await stack.kill(c.kill);
    if (c.downMs) await sleep(c.downMs);
    await stack.restart(c.kill);
    const restarted = Date.now();
    const consistentMs = await timeToConsistent(stack, id, model, within(15 * 60_000));
    const end = await drive(
      stack,
      id,
      () => false,
      within(15 * 60_000),
      `driving v2 to its end after the ${c.kill} restart`,
    );
    const endedMs = Date.now() - restarted;
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
      invariants: await checkInvariants(stack, c, model, id, end),
      failedRequests: load.stats.failed - failedBefore,
      alerts: alertsSince(stack.workerLog, logStart, model),
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
      const routing = await stack.routing(model);
      const weight = routing?.weights['v2'] ?? 0;
      seen = `lifecycle ${s.stage} at ${s.trafficPercent}%, gateway weight of v2 ${weight}`;
      if (weight === s.trafficPercent || (ended(s) && weight === (s.stage === 'promoted' ? 100 : 0))) {
        return Date.now() - started;
      }
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
  const outage = (c.downMs ?? 0) > 0 && c.kill === 'gateway';
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

  const ops = (await stack.ops(model)).filter((o) => o.opId.startsWith(`${id}@`) && o.applied !== false);
  const steps = ops.map((o) => o.opId.slice(o.opId.indexOf(':', id.length) + 1));
  const twice = steps.filter((s, i) => steps.indexOf(s) !== i);
  const deploys = (await stack.ops(model)).filter(
    (o) => o.kind === 'deploy' && o.version === 'v2' && o.applied !== false,
  ).length;
  const promotions = registry.history.filter((h) => h.lifecycleId === id && h.kind !== 'rollback').length;
  const wantPromotions = expected === 'promoted' || c.at === 'guarding' ? 1 : 0;
  check(
    'once',
    twice.length === 0 && deploys === 1 && promotions === wantPromotions,
    `steps applied [${steps.join(', ')}]${twice.length ? `, twice: ${twice.join(', ')}` : ''}; ` +
      `v2 deployed ${deploys}×; promotion records ${promotions} (wanted ${wantPromotions})`,
  );
  return out;
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
