import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { parse as parseCsv } from 'csv-parse/sync';
import * as ort from 'onnxruntime-node';
import { ErrorType } from '../shared/errors';
import { own } from '../shared/own';
import { ArtifactError, ModelHost, type Prediction } from '../serving/model-host';
import { PredictionEdges } from '../shared/gateway-api';
import { predictionBinIndex, valueBinIndex } from '../serving/telemetry';
import { PREDICTION_BASELINE_FILE, PREDICTION_BINS, type PredictionBaseline } from '../shared/telemetry';
import type { Task } from '../shared/task';
import { BinnedProbability, calibrateAccuracy } from '../domain/performance-estimation';
import { measureMetrics } from '../domain/task-metrics';
import { quantileOfSorted } from '../drift/kernels';
import type { TestDataDrift } from '../shared/status';
import type { TestDataSpec } from '../shared/spec';
import { InvalidFileError } from '../config/yaml-file';
import { checkData, loadProfile, PROFILE_FILE, summarizeDrift, type DriftReport } from '../drift';
import { artifactFailure, type ArtifactResolver } from '../artifacts/resolve';

export interface EvaluateModelInput {
  artifactDir: string;
  /** Where the artifact store has the artifact, and its digest at training: fetched when not this host's own folder. */
  artifactUri?: string;
  artifactDigest?: string;
  /** Folder with test.csv, whose raw rows the smoke test sends through the served runtime. */
  dataDir: string;
  /** How the test set is compared with the training profile (absent: the defaults). */
  testData?: Partial<TestDataSpec>;
  /** What the spec says the model predicts: the artifact's manifest must say the same (absent: not checked). */
  task?: Task;
  /**
   * The production version's artifact, if any: a regression's predictions are binned on its bin edges, so that every
   * version of a model counts its predictions on the same bins (the candidate against stable in a rollout, each
   * against its validation predictions in the serving monitor).
   */
  referenceArtifactDir?: string;
  referenceArtifactUri?: string;
  referenceArtifactDigest?: string;
}

export interface EvaluateModelResult {
  metrics: Record<string, number>;
  smokeRows: number;
  /** The test set against the training set's profile (absent for artifacts without a profile). */
  testData?: TestDataDrift;
  /** The task of the artifact, as its manifest declares it. */
  task?: Task;
  /** The task's metrics as measured here on the test set through the serving runtime (those the trainer did not report are in `metrics`). */
  measured?: Record<string, number>;
}

type Row = Record<string, string>;

const failure = (type: string, message: string) => ApplicationFailure.create({ type, message, nonRetryable: true });

/**
 * Loads the artifact as the gateway will (the same manifest schema and graph checks: outputs the task needs, one
 * probability column per class) and checks its task against the spec's.
 */
async function loadHost(dir: string, task: Task | undefined): Promise<ModelHost> {
  let host: ModelHost;
  try {
    host = await ModelHost.load(dir);
  } catch (err) {
    if (!(err instanceof ArtifactError)) throw err;
    // The worker's own artifact: the detail (names included) is for the lifecycle's operator.
    throw failure(ErrorType.ArtifactInvalid, `the artifact in ${dir} cannot be served: ${err.detail}`);
  }
  if (task !== undefined && host.task !== task) {
    await host.release().catch(() => undefined);
    throw failure(
      ErrorType.ArtifactInvalid,
      `the spec's task is ${task} but the artifact's model.json says ${host.task}: train the model the spec ` +
        'describes, or declare its task',
    );
  }
  return host;
}

/**
 * Scores every row through the served runtime in one batch: one tensor of shape [n, 1] per feature, as the trainer
 * exports them. Numeric cells are read as numbers (an empty one as NaN, which the graph's imputer may take).
 */
async function score(host: ModelHost, rows: readonly Row[]): Promise<Prediction[]> {
  const n = rows.length;
  // Feature names come from the manifest and the CSV header: read own cells only, build the feeds as own keys.
  const feeds = Object.fromEntries(
    host.manifest.features.map((f) =>
      f.type === 'numeric'
        ? [
            f.name,
            new ort.Tensor(
              'float32',
              Float32Array.from(rows, (r) => Number(own(r, f.name))),
              [n, 1],
            ),
          ]
        : [
            f.name,
            new ort.Tensor(
              'string',
              rows.map((r) => own(r, f.name) ?? ''),
              [n, 1],
            ),
          ],
    ),
  );
  return host.run(feeds, n);
}

