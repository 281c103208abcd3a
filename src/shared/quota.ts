import { sha256 } from '@noble/hashes/sha2';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils';
import { z } from 'zod';
import { MAX_DURATION_MS, PositiveDuration } from './duration';
import { HolderName, Identity, LeaseId, nameRecord, PoolName, ResourceName } from './names';

export { ResourceName } from './names';

/** Most resources one request, capacity or lease names. */
export const MAX_RESOURCES = 32;

/** Resource name → amount, e.g. `{ cpu: 4, memoryGiB: 16, 'gpu:t4': 1 }`. */
export const Resources = nameRecord(ResourceName, z.number().nonnegative().max(1e12, 'at most 1e12')).refine(
  (r) => Object.keys(r).length <= MAX_RESOURCES,
  `at most ${MAX_RESOURCES} resources`,
);
export type Resources = z.infer<typeof Resources>;

export const PipelineKind = z.enum(['training', 'serving', 'validation', 'data', 'experiment']);
export type PipelineKind = z.infer<typeof PipelineKind>;

/** A share of capacity, 0 < f <= 1. */
const Fraction = z.number().gt(0, 'a share of capacity above 0').max(1, 'a share of capacity of at most 1');

/**
 * A cap: one share of capacity for every resource (`0.5`), or a share per resource where `gpu:*` stands for every GPU
 * type (`{ 'gpu:*': 0.5 }`); resources not named are not capped.
 */
export const Cap = z.union([
  Fraction,
  nameRecord(
    z.string().regex(/^[a-z][a-zA-Z0-9]*(:([a-z0-9-]+|\*))?$/, 'a resource name or a pattern such as gpu:*'),
    Fraction,
  ),
]);
export type Cap = z.infer<typeof Cap>;

/** A pipeline the pool is expected to run (for `mlctl quota check`). */
export const RegisteredPipeline = z
  .object({
    name: z.string().min(1).max(256),
    kind: PipelineKind,
    resources: Resources,
    description: z.string().max(2000).optional(),
  })
  .strict();
export type RegisteredPipeline = z.infer<typeof RegisteredPipeline>;

/**
 * The default of a pool's `maxLeases`. A pool carries every lease and waiting reservation across continue-as-new in
 * one payload (packed: src/domain/quota-carry.ts), which it keeps under 1.5 MiB (`CARRY_BUDGET_BYTES` of
 * src/workflows/quota-pool.ts; a stock server refuses 2 MB): 0.7 MiB at 10,000 leases as `npm run bench:history` makes
 * them, 20,000 would still fit. Its monitor reads a summary (`{ summary: true }`, under 1 KiB at any size), and its work
 * per operation no longer grows with its leases: on a stock dev server the bench's pool reserves, renews, releases and
 * continues as new at 10,000 leases (docs/quota-pools.md). The default stays lower because of the whole state answer
 * (`poolStateQuery` without an argument), about 234 bytes a lease: a stock server refuses it past 2 MB (about 8,300
 * such leases), and two of them answered in one workflow task's completion pass the 4 MiB the server accepts, which
 * stalls the pool. mlctl, the lifecycle metrics, the serving monitor's quota check and hardware planning still read the
 * whole state. At 5,000 an answer is about 1.3 MiB: three fit in one completion.
 */
export const DEFAULT_MAX_LEASES = 5_000;
/**
 * The highest `maxLeases` a pool accepts: the carried state of 20,000 of the smallest leases (an owner digest alone is
 * 43 bytes) stays under its budget. Past about 8,000 the pool's whole state answer is the limit: see DEFAULT_MAX_LEASES.
 */
export const MAX_POOL_LEASES = 20_000;

