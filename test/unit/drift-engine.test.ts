import { existsSync, rmSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildProfile,
  columnsFromArrays,
  compareData,
  compareSketch,
  DataSketcher,
  loadProfile,
  saveProfile,
  sketchPlanOf,
  sketchWindow,
  type DriftReport,
  type FeatureDrift,
} from '../../src/drift';
import { quantileEdges, quantileOfSorted } from '../../src/drift/kernels';
import { PARALLEL_MIN_VALUES } from '../../src/drift/parallel';
import { tempDir } from '../helpers/temp';

const dir = tempDir('drift-engine-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Deterministic uniform [0, 1). */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const normal = (r: () => number) => () => {
  let sum = 0;
  for (let i = 0; i < 12; i++) sum += r();
  return sum - 6;
};

function dataset(rows: number, seed: number, shift = 0, planShares = [0.5, 0.3, 0.2]) {
  const r = rng(seed);
  const n = normal(r);
  const plans = ['basic', 'standard', 'premium'];
  const pick = () => {
    const u = r();
    let acc = 0;
    for (let i = 0; i < plans.length; i++) if (u < (acc += planShares[i]!)) return plans[i]!;
    return plans[plans.length - 1]!;
  };
  return columnsFromArrays({
    id: Array.from({ length: rows }, (_, i) => `u${seed}-${i}`),
    age: Float64Array.from({ length: rows }, () => Math.round(45 + 12 * n() + shift * 12)),
    amount: Float64Array.from({ length: rows }, () => Math.round((60 + 20 * n()) * 100) / 100),
    plan: Array.from({ length: rows }, pick),
    label: Float64Array.from({ length: rows }, () => (r() < 0.3 ? 1 : 0)),
  });
}

const feature = (r: DriftReport, name: string) => r.features.find((f) => f.name === name) as FeatureDrift;

describe('profile', () => {
  it('summarises numeric columns with numpy-style quantiles and deduplicated quantile bins', async () => {
    const { profile, sorted } = await buildProfile(columnsFromArrays({ x: [5, 1, 4, 2, 3, 3, null, NaN] }));
    const x = profile.features[0]!;
    if (x.type !== 'numeric') throw new Error('numeric expected');
    expect(x).toMatchObject({ count: 6, missing: 1, nan: 1, min: 1, max: 5, integer: true, distinct: 5 });
    expect(x.mean).toBeCloseTo(3, 12);
    expect(x.std).toBeCloseTo(Math.sqrt(10 / 6), 12);
    expect(x.quantiles.p25).toBe(2.25); // numpy.quantile([1,2,3,3,4,5], 0.25)
    expect(Array.from(sorted.get('x')!)).toEqual([1, 2, 3, 3, 4, 5]);
    expect(x.bins.counts.reduce((a, b) => a + b, 0)).toBe(6);
    expect(quantileOfSorted(Float64Array.of(1, 2, 3, 4), 0.5)).toBe(2.5);
    // A tied column gets fewer bins, and no bin above the maximum.
    expect(quantileEdges(Float64Array.of(0, 0, 0, 0, 0, 0, 0, 1, 1, 1), 10)).toEqual([0]);
  });

  it('keeps categorical domains by count, and takes unique text for an identifier', async () => {
    const { profile } = await buildProfile(dataset(500, 1), { label: 'label' });
    const byName = Object.fromEntries(profile.features.map((f) => [f.name, f]));
    expect(byName.id).toMatchObject({ role: 'identifier', type: 'categorical', distinct: 500, domain: [] });
    expect(byName.label).toMatchObject({ role: 'label' });
    const plan = byName.plan!;
    if (plan.type !== 'categorical') throw new Error('categorical expected');
    expect(plan.domain.map((d) => d.value)).toEqual(['basic', 'standard', 'premium']);
    expect(plan.domain.reduce((a, d) => a + d.count, 0)).toBe(500);
  });

  it('saves and loads with the sorted values beside it; a damaged sidecar is refused with its size', async () => {
    const ref = await buildProfile(dataset(2000, 2), { label: 'label' });
    const file = join(dir, 'p.json');
    await saveProfile(ref, file);
    expect(existsSync(join(dir, 'p.values.f64'))).toBe(true);
    const loaded = await loadProfile(file);
    expect(loaded.profile).toEqual({
      ...ref.profile,
      values: loaded.profile.values,
      features: loaded.profile.features,
    });
    expect(Array.from(loaded.sorted.get('amount')!)).toEqual(Array.from(ref.sorted.get('amount')!));
    const same = await compareData(loaded, dataset(2000, 3), {});
    const direct = await compareData(ref, dataset(2000, 3), {});
    expect(same.features).toEqual(direct.features);
    truncateSync(join(dir, 'p.values.f64'), 100);
    await expect(loadProfile(file)).rejects.toThrow(/has 100 bytes, the profile expects/);
  });
});

