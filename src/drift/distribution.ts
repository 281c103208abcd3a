import { binLabel, categoryLabel, type Observation } from './compare';
import type { DataProfile } from './profile';

/**
 * Reference and current distributions of each compared feature, on the reference's own bins (numeric) or categories
 * (categorical): what a drift statistic was computed from, for plotting beside it.
 */

/** Categories a distribution lists one by one; the rest are summed into one bucket. */
export const MAX_DISTRIBUTION_CATEGORIES = 20;

export interface FeatureDistribution {
  name: string;
  type: 'numeric' | 'categorical';
  /** A bin like `(45, 52]`, or a category (`(unseen) x` for one the reference never had). */
  labels: string[];
  /** Counts per label, in the reference and in the current data. */
  reference: number[];
  current: number[];
}

/**
 * The distributions of the features that have an observation (those compared). Categorical ones keep the
 * {@link MAX_DISTRIBUTION_CATEGORIES} categories whose share is largest on either side; the rest are summed.
 */
export function distributionsOf(
  profile: DataProfile,
  observations: ReadonlyMap<string, Observation>,
): FeatureDistribution[] {
  const out: FeatureDistribution[] = [];
  for (const p of profile.features) {
    const obs = observations.get(p.name);
    if (!obs) continue;
    if (p.type === 'numeric' && obs.type === 'numeric') {
      out.push({
        name: p.name,
        type: 'numeric',
        labels: p.bins.counts.map((_, i) => binLabel(p.bins.edges, i)),
        reference: [...p.bins.counts],
        current: [...obs.counts],
      });
    } else if (p.type === 'categorical' && obs.type === 'categorical') {
      const rows = [
        ...p.domain.map((d, i) => ({ label: categoryLabel(d.value), reference: d.count, current: obs.counts[i] ?? 0 })),
        { label: '(other)', reference: p.otherCount, current: obs.counts[p.domain.length] ?? 0 },
        ...obs.unseen.map((u) => ({ label: `(unseen) ${categoryLabel(u.value)}`, reference: 0, current: u.count })),
      ].filter((r) => r.reference > 0 || r.current > 0);
      const refTotal = rows.reduce((n, r) => n + r.reference, 0) || 1;
      const curTotal = rows.reduce((n, r) => n + r.current, 0) || 1;
      const weight = (r: (typeof rows)[number]) => Math.max(r.reference / refTotal, r.current / curTotal);
      const kept = [...rows].sort((a, b) => weight(b) - weight(a)).slice(0, MAX_DISTRIBUTION_CATEGORIES);
      const rest = rows.filter((r) => !kept.includes(r));
      // Listed in the profile's order (most frequent first in the reference), unseen ones last.
      const shown = rows.filter((r) => kept.includes(r));
      if (rest.length > 0) {
        shown.push({
          label: `(${rest.length} more categories)`,
          reference: rest.reduce((n, r) => n + r.reference, 0),
          current: rest.reduce((n, r) => n + r.current, 0),
        });
      }
      out.push({
        name: p.name,
        type: 'categorical',
        labels: shown.map((r) => r.label),
        reference: shown.map((r) => r.reference),
        current: shown.map((r) => r.current),
      });
    }
  }
  return out;
}
