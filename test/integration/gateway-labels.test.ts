import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { trainerPython } from '../../src/config/toolchain';
import { LoadGenerator } from '../../src/dev/load-generator';
import { windowOf } from '../../src/domain/guardrails';
import { artifactDigest } from '../../src/artifacts/digest';
import { createGateway } from '../../src/serving/server';
import { PredictResponse } from '../../src/shared/gateway-api';

/** A binary classifier's answer: its label and positive-class probability are always there. */
const BinaryAnswer = PredictResponse.required({ label: true, probability: true });
type BinaryAnswer = ReturnType<typeof BinaryAnswer.parse>;
import {
  MAX_LABEL_REQUEST_ID_LENGTH,
  MAX_LABELS_PER_CALL,
  qualityOf,
  type LabelsResponse,
  type QualityCounters,
} from '../../src/shared/quality';
import { ModelTelemetry } from '../../src/shared/telemetry';
import { resolveTarget } from '../../src/targets/target';
import { EXAMPLE, newToken, ROOT, startGateway, type Gateway } from '../helpers/harness';

const DATA = path.join(EXAMPLE, 'data');
const TEST_CSV = path.join(DATA, 'test.csv');
const NUMERIC = new Set(['age', 'tenure_months', 'monthly_charges', 'support_calls']);

type Features = Record<string, number | string>;
interface Row {
  features: Features;
  churned: number;
}
interface Reply<T = unknown> {
  status: number;
  body: T;
}

let workDir: string;
let artifact: string;
let digest: string;
let rows: Row[];

/** A call with a bearer token when `token` is given. */
async function call<T = unknown>(
  base: string,
  method: string,
  url: string,
  body?: unknown,
  token?: string,
): Promise<Reply<T>> {
  const response = await fetch(base + url, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as T };
}

/** A call of the gateway's admin API, with its admin token. */
function admin<T = unknown>(gw: Gateway, method: string, url: string, body?: unknown): Promise<Reply<T>> {
  return call<T>(gw.adminUrl, method, url, body, gw.adminToken);
}

/** Deploys `versions` of `model` from the trained artifact and splits the traffic by `weights`. */
async function deploy(gw: Gateway, model: string, weights: Record<string, number>): Promise<void> {
  for (const version of Object.keys(weights)) {
    const reply = await admin(gw, 'PUT', `/admin/models/${model}/versions/${version}`, {
      opId: `deploy-${model}-${version}`,
      artifactDir: artifact,
      artifactDigest: digest,
    });
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
  }
  const reply = await admin(gw, 'PUT', `/admin/models/${model}/weights`, { opId: `weights-${model}`, weights });
  expect(reply.status, JSON.stringify(reply.body)).toBe(200);
}

async function predict(gw: Gateway, model: string, i: number, requestId?: string): Promise<Reply> {
  const row = rows[i % rows.length] as Row;
  return call(gw.url, 'POST', `/v1/models/${model}/predict`, {
    userId: `user-${i}`,
    ...(requestId ? { requestId } : {}),
    features: row.features,
  });
}

/** Posts labels with the gateway's labels token (or `token`: another one, or none when null). */
function postLabels(
  gw: Gateway,
  model: string,
  body: unknown,
  token: string | null = gw.labelsToken,
): Promise<Reply<LabelsResponse & { error?: string }>> {
  return call(gw.url, 'POST', `/v1/models/${model}/labels`, body, token ?? undefined);
}

async function telemetry(gw: Gateway, model: string): Promise<ModelTelemetry> {
  const reply = await admin(gw, 'GET', `/admin/models/${model}/telemetry`);
  expect(reply.status).toBe(200);
  return ModelTelemetry.parse(reply.body);
}

