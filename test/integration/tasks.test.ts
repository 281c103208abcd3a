import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEvaluationActivities } from '../../src/activities/evaluation';
import { artifactDigest } from '../../src/artifacts/digest';
import { trainerPython } from '../../src/config/toolchain';
import { windowOf } from '../../src/domain/guardrails';
import { measureMetrics } from '../../src/domain/task-metrics';
import { comparePredictions } from '../../src/domain/prediction-drift';
import { ModelManifest, type BatchPredictResponse, type PredictResponse } from '../../src/shared/gateway-api';
import { qualityOf } from '../../src/shared/quality';
import { ModelTelemetry, PREDICTION_BASELINE_FILE, type PredictionBaseline } from '../../src/shared/telemetry';
import { ROOT, startGateway, type Gateway } from '../helpers/harness';

/**
 * The two examples that are not binary classifiers, on the real gateway: a LightGBM regression (demand) and an
 * XGBoost multiclass model (routing). Each is trained by its own trainer, validated by the validation activity (the
 * task checked against the spec, metrics measured on the test set, the baseline written), deployed, asked one row and
 * batches, and labelled; telemetry, drift and quality follow the task.
 */

interface Example {
  name: 'demand' | 'routing';
  task: 'regression' | 'multiclass-classification';
  labelColumn: string;
  idColumn: string;
  artifact: string;
  digest: string;
  manifest: ModelManifest;
  rows: { features: Record<string, number | string>; truth: number }[];
}

interface Reply<T = unknown> {
  status: number;
  body: T & { error?: string };
}

let workDir: string;
let gateway: Gateway;
const examples = new Map<string, Example>();

async function call<T>(base: string, method: string, url: string, body?: unknown, token?: string): Promise<Reply<T>> {
  const response = await fetch(base + url, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as T & { error?: string } };
}

const admin = <T>(method: string, url: string, body?: unknown) =>
  call<T>(gateway.adminUrl, method, url, body, gateway.adminToken);

async function prepare(name: Example['name'], task: Example['task'], labelColumn: string, idColumn: string) {
  const dir = path.join(ROOT, 'examples', name);
  const artifact = path.join(workDir, name);
  await promisify(execFile)(
    trainerPython(),
    [path.join(dir, 'train.py'), '--data-dir', path.join(dir, 'data'), '--out', artifact, '--params', '{}'],
    { cwd: ROOT },
  );
  const manifest = ModelManifest.parse(JSON.parse(await readFile(path.join(artifact, 'model.json'), 'utf8')));
  const records = parseCsv(await readFile(path.join(dir, 'data', 'test.csv'), 'utf8'), {
    columns: true,
    skip_empty_lines: true,
  }) as Record<string, string>[];
  const rows = records.map((r) => ({
    features: Object.fromEntries(
      manifest.features.map((f) => [f.name, f.type === 'numeric' ? Number(r[f.name]) : (r[f.name] as string)]),
    ),
    truth: Number(r[labelColumn]),
  }));
  examples.set(name, {
    name,
    task,
    labelColumn,
    idColumn,
    artifact,
    digest: await artifactDigest(artifact),
    manifest,
    rows,
  });
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'mll-tasks-'));
  // One at a time: each trainer uses both cores.
  await prepare('demand', 'regression', 'units_sold', 'record_id');
  await prepare('routing', 'multiclass-classification', 'queue', 'ticket_id');
  gateway = await startGateway({ artifactRoot: workDir });
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

const evaluation = createEvaluationActivities({ root: ROOT });

