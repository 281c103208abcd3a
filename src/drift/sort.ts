/**
 * Sorting of float64 columns, the dominant cost of profiling and of exact KS/Wasserstein comparisons.
 *
 * `Float64Array.prototype.sort` is a comparison sort (about 90 ms per million doubles here). This is an LSD radix sort
 * on the high 32 bits of each double only, followed by a fix-up of the few values those bits do not order:
 * - The high word of a double, as an int32 with every bit but the sign flipped when negative, orders like the double
 *   itself (the order key). It holds the sign, the exponent and 20 bits of mantissa, so on real columns nearly every
 *   distinct value has a key of its own, and equal keys are mostly repeats of one value.
 * - Only the bits in which the keys of a column differ are sorted (keys are taken relative to the smallest): normal
 *   values of 4 decimals span about 2^22 keys and take two passes of 11-bit digits, where sorting the whole double
 *   by 16-bit digits takes four passes with four times the scatter targets.
 * - A digit on which every key agrees is skipped (integer columns have low digits all zero).
 * - Values move as doubles (one 8-byte load and store), never as transformed bit patterns: a pattern that reads as
 *   NaN could be canonicalised by the engine.
 * - The first pass reads the column itself and drops what the caller excludes (non-finite values), so no filtered
 *   copy is made first.
 * - A last pass finds values out of order (they share a key and differ in the low word) and moves each back into
 *   place; a column where that would take long (many values agreeing to 6 digits) falls back to the comparison sort.
 * The result is exactly the comparison sort's.
 *
 * Every pass is a small function of its own: V8 compiles a short loop with fixed argument types much better than the
 * same loop among others in one large function (twice as fast here).
 *
 * `-0` sorts immediately before `+0`; they compare equal everywhere else. NaN must not reach `sortFloat64`.
 */

/** Below this length the comparison sort wins (its constant is lower than the histogram passes). */
const RADIX_MIN_LENGTH = 4096;

/** Bits of the lowest digit of the key. */
const LOW_BITS = 11;
const LOW_RADIX = 1 << LOW_BITS;
const LOW_MASK = LOW_RADIX - 1;
/**
 * The rest of a key's range, at most 21 bits, is sorted in one pass when it spans at most this many bits, else in two
 * of at most 11: one pass over 2^16 buckets costs less than two over 2^8.
 */
const HIGH_BITS = 16;

/** Moves the fix-up may make, per value, before it gives up and runs the comparison sort. */
const FIX_BUDGET = 4;

/** Exponent bits of a double's high word: all set for ±Infinity and NaN. */
const EXPONENT = 0x7ff00000;

/** The order key of a double from its high word: signed int32 order is the numeric order (-0 just before +0). */
const keyOf = (hi: number) => hi ^ ((hi >> 31) & 0x7fffffff);

const wordsOf = (a: Float64Array) => new Int32Array(a.buffer, a.byteOffset, 2 * a.length);

/**
 * Reusable memory of one thread's sorts: an array as long as the input besides the output, and the digit counts.
 * Kept between calls (the columns of a data set are sorted one after the other), so a sort does not page in fresh
 * memory each time.
 */
export class SortScratch {
  readonly low = new Int32Array(LOW_RADIX);
  readonly high = new Int32Array(2 << HIGH_BITS);
  private buffer: Float64Array<ArrayBufferLike>;

  constructor(buffer: Float64Array<ArrayBufferLike> = new Float64Array(0)) {
    this.buffer = buffer;
  }

  /** An array of `n` values (contents undefined), a view of the kept buffer. */
  take(n: number): Float64Array {
    if (this.buffer.length < n) this.buffer = new Float64Array(Math.max(n, Math.ceil(this.buffer.length * 1.25)));
    return this.buffer.subarray(0, n);
  }
}

/** Sorts `values` ascending in place and returns it. `scratch`, when given, must hold at least as many values. */
export function sortFloat64(values: Float64Array, scratch?: Float64Array): Float64Array {
  const n = values.length;
  if (n < RADIX_MIN_LENGTH) return values.sort();
  const memory = new SortScratch(scratch);
  const range = scanKeys(wordsOf(values), -1, memory.low);
  const sorted = radixSort(values, -1, range, memory, values, true);
  if (sorted.buffer !== values.buffer) values.set(sorted);
  return values;
}

