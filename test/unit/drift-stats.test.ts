import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type Alternative,
  chiSquaredHomogeneity,
  chiSquaredSurvival,
  jensenShannonDistance,
  kolmogorovSurvival,
  type KsMode,
  ksAndWasserstein,
  ksPValue,
  lInfinityDistance,
  populationStabilityIndex,
} from '../../src/drift/stats';
import { generateSample, mulberry32, sortedSample, type SampleSpec } from '../helpers/drift-samples';

/** Written by scripts/drift-reference.py from scipy; see there for what each case exercises. */
interface Fixture {
  scipyVersion: string;
  generatedBy: string;
  generatorCheck: { mulberry32Seed1: number[]; samples: { generator: SampleSpec; values: number[] }[] };
  ksPairs: {
    name: string;
    n1: number;
    n2: number;
    reference: SampleSource;
    current: SampleSource;
    wasserstein: number;
    ks: {
      alternative: Alternative;
      method: KsMode;
      statistic: number;
      pvalue: number | null;
      pMethod: 'exact' | 'asymp';
      location: number;
    }[];
  }[];
  kstwo: { n: number; d: number; sf: number }[];
  chi2Sf: { x: number; dof: number; sf: number }[];
  chi2Contingency: {
    name: string;
    reference: number[];
    current: number[];
    statistic: number;
    pvalue: number;
    dof: number;
  }[];
  jensenShannon: { name: string; p: number[]; q: number[]; base: number | null; distance: number }[];
  histogramFormulas: { name: string; expected: number[]; actual: number[]; psi: number; lInfinity: number }[];
}
type SampleSource = { values: number[] } | { generator: SampleSpec };

const fixture = JSON.parse(
  readFileSync(resolve(__dirname, '../fixtures/drift/scipy-reference.json'), 'utf8'),
) as Fixture;

const sorted = (source: SampleSource): Float64Array =>
  'values' in source ? Float64Array.from(source.values).sort() : sortedSample(source.generator);

/** Statistics: within 1e-9 relative, or 1e-12 absolute when the expected value is 0. */
function expectStatistic(got: number, expected: number, what: string): void {
  const ok = expected === 0 ? Math.abs(got) <= 1e-12 : Math.abs(got - expected) <= 1e-9 * Math.abs(expected);
  expect(ok, `${what}: got ${got}, expected ${expected}`).toBe(true);
}

/**
 * p-values: within 1e-6 absolute or 1e-3 relative; below 1e-6 (where the absolute rule says nothing) the relative rule
 * alone, and an expected 0 (underflow) only accepts values that are themselves below the normal range.
 */
function expectProbability(got: number, expected: number, what: string): void {
  const diff = Math.abs(got - expected);
  let ok: boolean;
  if (expected === 0) ok = got >= 0 && got < 2.3e-308;
  else if (expected < 2.3e-308) ok = got >= 0 && got < 1e-300;
  else if (expected < 1e-6) ok = diff <= 1e-3 * expected;
  else ok = diff <= 1e-6 || diff <= 1e-3 * expected;
  expect(ok, `${what}: got ${got}, expected ${expected}`).toBe(true);
}

describe('reference fixture', () => {
  it('records where it came from and covers the cases it is meant to', () => {
    expect(fixture.scipyVersion).toMatch(/^\d+\.\d+/);
    expect(fixture.generatedBy).toContain('scripts/drift-reference.py');
    const ks = fixture.ksPairs.flatMap((p) => p.ks.map((k) => ({ ...k, n1: p.n1, n2: p.n2 })));
    for (const alternative of ['two-sided', 'less', 'greater'] as const)
      for (const method of ['auto', 'exact', 'asymp'] as const)
        expect(ks.some((k) => k.alternative === alternative && k.method === method)).toBe(true);
    expect(ks.some((k) => k.method === 'exact' && k.pMethod === 'asymp')).toBe(true);
    expect(ks.some((k) => k.pvalue !== null && k.pvalue > 0 && k.pvalue < 1e-30 && k.pMethod === 'exact')).toBe(true);
    expect(ks.some((k) => k.alternative === 'less' && k.pvalue !== null && k.pvalue < 1e-30)).toBe(true);
    expect(ks.some((k) => k.n1 === k.n2 && k.pMethod === 'exact')).toBe(true);
    expect(ks.some((k) => Math.max(k.n1, k.n2) > 100_000 && k.pMethod === 'asymp')).toBe(true);
  });

  it('draws the same integers and samples as the Python generator', () => {
    const next = mulberry32(1);
    expect(fixture.generatorCheck.mulberry32Seed1.map(() => next())).toEqual(fixture.generatorCheck.mulberry32Seed1);
    for (const { generator, values } of fixture.generatorCheck.samples)
      expect(Array.from(generateSample(generator))).toEqual(values);
  });
});