async function until(done: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Quality counters worked out here from the answers and the true labels, independently of the gateway's code. */
function expectedQuality(pairs: { label: number; probability: number; actual: number }[]): QualityCounters {
  const q: QualityCounters = {
    labeled: 0,
    correct: 0,
    truePositives: 0,
    falsePositives: 0,
    falseNegatives: 0,
    trueNegatives: 0,
    logLossSum: 0,
    brierSum: 0,
  };
  for (const { label, probability: p, actual: y } of pairs) {
    q.labeled++;
    if (label === y) q.correct++;
    if (label === 1 && y === 1) q.truePositives++;
    if (label === 1 && y === 0) q.falsePositives++;
    if (label === 0 && y === 1) q.falseNegatives++;
    if (label === 0 && y === 0) q.trueNegatives++;
    q.logLossSum += -(y * Math.log(p) + (1 - y) * Math.log(1 - p));
    q.brierSum += (p - y) ** 2;
  }
  return q;
}

function expectQuality(actual: QualityCounters | undefined, expected: QualityCounters): void {
  const { logLossSum, brierSum, ...counts } = expected;
  expect(actual).toMatchObject(counts);
  expect(actual?.logLossSum).toBeCloseTo(logLossSum, 6);
  expect(actual?.brierSum).toBeCloseTo(brierSum, 6);
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'gateway-labels-'));
  artifact = path.join(workDir, 'model');
  const [csv] = await Promise.all([
    readFile(TEST_CSV, 'utf8'),
    promisify(execFile)(
      trainerPython(),
      [path.join(EXAMPLE, 'train.py'), '--data-dir', DATA, '--out', artifact, '--params', '{"nEstimators":30}'],
      { cwd: ROOT },
    ),
  ]);
  digest = await artifactDigest(artifact);
  const records = parseCsv(csv, { columns: true, skip_empty_lines: true }) as Record<string, string>[];
  rows = records.map((r) => ({
    features: Object.fromEntries(
      ['age', 'tenure_months', 'monthly_charges', 'support_calls', 'plan', 'region'].map((name) => [
        name,
        NUMERIC.has(name) ? Number(r[name]) : (r[name] as string),
      ]),
    ),
    churned: Number(r.churned),
  }));
});