/** The regression bin edges recorded beside the production version's artifact, when it has them. */
async function referenceEdgesOf(dir: string | undefined): Promise<number[] | undefined> {
  if (dir === undefined) return undefined;
  try {
    const reference = JSON.parse(await readFile(join(dir, PREDICTION_BASELINE_FILE), 'utf8')) as PredictionBaseline;
    const edges = PredictionEdges.safeParse(reference.edges);
    return edges.success ? edges.data : undefined;
  } catch {
    return undefined;
  }
}

/** Test rows scored at validation: the smoke test, and the serving monitor's baseline of predictions. */
const BASELINE_ROWS = 50_000;

/**
 * The validation-time predictions, binned as the gateway bins live ones (the serving monitor compares production's
 * predictions with them), with what the task needs besides: a regression's bin edges, which the gateway bins live
 * values on (the production version's, so that every version of the model counts on the same bins; the ventiles of
 * these predictions for a model's first version), and a classifier's calibration of accuracy per bin (for estimating
 * it without labels), when the test set has labels.
 */
function baselineOf(
  task: Task,
  classes: readonly number[],
  predictions: Prediction[],
  truth: (number | undefined)[],
  referenceEdges: number[] | undefined,
): PredictionBaseline {
  const bins = new Array<number>(PREDICTION_BINS).fill(0);
  if (task === 'regression') {
    const sorted = Float64Array.from(predictions, (p) => p.binned).sort();
    const edges =
      referenceEdges ??
      Array.from({ length: PREDICTION_BINS - 1 }, (_, i) => quantileOfSorted(sorted, (i + 1) / PREDICTION_BINS));
    for (const p of predictions) bins[valueBinIndex(p.binned, edges)]!++;
    return { task, rows: predictions.length, predictionBinCounts: bins, edges };
  }
  const binIndexes = predictions.map((p) => predictionBinIndex(p.binned));
  for (const b of binIndexes) bins[b]!++;
  const baseline: PredictionBaseline = { task, rows: predictions.length, predictionBinCounts: bins };
  if (task === 'multiclass-classification') {
    const counts = new Array<number>(classes.length).fill(0);
    for (const p of predictions) counts[p.classIndex ?? 0]!++;
    baseline.classCounts = counts;
  }
  const labelled = truth.every((t) => t !== undefined);
  if (labelled && predictions.length > 0) {
    baseline.calibration = calibrateAccuracy(
      binIndexes,
      predictions.map((p) => (task === 'binary-classification' ? Math.max(p.binned, 1 - p.binned) : p.binned)),
      predictions.map((p, i) => p.label === truth[i]),
      PREDICTION_BINS,
      task === 'binary-classification' ? BinnedProbability.Positive : BinnedProbability.TopClass,
    );
  }
  return baseline;
}

