import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadProfile, PROFILE_FILE } from '../drift/profile';
import { sketchPlanOf, type SketchPlan } from '../drift/sketch';
import { ModelManifest, type PredictRequest } from '../shared/gateway-api';
import { own } from '../shared/own';
import { firstProblem } from './issues';

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

/** The artifact folder cannot be served: missing or invalid files, or a manifest that does not match the ONNX graph. */
export class ArtifactError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ArtifactError';
  }
}

/** Result of one inference. */
export interface Prediction {
  label: number;
  /** Probability of the positive class (index 1 of the probabilities output). */
  probability: number;
}

export type Features = PredictRequest['features'];
type Feeds = Record<string, ort.Tensor>;

const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  // One row per request: extra intra-op threads only add hand-off cost, and requests already overlap on the loop.
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
  private readonly shape = [1, 1] as const;

  private constructor(
    readonly artifactDir: string,
    readonly manifest: ModelManifest,
    private readonly session: ort.InferenceSession,
    private readonly labelOutput: string,
    private readonly probabilitiesOutput: string,
    /** What to count of the inputs: the training profile's bins and categories, when the artifact has a profile. */
    readonly sketchPlan: SketchPlan | undefined,
  ) {}

  /** Loads `artifactDir` (model.onnx + model.json); throws {@link ArtifactError} with a clear message if it cannot. */
  static async load(artifactDir: string): Promise<ModelHost> {
    const dirStat = await stat(artifactDir).catch(() => undefined);
    if (!dirStat?.isDirectory()) throw new ArtifactError(`artifact folder ${artifactDir} does not exist`);

    const manifestPath = path.join(artifactDir, MANIFEST_FILE);
    let manifestText: string;
    try {
      manifestText = await readFile(manifestPath, 'utf8');
    } catch (err) {
      throw new ArtifactError(`cannot read ${manifestPath}: ${(err as Error).message}`, { cause: err });
    }
    let manifestJson: unknown;
    try {
      manifestJson = JSON.parse(manifestText);
    } catch (err) {
      throw new ArtifactError(`${manifestPath} is not JSON: ${(err as Error).message}`, { cause: err });
    }
    const parsed = ModelManifest.safeParse(manifestJson);
    if (!parsed.success) throw new ArtifactError(`${manifestPath} is invalid: ${firstProblem(parsed.error)}`);
    const manifest = parsed.data;
    const duplicate = manifest.features.find((f, i) => manifest.features.findIndex((g) => g.name === f.name) !== i);
    if (duplicate) throw new ArtifactError(`${manifestPath} lists feature '${duplicate.name}' twice`);

    const modelPath = path.join(artifactDir, MODEL_FILE);
    const modelStat = await stat(modelPath).catch(() => undefined);
    if (!modelStat?.isFile()) throw new ArtifactError(`${modelPath} does not exist`);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(modelPath, SESSION_OPTIONS);
    } catch (err) {
      throw new ArtifactError(`cannot load ${modelPath}: ${(err as Error).message}`, { cause: err });
    }

    const problems = graphProblems(manifest, session);
    if (problems.length > 0) {
      await session.release().catch(() => undefined);
      throw new ArtifactError(`${modelPath} does not match ${MANIFEST_FILE}: ${problems.join('; ')}`);
    }
    let sketchPlan: SketchPlan | undefined;
    const profileFile = path.join(artifactDir, PROFILE_FILE);
    if (existsSync(profileFile)) {
      try {
        sketchPlan = sketchPlanOf((await loadProfile(profileFile, { values: false })).profile);
      } catch (err) {
        await session.release().catch(() => undefined);
        throw new ArtifactError(`cannot use ${profileFile}: ${(err as Error).message}`, { cause: err });
      }
    }
    return new ModelHost(
      artifactDir,
      manifest,
      session,
      manifest.outputs.label,
      manifest.outputs.probabilities,
      sketchPlan,
    );
  }

  /**
   * Checks `features` against the manifest and builds the input tensors: float32 [1,1] per numeric feature, string
   * [1,1] per categorical one. Throws {@link InvalidInputError} naming the first bad feature.
   */
  prepare(features: Features): Feeds {
    const feeds: [string, ort.Tensor][] = [];
    const expected = this.manifest.features;
    for (const { name, type } of expected) {
      const value = own(features, name);
      if (value === undefined) throw new InvalidInputError(`feature '${name}' is missing`);
      if (type === 'numeric') {
        if (typeof value !== 'number') {
          throw new InvalidInputError(`feature '${name}' must be a number, got ${describe(value)}`);
        }
        if (!Number.isFinite(value)) throw new InvalidInputError(`feature '${name}' must be a finite number`);
        feeds.push([name, new ort.Tensor('float32', Float32Array.of(value), this.shape)]);
      } else {
        if (typeof value !== 'string') {
          throw new InvalidInputError(`feature '${name}' must be a string, got ${describe(value)}`);
        }
        feeds.push([name, new ort.Tensor('string', [value], this.shape)]);
      }
    }
    // Every expected feature is present, so more keys than features means an unknown one.
    if (Object.keys(features).length > expected.length) {
      const known = new Set(expected.map((f) => f.name));
      const unknown = Object.keys(features).find((name) => !known.has(name));
      throw new InvalidInputError(`feature '${unknown}' is not an input of the model`);
    }
    return Object.fromEntries(feeds);
  }

  /**
   * Runs inference on prepared feeds. Throws on inference failure (a server-side error). `beforeInference` (the
   * gateway's injected delays and failures) runs first, while the prediction already counts as in flight, so an
   * undeploy waits for it like for any prediction routed to the version; what it throws, `run` throws.
   */
  async run(feeds: Feeds, beforeInference?: () => Promise<void>): Promise<Prediction> {
    if (this.releasing) throw new Error('model session is released');
    this.inFlight++;
    try {
      if (beforeInference) await beforeInference();
      const outputs = await this.session.run(feeds);
      const label = own(outputs, this.labelOutput);
      const probabilities = own(outputs, this.probabilitiesOutput);
      if (!label || !probabilities) throw new Error('inference returned no label or probabilities');
      const labelValue = label.data[0];
      const probability = probabilities.data[1];
      if (labelValue === undefined || typeof probability !== 'number' || !Number.isFinite(probability)) {
        throw new Error(`inference returned an unusable result (label ${labelValue}, probability ${probability})`);
      }
      return { label: Number(labelValue), probability };
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) this.drained?.();
    }
  }

  /** Validates and predicts in one call. */
  async predict(features: Features): Promise<Prediction> {
    return this.run(this.prepare(features));
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

function describe(value: unknown): string {
  return value === null ? 'null' : typeof value;
}

function graphProblems(manifest: ModelManifest, session: ort.InferenceSession): string[] {
  const problems: string[] = [];
  const inputs = new Map<string, ort.InferenceSession.ValueMetadata>();
  session.inputNames.forEach((name, i) => {
    const meta = session.inputMetadata[i];
    if (meta) inputs.set(name, meta);
  });
  const featureNames = new Set(manifest.features.map((f) => f.name));
  for (const { name, type } of manifest.features) {
    const meta = inputs.get(name);
    if (!meta) {
      problems.push(`feature '${name}' is not an input of the graph`);
      continue;
    }
    const want = type === 'numeric' ? 'float32' : 'string';
    if (meta.isTensor && meta.type !== want) {
      problems.push(`input '${name}' is ${meta.type}, the manifest says ${type} (${want})`);
    }
  }
  for (const name of session.inputNames) {
    if (!featureNames.has(name)) problems.push(`graph input '${name}' is not a feature of the manifest`);
  }
  for (const output of [manifest.outputs.label, manifest.outputs.probabilities]) {
    if (!session.outputNames.includes(output)) problems.push(`output '${output}' is not an output of the graph`);
  }
  if (manifest.classes.length !== 2) {
    problems.push(`the gateway serves binary classifiers; the manifest lists ${manifest.classes.length} classes`);
  }
  return problems;
}
