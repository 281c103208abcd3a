/**
 * The drift benchmark's data set: numeric and categorical features of varied shapes, a reference and a current sample
 * (some features drifted), drawn deterministically from mulberry32 streams and written as raw little-endian binary
 * (for the engine and scipy to load without parsing) and the reference once more as CSV (for the ingestion figure).
 *
 * Files in the data folder:
 * - `meta.json`: the {@link BenchMeta} (rows, feature names, kinds, parameters, category labels);
 * - `ref.f64`, `cur.f64`: the numeric features, column-major float64 (feature j at byte j·rows·8), NaN for missing;
 * - `ref.cat.i32`, `cur.cat.i32`: the categorical features, column-major int32 codes into the feature's labels, -1 for
 *   missing;
 * - `ref.csv`: the reference, one column per feature, numbers as `String(v)`, missing cells empty.
 *
 * Every number is rounded at generation to the decimals its kind would have in a file (counts to integers, prices to
 * cents, continuous values to 3–4 decimals), so the CSV holds exactly the values of the binary files.
 */
import { closeSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { sharedFloat64 } from '../src/drift/columns';
import { mulberry32 } from '../src/dev/random';

export const META_FORMAT = 'ml-lifecycle/bench-drift-data@1';

export type NumericKind = 'normal' | 'lognormal' | 'uniform' | 'count' | 'price';

/** Parameters of one side: normal (mean, sd); lognormal and price (log-mean, log-sd); uniform (low, high); count (mean, -). */
export type Params = [number, number];

export interface NumericFeature {
  name: string;
  kind: NumericKind;
  /** Decimals every value is rounded to. */
  decimals: number;
  ref: Params;
  cur: Params;
  /** Shares of missing values (NaN) in the reference and in the current data. */
  missing: [number, number];
  /** How the current data differs, or null. */
  drift: string | null;
}

export interface CategoricalFeature {
  name: string;
  labels: string[];
  /** Category probabilities of each side, over `labels`. */
  ref: number[];
  cur: number[];
  missing: [number, number];
  drift: string | null;
}

export interface BenchMeta {
  format: typeof META_FORMAT;
  seed: number;
  refRows: number;
  curRows: number;
  numeric: NumericFeature[];
  categorical: CategoricalFeature[];
}

export const NUMERIC_FEATURES = 50;
export const CATEGORICAL_FEATURES = 10;
const KINDS: NumericKind[] = ['normal', 'lognormal', 'uniform', 'count', 'price'];
const DECIMALS: Record<NumericKind, number> = { normal: 4, lognormal: 3, uniform: 3, count: 0, price: 2 };
/** Categories per categorical feature. */
const CATEGORIES = [3, 5, 8, 12, 20, 30, 50, 4, 10, 25];

/** Probabilities ∝ 1/(k+1)^s over k categories. */
function zipf(k: number, s: number): number[] {
  const w = Array.from({ length: k }, (_, i) => 1 / (i + 1) ** s);
  const total = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / total);
}

/**
 * The features: numeric kinds in turn (normal, lognormal, uniform, count, price), parameters drawn from the seed;
 * numeric features 5–9 drift by a shift of location and 30–34 by a change of scale (two of each kind); categorical
 * `c3` flattens and `c8` reorders its top categories and gains one new category.
 */
