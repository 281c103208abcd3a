import { open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { InvalidFileError } from '../config/yaml-file';
import { clip, type CategoricalColumn, type ColumnarData, type ColumnType, type NumericColumn } from './columns';
import { listed } from './csv';
import { issueText } from '../shared/drift';
import type { NumericSummary } from './kernels';
import { autoWorkers, runKernels, type KernelTask, type ProfiledColumn } from './parallel';

/**
 * The data profile of a reference (training) set: per column its type, role, presence, and either numeric range,
 * moments, quantiles and quantile bins, or the categorical domain with counts. Written as JSON next to the model
 * artifact, with the sorted finite values of each numeric column in a binary sidecar (`<name>.values.f64`, little-endian
 * float64) so exact KS and Wasserstein comparisons never sort the reference again. Without the sidecar a comparison
 * works on the bins alone.
 */
export const PROFILE_FORMAT = 'ml-lifecycle/data-profile@1';

/** Categorical domains larger than this keep their most frequent values and count the rest as `otherCount`. */
export const MAX_DOMAIN = 1000;

export const DEFAULT_BINS = 10;

/** The profile of a model's training set in its artifact folder (sorted values beside it in `profile.values.f64`). */
export const PROFILE_FILE = 'profile.json';

const FeatureRole = z.enum(['feature', 'label', 'identifier']);
export type FeatureRole = z.infer<typeof FeatureRole>;

const Presence = {
  name: z.string(),
  role: FeatureRole,
  /** Rows of the data set. */
  rows: z.number().int().nonnegative(),
  /** Usable values: finite numbers, or non-missing categories. */
  count: z.number().int().nonnegative(),
  missing: z.number().int().nonnegative(),
  wrongType: z.number().int().nonnegative(),
};

export const NumericProfile = z.strictObject({
  ...Presence,
  type: z.literal('numeric'),
  nan: z.number().int().nonnegative(),
  posInf: z.number().int().nonnegative(),
  negInf: z.number().int().nonnegative(),
  min: z.number().nullable(),
  max: z.number().nullable(),
  mean: z.number().nullable(),
  std: z.number().nullable(),
  integer: z.boolean(),
  distinct: z.number().int().nonnegative(),
  quantiles: z.record(z.string(), z.number().nullable()),
  /** Bin i holds (edges[i-1], edges[i]]; counts has one more entry than edges. */
  bins: z.strictObject({ edges: z.array(z.number()), counts: z.array(z.number().int().nonnegative()) }),
  /** Where this column's `count` sorted values start in the sidecar, in values (not bytes). */
  valuesOffset: z.number().int().nonnegative().optional(),
});
export type NumericProfile = z.infer<typeof NumericProfile>;

export const CategoricalProfile = z.strictObject({
  ...Presence,
  type: z.literal('categorical'),
  distinct: z.number().int().nonnegative(),
  /** Categories by descending count (all of them up to MAX_DOMAIN; none for identifiers). */
  domain: z.array(z.strictObject({ value: z.string(), count: z.number().int().positive() })),
  /** Values of categories left out of `domain`. */
  otherCount: z.number().int().nonnegative(),
});
export type CategoricalProfile = z.infer<typeof CategoricalProfile>;

export const FeatureProfile = z.discriminatedUnion('type', [NumericProfile, CategoricalProfile]);
export type FeatureProfile = z.infer<typeof FeatureProfile>;

export const DataProfile = z.strictObject({
  format: z.literal(PROFILE_FORMAT),
  createdAt: z.string(),
  source: z.strictObject({
    format: z.enum(['csv', 'jsonl', 'arrays']),
    path: z.string().optional(),
    bytes: z.number().optional(),
  }),
  rows: z.number().int().nonnegative(),
  bins: z.number().int().min(2),
  malformedRows: z.number().int().nonnegative(),
  features: z.array(FeatureProfile),
  /** The sidecar with sorted numeric values, relative to the profile's folder. */
  values: z.strictObject({ file: z.string(), bytes: z.number().int().nonnegative() }).optional(),
});
export type DataProfile = z.infer<typeof DataProfile>;

/** A profile and, when available, each numeric column's sorted finite values. */
export interface Reference {
  profile: DataProfile;
  sorted: ReadonlyMap<string, Float64Array>;
}

export interface ProfileOptions {
  /** Quantile bins per numeric column (default 10). */
  bins?: number;
  /** The label column. */
  label?: string;
  /** Columns that identify rows (never compared). Unique-per-row text columns are taken for identifiers. */
  identifiers?: readonly string[];
  /** Columns that are features even if they look like identifiers. */
  features?: readonly string[];
  /** Worker threads (0: this thread); default by input size. */
  workers?: number;
  now?: Date;
}

const round = (x: number) => (Number.isFinite(x) ? x : null);

function roleOf(column: { name: string; type: ColumnType }, distinct: number, count: number, o: ProfileOptions) {
  if (column.name === o.label) return 'label' as const;
  if (o.identifiers?.includes(column.name)) return 'identifier' as const;
  if (o.features?.includes(column.name)) return 'feature' as const;
  // Text that is (nearly) unique per row identifies rows; it cannot drift in any useful sense.
  if (column.type === 'categorical' && count >= 50 && distinct >= 0.95 * count) return 'identifier' as const;
  return 'feature' as const;
}

function profileCategorical(column: CategoricalColumn, rows: number, o: ProfileOptions): CategoricalProfile {
  const counts = new Float64Array(column.dictionary.length);
  let count = 0;
  for (let i = 0; i < column.codes.length; i++) {
    const c = column.codes[i]!;
    if (c >= 0) {
      counts[c]!++;
      count++;
    }
  }
  const present = column.dictionary.map((value, i) => ({ value, count: counts[i]! })).filter((d) => d.count > 0);
  present.sort((a, b) => b.count - a.count || (a.value < b.value ? -1 : 1));
  const role = roleOf(column, present.length, count, o);
  const domain = role === 'identifier' ? [] : present.slice(0, MAX_DOMAIN);
  return {
    name: column.name,
    role,
    rows,
    count,
    missing: column.issues.missing,
    wrongType: column.issues.wrongType,
    type: 'categorical',
    distinct: present.length,
    domain,
    otherCount: count - domain.reduce((s, d) => s + d.count, 0),
  };
}

function numericProfile(column: NumericColumn, rows: number, s: NumericSummary, o: ProfileOptions): NumericProfile {
  return {
    name: column.name,
    role: roleOf(column, s.distinct, s.count, o),
    rows,
    count: s.count,
    missing: column.issues.missing,
    wrongType: column.issues.wrongType,
    type: 'numeric',
    nan: column.issues.nan,
    posInf: column.issues.posInf,
    negInf: column.issues.negInf,
    min: round(s.min),
    max: round(s.max),
    mean: round(s.mean),
    std: round(s.std),
    integer: s.integer,
    distinct: s.distinct,
    quantiles: Object.fromEntries(Object.entries(s.quantiles).map(([k, v]) => [k, round(v)])),
    bins: { edges: s.edges, counts: s.counts },
  };
}

/** Profiles columnar data. Numeric columns are copied, sorted (in worker threads for large inputs) and kept sorted. */
export async function buildProfile(data: ColumnarData, options: ProfileOptions = {}): Promise<Reference> {
  const bins = options.bins ?? DEFAULT_BINS;
  if (!Number.isInteger(bins) || bins < 2) throw new RangeError(`bins must be an integer >= 2, got ${bins}`);
  const numeric = data.columns.filter((c): c is NumericColumn => c.type === 'numeric');
  const total = numeric.reduce((s, c) => s + c.values.length, 0);
  const workers = options.workers ?? autoWorkers(total, numeric.length);
  const tasks: KernelTask[] = numeric.map((c) => ({ kind: 'profile', values: c.values, bins }));
  // With worker threads, the categorical columns are profiled here while the numeric ones are sorted there.
  const pending = runKernels(tasks, workers);
  const byName = new Map<string, FeatureProfile>();
  try {
    for (const c of data.columns) {
      if (c.type === 'categorical') byName.set(c.name, profileCategorical(c, data.rows, options));
    }
  } catch (err) {
    await pending.catch(() => undefined);
    throw err;
  }
  const results = (await pending) as ProfiledColumn[];
  const sorted = new Map<string, Float64Array>();
  numeric.forEach((c, i) => {
    sorted.set(c.name, results[i]!.sorted);
    byName.set(c.name, numericProfile(c, data.rows, results[i]!.summary, options));
  });
  const profile: DataProfile = {
    format: PROFILE_FORMAT,
    createdAt: (options.now ?? new Date()).toISOString(),
    source: data.source,
    rows: data.rows,
    bins,
    malformedRows: data.malformedRows,
    features: data.columns.map((c) => byName.get(c.name)!),
  };
  return { profile, sorted };
}

/** The sidecar file name of a profile file: `profile.json` → `profile.values.f64`. */
export const sidecarName = (profileFile: string) => `${basename(profileFile).replace(/\.json$/i, '')}.values.f64`;

/**
 * Writes the profile as JSON and, unless `values` is false, the sorted numeric values to the sidecar. Both are
 * written in full to temporary names first, then renamed into place (the sidecar first), so a reader never sees half
 * a file; a failure before the renames removes what it wrote and leaves any earlier profile as it was.
 */
export async function saveProfile(reference: Reference, file: string, options: { values?: boolean } = {}) {
  const profile: DataProfile = structuredClone(reference.profile);
  delete profile.values;
  const unique = `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const written: string[] = [];
  const renames: [string, string][] = [];
  try {
    if (options.values !== false) {
      const sidecar = sidecarName(file);
      const tmp = join(dirname(file), `.${sidecar}.${unique}.tmp`);
      written.push(tmp);
      const handle = await open(tmp, 'w');
      let offset = 0;
      try {
        for (const f of profile.features) {
          if (f.type !== 'numeric') continue;
          const values = reference.sorted.get(f.name);
          if (!values) continue;
          f.valuesOffset = offset;
          await handle.write(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
          offset += values.length;
        }
      } finally {
        await handle.close();
      }
      renames.push([tmp, join(dirname(file), sidecar)]);
      profile.values = { file: sidecar, bytes: offset * 8 };
    } else {
      for (const f of profile.features) if (f.type === 'numeric') delete f.valuesOffset;
    }
    const tmp = join(dirname(file), `.${basename(file)}.${unique}.tmp`);
    written.push(tmp);
    await writeFile(tmp, `${JSON.stringify(profile, null, 2)}\n`);
    renames.push([tmp, file]);
    for (const [from, to] of renames) await rename(from, to);
  } catch (err) {
    await Promise.all(written.map((f) => rm(f, { force: true })));
    throw err;
  }
}

/** True when the file looks like a saved profile rather than data. */
export async function isProfileFile(file: string): Promise<boolean> {
  if (!/\.json$/i.test(file)) return false;
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(256);
    const { bytesRead } = await handle.read(head, 0, 256, 0);
    return head.toString('utf8', 0, bytesRead).includes(PROFILE_FORMAT);
  } finally {
    await handle.close();
  }
}

/**
 * Reads a saved profile and, unless `values` is false, its sidecar (into shared memory, ready for worker threads). A profile that fails
 * validation, or a sidecar that is missing or of the wrong size, is an InvalidFileError naming the problem.
 */
export async function loadProfile(file: string, options: { values?: boolean } = {}): Promise<Reference> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new InvalidFileError(file, 'data profile', [
      `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    ]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    // V8's message quotes the file's bytes: say what is wrong instead.
    throw new InvalidFileError(file, 'data profile', [
      'not valid JSON (expected a profile written by `mlctl data profile`)',
    ]);
  }
  const parsed = DataProfile.safeParse(raw);
  if (!parsed.success) {
    throw new InvalidFileError(
      file,
      'data profile',
      listed(parsed.error.issues.map((i) => clip(issueText(i, '(top)'), 300))),
    );
  }
  const profile = parsed.data;
  const sorted = new Map<string, Float64Array>();
  if (profile.values && options.values !== false) {
    const path = join(dirname(file), profile.values.file);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (err) {
      throw new InvalidFileError(file, 'data profile', [
        `values file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      ]);
    }
    if (bytes.length !== profile.values.bytes) {
      throw new InvalidFileError(file, 'data profile', [
        `values file ${path} has ${bytes.length} bytes, the profile expects ${profile.values.bytes}`,
      ]);
    }
    const all = new Float64Array(new SharedArrayBuffer(bytes.length));
    new Uint8Array(all.buffer).set(bytes);
    for (const f of profile.features) {
      if (f.type !== 'numeric' || f.valuesOffset === undefined) continue;
      if (f.valuesOffset + f.count > all.length) {
        throw new InvalidFileError(file, 'data profile', [`features.${f.name}: values beyond the end of ${path}`]);
      }
      sorted.set(f.name, all.subarray(f.valuesOffset, f.valuesOffset + f.count));
    }
  }
  return { profile, sorted };
}
