import { z } from 'zod';

/** Resource name → amount, e.g. `{ cpu: 4, memoryGiB: 16, 'gpu:t4': 1 }`. */
export const Resources = z.record(z.string().regex(/^[a-z][a-zA-Z0-9]*(:[a-z0-9-]+)?$/), z.number().nonnegative());
export type Resources = z.infer<typeof Resources>;

export const PipelineKind = z.enum(['training', 'serving', 'validation', 'data', 'experiment']);
export type PipelineKind = z.infer<typeof PipelineKind>;

export const QuotaPoolConfig = z
  .object({
    name: z.string().min(1),
    capacity: Resources,
  })
  .strict();
export type QuotaPoolConfig = z.infer<typeof QuotaPoolConfig>;

/** config/quota-pools.yaml */
export const QuotaPoolsFile = z.object({ pools: z.array(QuotaPoolConfig).min(1) }).strict();
export type QuotaPoolsFile = z.infer<typeof QuotaPoolsFile>;

export const ReserveQuotaInput = z
  .object({
    /** Idempotency key: reserving the same lease id again returns the existing lease. */
    leaseId: z.string().min(1),
    /** The pipeline holding it (a lifecycle id, a model's serving deployment, ...). */
    holder: z.string().min(1),
    kind: PipelineKind,
    resources: Resources,
  })
  .strict();
export type ReserveQuotaInput = z.infer<typeof ReserveQuotaInput>;

export interface QuotaLease {
  leaseId: string;
  holder: string;
  kind: PipelineKind;
  resources: Resources;
  grantedAt: string;
}

export interface QuotaShortfall {
  resource: string;
  requested: number;
  available: number;
  capacity: number;
}

export type ReserveQuotaResult =
  { granted: true; lease: QuotaLease } | { granted: false; shortfalls: QuotaShortfall[]; message: string };

export interface QuotaPoolState {
  name: string;
  capacity: Resources;
  leases: QuotaLease[];
  /** Sum of all leases per resource. */
  used: Resources;
  /** Grants and releases since the pool started, oldest first (kept bounded across continue-as-new). */
  journal: { at: string; op: 'grant' | 'release' | 'refuse'; leaseId: string; resources: Resources }[];
}

/** Workflow id of a pool's entity workflow. */
export function quotaPoolWorkflowId(pool: string): string {
  return `quota-pool-${pool}`;
}
