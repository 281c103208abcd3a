/**
 * Drift engine benchmark: the engine against numpy/scipy and against Evidently on the same data, in the same run.
 *
 * Generates 50 numeric and 10 categorical features (bench/drift-data.ts: normal, lognormal, uniform, integer counts
 * with heavy ties, prices in cents; 3–50 categories, Zipf-like), 1,000,000 reference rows and 200,000 current rows
 * with 10 numeric and 2 categorical features drifted, into a temp folder as raw binary and the reference as CSV. Then,
 * one child process at a time, so that each has the machine to itself and its own peak memory:
 * 1. the engine (`--engine DIR`): loads the binary files into columns (not timed), then times `buildProfile` of the
 *    reference (the reference is sorted here, once) and `compareData` of the current data with default options;
 *    once with the default worker threads and once on one thread (`workers: 0`);
 * 2. scipy (`bench/drift_scipy.py DIR` with the trainer's Python): loads the same files (not timed) and times the same
 *    statistics done the usual way (ks_2samp, wasserstein_distance, decile bins, PSI, jensenshannon, chi2_contingency);
 *    Evidently (`bench/drift_evidently.py DIR` with the Python of `.tools/bench-venv`, made on first use by
 *    bench/drift-evidently.ts): loads the same files into pandas DataFrames (not timed) and times
 *    `Report([DataDriftPreset()]).run(current, reference)`;
 * 3. ingestion (`--ingest FILE`): times `readCsvColumns` of the reference CSV (types inferred), then checks that it
 *    read exactly the values of the binary files; and pandas.read_csv of the same file when pandas is installed;
 * 4. one long record (`--long-record FILE`): per size (8, 16 and 32 MiB), a CSV whose second record is one quoted field
 *    of that size (commas, newlines and escaped quotes in it), read by `readCsvColumns` and by Python's csv module in
 *    the same run; the reader must scale linearly with the record (4× the time from 8 to 32 MiB, not 16×).
 * Prints the wall times, the peak RSS of each process, the speed ratios, PASS/FAIL against the targets (engine at
 * least 10× faster than scipy and 100× faster than Evidently, engine peak RSS under 1.5 GB), the CSV throughput, then a
 * `BENCH_JSON {...}` line.
 * MB are 10^6 bytes throughout.
 *
 * Every statistic of the engine is checked against scipy's: KS statistic, Wasserstein-1 (plain and normalised) and
 * the p-values to 1e-9 relative, the statistics the report rounds to 6 decimals (PSI, Jensen–Shannon, chi-squared,
 * L-infinity) to that rounding, and the counts behind the data problems exactly. A difference prints a MISMATCH line
 * and the exit code is 1; so does a CSV read that differs from the binary data or a child process that fails. A
 * missed target is a measurement, not a failure: exit code 0.
 *
 * Run: `npm run bench:drift` (builds, then `node dist/bench/drift.js`). Options:
 *   --ref-rows N   reference rows (1,000,000)
 *   --cur-rows N   current rows (200,000)
 *   --keep         keep the data folder (`<tmpdir>/ml-lifecycle-bench-drift-<pid>`) and print its path
 *   --long-record-mib LIST   sizes of the long record, MiB (8,16,32)
 *   --long-records-only      only the long-record case (no engine, scipy or ingestion)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { projectRoot } from '../src/config/paths';
import { trainerPython } from '../src/config/toolchain';
import {
  buildProfile,
  compareData,
  emptyIssues,
  readCsvColumns,
  type CategoricalColumn,
  type ColumnarData,
  type DriftOptions,
  type NumericColumn,
  type ProfileOptions,
} from '../src/drift';
import { autoWorkers } from '../src/drift/parallel';
import {
  benchFeatures,
  generateSide,
  readMeta,
  readSide,
  writeCsv,
  writeMeta,
  writeSide,
  type BenchMeta,
  type SideData,
} from './drift-data';
import { evidentlyPython } from './drift-evidently';
import { benchFacts, printAligned, printLoad, runBenchmark } from './report';

const SEED = 20_261_126;
const SPEED_TARGET = 10;
/** Times faster than Evidently's DataDriftPreset the engine should be. */
const EVIDENTLY_TARGET = 100;
const MEMORY_TARGET_MB = 1500;
/** Relative tolerance of the statistics the report keeps at full precision. */
const RELATIVE = 1e-9;
/** The report rounds these statistics to 6 decimals. */
const ROUNDED = new Set(['psi', 'jensenshannon', 'chisquare', 'linf']);
/** Defaults of DriftOptions the problem checks depend on. */
const MAX_MISSING_INCREASE = 0.05;
const MAX_OUT_OF_RANGE_SHARE = 0.01;