export interface SortedFiniteOptions {
  /** Put the result on a SharedArrayBuffer (for worker threads). */
  shared?: boolean;
  /** Memory to reuse. */
  scratch?: SortScratch;
  /** Write the result into this array (then a view of it is returned) when it is long enough. */
  into?: Float64Array;
  /**
   * Leave out the last pass (see {@link finishSort}): the values come out ordered by their high words only, for a
   * caller that reads them once anyway and can tell, as it goes, whether two are out of order.
   */
  partial?: boolean;
}

/** The finite values of `column`, sorted ascending, in a new array: exactly filtering then sorting. */
export function sortedFinite(column: Float64Array, options: SortedFiniteOptions = {}): Float64Array {
  const memory = options.scratch ?? new SortScratch();
  const range = scanKeys(wordsOf(column), EXPONENT, memory.low);
  const n = range[0]!;
  const out =
    options.into && options.into.length >= n
      ? options.into.subarray(0, n)
      : options.shared
        ? new Float64Array(new SharedArrayBuffer(n * 8))
        : new Float64Array(n);
  if (n < RADIX_MIN_LENGTH) {
    let j = 0;
    for (let i = 0; i < column.length; i++) {
      const v = column[i]!;
      if (v - v === 0) out[j++] = v;
    }
    return out.sort();
  }
  const sorted = radixSort(column, EXPONENT, range, memory, out, options.partial !== true);
  if (sorted.buffer !== out.buffer) out.set(sorted);
  return out;
}

/**
 * Completes the sort of values ordered by their high words only (`sortedFinite` with `partial`): each value smaller
 * than its predecessor is moved back into place (values sharing a high word agree to about 6 significant digits, so
 * there are few), or, when that would take long, the comparison sort orders them all.
 */
export function finishSort(values: Float64Array): void {
  if (!fixUp(values)) values.sort();
}

/**
 * Counts the values kept (a high word whose exponent bits equal `excluded` is dropped: -1 never matches, so then
 * nothing is) and the low digits of their keys (into `low`, zeroed first); returns [count, smallest key, largest key].
 */
function scanKeys(words: Int32Array, excluded: number, low: Int32Array): Int32Array {
  low.fill(0);
  const end = words.length;
  let n = 0;
  let min = 0x7fffffff;
  let max = -0x80000000;
  for (let i = 1; i < end; i += 2) {
    const hi = words[i]!;
    if ((hi & EXPONENT) === excluded) continue;
    const key = keyOf(hi);
    n++;
    if (key < min) min = key;
    if (key > max) max = key;
    low[key & LOW_MASK]!++;
  }
  return Int32Array.of(n, min, max);
}

/**
 * Sorts the values `src` keeps (see {@link scanKeys}; `range` is its result, the low digits' counts are in
 * `memory.low`) into `out` or scratch memory, and returns a view of the array that holds the result. `src` is read,
 * never written, unless it is `out` itself. Without `finish`, values sharing a high word may be out of order.
 */
function radixSort(
  src: Float64Array,
  excluded: number,
  range: Int32Array,
  memory: SortScratch,
  out: Float64Array,
  finish: boolean,
): Float64Array {
  const n = range[0]!;
  const min = range[1]!;
  const max = range[2]!;
  const result = out.subarray(0, n);
  const tmp = memory.take(n);
  if (n === 0) return result;

  // The key's low digit is its low LOW_BITS bits; the rest, (key >> LOW_BITS) - base, spans `span` bits, cut into
  // one digit or two of `bits` bits.
  const base = min >> LOW_BITS;
  const span = 32 - Math.clz32((max >> LOW_BITS) - base);
  const bits = span > HIGH_BITS ? Math.ceil(span / 2) : span;
  const radix = 1 << bits;
  const { low, high } = memory;
  high.fill(0, 0, 2 * radix);

  // A digit shared by every key leaves the order unchanged: the low digit's counts tell now, the high digits' only
  // once counted. Destinations alternate so that the last pass writes `out` if every high digit is sorted, and unless
  // `out` is `src` (the first pass must not write it); else the result ends in scratch memory, for the caller to copy.
  const lowActive = low[min & LOW_MASK] !== n;
  const planned = (lowActive ? 1 : 0) + (span > 0 ? 1 : 0) + (span > bits ? 1 : 0);
  let [dst, other] = planned % 2 === 1 && out !== src ? [result, tmp] : [tmp, result];
  let from = src;
  if (lowActive) {
    offsets(low, 0, LOW_RADIX);
    scatterLow(from, wordsOf(from), excluded, low, dst, high, base, bits);
    [from, dst, other] = [dst, other, dst];
  } else {
    countHigh(wordsOf(src), excluded, high, base, bits);
  }
  for (let d = 0; d < (span > bits ? 2 : span > 0 ? 1 : 0); d++) {
    // The smallest key's high digits are 0: all keys share a digit when bucket 0 holds them all.
    if (high[d * radix] === n) continue;
    offsets(high, d * radix, radix);
    scatterHigh(from, wordsOf(from), excluded, high, d * radix, base, d * bits, radix - 1, dst);
    [from, dst, other] = [dst, other, dst];
  }
  if (from === src) {
    // Every key is equal: the values only need copying (and ordering by their low words).
    copyKept(src, wordsOf(src), excluded, result);
    from = result;
  }
  if (finish) finishSort(from);
  return from;
}

