/**
 * Sorting of float64 columns, the dominant cost of profiling and of exact KS/Wasserstein comparisons.
 *
 * `Float64Array.prototype.sort` is a comparison sort. This LSD radix sort works on the IEEE-754 bit pattern: each double
 * is mapped to an unsigned key whose order is the numeric order (positive: flip the sign bit; negative: flip every
 * bit), sorted by four 16-bit digits and mapped back. Digits on which every key agrees are skipped, which is what makes
 * it fast on real columns: integers, counts and rounded amounts share their low digits and sort two to three times
 * faster than with the comparison sort; full-precision random doubles need all four passes and sort about as fast.
 *
 * NaN must have been removed by the caller. `-0` sorts immediately before `+0`; they compare equal everywhere else.
 */

/** Below this length the comparison sort wins (its constant is lower than the histogram passes). */
const RADIX_MIN_LENGTH = 4096;

const DIGITS = 4;
const RADIX = 1 << 16;

/** Sorts `values` ascending in place and returns it. `scratch`, when given, must hold at least as many values. */
export function sortFloat64(values: Float64Array, scratch?: Float64Array): Float64Array {
  const n = values.length;
  if (n < RADIX_MIN_LENGTH) return values.sort();
  const tmp = scratch && scratch.length >= n ? scratch.subarray(0, n) : new Float64Array(n);
  let src = new Uint32Array(values.buffer, values.byteOffset, n * 2);
  let dst = new Uint32Array(tmp.buffer, tmp.byteOffset, n * 2);
  toKeys(src, n);

  const counts = new Uint32Array(DIGITS * RADIX);
  for (let i = 0; i < n; i++) {
    const lo = src[2 * i]!;
    const hi = src[2 * i + 1]!;
    counts[lo & 0xffff]!++;
    counts[RADIX + (lo >>> 16)]!++;
    counts[2 * RADIX + (hi & 0xffff)]!++;
    counts[3 * RADIX + (hi >>> 16)]!++;
  }
  let passes = 0;
  for (let d = 0; d < DIGITS; d++) {
    const base = d * RADIX;
    const word = d >> 1;
    const shift = (d & 1) * 16;
    // A digit shared by every key leaves the order unchanged.
    if (counts[base + ((src[word]! >>> shift) & 0xffff)] === n) continue;
    let sum = 0;
    for (let b = 0; b < RADIX; b++) {
      const c = counts[base + b]!;
      counts[base + b] = sum;
      sum += c;
    }
    for (let i = 0; i < 2 * n; i += 2) {
      const lo = src[i]!;
      const hi = src[i + 1]!;
      const at = 2 * counts[base + (((word === 0 ? lo : hi) >>> shift) & 0xffff)]!++;
      dst[at] = lo;
      dst[at + 1] = hi;
    }
    [src, dst] = [dst, src];
    passes++;
  }
  fromKeys(src, n);
  if (passes % 2 === 1) values.set(tmp);
  return values;
}

function toKeys(words: Uint32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const hi = words[2 * i + 1]!;
    if (hi & 0x80000000) {
      words[2 * i] = ~words[2 * i]! >>> 0;
      words[2 * i + 1] = ~hi >>> 0;
    } else {
      words[2 * i + 1] = (hi ^ 0x80000000) >>> 0;
    }
  }
}

function fromKeys(words: Uint32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const hi = words[2 * i + 1]!;
    if (hi & 0x80000000) {
      words[2 * i + 1] = (hi ^ 0x80000000) >>> 0;
    } else {
      words[2 * i] = ~words[2 * i]! >>> 0;
      words[2 * i + 1] = ~hi >>> 0;
    }
  }
}