interface FeatureResult {
  name: string;
  type: 'numeric' | 'categorical';
  method: string;
  drifted: boolean;
  referenceSize: number;
  currentSize: number;
  statistics: Record<string, number>;
}

interface EngineResult {
  workers: number | 'auto';
  profileSeconds: number;
  compareSeconds: number;
  seconds: number;
  peakRssKiB: number;
  comparedFeatures: number;
  driftedFeatures: number;
  datasetDrift: boolean;
  features: FeatureResult[];
  problems: { kind: string; feature?: string; count?: number }[];
}

interface ScipyFeature {
  name: string;
  refMissing: number;
  curMissing: number;
  belowMin?: number;
  aboveMax?: number;
  unseen?: number;
  [statistic: string]: number | string | null | undefined;
}

interface ScipyResult {
  seconds: number;
  peakRssKiB: number;
  python: string;
  numpy: string;
  scipy: string;
  features: ScipyFeature[];
}

interface EvidentlyResult {
  seconds: number;
  peakRssKiB: number;
  python: string;
  evidently: string;
  pandas: string;
  numpy: string;
  scipy: string;
  driftedColumns: { count: number; share: number | null } | null;
  features: { name: string; method: string | null; score: number | null; drifted: boolean | null }[];
}

interface IngestResult {
  seconds: number;
  bytes: number;
  rows: number;
  numericColumns: number;
  categoricalColumns: number;
  peakRssKiB: number;
  /** Differences between the columns read from the CSV and the binary data (at most a few). */
  differences: string[];
}

interface PandasResult {
  seconds: number;
  bytes: number;
  rows: number;
  columns: number;
  peakRssKiB: number;
  pandas: string;
}

type Skipped = { skipped: string };

/** One read of the long-record file, by a child process. */
interface LongReadResult {
  seconds: number;
  peakRssKiB: number;
  /** Characters of the long field as read (checked against what was written). */
  fieldChars: number;
  rows: number;
}

interface LongRecordCase {
  mib: number;
  bytes: number;
  fieldChars: number;
  ours: LongReadResult;
  python: LongReadResult | Skipped;
}

const root = projectRoot();
const megabytes = (kib: number) => (kib * 1024) / 1e6;
const fmtMb = (kib: number) => megabytes(kib).toFixed(0);
const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value.replace(/_/g, ''));
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${value}"`);
  return n;
}

// --- Child: the engine ---------------------------------------------------------------------------------------------

/** Columns as a reader hands them to the engine: NaN counted as missing (an empty cell in a file). */
function columnarData(meta: BenchMeta, data: SideData, rows: number): ColumnarData {
  const numeric = meta.numeric.map((f, j): NumericColumn => {
    const values = data.numeric[j]!;
    const issues = emptyIssues();
    for (let i = 0; i < values.length; i++) if (Number.isNaN(values[i])) issues.missing++;
    return { name: f.name, type: 'numeric', values, issues };
  });
  const categorical = meta.categorical.map((f, j): CategoricalColumn => {
    const codes = data.categorical[j]!;
    const issues = emptyIssues();
    for (let i = 0; i < codes.length; i++) if (codes[i]! < 0) issues.missing++;
    return { name: f.name, type: 'categorical', codes, dictionary: f.labels, issues };
  });
  return {
    rows,
    columns: [...numeric, ...categorical],
    malformedRows: 0,
    malformedExamples: [],
    ignoredColumns: [],
    source: { format: 'arrays' },
  };
}