/** Counts the two high digits of the kept values' keys (when the low digit needs no pass). */
function countHigh(words: Int32Array, excluded: number, high: Int32Array, base: number, bits: number): void {
  const mask = (1 << bits) - 1;
  const second = 1 << bits;
  const end = words.length;
  for (let i = 1; i < end; i += 2) {
    const hi = words[i]!;
    if ((hi & EXPONENT) === excluded) continue;
    const h = (keyOf(hi) >> LOW_BITS) - base;
    high[h & mask]!++;
    high[second + ((h >> bits) & mask)]!++;
  }
}

/** Turns the counts of `radix` buckets at `offset` into their start positions. */
function offsets(counts: Int32Array, offset: number, radix: number): void {
  let at = 0;
  for (let b = offset; b < offset + radix; b++) {
    const c = counts[b]!;
    counts[b] = at;
    at += c;
  }
}

/** Scatters the kept values of `from` by the low digit of their keys (stable), counting the two high digits. */
function scatterLow(
  from: Float64Array,
  words: Int32Array,
  excluded: number,
  low: Int32Array,
  dst: Float64Array,
  high: Int32Array,
  base: number,
  bits: number,
): void {
  const mask = (1 << bits) - 1;
  const second = 1 << bits;
  const n = from.length;
  for (let i = 0; i < n; i++) {
    const hi = words[2 * i + 1]!;
    if ((hi & EXPONENT) === excluded) continue;
    const key = keyOf(hi);
    dst[low[key & LOW_MASK]!++] = from[i]!;
    const h = (key >> LOW_BITS) - base;
    high[h & mask]!++;
    high[second + ((h >> bits) & mask)]!++;
  }
}

/** Scatters the kept values of `from` by one high digit of their keys (stable). */
function scatterHigh(
  from: Float64Array,
  words: Int32Array,
  excluded: number,
  high: Int32Array,
  offset: number,
  base: number,
  shift: number,
  mask: number,
  dst: Float64Array,
): void {
  const n = from.length;
  for (let i = 0; i < n; i++) {
    const hi = words[2 * i + 1]!;
    if ((hi & EXPONENT) === excluded) continue;
    dst[high[offset + ((((keyOf(hi) >> LOW_BITS) - base) >> shift) & mask)]!++] = from[i]!;
  }
}

/** Copies the kept values of `from`, in order. */
function copyKept(from: Float64Array, words: Int32Array, excluded: number, out: Float64Array): void {
  const n = from.length;
  let j = 0;
  for (let i = 0; i < n; i++) if ((words[2 * i + 1]! & EXPONENT) !== excluded) out[j++] = from[i]!;
}

/**
 * Orders values sorted by key only: each value smaller than its predecessor (same key, smaller low word) is moved
 * back into place. False, leaving `a` a permutation of its values, when that takes more than FIX_BUDGET moves per
 * value.
 */
function fixUp(a: Float64Array): boolean {
  const n = a.length;
  let budget = FIX_BUDGET * n;
  let previous = n > 0 ? a[0]! : 0;
  for (let i = 1; i < n; i++) {
    const v = a[i]!;
    if (v < previous) {
      let j = i - 1;
      while (j >= 0 && a[j]! > v) {
        a[j + 1] = a[j]!;
        j--;
      }
      a[j + 1] = v;
      budget -= i - j;
      if (budget < 0) return false;
    } else previous = v;
  }
  return true;
}
