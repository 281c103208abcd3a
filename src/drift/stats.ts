/**
 * Numeric kernels of the drift tests: the two-sample Kolmogorov-Smirnov test and the Wasserstein-1 distance in one
 * merge pass over sorted samples, the finite-n Kolmogorov distribution behind the KS p-values, the chi-squared
 * homogeneity test, and distances between histograms (Jensen-Shannon, PSI, L-infinity). Plain numbers and typed
 * arrays, no dependencies. `scripts/drift-reference.py` writes reference values for every function from scipy, and
 * `test/unit/drift-stats.test.ts` holds these kernels to them.
 */

export type Alternative = 'two-sided' | 'less' | 'greater';
export type KsMode = 'auto' | 'exact' | 'asymp';

export interface KsWassersteinResult {
  /**
   * KS statistic for the requested alternative (two-sided: max |F1-F2|; 'greater': max(F1-F2); 'less': max(F2-F1)),
   * F1 = ECDF of `reference`, F2 = of `current`, both right-continuous, ties handled (evaluate at every distinct value
   * after consuming all equal values from both samples).
   */
  statistic: number;
  pValue: number;
  /** Which p-value computation was used. */
  pMethod: 'exact' | 'asymp';
  /** The value at which the statistic is attained. */
  location: number;
  /** Wasserstein-1 distance between the two empirical distributions: ∫|F1−F2|dx over the merged support. */
  wasserstein: number;
}

/** Samples up to this size (both sides) get an exact KS p-value in 'auto' mode. */
export const KS_EXACT_MAX_N = 10_000;

const INT32_MAX = 2_147_483_647;
const LOG_DBL_MAX = Math.log(Number.MAX_VALUE);
const EPSILON = Number.EPSILON;

/**
 * Two-sample KS test and Wasserstein-1 distance in ONE merge pass over two ascending-sorted, NaN-free samples
 * (O(n1+n2), no allocation). At every distinct value v, after both cursors have passed all values equal to v,
 * F1(v) = i/n1 and F2(v) = j/n2; the statistic is the extreme of F1−F2 over those points, and the Wasserstein
 * distance is Σ |F1(v_k) − F2(v_k)|·(v_{k+1} − v_k) over consecutive distinct values (a compensated sum).
 *
 * When the statistic is attained at several values, `location` is the smallest of them that occurs in `reference`,
 * else the smallest in `current` (the first attaining element of `reference` followed by `current`); with identical
 * samples (D = 0) that is the smallest reference value. The p-value is {@link ksPValue} of the statistic.
 * An empty side (n1 = 0 or n2 = 0) gives statistic 0, p-value 1 (method 'exact'), wasserstein 0 and location NaN.
 * Infinite values break the Wasserstein integral (NaN); the KS part stays meaningful.
 */
export function ksAndWasserstein(
  referenceSorted: Float64Array,
  currentSorted: Float64Array,
  alternative: Alternative = 'two-sided',
  mode: KsMode = 'auto',
): KsWassersteinResult {
  const ref = referenceSorted;
  const cur = currentSorted;
  const n1 = ref.length;
  const n2 = cur.length;
  if (n1 === 0 || n2 === 0) return { statistic: 0, pValue: 1, pMethod: 'exact', location: NaN, wasserstein: 0 };

  // The reference is usually five or more times larger than the current sample, so most steps are runs of reference
  // values between two current values. Over such a run F2 is constant and F1 - F2 rises, so the run's smallest
  // difference is at its first value and its largest at its last: the run needs the KS bookkeeping twice, and in
  // between only the Wasserstein terms (a value equal to the one before adds a zero term, which changes nothing).
  let i = 0;
  let j = 0;
  let maxRef = -Infinity;
  let maxRefAt = NaN;
  let maxCur = -Infinity;
  let maxCurAt = NaN;
  let minRef = Infinity;
  let minRefAt = NaN;
  let minCur = Infinity;
  let minCurAt = NaN;
  let sum = 0;
  let compensation = 0;
  let previousGap = 0;
  let previousValue = 0;
  let first = true;
  while (i < n1 || j < n2) {
    if (j < n2 && !(i < n1 && ref[i]! < cur[j]!)) {
      // The next distinct value is in the current sample (and maybe in the reference, whose value is kept: -0, not 0).
      const inRef = i < n1 && ref[i] === cur[j];
      const v = inRef ? ref[i]! : cur[j]!;
      while (i < n1 && ref[i] === v) i++;
      while (j < n2 && cur[j] === v) j++;
      if (!first) {
        const term = previousGap * (v - previousValue);
        const t = sum + term;
        compensation += Math.abs(sum) >= Math.abs(term) ? sum - t + term : term - t + sum;
        sum = t;
      }
      first = false;
      const diff = i / n1 - j / n2;
      if (inRef) {
        if (diff > maxRef) {
          maxRef = diff;
          maxRefAt = v;
        }
        if (diff < minRef) {
          minRef = diff;
          minRefAt = v;
        }
      }
      if (diff > maxCur) {
        maxCur = diff;
        maxCurAt = v;
      }
      if (diff < minCur) {
        minCur = diff;
        minCurAt = v;
      }
      previousGap = Math.abs(diff);
      previousValue = v;
      continue;
    }
    // A run of reference values below the next current value (or after the last one).
    const end = j < n2 ? cur[j]! : Infinity;
    const tail = j === n2;
    const f2 = j / n2;
    let v = ref[i]!;
    while (i < n1 && ref[i] === v) i++;
    if (!first) {
      const term = previousGap * (v - previousValue);
      const t = sum + term;
      compensation += Math.abs(sum) >= Math.abs(term) ? sum - t + term : term - t + sum;
      sum = t;
    }
    first = false;
    let diff = i / n1 - f2;
    if (diff < minRef) {
      minRef = diff;
      minRefAt = v;
    }
    previousGap = Math.abs(diff);
    previousValue = v;
    while (i < n1 && (tail || ref[i]! < end)) {
      v = ref[i]!;
      i++;
      const term = previousGap * (v - previousValue);
      const t = sum + term;
      compensation += Math.abs(sum) >= Math.abs(term) ? sum - t + term : term - t + sum;
      sum = t;
      diff = i / n1 - f2;
      previousGap = Math.abs(diff);
      previousValue = v;
    }
    if (diff > maxRef) {
      maxRef = diff;
      maxRefAt = v;
    }
  }

  const maxS = maxRef >= maxCur ? maxRef : maxCur;
  const maxAt = maxRef >= maxCur ? maxRefAt : maxCurAt;
  const minS = Math.min(1, Math.max(0, -(minRef <= minCur ? minRef : minCur)));
  const minAt = minRef <= minCur ? minRefAt : minCurAt;
  const useMin = alternative === 'less' || (alternative === 'two-sided' && minS > maxS);
  const statistic = useMin ? minS : maxS;
  const { pValue, method } = ksPValue(statistic, n1, n2, alternative, mode);
  return { statistic, pValue, pMethod: method, location: useMin ? minAt : maxAt, wasserstein: sum + compensation };
}