async function engineChild(dir: string, workers: number | undefined): Promise<void> {
  const meta = readMeta(dir);
  const reference = columnarData(meta, readSide(dir, meta, 'ref'), meta.refRows);
  const current = columnarData(meta, readSide(dir, meta, 'cur'), meta.curRows);
  const profileOptions: ProfileOptions = workers === undefined ? {} : { workers };
  const driftOptions: DriftOptions = workers === undefined ? {} : { workers };

  const started = performance.now();
  const profile = await buildProfile(reference, profileOptions);
  const profiled = performance.now();
  const report = await compareData(profile, current, driftOptions);
  const finished = performance.now();

  const result: EngineResult = {
    workers: workers ?? 'auto',
    profileSeconds: (profiled - started) / 1000,
    compareSeconds: (finished - profiled) / 1000,
    seconds: (finished - started) / 1000,
    peakRssKiB: process.resourceUsage().maxRSS,
    comparedFeatures: report.comparedFeatures,
    driftedFeatures: report.driftedFeatures,
    datasetDrift: report.datasetDrift,
    features: report.features.map((f) => ({
      name: f.name,
      type: f.type,
      method: f.method,
      drifted: f.drifted,
      referenceSize: f.referenceSize,
      currentSize: f.currentSize,
      statistics: f.statistics,
    })),
    problems: report.problems.map((p) => ({
      kind: p.kind,
      ...(p.feature !== undefined ? { feature: p.feature } : {}),
      ...(p.count !== undefined ? { count: p.count } : {}),
    })),
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

// --- Child: CSV ingestion -----------------------------------------------------------------------------------------

async function ingestChild(file: string): Promise<void> {
  const started = performance.now();
  const data = await readCsvColumns(file);
  const seconds = (performance.now() - started) / 1000;
  const peakRssKiB = process.resourceUsage().maxRSS;

  // The file holds the reference of its folder's binary data: every value must have been read back exactly.
  const dir = dirname(file);
  const meta = readMeta(dir);
  const binary = readSide(dir, meta, 'ref');
  const differences: string[] = [];
  const differ = (what: string) => {
    if (differences.length < 5) differences.push(what);
  };
  if (data.rows !== meta.refRows) differ(`${data.rows} rows read, ${meta.refRows} written`);
  if (data.malformedRows > 0) differ(`${data.malformedRows} malformed rows`);
  const columns = new Map(data.columns.map((c) => [c.name, c]));
  meta.numeric.forEach((f, j) => {
    const c = columns.get(f.name);
    if (c?.type !== 'numeric') return differ(`${f.name}: read as ${c?.type ?? 'nothing'}, written numeric`);
    const want = binary.numeric[j]!;
    for (let i = 0; i < want.length; i++) {
      if (!Object.is(c.values[i], want[i]))
        return differ(`${f.name} row ${i + 1}: read ${c.values[i]}, wrote ${want[i]}`);
    }
    if (c.issues.missing !== want.filter(Number.isNaN).length) differ(`${f.name}: ${c.issues.missing} missing`);
  });
  meta.categorical.forEach((f, j) => {
    const c = columns.get(f.name);
    if (c?.type !== 'categorical') return differ(`${f.name}: read as ${c?.type ?? 'nothing'}, written categorical`);
    const want = binary.categorical[j]!;
    for (let i = 0; i < want.length; i++) {
      const read = c.codes[i]! < 0 ? null : c.dictionary[c.codes[i]!];
      const wrote = want[i]! < 0 ? null : f.labels[want[i]!];
      if (read !== wrote) return differ(`${f.name} row ${i + 1}: read ${read}, wrote ${wrote}`);
    }
  });

  const result: IngestResult = {
    seconds,
    bytes: data.source.bytes ?? 0,
    rows: data.rows,
    numericColumns: data.columns.filter((c) => c.type === 'numeric').length,
    categoricalColumns: data.columns.filter((c) => c.type === 'categorical').length,
    peakRssKiB,
    differences,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

// --- Child: one long record ---------------------------------------------------------------------------------------

async function longRecordChild(file: string): Promise<void> {
  const started = performance.now();
  const data = await readCsvColumns(file);
  const seconds = (performance.now() - started) / 1000;
  const text = data.columns.find((c): c is CategoricalColumn => c.name === 'text' && c.type === 'categorical');
  const longest = text ? Math.max(...text.dictionary.map((v) => v.length)) : 0;
  const result: LongReadResult = {
    seconds,
    peakRssKiB: process.resourceUsage().maxRSS,
    fieldChars: longest,
    rows: data.rows,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
}

/** Python's csv module reading the same file (its field size limit lifted), as `longRecordChild` does. */
const PYTHON_LONG_READ = `
import csv, json, resource, sys, time
csv.field_size_limit(sys.maxsize)
started = time.perf_counter()
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
seconds = time.perf_counter() - started
longest = max(len(r[1]) for r in rows[1:])
print("RESULT " + json.dumps({"seconds": seconds, "peakRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      "fieldChars": longest, "rows": len(rows) - 1}))
`;

/** A CSV of three records, the second one quoted field of `mib` MiB; returns its size and the field's length. */
function writeLongRecord(file: string, mib: number): { bytes: number; fieldChars: number } {
  // As written in the file: `""` is one quote of the field's value.
  const unit = 'lorem ipsum, ""dolor"" sit amet\nconsectetur; ';
  const target = mib << 20;
  const fd = openSync(file, 'w');
  try {
    let bytes = writeSync(fd, 'id,text,value\n1,short,0.5\n2,"');
    const block = unit.repeat(Math.ceil((1 << 20) / unit.length));
    let written = 0;
    let fieldChars = 0;
    while (written < target) {
      const part = block.slice(0, Math.min(block.length, target - written));
      // Never cut an escaped quote in two.
      const whole = part.endsWith('"') && !part.endsWith('""') ? part.slice(0, -1) : part;
      written += writeSync(fd, whole);
      fieldChars += whole.replace(/""/g, '"').length;
      if (whole.length < part.length) break;
    }
    bytes += written + writeSync(fd, '",2.5\n3,short,1.5\n');
    return { bytes, fieldChars };
  } finally {
    closeSync(fd);
  }
}

async function longRecords(
  dir: string,
  sizes: readonly number[],
): Promise<{ cases: LongRecordCase[]; mismatches: string[] }> {
  const python = trainerPython();
  const script = join(__dirname, 'drift.js');
  const cases: LongRecordCase[] = [];
  const mismatches: string[] = [];
  for (const mib of sizes) {
    const file = join(dir, `long-${mib}.csv`);
    const { bytes, fieldChars } = writeLongRecord(file, mib);
    const ours = await runChild<LongReadResult>(process.execPath, [script, '--long-record', file]);
    const theirs = existsSync(python)
      ? await runChild<LongReadResult>(python, ['-c', PYTHON_LONG_READ, file])
      : { skipped: `${python} does not exist` };
    for (const [who, r] of [
      ['ours', ours],
      ['python', theirs],
    ] as const) {
      if ('skipped' in r) continue;
      if (r.fieldChars !== fieldChars || r.rows !== 3)
        mismatches.push(
          `long record ${mib} MiB, ${who}: ${r.rows} rows, field of ${r.fieldChars} chars, wrote 3 and ${fieldChars}`,
        );
    }
    rmSync(file, { force: true });
    cases.push({ mib, bytes, fieldChars, ours, python: theirs });
    console.log(
      `long record ${mib} MiB: ours ${ours.seconds.toFixed(3)} s${'skipped' in theirs ? '' : `, Python csv ${theirs.seconds.toFixed(3)} s`}`,
    );
  }
  return { cases, mismatches };
}

function printLongRecords(cases: readonly LongRecordCase[]): void {
  const mbps = (c: LongRecordCase, s: number) => (c.bytes / 1e6 / s).toFixed(1);
  printAligned(
    [
      'one long record',
      'MB',
      'ours s',
      'ours MB/s',
      'ours peak RSS MB',
      'Python csv s',
      'Python MB/s',
      'ours / Python',
    ],
    cases.map((c) => [
      `${c.mib} MiB quoted field`,
      (c.bytes / 1e6).toFixed(1),
      c.ours.seconds.toFixed(3),
      mbps(c, c.ours.seconds),
      fmtMb(c.ours.peakRssKiB),
      'skipped' in c.python ? '-' : c.python.seconds.toFixed(3),
      'skipped' in c.python ? '-' : mbps(c, c.python.seconds),
      'skipped' in c.python ? '-' : `${(c.ours.seconds / c.python.seconds).toFixed(2)}×`,
    ]),
  );
  const first = cases[0];
  const last = cases[cases.length - 1];
  if (first && last && last !== first) {
    const size = last.bytes / first.bytes;
    const grew = (a: LongReadResult | Skipped, b: LongReadResult | Skipped) =>
      'skipped' in a || 'skipped' in b ? '-' : `${(b.seconds / a.seconds).toFixed(1)}×`;
    console.log(
      `scaling from ${first.mib} to ${last.mib} MiB (${size.toFixed(1)}× the bytes; linear ${size.toFixed(1)}×, ` +
        `quadratic ${(size * size).toFixed(0)}×): ours ${grew(first.ours, last.ours)}, Python csv ${grew(first.python, last.python)}`,
    );
  }
}

// --- Orchestrator --------------------------------------------------------------------------------------------------

let child: ChildProcess | undefined;
let dataDir: string | undefined;
let keep = false;

/** Runs a child process to its end, its stderr passed through; returns the JSON of its `RESULT ` line. */
function runChild<T>(command: string, args: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    child = proc;
    let stdout = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk: string) => (stdout += chunk));
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      child = undefined;
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) {
        reject(new Error(`${basename(command)} ${args.join(' ')} ended with ${signal ?? `code ${code}`}:\n${stdout}`));
        return;
      }
      resolve(JSON.parse(line.slice('RESULT '.length)) as T);
    });
  });
}

