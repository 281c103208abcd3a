/**
 * The nginx deployment target: a router we did not write, driven through the same DeploymentTarget interface as the
 * gateway. Each version is served by a gateway of its own (a "slot": a gateway in single-version mode, declared in the
 * worker's ML_NGINX_TARGETS); nginx splits each model's traffic between the slots by the weights, sticky per user.
 *
 * State lives in the router's folder (`state.json`, written atomically): which slot serves which version, the weight
 * table nginx runs, and the opIds applied. Every change of the folder runs under a lock (one promise chain per router
 * in this process, a lock file between processes), so two activities never interleave their writes.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { constants, existsSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { NginxRouterConfig, NginxSlot } from '../config/nginx-targets';
import { weightProblems } from '../serving/router';
import { ErrorType } from '../shared/errors';
import { MAX_OP_ID_LENGTH, type AdminResult } from '../shared/gateway-api';
import { ModelName, VersionName } from '../shared/names';
import { mapOf, own } from '../shared/own';
import { MAX_TELEMETRY_BYTES, type ModelTelemetry, type VersionTelemetry } from '../shared/telemetry';
import { cut } from '../shared/text';
import { GENERATION_PATH, renderNginxConf, type NginxRoute } from './nginx-config';
import { targetLabel } from '../shared/deployment-target';
import type { DeployRequestInput, DeploymentTarget, SetWeightsInput, UndeployInput } from './contract';
import { GatewayTarget } from './target';

/** Applied opIds kept in the state file, oldest dropped first: far more than one lifecycle's retries can span. */
const MAX_OPS = 2_000;
/** How long a reload may take to show its generation before the change counts as not applied (retryable). */
const RELOAD_TIMEOUT_MS = 15_000;
/** `nginx -t` and `nginx -s reload` are quick; a hung one must not hold the router's lock for the whole activity. */
const NGINX_COMMAND_TIMEOUT_MS = 15_000;
/** How long to wait for the lock file another process holds before giving up (retryable). */
const LOCK_TIMEOUT_MS = 20_000;

const STATE_FILE = 'state.json';
const CONF_FILE = 'nginx.conf';
const LOCK_FILE = 'state.lock';

const Placement = z
  .object({
    model: ModelName,
    version: VersionName,
    slot: z.string(),
    artifactDir: z.string(),
    artifactDigest: z.string(),
    /** Deploy order: newer versions take the first share of a split, as on the gateway. */
    seq: z.number().int().nonnegative(),
    /** The slot gateway acknowledged the deploy (until then the placement only reserves the slot). */
    deployed: z.boolean(),
  })
  .strict();
type Placement = z.infer<typeof Placement>;

const AppliedOp = z
  .object({
    opId: z.string(),
    kind: z.enum(['deploy', 'set-weights', 'undeploy']),
    model: z.string(),
    version: z.string().optional(),
  })
  .strict();
type AppliedOp = z.infer<typeof AppliedOp>;

/** Names are array entries, never object keys: a model or version called `__proto__`-like stays a plain value. */
const RouterState = z
  .object({
    format: z.literal(1),
    /** The config generation nginx was last confirmed running (GENERATION_PATH answered it after a reload). */
    generation: z.number().int().nonnegative(),
    /** The highest generation ever written: every config written gets a new one, so a confirmation is unambiguous. */
    written: z.number().int().nonnegative(),
    nextSeq: z.number().int().nonnegative(),
    placements: z.array(Placement),
    /** The weight tables of the confirmed generation: what nginx routes by now. */
    routes: z.array(z.object({ model: ModelName, weights: z.array(z.tuple([VersionName, z.number()])) }).strict()),
    ops: z.array(AppliedOp),
  })
  .strict();
type RouterState = z.infer<typeof RouterState>;

const emptyState = (): RouterState => ({
  format: 1,
  generation: 0,
  written: 0,
  nextSeq: 0,
  placements: [],
  routes: [],
  ops: [],
});