/**
 * p-value of the two-sample KS statistic `d` for sizes n1 (reference) and n2 (current); the one-sided alternatives
 * share one null distribution, symmetric in n1 and n2.
 *
 * Mode: 'auto' is exact when max(n1, n2) ≤ 10 000, else asymptotic; 'exact' switches to asymptotic when
 * (n1/g)·(n2/g) ≥ 2^31 − 1, g = gcd(n1, n2).
 *
 * Exact: the statistic lives on the grid h/L, L = lcm(n1, n2), h = round(d·L) (half to even), and the p-value is the
 * share of the C(n1+n2, n1) monotone lattice paths from (0,0) to (n1,n2) that reach the boundary h:
 * - two-sided, n1 = n2 = n: P = 2·Σ_k (−1)^(k+1) C(2n, n−kh)/C(2n, n), evaluated as a nested product so that no
 *   term is subtracted from a much larger one;
 * - two-sided, n1 ≠ n2: a column-by-column recursion over the band |x/m − y/n| < h/L of the share of paths that
 *   have already left it, with one Float64Array row the width of the band (O(n1·n2) at worst);
 * - one-sided, n1 = n2: C(2n, n−h)/C(2n, n) = Π_{j<h} (n−j)/(n+j+1);
 * - one-sided, n1 ≠ n2: the count of paths crossing the line, by first crossing point (binomial coefficients from
 *   log-gamma), divided by C(n1+n2, n1).
 * h = 0 gives 1. An exact computation that cannot be carried out in doubles — C(n1+n2, n1) overflows (one-sided,
 * n1 ≠ n2), or the result falls outside [0, 1] through rounding (an exact 1 can come out as 1 + 2^−52, e.g. 5 vs 5
 * at h = 1) — falls back to the asymptotic p-value of h/L, and the result says 'asymp'.
 *
 * Asymptotic, with m ≥ n the two sizes and e = m·n/(m+n): two-sided uses the finite-n Kolmogorov distribution,
 * {@link kolmogorovSurvival}(round(e), d); one-sided uses exp(−2z² − 2z(m+2n)/(3·sqrt(m·n·(m+n)))), z = sqrt(e)·d.
 * For n1 = n2 = 1, round(e) = 0 leaves the two-sided approximation undefined; the exact value, 1, is returned
 * instead.
 *
 * The result is clipped to [0, 1]. d ≤ 0 gives 1, d > 1 gives 0, NaN gives NaN; an empty side gives 1 ('exact').
 */