const close = (a: number, b: number, relative: number, absolute = 0) =>
  Math.abs(a - b) <= absolute + relative * Math.max(Math.abs(a), Math.abs(b));

/** Every statistic of the engine against scipy's; the counts behind the data problems exactly. */
function crossCheck(
  meta: BenchMeta,
  ours: EngineResult,
  theirs: ScipyResult,
): { checked: number; mismatches: string[] } {
  const mismatches: string[] = [];
  let checked = 0;
  const engine = new Map(ours.features.map((f) => [f.name, f]));
  const expectedProblems = new Map<string, number>();
  const rows = { ref: meta.refRows, cur: meta.curRows };
  for (const s of theirs.features) {
    const f = engine.get(s.name);
    if (!f) {
      mismatches.push(`${s.name}: missing from the engine's report`);
      continue;
    }
    for (const [key, value] of Object.entries(s)) {
      if (typeof value !== 'number' && value !== null) continue;
      if (['refMissing', 'curMissing', 'belowMin', 'aboveMax', 'unseen'].includes(key)) continue;
      const mine = f.statistics[key];
      checked++;
      const same =
        value === null || mine === undefined
          ? false
          : ROUNDED.has(key)
            ? close(mine, value, RELATIVE, 5e-7)
            : close(mine, value, RELATIVE);
      if (!same) mismatches.push(`${s.name}.${key}: engine ${mine}, scipy ${value}`);
    }
    const sizes: [string, number, number][] = [
      ['referenceSize', f.referenceSize, rows.ref - s.refMissing],
      ['currentSize', f.currentSize, rows.cur - s.curMissing],
    ];
    for (const [what, mine, want] of sizes) {
      checked++;
      if (mine !== want) mismatches.push(`${s.name}.${what}: engine ${mine}, scipy ${want} (rows less missing)`);
    }
    if (s.curMissing > 0 && s.curMissing / rows.cur > s.refMissing / rows.ref + MAX_MISSING_INCREASE) {
      expectedProblems.set(`missing-values ${s.name}`, s.curMissing);
    }
    const outside = (s.belowMin ?? 0) + (s.aboveMax ?? 0);
    if (outside > 0 && outside / (rows.cur - s.curMissing) > MAX_OUT_OF_RANGE_SHARE) {
      expectedProblems.set(`out-of-range ${s.name}`, outside);
    }
    if ((s.unseen ?? 0) > 0) expectedProblems.set(`out-of-domain ${s.name}`, s.unseen!);
  }
  const reported = new Map(ours.problems.map((p) => [`${p.kind} ${p.feature ?? ''}`.trim(), p.count ?? 0]));
  for (const [key, count] of expectedProblems) {
    checked++;
    if (reported.get(key) !== count) {
      mismatches.push(`problem ${key}: engine ${reported.get(key) ?? 'none'}, scipy counts ${count}`);
    }
  }
  for (const key of reported.keys()) {
    if (!expectedProblems.has(key)) mismatches.push(`problem ${key}: reported by the engine, not by scipy's counts`);
  }
  return { checked, mismatches };
}