export function benchFeatures(seed: number, refRows: number, curRows: number): BenchMeta {
  const u = mulberry32(seed);
  const numeric: NumericFeature[] = [];
  for (let i = 0; i < NUMERIC_FEATURES; i++) {
    const kind = KINDS[i % KINDS.length]!;
    let ref: Params;
    switch (kind) {
      case 'normal':
        ref = [Math.round(200 * u() - 100), 1 + Math.round(19 * u())];
        break;
      case 'lognormal':
        ref = [1 + 3 * u(), 0.5 + u()];
        break;
      case 'uniform': {
        const low = Math.round(100 * u());
        ref = [low, low + 10 + Math.round(990 * u())];
        break;
      }
      case 'count':
        ref = [0.5 + 20 * u(), 0];
        break;
      case 'price':
        ref = [2 + 2 * u(), 0.4 + 0.6 * u()];
        break;
    }
    let cur: Params = [...ref];
    let drift: string | null = null;
    const group = Math.floor(i / KINDS.length);
    if (group === 1) {
      drift = 'location shift';
      if (kind === 'normal') cur = [ref[0] + 0.3 * ref[1], ref[1]];
      else if (kind === 'uniform') cur = [ref[0] + 0.1 * (ref[1] - ref[0]), ref[1] + 0.1 * (ref[1] - ref[0])];
      else if (kind === 'count') cur = [ref[0] * 1.4, 0];
      else cur = [ref[0] + 0.3, ref[1]];
    } else if (group === 6) {
      drift = 'scale change';
      if (kind === 'uniform') {
        const mid = (ref[0] + ref[1]) / 2;
        cur = [mid - 0.7 * (mid - ref[0]), mid + 0.7 * (ref[1] - mid)];
      } else if (kind === 'count') cur = [ref[0] * 0.6, 0];
      else cur = [ref[0], ref[1] * 1.4];
    }
    // Some features have missing values; one has many more in the current data (a data problem, not a drift).
    const missing: [number, number] = i === 12 ? [0.005, 0.08] : i % 7 === 3 ? [0.005, 0.005] : [0, 0];
    numeric.push({
      name: `${kind}_${String(i).padStart(2, '0')}`,
      kind,
      decimals: DECIMALS[kind],
      ref,
      cur,
      missing,
      drift,
    });
  }
  const categorical: CategoricalFeature[] = CATEGORIES.map((k, j) => {
    const name = `c${j}`;
    const labels = Array.from({ length: k }, (_, c) => `${name}_${c}`);
    const ref = zipf(k, 0.8 + 0.7 * u());
    let cur = [...ref];
    let drift: string | null = null;
    if (j === 3) {
      drift = 'flatter';
      cur = zipf(k, 0.3);
    } else if (j === 8) {
      drift = 'top categories reordered, one new category';
      cur = [ref[2]!, ref[0]!, ref[1]!, ...ref.slice(3)].map((p) => p * 0.97);
      labels.push(`${name}_new`);
      ref.push(0);
      cur.push(0.03);
    }
    const missing: [number, number] = j % 3 === 0 ? [0.001, 0.001] : [0, 0];
    return { name, labels, ref, cur, missing, drift };
  });
  return { format: META_FORMAT, seed, refRows, curRows, numeric, categorical };
}

/** One numeric feature's values on one side, rounded to the feature's decimals, NaN where missing. */
export function numericValues(f: NumericFeature, side: 'ref' | 'cur', rows: number, seed: number): Float64Array {
  const u = mulberry32(seed);
  const [a, b] = f[side];
  const out = new Float64Array(rows);
  if (f.kind === 'uniform') {
    for (let i = 0; i < rows; i++) out[i] = a + (b - a) * u();
  } else if (f.kind === 'count') {
    for (let i = 0; i < rows; i++) out[i] = Math.floor(-Math.log(1 - u()) * a);
  } else {
    // Box–Muller, both values of each pair used.
    const log = f.kind !== 'normal';
    for (let i = 0; i < rows; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - u()));
      const theta = 2 * Math.PI * u();
      const x = a + b * r * Math.cos(theta);
      out[i] = log ? Math.exp(x) : x;
      if (i + 1 < rows) {
        const y = a + b * r * Math.sin(theta);
        out[i + 1] = log ? Math.exp(y) : y;
      }
    }
  }
  const p = 10 ** f.decimals;
  // `+ 0` turns -0 into 0, as a CSV reader reads it back.
  for (let i = 0; i < rows; i++) out[i] = Math.round(out[i]! * p) / p + 0;
  const missing = f.missing[side === 'ref' ? 0 : 1];
  if (missing > 0) for (let i = 0; i < rows; i++) if (u() < missing) out[i] = NaN;
  return out;
}

/** One categorical feature's codes on one side. */
export function categoricalCodes(f: CategoricalFeature, side: 'ref' | 'cur', rows: number, seed: number): Int32Array {
  const u = mulberry32(seed);
  const cdf: number[] = [];
  let total = 0;
  for (const p of f[side]) cdf.push((total += p));
  const missing = f.missing[side === 'ref' ? 0 : 1];
  const out = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    if (missing > 0 && u() < missing) {
      out[i] = -1;
      continue;
    }
    const x = u() * total;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    out[i] = lo;
  }
  return out;
}

/** The stream seed of a feature's side: every feature and side has its own stream. */
const streamSeed = (seed: number, side: 'ref' | 'cur', index: number) =>
  (seed * 1_000_003 + (side === 'ref' ? 0 : 500_009) + index * 7919) | 0;

export interface SideData {
  numeric: Float64Array[];
  categorical: Int32Array[];
}

export function generateSide(meta: BenchMeta, side: 'ref' | 'cur'): SideData {
  const rows = side === 'ref' ? meta.refRows : meta.curRows;
  return {
    numeric: meta.numeric.map((f, i) => numericValues(f, side, rows, streamSeed(meta.seed, side, i))),
    categorical: meta.categorical.map((f, j) =>
      categoricalCodes(f, side, rows, streamSeed(meta.seed, side, NUMERIC_FEATURES + j)),
    ),
  };
}

function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new Error('the drift benchmark writes and reads little-endian data only');
}