export const QuotaPoolConfig = z
  .object({
    name: PoolName,
    capacity: Resources.refine((r) => Object.keys(r).length > 0, 'name at least one resource'),
    caps: z
      .object({
        /** Most any single pipeline (lease holder) may hold at once. */
        perPipeline: Cap.optional(),
        /** Most all pipelines of one kind may hold together, e.g. `{ experiment: 0.3 }`. */
        perKind: z.partialRecord(PipelineKind, Cap).default({}),
      })
      .strict()
      .default({ perKind: {} }),
    /** A lease not renewed within its TTL expires and its quota returns to the pool. */
    leaseTtl: PositiveDuration.default(10 * 60_000),
    /** Longest a reservation may wait in the pool's queue. */
    maxWait: PositiveDuration.default(60 * 60_000),
    alerts: z
      .object({
        /** Usage shares of a resource that raise an alert (the highest crossed sets the severity). */
        usageThresholds: z.array(Fraction).min(1).default([0.8, 0.95]),
        /** Alert when the burn rate says a resource runs out within this horizon. */
        forecastHorizon: PositiveDuration.default(60 * 60_000),
        /** Window over which the burn rate (change of usage per hour) is measured. */
        burnWindow: PositiveDuration.default(15 * 60_000),
        /** A pipeline refused by its cap this many times within `faultyWindow` is flagged as faulty. */
        faultyAfter: z.number().int().min(1).default(5),
        faultyWindow: PositiveDuration.default(10 * 60_000),
        /** How often the pool's monitor reads its state while it is in use (idle pools: every 5 minutes). */
        checkEvery: PositiveDuration.default(30_000),
      })
      .strict()
      .default({
        usageThresholds: [0.8, 0.95],
        forecastHorizon: 3_600_000,
        burnWindow: 900_000,
        faultyAfter: 5,
        faultyWindow: 600_000,
        checkEvery: 30_000,
      }),
    /** Pipelines this pool must be able to run together (`mlctl quota check`). */
    pipelines: z.array(RegisteredPipeline).default([]),
    /** Continue-as-new after this many handled operations (default: when the server suggests it). */
    continueAsNewAfterOps: z.number().int().min(1).optional(),
    /**
     * Most leases granted plus reservations waiting the pool holds at once; a reservation past it is refused at once
     * (`pool-full`). The pool carries all of them across continue-as-new, in one payload a stock server refuses past
     * 2 MB: see {@link DEFAULT_MAX_LEASES}.
     */
    maxLeases: z
      .number()
      .int()
      .min(1)
      .max(MAX_POOL_LEASES, `at most ${MAX_POOL_LEASES} (a pool carries every lease across continue-as-new)`)
      .default(DEFAULT_MAX_LEASES),
  })
  .strict()
  .superRefine(
    (pool, ctx) => {
      const capacity = (pool?.capacity ?? {}) as Record<string, unknown>;
      const caps = [
        ...(pool?.caps?.perPipeline !== undefined ? [['perPipeline', pool.caps.perPipeline]] : []),
        ...Object.entries(pool?.caps?.perKind ?? {}).map(([k, v]) => [`perKind.${k}`, v]),
      ] as [string, unknown][];
      for (const [where, cap] of caps) {
        if (!cap || typeof cap !== 'object') continue;
        for (const resource of Object.keys(cap)) {
          const known = resource.endsWith(':*')
            ? Object.keys(capacity).some((r) => r.startsWith(resource.slice(0, -1)))
            : Object.hasOwn(capacity, resource);
          if (!known) {
            ctx.addIssue({
              code: 'custom',
              path: ['caps', ...where.split('.'), resource],
              message: `caps a resource the pool does not have (capacity: ${Object.keys(capacity).join(', ')})`,
            });
          }
        }
      }
    },
    { when: () => true },
  );
export type QuotaPoolConfig = z.infer<typeof QuotaPoolConfig>;
/** A pool configuration as written (defaults not yet applied). */
export type QuotaPoolConfigInput = z.input<typeof QuotaPoolConfig>;

/** config/quota-pools.yaml */
export const QuotaPoolsFile = z
  .object({ pools: z.array(QuotaPoolConfig).min(1) })
  .strict()
  .superRefine(
    (file, ctx) => {
      const seen = new Set<string>();
      (Array.isArray(file?.pools) ? file.pools : []).forEach((p, i) => {
        const name = (p as { name?: unknown } | undefined)?.name;
        if (typeof name !== 'string') return;
        if (seen.has(name))
          ctx.addIssue({ code: 'custom', path: ['pools', i, 'name'], message: `pool "${name}" twice` });
        seen.add(name);
      });
    },
    { when: () => true },
  );
