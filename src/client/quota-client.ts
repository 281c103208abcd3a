import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import {
  configurePoolUpdate,
  poolStateQuery,
  quotaMonitorQuery,
  quotaBatchUpdate,
  reservationQuery,
} from '../shared/messages';
import {
  MAX_QUOTA_BATCH,
  quotaMonitorWorkflowId,
  quotaPoolWorkflowId,
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

/** A pool refused one operation of a batch as malformed. */
export class QuotaOperationError extends Error {}

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
              else p.reject(new QuotaOperationError(r.error));
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

/**
 * Reserve, renew and release quota on the pools' entity workflows, and read their state. Every pool is started on
 * first use with its configuration from the pools file.
 */
export class QuotaClient {
  private readonly batchers = new Map<string, Batcher>();

  constructor(
    private readonly client: Client,
    private readonly pools: QuotaPoolsFile,
    /**
     * Batch updates this client keeps in flight per pool. The server admits 10 in-flight updates per workflow and a
     * pool pushed past that stalls; with batching one in flight is also the fastest (bench/README.md), and ten
     * processes can share a pool.
     */
    private readonly maxInFlight = 1,
  ) {}

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
          staticSummary: `quota pool ${pool}`,
        }),
        this.client.workflow.start(QUOTA_MONITOR_WORKFLOW, {
          workflowId: quotaMonitorWorkflowId(pool),
          taskQueue: LIFECYCLE_TASK_QUEUE,
          args: [{ pool }],
          workflowIdConflictPolicy: 'USE_EXISTING',
          staticSummary: `quota monitor of pool ${pool}`,
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
    // Checked with the pool's own schema first: a malformed request is a ZodError here, never sent.
    ReserveQuotaInput.parse(request);
    // Idempotent by lease id: a reservation sent again is decided again (or answered with the lease it holds).
    const first = await this.submit<ReserveQuotaResult>(pool, { op: 'reserve', input: request });
    if (first.granted || !first.queued) return first;
    const handle = this.client.workflow.getHandle(quotaPoolWorkflowId(pool));
    let last = first;
    let delay = 50;
    for (;;) {
      options.onQueued?.(last.queued ?? { position: 0, deadline: '' });
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 1000);
      const state = await handle.query(reservationQuery, request.leaseId);
      if (state.state === 'granted') return { granted: true, lease: state.lease, waitedMs: state.waitedMs };
      if (state.state === 'refused') return state.result;
      if (state.state === 'queued') {
        last = { ...last, reason: state.reason, shortfalls: state.shortfalls, queued: state };
        continue;
      }
      // Neither held, queued nor refused: it was granted and already released or expired, or the pool lost it.
      return {
        granted: false,
        reason: 'wait-timeout',
        shortfalls: last.shortfalls,
        earliestRelease: null,
        message: `pool "${pool}" no longer knows reservation ${request.leaseId} (granted and expired, or dropped)`,
      };
    }
  }

  /** Extends a lease's TTL; null when the pool no longer holds it (released or expired). */
  async renew(pool: string, input: RenewQuotaInput): Promise<QuotaLease | null> {
    RenewQuotaInput.parse(input);
    return orNull(() => this.submit<QuotaLease | null>(pool, { op: 'renew', input }));
  }

  /** Releases a lease; null when it was not held. */
  async release(pool: string, input: ReleaseQuotaInput): Promise<QuotaLease | null> {
    ReleaseQuotaInput.parse(input);
    return orNull(() => this.submit<QuotaLease | null>(pool, { op: 'release', input }));
  }

  /** The pool's state; null when the pool has never been used (nothing reserved yet). */
  async state(pool: string): Promise<QuotaPoolState | null> {
    this.config(pool);
    return orNull(() => this.client.workflow.getHandle(quotaPoolWorkflowId(pool)).query(poolStateQuery));
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
