import { createHmac, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { projectRoot } from '../config/paths';
import {
  configurePoolUpdate,
  poolStateQuery,
  quotaMonitorQuery,
  quotaBatchUpdate,
  releaseQuotaUpdate,
  renewQuotaUpdate,
  reservationQuery,
} from '../shared/messages';
import {
  MAX_QUOTA_BATCH,
  quotaMonitorWorkflowId,
  quotaPoolWorkflowId,
  PoolStateRead,
  type QuotaBatchOp,
  type QuotaBatchResult,
  type QuotaLease,
  type QuotaMonitorState,
  type QuotaPoolConfig,
  type QuotaPoolsFile,
  type QuotaPoolState,
  ReleaseQuotaInput,
  RenewQuotaInput,
  ReserveQuotaInput,
  type ReserveQuotaResult,
} from '../shared/quota';
import { LIFECYCLE_TASK_QUEUE } from '../shared/task-queues';

// Started by name: the client never imports workflow code.
const QUOTA_POOL_WORKFLOW = 'quotaPoolWorkflow';
const QUOTA_MONITOR_WORKFLOW = 'quotaMonitorWorkflow';

/**
 * Sends an update again when the server did not apply it: it admits a bounded number of in-flight updates per
 * workflow (10 by default) and refuses more with RESOURCE_EXHAUSTED, and it aborts updates still undelivered when the
 * pool continues as new. Both are back-pressure, not failure; every pool operation is idempotent by lease id.
 */
async function withBackpressure<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const text = `${String((err as Error).message ?? err)} ${String((err as { cause?: Error }).cause?.message ?? '')}`;
      const retry =
        (err as { code?: number }).code === 8 || /in-flight updates|RESOURCE_EXHAUSTED|update was aborted/i.test(text);
      if (!retry || attempt >= 200) throw err;
      await new Promise((r) => setTimeout(r, Math.min(10 * 2 ** Math.min(attempt, 6), 500) * (0.5 + Math.random())));
    }
  }
}

/** The call's answer, or null when the workflow it addresses does not exist (a pool never used, no monitor). */
async function orNull<T>(call: () => Promise<T>): Promise<T | null> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
}

/** A pool refused one operation of a batch: malformed (`InvalidInput`), or not the owner's (`Unauthorized`). */
export class QuotaOperationError extends Error {
  constructor(
    message: string,
    /** The failure type the pool gave, when it gave one. */
    readonly type?: string,
  ) {
    super(message);
  }
}

interface PendingOp {
  op: QuotaBatchOp;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/**
 * Group commit for one pool: operations of every caller in this process go out as batch updates, at most
 * `maxInFlight` at a time, each carrying whatever queued up while the previous ones were in flight. One update (one
 * workflow task on the pool) then answers a burst of pipelines, and the process never holds more than `maxInFlight`
 * of the server's 10 in-flight updates per workflow.
 */
class Batcher {
  private readonly pending: PendingOp[] = [];
  private inFlight = 0;

  constructor(
    private readonly send: (ops: QuotaBatchOp[]) => Promise<QuotaBatchResult[]>,
    private readonly maxInFlight: number,
  ) {}

  submit<T>(op: QuotaBatchOp): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ op, resolve: resolve as (v: unknown) => void, reject });
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.pending.length > 0) {
      const batch = this.pending.splice(0, MAX_QUOTA_BATCH);
      this.inFlight++;
      this.send(batch.map((p) => p.op))
        .then(
          (results) =>
            batch.forEach((p, i) => {
              const r = results[i];
              if (!r) p.reject(new Error('the pool answered a batch with fewer results than operations'));
              else if (r.ok) p.resolve(r.value);
              else p.reject(new QuotaOperationError(r.error, r.type));
            }),
          (err: unknown) => batch.forEach((p) => p.reject(err)),
        )
        .finally(() => {
          this.inFlight--;
          this.flush();
        });
    }
  }
}

/** A pool that is not in the configuration file. */
export class UnknownPoolError extends Error {
  constructor(pool: string, configured: string[]) {
    super(`unknown quota pool "${pool}" (configured: ${configured.join(', ') || 'none'})`);
  }
}

/** Shortest worker secret accepted (ML_WORKER_SECRET, its file, or a secret passed in). */
export const MIN_WORKER_SECRET_LENGTH = 32;

/** The worker secret cannot be read or made (names the variable or file). */
export class WorkerSecretError extends Error {}