function refused(message: string, status?: number): ApplicationFailure {
  return ApplicationFailure.create({
    type: ErrorType.GatewayRefused,
    message,
    nonRetryable: true,
    ...(status === undefined ? {} : { details: [{ status }] }),
  });
}

function unavailable(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: ErrorType.GatewayUnavailable, message });
}

/** The HTTP status a slot gateway refused with, if `err` is such a refusal. */
function refusalStatus(err: unknown): number | undefined {
  if (!(err instanceof ApplicationFailure) || err.type !== ErrorType.GatewayRefused) return undefined;
  const status = (err.details?.[0] as { status?: unknown } | undefined)?.status;
  return typeof status === 'number' ? status : undefined;
}

/**
 * The opId of a call the target makes on a slot for `opId`: `<opId><suffix>`, shortened with a hash of the whole
 * when that would pass the gateway's limit (so it stays unique and the same on every retry).
 */
function slotOpId(opId: string, suffix: string): string {
  const whole = `${opId}${suffix}`;
  if (whole.length <= MAX_OP_ID_LENGTH) return whole;
  const hash = createHash('sha256').update(opId).digest('hex').slice(0, 16);
  return `${opId.slice(0, MAX_OP_ID_LENGTH - suffix.length - hash.length - 1)}=${hash}${suffix}`;
}

/** Writes `file` so that a reader sees the old or the new content, never a part: a temp file renamed over it. */
async function writeAtomically(file: string, text: string): Promise<void> {
  const temp = `${file}.${process.pid}.${randomUUID()}.tmp`;
  const handle = await open(temp, 'wx', 0o644);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface CommandResult {
  ok: boolean;
  output: string;
}

function run(binary: string, args: string[]): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(
      binary,
      args,
      { timeout: NGINX_COMMAND_TIMEOUT_MS, maxBuffer: 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const output = `${stdout}${stderr}`.trim();
        if (!err) return resolve({ ok: true, output });
        const why = (err as { killed?: boolean }).killed
          ? `no answer within ${NGINX_COMMAND_TIMEOUT_MS} ms`
          : output || err.message;
        resolve({ ok: false, output: why });
      },
    );
  });
}

