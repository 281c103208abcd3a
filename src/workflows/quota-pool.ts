import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  assess,
  breakdown,
  describeRefusal,
  faultyPipelines,
  LeaseBook,
  poolFullByCount,
  poolFullBySize,
  resourceUsage,
  runOf,
  soonestToExpire,
  type UsageSample,
} from '../domain/quota';
import {
  fitCarried,
  isPacked,
  jsonBytes,
  packCarried,
  unpackCarried,
  type CarriedState,
  type PackedCarried,
} from '../domain/quota-carry';
import {
  configurePoolUpdate,
  poolStateQuery,
  quotaBatchUpdate,
  quotaDecidedSignal,
  releaseQuotaUpdate,
  renewQuotaUpdate,
  reservationQuery,
  reserveQuotaUpdate,
} from '../shared/messages';
import { ErrorType } from '../shared/errors';
import { LeaseId } from '../shared/names';
import { NonceLedger, OperationTarget } from '../shared/signed-operation';
import {
  ownerDigest,
  PoolStateRead,
  QuotaBatch,
  QuotaPoolConfig as QuotaPoolConfigSchema,
  ReleaseQuotaInput,
  RenewQuotaInput,
  ReserveQuotaInput,
  Resources,
  type QuotaJournalEntry,
  type QuotaLease,
  type QuotaPoolConfig,
  type QuotaPoolState,
  type QuotaRun,
  type QuotaShortfall,
  type QuotaBatchResult,
  type QuotaWaiting,
  type RefusalReason,
  type ReservationState,
  type ReserveQuotaRequest,
  type ReserveQuotaResult,
} from '../shared/quota';
import { activityFailure } from './failures';
import { guardedUpdate, guardedValidator, parseInput, refuse } from './handlers';
import { setLogContext } from './log-context';
import { backoff } from './activity-options';

/** Entity state carried across continue-as-new (plain JSON). */
export interface QuotaPoolCarried {
  leases: QuotaLease[];
  waiting: QuotaWaiting[];
  timedOut?: [string, ReserveQuotaResult & { granted: false }][];
  journal: QuotaJournalEntry[];
  runs: QuotaRun[];
  samples: UsageSample[];
  capRefusals: [string, number[]][];
  stats: Omit<QuotaPoolState['stats'], 'opsThisRun'>;
  /** Lease id → SHA-256 of its owner key, for granted and waiting reservations (never shown by a query). */
  owners?: [string, string][];
  /** Nonces of signed operations already used here, oldest first (bounded). */
  nonces?: string[];
}

export interface QuotaPoolInput {
  config: QuotaPoolConfig;
  /**
   * The state of the run before: packed (`{ v: 1, ... }`, src/domain/quota-carry.ts) from runs with BOUNDED_STATE,
   * plain from runs before it. A run reads either.
   */
  carried?: QuotaPoolCarried | PackedCarried;
}

const JOURNAL_LIMIT = 1000;

/**
 * Marks pools whose leases are owned: the owner key a lease was reserved with renews and releases it;
 * anyone else needs the platform policy's leave, asked of the worker. Runs before it keep the open behaviour.
 */
const LEASE_OWNERS = 'lease-owners';
/**
 * Marks pools that tell a waiting workflow when its queued reservation is decided (the request's `notify`: the
 * `quotaDecided` signal), and let an owner withdraw a queued reservation by releasing it. Runs before it answered only
 * the waiters' questions, and kept a withdrawn waiter queued until its grant or its deadline.
 */
export const QUOTA_DECISION_SIGNALS = 'quota-decision-signals';
/**
 * Marks pools that stay bounded: they continue as new with their state packed (src/domain/quota-carry.ts,
 * about 70 bytes a lease instead of 317), trimmed to CARRY_BUDGET_BYTES by dropping their oldest history if need be,
 * and refuse a reservation past `maxLeases` or past HELD_BUDGET_BYTES with `pool-full`. Runs before it carried the plain
 * state, unbounded: past about 5,900 leases a stock server refused it (2 MB) and the pool stalled.
 */
export const BOUNDED_STATE = 'bounded-state';

/**
 * Most a pool's continue-as-new input (configuration and packed state) may weigh: a stock server refuses a payload past
 * 2 MB (and warns from 512 KB). Over it, the pool drops its oldest history (journal, runs, usage samples, timed-out
 * reservations) until it fits.
 */
export const CARRY_BUDGET_BYTES = 1.5 * 1024 * 1024;
/**
 * Most what a pool must carry whatever it drops (leases, waiting reservations, owner digests, nonces, configuration)
 * may weigh: a reservation that would take it past this is refused (`pool-full`), so that it always fits the budget
 * with room for some history. With the leases the bench makes (68 bytes each) the count bound comes first.
 */
export const HELD_BUDGET_BYTES = 1.35 * 1024 * 1024;
/**
 * What one more lease or waiting reservation may add to the packed state at most, beyond its caller-chosen strings:
 * its owner digest (43 bytes) and its numbers (times, TTL, references). An estimate from above: the pool measures the
 * real size before it lets the estimates pass the budget.
 */