describe('ksAndWasserstein against scipy.stats.ks_2samp and wasserstein_distance', () => {
  for (const pair of fixture.ksPairs) {
    it(`${pair.name} (${pair.n1} vs ${pair.n2})`, () => {
      const reference = sorted(pair.reference);
      const current = sorted(pair.current);
      expect([reference.length, current.length]).toEqual([pair.n1, pair.n2]);
      for (const k of pair.ks) {
        const what = `${k.alternative}/${k.method}`;
        const res = ksAndWasserstein(reference, current, k.alternative, k.method);
        expectStatistic(res.statistic, k.statistic, `${what} statistic`);
        // scipy answers NaN for a forced asymptotic two-sided test of 1 vs 1 (round(n1·n2/(n1+n2)) = 0): 1 is exact.
        expectProbability(res.pValue, k.pvalue ?? 1, `${what} p-value`);
        expect(res.pMethod, `${what} method`).toBe(k.pMethod);
        expect(res.location, `${what} location`).toBe(k.location);
        expectStatistic(res.wasserstein, pair.wasserstein, 'wasserstein');
      }
    });
  }

  it('only 1 vs 1 lacks a scipy p-value', () => {
    const missing = fixture.ksPairs.flatMap((p) => p.ks.filter((k) => k.pvalue === null).map(() => [p.n1, p.n2]));
    expect(missing.length).toBeGreaterThan(0);
    for (const sizes of missing) expect(sizes).toEqual([1, 1]);
  });
});

describe('kolmogorovSurvival against scipy.stats.kstwo.sf', () => {
  const byN = new Map<number, Fixture['kstwo']>();
  for (const c of fixture.kstwo) byN.set(c.n, [...(byN.get(c.n) ?? []), c]);
  for (const [n, cases] of byN) {
    it(`n = ${n} (${cases.length} values of d)`, () => {
      for (const c of cases) expectProbability(kolmogorovSurvival(n, c.d), c.sf, `n=${n} d=${c.d}`);
    });
  }

  it('is a survival function: 1 up to 1/(2n), 0 from 1, non-increasing across the regimes in between', () => {
    for (const n of [1, 3, 10, 140, 141, 2_000, 150_000]) {
      expect(kolmogorovSurvival(n, 0)).toBe(1);
      expect(kolmogorovSurvival(n, 0.5 / n)).toBe(1);
      expect(kolmogorovSurvival(n, 1)).toBe(0);
      let previous = 1;
      for (let i = 1; i < 200; i++) {
        const d = (i / 200) ** 2;
        const sf = kolmogorovSurvival(n, d);
        expect(sf).toBeGreaterThanOrEqual(0);
        expect(sf, `n=${n} d=${d}`).toBeLessThanOrEqual(previous + 1e-9);
        previous = sf;
      }
    }
  });

  it('is NaN for a size that is not a positive integer', () => {
    expect(kolmogorovSurvival(0, 0.3)).toBeNaN();
    expect(kolmogorovSurvival(2.5, 0.3)).toBeNaN();
    expect(kolmogorovSurvival(10, NaN)).toBeNaN();
  });
});

describe('chiSquaredSurvival against scipy.stats.chi2.sf', () => {
  it(`matches at ${fixture.chi2Sf.length} points`, () => {
    for (const c of fixture.chi2Sf) expectProbability(chiSquaredSurvival(c.x, c.dof), c.sf, `x=${c.x} dof=${c.dof}`);
  });

  it('is 1 at 0, 0 at infinity, NaN without degrees of freedom', () => {
    expect(chiSquaredSurvival(0, 3)).toBe(1);
    expect(chiSquaredSurvival(-1, 3)).toBe(1);
    expect(chiSquaredSurvival(Infinity, 3)).toBe(0);
    expect(chiSquaredSurvival(2, 0)).toBeNaN();
    expect(chiSquaredSurvival(2, 2)).toBeCloseTo(Math.exp(-1), 14);
  });
});