/** The two engine runs (worker threads, one thread) must agree exactly. */
function sameReports(a: EngineResult, b: EngineResult): string[] {
  const out: string[] = [];
  a.features.forEach((f, i) => {
    const g = b.features[i];
    if (JSON.stringify(f) !== JSON.stringify(g)) out.push(`${f.name}: worker threads and one thread differ`);
  });
  if (JSON.stringify(a.problems) !== JSON.stringify(b.problems))
    out.push('problems: worker threads and one thread differ');
  return out;
}

function generate(dir: string, refRows: number, curRows: number) {
  const started = performance.now();
  const meta = benchFeatures(SEED, refRows, curRows);
  writeMeta(dir, meta);
  const reference = generateSide(meta, 'ref');
  writeSide(dir, 'ref', reference);
  writeSide(dir, 'cur', generateSide(meta, 'cur'));
  const generated = performance.now();
  const csvBytes = writeCsv(join(dir, 'ref.csv'), meta, reference);
  const written = performance.now();
  return {
    meta,
    csvBytes,
    binarySeconds: (generated - started) / 1000,
    csvSeconds: (written - generated) / 1000,
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'ref-rows': { type: 'string' },
      'cur-rows': { type: 'string' },
      keep: { type: 'boolean' },
      'long-record-mib': { type: 'string' },
      'long-records-only': { type: 'boolean' },
    },
    strict: true,
  });
  const refRows = positiveInt('--ref-rows', values['ref-rows'], 1_000_000);
  const curRows = positiveInt('--cur-rows', values['cur-rows'], 200_000);
  const longSizes = (values['long-record-mib'] ?? '8,16,32')
    .split(',')
    .map((v) => positiveInt('--long-record-mib', v.trim(), 8));
  keep = values.keep ?? false;
  const loadBefore = loadavg();
  console.log(
    `machine: node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? 'unknown'}), ` +
      `load average (1 min) ${(loadBefore[0] ?? 0).toFixed(2)}`,
  );

  dataDir = join(tmpdir(), `ml-lifecycle-bench-drift-${process.pid}`);
  mkdirSync(dataDir, { recursive: true });
  if (values['long-records-only']) {
    const long = await longRecords(dataDir, longSizes);
    const after = loadavg();
    console.log('');
    printLongRecords(long.cases);
    for (const m of long.mismatches) console.log(`MISMATCH ${m}`);
    printLoad(loadBefore, after);
    console.log(
      `BENCH_JSON ${JSON.stringify({ ...benchFacts('drift-long-record', loadBefore, after), longRecords: long.cases, mismatches: long.mismatches })}`,
    );
    return long.mismatches.length === 0 ? 0 : 1;
  }
  // Made (once) before anything is measured, so pip never runs beside a timed child.
  const evidentlyEnv = evidentlyPython((line) => console.log(line));
  const gen = generate(dataDir, refRows, curRows);
  const { meta } = gen;
  const driftedNumeric = meta.numeric.filter((f) => f.drift).length;
  const driftedCategorical = meta.categorical.filter((f) => f.drift).length;
  console.log(
    `data: ${meta.numeric.length} numeric + ${meta.categorical.length} categorical features, ` +
      `${fmtInt(refRows)} reference rows, ${fmtInt(curRows)} current rows, ${driftedNumeric} numeric and ` +
      `${driftedCategorical} categorical features drifted; binary written in ${gen.binarySeconds.toFixed(1)} s, ` +
      `reference CSV (${(gen.csvBytes / 1e6).toFixed(0)} MB) in ${gen.csvSeconds.toFixed(1)} s, in ${dataDir}`,
  );

  const script = join(__dirname, 'drift.js');
  const engine = await runChild<EngineResult>(process.execPath, [script, '--engine', dataDir]);
  console.log(`engine (default options): ${engine.seconds.toFixed(2)} s`);
  const single = await runChild<EngineResult>(process.execPath, [script, '--engine', dataDir, '--workers', '0']);
  console.log(`engine (workers: 0, one thread): ${single.seconds.toFixed(2)} s`);

  const python = trainerPython();
  let scipy: ScipyResult | Skipped;
  let pandas: PandasResult | Skipped;
  if (!existsSync(python)) {
    const why = `${python} does not exist (npm install creates it; ML_TRAINER_PYTHON overrides it)`;
    scipy = { skipped: why };
    pandas = { skipped: why };
  } else {
    const pyScript = join(root, 'bench', 'drift_scipy.py');
    scipy = await runChild<ScipyResult | Skipped>(python, [pyScript, dataDir]);
    if (!('skipped' in scipy)) console.log(`scipy: ${scipy.seconds.toFixed(2)} s`);
    pandas = await runChild<PandasResult | Skipped>(python, [pyScript, '--read-csv', join(dataDir, 'ref.csv')]);
  }
  const evidently: EvidentlyResult | Skipped =
    'skipped' in evidentlyEnv
      ? evidentlyEnv
      : await runChild<EvidentlyResult | Skipped>(evidentlyEnv.python, [
          join(root, 'bench', 'drift_evidently.py'),
          dataDir,
        ]);
  if (!('skipped' in evidently)) console.log(`evidently: ${evidently.seconds.toFixed(2)} s`);
  const ingest = await runChild<IngestResult>(process.execPath, [script, '--ingest', join(dataDir, 'ref.csv')]);
  const long = await longRecords(dataDir, longSizes);
  const loadAfter = loadavg();

  const mismatches = sameReports(engine, single);
  let checked = 0;
  if (!('skipped' in scipy)) {
    const check = crossCheck(meta, engine, scipy);
    checked = check.checked;
    mismatches.push(...check.mismatches);
  }
  mismatches.push(...ingest.differences.map((d) => `CSV read back: ${d}`));
  mismatches.push(...long.mismatches);

  console.log('');
  const scipySeconds = 'skipped' in scipy ? NaN : scipy.seconds;
  const evidentlySeconds = 'skipped' in evidently ? NaN : evidently.seconds;
  const times = (theirs: number, seconds: number) => (Number.isNaN(theirs) ? '-' : `${(theirs / seconds).toFixed(1)}×`);
  const ratio = (seconds: number) => times(scipySeconds, seconds);
  const versus = (seconds: number) => times(evidentlySeconds, seconds);
  const rows: string[][] = [];
  const autoWorkerCount = autoWorkers(refRows * meta.numeric.length, meta.numeric.length);
  const defaultLabel =
    autoWorkerCount > 0 ? `ours, ${autoWorkerCount} worker threads` : 'ours, default (no worker threads at this size)';
  for (const [label, r] of [
    [defaultLabel, engine],
    ['ours, one thread', single],
  ] as const) {
    rows.push([
      `${label}: profile + compare`,
      r.seconds.toFixed(2),
      fmtMb(r.peakRssKiB),
      ratio(r.seconds),
      versus(r.seconds),
    ]);
    rows.push(['  profile (sorts the reference)', r.profileSeconds.toFixed(2), '', ratio(r.profileSeconds), '']);
    rows.push(['  compare', r.compareSeconds.toFixed(2), '', ratio(r.compareSeconds), '']);
  }
  if (!('skipped' in scipy)) {
    rows.push([
      `scipy ${scipy.scipy}, numpy ${scipy.numpy}`,
      scipy.seconds.toFixed(2),
      fmtMb(scipy.peakRssKiB),
      '1.0×',
      versus(scipy.seconds),
    ]);
  }
  if (!('skipped' in evidently)) {
    rows.push([
      `Evidently ${evidently.evidently} DataDriftPreset, pandas ${evidently.pandas}`,
      evidently.seconds.toFixed(2),
      fmtMb(evidently.peakRssKiB),
      ratio(evidently.seconds),
      '1.0×',
    ]);
  }
  // Both ratios read "times faster than": the other's seconds over the row's.
  printAligned(['run', 'seconds', 'peak RSS MB', 'scipy / run', 'Evidently / run'], rows);
  console.log('');
  console.log(
    'seconds: wall time of the comparison alone (the data is loaded into memory before, not timed); peak RSS: the ' +
      'whole process, data included',
  );

  const speedup = scipySeconds / engine.seconds;
  const evidentlySpeedup = evidentlySeconds / engine.seconds;
  const peakMb = megabytes(engine.peakRssKiB);
  const speedPass = speedup >= SPEED_TARGET;
  const evidentlyPass = evidentlySpeedup >= EVIDENTLY_TARGET;
  const memoryPass = peakMb < MEMORY_TARGET_MB;
  if ('skipped' in scipy) console.log(`scipy: not run: ${scipy.skipped}`);
  else {
    console.log(
      `target: ours at least ${SPEED_TARGET}× faster than scipy: ${speedup.toFixed(1)}× ${speedPass ? 'PASS' : 'FAIL'}`,
    );
  }
  if ('skipped' in evidently) console.log(`evidently: not run: ${evidently.skipped}`);
  else {
    console.log(
      `target: ours at least ${EVIDENTLY_TARGET}× faster than Evidently: ${evidentlySpeedup.toFixed(1)}× ` +
        (evidentlyPass ? 'PASS' : 'FAIL'),
    );
  }
  console.log(
    `target: peak RSS of ours under ${MEMORY_TARGET_MB} MB: ${peakMb.toFixed(0)} MB ${memoryPass ? 'PASS' : 'FAIL'}`,
  );
  const mbPerSecond = ingest.bytes / 1e6 / ingest.seconds;
  console.log(
    `ingestion: readCsvColumns of the reference CSV (${(ingest.bytes / 1e6).toFixed(0)} MB, ${fmtInt(ingest.rows)} rows, ` +
      `${ingest.numericColumns} numeric + ${ingest.categoricalColumns} categorical columns inferred): ` +
      `${ingest.seconds.toFixed(2)} s, ${mbPerSecond.toFixed(1)} MB/s, ${fmtInt(ingest.rows / ingest.seconds)} rows/s, ` +
      `peak RSS ${fmtMb(ingest.peakRssKiB)} MB; ` +
      (ingest.differences.length === 0 ? 'read back identical to the binary data' : 'read back DIFFERENT'),
  );
  if ('skipped' in pandas) console.log(`pandas.read_csv: not measured: ${pandas.skipped}`);
  else {
    console.log(
      `pandas ${pandas.pandas} read_csv of the same file: ${pandas.seconds.toFixed(2)} s, ` +
        `${(pandas.bytes / 1e6 / pandas.seconds).toFixed(1)} MB/s, peak RSS ${fmtMb(pandas.peakRssKiB)} MB`,
    );
  }

  console.log('');
  printLongRecords(long.cases);
  console.log('');

  const generated = new Set([...meta.numeric, ...meta.categorical].filter((f) => f.drift).map((f) => f.name));
  const flagged = engine.features.filter((f) => f.drifted).map((f) => f.name);
  const missed = [...generated].filter((n) => !flagged.includes(n));
  const extra = flagged.filter((n) => !generated.has(n));
  console.log(
    `engine's verdict: ${engine.driftedFeatures} of ${engine.comparedFeatures} features drifted ` +
      `(methods: ${[...new Set(engine.features.map((f) => f.method))].join(', ')}); ` +
      (missed.length + extra.length === 0
        ? 'exactly the generated ones'
        : `generated but not flagged: ${missed.join(', ') || 'none'}; flagged but not generated: ${extra.join(', ') || 'none'}`) +
      `; problems: ${engine.problems.map((p) => `${p.kind} ${p.feature ?? ''}`.trim()).join(', ') || 'none'}`,
  );
  if (!('skipped' in evidently)) {
    const theirs = evidently.features.filter((f) => f.drifted).map((f) => f.name);
    const same = theirs.length === flagged.length && theirs.every((n) => flagged.includes(n));
    const methods = [...new Set(evidently.features.map((f) => f.method))].join(', ');
    console.log(
      `Evidently's verdict: ${theirs.length} of ${evidently.features.length} columns drifted (methods: ${methods}); ` +
        (same ? "the same features as the engine's" : `differs from the engine's: ${theirs.join(', ')}`),
    );
  }
  if ('skipped' in scipy) console.log('cross-check against scipy: not done (scipy not run)');
  else if (mismatches.length === 0) {
    console.log(
      `cross-check against scipy: ${checked} values of ${scipy.features.length} features agree (statistics to ` +
        `${RELATIVE} relative, or to the report's 6 decimals; counts exactly); worker threads and one thread agree`,
    );
  }
  for (const m of mismatches) console.log(`MISMATCH ${m}`);
  printLoad(loadBefore, loadAfter);
  if (keep) console.log(`data kept in ${dataDir}`);

  console.log(
    `BENCH_JSON ${JSON.stringify({
      ...benchFacts('drift', loadBefore, loadAfter),
      refRows,
      curRows,
      features: { numeric: meta.numeric.length, categorical: meta.categorical.length },
      engine: { ...engine, features: undefined, problems: undefined, peakRssMB: megabytes(engine.peakRssKiB) },
      engineOneThread: { ...single, features: undefined, problems: undefined, peakRssMB: megabytes(single.peakRssKiB) },
      scipy:
        'skipped' in scipy ? scipy : { ...scipy, features: undefined, peakRssMB: megabytes(scipy.peakRssKiB), speedup },
      evidently:
        'skipped' in evidently
          ? evidently
          : {
              ...evidently,
              features: undefined,
              peakRssMB: megabytes(evidently.peakRssKiB),
              speedup: evidentlySpeedup,
            },
      targets: {
        speedup: SPEED_TARGET,
        speedPass,
        evidentlySpeedup: EVIDENTLY_TARGET,
        evidentlyPass,
        peakRssMB: MEMORY_TARGET_MB,
        memoryPass,
      },
      ingestion: { ...ingest, mbPerSecond, rowsPerSecond: ingest.rows / ingest.seconds, csvBytes: gen.csvBytes },
      pandas,
      longRecords: long.cases,
      mismatches,
    })}`,
  );
  return mismatches.length === 0 ? 0 : 1;
}

function cleanup(): void {
  child?.kill('SIGTERM');
  if (dataDir && !keep) rmSync(dataDir, { recursive: true, force: true });
}

const { values: mode } = parseArgs({
  options: {
    engine: { type: 'string' },
    workers: { type: 'string' },
    ingest: { type: 'string' },
    'long-record': { type: 'string' },
  },
  strict: false,
});
if (typeof mode.engine === 'string') {
  const workers = typeof mode.workers === 'string' ? Number(mode.workers) : undefined;
  engineChild(mode.engine, workers).catch((err: unknown) => {
    process.stderr.write(`drift benchmark (engine): ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
} else if (typeof mode['long-record'] === 'string') {
  longRecordChild(mode['long-record']).catch((err: unknown) => {
    process.stderr.write(`drift benchmark (long record): ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
} else if (typeof mode.ingest === 'string') {
  ingestChild(mode.ingest).catch((err: unknown) => {
    process.stderr.write(`drift benchmark (ingestion): ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
} else {
  runBenchmark('drift benchmark', main, cleanup);
}