export type QuotaPoolsFile = z.infer<typeof QuotaPoolsFile>;

/** Milliseconds of a TTL, wait or expected duration: above 0, at most MAX_DURATION_MS (365 days). */
const DurationMs = z.number().int().positive().max(MAX_DURATION_MS, `at most ${MAX_DURATION_MS} ms (365 days)`);

/** What a run looked like, kept with its lease so later estimates can find similar runs. */
export const RunProfile = z
  .object({
    model: z.string().max(256).optional(),
    /** Model family, e.g. the architecture `tree-ensemble`. */
    family: z.string().max(256).optional(),
    /** Size of the input data in rows (or tokens). */
    datasetRows: z.number().nonnegative().optional(),
    /** The device type it ran on and what the hardware planner estimated, for calibration. */
    device: z.string().max(256).optional(),
    estimatedMs: z.number().nonnegative().optional(),
  })
  .strict();
export type RunProfile = z.infer<typeof RunProfile>;

/** Measured consumption of a run, reported when its lease is released. */
export const RunUsage = z
  .object({
    /** Peak resident memory of the run's processes. */
    peakMemoryGiB: z.number().nonnegative().optional(),
    /** Average cores busy over the run (CPU time / wall time). */
    avgCpuCores: z.number().nonnegative().optional(),
    /** Wall time of the work itself (the lease may have been held a little longer). */
    durationMs: z.number().nonnegative().optional(),
  })
  .strict();
export type RunUsage = z.infer<typeof RunUsage>;

/**
 * The smallest amount of a resource a reservation may ask for (0 aside). Float tolerance in the capacity checks is far
 * below it, so a full pool grants nothing: a request cannot hide in rounding.
 */
export const MIN_REQUEST_AMOUNT = 0.001;

/** What a reservation asks for: every amount 0 or at least MIN_REQUEST_AMOUNT, and at least one above 0. */
export const RequestedResources = nameRecord(
  ResourceName,
  z
    .number()
    .nonnegative()
    .max(1e12, 'at most 1e12')
    .refine(
      (v) => v === 0 || v >= MIN_REQUEST_AMOUNT,
      `0 or at least ${MIN_REQUEST_AMOUNT}: smaller amounts are below what a pool accounts for`,
    ),
)
  .refine((r) => Object.keys(r).length <= MAX_RESOURCES, `at most ${MAX_RESOURCES} resources`)
  .refine((r) => Object.values(r).some((v) => v > 0), 'request at least one resource');

/**
 * A lease's owner key: whoever reserved the lease with it renews and releases it without further checks. 32 to 128
 * URL-safe characters (a worker sends HMAC-SHA256 of its secret and the lease, base64url). The pool keeps only its
 * SHA-256 ({@link ownerDigest}) and never shows even that.
 */
export const OwnerKey = z
  .string()
  .regex(/^[A-Za-z0-9_-]{32,128}$/, 'an owner key: 32 to 128 characters of letters, digits, _ and -');

/** The digest a pool keeps of a lease's owner key: SHA-256, hex (workflow-safe, pure JS). */
export function ownerDigest(ownerKey: string): string {
  return bytesToHex(sha256(utf8ToBytes(ownerKey)));
}