describe('compareData', () => {
  it('finds no drift between two samples of the same distribution', async () => {
    const ref = await buildProfile(dataset(800, 10), { label: 'label' });
    const r = await compareData(ref, dataset(600, 11));
    expect(r.problems).toEqual([]);
    expect(r.features.filter((f) => f.drifted)).toEqual([]);
    expect(r.ok).toBe(true);
    // Small samples: tests (KS, chi-squared).
    expect(feature(r, 'age')).toMatchObject({ method: 'ks', basis: 'exact', threshold: 0.05, referenceSize: 800 });
    expect(feature(r, 'plan').method).toBe('chisquare');
    expect(feature(r, 'id').skipped).toMatch(/identifier/);
  });

  it('flags a shifted numeric feature and a moved category, naming the bins that moved', async () => {
    const ref = await buildProfile(dataset(5000, 20), { label: 'label' });
    const r = await compareData(ref, dataset(3000, 21, 0.5, [0.2, 0.3, 0.5]));
    const age = feature(r, 'age');
    // Large samples: distances (normalised Wasserstein, Jensen–Shannon).
    expect(age).toMatchObject({ method: 'wasserstein', drifted: true, threshold: 0.1 });
    expect(age.statistic).toBeGreaterThan(0.4);
    expect(age.statistics.ksPValue).toBeLessThan(1e-10);
    expect(age.moved[0]!.what).toMatch(/^\(.*, inf\]$/); // the top bin grew most
    const plan = feature(r, 'plan');
    expect(plan).toMatchObject({ method: 'jensenshannon', drifted: true });
    expect(
      plan.moved
        .map((m) => m.what)
        .slice(0, 2)
        .sort(),
    ).toEqual(['basic', 'premium']);
    expect(feature(r, 'amount').drifted).toBe(false);
    expect(r).toMatchObject({ comparedFeatures: 3, driftedFeatures: 2, datasetDrift: true, ok: false });
  });

  it('reports data problems: missing rise, NaN, infinities, wrong types, unseen categories, range, columns', async () => {
    const ref = await buildProfile(
      columnsFromArrays({
        x: Float64Array.from({ length: 200 }, (_, i) => i),
        c: Array.from({ length: 200 }, (_, i) => (i % 2 ? 'a' : 'b')),
      }),
    );
    const current = columnsFromArrays({
      x: [
        ...Array.from({ length: 80 }, (_, i) => i * 2),
        null,
        null,
        null,
        null,
        null,
        null,
        null,
        null,
        null,
        null,
        NaN,
        Infinity,
        500,
        900,
        -3,
        1,
        2,
        3,
        4,
        5,
      ],
      z: Array.from({ length: 100 }, () => 'new'),
    });
    const r = await compareData(ref, current);
    expect(r.problems.map((p) => p.kind).sort()).toEqual(
      ['infinity', 'missing-column', 'missing-values', 'nan', 'new-column', 'out-of-range'].sort(),
    );
    const range = r.problems.find((p) => p.kind === 'out-of-range')!;
    expect(range).toMatchObject({ count: 3, feature: 'x' });
    expect(range.message).toMatch(/outside the reference range \[0, 199\] \(1 below, 2 above\)/);
    expect(r.problems.find((p) => p.kind === 'missing-values')!.message).toMatch(/^x: 10\.00% missing values/);

    const cats = await compareData(ref, columnsFromArrays({ x: [1, 2, 3], c: ['a', 'zz', 'zz'] }));
    const unseen = cats.problems.find((p) => p.kind === 'out-of-domain')!;
    expect(unseen.message).toBe('c: 2 value(s) (66.67%) in categories the reference never had: "zz" ×2');
    expect(feature(cats, 'c').unseen).toEqual([{ value: 'zz', count: 2 }]);
  });

  it('honours per-feature overrides: method, threshold, skip, and one-sided direction', async () => {
    const ref = await buildProfile(dataset(3000, 30), { label: 'label' });
    const down = dataset(3000, 31, -0.5);
    const r = await compareData(ref, down, {
      features: {
        age: { direction: 'increase' },
        amount: { method: 'psi', threshold: 0.5 },
        plan: { skip: true },
      },
    });
    expect(feature(r, 'age')).toMatchObject({ method: 'wasserstein', direction: 'increase', drifted: false });
    expect(feature(r, 'age').statistic).toBeGreaterThan(0.3); // moved a lot, but the other way
    expect(feature(r, 'amount')).toMatchObject({ method: 'psi', threshold: 0.5 });
    expect(feature(r, 'plan').skipped).toBe('skipped by the options');
    const ks = await compareData(ref, down, { features: { age: { method: 'ks', direction: 'decrease' } } });
    expect(feature(ks, 'age')).toMatchObject({ method: 'ks', drifted: true });
    const up = await compareData(ref, down, { features: { age: { method: 'ks', direction: 'increase' } } });
    expect(feature(up, 'age').drifted).toBe(false);

    await expect(compareData(ref, down, { features: { plan: { method: 'ks' } } })).rejects.toThrow(
      'features.plan.method: "ks" does not apply to a categorical feature',
    );
    await expect(compareData(ref, down, { features: { nope: {} } })).rejects.toThrow(
      'features.nope: the reference has no column "nope"',
    );
  });

  it('works on the bins alone when the profile was saved without its values', async () => {
    const ref = await buildProfile(dataset(3000, 40), { label: 'label' });
    const file = join(dir, 'novalues.json');
    await saveProfile(ref, file, { values: false });
    const binsOnly = await loadProfile(file);
    expect(binsOnly.sorted.size).toBe(0);
    const r = await compareData(binsOnly, dataset(3000, 41, 0.5));
    expect(feature(r, 'age')).toMatchObject({ basis: 'binned', method: 'psi', drifted: true });
    const small = await compareData(binsOnly, dataset(300, 42));
    expect(feature(small, 'age')).toMatchObject({ basis: 'binned', method: 'ks', drifted: false });
  });

  it('gives the same report on worker threads as on this thread', async () => {
    expect(existsSync(join(__dirname, '..', '..', 'dist', 'src', 'drift', 'worker.js'))).toBe(true);
    const ref = await buildProfile(dataset(20_000, 50), { label: 'label', workers: 2 });
    const inline = await buildProfile(dataset(20_000, 50), { label: 'label', workers: 0 });
    expect(ref.profile.features).toEqual(inline.profile.features);
    const current = dataset(10_000, 51, 0.2);
    const threaded = await compareData(ref, current, { workers: 2 });
    const here = await compareData(inline, current, { workers: 0 });
    expect(threaded).toEqual(here);
    expect(PARALLEL_MIN_VALUES).toBeGreaterThan(30_000); // small inputs stay on this thread by default
  });
});