export function ksPValue(
  d: number,
  n1: number,
  n2: number,
  alternative: Alternative = 'two-sided',
  mode: KsMode = 'auto',
): { pValue: number; method: 'exact' | 'asymp' } {
  if (!(n1 >= 1 && n2 >= 1)) return { pValue: 1, method: 'exact' };
  const g = gcd(n1, n2);
  const n1g = n1 / g;
  const n2g = n2 / g;
  let method: 'exact' | 'asymp' = mode === 'auto' ? (Math.max(n1, n2) <= KS_EXACT_MAX_N ? 'exact' : 'asymp') : mode;
  if (mode === 'exact' && n1g >= INT32_MAX / n2g) method = 'asymp';
  if (!(d > 0 && d <= 1)) return { pValue: Number.isNaN(d) ? NaN : d <= 0 ? 1 : 0, method };

  let stat = d;
  if (method === 'exact') {
    const lcm = n1g * n2;
    const h = roundHalfEven(d * lcm);
    stat = h / lcm;
    if (h === 0) return { pValue: 1, method: 'exact' };
    const p = exactKsTail(n1, n2, g, h, alternative);
    if (p >= 0 && p <= 1) return { pValue: p, method: 'exact' };
  }

  const m = Math.max(n1, n2);
  const n = Math.min(n1, n2);
  const en = (m * n) / (m + n);
  let p: number;
  if (alternative === 'two-sided') {
    const nEff = roundHalfEven(en);
    p = nEff === 0 ? 1 : kolmogorovSurvival(nEff, stat);
  } else {
    const z = Math.sqrt(en) * stat;
    p = Math.exp(-2 * z * z - (2 * z * (m + 2 * n)) / Math.sqrt(m * n * (m + n)) / 3);
  }
  return { pValue: clip01(p), method: 'asymp' };
}

/** Exact tail probability for h on the lattice; NaN when it cannot be computed in doubles. */
function exactKsTail(n1: number, n2: number, g: number, h: number, alternative: Alternative): number {
  if (alternative === 'two-sided') {
    return n1 === n2 ? probOutsideSquare(n1, h) : probLeavingBand(n1, n2, g, h);
  }
  if (n1 === n2) {
    let p = 1;
    for (let j = 0; j < h; j++) p *= (n1 - j) / (n1 + j + 1);
    return p;
  }
  if (logBinomial(n1 + n2, Math.min(n1, n2)) >= LOG_DBL_MAX) return NaN;
  const total = binomial(n1 + n2, n1);
  const crossing = countPathsCrossing(n1, n2, g, h);
  return Number.isFinite(crossing) && crossing <= total ? crossing / total : NaN;
}

/**
 * P(D_{n,n} ≥ h/n) = 2·(A0 − A0·A1 + A0·A1·A2 − …) with A_k = C(2n, n−kh)/C(2n, n−(k−1)h), as the nested product
 * 2·A0·(1 − A1·(1 − A2·(1 − …))), innermost first.
 */
function probOutsideSquare(n: number, h: number): number {
  let p = 0;
  for (let k = Math.floor(n / h); k >= 0; k--) {
    let a = 1;
    for (let j = 0; j < h; j++) a = ((n - k * h - j) * a) / (n + k * h + j + 1);
    p = a * (1 - p);
  }
  return 2 * p;
}

/**
 * Share of lattice paths from (0,0) to (m,n) (m ≥ n after swapping) that leave the band |n·x − m·y| < h·g at some
 * point. Column x keeps, for each y in the band, the share of paths to (x,y) that have already left it; paths are
 * weighted so that a column's shares are probabilities, A(x,y) = (x·A(x−1,y) + y·A(x,y−1))/(x+y), with 1 outside the
 * band. Only the band slice of one column is stored.
 */
function probLeavingBand(m0: number, n0: number, g: number, h: number): number {
  const m = Math.max(m0, n0);
  const n = Math.min(m0, n0);
  const mg = m / g;
  const ng = n / g;
  let minj = 0;
  let maxj = Math.min(Math.ceil(h / mg), n + 1);
  let curlen = maxj - minj;
  const a = new Float64Array(Math.min(2 * maxj + 2, n + 1)).fill(1);
  a.fill(0, minj, maxj);
  const reciprocal = new Float64Array(m + n + 1);
  for (let k = 1; k <= m + n; k++) reciprocal[k] = 1 / k;
  for (let i = 1; i <= m; i++) {
    const lastminj = minj;
    const lastlen = curlen;
    minj = Math.min(Math.max(Math.floor((ng * i - h) / mg) + 1, 0), n);
    maxj = Math.min(Math.ceil((ng * i + h) / mg), n + 1);
    if (maxj <= minj) return 1;
    let val = minj === 0 ? 0 : 1;
    const shift = minj - lastminj;
    const width = maxj - minj;
    let jj = 0;
    for (let j = minj; jj + 1 < width; jj += 2, j += 2) {
      const r0 = reciprocal[i + j]!;
      const r1 = reciprocal[i + j + 1]!;
      const u0 = a[jj + shift]! * (i * r0);
      const u1 = a[jj + 1 + shift]! * (i * r1);
      const b0 = j * r0;
      const b1 = (j + 1) * r1;
      a[jj] = u0 + b0 * val;
      val = u1 + b1 * u0 + b1 * b0 * val;
      a[jj + 1] = val;
    }
    if (jj < width) {
      const j = jj + minj;
      const r = reciprocal[i + j]!;
      val = a[jj + shift]! * (i * r) + val * (j * r);
      a[jj] = val;
    }
    curlen = width;
    if (lastlen > curlen) a.fill(1, width, width + (lastlen - curlen));
  }
  return Math.min(1, a[maxj - minj - 1]!);
}

/**
 * Number of lattice paths from (0,0) to (m,n) (m ≥ n after swapping) that reach n·x − m·y ≥ h·g. B_j counts the
 * paths to the first such point (x_j, j) of row j that do not reach the region earlier:
 * B_j = C(x_j + j, j) − Σ_{i<j} C(x_j − x_i + j − i, j − i)·B_i, and each continues in C(m − x_j + n − j, n − j) ways.
 */
