import { condition, continueAsNew, setHandler, workflowInfo, allHandlersFinished } from '@temporalio/workflow';
import { poolStateQuery, releaseQuotaUpdate, reserveQuotaUpdate } from '../shared/messages';
import {
  type QuotaLease,
  type QuotaPoolConfig,
  type QuotaPoolState,
  type ReserveQuotaResult,
  QuotaPoolConfig as QuotaPoolConfigSchema,
  ReserveQuotaInput,
} from '../shared/quota';
import { describeShortfalls, shortfalls, usedResources } from '../domain/quota';

/** Entity state carried across continue-as-new (plain JSON). */
export interface QuotaPoolCarried {
  leases: QuotaLease[];
  journal: QuotaPoolState['journal'];
}

export interface QuotaPoolInput {
  config: QuotaPoolConfig;
  carried?: QuotaPoolCarried;
}

const JOURNAL_LIMIT = 1000;

/**
 * One entity workflow per quota pool. Every grant and release is an update on this workflow, so the pool's history
 * is the audit trail and the single writer makes "never over capacity" hold without locks.
 */
export async function quotaPoolWorkflow(input: QuotaPoolInput): Promise<void> {
  const config = QuotaPoolConfigSchema.parse(input.config);
  const leases = new Map<string, QuotaLease>((input.carried?.leases ?? []).map((l) => [l.leaseId, l]));
  const journal: QuotaPoolState['journal'] = input.carried?.journal ?? [];
  const record = (entry: QuotaPoolState['journal'][number]) => {
    journal.push(entry);
    if (journal.length > JOURNAL_LIMIT) journal.splice(0, journal.length - JOURNAL_LIMIT);
  };

  setHandler(
    reserveQuotaUpdate,
    (raw): ReserveQuotaResult => {
      const req = ReserveQuotaInput.parse(raw);
      const existing = leases.get(req.leaseId);
      if (existing) return { granted: true, lease: existing };
      const at = new Date().toISOString();
      const short = shortfalls(config.capacity, [...leases.values()], req.resources);
      if (short.length > 0) {
        record({ at, op: 'refuse', leaseId: req.leaseId, resources: req.resources });
        return { granted: false, shortfalls: short, message: describeShortfalls(config.name, short) };
      }
      const lease: QuotaLease = { ...req, grantedAt: at };
      leases.set(req.leaseId, lease);
      record({ at, op: 'grant', leaseId: req.leaseId, resources: req.resources });
      return { granted: true, lease };
    },
    { validator: (raw) => void ReserveQuotaInput.parse(raw) },
  );

  setHandler(releaseQuotaUpdate, ({ leaseId }) => {
    const lease = leases.get(leaseId);
    if (!lease) return null;
    leases.delete(leaseId);
    record({ at: new Date().toISOString(), op: 'release', leaseId, resources: lease.resources });
    return lease;
  });

  setHandler(poolStateQuery, () => {
    const all = [...leases.values()];
    return { name: config.name, capacity: config.capacity, leases: all, used: usedResources(all), journal };
  });

  await condition(() => workflowInfo().continueAsNewSuggested);
  await condition(allHandlersFinished);
  await continueAsNew<typeof quotaPoolWorkflow>({ config, carried: { leases: [...leases.values()], journal } });
}