export function createEvaluationActivities(deps: {
  root: string;
  /** The artifact's folder on this host (src/artifacts/resolve.ts); absent: the trainer's folder, as named. */
  resolveArtifact?: ArtifactResolver;
}) {
  const resolve = (p: string) => (isAbsolute(p) ? p : join(deps.root, p));
  const artifactFolder = deps.resolveArtifact ?? (async ({ artifactDir }: { artifactDir: string }) => artifactDir);
  return {
    /**
     * Offline validation input: the trainer's held-out metrics (computed on the test split as its data pipeline
     * prepared it), plus a smoke test that the artifact loads in the runtime that will serve it and answers raw test
     * rows with valid probabilities. Skew between the pipeline's view of the data and live traffic is the canary's to
     * catch, on real requests.
     */
    async evaluateModel(requested: EvaluateModelInput): Promise<EvaluateModelResult> {
      const artifactDir = await artifactFolder(requested).catch((err: unknown) => {
        throw artifactFailure(err);
      });
      // The production version's edges are a nicety (else this version's own ventiles): one that cannot be had is none.
      const referenceArtifactDir =
        requested.referenceArtifactDir === undefined
          ? undefined
          : await artifactFolder({
              artifactDir: requested.referenceArtifactDir,
              artifactUri: requested.referenceArtifactUri,
              artifactDigest: requested.referenceArtifactDigest,
            }).catch(() => undefined);
      const input = { ...requested, artifactDir, referenceArtifactDir };
      const metricsFile = join(input.artifactDir, 'metrics.json');
      let reported: unknown;
      try {
        reported = JSON.parse(await readFile(metricsFile, 'utf8'));
      } catch (err) {
        throw ApplicationFailure.create({
          type: ErrorType.ArtifactInvalid,
          message: `cannot read ${metricsFile}: ${(err as Error).message}`,
          nonRetryable: true,
        });
      }
      // The artifact's bytes say this on every attempt: reading them again cannot help.
      if (reported === null || typeof reported !== 'object' || Array.isArray(reported))
        throw failure(ErrorType.ArtifactInvalid, `${metricsFile} is not a JSON object of metric names and values`);
      // `__proto__` is no metric name: passed on as an own key, a later Object.assign would make it a prototype.
      const metrics = Object.fromEntries(
        Object.entries(reported).filter(
          (e): e is [string, number] => e[0] !== '__proto__' && typeof e[1] === 'number' && Number.isFinite(e[1]),
        ),
      );
      const file = join(resolve(input.dataDir), 'test.csv');
      let rows: Row[];
      try {
        rows = parseCsv(await readFile(file, 'utf8'), {
          columns: true,
          skip_empty_lines: true,
          trim: true,
          to: BASELINE_ROWS,
        });
      } catch (err) {
        throw ApplicationFailure.create({
          type: ErrorType.ValidationFailed,
          message: `cannot read test set ${file}: ${(err as Error).message}`,
          nonRetryable: true,
        });
      }
      if (rows.length === 0) throw failure(ErrorType.ValidationFailed, `test set ${file} has no rows`);
      const host = await loadHost(input.artifactDir, input.task);
      let predictions: Prediction[];
      try {
        predictions = await score(host, rows);
      } catch (err) {
        throw failure(
          ErrorType.ArtifactInvalid,
          `the served model cannot answer the raw rows of ${file}: ${(err as Error).message}`,
        );
      } finally {
        await host.release().catch(() => undefined);
      }
      const { task, classes, label } = host.manifest;
      // The true labels, when the test set has the label column (a class of the model, or a number for a regression).
      const truth = rows.map((r) => {
        const cell = own(r, label);
        const value = cell === undefined || cell === '' ? Number.NaN : Number(cell);
        return Number.isFinite(value) && (task === 'regression' || classes.includes(value)) ? value : undefined;
      });
      const measured = truth.every((t) => t !== undefined)
        ? measureMetrics(host.manifest, predictions, truth as number[])
        : {};
      // The trainer's figures stand where it reported them; the measured ones fill in the task's other metrics.
      const combined = Object.fromEntries([
        ...Object.entries(measured).filter(([name]) => !Object.hasOwn(metrics, name)),
        ...Object.entries(metrics),
      ]);
      await writeFile(
        join(input.artifactDir, PREDICTION_BASELINE_FILE),
        `${JSON.stringify(baselineOf(task, classes, predictions, truth, await referenceEdgesOf(input.referenceArtifactDir)))}\n`,
      );
      const profileFile = join(input.artifactDir, PROFILE_FILE);
      const evaluated = { metrics: combined, smokeRows: rows.length, task, measured };
      if (!existsSync(profileFile)) return evaluated;
      let report: DriftReport;
      try {
        report = await checkData(await loadProfile(profileFile), file, {
          driftShare: input.testData?.driftShare ?? 0.5,
          features: input.testData?.features ?? {},
        });
      } catch (err) {
        // Reading again cannot help: a test set or profile that cannot be read, or options that do not fit them.
        if (err instanceof InvalidFileError) {
          throw ApplicationFailure.create({
            type: ErrorType.ValidationFailed,
            message: `cannot compare the test set with the training profile: ${err.message}`,
            nonRetryable: true,
          });
        }
        if (err instanceof RangeError) {
          throw ApplicationFailure.create({
            type: ErrorType.InvalidSpec,
            message: `validation.testData.${err.message}`,
            nonRetryable: true,
          });
        }
        throw err;
      }
      return { ...evaluated, testData: summarizeDrift(report) };
    },
  };
}