export const ReserveQuotaInput = z
  .object({
    /** Idempotency key: reserving the same lease id again returns the existing lease. */
    leaseId: LeaseId,
    /** The pipeline holding it (a lifecycle id, a model's serving deployment, ...). Caps apply per holder. */
    holder: HolderName,
    kind: PipelineKind,
    resources: RequestedResources,
    /** Makes the lease its own: renewals and releases with this key are the owner's (see {@link OwnerKey}). */
    ownerKey: OwnerKey.optional(),
    /** Lease TTL; the pool's `leaseTtl` when absent; null never expires (a production deployment). */
    ttlMs: DurationMs.nullable().optional(),
    /** Wait in the pool's queue for up to `timeoutMs` instead of being refused at once. */
    wait: z
      .object({ timeoutMs: DurationMs, priority: z.number().int().min(-100).max(100).default(0) })
      .strict()
      .optional(),
    /** How long the holder expects to keep it (for "earliest expected release"). */
    expectedDurationMs: DurationMs.optional(),
    profile: RunProfile.optional(),
    /**
     * A workflow waiting on this reservation: when it is queued and later granted or refused, the pool sends that
     * workflow the `quotaDecided` signal, so the waiter wakes at once instead of asking again and again.
     */
    notify: z
      .object({ workflowId: z.string().min(1).max(1000) })
      .strict()
      .optional(),
  })
  .strict();
export type ReserveQuotaInput = z.input<typeof ReserveQuotaInput>;
export type ReserveQuotaRequest = z.output<typeof ReserveQuotaInput>;

/**
 * Who acts on a lease. The owner sends the key the lease was reserved with; anyone else (a quota operator, the holder
 * by name) sends `by`, signed where the platform policy requires it, and the pool has the worker check it against the
 * policy as it is now. Such an operation is sent on its own, never in a batch.
 */
const LeaseActor = {
  ownerKey: OwnerKey.optional(),
  /** Who renews or releases a lease they do not own (recorded in the pool's journal). */
  by: Identity.optional(),
  /** Their signed claim of `quota-renew`/`quota-release` on `pool/<pool>/lease/<leaseId>` (mlctl --key). */
  signed: z.unknown().optional(),
};

export const RenewQuotaInput = z
  .object({ leaseId: LeaseId, ttlMs: DurationMs.nullable().optional(), ...LeaseActor })
  .strict();
export type RenewQuotaInput = z.input<typeof RenewQuotaInput>;

export const ReleaseQuotaInput = z
  .object({
    leaseId: LeaseId,
    ...LeaseActor,
    /** What the run measured, kept in the pool's run history for estimates. */
    usage: RunUsage.optional(),
    /** Completes the profile given at reservation (e.g. the dataset size, known once the data was read). */
    profile: RunProfile.optional(),
  })
  .strict();
export type ReleaseQuotaInput = z.input<typeof ReleaseQuotaInput>;

export interface QuotaLease {
  leaseId: string;
  holder: string;
  kind: PipelineKind;
  resources: Resources;
  grantedAt: string;
  renewedAt: string;
  /** Null: never expires until released. */
  expiresAt: string | null;
  ttlMs: number | null;
  expectedReleaseAt?: string;
  profile?: RunProfile;
  /** How long it waited in the queue before the grant (0: granted at once). */
  waitedMs: number;
}

/** Why a reservation was refused. */
export type RefusalReason =
  /** The pool lacks free capacity now. */
  | 'capacity'
  /** The holder would exceed the per-pipeline cap. */
  | 'pipeline-cap'
  /** All pipelines of this kind together would exceed the kind's cap. */
  | 'kind-cap'
  /** Free capacity is promised to reservations waiting ahead in the queue. */
  | 'queued-ahead'
  /** The request can never be granted: larger than the capacity or a cap, or a resource the pool does not have. */
  | 'never-fits'
  /** It waited in the queue for its whole timeout. */
  | 'wait-timeout'
  /**
   * The pool holds as many leases and waiting reservations as it may (its `maxLeases`, or the size it may carry across
   * continue-as-new): nothing more until some are released.
   */
  | 'pool-full';

export interface QuotaShortfall {
  resource: string;
  requested: number;
  /** What is left under the limit that applies. */
  available: number;
  /** The limit that applies: the capacity, or the cap in units of the resource. */
  limit: number;
  scope: 'pool' | 'kind' | 'pipeline';
}