describe('serving sketches', () => {
  it('count inputs on the profile bins; a window of skewed traffic is flagged, the label is not expected', async () => {
    const { profile } = await buildProfile(dataset(5000, 60), { label: 'label' });
    const sketcher = new DataSketcher(sketchPlanOf(profile));
    const send = (rows: ReturnType<typeof dataset>) => {
      const cols = rows.columns;
      for (let i = 0; i < rows.rows; i++) {
        const features: Record<string, unknown> = {};
        for (const c of cols) {
          if (c.name === 'label' || c.name === 'id') continue;
          features[c.name] = c.type === 'numeric' ? c.values[i] : c.dictionary[c.codes[i]!];
        }
        sketcher.record(features);
      }
    };
    send(dataset(400, 61));
    const before = sketcher.snapshot();
    expect(compareSketch(profile, before).ok).toBe(true);
    send(dataset(400, 62, 0.8));
    sketcher.record({ age: 'old', amount: null, plan: 'gold' });
    const window = sketchWindow(sketcher.snapshot(), before);
    expect(window.rows).toBe(401);
    const r = compareSketch(profile, window);
    const age = feature(r, 'age');
    expect(age).toMatchObject({ basis: 'binned', method: 'ks', drifted: true, currentSize: 400 });
    expect(age.pValue).toBeLessThan(1e-6);
    expect(feature(r, 'label').skipped).toBe('the label is not part of this data');
    expect(r.problems.map((p) => p.kind).sort()).toEqual(['out-of-domain', 'wrong-type']);
    // A restarted gateway (counters lower than before) yields the new counters whole.
    expect(sketchWindow(before, window)).toBe(before);
  });
});