/** GET of one URL on a connection of its own (never a reused one an old worker may still hold): status and body. */
function getFresh(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 256) body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** One nginx router of the worker's configuration, as a deployment target. */
export class NginxTarget implements DeploymentTarget {
  readonly label: string;
  private readonly slots: Map<string, { config: NginxSlot; gateway: GatewayTarget }>;
  private readonly stateFile: string;
  private readonly confFile: string;
  private readonly lockFile: string;
  /** Where the target asks nginx for its running generation. */
  private readonly generationUrl: string;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly router: NginxRouterConfig,
    /** The admin token of the slot gateways: the worker's (GATEWAY_ADMIN_TOKEN), as for every gateway it drives. */
    adminToken: string,
    private readonly reloadTimeoutMs = RELOAD_TIMEOUT_MS,
  ) {
    this.label = targetLabel({ kind: 'nginx', name: router.name });
    this.slots = new Map(
      router.slots.map((slot) => [
        slot.name,
        { config: slot, gateway: new GatewayTarget({ url: slot.adminUrl, token: adminToken }) },
      ]),
    );
    this.stateFile = join(router.confDir, STATE_FILE);
    this.confFile = join(router.confDir, CONF_FILE);
    this.lockFile = join(router.confDir, LOCK_FILE);
    const { host, port } = router.listen;
    const connect = host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host;
    this.generationUrl = `http://${connect}:${port}${GENERATION_PATH}`;
  }

  /** The config nginx is started on: `<confDir>/nginx.conf`, with `-p <confDir>`. */
  get configFile(): string {
    return this.confFile;
  }

  /**
   * Creates the router's folder and, when it has none yet, writes nginx.conf from the state (every model's weights as
   * last confirmed; none at first: nginx answers 404), so that nginx can be started on it. The worker calls it at start.
   */
  async prepare(): Promise<void> {
    await this.exclusive(async (state) => {
      if (existsSync(this.confFile)) return;
      await writeAtomically(this.confFile, this.render(state, state.routes, state.generation));
    });
  }

  async deploy(input: DeployRequestInput): Promise<AdminResult> {
    const { model, version, opId } = input;
    return this.exclusive(async (state) => {
      const replay = this.replay(state, { opId, kind: 'deploy', model, version });
      if (replay) return replay;
      let placement = state.placements.find((p) => p.model === model && p.version === version);
      if (placement && placement.artifactDigest !== input.artifactDigest) {
        throw refused(
          `${this.label}: version '${version}' of model '${model}' is already deployed (slot ${placement.slot}) with ` +
            `artifact digest ${placement.artifactDigest}; undeploy it first or deploy under a new version name`,
          409,
        );
      }
      const fresh = !placement?.deployed;
      if (!placement) {
        const slot = this.freeSlot(state, model);
        placement = {
          model,
          version,
          slot: slot.name,
          artifactDir: input.artifactDir,
          artifactDigest: input.artifactDigest,
          seq: state.nextSeq,
          deployed: false,
        };
        state.nextSeq++;
        state.placements.push(placement);
        // Saved before the slot is called: a retry after a crash finds the same slot instead of taking another.
        await this.save(state);
      }
      const slot = this.slot(placement.slot);
      try {
        await this.onSlot(slot.config, () => slot.gateway.deploy(input));
        // The slot serves the model from this version alone; nginx decides who reaches the slot.
        await this.onSlot(slot.config, () =>
          slot.gateway.setWeights({ model, weights: { [version]: 100 }, opId: slotOpId(opId, ':slot-weights') }),
        );
      } catch (err) {
        // A refusal will not change on retry: the slot is given back unless the version was deployed there before.
        if (fresh && err instanceof ApplicationFailure && err.nonRetryable) {
          state.placements = state.placements.filter((p) => p !== placement);
          await this.save(state);
        }
        throw err;
      }
      placement.deployed = true;
      this.record(state, { opId, kind: 'deploy', model, version });
      await this.save(state);
      return { opId, applied: true };
    });
  }

  async setWeights(input: SetWeightsInput): Promise<AdminResult> {
    const { model, weights, opId } = input;
    return this.exclusive(async (state) => {
      const replay = this.replay(state, { opId, kind: 'set-weights', model });
      if (replay) return replay;
      const table = mapOf(weights);
      if (table.size > 0) {
        const deployed = new Set(state.placements.filter((p) => p.model === model && p.deployed).map((p) => p.version));
        const problems = weightProblems(table, deployed);
        if (problems.length > 0) {
          throw refused(`${this.label}: invalid weights for model '${model}': ${problems.join('; ')}`, 400);
        }
      }
      const routes = state.routes.filter((r) => r.model !== model);
      // An empty table takes the model out of the config: nginx answers 404 for its paths.
      if (table.size > 0) routes.push({ model, weights: [...table] });
      const generation = state.written + 1;
      state.written = generation;
      // Saved first: a generation is never written twice, whatever happens to this attempt.
      await this.save(state);
      await this.apply(this.render(state, routes, generation), generation);
      state.generation = generation;
      state.routes = routes;
      this.record(state, { opId, kind: 'set-weights', model });
      await this.save(state);
      return { opId, applied: true };
    });
  }

  async undeploy(input: UndeployInput): Promise<AdminResult> {
    const { model, version, opId } = input;
    return this.exclusive(async (state) => {
      const replay = this.replay(state, { opId, kind: 'undeploy', model, version });
      if (replay) return replay;
      const placement = state.placements.find((p) => p.model === model && p.version === version);
      if (!placement) {
        this.record(state, { opId, kind: 'undeploy', model, version });
        await this.save(state);
        return { opId, applied: false };
      }
      const route = state.routes.find((r) => r.model === model);
      const weight = route?.weights.find(([v]) => v === version)?.[1] ?? 0;
      if (weight > 0) {
        throw refused(
          `${this.label}: version '${version}' of model '${model}' has weight ${weight}; move its traffic away ` +
            'before undeploying it',
          409,
        );
      }
      const slot = this.slot(placement.slot);
      // The slot routes the model to this version alone, and a gateway keeps a version with weight: emptied first.
      // nginx sends it nothing any more (its weight is 0 in the running config).
      await this.onSlot(slot.config, async () => {
        try {
          await slot.gateway.setWeights({ model, weights: {}, opId: slotOpId(opId, ':slot-weights-off') });
        } catch (err) {
          // The slot has no such model (it lost its state, or the deploy never reached it): nothing to empty.
          if (refusalStatus(err) !== 404) throw err;
        }
      });
      await this.onSlot(slot.config, () => slot.gateway.undeploy(input));
      state.placements = state.placements.filter((p) => p !== placement);
      if (route) route.weights = route.weights.filter(([v]) => v !== version);
      state.routes = state.routes.filter((r) => r.weights.length > 0);
      this.record(state, { opId, kind: 'undeploy', model, version });
      await this.save(state);
      return { opId, applied: true };
    });
  }

  /** Each version's counters from the slot that serves it; versions whose slot has lost them are absent. */
  async readTelemetry(model: string): Promise<ModelTelemetry> {
    const state = await this.load();
    const bySlot = new Map<string, string[]>();
    for (const p of state.placements) {
      if (p.model !== model || !p.deployed) continue;
      bySlot.set(p.slot, [...(bySlot.get(p.slot) ?? []), p.version]);
    }
    const started = new Date().toISOString();
    const answers = await Promise.all(
      [...bySlot].map(async ([name, versions]) => {
        const slot = this.slot(name);
        try {
          return { versions, telemetry: await this.onSlot(slot.config, () => slot.gateway.readTelemetry(model)) };
        } catch (err) {
          if (refusalStatus(err) === 404) return null;
          throw err;
        }
      }),
    );
    const merged = new Map<string, VersionTelemetry>();
    let at = started;
    for (const answer of answers) {
      if (!answer) continue;
      if (answer.telemetry.at < at) at = answer.telemetry.at;
      for (const version of answer.versions) {
        const counters = own(answer.telemetry.versions, version);
        if (counters) merged.set(version, counters);
      }
    }
    const telemetry: ModelTelemetry = { model, at, versions: Object.fromEntries(merged) };
    const bytes = Buffer.byteLength(JSON.stringify(telemetry));
    if (bytes > MAX_TELEMETRY_BYTES) {
      throw refused(
        `${this.label}: the telemetry of model '${model}' is ${bytes} bytes of JSON, more than ${MAX_TELEMETRY_BYTES} ` +
          'can be carried through workflow history',
      );
    }
    return telemetry;
  }

  /**
   * The weights of the config nginx runs now: the table the target last confirmed, provided nginx still answers that
   * generation (a reload in flight, or an nginx restarted on another config, is not reported as routing it).
   */
  async readWeights(model: string): Promise<Record<string, number>> {
    const state = await this.load();
    const running = await this.runningGeneration();
    if (running !== state.generation) {
      throw unavailable(
        `${this.label}: nginx runs config generation ${running ?? '(none it reports)'}, not ${state.generation}, the ` +
          `last the target confirmed; ${this.errorLogTail()}`,
      );
    }
    return Object.fromEntries(state.routes.find((r) => r.model === model)?.weights ?? []);
  }

  private render(state: RouterState, routes: RouterState['routes'], generation: number): string {
    const seqOf = new Map(
      state.placements.filter((p) => p.deployed).map((p) => [`${p.model}\n${p.version}`, p] as const),
    );
    const nginxRoutes: NginxRoute[] = routes.map(({ model, weights }) => ({
      model,
      versions: weights
        .map(([version, weight]) => {
          const placement = seqOf.get(`${model}\n${version}`);
          if (!placement) throw refused(`${this.label}: model '${model}' routes to version '${version}', not deployed`);
          return { version, weight, slot: placement.slot, seq: placement.seq };
        })
        .sort((a, b) => b.seq - a.seq)
        .map(({ version, weight, slot }) => ({ version, weight, slot })),
    }));
    try {
      return renderNginxConf(this.router, nginxRoutes, generation);
    } catch (err) {
      throw refused(`${this.label}: cannot write nginx.conf: ${(err as Error).message}`);
    }
  }

  /**
   * Makes `conf` the running config: checked by `nginx -t` before it replaces nginx.conf (a config nginx refuses never
   * becomes the file it restarts on), then a graceful reload, then confirmed by nginx answering `generation`. A reload
   * starts new workers on the new config while the old ones finish the requests they hold: nothing is dropped.
   */
  private async apply(conf: string, generation: number): Promise<void> {
    const { nginx, confDir } = this.router;
    const next = `${this.confFile}.next`;
    await writeAtomically(next, conf);
    const test = await run(nginx, ['-t', '-q', '-p', `${confDir}/`, '-c', next]);
    if (!test.ok) {
      await rm(next, { force: true });
      throw refused(
        `${this.label}: nginx refuses the config written for generation ${generation}: ${cut(test.output, 2000)}`,
      );
    }
    await rename(next, this.confFile);
    const reload = await run(nginx, ['-s', 'reload', '-p', `${confDir}/`, '-c', this.confFile]);
    if (!reload.ok) {
      throw unavailable(
        `${this.label}: nginx cannot be reloaded (is it running on ${this.confFile}?): ${cut(reload.output, 1000)}`,
      );
    }
    const deadline = Date.now() + this.reloadTimeoutMs;
    let running: number | null = null;
    while (Date.now() < deadline) {
      running = await this.runningGeneration().catch(() => null);
      if (running === generation) return;
      await sleep(25);
    }
    throw unavailable(
      `${this.label}: nginx did not take up config generation ${generation} within ${this.reloadTimeoutMs} ms ` +
        `(it answers ${running ?? 'nothing'}); ${this.errorLogTail()}`,
    );
  }

  /** The generation nginx answers now; GatewayUnavailable when it does not answer. */
  private async runningGeneration(): Promise<number | null> {
    let answer: { status: number; body: string };
    try {
      answer = await getFresh(this.generationUrl, 2_000);
    } catch (err) {
      throw unavailable(`${this.label}: nginx does not answer on ${this.generationUrl}: ${(err as Error).message}`);
    }
    const generation = answer.status === 200 && /^\d{1,15}$/.test(answer.body) ? Number(answer.body) : null;
    return generation;
  }

  private errorLogTail(): string {
    try {
      const log = readFileSync(join(this.router.confDir, 'error.log'), 'utf8');
      const tail = log.trim().split('\n').slice(-5).join(' | ');
      return tail ? `its error log ends: ${cut(tail, 1500)}` : 'its error log is empty';
    } catch {
      return 'it has no error log yet';
    }
  }

  private slot(name: string): { config: NginxSlot; gateway: GatewayTarget } {
    const slot = this.slots.get(name);
    if (!slot) {
      // The state names a slot the configuration no longer declares: an operator must move the version by hand.
      throw refused(
        `${this.label}: the state names slot ${name}, which ML_NGINX_TARGETS no longer declares ` +
          `(slots: ${[...this.slots.keys()].join(', ')})`,
      );
    }
    return slot;
  }

  /** A slot that serves no version of `model`; a refusal naming what each slot holds when there is none. */
  private freeSlot(state: RouterState, model: string): NginxSlot {
    const taken = new Map(state.placements.filter((p) => p.model === model).map((p) => [p.slot, p.version]));
    const free = this.router.slots.find((slot) => !taken.has(slot.name));
    if (free) return free;
    const held = this.router.slots.map((slot) => `${slot.name}: ${taken.get(slot.name)}`).join(', ');
    throw refused(
      `${this.label}: no free slot for model '${model}': every slot serves a version of it (${held}); undeploy one ` +
        'or declare more slots in ML_NGINX_TARGETS',
      409,
    );
  }

  /** A slot gateway's failure, named as this target's. */
  private async onSlot<T>(slot: NginxSlot, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ApplicationFailure)) throw err;
      throw ApplicationFailure.create({
        type: err.type ?? ErrorType.GatewayUnavailable,
        message: `${this.label}, slot ${slot.name}: ${err.message}`,
        nonRetryable: err.nonRetryable === true,
        ...(err.details ? { details: [...err.details] } : {}),
      });
    }
  }

  private replay(state: RouterState, op: AppliedOp): AdminResult | undefined {
    const seen = state.ops.find((o) => o.opId === op.opId);
    if (!seen) return undefined;
    if (seen.kind !== op.kind || seen.model !== op.model || seen.version !== op.version) {
      const what = seen.version ? `${seen.model}@${seen.version}` : seen.model;
      throw refused(`${this.label}: opId '${op.opId}' was already used for ${seen.kind} of ${what}`, 409);
    }
    return { opId: op.opId, applied: false };
  }

  private record(state: RouterState, op: AppliedOp): void {
    state.ops.push(op);
    if (state.ops.length > MAX_OPS) state.ops.splice(0, state.ops.length - MAX_OPS);
  }

  private async load(): Promise<RouterState> {
    let text: string;
    try {
      text = await readFile(this.stateFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
      throw unavailable(`${this.label}: cannot read ${this.stateFile}: ${(err as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text) as unknown;
    } catch {
      json = undefined;
    }
    const parsed = RouterState.safeParse(json);
    if (!parsed.success) {
      // Not something a retry fixes: an operator must look at the file.
      throw refused(
        `${this.label}: ${this.stateFile} is not the target's state: ${cut(z.prettifyError(parsed.error), 1000)}`,
      );
    }
    return parsed.data;
  }

  private save(state: RouterState): Promise<void> {
    return writeAtomically(this.stateFile, `${JSON.stringify(state, null, 1)}\n`);
  }

  /** Runs `fn` on the loaded state with the router's folder to itself: this process's chain, then the lock file. */
  private exclusive<T>(fn: (state: RouterState) => Promise<T>): Promise<T> {
    const run = this.chain.then(async () => {
      await mkdir(this.router.confDir, { recursive: true, mode: 0o755 });
      const release = await this.lock();
      try {
        return await fn(await this.load());
      } finally {
        await release();
      }
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /**
   * The lock file between worker processes sharing the folder: created exclusively, holding the owner's pid. A lock
   * whose owner is gone (or is this process, which only gets here with its chain free) is taken over.
   */
  private async lock(): Promise<() => Promise<void>> {
    const deadline = Date.now() + LOCK_TIMEOUT_MS;
    for (;;) {
      try {
        const handle = await open(this.lockFile, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o644);
        await handle.writeFile(String(process.pid));
        await handle.close();
        return () => rm(this.lockFile, { force: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw unavailable(`${this.label}: cannot create ${this.lockFile}: ${(err as Error).message}`);
        }
      }
      const owner = Number((await readFile(this.lockFile, 'utf8').catch(() => '')).trim());
      const age = await stat(this.lockFile).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      const stale = Number.isSafeInteger(owner) && owner > 0 ? owner === process.pid || !alive(owner) : age > 5_000;
      if (stale) {
        await rm(this.lockFile, { force: true });
        continue;
      }
      if (Date.now() >= deadline) {
        throw unavailable(`${this.label}: ${this.lockFile} is held by process ${owner}; try again later`);
      }
      await sleep(50);
    }
  }
}

/** The worker's routers by name, one target each, built once: each serializes the writes to its own folder. */
export function createNginxTargets(
  routers: readonly NginxRouterConfig[],
  adminToken: string,
): Map<string, NginxTarget> {
  return new Map(routers.map((router) => [router.name, new NginxTarget(router, adminToken)]));
}