describe('models that are not binary classifiers', () => {
  it('validates each task: the spec must name the manifest task, and the task metrics are measured on the test set', async () => {
    for (const ex of examples.values()) {
      const dataDir = path.join(ROOT, 'examples', ex.name, 'data');
      const wrong = ex.task === 'regression' ? 'binary-classification' : 'regression';
      await expect(evaluation.evaluateModel({ artifactDir: ex.artifact, dataDir, task: wrong })).rejects.toThrow(
        `the spec's task is ${wrong} but the artifact's model.json says ${ex.task}`,
      );
      const evaluated = await evaluation.evaluateModel({ artifactDir: ex.artifact, dataDir, task: ex.task });
      expect(evaluated.task).toBe(ex.task);
      const names = ex.task === 'regression' ? ['mae', 'rmse', 'r2'] : ['accuracy', 'macroF1', 'logLoss'];
      expect(Object.keys(evaluated.measured ?? {}).sort()).toEqual([...names].sort());
      // The trainer measured the same rows with the same model (in float64 before export): within float32 rounding.
      const reported = JSON.parse(await readFile(path.join(ex.artifact, 'metrics.json'), 'utf8')) as Record<
        string,
        number
      >;
      for (const name of names) {
        expect(evaluated.measured?.[name], name).toBeCloseTo(reported[name] as number, 2);
      }
      const baseline = JSON.parse(
        await readFile(path.join(ex.artifact, PREDICTION_BASELINE_FILE), 'utf8'),
      ) as PredictionBaseline;
      expect(baseline.task).toBe(ex.task);
      expect(baseline.predictionBinCounts.reduce((a, b) => a + b, 0)).toBe(ex.rows.length);
      if (ex.task === 'regression') {
        expect(baseline.edges).toHaveLength(19);
        // Ventiles: every bin holds about a twentieth of the test set.
        for (const count of baseline.predictionBinCounts) expect(count).toBeGreaterThan(ex.rows.length / 20 - 15);
        expect(baseline.calibration).toBeUndefined();
      } else {
        expect(baseline.classCounts).toHaveLength(4);
        expect(baseline.calibration?.counts.reduce((a, b) => a + b, 0)).toBe(ex.rows.length);
      }
    }
  });

  it('refuses to deploy a regression without the bin edges of its validation predictions', async () => {
    const ex = examples.get('demand')!;
    const reply = await admin('PUT', '/admin/models/demand-no-edges/versions/v1', {
      opId: 'demand-no-edges-v1',
      artifactDir: ex.artifact,
      artifactDigest: ex.digest,
    });
    expect(reply.status).toBe(422);
    expect(reply.body.error).toMatch(/^invalid deploy request: predictionEdges: a regression model is deployed with/);
    expect((await admin('GET', '/admin/models/demand-no-edges')).status).toBe(404);
  });

  for (const name of ['demand', 'routing'] as const) {
    it(`serves ${name} row by row and in batches, counting rows, and joins its labels per task`, async () => {
      const ex = examples.get(name)!;
      const baseline = JSON.parse(
        await readFile(path.join(ex.artifact, PREDICTION_BASELINE_FILE), 'utf8'),
      ) as PredictionBaseline;
      const model = `${name}-served`;
      const deployed = await admin('PUT', `/admin/models/${model}/versions/v1`, {
        opId: `${model}-v1`,
        artifactDir: ex.artifact,
        artifactDigest: ex.digest,
        ...(baseline.edges ? { predictionEdges: baseline.edges } : {}),
      });
      expect(deployed.status, JSON.stringify(deployed.body)).toBe(200);
      expect(
        (await admin('PUT', `/admin/models/${model}/weights`, { opId: `${model}-w`, weights: { v1: 100 } })).status,
      ).toBe(200);

      // One row.
      const one = await call<PredictResponse>(gateway.url, 'POST', `/v1/models/${model}/predict`, {
        userId: 'u-1',
        requestId: `${name}-one`,
        features: ex.rows[0]!.features,
      });
      expect(one.status, JSON.stringify(one.body)).toBe(200);
      expect(one.body.task).toBe(ex.task);
      if (ex.task === 'regression') {
        expect(Number.isFinite(one.body.value)).toBe(true);
        expect(one.body).not.toHaveProperty('label');
      } else {
        expect(ex.manifest.classes).toContain(one.body.label);
        expect(one.body.probabilities).toHaveLength(4);
        expect(one.body.probabilities!.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
        expect(one.body.probability).toBe(one.body.probabilities![ex.manifest.classes.indexOf(one.body.label!)]);
      }

      // The whole test set in batches of 200: one version per batch, one prediction per row, in order.
      const before = ModelTelemetry.parse((await admin('GET', `/admin/models/${model}/telemetry`)).body);
      const answers: BatchPredictResponse['predictions'] = [];
      for (let start = 0; start < ex.rows.length; start += 200) {
        const batch = ex.rows.slice(start, start + 200);
        const reply = await call<BatchPredictResponse>(gateway.url, 'POST', `/v1/models/${model}/predict`, {
          userId: `batch-${start}`,
          requestId: `${name}-${start}`,
          rows: batch.map((r) => r.features),
        });
        expect(reply.status, JSON.stringify(reply.body).slice(0, 300)).toBe(200);
        expect(reply.body.predictions).toHaveLength(batch.length);
        expect(reply.body.predictions[1]?.requestId).toBe(`${name}-${start}/1`);
        answers.push(...reply.body.predictions);
      }
      // The first row answered alone and in a batch: the same prediction.
      expect(answers[0]?.value ?? answers[0]?.label).toBe(one.body.value ?? one.body.label);

      const after = ModelTelemetry.parse((await admin('GET', `/admin/models/${model}/telemetry`)).body);
      const window = windowOf(after.versions.v1, before.versions.v1);
      expect(window.requests).toBe(ex.rows.length);
      expect(window.successes).toBe(Math.ceil(ex.rows.length / 200));
      expect(window.predictedRows).toBe(ex.rows.length);
      expect(window.inputs?.rows ?? ex.rows.length).toBe(ex.rows.length);
      // Live traffic is the test set: its predictions are the validation's, bin by bin (and class by class).
      expect(window.predictionBinCounts).toEqual(baseline.predictionBinCounts);
      if (ex.task !== 'regression') expect(window.classCounts).toEqual(baseline.classCounts);
      const drift = comparePredictions(ex.task, baseline, window);
      expect(drift.psi).toBeLessThan(1e-9);
      expect(drift.test).toBe(ex.task === 'regression' ? 'ks' : 'chi-squared');

      // Labels for every row: the gateway's quality is the task's metrics of the same predictions.
      const labels = answers.map((a, i) => ({ requestId: a.requestId, label: ex.rows[i]!.truth }));
      const labelled = await call(gateway.url, 'POST', `/v1/models/${model}/labels`, { labels }, gateway.labelsToken);
      expect(labelled.body).toEqual({ accepted: ex.rows.length, unknown: 0, duplicate: 0 });
      const quality = qualityOf(
        windowOf(
          ModelTelemetry.parse((await admin('GET', `/admin/models/${model}/telemetry`)).body).versions.v1,
          before.versions.v1,
        ).quality,
      );
      const expected = measureMetrics(
        ex.manifest,
        answers.map((a) => ({
          ...a,
          classIndex: a.label === undefined ? undefined : ex.manifest.classes.indexOf(a.label),
        })),
        ex.rows.map((r) => r.truth),
      );
      expect(quality.labeled).toBe(ex.rows.length);
      if (ex.task === 'regression') {
        expect(quality.mae).toBeCloseTo(expected.mae!, 6);
        expect(quality.rmse).toBeCloseTo(expected.rmse!, 6);
        expect(quality.r2).toBeCloseTo(expected.r2!, 6);
        const refused = await call(
          gateway.url,
          'POST',
          `/v1/models/${model}/labels`,
          { labels: [{ requestId: `${name}-one`, label: 'lots' }] },
          gateway.labelsToken,
        );
        expect(refused.status).toBe(400);
        expect(refused.body.error).toContain(`is not a number, and version 'v1' of model '${model}' is a regression`);
      } else {
        expect(quality.accuracy).toBeCloseTo(expected.accuracy!, 9);
        expect(quality.macroF1).toBeCloseTo(expected.macroF1!, 9);
        expect(quality.logLoss).toBeCloseTo(expected.logLoss!, 4);
      }
    }, 60_000);
  }

  it('refuses a batch with one bad row whole, naming the row, and counts its rows as invalid', async () => {
    const ex = examples.get('routing')!;
    const model = 'routing-served';
    const before = ModelTelemetry.parse((await admin('GET', `/admin/models/${model}/telemetry`)).body);
    const rows = ex.rows.slice(0, 5).map((r) => ({ ...r.features }));
    delete rows[3]![ex.manifest.features[0]!.name];
    const reply = await call(gateway.url, 'POST', `/v1/models/${model}/predict`, { userId: 'u-bad', rows });
    expect(reply.status).toBe(400);
    expect(reply.body.error).toBe(`invalid input: rows[3]: feature '${ex.manifest.features[0]!.name}' is missing`);
    const both = await call(gateway.url, 'POST', `/v1/models/${model}/predict`, {
      userId: 'u-bad',
      features: rows[0],
      rows,
    });
    expect(both.status).toBe(400);
    expect(both.body.error).toContain('give either features (one row) or rows (a batch)');
    const tooMany = await call(gateway.url, 'POST', `/v1/models/${model}/predict`, {
      userId: 'u-bad',
      rows: Array.from({ length: 1001 }, () => rows[0]),
    });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error).toContain('at most 1000 rows per request');
    const window = windowOf(
      ModelTelemetry.parse((await admin('GET', `/admin/models/${model}/telemetry`)).body).versions.v1,
      before.versions.v1,
    );
    expect(window.requests).toBe(0);
    expect(window.invalidRequests).toBe(5 + 5 + 1000);
  });
});