function countPathsCrossing(m0: number, n0: number, g: number, h: number): number {
  const m = Math.max(m0, n0);
  const n = Math.min(m0, n0);
  const mg = m / g;
  const ng = n / g;
  const rows = n + Math.floor((mg - h) / mg);
  if (rows <= 0) return binomial(m + n, n);
  const xj = new Float64Array(rows);
  for (let j = 0; j < rows; j++) xj[j] = Math.floor((h + mg * j + ng - 1) / ng);
  const b = new Float64Array(rows);
  b[0] = 1;
  for (let j = 1; j < rows; j++) {
    let bj = binomial(xj[j]! + j, j);
    for (let i = 0; i < j; i++) bj -= binomial(xj[j]! - xj[i]! + j - i, j - i) * b[i]!;
    b[j] = bj;
  }
  let paths = 0;
  for (let j = 0; j < rows; j++) paths += b[j]! * binomial(m - xj[j]! + (n - j), n - j);
  return paths;
}

// --- Kolmogorov distribution ---------------------------------------------------------------------------------------

/**
 * Survival function of the finite-n Kolmogorov (one-sample, two-sided) statistic, P(D_n ≥ d). Support (1/(2n), 1]:
 * 1 at or below 1/(2n), 0 from 1 on; NaN unless n is a positive integer and d a number. Regimes (t = n·d):
 * - t ≤ 1: 1 − n!/n^n·(2t − 1)^n (Ruben-Gambino), the factorial by a product up to n = 140, by Stirling above;
 * - t ≥ n − 1: 2·(1 − d)^n;
 * - d ≥ 0.5: 2·P(D⁺_n ≥ d), the one-sided Smirnov tail (both sides cannot be crossed at once);
 * - n ≤ 140: 1 − Durbin's matrix CDF (Marsaglia-Tsang-Wang) for n·d² ≤ 0.754693, 1 − Pomeranz's recursion for
 *   n·d² ≤ 4, else 2·P(D⁺_n ≥ d);
 * - n > 140: 0 for n·d² ≥ 370, 2·P(D⁺_n ≥ d) for n·d² ≥ 2.2, else 1 − the CDF by Durbin's matrix when n ≤ 100 000 and
 *   n·d^1.5 ≤ 1.4, by the Pelz-Good expansion otherwise (Simard and L'Ecuyer's choice of method).
 * P(D⁺_n ≥ d) is the Birnbaum-Tingey sum for n ≤ 10^6 and exp(−(6nd + 1)²/(18n)) above.
 */
export function kolmogorovSurvival(n: number, d: number): number {
  if (!(n >= 1 && Number.isInteger(n)) || Number.isNaN(d)) return NaN;
  if (d <= 0.5 / n) return 1;
  if (d >= 1) return 0;
  const t = n * d;
  if (t <= 1) {
    if (t <= 0.5) return 1;
    let cdf: number;
    if (n <= 140) {
      cdf = 1;
      const base = 2 * t - 1;
      for (let i = 1; i <= n; i++) cdf *= i * (1 / n) * base;
    } else {
      cdf = Math.exp(logFactorialOverPower(n) + n * Math.log(2 * t - 1));
    }
    return clip01(1 - cdf);
  }
  if (t >= n - 1) return clip01(2 * Math.pow(1 - d, n));
  if (d >= 0.5) return clip01(2 * smirnovSurvival(n, d));
  const nd2 = t * d;
  if (n <= 140) {
    if (nd2 <= 0.754693) return clip01(1 - durbinCdf(n, d));
    if (nd2 <= 4) return clip01(1 - pomeranzCdf(n, d));
    return clip01(2 * smirnovSurvival(n, d));
  }
  if (nd2 >= 370) return 0;
  if (nd2 >= 2.2) return clip01(2 * smirnovSurvival(n, d));
  const cdf = n <= 100_000 && n * Math.pow(d, 1.5) <= 1.4 ? durbinCdf(n, d) : pelzGoodCdf(n, d);
  return clip01(1 - cdf);
}

/** Stirling series coefficients B_2j/(2j·(2j−1)), j = 8 down to 1 (Horner order in 1/n²). */
const STIRLING = [-3617 / 122400, 1 / 156, -691 / 360360, 1 / 1188, -1 / 1680, 1 / 1260, -1 / 360, 1 / 12];

/** log(n!/n^n) by Stirling's series with n·log(n) cancelled analytically. */
function logFactorialOverPower(n: number): number {
  const rn = 1 / n;
  const x = rn / n;
  let poly = 0;
  for (const c of STIRLING) poly = poly * x + c;
  return Math.log(n) / 2 - n + Math.log(2 * Math.PI) / 2 + rn * poly;
}

const TWO_128 = 2 ** 128;
const TWO_M128 = 2 ** -128;