const ENTRY_OVERHEAD_BYTES = 160;

/**
 * The worker's check of a privileged lease operation. It runs on the pool's own task queue (`ml-lifecycle`, where the
 * control worker registers the control-plane activities); an operator waits for the answer, so it gives up within
 * about a minute rather than retrying for long.
 */
/**
 * Reservations as runs from before LEASE_OWNERS applied them: any amount above 0 (no 0.001 minimum), so their
 * histories replay as they ran. New updates are checked by the validators with the current schema either way.
 */
const ReserveQuotaInputBefore = ReserveQuotaInput.extend({
  resources: Resources.refine((r) => Object.values(r).some((v) => v > 0), 'request at least one resource'),
});

const policyCheck = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: backoff('1 second', '10 seconds', 5),
});

const RUNS_LIMIT = 500;
const SAMPLES_LIMIT = 2000;

interface Waiter {
  entry: QuotaWaiting;
  request: ReserveQuotaRequest;
  /** Why it could not be granted when last tried. */
  last?: { reason: RefusalReason; shortfalls: QuotaShortfall[] };
}

/**
 * One entity workflow per quota pool. Every reservation, renewal and release is an update on it, so the pool's
 * history is the audit trail and a single writer keeps "never above capacity or a cap" without locks. Leases expire
 * after their TTL unless renewed, reservations may wait in a priority/FIFO queue, and the whole state continues as new
 * intact. A lease belongs to the key it was reserved with: its owner renews and releases it at once; anyone else
 * needs the platform policy's leave, the one thing the pool asks of an activity (`authorizeOperation`). Its alerts
 * come from the pool's monitor workflow, which reads its state.
 */
