import * as ort from 'onnxruntime-node';
import type { z } from 'zod';
import { ArtifactReadError, digestOfFiles, readArtifactFiles, type ArtifactFiles } from '../artifacts/digest';
import { DataProfile, PROFILE_FILE } from '../drift/profile';
import { sketchPlanOf } from '../drift/sketch';
import type { SketchPlan } from '../shared/drift';
import { ModelManifest, type RowPrediction } from '../shared/gateway-api';
import type { FeatureValue } from '../shared/gateway-api';
import type { Task } from '../shared/task';
import { own } from '../shared/own';

/** File names of a model version's artifact folder, as written by the trainer. */
export const MODEL_FILE = 'model.onnx';
export const MANIFEST_FILE = 'model.json';

/** The request's features do not fit the model; the message names the offending feature. */
export class InvalidInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidInputError';
  }
}

/**
 * Why an artifact cannot be served:
 * - `unavailable`: a file is missing, unreadable or not a regular file (or, for the gateway, the folder is outside its
 *   artifact root): one kind on purpose, so that an answer never tells which;
 * - `digest-mismatch`: the files are not the ones the digest was recorded for;
 * - `invalid`: the files are the recorded ones but cannot be served (manifest, graph or profile problems).
 */
export type ArtifactProblem = 'unavailable' | 'digest-mismatch' | 'invalid';

/**
 * The artifact folder cannot be served. `message` may be answered to a caller: it names files and fields, never a
 * byte of their contents nor a path. `detail` is for the operator's log only: the real cause, names included.
 */
export class ArtifactError extends Error {
  constructor(
    readonly problem: ArtifactProblem,
    message: string,
    readonly detail: string = message,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'ArtifactError';
  }
}

/** The message of every {@link ArtifactError} of kind `unavailable`. */
export const ARTIFACT_UNAVAILABLE = 'not found, unreadable or outside the artifact root';
/** The message of every {@link ArtifactError} of kind `digest-mismatch`. */
export const ARTIFACT_DIGEST_MISMATCH = 'artifact digest does not match the digest recorded at training';

/**
 * One row's prediction (src/shared/gateway-api.ts `RowPrediction`), with what the gateway's telemetry counts of it:
 * `binned`, the value placed in the prediction bins (a binary classifier's positive-class probability, a multiclass
 * one's top-class probability, a regression's value), and a multiclass prediction's `classIndex` in the manifest's
 * classes.
 */
export interface Prediction extends RowPrediction {
  binned: number;
  classIndex?: number;
}

export type Features = Readonly<Record<string, FeatureValue>>;
type Feeds = Record<string, ort.Tensor>;

const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  // Mostly one row per request: extra intra-op threads only add hand-off cost, and requests already overlap on the
  // loop; a batch is a few hundred rows at most.
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  // Warnings only; ORT's info logs would flood the gateway's output.
  logSeverityLevel: 2,
};

/**
 * One loaded model version: an ONNX Runtime session reused across requests, and its manifest. Sessions are released
 * only once in-flight predictions finish, so undeploying a version never fails a request already routed to it.
 */
export class ModelHost {
  private inFlight = 0;
  private drained: (() => void) | undefined;
  private releasing: Promise<void> | undefined;

  private constructor(
    readonly artifactDir: string,
    readonly manifest: ModelManifest,
    private readonly session: ort.InferenceSession,
    /** What to count of the inputs: the training profile's bins and categories, when the artifact has a profile. */
    readonly sketchPlan: SketchPlan | undefined,
  ) {}

  get task(): Task {
    return this.manifest.task;
  }

  /**
   * Reads the artifact in `artifactDir` once (src/artifacts/digest.ts), checks those bytes against `digest` when one
   * is given, and loads the model from the same bytes: a file swapped between the check and the load is never served.
   * Throws {@link ArtifactError}.
   */
  static async load(artifactDir: string, options: { digest?: string } = {}): Promise<ModelHost> {
    let files: ArtifactFiles;
    try {
      files = await readArtifactFiles(artifactDir);
    } catch (err) {
      if (!(err instanceof ArtifactReadError)) throw err;
      throw new ArtifactError('unavailable', ARTIFACT_UNAVAILABLE, `${artifactDir}: ${err.message}`, { cause: err });
    }
    if (options.digest !== undefined) {
      const actual = digestOfFiles(files);
      if (actual !== options.digest) {
        throw new ArtifactError(
          'digest-mismatch',
          ARTIFACT_DIGEST_MISMATCH,
          `${artifactDir} has digest ${actual}, the deploy names ${options.digest}`,
        );
      }
    }
    return ModelHost.fromFiles(artifactDir, files);
  }