/**
 * P(D_n ≤ d) by Durbin's matrix: with d = (k − h)/n, k integer, 0 ≤ h < 1, the answer is n!/n^n times the (k,k)
 * entry of H^n for a (2k−1)×(2k−1) matrix H of Poisson-like terms; H^n by repeated squaring, rescaled by 2^128
 * whenever the tracked entry grows past 2^128, the exponent kept apart.
 */
function durbinCdf(n: number, d: number): number {
  if (d >= 1) return 1;
  const nd = n * d;
  if (nd <= 0.5) return 0;
  const k = Math.ceil(nd);
  const h = k - nd;
  const m = 2 * k - 1;
  const v = new Float64Array(m);
  const w = new Float64Array(m);
  let fac = 1;
  for (let j = 1; j <= m; j++) {
    w[j - 1] = fac;
    fac /= j;
    v[j - 1] = (1 - Math.pow(h, j)) * fac;
  }
  v[m - 1] = (1 + (Math.pow(Math.max(2 * h - 1, 0), m) - 2 * Math.pow(h, m))) * fac;

  let hm = new Float64Array(m * m);
  for (let c = 1; c < m; c++) for (let r = c - 1; r < m; r++) hm[r * m + c] = w[r - c + 1]!;
  for (let r = 0; r < m; r++) hm[r * m] = v[r]!;
  for (let c = 0; c < m; c++) hm[(m - 1) * m + c] = v[m - 1 - c]!;

  let power = new Float64Array(m * m);
  for (let r = 0; r < m; r++) power[r * m + r] = 1;
  let scratch = new Float64Array(m * m);
  let expnt = 0;
  let hExpnt = 0;
  const kk = (k - 1) * m + (k - 1);
  for (let nn = n; nn > 0; nn = Math.floor(nn / 2)) {
    if (nn % 2 === 1) {
      matMul(power, hm, scratch, m);
      [power, scratch] = [scratch, power];
      expnt += hExpnt;
    }
    matMul(hm, hm, scratch, m);
    [hm, scratch] = [scratch, hm];
    hExpnt *= 2;
    if (Math.abs(hm[kk]!) > TWO_128) {
      for (let i = 0; i < hm.length; i++) hm[i]! /= TWO_128;
      hExpnt += 128;
    }
  }

  let p = power[kk]!;
  for (let i = 1; i <= n; i++) {
    p = (i * p) / n;
    if (Math.abs(p) < TWO_M128) {
      p *= TWO_128;
      expnt -= 128;
    }
  }
  return ldexp(p, expnt);
}

function matMul(a: Float64Array, b: Float64Array, out: Float64Array, m: number): void {
  out.fill(0);
  for (let r = 0; r < m; r++) {
    const ro = r * m;
    for (let t = 0; t < m; t++) {
      const art = a[ro + t]!;
      if (art === 0) continue;
      const to = t * m;
      for (let c = 0; c < m; c++) out[ro + c]! += art * b[to + c]!;
    }
  }
}

/**
 * P(D_n ≤ d) by Pomeranz's recursion: 2n+1 steps, each the convolution of a short window of the previous row with
 * truncated Poisson weights ((g/n)^k/k!, (2g/n)^k/k! or ((1−2g)/n)^k/k!, g = min(f, 1−f), f the fractional part of
 * n·d); the answer is n! times the last entry. Rows are rescaled by 2^128 when they underflow.
 */
function pomeranzCdf(n: number, x: number): number {
  const t = n * x;
  const ll = Math.floor(t);
  const f = t - ll;
  const g = Math.min(f, 1 - f);
  const ceilf = f > 0 ? 1 : 0;
  const roundf = f > 0.5 ? 1 : 0;
  const npwrs = 2 * (ll + 1);
  const gpower = new Float64Array(npwrs);
  const twogpower = new Float64Array(npwrs);
  const onem2gpower = new Float64Array(npwrs);
  gpower[0] = 1;
  twogpower[0] = 1;
  onem2gpower[0] = 1;
  const gOverN = g / n;
  const twoGOverN = (2 * g) / n;
  const oneMinusTwoGOverN = (1 - 2 * g) / n;
  for (let k = 1; k < npwrs; k++) {
    gpower[k] = (gpower[k - 1]! * gOverN) / k;
    twogpower[k] = (twogpower[k - 1]! * twoGOverN) / k;
    onem2gpower[k] = (onem2gpower[k - 1]! * oneMinusTwoGOverN) / k;
  }

  const window = (i: number): [number, number] => {
    let j1: number;
    let j2: number;
    if (i === 0) {
      j1 = -ll - ceilf - 1;
      j2 = ll + ceilf - 1;
    } else {
      const half = Math.floor((i + 1) / 2);
      if ((i + 1) % 2 === 0) {
        if (half === n + 1) {
          j1 = n - ll - ceilf - 1;
          j2 = n + ll + ceilf - 1;
        } else {
          j1 = half - 1 - ll - roundf - 1;
          j2 = half + ll - 1 + ceilf - 1;
        }
      } else {
        j1 = half - 1 - ll - 1;
        j2 = half + ll + roundf - 1;
      }
    }
    return [Math.max(j1 + 2, 0), Math.min(j2, n)];
  };

  let v0 = new Float64Array(npwrs);
  let v1 = new Float64Array(npwrs);
  v1[0] = 1;
  let v0s = 0;
  let v1s = 0;
  let expnt = 0;
  let [j1, j2] = window(0);
  for (let i = 1; i < 2 * n + 2; i++) {
    const k1 = j1;
    [v0, v1] = [v1, v0];
    [v0s, v1s] = [v1s, v0s];
    v1.fill(0);
    [j1, j2] = window(i);
    const pwrs = i === 1 || i === 2 * n + 1 ? gpower : i % 2 === 1 ? twogpower : onem2gpower;
    const ln2 = j2 - k1 + 1;
    if (ln2 > 0) {
      const start = j1 - k1;
      const len = j2 - j1 + 1;
      const base = k1 - v0s;
      let max = 0;
      for (let c = 0; c < len; c++) {
        const idx = start + c;
        let s = 0;
        for (let a = Math.max(0, idx - ln2 + 1); a <= Math.min(idx, ln2 - 1); a++) {
          const src = base + a;
          if (src >= 0 && src < npwrs) s += v0[src]! * pwrs[idx - a]!;
        }
        v1[c] = s;
        if (s > max) max = s;
      }
      if (max > 0 && max < TWO_M128) {
        for (let c = 0; c < npwrs; c++) v1[c]! *= TWO_128;
        expnt -= 128;
      }
      v1s = v0s + j1 - k1;
    }
  }
  let ans = v1[n - v1s]!;
  for (let k = 1; k <= n; k++) {
    if (Math.abs(ans) > TWO_128) {
      ans *= TWO_M128;
      expnt += 128;
    }
    ans *= k;
  }
  return ldexp(ans, expnt);
}