export async function quotaPoolWorkflow(input: QuotaPoolInput): Promise<void> {
  let config = parseInput(QuotaPoolConfigSchema, input?.config, 'pool configuration');
  setLogContext({ pool: config.name });
  // Decided once per run: every handler of this run follows the same rule.
  const owned = patched(LEASE_OWNERS);
  const tellsWaiters = patched(QUOTA_DECISION_SIGNALS);
  const bounded = patched(BOUNDED_STATE);
  const carried = readCarried(config.name, input.carried);
  // Leases with their usage and times kept as they change: no operation walks every lease.
  const leases = new LeaseBook(carried?.leases ?? []);
  const journal: QuotaJournalEntry[] = carried?.journal ?? [];
  const runs: QuotaRun[] = carried?.runs ?? [];
  const samples: UsageSample[] = carried?.samples ?? [];
  const capRefusals = new Map<string, number[]>(carried?.capRefusals ?? []);
  const stats = { grants: 0, refusals: 0, releases: 0, expirations: 0, continuedAsNew: 0, ...carried?.stats };
  // Waiting reservations keep their place, and everything their grant needs, across continue-as-new.
  const queue: Waiter[] = (carried?.waiting ?? []).map((entry) => ({
    entry,
    request: {
      leaseId: entry.leaseId,
      holder: entry.holder,
      kind: entry.kind,
      resources: entry.resources,
      wait: {
        timeoutMs: Math.max(Date.parse(entry.deadline) - Date.parse(entry.enqueuedAt), 1),
        priority: entry.priority,
      },
      ...(entry.ttlMs !== undefined ? { ttlMs: entry.ttlMs } : {}),
      ...(entry.expectedDurationMs !== undefined ? { expectedDurationMs: entry.expectedDurationMs } : {}),
      ...(entry.profile !== undefined ? { profile: entry.profile } : {}),
    },
  }));
  /** Reservations that waited in vain, by lease id, for callers watching them (bounded). */
  const timedOut = new Map<string, ReserveQuotaResult & { granted: false }>(carried?.timedOut ?? []);
  /**
   * Owner digests by lease id, of granted and waiting reservations. Kept apart from the leases so that no answer or
   * query can show one; a lease without a digest (reserved without a key, or before owners) has no owner.
   */
  const owners = new Map<string, string>(carried?.owners ?? []);
  const usedNonces = new NonceLedger(carried?.nonces);
  let ops = 0;
  let dirty = false;

  const nowMs = () => Date.now();
  const iso = (ms = nowMs()) => new Date(ms).toISOString();
  const record = (entry: Omit<QuotaJournalEntry, 'at'>) => {
    journal.push({ at: iso(), ...entry });
    if (journal.length > JOURNAL_LIMIT) journal.splice(0, journal.length - JOURNAL_LIMIT);
  };
  /** Usage changed: journal the operation with the usage after it, and keep a sample for the burn rate. */
  const changed = (entry?: Omit<QuotaJournalEntry, 'at' | 'used'>) => {
    dirty = true;
    const used = leases.used();
    if (entry) record({ ...entry, used });
    samples.push({ atMs: nowMs(), used });
    // Keep the samples of the burn window plus the one before it.
    const from = nowMs() - config.alerts.burnWindow;
    const firstInWindow = samples.findIndex((s) => s.atMs > from);
    if (firstInWindow > 1) samples.splice(0, firstInWindow - 1);
    if (samples.length > SAMPLES_LIMIT) samples.splice(0, samples.length - SAMPLES_LIMIT);
  };
  const endRun = (
    lease: QuotaLease,
    ended: QuotaRun['ended'],
    usage?: QuotaRun['usage'],
    profile?: QuotaRun['profile'],
    acting?: Acting,
  ) => {
    owners.delete(lease.leaseId);
    const merged = lease.profile || profile ? { ...lease.profile, ...profile } : undefined;
    runs.push({
      leaseId: lease.leaseId,
      holder: lease.holder,
      kind: lease.kind,
      resources: lease.resources,
      grantedAt: lease.grantedAt,
      endedAt: iso(),
      heldMs: nowMs() - Date.parse(lease.grantedAt),
      ended,
      ...(merged ? { profile: merged } : {}),
      ...(usage ? { usage } : {}),
      ...(acting ? { releasedBy: acting.by, ...signedWith(acting) } : {}),
    });
    if (runs.length > RUNS_LIMIT) runs.splice(0, runs.length - RUNS_LIMIT);
  };

  const ttlOf = (requested: number | null | undefined) => (requested === undefined ? config.leaseTtl : requested);
  const grant = (req: ReserveQuotaRequest, waitedMs: number): ReserveQuotaResult => {
    const now = nowMs();
    const ttlMs = ttlOf(req.ttlMs);
    const lease: QuotaLease = {
      leaseId: req.leaseId,
      holder: req.holder,
      kind: req.kind,
      resources: req.resources,
      grantedAt: iso(now),
      renewedAt: iso(now),
      expiresAt: ttlMs === null ? null : iso(now + ttlMs),
      ttlMs,
      ...(req.expectedDurationMs ? { expectedReleaseAt: iso(now + req.expectedDurationMs) } : {}),
      ...(req.profile ? { profile: req.profile } : {}),
      waitedMs,
    };
    leases.set(lease.leaseId, lease);
    stats.grants++;
    changed({ op: 'grant', leaseId: lease.leaseId, holder: lease.holder, resources: lease.resources });
    return { granted: true, lease, waitedMs };
  };
  /** A negative answer: why, what is short, and when quota holding it is expected back. */
  const answer = (
    reason: RefusalReason,
    shortfalls: QuotaShortfall[],
    detail?: string,
  ): ReserveQuotaResult & { granted: false } => ({
    granted: false,
    reason,
    shortfalls,
    earliestRelease: leases.earliestRelease(shortfalls.map((s) => s.resource)),
    message: describeRefusal(config.name, reason, shortfalls, detail),
  });
  const refusal = (
    req: ReserveQuotaRequest,
    reason: RefusalReason,
    shortfalls: QuotaShortfall[],
    detail?: string,
  ): ReserveQuotaResult & { granted: false } => {
    stats.refusals++;
    owners.delete(req.leaseId);
    if (reason === 'pipeline-cap') {
      const times = capRefusals.get(req.holder) ?? [];
      times.push(nowMs());
      capRefusals.set(req.holder, times.slice(-Math.max(config.alerts.faultyAfter * 2, 200)));
      dirty = true;
    }
    record({ op: 'refuse', leaseId: req.leaseId, holder: req.holder, resources: req.resources, reason });
    return answer(reason, shortfalls, detail);
  };

  /** What the pool carries into its next run, as it stands. */
  const snapshot = (): CarriedState & { stats: typeof stats } => ({
    leases: [...leases.values()],
    waiting: queue.map((w) => w.entry),
    timedOut: [...timedOut],
    journal,
    runs,
    samples,
    capRefusals: [...capRefusals],
    stats,
    owners: [...owners],
    nonces: usedNonces.toArray(),
  });
  /** The continue-as-new input's bytes with no history: what the pool must carry whatever it drops. */
  const heldBytes = (): number => {
    const bare = { ...snapshot(), journal: [], runs: [], samples: [], timedOut: [], capRefusals: [] };
    return jsonBytes({ config, carried: packCarried(bare, nowMs()) });
  };
  /**
   * The bound of a bounded pool (BOUNDED_STATE). Counting is cheap; measuring the packed state is not (tens of ms at
   * 20,000 leases), so each admitted reservation adds an estimate from above of what it weighs, and the pool measures
   * only when the estimates would pass the budget. Found full by size, it stays full, without measuring, until it
   * holds fewer leases and waiting reservations.
   */
  let heldMeasured: number | undefined;
  let admittedSince = 0;
  let fullAtCount: number | undefined;
  /** Why a new reservation cannot be taken (the detail of its `pool-full` refusal), or undefined when it can. */
  const fullness = (req: ReserveQuotaRequest): string | undefined => {
    const held = leases.size + queue.length;
    if (held >= config.maxLeases) return poolFullByCount(held, config.maxLeases);
    if (fullAtCount !== undefined && held >= fullAtCount && heldMeasured !== undefined)
      return poolFullBySize(held, heldMeasured, HELD_BUDGET_BYTES);
    const more =
      ENTRY_OVERHEAD_BYTES + jsonBytes([req.leaseId, req.holder, req.resources, req.profile ?? 0, req.notify ?? 0]);
    if (heldMeasured === undefined || heldMeasured + admittedSince + more > HELD_BUDGET_BYTES) {
      heldMeasured = heldBytes();
      admittedSince = 0;
      fullAtCount = undefined;
      if (heldMeasured + more > HELD_BUDGET_BYTES) {
        fullAtCount = held;
        return poolFullBySize(held, heldMeasured, HELD_BUDGET_BYTES);
      }
    }
    admittedSince += more;
    return undefined;
  };

  /**
   * Wakes the workflow waiting on a queued reservation (its `notify`): the reservation was decided and the waiter asks
   * where it stands. A waiter that is gone (ended, or never was) changes nothing here.
   */
  const telling = new Set<Promise<void>>();
  const tell = (waiter: Waiter) => {
    const to = waiter.entry.notify;
    if (!tellsWaiters || !to) return;
    const sent: Promise<void> = getExternalWorkflowHandle(to.workflowId)
      .signal(quotaDecidedSignal, { pool: config.name, leaseId: waiter.entry.leaseId })
      .catch((err: unknown) =>
        log.info('the workflow waiting on a reservation could not be told', {
          leaseId: waiter.entry.leaseId,
          workflowId: to.workflowId,
          error: String(err),
        }),
      )
      .finally(() => telling.delete(sent));
    telling.add(sent);
  };

  /** Queue order: higher priority first, then first come. */
  const ordered = () =>
    [...queue].sort(
      (a, b) => b.entry.priority - a.entry.priority || a.entry.enqueuedAt.localeCompare(b.entry.enqueuedAt),
    );

  /**
   * Grants waiting reservations in queue order. A reservation that does not fit holds back the resources it is short
   * of from everyone behind it, so a stream of small requests cannot starve a big one; a reservation stopped by its
   * own cap holds nothing back.
   */
  const pump = () => {
    const blocked = new Set<string>();
    for (const waiter of ordered()) {
      const a = assess(config, leases, waiter.request, blocked);
      if (a.fits) {
        queue.splice(queue.indexOf(waiter), 1);
        grant(waiter.request, nowMs() - Date.parse(waiter.entry.enqueuedAt));
        tell(waiter);
        continue;
      }
      waiter.last = { reason: a.reason!, shortfalls: a.shortfalls };
      if (a.reason === 'capacity' || a.reason === 'queued-ahead')
        for (const s of a.shortfalls) if (s.scope === 'pool') blocked.add(s.resource);
    }
  };

  /** Resources promised to waiting reservations that come before a new one of `priority`. */
  const blockedFor = (priority: number): Set<string> => {
    const blocked = new Set<string>();
    for (const waiter of ordered()) {
      if (waiter.entry.priority < priority) break;
      const a = assess(config, leases, waiter.request, blocked);
      if (!a.fits && (a.reason === 'capacity' || a.reason === 'queued-ahead'))
        for (const s of a.shortfalls) if (s.scope === 'pool') blocked.add(s.resource);
    }
    return blocked;
  };

  const position = (waiter: Waiter) => ordered().indexOf(waiter) + 1;
  const queuedResult = (waiter: Waiter): ReserveQuotaResult => {
    const reason = waiter.last?.reason ?? 'queued-ahead';
    const shortfalls = waiter.last?.shortfalls ?? [];
    const answered = answer(reason, shortfalls);
    return {
      ...answered,
      message: `queued in pool "${config.name}" at place ${position(waiter)} until ${waiter.entry.deadline}: ${answered.message}`,
      queued: {
        position: position(waiter),
        deadline: waiter.entry.deadline,
        ...(tellsWaiters && waiter.entry.notify ? { tells: true } : {}),
      },
    };
  };

  function reserve(raw: unknown): ReserveQuotaResult {
    ops++;
    const req = parseInput(owned ? ReserveQuotaInput : ReserveQuotaInputBefore, raw, 'reservation');
    const existing = leases.get(req.leaseId);
    if (existing) return { granted: true, lease: existing, waitedMs: existing.waitedMs };
    const queued = queue.find((w) => w.entry.leaseId === req.leaseId);
    // The same reservation again (a retried call): it keeps its place.
    if (queued) return queuedResult(queued);
    timedOut.delete(req.leaseId);
    // The lease (or its place in the queue) belongs to the key it is reserved with; the pool keeps only its digest.
    if (owned && req.ownerKey !== undefined) owners.set(req.leaseId, ownerDigest(req.ownerKey));
    // Bounded: refused at once, queue or not (refusal() forgets its owner digest).
    const full = bounded ? fullness(req) : undefined;
    if (full !== undefined) return refusal(req, 'pool-full', [], full);
    const priority = req.wait?.priority ?? 0;
    const a = assess(config, leases, req, blockedFor(priority));
    if (a.fits) return grant(req, 0);
    if (!req.wait || a.reason === 'never-fits') return refusal(req, a.reason!, a.shortfalls);
    const timeoutMs = Math.min(req.wait.timeoutMs, config.maxWait);
    const now = nowMs();
    const waiter: Waiter = {
      entry: {
        leaseId: req.leaseId,
        holder: req.holder,
        kind: req.kind,
        resources: req.resources,
        priority,
        enqueuedAt: iso(now),
        deadline: iso(now + timeoutMs),
        ...(req.ttlMs !== undefined ? { ttlMs: req.ttlMs } : {}),
        ...(req.expectedDurationMs !== undefined ? { expectedDurationMs: req.expectedDurationMs } : {}),
        ...(req.profile !== undefined ? { profile: req.profile } : {}),
        ...(tellsWaiters && req.notify !== undefined ? { notify: req.notify } : {}),
      },
      request: req,
      last: { reason: a.reason!, shortfalls: a.shortfalls },
    };
    queue.push(waiter);
    record({ op: 'enqueue', leaseId: req.leaseId, holder: req.holder, resources: req.resources });
    dirty = true;
    pump();
    const lease = leases.get(req.leaseId);
    return lease ? { granted: true, lease, waitedMs: 0 } : queuedResult(waiter);
  }

  setHandler(reservationQuery, (raw): ReservationState => {
    const leaseId = parseInput(LeaseId, raw, 'lease id');
    const lease = leases.get(leaseId);
    if (lease) return { state: 'granted', lease, waitedMs: lease.waitedMs };
    const waiter = queue.find((w) => w.entry.leaseId === leaseId);
    if (waiter)
      return {
        state: 'queued',
        position: position(waiter),
        deadline: waiter.entry.deadline,
        reason: waiter.last?.reason ?? 'queued-ahead',
        shortfalls: waiter.last?.shortfalls ?? [],
        ...(tellsWaiters && waiter.entry.notify ? { tells: true } : {}),
      };
    const refused = timedOut.get(leaseId);
    return refused ? { state: 'refused', result: refused } : { state: 'unknown' };
  });

  /** Takes a reservation out of the queue when its wait is over, keeping the refusal for whoever watches it. */
  function timeOut(waiter: Waiter): void {
    const i = queue.indexOf(waiter);
    if (i >= 0) queue.splice(i, 1);
    // refusal() forgets its owner digest.
    const r = refusal(waiter.request, 'wait-timeout', waiter.last?.shortfalls ?? []);
    const cause = waiter.last ? `: ${describeRefusal(config.name, waiter.last.reason, waiter.last.shortfalls)}` : '';
    timedOut.set(waiter.entry.leaseId, {
      ...r,
      message: `pool "${config.name}": still not granted after waiting until ${waiter.entry.deadline}${cause}`,
    });
    if (timedOut.size > RUNS_LIMIT) timedOut.delete(timedOut.keys().next().value!);
    dirty = true;
    tell(waiter);
  }

  /** Whether `ownerKey` is the key `leaseId` was reserved with. */
  const isOwner = (leaseId: string, ownerKey: string | undefined): boolean => {
    const digest = owners.get(leaseId);
    return digest !== undefined && ownerKey !== undefined && ownerDigest(ownerKey) === digest;
  };
  const notOwner = (op: LeaseOp, leaseId: string, batched: boolean) =>
    `pool "${config.name}": ${op} of lease ${leaseId} without its owner's key ` +
    (batched
      ? 'is a privileged operation, not taken in a batch: send it on its own (the renewQuota/releaseQuota update) ' +
        'with `by` (mlctl quota renew|release --as <you> [--key <file>])'
      : 'is a privileged operation: say who you are (`by`; mlctl --as), a quota operator or the lease holder, ' +
        'and sign it where the platform policy requires (mlctl --key)');

  /**
   * Whether someone other than its owner may act on `lease`: the worker checks `by` and the signature against the
   * platform policy and keyring as they are now (quota operators, or the lease's holder acting on its own lease), and
   * the claim's nonce must be new here. Refusals are Unauthorized failures and change nothing.
   */
  async function authorize(
    op: LeaseOp,
    req: RenewQuotaRequest | ReleaseQuotaRequest,
    lease: QuotaLease,
  ): Promise<Acting> {
    if (req.by === undefined) throw refuse(notOwner(op, req.leaseId, false), ErrorType.Unauthorized);
    let verdict;
    try {
      // A pool is no model: with model '' only a `*` rule applies, else the policy's defaults and `quota.operators`.
      verdict = await policyCheck.authorizeOperation({
        model: '',
        request: {
          op: op === 'renew' ? 'quota-renew' : 'quota-release',
          by: req.by,
          ...(req.signed !== undefined ? { signed: req.signed } : {}),
          target: OperationTarget.lease(config.name, req.leaseId),
          specDigest: '',
          artifactDigest: '',
          holder: lease.holder,
        },
      });
    } catch (err) {
      // The policy or keyring cannot be used (PolicyInvalid), or the worker did not answer: nothing is done.
      const cause = activityFailure(err);
      const why = cause?.message ?? (err instanceof Error ? err.message : String(err));
      throw refuse(
        `pool "${config.name}": cannot check ${op} of lease ${req.leaseId}: ${why}`,
        cause?.type === ErrorType.PolicyInvalid ? ErrorType.PolicyInvalid : ErrorType.Unauthorized,
      );
    }
    if (!verdict.ok) throw refuse(verdict.reason, ErrorType.Unauthorized);
    if (verdict.nonce !== null) {
      if (!usedNonces.take(verdict.nonce))
        throw refuse(`the claim's nonce ${verdict.nonce} was already used: replayed`, ErrorType.Unauthorized);
      dirty = true;
    }
    return { by: verdict.by, keyId: verdict.keyId };
  }

  /**
   * Runs `apply` on the lease `req` names: at once for its owner, after the worker's check for anyone else (refused
   * in a batch). Null when the pool does not hold the lease (nothing is asked), or no longer holds the one checked.
   */
  function onLease<R>(
    op: LeaseOp,
    req: RenewQuotaRequest | ReleaseQuotaRequest,
    batched: boolean,
    apply: (lease: QuotaLease, acting?: Acting) => R,
  ): R | null | Promise<R | null> {
    const lease = leases.get(req.leaseId);
    if (!lease) return null;
    if (!owned || isOwner(req.leaseId, req.ownerKey)) return apply(lease);
    if (batched) throw refuse(notOwner(op, req.leaseId, true), ErrorType.Unauthorized);
    return authorize(op, req, lease).then((acting) => {
      // Released (and perhaps granted again to someone else) while the worker checked: not the lease checked.
      const now = leases.get(req.leaseId);
      if (!now || now.grantedAt !== lease.grantedAt || now.holder !== lease.holder) return null;
      log.info(`lease ${op === 'renew' ? 'renewed' : 'released'} by someone other than its owner`, {
        leaseId: req.leaseId,
        holder: lease.holder,
        by: acting.by,
        keyId: acting.keyId,
      });
      return apply(now, acting);
    });
  }

  function renew(raw: unknown, batched = false): QuotaLease | null | Promise<QuotaLease | null> {
    ops++;
    const req = parseInput(RenewQuotaInput, raw, 'renewal');
    return onLease('renew', req, batched, (lease, acting) => {
      const ttlMs = req.ttlMs === undefined ? (lease.ttlMs ?? config.leaseTtl) : req.ttlMs;
      const now = nowMs();
      const renewed: QuotaLease = {
        ...lease,
        renewedAt: iso(now),
        ttlMs,
        expiresAt: ttlMs === null ? null : iso(now + ttlMs),
      };
      leases.set(lease.leaseId, renewed);
      // The owner's renewals are routine (a trainer renews every few seconds); someone else's is on the record.
      if (acting)
        record({ op: 'renew', leaseId: lease.leaseId, holder: lease.holder, by: acting.by, ...signedWith(acting) });
      dirty = true;
      return renewed;
    });
  }

  function release(raw: unknown, batched = false): QuotaLease | null | Promise<QuotaLease | null> {
    ops++;
    const req = parseInput(ReleaseQuotaInput, raw, 'release');
    if (tellsWaiters && !leases.has(req.leaseId)) withdraw(req);
    return onLease('release', req, batched, (lease, acting) => {
      leases.delete(lease.leaseId);
      stats.releases++;
      endRun(lease, 'released', req.usage, req.profile, acting);
      changed({
        op: 'release',
        leaseId: lease.leaseId,
        holder: lease.holder,
        resources: lease.resources,
        ...(acting ? { by: acting.by, ...signedWith(acting) } : {}),
      });
      pump();
      return lease;
    });
  }

  /**
   * Its owner's release of a reservation still queued takes it out of the queue (a lifecycle cancelled or aborted
   * while it waited): it is never granted, and the reservations behind it move up. Anyone else's changes nothing.
   */
  function withdraw(req: ReleaseQuotaRequest): void {
    const waiter = queue.find((w) => w.entry.leaseId === req.leaseId);
    if (!waiter || (owned && !isOwner(req.leaseId, req.ownerKey))) return;
    queue.splice(queue.indexOf(waiter), 1);
    owners.delete(req.leaseId);
    record({ op: 'withdraw', leaseId: req.leaseId, holder: waiter.entry.holder, resources: waiter.entry.resources });
    dirty = true;
    pump();
  }

  /**
   * A single renew/release update's validator: the input is well formed, and an operation on someone else's lease
   * says who acts (refused here, before anything is written, when it does not).
   */
  const validateLeaseOp = (op: LeaseOp, raw: unknown) => {
    const req =
      op === 'renew' ? parseInput(RenewQuotaInput, raw, 'renewal') : parseInput(ReleaseQuotaInput, raw, 'release');
    if (owned && leases.has(req.leaseId) && !isOwner(req.leaseId, req.ownerKey) && req.by === undefined)
      throw refuse(notOwner(op, req.leaseId, false), ErrorType.Unauthorized);
  };

  setHandler(reserveQuotaUpdate, guardedUpdate('reserveQuota', reserve), {
    validator: guardedValidator('reserveQuota', (raw) => void parseInput(ReserveQuotaInput, raw, 'reservation')),
  });
  setHandler(
    renewQuotaUpdate,
    guardedUpdate('renewQuota', (raw: unknown) => renew(raw)),
    { validator: guardedValidator('renewQuota', (raw) => validateLeaseOp('renew', raw)) },
  );
  setHandler(
    releaseQuotaUpdate,
    guardedUpdate('releaseQuota', (raw: unknown) => release(raw)),
    { validator: guardedValidator('releaseQuota', (raw) => validateLeaseOp('release', raw)) },
  );
  // Many operations in one update, applied in order: one workflow task for a burst of pipelines (QuotaClient batches).
  // Owners' operations only: one that needs the worker's check would hold up the whole batch, so it is refused alone.
  const batchOps = {
    reserve,
    renew: (raw: unknown) => renew(raw, true) as QuotaLease | null,
    release: (raw: unknown) => release(raw, true) as QuotaLease | null,
  } as const;
  setHandler(
    quotaBatchUpdate,
    guardedUpdate('quotaBatch', (raw: unknown): QuotaBatchResult[] =>
      parseInput(QuotaBatch, raw, 'batch').map((item): QuotaBatchResult => {
        try {
          return { ok: true, value: batchOps[item.op](item.input) };
        } catch (err) {
          const type = err instanceof ApplicationFailure && err.type ? { type: err.type } : {};
          return { ok: false, error: err instanceof Error ? err.message : String(err), ...type };
        }
      }),
    ),
    { validator: guardedValidator('quotaBatch', (raw) => void parseInput(QuotaBatch, raw, 'batch')) },
  );

  /** The new configuration of this pool, or a typed refusal (another pool's name, an invalid configuration). */
  const nextConfig = (raw: unknown): QuotaPoolConfig => {
    const next = parseInput(QuotaPoolConfigSchema, raw, 'pool configuration');
    if (next.name !== config.name)
      throw refuse(`pool "${config.name}" cannot be reconfigured as "${next.name}"`, ErrorType.InvalidInput);
    return next;
  };
  setHandler(
    configurePoolUpdate,
    guardedUpdate('configurePool', (raw: unknown) => {
      const next = nextConfig(raw);
      const same = JSON.stringify(next) === JSON.stringify(config);
      if (!same) {
        config = next;
        changed({ op: 'configure' });
        pump();
      }
      return { changed: !same };
    }),
    { validator: guardedValidator('configurePool', (raw) => void nextConfig(raw)) },
  );

  // The whole state for people (mlctl), or a summary for the pool's monitor: an activity result past 2 MB would break
  // the monitor's history, and the server refuses a workflow task's completion past 4 MB with every answer in it.
  setHandler(poolStateQuery, (raw?: unknown): QuotaPoolState => {
    const read = raw === undefined || raw === null ? {} : parseInput(PoolStateRead, raw, 'pool state read');
    const now = nowMs();
    const faulty = faultyPipelines(capRefusals, config, now);
    if (read.summary) {
      const used = leases.used();
      const list = read.list;
      const matching = list ? [...leases.values()].filter((l) => list.kind === undefined || l.kind === list.kind) : [];
      const listed = list ? soonestToExpire(matching, list.limit) : [];
      // The pipelines asked about: `holder`, and those of the leases listed.
      const pipelines = new Set(listed.map((l) => l.holder));
      if (read.holder !== undefined) pipelines.add(read.holder);
      return {
        name: config.name,
        config,
        capacity: config.capacity,
        at: iso(now),
        leases: listed,
        used,
        resources: resourceUsage(config.capacity, used, samples, now, config.alerts.burnWindow),
        byKind: leases.byKind(),
        byPipeline: Object.fromEntries([...pipelines].map((h) => [h, leases.heldBy(h)])),
        waiting: list
          ? ordered()
              .slice(0, list.limit)
              .map((w) => w.entry)
          : [],
        faulty: faulty.map((f) => ({ holder: f.holder, capRefusals: f.capRefusals, since: iso(f.sinceMs) })),
        runs: runs.filter((r) => r.ended === 'expired' || (read.runsOf !== undefined && runOf(r, read.runsOf))),
        journal: list ? journal.slice(-list.limit) : [],
        stats: { ...stats, opsThisRun: ops },
        counts: { leases: leases.size, waiting: queue.length, ...(list ? { matching: matching.length } : {}) },
      };
    }
    const { used, byKind, byPipeline } = breakdown(leases.values());
    return {
      name: config.name,
      config,
      capacity: config.capacity,
      at: iso(now),
      leases: [...leases.values()],
      used,
      resources: resourceUsage(config.capacity, used, samples, now, config.alerts.burnWindow),
      byKind,
      byPipeline,
      waiting: ordered().map((w) => w.entry),
      faulty: faulty.map((f) => ({ holder: f.holder, capRefusals: f.capRefusals, since: iso(f.sinceMs) })),
      runs,
      journal,
      stats: { ...stats, opsThisRun: ops },
    };
  });

  const expireDue = () => {
    const now = nowMs();
    let expired = false;
    for (const lease of leases.expired(now)) {
      leases.delete(lease.leaseId);
      stats.expirations++;
      endRun(lease, 'expired');
      changed({ op: 'expire', leaseId: lease.leaseId, holder: lease.holder, resources: lease.resources });
      expired = true;
    }
    if (expired) pump();
  };

  const nextWakeMs = (): number | undefined => {
    let next = leases.nextExpiryMs();
    for (const w of queue) next = Math.min(next ?? Infinity, Date.parse(w.entry.deadline));
    if (capRefusals.size > 0) next = Math.min(next ?? Infinity, nowMs() + config.alerts.faultyWindow);
    return next;
  };

  /** Forgets cap refusals older than the window (the faulty flag is computed from what is left). */
  const pruneCapRefusals = () => {
    const from = nowMs() - config.alerts.faultyWindow;
    for (const [holder, times] of capRefusals) {
      const recent = times.filter((t) => t > from);
      if (recent.length === 0) capRefusals.delete(holder);
      else capRefusals.set(holder, recent);
    }
  };

  const shouldContinueAsNew = () =>
    workflowInfo().continueAsNewSuggested ||
    (config.continueAsNewAfterOps !== undefined && ops >= config.continueAsNewAfterOps);

  changed();
  dirty = true;
  for (;;) {
    const wake = nextWakeMs();
    await condition(() => dirty || shouldContinueAsNew(), wake === undefined ? undefined : Math.max(wake - nowMs(), 1));
    dirty = false;
    expireDue();
    for (const w of queue.filter((q) => Date.parse(q.entry.deadline) <= nowMs())) timeOut(w);
    pruneCapRefusals();
    if (shouldContinueAsNew()) break;
  }

  // Hand over the whole state (queue included) to the next run once every handler has finished, and once every waiter
  // told of its grant has the signal: a signal still in flight when the run continues as new is never delivered.
  for (;;) {
    await condition(allHandlersFinished);
    expireDue();
    if (telling.size === 0) break;
    await Promise.allSettled([...telling]);
  }
  stats.continuedAsNew++;
  await continueAsNew<typeof quotaPoolWorkflow>({ config, carried: bounded ? fitted() : snapshot() });

  /**
   * The state packed and under its budget: a continue-as-new input past the server's limit would stall the pool for
   * good. Over it, the oldest history goes first (logged); leases, waiting reservations, owners and nonces never do.
   */
  function fitted(): PackedCarried {
    const fit = fitCarried(snapshot(), nowMs(), CARRY_BUDGET_BYTES, (packed) => jsonBytes({ config, carried: packed }));
    if (Object.keys(fit.dropped).length > 0)
      log.warn('the pool dropped its oldest history to continue as new within its budget', {
        budgetBytes: CARRY_BUDGET_BYTES,
        bytesBefore: fit.before,
        bytes: fit.bytes,
        dropped: fit.dropped,
      });
    if (fit.over)
      log.error('the pool continues as new over its budget: its leases and waiting reservations alone pass it', {
        budgetBytes: CARRY_BUDGET_BYTES,
        bytes: fit.bytes,
        leases: leases.size,
        waiting: queue.length,
      });
    return fit.packed;
  }
}