export type ReserveQuotaResult =
  | { granted: true; lease: QuotaLease; waitedMs: number }
  | {
      granted: false;
      reason: RefusalReason;
      shortfalls: QuotaShortfall[];
      /** Earliest time a lease holding a short resource is expected to end (its expected release, else its expiry). */
      earliestRelease: string | null;
      message: string;
      /**
       * Present when the reservation waits in the pool's queue rather than being refused: its place (1 = next) and
       * when it gives up. The pool grants it as quota frees up; the caller watches with the reservation query.
       */
      queued?: {
        position: number;
        deadline: string;
        /** The pool will signal the `notify` workflow when it decides (pools from before that leave it out). */
        tells?: boolean;
      };
    };

/** Most operations one batch update may carry. */
export const MAX_QUOTA_BATCH = 200;

/** One operation of a batch update (a client coalescing the calls of many pipelines into one update). */
export type QuotaBatchOp =
  | { op: 'reserve'; input: ReserveQuotaInput }
  | { op: 'renew'; input: RenewQuotaInput }
  | { op: 'release'; input: ReleaseQuotaInput };

/**
 * A batch as the pool's validator checks it: 1 to MAX_QUOTA_BATCH operations of a known kind. Each operation's input
 * is checked on its own when it is applied, so a malformed one fails alone.
 */
export const QuotaBatch = z
  .array(z.object({ op: z.enum(['reserve', 'renew', 'release']), input: z.unknown() }).strict())
  .min(1, `a batch is 1 to ${MAX_QUOTA_BATCH} operations`)
  .max(MAX_QUOTA_BATCH, `a batch is 1 to ${MAX_QUOTA_BATCH} operations`);

/**
 * The answer to one operation of a batch, in the batch's order; a malformed or refused operation fails alone, with the
 * failure type where it has one (`InvalidInput`, `Unauthorized`).
 */
export type QuotaBatchResult =
  { ok: true; value: ReserveQuotaResult | QuotaLease | null } | { ok: false; error: string; type?: string };

/** What became of a reservation, by lease id (the reservation query). */
export type ReservationState =
  | { state: 'granted'; lease: QuotaLease; waitedMs: number }
  | {
      state: 'queued';
      position: number;
      deadline: string;
      reason: RefusalReason;
      shortfalls: QuotaShortfall[];
      /** As the reservation's answer: the pool will signal its waiter. */
      tells?: boolean;
    }
  | { state: 'refused'; result: ReserveQuotaResult & { granted: false } }
  | { state: 'unknown' };

/** One completed lease, kept for estimates (bounded history). */
export interface QuotaRun {
  leaseId: string;
  holder: string;
  kind: PipelineKind;
  resources: Resources;
  grantedAt: string;
  endedAt: string;
  /** Lease held this long. */
  heldMs: number;
  ended: 'released' | 'expired';
  profile?: RunProfile;
  usage?: RunUsage;
  /** Released by someone other than its owner: who, and the key they signed with (none: unsigned, as allowed). */
  releasedBy?: string;
  keyId?: string;
}

export interface QuotaJournalEntry {
  at: string;
  op: 'grant' | 'release' | 'refuse' | 'expire' | 'renew' | 'enqueue' | 'withdraw' | 'configure';
  leaseId?: string;
  holder?: string;
  resources?: Resources;
  reason?: RefusalReason;
  /** Usage per resource right after the operation. */
  used?: Resources;
  /** A renewal or release by someone other than the lease's owner: who, and the key they signed with. */
  by?: string;
  keyId?: string;
}

/** A reservation waiting in a pool's queue: everything its grant needs, carried whole across continue-as-new. */
export interface QuotaWaiting {
  leaseId: string;
  holder: string;
  kind: PipelineKind;
  resources: Resources;
  priority: number;
  enqueuedAt: string;
  deadline: string;
  /** The lease TTL asked for (null: never expires); absent: the pool's `leaseTtl`. */
  ttlMs?: number | null;
  expectedDurationMs?: number;
  profile?: RunProfile;
  /** The workflow told when it is decided (the request's `notify`). */
  notify?: { workflowId: string };
}

/** What the pool tells a workflow waiting on a queued reservation: it was decided (granted, refused or withdrawn). */
export interface QuotaDecided {
  pool: string;
  leaseId: string;
}

export interface QuotaAlertState {
  key: string;
  kind: string;
  severity: 'info' | 'warning' | 'critical';
  summary: string;
  since: string;
  details?: Record<string, unknown>;
}