/**
 * P(D_n ≤ d) by the Pelz-Good expansion K0(z) + K1(z)/√n + K2(z)/n + K3(z)/n^1.5, z = d·√n, each K_i written with
 * Jacobi theta sums in q = exp(−π²/(8z²)), which converge fast for small z. 0 when q underflows (z ≲ 0.0417).
 */
function pelzGoodCdf(n: number, x: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const PI2 = Math.PI ** 2;
  const PI4 = Math.PI ** 4;
  const PI6 = Math.PI ** 6;
  const SQRT2PI = Math.sqrt(2 * Math.PI);
  const z = Math.sqrt(n) * x;
  const z2 = z ** 2;
  const z3 = z ** 3;
  const z4 = z ** 4;
  const z6 = z ** 6;
  const qlog = -PI2 / 8 / z2;
  if (qlog < -708) return 0;
  let q = Math.exp(qlog);

  const k1a = -z2;
  const k1b = PI2 / 4;
  const k2a = 6 * z6 + 2 * z4;
  const k2b = ((2 * z4 - 5 * z2) * PI2) / 4;
  const k2c = (PI4 * (1 - 2 * z2)) / 16;
  const k3d = (PI6 * (5 - 30 * z2)) / 64;
  const k3c = (PI4 * (-60 * z2 + 212 * z4)) / 16;
  const k3b = (PI2 * (135 * z4 - 96 * z6)) / 4;
  const k3a = -30 * z6 - 90 * z ** 8;

  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  const maxk = Math.ceil((16 * z) / Math.PI);
  for (let k = maxk; k > 0; k--) {
    const m = 2 * k - 1;
    const m2 = m ** 2;
    const m4 = m ** 4;
    const m6 = m ** 6;
    const qp = Math.pow(q, 8 * k);
    s0 = s0 * qp + 1;
    s1 = s1 * qp + (k1a + k1b * m2);
    s2 = s2 * qp + (k2a + k2b * m2 + k2c * m4);
    s3 = s3 * qp + (k3a + k3b * m2 + k3c * m4 + k3d * m6);
  }
  s0 = (s0 * q * SQRT2PI) / z;
  s1 = (s1 * q * SQRT2PI) / (6 * z4);
  s2 = (s2 * q * SQRT2PI) / (72 * z ** 7);
  s3 = (s3 * q * SQRT2PI) / (6480 * z ** 10);

  q = Math.exp(-PI2 / 2 / z2);
  const sqrt3z = Math.sqrt(3) * z;
  let k2extra = 0;
  let k3extra = 0;
  for (let k = maxk; k > 0; k--) {
    const k2 = k * k;
    const qk = Math.pow(q, k2);
    const kpi = Math.PI * k;
    k2extra += k2 * qk;
    k3extra += (sqrt3z + kpi) * (sqrt3z - kpi) * k2 * qk;
  }
  s2 += (k2extra * PI2 * SQRT2PI) / (-36 * z3);
  s3 += (k3extra * PI2 * SQRT2PI) / (216 * z6);
  return s0 + s1 / Math.sqrt(n) + s2 / n + s3 / Math.pow(n, 1.5);
}

/** −2n·d² below this: the one-sided tail underflows even the smallest subnormal double. */
const MIN_LOG = -745.1332191019412;

/**
 * One-sided Smirnov tail P(D⁺_n ≥ d) (the domain here is 1 < n·d < n − 1), by the Birnbaum-Tingey sum
 * d·Σ_{v=0}^{⌈n(1−d)⌉−1} C(n,v)·(d + v/n)^(v−1)·(1 − d − v/n)^(n−v) of positive terms taken in logs, stopped once the
 * remaining terms cannot reach the last bit; n·d is split exactly (hi + lo) so the summation limit and the bases near
 * 0 are right. For n > 10^6, exp(−(6nd + 1)²/(18n)).
 */
