import type { QuotaLease, QuotaShortfall, Resources } from '../shared/quota';

/** Sum of the resources of all leases. */
export function usedResources(leases: readonly QuotaLease[]): Resources {
  const used: Resources = {};
  for (const lease of leases) {
    for (const [resource, amount] of Object.entries(lease.resources)) used[resource] = (used[resource] ?? 0) + amount;
  }
  return used;
}

/** What a request lacks against the pool's capacity given the current leases; empty when it fits. */
export function shortfalls(capacity: Resources, leases: readonly QuotaLease[], request: Resources): QuotaShortfall[] {
  const used = usedResources(leases);
  const out: QuotaShortfall[] = [];
  for (const [resource, requested] of Object.entries(request)) {
    if (requested === 0) continue;
    const cap = capacity[resource] ?? 0;
    const available = cap - (used[resource] ?? 0);
    // A tolerance keeps fractional requests (0.5 cpu) from being refused by float rounding.
    if (requested > available + 1e-9) out.push({ resource, requested, available, capacity: cap });
  }
  return out;
}

export function describeShortfalls(pool: string, items: readonly QuotaShortfall[]): string {
  return (
    `pool "${pool}" cannot grant: ` +
    items.map((s) => `${s.resource} needs ${s.requested}, ${s.available} of ${s.capacity} available`).join('; ')
  );
}