describe('chiSquaredHomogeneity against scipy.stats.chi2_contingency', () => {
  for (const c of fixture.chi2Contingency) {
    it(c.name, () => {
      const res = chiSquaredHomogeneity(c.reference, c.current);
      expect(res.dof).toBe(c.dof);
      expectStatistic(res.statistic, c.statistic, 'statistic');
      expectProbability(res.pValue, c.pvalue, 'p-value');
    });
  }

  it('gives statistic 0, p-value 1 and dof 0 for a single category or an empty side', () => {
    const degenerate = { statistic: 0, pValue: 1, dof: 0 };
    expect(chiSquaredHomogeneity([5], [7])).toEqual(degenerate);
    expect(chiSquaredHomogeneity([0, 5, 0], [0, 7, 0])).toEqual(degenerate);
    expect(chiSquaredHomogeneity([0, 0], [3, 4])).toEqual(degenerate);
    expect(chiSquaredHomogeneity([], [])).toEqual(degenerate);
  });

  it('drops categories empty on both sides', () => {
    expect(chiSquaredHomogeneity([5, 0, 3, 0], [2, 0, 7, 0])).toEqual(chiSquaredHomogeneity([5, 3], [2, 7]));
  });

  it('rejects count vectors of different lengths', () => {
    expect(() => chiSquaredHomogeneity([1, 2], [1, 2, 3])).toThrow(RangeError);
  });
});

describe('jensenShannonDistance against scipy.spatial.distance.jensenshannon', () => {
  it(`matches ${fixture.jensenShannon.length} cases, natural log and base 2`, () => {
    for (const c of fixture.jensenShannon)
      expectStatistic(jensenShannonDistance(c.p, c.q, c.base ?? undefined), c.distance, `${c.name} base ${c.base}`);
  });

  it('is 0 when either side is all zero, and sqrt(ln 2) (1 in base 2) for disjoint supports', () => {
    expect(jensenShannonDistance([0, 0], [1, 2])).toBe(0);
    expect(jensenShannonDistance([1, 2], [0, 0])).toBe(0);
    expect(jensenShannonDistance([1, 0], [0, 1])).toBeCloseTo(Math.sqrt(Math.LN2), 15);
    expect(jensenShannonDistance([1, 0], [0, 1], 2)).toBeCloseTo(1, 15);
  });
});

describe('populationStabilityIndex and lInfinityDistance', () => {
  it('match their defining formulas', () => {
    for (const c of fixture.histogramFormulas) {
      expectStatistic(populationStabilityIndex(c.expected, c.actual), c.psi, `${c.name} psi`);
      expectStatistic(lInfinityDistance(c.expected, c.actual), c.lInfinity, `${c.name} L∞`);
    }
  });

  it('PSI: floors empty bins at epsilon, is symmetric, and 0 when either side is empty', () => {
    const e = [0.5, 0.5, 0];
    const a = [0.25, 0.25, 0.5];
    const expected = (0.25 - 0.5) * Math.log(0.5) * 2 + (0.5 - 1e-4) * Math.log(0.5 / 1e-4);
    expect(populationStabilityIndex(e, a)).toBeCloseTo(expected, 12);
    expect(populationStabilityIndex(a, e)).toBeCloseTo(expected, 12);
    expect(populationStabilityIndex(e, a, 1e-2)).toBeLessThan(expected);
    expect(populationStabilityIndex([0, 0], [1, 2])).toBe(0);
    expect(lInfinityDistance([0, 0], [1, 2])).toBe(0);
  });
});