function smirnovSurvival(n: number, x: number): number {
  if (n === 1) return 1 - x;
  if (x <= 0) return 1;
  if (x >= 1) return 0;
  const [nxHi, nxLo] = twoProduct(n, x);
  let nxfl = Math.floor(nxHi);
  if (nxfl === nxHi && nxLo < 0) nxfl -= 1;
  let alpha = nxHi - nxfl + nxLo;
  if (alpha === 1) {
    nxfl += 1;
    alpha = 0;
  }
  if (nxfl === 0 || (nxfl === 1 && alpha === 0)) {
    return 1 - x * Math.exp((n - 1) * Math.log1p(x));
  }
  if (-2 * n * x * x < MIN_LOG) return 0;
  if (nxfl >= n - 1) return Math.exp(n * Math.log1p(-x));
  if (n > 1_000_000) {
    const logp = -Math.pow(6 * n * x + 1, 2) / 18 / n;
    return logp < -Math.LN2 ? Math.exp(logp) : 1 + Math.expm1(logp);
  }
  const terms = n - nxfl;
  const lgn1 = logGamma(n + 1);
  let sum = Math.exp(n * Math.log1p(-x) - Math.log(x));
  const vmid = Math.floor(n / 2);
  for (let v = 1; v < terms; v++) {
    const t1 = (v + nxHi + nxLo) / n;
    const logT2 = t1 < 0.5 ? Math.log1p(-t1) : Math.log((n - v - nxHi - nxLo) / n);
    const logTerm = lgn1 - logGamma(v + 1) - logGamma(n - v + 1) + (v - 1) * Math.log(t1) + (n - v) * logT2;
    const term = Math.exp(logTerm);
    if (Number.isFinite(term) && term !== 0) sum += term;
    if (term !== 0) {
      if (4 * (terms - v) * term < EPSILON * sum && v !== terms - 1) break;
    } else if (v > vmid) {
      break;
    }
  }
  return x * sum;
}

// --- Chi-squared -----------------------------------------------------------------------------------------------------

/**
 * Upper tail of chi-squared with `dof` degrees of freedom, P(X ≥ x) = Q(dof/2, x/2), the regularised upper incomplete
 * gamma function: 1 − the series of P(a, y) for y < a + 1, the Lentz continued fraction of Q otherwise, with the
 * prefactor exp(−y + a·ln y − lnΓ(a)) and lnΓ by Lanczos. 1 for x ≤ 0, 0 for x = ∞; NaN for dof ≤ 0 or NaN input.
 */
export function chiSquaredSurvival(x: number, dof: number): number {
  if (Number.isNaN(x) || !(dof > 0)) return NaN;
  if (x <= 0) return 1;
  if (x === Infinity) return 0;
  return regularizedGammaQ(dof / 2, x / 2);
}

function regularizedGammaQ(a: number, x: number): number {
  const logPrefix = -x + a * Math.log(x) - logGamma(a);
  const maxIterations = 1000 + Math.ceil(20 * Math.sqrt(a));
  if (x < a + 1) {
    let ap = a;
    let del = 1 / a;
    let sum = del;
    for (let i = 0; i < maxIterations; i++) {
      ap += 1;
      del *= x / ap;
      sum += del;
      if (Math.abs(del) < Math.abs(sum) * EPSILON) break;
    }
    return clip01(1 - sum * Math.exp(logPrefix));
  }
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i <= maxIterations; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < EPSILON) break;
  }
  return clip01(Math.exp(logPrefix) * h);
}

/**
 * Chi-squared test of homogeneity of two count vectors over the same categories: the 2×k table [reference; current]
 * with expected counts E_rc = row_r·col_c/total and statistic Σ (O − E)²/E on k − 1 degrees of freedom. Categories
 * where both counts are 0 are dropped first. With one degree of freedom Yates' correction moves each observed count
 * towards its expectation by min(0.5, |O − E|). dof 0 (a single category, or an empty side) gives statistic 0,
 * p-value 1.
 */
export function chiSquaredHomogeneity(
  reference: ArrayLike<number>,
  current: ArrayLike<number>,
): { statistic: number; pValue: number; dof: number } {
  sameLength(reference, current);
  let categories = 0;
  let rowRef = 0;
  let rowCur = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i]!;
    const c = current[i]!;
    if (r + c === 0) continue;
    categories++;
    rowRef += r;
    rowCur += c;
  }
  if (categories < 2 || rowRef === 0 || rowCur === 0) return { statistic: 0, pValue: 1, dof: 0 };
  const dof = categories - 1;
  const total = rowRef + rowCur;
  const cell = (observed: number, expected: number): number => {
    let o = observed;
    if (dof === 1) {
      const diff = expected - o;
      o += Math.sign(diff) * Math.min(0.5, Math.abs(diff));
    }
    return (o - expected) ** 2 / expected;
  };
  let statRef = 0;
  let statCur = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i]!;
    const c = current[i]!;
    const column = r + c;
    if (column === 0) continue;
    statRef += cell(r, (rowRef * column) / total);
    statCur += cell(c, (rowCur * column) / total);
  }
  const statistic = statRef + statCur;
  return { statistic, pValue: chiSquaredSurvival(statistic, dof), dof };
}