/**
 * The worker's secret, from which its QuotaClient derives the owner key of every lease it reserves, renews and
 * releases: ML_WORKER_SECRET (at least 32 characters), else the file ML_WORKER_SECRET_FILE names, else
 * `<ML_DATA_DIR or data>/worker-secret`, made on first use with 32 random bytes (mode 0600).
 *
 * Every worker of a deployment must have the same secret (set ML_WORKER_SECRET or ML_WORKER_SECRET_FILE from one
 * secret store, or share the data folder): serving leases pass from one workflow to the next, and a lifecycle's lease
 * may be released by a rollback or a later promotion running on another worker. A worker with another secret is a
 * stranger to those leases, and its renewals and releases of them are refused. Changing the secret orphans every
 * lease held: a quota operator then releases them (`mlctl quota release --as`), or they expire.
 */
export function loadWorkerSecret(env: NodeJS.ProcessEnv = process.env): string {
  const checked = (secret: string, where: string) => {
    if (secret.length < MIN_WORKER_SECRET_LENGTH)
      throw new WorkerSecretError(
        `${where}: the worker secret must be at least ${MIN_WORKER_SECRET_LENGTH} characters`,
      );
    return secret;
  };
  if (env.ML_WORKER_SECRET) return checked(env.ML_WORKER_SECRET, 'ML_WORKER_SECRET');
  const root = projectRoot();
  const abs = (p: string) => (isAbsolute(p) ? p : join(root, p));
  if (env.ML_WORKER_SECRET_FILE) {
    const file = abs(env.ML_WORKER_SECRET_FILE);
    return checked(readSecretFile(file, 'ML_WORKER_SECRET_FILE'), `ML_WORKER_SECRET_FILE ${file}`);
  }
  const file = join(abs(env.ML_DATA_DIR || 'data'), 'worker-secret');
  try {
    return checked(readFileSync(file, 'utf8').trim(), file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw asSecretError(err, file);
  }
  // First use: written aside, then linked into place, so a worker starting alongside reads a whole secret or makes
  // none of its own (the link fails when the file appeared meanwhile, and the one there wins).
  try {
    mkdirSync(dirname(file), { recursive: true });
    const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    writeFileSync(aside, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
    try {
      linkSync(aside, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      rmSync(aside, { force: true });
    }
    return checked(readFileSync(file, 'utf8').trim(), file);
  } catch (err) {
    throw err instanceof WorkerSecretError ? err : asSecretError(err, file);
  }
}

function readSecretFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw asSecretError(err, `${what} ${file}`);
  }
}

const asSecretError = (err: unknown, where: string) =>
  new WorkerSecretError(
    `${where}: cannot read or make the worker secret: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
  );

export interface QuotaClientOptions {
  /**
   * Batch updates this client keeps in flight per pool. The server admits 10 in-flight updates per workflow and a
   * pool pushed past that stalls; with batching one in flight is also the fastest (bench/README.md), and ten
   * processes can share a pool. Default 1.
   */
  maxInFlight?: number;
  /**
   * The secret this client derives lease owner keys from (the worker's: see {@link loadWorkerSecret}), or a function
   * that reads it on first use. Absent: a random secret of this client alone, so it owns the leases it reserves for as
   * long as it lives (a script, a test); mlctl's clients live for one command, so mlctl renews and releases as a
   * privileged operation (`--as`).
   */
  ownerSecret?: string | (() => string);
}

/**
 * Reserve, renew and release quota on the pools' entity workflows, and read their state. Every pool is started on
 * first use with its configuration from the pools file. Every reservation, renewal and release carries the lease's
 * owner key, HMAC-SHA256(secret, "<pool>/<leaseId>") in base64url: one key per lease, the same from every client
 * that shares the secret, and the secret itself never leaves the process.
 */
export class QuotaClient {
  private readonly batchers = new Map<string, Batcher>();
  private readonly maxInFlight: number;
  private secretSource: string | (() => string);
  private secret: string | undefined;

  constructor(
    private readonly client: Client,
    private readonly pools: QuotaPoolsFile,
    /** Options, or (as before) just the batch updates kept in flight per pool. */
    options: number | QuotaClientOptions = {},
  ) {
    const o = typeof options === 'number' ? { maxInFlight: options } : options;
    this.maxInFlight = o.maxInFlight ?? 1;
    if (typeof o.ownerSecret === 'string' && o.ownerSecret.length < MIN_WORKER_SECRET_LENGTH)
      throw new WorkerSecretError(`the owner secret must be at least ${MIN_WORKER_SECRET_LENGTH} characters`);
    this.secretSource = o.ownerSecret ?? randomBytes(32).toString('base64url');
  }

  /** The worker's client: owner keys from `secret`, else from the worker secret of the environment (on first use). */
  static forWorker(client: Client, pools: QuotaPoolsFile, secret?: string): QuotaClient {
    return new QuotaClient(client, pools, { ownerSecret: secret ?? (() => loadWorkerSecret()) });
  }

  /** The owner key of `leaseId` in `pool` for this client's secret. */
  ownerKey(pool: string, leaseId: string): string {
    if (this.secret === undefined) {
      const secret = typeof this.secretSource === 'string' ? this.secretSource : this.secretSource();
      if (secret.length < MIN_WORKER_SECRET_LENGTH)
        throw new WorkerSecretError(`the owner secret must be at least ${MIN_WORKER_SECRET_LENGTH} characters`);
      this.secret = secret;
      this.secretSource = '';
    }
    return createHmac('sha256', this.secret).update(`${pool}/${leaseId}`).digest('base64url');
  }

  /** Runs one operation on a pool through its batcher (started first if needed), retrying server back-pressure. */
  private async submit<T>(pool: string, op: QuotaBatchOp): Promise<T> {
    await this.ensureStarted(pool);
    let batcher = this.batchers.get(pool);
    if (!batcher) {
      const handle = this.client.workflow.getHandle(quotaPoolWorkflowId(pool));
      batcher = new Batcher(
        (ops) => withBackpressure(() => handle.executeUpdate(quotaBatchUpdate, { args: [ops] })),
        this.maxInFlight,
      );
      this.batchers.set(pool, batcher);
    }
    return batcher.submit<T>(op);
  }

  config(pool: string): QuotaPoolConfig {
    const config = this.pools.pools.find((p) => p.name === pool);
    if (!config)
      throw new UnknownPoolError(
        pool,
        this.pools.pools.map((p) => p.name),
      );
    return config;
  }

  private readonly started = new Map<string, Promise<void>>();

  /**
   * Starts the pool's entity workflow and its monitor unless they run (idempotent; once per client and pool). Plain
   * starts with "use existing" rather than update-with-start: many pipelines reserving at once must not race to start.
   */
  ensureStarted(pool: string): Promise<void> {
    let started = this.started.get(pool);
    if (!started) {
      const config = this.config(pool);
      started = Promise.all([
        this.client.workflow.start(QUOTA_POOL_WORKFLOW, {
          workflowId: quotaPoolWorkflowId(pool),
          taskQueue: LIFECYCLE_TASK_QUEUE,
          args: [{ config }],
          workflowIdConflictPolicy: 'USE_EXISTING',
          staticSummary: `quota pool ${pool}: grants, queues, renews and releases leases of its capacity`,
        }),
        this.client.workflow.start(QUOTA_MONITOR_WORKFLOW, {
          workflowId: quotaMonitorWorkflowId(pool),
          taskQueue: LIFECYCLE_TASK_QUEUE,
          args: [{ pool }],
          workflowIdConflictPolicy: 'USE_EXISTING',
          staticSummary: `quota monitor of pool ${pool}: usage, exhaustion forecast, faulty pipelines, expired leases`,
        }),
      ]).then(() => undefined);
      started.catch(() => this.started.delete(pool));
      this.started.set(pool, started);
    }
    return started;
  }

  /**
   * Reserves on the pool, starting it if this is its first use. Idempotent by lease id. A reservation that may wait
   * is queued by the pool; this then watches it (a query, nothing written) until it is granted or its wait is over.
   * `onQueued` hears its place in the queue while it waits (a heartbeat, a progress line).
   */
  async reserve(
    pool: string,
    request: ReserveQuotaInput,
    options: { onQueued?: (place: { position: number; deadline: string }) => void } = {},
  ): Promise<ReserveQuotaResult> {
    const first = await this.submitReservation(pool, request);
    if (first.granted || !first.queued) return first;
    let last = first;
    let delay = 50;
    for (;;) {
      options.onQueued?.(last.queued ?? { position: 0, deadline: '' });
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 1000);
      const now = await this.reservationState(pool, request.leaseId, last);
      if (now.granted || !now.queued) return now;
      last = now;
    }
  }

  /**
   * Sends a reservation and answers at once: granted, refused, or queued (with its place) when it asked to wait. A
   * queued one is then watched with {@link reservationState}: by a caller that waits on its own clock (a workflow's
   * timers) instead of holding a connection or an activity slot for the whole wait.
   */
  async submitReservation(pool: string, request: ReserveQuotaInput): Promise<ReserveQuotaResult> {
    // Checked with the pool's own schema first: a malformed request is a ZodError here, never sent.
    ReserveQuotaInput.parse(request);
    const input = { ...request, ownerKey: request.ownerKey ?? this.ownerKey(pool, request.leaseId) };
    // Idempotent by lease id: a reservation sent again is decided again (or answered with the lease it holds).
    return this.submit<ReserveQuotaResult>(pool, { op: 'reserve', input });
  }

  /**
   * Where a queued reservation stands now: granted, refused, or still queued (`queued` set, with the reason and
   * shortfalls of `last`, the answer before, updated). A reservation the pool no longer knows (granted and since
   * released or expired, or dropped) is refused as `wait-timeout`.
   */
  async reservationState(
    pool: string,
    leaseId: string,
    last: ReserveQuotaResult & { granted: false },
  ): Promise<ReserveQuotaResult> {
    const state = await this.client.workflow.getHandle(quotaPoolWorkflowId(pool)).query(reservationQuery, leaseId);
    if (state.state === 'granted') return { granted: true, lease: state.lease, waitedMs: state.waitedMs };
    if (state.state === 'refused') return state.result;
    if (state.state === 'queued') return { ...last, reason: state.reason, shortfalls: state.shortfalls, queued: state };
    return {
      granted: false,
      reason: 'wait-timeout',
      shortfalls: last.shortfalls,
      earliestRelease: null,
      message: `pool "${pool}" no longer knows reservation ${leaseId} (granted and expired, or dropped)`,
    };
  }

  /**
   * Extends a lease's TTL; null when the pool no longer holds it (released or expired). With `by` (and `signed`) it is
   * someone else's lease: sent on its own, and refused with an Unauthorized update failure unless the platform policy
   * allows it.
   */
  async renew(pool: string, input: RenewQuotaInput): Promise<QuotaLease | null> {
    RenewQuotaInput.parse(input);
    const owned = { ...input, ownerKey: input.ownerKey ?? this.ownerKey(pool, input.leaseId) };
    if (privileged(input)) return this.single(pool, (h) => h.executeUpdate(renewQuotaUpdate, { args: [owned] }));
    return orNull(() => this.submit<QuotaLease | null>(pool, { op: 'renew', input: owned }));
  }

  /** Releases a lease; null when it was not held. With `by` (and `signed`), as {@link renew}. */
  async release(pool: string, input: ReleaseQuotaInput): Promise<QuotaLease | null> {
    ReleaseQuotaInput.parse(input);
    const owned = { ...input, ownerKey: input.ownerKey ?? this.ownerKey(pool, input.leaseId) };
    if (privileged(input)) return this.single(pool, (h) => h.executeUpdate(releaseQuotaUpdate, { args: [owned] }));
    return orNull(() => this.submit<QuotaLease | null>(pool, { op: 'release', input: owned }));
  }

  /** One renew or release as its own update (the pool takes operations on another's lease only that way). */
  private async single(
    pool: string,
    send: (handle: WorkflowHandle) => Promise<QuotaLease | null>,
  ): Promise<QuotaLease | null> {
    this.config(pool);
    const handle = this.client.workflow.getHandle(quotaPoolWorkflowId(pool));
    return orNull(() => withBackpressure(() => send(handle)));
  }

  /**
   * The pool's state; null when the pool has never been used (nothing reserved yet). With `summary` its state without
   * the lists that grow with its leases (leases, waiting reservations, journal, usage per pipeline; only the runs that
   * ended `expired`), with their `counts`: what a monitor reads, small at any number of leases. `runsOf` and `holder`
   * add to a summary what an estimate or a hardware plan needs (see {@link PoolStateRead}).
   */
  async state(pool: string, options: PoolStateRead = {}): Promise<QuotaPoolState | null> {
    this.config(pool);
    const read = PoolStateRead.parse(options);
    const handle = this.client.workflow.getHandle(quotaPoolWorkflowId(pool));
    return orNull(() => (read.summary ? handle.query(poolStateQuery, read) : handle.query(poolStateQuery)));
  }

  /** Applies the file's configuration to a pool (starting it if needed); true when it changed. */
  async configure(pool: string): Promise<boolean> {
    await this.ensureStarted(pool);
    const result = await withBackpressure(() =>
      this.client.workflow
        .getHandle(quotaPoolWorkflowId(pool))
        .executeUpdate(configurePoolUpdate, { args: [this.config(pool)] }),
    );
    return result.changed;
  }

  /** The open alerts of a pool, from its monitor; null when the pool has no monitor yet. */
  async monitor(pool: string): Promise<QuotaMonitorState | null> {
    this.config(pool);
    return orNull(() => this.client.workflow.getHandle(quotaMonitorWorkflowId(pool)).query(quotaMonitorQuery));
  }

  /** Applies every pool's configuration; a worker does this at start so edits to the file take effect. */
  async configureAll(): Promise<string[]> {
    const changed: string[] = [];
    for (const pool of this.pools.pools) if (await this.configure(pool.name)) changed.push(pool.name);
    return changed;
  }

  get poolNames(): string[] {
    return this.pools.pools.map((p) => p.name);
  }
}

/** An operation on a lease by someone who says who they are: the pool's privileged path. */
const privileged = (input: { by?: string; signed?: unknown }) => input.by !== undefined || input.signed !== undefined;