afterAll(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('gateway ground-truth labels', () => {
  let gateway: Gateway;
  const others: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    gateway = await startGateway({ artifactRoot: workDir });
  });
  afterEach(async () => {
    await Promise.all(others.splice(0).map((other) => other.close()));
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it('joins labels posted over HTTP to real predictions and reports quality per version', async () => {
    const gw = gateway;
    await deploy(gw, 'churn', { v1: 50, v2: 50 });
    const answers: BinaryAnswer[] = [];
    for (let i = 0; i < 60; i++) {
      const reply = await predict(gw, 'churn', i, `req-${i}`);
      expect(reply.status).toBe(200);
      answers.push(BinaryAnswer.parse(reply.body));
    }
    expect(new Set(answers.map((a) => a.version))).toEqual(new Set(['v1', 'v2']));
    const before = await telemetry(gw, 'churn');
    expect(before.versions.v1).not.toHaveProperty('quality');

    // 40 labels, half as strings, plus one request id never predicted and one label repeated in the same call.
    const labelled = answers.slice(0, 40);
    const labels = labelled.map((a, i) => {
      const churned = (rows[i] as Row).churned;
      return { requestId: a.requestId, label: i % 2 === 0 ? churned : String(churned) };
    });
    const first = await postLabels(gw, 'churn', {
      labels: [...labels, { requestId: 'never-predicted', label: 1 }, { requestId: 'req-0', label: 0 }],
    });
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body).toEqual({ accepted: 40, unknown: 1, duplicate: 1 });
    // Labelled before: a duplicate, whatever it says now.
    const again = await postLabels(gw, 'churn', { labels: [{ requestId: 'req-3', label: 1 }] });
    expect(again.body).toEqual({ accepted: 0, unknown: 0, duplicate: 1 });

    const after = await telemetry(gw, 'churn');
    for (const version of ['v1', 'v2']) {
      const pairs = labelled
        .map((a, i) => ({ ...a, actual: (rows[i] as Row).churned }))
        .filter((a) => a.version === version);
      expect(pairs.length).toBeGreaterThan(0);
      expectQuality(after.versions[version]?.quality, expectedQuality(pairs));
      const window = windowOf(after.versions[version], before.versions[version]);
      expect(window.quality?.labeled).toBe(pairs.length);
    }
    const overall = expectedQuality(labelled.map((a, i) => ({ ...a, actual: (rows[i] as Row).churned })));
    const v1 = qualityOf(after.versions.v1?.quality);
    const v2 = qualityOf(after.versions.v2?.quality);
    expect((v1.labeled * (v1.accuracy ?? 0) + v2.labeled * (v2.accuracy ?? 0)) / 40).toBeCloseTo(
      overall.correct / 40,
      12,
    );

    // The generic HTTP target reads the same telemetry from a user endpoint, quality included.
    const target = resolveTarget(
      {
        kind: 'http',
        name: 'labels-test',
        baseUrl: gw.adminUrl,
        // A literal goes to history with the spec: fine for a test token, never for a real one (use fromEnv).
        headers: { authorization: `Bearer ${gw.adminToken}` },
        endpoints: {
          deploy: { method: 'PUT', path: '/admin/models/{model}/versions/{version}' },
          setWeights: { method: 'PUT', path: '/admin/models/{model}/weights' },
          undeploy: { method: 'DELETE', path: '/admin/models/{model}/versions/{version}' },
          telemetry: { method: 'GET', path: '/admin/models/{model}/telemetry' },
        },
      },
      { gateway: gw.access },
    );
    const read = await target.readTelemetry('churn');
    expect(read.versions.v1?.quality).toEqual(after.versions.v1?.quality);
    expect(read.versions.v2?.quality).toEqual(after.versions.v2?.quality);
    const viaGateway = await resolveTarget(undefined, { gateway: gw.access }).readTelemetry('churn');
    expect(viaGateway.versions.v1?.quality).toEqual(after.versions.v1?.quality);
  });

  it('counts labels of failed, forgotten and undeployed predictions as unknown', async () => {
    const gw = gateway;
    await deploy(gw, 'churn-unknown', { v1: 100 });

    // A prediction that failed leaves nothing to label.
    const faults = await admin(gw, 'PUT', '/admin/models/churn-unknown/versions/v1/faults', { errorRate: 1 });
    expect(faults.status).toBe(200);
    expect((await predict(gw, 'churn-unknown', 0, 'failed-0')).status).toBe(500);
    await admin(gw, 'DELETE', '/admin/models/churn-unknown/versions/v1/faults');
    expect((await postLabels(gw, 'churn-unknown', { labels: [{ requestId: 'failed-0', label: 1 }] })).body).toEqual({
      accepted: 0,
      unknown: 1,
      duplicate: 0,
    });

    // A version undeployed since, and one redeployed under the same name, have lost their predictions' counters.
    await admin(gw, 'PUT', '/admin/models/churn-unknown/versions/v2', {
      opId: 'u-deploy-v2',
      artifactDir: artifact,
      artifactDigest: digest,
    });
    await admin(gw, 'PUT', '/admin/models/churn-unknown/weights', { opId: 'u-w2', weights: { v2: 100 } });
    expect((await predict(gw, 'churn-unknown', 1, 'on-v2')).status).toBe(200);
    await admin(gw, 'PUT', '/admin/models/churn-unknown/weights', { opId: 'u-w1', weights: { v1: 100 } });
    await admin(gw, 'DELETE', '/admin/models/churn-unknown/versions/v2?opId=u-undeploy-v2');
    await admin(gw, 'PUT', '/admin/models/churn-unknown/versions/v2', {
      opId: 'u-redeploy-v2',
      artifactDir: artifact,
      artifactDigest: digest,
    });
    expect((await postLabels(gw, 'churn-unknown', { labels: [{ requestId: 'on-v2', label: 1 }] })).body).toEqual({
      accepted: 0,
      unknown: 1,
      duplicate: 0,
    });
    expect((await telemetry(gw, 'churn-unknown')).versions.v2).not.toHaveProperty('quality');

    // A gateway remembering 5 predictions for 400 ms: the oldest are forgotten by count, then all by age.
    const dataDir = await mkdtemp(path.join(workDir, 'small-memory-'));
    const small = await startGateway({
      dataDir,
      artifactRoot: workDir,
      predictionMemory: { maxEntries: 5, maxAgeMs: 400 },
    });
    others.push(small);
    await deploy(small, 'churn', { v1: 100 });
    for (let i = 0; i < 8; i++) expect((await predict(small, 'churn', i, `s-${i}`)).status).toBe(200);
    const labels = (ids: number[]) => ({
      labels: ids.map((i) => ({ requestId: `s-${i}`, label: (rows[i] as Row).churned })),
    });
    expect((await postLabels(small, 'churn', labels([0, 1, 2, 3, 4]))).body).toEqual({
      accepted: 2,
      unknown: 3,
      duplicate: 0,
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await postLabels(small, 'churn', labels([5, 6, 7]))).body).toEqual({
      accepted: 0,
      unknown: 3,
      duplicate: 0,
    });
    expect((await telemetry(small, 'churn')).versions.v1?.quality?.labeled).toBe(2);
  });

  it('refuses a bad labels body with one 400 naming the item and the field, and counts none of it', async () => {
    const gw = gateway;
    await deploy(gw, 'churn-bad', { v1: 100 });
    expect((await predict(gw, 'churn-bad', 0, 'b-0')).status).toBe(200);
    expect((await predict(gw, 'churn-bad', 1, 'b-1')).status).toBe(200);

    const missing = await postLabels(gw, 'churn-bad', {
      labels: [{ requestId: 'b-0', label: 1 }, { label: 1 }, { requestId: 'b-1', label: true }],
    });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatch(/^invalid labels request: labels\[1\]\.requestId: .*\(and 1 more problem\)$/);
    expect(missing.body.error?.split('\n')).toHaveLength(1);

    // A fraction is a regression's target, never a class of a classifier.
    const fraction = await postLabels(gw, 'churn-bad', { labels: [{ requestId: 'b-1', label: 0.5 }] });
    expect(fraction.status).toBe(400);
    expect(fraction.body.error).toBe(
      `invalid labels request: labels[0].label: 0.5 is not a class of version 'v1' of model 'churn-bad' ` +
        '(classes 0, 1); no label of this call was counted',
    );

    // A label the version's manifest does not know refuses the whole call, the good label before it included.
    const notAClass = await postLabels(gw, 'churn-bad', {
      labels: [
        { requestId: 'b-0', label: 1 },
        { requestId: 'b-1', label: 'yes' },
      ],
    });
    expect(notAClass.status).toBe(400);
    expect(notAClass.body.error).toBe(
      `invalid labels request: labels[1].label: "yes" is not a class of version 'v1' of model 'churn-bad' ` +
        '(classes 0, 1); no label of this call was counted',
    );
    expect((await telemetry(gw, 'churn-bad')).versions.v1).not.toHaveProperty('quality');

    // A request id longer than a label can name is served, and refused when a label names it.
    const longId = 'l'.repeat(MAX_LABEL_REQUEST_ID_LENGTH + 1);
    expect((await predict(gw, 'churn-bad', 2, longId)).status).toBe(200);
    const tooLong = await postLabels(gw, 'churn-bad', { labels: [{ requestId: longId, label: 1 }] });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error).toMatch(/^invalid labels request: labels\[0\]\.requestId: Too big/);

    expect((await postLabels(gw, 'churn-bad', { labels: [] })).body.error).toBe(
      'invalid labels request: labels: at least one label',
    );
    expect((await postLabels(gw, 'churn-bad', [])).body.error).toMatch(/^invalid labels request: body: /);
    const tooMany = Array.from({ length: MAX_LABELS_PER_CALL + 1 }, (_, i) => ({ requestId: `x-${i}`, label: 1 }));
    const big = await postLabels(gw, 'churn-bad', { labels: tooMany });
    expect(big.status).toBe(400);
    expect(big.body.error).toBe(`invalid labels request: labels: at most ${MAX_LABELS_PER_CALL} labels per call`);

    // The largest call is taken (its body is above fastify's default limit of 1 MiB).
    const largest = Array.from({ length: MAX_LABELS_PER_CALL }, (_, i) => ({
      requestId: `a-request-id-of-a-caller-that-likes-them-long-${i}-${'x'.repeat(60)}`,
      label: 1,
    }));
    expect(JSON.stringify({ labels: largest }).length).toBeGreaterThan(1024 * 1024);
    expect((await postLabels(gw, 'churn-bad', { labels: largest })).body).toEqual({
      accepted: 0,
      unknown: MAX_LABELS_PER_CALL,
      duplicate: 0,
    });

    expect((await postLabels(gw, 'no-such-model', { labels: [{ requestId: 'b-0', label: 1 }] })).status).toBe(404);
  });

  it('refuses labels without the labels token or with a wrong one (401), counting nothing', async () => {
    const gw = gateway;
    await deploy(gw, 'churn-auth', { v1: 100 });
    expect((await predict(gw, 'churn-auth', 0, 'auth-0')).status).toBe(200);
    const body = { labels: [{ requestId: 'auth-0', label: (rows[0] as Row).churned }] };
    const refusals = [
      await postLabels(gw, 'churn-auth', body, null),
      await postLabels(gw, 'churn-auth', body, newToken()),
      await postLabels(gw, 'churn-auth', body, gw.adminToken),
      // The token is checked before anything else: an unknown model or a bad body say nothing without it.
      await postLabels(gw, 'no-such-model', body, null),
      await postLabels(gw, 'churn-auth', { labels: 'nope' }, null),
    ];
    for (const refused of refusals) {
      expect(refused.status).toBe(401);
      expect(refused.body).toEqual({
        error:
          'labels: missing or wrong bearer token (send Authorization: Bearer <the token the gateway was given in ' +
          'GATEWAY_LABELS_TOKEN or GATEWAY_LABELS_TOKEN_FILE>)',
      });
    }
    expect((await telemetry(gw, 'churn-auth')).versions.v1).not.toHaveProperty('quality');
    expect((await postLabels(gw, 'churn-auth', body)).body).toEqual({ accepted: 1, unknown: 0, duplicate: 0 });

    // A gateway given no labels token takes no labels at all, whatever the caller sends.
    const bare = await createGateway({
      dataDir: await mkdtemp(path.join(workDir, 'no-labels-')),
      artifactRoot: workDir,
      adminToken: newToken(),
    });
    others.push(bare);
    const loopback = { port: 0, host: '127.0.0.1' };
    const { public: url } = await bare.listen({ public: loopback, admin: loopback });
    for (const token of [undefined, gw.labelsToken]) {
      const reply = await call<{ error: string }>(url, 'POST', '/v1/models/churn/labels', body, token);
      expect(reply.status).toBe(401);
      expect(reply.body.error).toMatch(/^labels need a token configured on the gateway \(GATEWAY_LABELS_TOKEN or/);
    }
  });

  it('keeps the first prediction of a request id that waits for its label: a re-use cannot replace it', async () => {
    const gw = gateway;
    await deploy(gw, 'churn-reuse', { v1: 100 });
    const first = BinaryAnswer.parse((await predict(gw, 'churn-reuse', 0, 'shared-id')).body);
    // Another row under the same caller-chosen id: answered, not remembered.
    const other = rows.findIndex((r, i) => i > 0 && r.churned !== (rows[0] as Row).churned);
    const second = BinaryAnswer.parse((await predict(gw, 'churn-reuse', other, 'shared-id')).body);
    expect(second.requestId).toBe('shared-id');
    expect(second.probability).not.toBe(first.probability);

    const actual = (rows[0] as Row).churned;
    expect((await postLabels(gw, 'churn-reuse', { labels: [{ requestId: 'shared-id', label: actual }] })).body).toEqual(
      {
        accepted: 1,
        unknown: 0,
        duplicate: 0,
      },
    );
    expectQuality(
      (await telemetry(gw, 'churn-reuse')).versions.v1?.quality,
      expectedQuality([{ label: first.label, probability: first.probability, actual }]),
    );

    // Once labelled, the id is free again: a new prediction under it takes a label of its own.
    const third = BinaryAnswer.parse((await predict(gw, 'churn-reuse', other, 'shared-id')).body);
    const otherActual = (rows[other] as Row).churned;
    expect(
      (await postLabels(gw, 'churn-reuse', { labels: [{ requestId: 'shared-id', label: otherActual }] })).body,
    ).toEqual({ accepted: 1, unknown: 0, duplicate: 0 });
    expectQuality(
      (await telemetry(gw, 'churn-reuse')).versions.v1?.quality,
      expectedQuality([
        { label: first.label, probability: first.probability, actual },
        { label: third.label, probability: third.probability, actual: otherActual },
      ]),
    );
  });

  it('takes delayed labels from the load generator; flipping half of them shows a visibly lower accuracy', async () => {
    const gw = gateway;
    await deploy(gw, 'churn-clean', { v1: 100 });
    await deploy(gw, 'churn-flipped', { v1: 100 });
    const options = {
      gatewayUrl: gw.url,
      labelsToken: gw.labelsToken,
      rowsCsv: TEST_CSV,
      labelColumn: 'churned',
      dropColumns: ['customer_id'],
      ratePerSecond: 200,
      labelDelayMs: 300,
      labelShare: 0.8,
      labelBatchSize: 40,
    };
    expect(() => new LoadGenerator({ ...options, model: 'x', labelFlipShare: 1.2 })).toThrow(RangeError);
    // A column of more than two values flips to the next of them (a multiclass label, or another row's target).
    expect(() => new LoadGenerator({ ...options, model: 'x', labelColumn: 'plan', labelFlipShare: 0.5 })).not.toThrow();

    const clean = new LoadGenerator({ ...options, model: 'churn-clean' });
    const flipped = new LoadGenerator({ ...options, model: 'churn-flipped', labelFlipShare: 0.5 });
    let stopped = false;
    try {
      clean.start();
      flipped.start();
      // The first answers are back, their labels not yet: they wait for their delay.
      await until(() => clean.stats.ok >= 1);
      expect(clean.stats.labelsSent).toBe(0);
      // Labels flow while the traffic runs, not only when it stops.
      await until(() => clean.stats.labelsAccepted >= 80 && flipped.stats.labelsAccepted >= 80);
      await until(() => clean.stats.sent >= 300 && flipped.stats.sent >= 300);
      stopped = true;
      await Promise.all([clean.stop(), flipped.stop()]);
    } finally {
      if (!stopped) await Promise.all([clean.stop(), flipped.stop()]);
    }

    for (const load of [clean, flipped]) {
      const { ok, failed, labelsSent, labelsAccepted, labelsUnknown, labelsDuplicate, labelsFailed } = load.stats;
      expect(failed, load.stats.lastError ?? '').toBe(0);
      expect(labelsFailed, load.stats.lastError ?? '').toBe(0);
      expect(labelsSent).toBe(Math.floor(ok * 0.8));
      expect(labelsAccepted).toBe(labelsSent);
      expect(labelsUnknown + labelsDuplicate).toBe(0);
    }
    expect(clean.stats.labelsFlipped).toBe(0);
    expect(flipped.stats.labelsFlipped).toBe(Math.floor(flipped.stats.labelsSent * 0.5));

    const cleanQuality = (await telemetry(gw, 'churn-clean')).versions.v1?.quality;
    const flippedQuality = (await telemetry(gw, 'churn-flipped')).versions.v1?.quality;
    expect(cleanQuality?.labeled).toBe(clean.stats.labelsSent);
    expect(flippedQuality?.labeled).toBe(flipped.stats.labelsSent);
    const cleanAccuracy = qualityOf(cleanQuality).accuracy ?? 0;
    const flippedAccuracy = qualityOf(flippedQuality).accuracy ?? 1;
    // The model is right on about 80% of the test set; with half the labels flipped it looks like a coin.
    expect(cleanAccuracy).toBeGreaterThan(0.7);
    expect(flippedAccuracy).toBeLessThan(0.6);
    expect(flippedAccuracy).toBeLessThan(cleanAccuracy - 0.15);
    expect(qualityOf(flippedQuality).logLoss ?? 0).toBeGreaterThan(qualityOf(cleanQuality).logLoss ?? Infinity);
  });
});