// --- Histogram distances ------------------------------------------------------------------------------------------

/**
 * Jensen-Shannon distance sqrt(JS(p‖q)), JS = (KL(p‖m) + KL(q‖m))/2, m = (p+q)/2, in natural log unless `base` is
 * given (then divided by ln(base)). Inputs are counts or weights, each normalised to sum 1; 0·log 0 = 0. Bounded by
 * sqrt(ln 2) (1 in base 2). 0 when either side is all zero; rounding below 0 is clamped.
 */
export function jensenShannonDistance(p: ArrayLike<number>, q: ArrayLike<number>, base?: number): number {
  sameLength(p, q);
  const sumP = total(p);
  const sumQ = total(q);
  if (!(sumP > 0 && sumQ > 0)) return 0;
  let left = 0;
  let right = 0;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i]! / sumP;
    const qi = q[i]! / sumQ;
    const mi = (pi + qi) / 2;
    if (pi > 0) left += pi * Math.log(pi / mi);
    if (qi > 0) right += qi * Math.log(qi / mi);
  }
  let js = left + right;
  if (base !== undefined) js /= Math.log(base);
  return Math.sqrt(Math.max(0, js / 2));
}

/**
 * Population stability index of `actual` against `expected` counts over the same bins: Σ (a_i − e_i)·ln(a_i/e_i)
 * over proportions, each floored at `epsilon` (default 1e-4) so empty bins stay finite. Every term is ≥ 0. 0 when
 * either side is empty.
 */
export function populationStabilityIndex(
  expected: ArrayLike<number>,
  actual: ArrayLike<number>,
  epsilon = 1e-4,
): number {
  sameLength(expected, actual);
  const sumE = total(expected);
  const sumA = total(actual);
  if (!(sumE > 0 && sumA > 0)) return 0;
  let psi = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.max(expected[i]! / sumE, epsilon);
    const a = Math.max(actual[i]! / sumA, epsilon);
    psi += (a - e) * Math.log(a / e);
  }
  return psi;
}

/**
 * L-infinity distance of two count vectors after normalising each to proportions: max_i |p_i − q_i|, in [0, 1].
 * 0 when either side is empty.
 */
export function lInfinityDistance(p: ArrayLike<number>, q: ArrayLike<number>): number {
  sameLength(p, q);
  const sumP = total(p);
  const sumQ = total(q);
  if (!(sumP > 0 && sumQ > 0)) return 0;
  let max = 0;
  for (let i = 0; i < p.length; i++) max = Math.max(max, Math.abs(p[i]! / sumP - q[i]! / sumQ));
  return max;
}

// --- Helpers -------------------------------------------------------------------------------------------------------

function sameLength(a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) throw new RangeError(`category counts differ in length: ${a.length} and ${b.length}`);
}

function total(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  return sum;
}

function clip01(p: number): number {
  return p < 0 ? 0 : p > 1 ? 1 : p;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Round to the nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** x·2^e without overflowing or underflowing 2^e itself. */
function ldexp(x: number, e: number): number {
  let y = x;
  let rest = e;
  while (rest > 1000) {
    y *= 2 ** 1000;
    rest -= 1000;
  }
  while (rest < -1000) {
    y *= 2 ** -1000;
    rest += 1000;
  }
  return y * 2 ** rest;
}

/** a·b as an unevaluated sum hi + lo, exactly (Dekker's product with Veltkamp splitting). */
function twoProduct(a: number, b: number): [number, number] {
  const hi = a * b;
  const split = 134_217_729;
  const ca = split * a;
  const ah = ca - (ca - a);
  const al = a - ah;
  const cb = split * b;
  const bh = cb - (cb - b);
  const bl = b - bh;
  const lo = ah * bh - hi + ah * bl + al * bh + al * bl;
  return [hi, lo];
}

const LANCZOS_G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0 by the Lanczos approximation (g = 7, 9 terms), relative error about 1e-15. */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const y = x - 1;
  let series = LANCZOS[0]!;
  for (let i = 1; i < LANCZOS.length; i++) series += LANCZOS[i]! / (y + i);
  const t = y + LANCZOS_G + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(series);
}

/** ln C(n, k) for integers 0 ≤ k ≤ n. */
function logBinomial(n: number, k: number): number {
  return logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1);
}

/** C(n, k) for integers 0 ≤ k ≤ n as a double: a running product for k < 20, exp of log-gammas above (∞ past 1e308). */
function binomial(n: number, k0: number): number {
  const k = k0 > n / 2 ? n - k0 : k0;
  if (k < 0) return 0;
  if (k < 20) {
    let num = 1;
    let den = 1;
    for (let i = 1; i <= k; i++) {
      num *= i + n - k;
      den *= i;
      if (Math.abs(num) > 1e50) {
        num /= den;
        den = 1;
      }
    }
    return num / den;
  }
  return Math.exp(logBinomial(n, k));
}