export interface ResourceUsage {
  resource: string;
  capacity: number;
  used: number;
  /** used / capacity (0 when the capacity is 0). */
  share: number;
  /** Change of usage per hour over the burn window (positive: filling up). */
  burnPerHour: number;
  /** When usage reaches capacity at the current burn rate; null when not filling up. */
  exhaustedAt: string | null;
}

/**
 * What a `poolStateQuery` asks for: nothing (or `{}`) for the whole state; `{ summary: true }` for the state without
 * its lists, which grow with the leases (a monitor's read stays small at any size). A summary may also ask for what an
 * estimate or a plan needs, still without the leases: `runsOf`, the finished runs of one kind (and model family);
 * `holder`, what one holder holds now (its `byPipeline` entry, so that whether a request of it fits can be told).
 */
export const PoolStateRead = z
  .object({
    summary: z.boolean().optional(),
    runsOf: z
      .object({ kind: PipelineKind, family: z.string().min(1).max(256).optional() })
      .strict()
      .optional(),
    holder: HolderName.optional(),
    /**
     * Adds bounded lists to a summary: the first `limit` leases to expire (of `kind` only, when given; leases that never
     * expire last), the first `limit` waiting reservations in queue order, and the last `limit` journal entries.
     * `counts.matching` then says how many leases matched, so a reader knows what it was not shown.
     */
    list: z
      .object({ limit: z.number().int().min(1).max(1000), kind: PipelineKind.optional() })
      .strict()
      .optional(),
  })
  .strict()
  .refine((r) => r.summary === true || (r.runsOf === undefined && r.holder === undefined && r.list === undefined), {
    message: 'runsOf, holder and list narrow a summary: ask for { summary: true } with them',
  });
export type PoolStateRead = z.infer<typeof PoolStateRead>;

export interface QuotaPoolState {
  name: string;
  config: QuotaPoolConfig;
  capacity: Resources;
  at: string;
  leases: QuotaLease[];
  /** Sum of all leases per resource. */
  used: Resources;
  resources: ResourceUsage[];
  byKind: Partial<Record<PipelineKind, Resources>>;
  byPipeline: Record<string, Resources>;
  waiting: QuotaWaiting[];
  /** Holders currently flagged as faulty (refused by their cap again and again). */
  faulty: { holder: string; capRefusals: number; since: string }[];
  /** Completed leases, newest last (bounded). */
  runs: QuotaRun[];
  /** Recent operations, oldest first (bounded across continue-as-new). */
  journal: QuotaJournalEntry[];
  /**
   * Present in a summary (`{ summary: true }`) only: how many leases and waiting reservations the pool holds. A
   * summary leaves `leases`, `waiting` and `journal` empty (or as long as its `list` allows); `byPipeline` holds only
   * the `holder` it was asked about and the holders of the leases it lists, and `runs` only those that ended `expired`
   * plus those of `runsOf`, oldest first.
   */
  counts?: {
    leases: number;
    waiting: number;
    /** With a read's `list`: how many leases matched it (of its kind, or all), listed or not. */
    matching?: number;
  };
  stats: {
    grants: number;
    refusals: number;
    releases: number;
    expirations: number;
    /** Operations handled by this run of the entity workflow (it continues as new after enough of them). */
    opsThisRun: number;
    /** How many times the pool has continued as new. */
    continuedAsNew: number;
  };
}

/** What the pool's monitor workflow knows: the alerts it has open, and when it last looked. */
export interface QuotaMonitorState {
  pool: string;
  alerts: QuotaAlertState[];
  lastCheckAt: string | null;
  checks: number;
  /** Alerts sent (fired and resolved) since the monitor started. */
  delivered: number;
}

/** Workflow id of a pool's monitor workflow. */
export function quotaMonitorWorkflowId(pool: string): string {
  return `quota-monitor-${pool}`;
}

/** Workflow id of a pool's entity workflow. */
export function quotaPoolWorkflowId(pool: string): string {
  return `quota-pool-${pool}`;
}
