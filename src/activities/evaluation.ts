import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import { parse as parseCsv } from 'csv-parse/sync';
import * as ort from 'onnxruntime-node';
import { ErrorType } from '../shared/errors';
import { own } from '../shared/own';
import { ModelManifest } from '../shared/gateway-api';
import { predictionBinIndex } from '../serving/telemetry';
import { PREDICTION_BASELINE_FILE, PREDICTION_BINS, type PredictionBaseline } from '../shared/telemetry';
import type { TestDataDrift } from '../shared/status';
import type { TestDataSpec } from '../shared/spec';
import { InvalidFileError } from '../config/yaml-file';
import { checkData, loadProfile, PROFILE_FILE, summarizeDrift, type DriftReport } from '../drift';

export interface EvaluateModelInput {
  artifactDir: string;
  /** Folder with test.csv, whose raw rows the smoke test sends through the served runtime. */
  dataDir: string;
  /** How the test set is compared with the training profile (absent: the defaults). */
  testData?: Partial<TestDataSpec>;
}

export interface EvaluateModelResult {
  metrics: Record<string, number>;
  smokeRows: number;
  /** The test set against the training set's profile (absent for artifacts without a profile). */
  testData?: TestDataDrift;
}

type Row = Record<string, string>;

async function loadManifest(dir: string): Promise<ModelManifest> {
  try {
    return ModelManifest.parse(JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')));
  } catch (err) {
    throw ApplicationFailure.create({
      type: ErrorType.ArtifactInvalid,
      message: `invalid model.json in ${dir}: ${(err as Error).message}`,
      nonRetryable: true,
    });
  }
}

/** Scores every row in one batch: one tensor of shape [n, 1] per feature, as the trainer exports them. */
async function score(
  dir: string,
  rows: readonly Row[],
): Promise<{ manifest: ModelManifest; probabilities: Float64Array }> {
  const manifest = await loadManifest(dir);
  const session = await ort.InferenceSession.create(join(dir, 'model.onnx'));
  try {
    const n = rows.length;
    // Feature names come from the manifest and the CSV header: read own cells only, build the feeds as own keys.
    const feeds = Object.fromEntries(
      manifest.features.map((f) =>
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
    const out = await session.run(feeds);
    const probs = own(out, manifest.outputs.probabilities);
    if (!probs) throw new Error(`output "${manifest.outputs.probabilities}" missing`);
    const data = probs.data as Float32Array;
    const width = probs.dims[1] ?? 2;
    const probabilities = Float64Array.from({ length: n }, (_, i) => data[i * width + 1] ?? 0);
    return { manifest, probabilities };
  } finally {
    await session.release();
  }
}

/** Test rows scored at validation: the smoke test, and the serving monitor's baseline of predictions. */
const BASELINE_ROWS = 50_000;

/**
 * The validation-time predictions, binned as the gateway bins live ones: the serving monitor compares production's
 * predictions with them (prediction drift).
 */
async function writeBaseline(dir: string, probabilities: Float64Array): Promise<void> {
  const bins = new Array<number>(PREDICTION_BINS).fill(0);
  for (const p of probabilities) bins[predictionBinIndex(p)]!++;
  const baseline: PredictionBaseline = { rows: probabilities.length, predictionBinCounts: bins };
  await writeFile(join(dir, PREDICTION_BASELINE_FILE), `${JSON.stringify(baseline)}\n`);
}

export function createEvaluationActivities(deps: { root: string }) {
  const resolve = (p: string) => (isAbsolute(p) ? p : join(deps.root, p));
  return {
    /**
     * Offline validation input: the trainer's held-out metrics (computed on the test split as its data pipeline
     * prepared it), plus a smoke test that the artifact loads in the runtime that will serve it and answers raw test
     * rows with valid probabilities. Skew between the pipeline's view of the data and live traffic is the canary's to
     * catch, on real requests.
     */
    async evaluateModel(input: EvaluateModelInput): Promise<EvaluateModelResult> {
      const metricsFile = join(input.artifactDir, 'metrics.json');
      let reported: Record<string, unknown>;
      try {
        reported = JSON.parse(await readFile(metricsFile, 'utf8')) as Record<string, unknown>;
      } catch (err) {
        throw ApplicationFailure.create({
          type: ErrorType.ArtifactInvalid,
          message: `cannot read ${metricsFile}: ${(err as Error).message}`,
          nonRetryable: true,
        });
      }
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
      const { probabilities } = await score(input.artifactDir, rows);
      const bad = probabilities.findIndex((p) => !Number.isFinite(p) || p < 0 || p > 1);
      if (bad < 0) await writeBaseline(input.artifactDir, probabilities);
      if (bad >= 0) {
        throw ApplicationFailure.create({
          type: ErrorType.ArtifactInvalid,
          message: `the served model answers row ${bad + 1} of ${file} with probability ${probabilities[bad]}`,
          nonRetryable: true,
        });
      }
      const profileFile = join(input.artifactDir, PROFILE_FILE);
      if (!existsSync(profileFile)) return { metrics, smokeRows: rows.length };
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
      return { metrics, smokeRows: rows.length, testData: summarizeDrift(report) };
    },
  };
}