  /**
   * Builds a host from already-read artifact files (model.json and model.onnx required, profile.json optional), never
   * touching the file system. Throws {@link ArtifactError}: `unavailable` when a required file is absent, `invalid`
   * naming the file and the field otherwise.
   */
  static async fromFiles(artifactDir: string, files: ArtifactFiles): Promise<ModelHost> {
    const manifestBytes = files.get(MANIFEST_FILE);
    const modelBytes = files.get(MODEL_FILE);
    if (!manifestBytes || !modelBytes) {
      throw new ArtifactError(
        'unavailable',
        ARTIFACT_UNAVAILABLE,
        `${artifactDir}: ${MANIFEST_FILE} or ${MODEL_FILE} missing`,
      );
    }
    const manifest = parseJsonFile(MANIFEST_FILE, manifestBytes, ModelManifest);
    const duplicate = manifest.features.findIndex(
      (f, i) => manifest.features.findIndex((g) => g.name === f.name) !== i,
    );
    if (duplicate >= 0) {
      const first = manifest.features.findIndex((g) => g.name === manifest.features[duplicate]?.name);
      throw new ArtifactError(
        'invalid',
        `${MANIFEST_FILE} is invalid: features[${duplicate}].name repeats features[${first}].name`,
        `${MANIFEST_FILE} lists feature '${manifest.features[duplicate]?.name}' twice`,
      );
    }

    // The profile before the session: a profile that cannot be used leaves no session to release.
    let sketchPlan: SketchPlan | undefined;
    const profileBytes = files.get(PROFILE_FILE);
    if (profileBytes) {
      const profile = parseJsonFile(PROFILE_FILE, profileBytes, DataProfile);
      try {
        sketchPlan = sketchPlanOf(profile);
      } catch (err) {
        throw new ArtifactError(
          'invalid',
          `${PROFILE_FILE} cannot be used`,
          `cannot use ${PROFILE_FILE}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    }

    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(modelBytes, SESSION_OPTIONS);
    } catch (err) {
      // ONNX Runtime's parse errors can quote the graph: the reason goes to the log only.
      throw new ArtifactError(
        'invalid',
        `${MODEL_FILE} cannot be loaded by ONNX Runtime`,
        `cannot load ${MODEL_FILE}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const problems = graphProblems(manifest, session);
    if (problems.length > 0) {
      await session.release().catch(() => undefined);
      throw new ArtifactError(
        'invalid',
        `${MODEL_FILE} does not match ${MANIFEST_FILE}: ${problems.map((p) => p.answer).join('; ')}`,
        `${MODEL_FILE} does not match ${MANIFEST_FILE}: ${problems.map((p) => p.detail).join('; ')}`,
      );
    }
    return new ModelHost(artifactDir, manifest, session, sketchPlan);
  }

  /**
   * Checks every row against the manifest and builds the input tensors: float32 [n,1] per numeric feature, string
   * [n,1] per categorical one. Throws {@link InvalidInputError} naming the first bad feature (and, in a batch, its
   * row: `rows[3]: feature 'age' is missing`).
   */
  prepare(rows: readonly Features[], batch = rows.length > 1): Feeds {
    const n = rows.length;
    const expected = this.manifest.features;
    const known = new Set(expected.map((f) => f.name));
    const feeds: [string, ort.Tensor][] = [];
    for (const { name, type } of expected) {
      const numbers = type === 'numeric' ? new Float32Array(n) : undefined;
      const strings = type === 'numeric' ? undefined : new Array<string>(n);
      for (let i = 0; i < n; i++) {
        const at = batch ? `rows[${i}]: ` : '';
        const value = own(rows[i] as Features, name);
        if (value === undefined) throw new InvalidInputError(`${at}feature '${name}' is missing`);
        if (numbers) {
          if (typeof value !== 'number') {
            throw new InvalidInputError(`${at}feature '${name}' must be a number, got ${describe(value)}`);
          }
          if (!Number.isFinite(value)) throw new InvalidInputError(`${at}feature '${name}' must be a finite number`);
          numbers[i] = value;
        } else {
          if (typeof value !== 'string') {
            throw new InvalidInputError(`${at}feature '${name}' must be a string, got ${describe(value)}`);
          }
          strings![i] = value;
        }
      }
      feeds.push([
        name,
        numbers ? new ort.Tensor('float32', numbers, [n, 1]) : new ort.Tensor('string', strings!, [n, 1]),
      ]);
    }
    // Every expected feature is present in every row, so more keys than features means an unknown one.
    rows.forEach((row, i) => {
      if (Object.keys(row).length > expected.length) {
        const unknown = Object.keys(row).find((name) => !known.has(name));
        throw new InvalidInputError(`${batch ? `rows[${i}]: ` : ''}feature '${unknown}' is not an input of the model`);
      }
    });
    return Object.fromEntries(feeds);
  }

  /**
   * Runs inference on prepared feeds of `rows` rows and reads each row's prediction as the task says. Throws on
   * inference failure or an unusable output (a server-side error). `beforeInference` (the gateway's injected delays
   * and failures) runs first, while the prediction already counts as in flight, so an undeploy waits for it like for
   * any prediction routed to the version; what it throws, `run` throws.
   */
  async run(feeds: Feeds, rows: number, beforeInference?: () => Promise<void>): Promise<Prediction[]> {
    if (this.releasing) throw new Error('model session is released');
    this.inFlight++;
    try {
      if (beforeInference) await beforeInference();
      return readPredictions(this.manifest, await this.session.run(feeds), rows);
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) this.drained?.();
    }
  }

  /** Validates and predicts one row. */
  async predict(features: Features): Promise<Prediction> {
    const [prediction] = await this.run(this.prepare([features]), 1);
    return prediction!;
  }

  /** Validates and predicts a batch, in order. */
  predictRows(rows: readonly Features[]): Promise<Prediction[]> {
    return this.run(this.prepare(rows), rows.length);
  }

  /** Releases the session once in-flight predictions have finished; idempotent. */
  release(): Promise<void> {
    this.releasing ??= (async () => {
      if (this.inFlight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      await this.session.release();
    })();
    return this.releasing;
  }
}

/**
 * Each row's prediction from the graph's outputs, as the manifest's task reads them: a classifier's label tensor [n]
 * or [n,1] (int64 or float) and probabilities [n,k] in the order of its classes; a regression's value [n] or [n,1].
 */
export function readPredictions(
  manifest: ModelManifest,
  outputs: ort.InferenceSession.OnnxValueMapType,
  rows: number,
): Prediction[] {
  const tensorOf = (name: string | undefined) => {
    const tensor = name === undefined ? undefined : own(outputs, name);
    if (!tensor) throw new Error(`inference returned no output '${name}'`);
    if (tensor.data.length < rows)
      throw new Error(`output '${name}' has ${tensor.data.length} values for ${rows} rows`);
    return tensor;
  };
  const out: Prediction[] = new Array(rows);
  if (manifest.task === 'regression') {
    const values = tensorOf(manifest.outputs.value);
    const width = values.data.length / rows;
    for (let i = 0; i < rows; i++) {
      const value = Number(values.data[i * width]);
      if (!Number.isFinite(value)) throw new Error(`inference returned an unusable value (${value}) for row ${i}`);
      out[i] = { value, binned: value };
    }
    return out;
  }
  const labels = tensorOf(manifest.outputs.label);
  const probabilities = tensorOf(manifest.outputs.probabilities);
  const k = manifest.classes.length;
  if (probabilities.data.length !== rows * k) {
    throw new Error(
      `output '${manifest.outputs.probabilities}' has ${probabilities.data.length} values, not ${rows}×${k}`,
    );
  }
  const labelWidth = labels.data.length / rows;
  for (let i = 0; i < rows; i++) {
    const label = Number(labels.data[i * labelWidth]);
    const p = Array.from({ length: k }, (_, c) => Number(probabilities.data[i * k + c]));
    const classIndex = manifest.classes.indexOf(label);
    if (classIndex < 0 || p.some((x) => !(x >= 0 && x <= 1))) {
      throw new Error(
        `inference returned an unusable result for row ${i} (label ${label}, probabilities ${p.join(', ')})`,
      );
    }
    if (manifest.task === 'binary-classification') {
      // The positive class is 1; its probability is at its index in the classes (1 for [0, 1]).
      const probability = p[manifest.classes.indexOf(1)] as number;
      out[i] = { label, probability, binned: probability };
    } else {
      out[i] = { label, probability: p[classIndex] as number, probabilities: p, binned: Math.max(...p), classIndex };
    }
  }
  return out;
}

function describe(value: unknown): string {
  return value === null ? 'null' : typeof value;
}

/** One mismatch between manifest and graph: `answer` names fields only, `detail` (logged) names the names too. */
interface GraphProblem {
  answer: string;
  detail: string;
}

function graphProblems(manifest: ModelManifest, session: ort.InferenceSession): GraphProblem[] {
  const problems: GraphProblem[] = [];
  const inputs = new Map<string, ort.InferenceSession.ValueMetadata>();
  session.inputNames.forEach((name, i) => {
    const meta = session.inputMetadata[i];
    if (meta) inputs.set(name, meta);
  });
  const featureNames = new Set(manifest.features.map((f) => f.name));
  manifest.features.forEach(({ name, type }, i) => {
    const meta = inputs.get(name);
    if (!meta) {
      problems.push({
        answer: `features[${i}] is not an input of the graph`,
        detail: `feature '${name}' is not an input of the graph`,
      });
      return;
    }
    const want = type === 'numeric' ? 'float32' : 'string';
    if (meta.isTensor && meta.type !== want) {
      problems.push({
        answer: `the graph input of features[${i}] is not ${want} (the manifest says ${type})`,
        detail: `input '${name}' is ${meta.type}, the manifest says ${type} (${want})`,
      });
    }
  });
  const extra = session.inputNames.filter((name) => !featureNames.has(name));
  if (extra.length > 0) {
    problems.push({
      answer: `${extra.length} graph input${extra.length === 1 ? ' is' : 's are'} not a feature of the manifest`,
      detail: `graph inputs not in the manifest: ${extra.map((n) => `'${n}'`).join(', ')}`,
    });
  }
  const wanted: ('label' | 'probabilities' | 'value')[] =
    manifest.task === 'regression' ? ['value'] : ['label', 'probabilities'];
  for (const field of wanted) {
    const output = manifest.outputs[field];
    if (output === undefined || !session.outputNames.includes(output)) {
      problems.push({
        answer: `outputs.${field} is not an output of the graph (a ${manifest.task} model needs it)`,
        detail: `output '${output}' is not an output of the graph`,
      });
    }
  }
  // The graph's probabilities must have one column per class, when the graph says how many.
  const probabilities = manifest.outputs.probabilities;
  const index = probabilities === undefined ? -1 : session.outputNames.indexOf(probabilities);
  const meta = index >= 0 ? session.outputMetadata[index] : undefined;
  const columns = meta && meta.isTensor ? meta.shape[1] : undefined;
  if (manifest.task !== 'regression' && typeof columns === 'number' && columns !== manifest.classes.length) {
    const text =
      `the graph's outputs.probabilities has ${columns} columns, the manifest lists ` +
      `${manifest.classes.length} classes (a ${manifest.task} model)`;
    problems.push({ answer: text, detail: text });
  }
  return problems;
}

/** Longest message of an issue quoted in an answer (messages are the schema's own, never the file's bytes). */
const MAX_ISSUE_MESSAGE = 200;

/**
 * `bytes` as UTF-8 JSON validated by `schema`. Problems name the file, the field's path and what was expected, never
 * the bytes: no `JSON.parse` message (V8 quotes the input), no unknown key's name, no key that is not a plain field
 * name. The detail for the log says the same: a file of the artifact is not evidence to copy into logs either.
 */
function parseJsonFile<T>(file: string, bytes: Uint8Array, schema: z.ZodType<T>): T {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new ArtifactError('invalid', `${file} is not UTF-8 JSON`);
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  const [first] = parsed.error.issues;
  const more = parsed.error.issues.length - 1;
  const where = first ? fieldPath(first.path) : 'body';
  const what = !first
    ? 'invalid'
    : first.code === 'unrecognized_keys'
      ? 'has a field the format does not know'
      : first.message;
  const text = `${file} is invalid: ${where}: ${what.slice(0, MAX_ISSUE_MESSAGE)}${
    more > 0 ? ` (and ${more} more problem${more === 1 ? '' : 's'})` : ''
  }`;
  throw new ArtifactError('invalid', text);
}

/** `features[2].name` from an issue's path: plain field names and indices only, any other key as `[…]`. */
function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(key)) out += `${out ? '.' : ''}${key}`;
    else out += '[…]';
  }
  return out || '(top)';
}