describe('properties', () => {
  const random = mulberry32(20240611);
  const randomSample = (n: number, levels: number) => {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor((random() / 2 ** 32) * levels) / 4;
    return out.sort();
  };
  const ALTERNATIVES: Alternative[] = ['two-sided', 'less', 'greater'];
  const MODES: KsMode[] = ['auto', 'exact', 'asymp'];

  /** F1−F2 at every sample value, by counting: the definition the merge pass must agree with. */
  function bruteForce(x: Float64Array, y: Float64Array) {
    let max = -Infinity;
    let min = Infinity;
    for (const v of [...x, ...y]) {
      const diff = x.filter((a) => a <= v).length / x.length - y.filter((b) => b <= v).length / y.length;
      max = Math.max(max, diff);
      min = Math.min(min, diff);
    }
    return { greater: max, less: Math.max(0, -min), twoSided: Math.max(max, -min) };
  }

  it('D matches the ECDFs counted directly, lies in [0, 1] with its p-value; two-sided is the larger one-sided', () => {
    for (let trial = 0; trial < 200; trial++) {
      const x = randomSample(1 + (random() % 40), 2 + (random() % 30));
      const y = randomSample(1 + (random() % 40), 2 + (random() % 30));
      const brute = bruteForce(x, y);
      for (const mode of MODES) {
        const two = ksAndWasserstein(x, y, 'two-sided', mode);
        const less = ksAndWasserstein(x, y, 'less', mode);
        const greater = ksAndWasserstein(x, y, 'greater', mode);
        expect(two.statistic).toBeCloseTo(brute.twoSided, 14);
        expect(less.statistic).toBeCloseTo(brute.less, 14);
        expect(greater.statistic).toBeCloseTo(brute.greater, 14);
        expect(two.statistic).toBe(Math.max(less.statistic, greater.statistic));
        for (const r of [two, less, greater]) {
          expect(r.statistic).toBeGreaterThanOrEqual(0);
          expect(r.statistic).toBeLessThanOrEqual(1);
          expect(r.pValue).toBeGreaterThanOrEqual(0);
          expect(r.pValue).toBeLessThanOrEqual(1);
          expect([...x, ...y]).toContain(r.location);
        }
      }
    }
  });

  it('identical samples give D = 0, p = 1 and Wasserstein 0 for every alternative and mode', () => {
    for (const n of [1, 2, 7, 300, 12_000]) {
      const x = randomSample(n, 10);
      for (const alternative of ALTERNATIVES) {
        for (const mode of MODES) {
          const r = ksAndWasserstein(x, x.slice(), alternative, mode);
          expect([r.statistic, r.pValue, r.wasserstein]).toEqual([0, 1, 0]);
          expect(r.location).toBe(x[0]);
        }
      }
    }
  });

  it("swapping the samples swaps 'less' and 'greater'", () => {
    for (const [n1, n2] of [
      [5, 5],
      [7, 300],
      [40, 31],
      [600, 650],
      [12_000, 3_000],
    ] as const) {
      const x = randomSample(n1, 50);
      const y = randomSample(n2, 47).map((v) => v + 0.25);
      for (const mode of MODES) {
        const less = ksAndWasserstein(x, y, 'less', mode);
        const greater = ksAndWasserstein(y, x, 'greater', mode);
        expect(greater.statistic).toBe(less.statistic);
        expect(greater.pValue).toBe(less.pValue);
        expect(greater.pMethod).toBe(less.pMethod);
        expect(ksAndWasserstein(y, x, 'two-sided', mode).pValue).toBe(ksAndWasserstein(x, y, 'two-sided', mode).pValue);
      }
    }
  });

  it('Wasserstein of equal-size samples is the mean distance between order statistics', () => {
    for (const n of [1, 3, 50, 1000]) {
      const x = randomSample(n, 100);
      const y = randomSample(n, 60).map((v) => v * 1.5 - 2);
      let sum = 0;
      for (let i = 0; i < n; i++) sum += Math.abs(x[i]! - y[i]!);
      expect(ksAndWasserstein(x, y).wasserstein).toBeCloseTo(sum / n, 12);
    }
  });

  it('an empty side gives statistic 0, p-value 1, Wasserstein 0 and no location', () => {
    const x = Float64Array.from([1, 2, 3]);
    for (const [a, b] of [
      [x, new Float64Array(0)],
      [new Float64Array(0), x],
      [new Float64Array(0), new Float64Array(0)],
    ]) {
      const r = ksAndWasserstein(a!, b!);
      expect([r.statistic, r.pValue, r.wasserstein]).toEqual([0, 1, 0]);
      expect(r.location).toBeNaN();
    }
    expect(ksPValue(0.5, 0, 4).pValue).toBe(1);
  });

  it('exact p-values equal the share of all C(n1+n2, n1) orderings with a statistic at least as large', () => {
    for (const [n1, n2] of [
      [1, 1],
      [2, 3],
      [4, 4],
      [3, 7],
      [6, 4],
      [5, 5],
    ] as const) {
      const total = n1 + n2;
      const lcm = (n1 * n2) / gcd(n1, n2);
      const outcomes: { two: number; greater: number; less: number }[] = [];
      for (let mask = 0; mask < 1 << total; mask++) {
        if (popcount(mask) !== n1) continue;
        let i = 0;
        let j = 0;
        let max = 0;
        let min = 0;
        for (let k = 0; k < total; k++) {
          if (mask & (1 << k)) i++;
          else j++;
          const diff = (i * lcm) / n1 - (j * lcm) / n2;
          max = Math.max(max, diff);
          min = Math.min(min, diff);
        }
        outcomes.push({ two: Math.max(max, -min), greater: max, less: -min });
      }
      for (const key of ['two', 'greater', 'less'] as const) {
        const alternative: Alternative = key === 'two' ? 'two-sided' : key;
        for (const h of new Set(outcomes.map((o) => o[key]))) {
          const share = outcomes.filter((o) => o[key] >= h).length / outcomes.length;
          const res = ksPValue(h / lcm, n1, n2, alternative, 'exact');
          // Rounding can leave an exact 1 a hair above 1 (5 vs 5, h = 1): that falls back to the asymptotic value.
          expect(res.method === 'exact' || share === 1, `${n1} vs ${n2} ${alternative} h=${h} method`).toBe(true);
          expect(res.pValue, `${n1} vs ${n2} ${alternative} h=${h}`).toBeCloseTo(share, 12);
        }
      }
    }
  });

  it("uses the asymptotic p-value past 10 000 in 'auto' and when lcm(n1, n2) is too large for 'exact'", () => {
    expect(ksPValue(0.02, 10_000, 10_000).method).toBe('exact');
    expect(ksPValue(0.02, 10_001, 10_000).method).toBe('asymp');
    expect(ksPValue(0.01, 100_003, 100_019, 'two-sided', 'exact').method).toBe('asymp');
    expect(ksPValue(0.02, 9_999, 10_000, 'greater', 'exact').method).toBe('asymp');
    expect(ksPValue(0.5, 1, 1, 'two-sided', 'asymp')).toEqual({ pValue: 1, method: 'asymp' });
  });

  it('p-values outside the statistic range: 1 at or below 0, 0 above 1, NaN for NaN', () => {
    for (const alternative of ALTERNATIVES) {
      for (const [n1, n2] of [
        [5, 5],
        [4, 9],
        [20_000, 300],
      ] as const) {
        expect(ksPValue(0, n1, n2, alternative).pValue).toBe(1);
        expect(ksPValue(-0.5, n1, n2, alternative).pValue).toBe(1);
        expect(ksPValue(1.5, n1, n2, alternative).pValue).toBe(0);
        expect(ksPValue(NaN, n1, n2, alternative).pValue).toBeNaN();
      }
    }
  });

  it('PSI, Jensen-Shannon and L∞ are 0 on equal proportions and positive otherwise', () => {
    const counts = [3, 0, 10, 25, 7];
    const doubled = counts.map((c) => c * 2);
    expect(populationStabilityIndex(counts, doubled)).toBeLessThanOrEqual(1e-15);
    expect(jensenShannonDistance(counts, doubled)).toBeLessThanOrEqual(1e-8);
    expect(lInfinityDistance(counts, doubled)).toBeLessThanOrEqual(1e-15);
    const moved = [3, 1, 10, 24, 7];
    expect(populationStabilityIndex(counts, moved)).toBeGreaterThan(0);
    expect(jensenShannonDistance(counts, moved)).toBeGreaterThan(0);
    expect(lInfinityDistance(counts, moved)).toBeCloseTo(1 / 45, 15);
    expect(() => lInfinityDistance([1], [1, 2])).toThrow(RangeError);
  });
});

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function popcount(x: number): number {
  let c = 0;
  for (let v = x; v; v &= v - 1) c++;
  return c;
}