type LeaseOp = 'renew' | 'release';
type RenewQuotaRequest = ReturnType<typeof RenewQuotaInput.parse>;
type ReleaseQuotaRequest = ReturnType<typeof ReleaseQuotaInput.parse>;

/** Someone other than a lease's owner, allowed by the platform policy: who, and the key they signed with. */
interface Acting {
  by: string;
  keyId: string | null;
}

const signedWith = (acting: Acting): { keyId?: string } => (acting.keyId ? { keyId: acting.keyId } : {});

/**
 * The state the run before carried, in either form, with what runs before some fields left out filled in. A packed
 * state that cannot be read fails the run with InvalidInput naming the problem: nothing of it is guessed.
 */
function readCarried(pool: string, raw: QuotaPoolCarried | PackedCarried | undefined): CarriedState | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (isPacked(raw)) {
    try {
      return unpackCarried(raw);
    } catch (err) {
      throw ApplicationFailure.create({
        type: ErrorType.InvalidInput,
        message: `pool "${pool}": ${err instanceof Error ? err.message : String(err)}`,
        nonRetryable: true,
      });
    }
  }
  const plain = raw as QuotaPoolCarried;
  return {
    leases: plain.leases ?? [],
    waiting: plain.waiting ?? [],
    timedOut: plain.timedOut ?? [],
    journal: plain.journal ?? [],
    runs: plain.runs ?? [],
    samples: plain.samples ?? [],
    capRefusals: plain.capRefusals ?? [],
    stats: plain.stats ?? {},
    owners: plain.owners ?? [],
    nonces: plain.nonces ?? [],
  };
}
