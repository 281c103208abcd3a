import { mapOf } from '../shared/own';
import { parseDriftOptions, type DriftOptions } from '../shared/drift';
import type { CategoricalColumn, ColumnarData, NumericColumn } from './columns';
import {
  judge,
  observeCategorical,
  observeNumericBinned,
  type CurrentData,
  type DriftReport,
  type Observation,
} from './compare';
import type { NumericComparison } from './kernels';
import { autoWorkers, runKernels, type KernelTask } from './parallel';
import type { NumericProfile, Reference } from './profile';

/*
 * The drift engine on columnar data: observes each feature of the current data, the exact numeric comparisons in
 * worker threads (Node only), and judges the observations with src/drift/compare.ts, which is pure and also judges
 * serving sketches inside workflows.
 */

/**
 * Compares current columnar data with a reference. Numeric features with stored reference values are compared
 * exactly — KS and Wasserstein from every value, in worker threads when the input is large; without them, on the
 * reference bins.
 */
export async function compareData(
  reference: Reference,
  current: ColumnarData,
  options: DriftOptions = {},
): Promise<DriftReport> {
  const seen = await observeData(reference, current, options);
  return judge(reference.profile, seen.observations, seen.current, options);
}

/**
 * What `compareData` judges: each compared feature's observation (counts on the reference's bins and categories, cell
 * problems, exact statistics) and the facts about the current data as a whole.
 */
export async function observeData(
  reference: Reference,
  current: ColumnarData,
  options: DriftOptions = {},
): Promise<{ observations: Map<string, Observation>; current: CurrentData }> {
  const s = parseDriftOptions(options);
  const overrides = mapOf(s.features);
  const observations = new Map<string, Observation>();
  const typeMismatches: { name: string; type: string }[] = [];
  const exact: { p: NumericProfile; column: NumericColumn; values: Float64Array }[] = [];
  // Observed on this thread, while the exact comparisons run in worker threads.
  const here: (() => void)[] = [];
  const profiles = new Map(reference.profile.features.map((f) => [f.name, f]));
  for (const column of current.columns) {
    const p = profiles.get(column.name);
    if (!p || p.role === 'identifier' || overrides.get(p.name)?.skip) continue;
    if (column.type !== p.type) typeMismatches.push({ name: p.name, type: column.type });
    else if (p.type === 'categorical') {
      here.push(() => observations.set(p.name, observeCategorical(p, column as CategoricalColumn)));
    } else {
      const values = reference.sorted.get(p.name);
      if (values) exact.push({ p, column: column as NumericColumn, values });
      else here.push(() => observations.set(p.name, observeNumericBinned(p, column as NumericColumn)));
    }
  }
  const total = exact.reduce((n, e) => n + e.values.length + e.column.values.length, 0);
  const workers = s.workers ?? autoWorkers(total, exact.length);
  const tasks: KernelTask[] = exact.map(({ p, column, values }) => {
    const direction = overrides.get(p.name)?.direction;
    return {
      kind: 'compare',
      reference: values,
      current: column.values,
      edges: p.bins.edges,
      alternative: direction === 'increase' ? 'greater' : direction === 'decrease' ? 'less' : 'two-sided',
      ksMode: 'auto',
    };
  });
  const pending = runKernels(tasks, workers);
  try {
    for (const observe of here) observe();
  } catch (err) {
    await pending.catch(() => undefined);
    throw err;
  }
  const results = (await pending) as NumericComparison[];
  exact.forEach(({ p, column }, i) => {
    const c = results[i]!;
    observations.set(p.name, {
      type: 'numeric',
      rows: column.values.length,
      issues: column.issues,
      counts: c.currentCounts,
      belowMin: c.belowMin,
      aboveMax: c.aboveMax,
      exact: c,
    });
  });
  return {
    observations,
    current: {
      rows: current.rows,
      columns: [...current.columns.map((c) => c.name), ...current.ignoredColumns],
      malformedRows: current.malformedRows,
      malformedExamples: current.malformedExamples,
      ...(current.source.path ? { source: current.source.path } : {}),
      typeMismatches,
    },
  };
}