describe('the Open Inference Protocol (KServe v2) on the gateway', () => {
  const json = <T>(method: string, url: string, body?: unknown) => call<T>(gateway.url, method, url, body);
  const product = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

  it('answers server and model metadata, health and readiness in the protocol shapes', async () => {
    const server = await json<{ name: string; version: string; extensions: string[] }>('GET', '/v2');
    expect(server.status).toBe(200);
    expect(server.body).toEqual({
      name: 'ml-lifecycle-gateway',
      version: expect.any(String),
      extensions: ['binary_tensor_data'],
    });
    expect((await json('GET', '/v2/health/live')).status).toBe(200);
    expect((await json('GET', '/v2/health/ready')).status).toBe(200);

    const routing = examples.get('routing')!;
    const meta = await json<{
      name: string;
      versions: string[];
      platform: string;
      inputs: { name: string; datatype: string; shape: number[] }[];
      outputs: { name: string; datatype: string; shape: number[] }[];
      parameters: { task: string; classes: number[] };
    }>('GET', '/v2/models/routing-served');
    expect(meta.status).toBe(200);
    expect(meta.body.name).toBe('routing-served');
    expect(meta.body.versions).toEqual(['v1']);
    expect(meta.body.inputs).toEqual(
      routing.manifest.features.map((f) => ({
        name: f.name,
        datatype: f.type === 'numeric' ? 'FP32' : 'BYTES',
        shape: [-1, 1],
      })),
    );
    expect(meta.body.outputs).toEqual([
      { name: 'label', datatype: 'INT64', shape: [-1] },
      { name: 'probabilities', datatype: 'FP32', shape: [-1, 4] },
    ]);
    expect(meta.body.parameters).toMatchObject({
      task: 'multiclass-classification',
      classes: routing.manifest.classes,
    });
    expect((await json('GET', '/v2/models/routing-served/versions/v1')).status).toBe(200);
    expect((await json('GET', '/v2/models/routing-served/ready')).status).toBe(200);
    expect((await json('GET', '/v2/models/routing-served/versions/v1/ready')).status).toBe(200);
    const unknown = await json('GET', '/v2/models/no-such-model');
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ error: "model 'no-such-model' is not deployed" });
    expect((await json('GET', '/v2/models/no-such-model/ready')).status).toBe(404);
    expect((await json('GET', '/v2/models/routing-served/versions/v9')).status).toBe(404);
  });

  it('infers named tensors routed like /v1, counted in the same telemetry, and refuses bad tensors with { error }', async () => {
    const ex = examples.get('demand')!;
    const model = 'demand-served';
    const rows = ex.rows.slice(0, 7);
    const inputs = ex.manifest.features.map((f) => ({
      name: f.name,
      shape: [rows.length, 1],
      datatype: f.type === 'numeric' ? 'FP32' : 'BYTES',
      data: rows.map((r) => r.features[f.name]),
    }));
    const before = ModelTelemetry.parse((await admin('GET', `/admin/models/${model}/telemetry`)).body);
    const reply = await json<{
      model_name: string;
      model_version: string;
      id: string;
      outputs: { name: string; datatype: string; shape: number[]; data: number[] }[];
    }>('POST', `/v2/models/${model}/infer`, { id: 'oip-1', parameters: { user_id: 'u-oip' }, inputs });
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    expect(reply.body).toMatchObject({ model_name: model, model_version: 'v1', id: 'oip-1' });
    expect(reply.body.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([['value', 'FP64', [7]]]);
    for (const o of reply.body.outputs) expect(o.data).toHaveLength(product(o.shape));
    // The same rows on /v1: the same predictions.
    const v1 = await call<BatchPredictResponse>(gateway.url, 'POST', `/v1/models/${model}/predict`, {
      userId: 'u-oip',
      rows: rows.map((r) => r.features),
    });
    expect(reply.body.outputs[0]?.data).toEqual(v1.body.predictions.map((p) => p.value));
    const window = windowOf(
      ModelTelemetry.parse((await admin('GET', `/admin/models/${model}/telemetry`)).body).versions.v1,
      before.versions.v1,
    );
    expect(window.requests).toBe(14);
    // Remembered for labels under <id>/<i>.
    const labelled = await call(
      gateway.url,
      'POST',
      `/v1/models/${model}/labels`,
      { labels: [{ requestId: 'oip-1/3', label: rows[3]!.truth }] },
      gateway.labelsToken,
    );
    expect(labelled.body).toEqual({ accepted: 1, unknown: 0, duplicate: 0 });

    const bad = async (body: unknown, path = `/v2/models/${model}/infer`) => {
      const r = await json<{ error: string }>('POST', path, body);
      return [r.status, r.body.error];
    };
    expect(await bad({ inputs: inputs.slice(1) })).toEqual([
      400,
      `invalid inference request: input '${inputs[0]!.name}' is missing`,
    ]);
    expect(await bad({ inputs: [...inputs, { ...inputs[0]!, name: 'nope' }] })).toEqual([
      400,
      "invalid inference request: input 'nope' is not an input of the model",
    ]);
    expect(await bad({ inputs: [{ ...inputs[0]!, shape: [7, 2] }, ...inputs.slice(1)] })).toEqual([
      400,
      `invalid inference request: input '${inputs[0]!.name}' has shape [7, 2], not [n] or [n, 1]`,
    ]);
    expect(await bad({ inputs: [{ ...inputs[0]!, data: [1, 2] }, ...inputs.slice(1)] })).toEqual([
      400,
      `invalid inference request: input '${inputs[0]!.name}' has 2 values for 7 rows`,
    ]);
    const categorical = inputs.findIndex((i) => i.datatype === 'BYTES');
    expect(await bad({ inputs: inputs.map((i, k) => (k === categorical ? { ...i, datatype: 'FP32' } : i)) })).toEqual([
      400,
      `invalid inference request: input '${inputs[categorical]!.name}' is FP32; the model takes BYTES`,
    ]);
    expect(await bad({ inputs, outputs: [{ name: 'label' }] })).toEqual([
      400,
      "invalid inference request: output 'label' is not an output of the model (value)",
    ]);
    expect(await bad({ inputs, parameters: { user_id: 'u-oip' } }, `/v2/models/${model}/versions/v7/infer`)).toEqual([
      409,
      `this caller is routed to version 'v1' of model '${model}', not 'v7'; predict without a version to be routed`,
    ]);
    const nan = await fetch(`${gateway.url}/v2/models/${model}/infer`, { method: 'POST', body: '{"inputs": [NaN]}' });
    expect(nan.status).toBe(400);
    expect(await nan.json()).toEqual({ error: 'invalid inference request: the body is not JSON' });
  });

  for (const binary of [false, true]) {
    it(`gives a third-party client (tritonclient, ${binary ? 'binary' : 'JSON'} tensors) the predictions of /v1`, async () => {
      for (const ex of examples.values()) {
        const model = `${ex.name}-served`;
        const { stdout } = await promisify(execFile)(
          trainerPython(),
          [
            path.join(ROOT, 'test/fixtures/oip/oip_client.py'),
            '--url',
            gateway.url.replace(/^http:\/\//, ''),
            '--model',
            model,
            '--csv',
            path.join(ROOT, 'examples', ex.name, 'data', 'test.csv'),
            '--drop',
            `${ex.idColumn},${ex.labelColumn}`,
            '--rows',
            '25',
            '--user-id',
            'triton-user',
            ...(binary ? ['--binary'] : []),
          ],
          { cwd: ROOT },
        );
        const out = JSON.parse(stdout) as {
          live: boolean;
          ready: boolean;
          model_ready: boolean;
          response: { model_version: string };
          outputs: Record<string, unknown[]>;
        };
        expect(out).toMatchObject({ live: true, ready: true, model_ready: true, response: { model_version: 'v1' } });
        const v1 = await call<BatchPredictResponse>(gateway.url, 'POST', `/v1/models/${model}/predict`, {
          userId: 'triton-user',
          rows: ex.rows.slice(0, 25).map((r) => r.features),
        });
        if (ex.task === 'regression') {
          expect(out.outputs.value).toEqual(v1.body.predictions.map((p) => p.value));
        } else {
          expect(out.outputs.label).toEqual(v1.body.predictions.map((p) => p.label));
          expect(out.outputs.probabilities).toEqual(v1.body.predictions.map((p) => p.probabilities));
        }
      }
    }, 60_000);
  }
});