const bytesOf = (a: Float64Array | Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function writeColumns(path: string, columns: readonly (Float64Array | Int32Array)[]): void {
  const fd = openSync(path, 'w');
  try {
    for (const c of columns) {
      const bytes = bytesOf(c);
      for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done);
    }
  } finally {
    closeSync(fd);
  }
}

/** Reads `count` columns of `rows` values each, column-major, into one typed array per column. */
function readColumns<T extends Float64Array | Int32Array>(
  path: string,
  count: number,
  rows: number,
  make: (n: number) => T,
) {
  assertLittleEndian();
  const fd = openSync(path, 'r');
  try {
    return Array.from({ length: count }, (_, j) => {
      const column = make(rows);
      const bytes = bytesOf(column);
      let done = 0;
      while (done < bytes.length) {
        const n = readSync(fd, bytes, done, bytes.length - done, j * bytes.length + done);
        if (n === 0) throw new Error(`${path}: ends before column ${j + 1} of ${count}`);
        done += n;
      }
      return column;
    });
  } finally {
    closeSync(fd);
  }
}

export function writeSide(dir: string, side: 'ref' | 'cur', data: SideData): void {
  assertLittleEndian();
  writeColumns(join(dir, `${side}.f64`), data.numeric);
  writeColumns(join(dir, `${side}.cat.i32`), data.categorical);
}

export function readSide(dir: string, meta: BenchMeta, side: 'ref' | 'cur'): SideData {
  const rows = side === 'ref' ? meta.refRows : meta.curRows;
  return {
    // On shared memory, as the engine's readers store numeric columns.
    numeric: readColumns(join(dir, `${side}.f64`), meta.numeric.length, rows, sharedFloat64),
    categorical: readColumns(join(dir, `${side}.cat.i32`), meta.categorical.length, rows, (n) => new Int32Array(n)),
  };
}

export function writeMeta(dir: string, meta: BenchMeta): void {
  writeFileSync(join(dir, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
}

export function readMeta(dir: string): BenchMeta {
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as BenchMeta;
  if (meta.format !== META_FORMAT) throw new Error(`${dir}/meta.json is not drift benchmark data`);
  return meta;
}

const CSV_BUFFER = 1 << 22;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const LF = 0x0a;

/**
 * Writes one side as CSV: numeric columns then categorical ones, missing cells empty. A number m/10^d (every value
 * is one, see {@link numericValues}) is written as its shortest decimal, the text `String(v)` gives in this range,
 * from the integer m: formatting doubles one by one would take longer than everything the benchmark measures.
 */
export function writeCsv(path: string, meta: BenchMeta, data: SideData): number {
  const rows = data.numeric[0]?.length ?? data.categorical[0]?.length ?? 0;
  const names = [...meta.numeric.map((f) => f.name), ...meta.categorical.map((f) => f.name)];
  const scales = meta.numeric.map((f) => 10 ** f.decimals);
  const decimals = meta.numeric.map((f) => f.decimals);
  const labels = meta.categorical.map((f) => f.labels.map((l) => Buffer.from(l, 'utf8')));
  const columns = names.length;
  const buf = Buffer.alloc(CSV_BUFFER);
  const digits = new Uint8Array(32);
  const fd = openSync(path, 'w');
  let bytes = 0;
  let pos = 0;
  const flush = () => {
    for (let done = 0; done < pos;) done += writeSync(fd, buf, done, pos - done);
    bytes += pos;
    pos = 0;
  };
  try {
    pos = buf.write(`${names.join(',')}\n`);
    for (let r = 0; r < rows; r++) {
      if (pos > CSV_BUFFER - 64 * columns - 1024) flush();
      for (let j = 0; j < data.numeric.length; j++) {
        const v = data.numeric[j]![r]!;
        if (!Number.isNaN(v)) {
          let m = Math.round(v * scales[j]!);
          let d = decimals[j]!;
          if (m < 0) {
            buf[pos++] = MINUS;
            m = -m;
          }
          while (d > 0 && m % 10 === 0) {
            m /= 10;
            d--;
          }
          let n = 0;
          do {
            digits[n++] = m % 10;
            m = Math.floor(m / 10);
          } while (m > 0);
          while (n <= d) digits[n++] = 0;
          for (let k = n - 1; k >= 0; k--) {
            buf[pos++] = 0x30 + digits[k]!;
            if (k === d && d > 0) buf[pos++] = DOT;
          }
        }
        buf[pos++] = j === columns - 1 ? LF : COMMA;
      }
      for (let j = 0; j < data.categorical.length; j++) {
        const code = data.categorical[j]![r]!;
        if (code >= 0) {
          const label = labels[j]![code]!;
          buf.set(label, pos);
          pos += label.length;
        }
        buf[pos++] = data.numeric.length + j === columns - 1 ? LF : COMMA;
      }
    }
    flush();
  } finally {
    closeSync(fd);
  }
  return bytes;
}
