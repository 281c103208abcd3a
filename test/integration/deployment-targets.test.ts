import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { createGatewayActivities, type AnalyzeStageInput } from '../../src/activities/gateway';
import { artifactDigest } from '../../src/artifacts/digest';
import { trainerPython } from '../../src/config/toolchain';
import { ErrorType } from '../../src/shared/errors';
import { AdminOp } from '../../src/shared/gateway-api';
import { AnalysisSpec } from '../../src/shared/spec';
import {
  LATENCY_BUCKETS_MS,
  MAX_TELEMETRY_BYTES,
  PREDICTION_BINS,
  type VersionTelemetry,
} from '../../src/shared/telemetry';
import { MAX_ANSWER_BYTES } from '../../src/targets/request';
import {
  DeploymentTargetSpec,
  type DeploymentTargetSpecInput,
  type HttpTargetSpec,
} from '../../src/shared/deployment-target';
import { EXAMPLE, ROOT, startGateway, uniqueName, type Gateway } from '../helpers/harness';

/** The environment variable the receiver's bearer token comes from, as an operator would set it on the worker. */
const TOKEN_ENV = 'MLL_TEST_PLATFORM_TOKEN';
const TOKEN = 'tok-3f9a1c';
/** The digest an HTTP target is sent with each deploy (its own business to check; the gateway's is tested below). */
const DIGEST = `sha256:${'ab'.repeat(32)}`;

interface Call {
  method: string;
  /** The URL as it arrived, still encoded. */
  url: string;
  params: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

/** How one version behaves under simulated traffic. */
interface Behaviour {
  errorRate: number;
  /** Typical latency; samples spread from half to three times it. */
  latencyMs: number;
  /** Share of positive predictions. */
  positiveRate: number;
}

/** mulberry32: the same traffic every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function zeroCounters(version: string): VersionTelemetry {
  return {
    version,
    requests: 0,
    errors: 0,
    invalidRequests: 0,
    latencyBucketCounts: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0),
    latencySumMs: 0,
    predictionBinCounts: new Array<number>(PREDICTION_BINS).fill(0),
    positiveCount: 0,
  };
}

/**
 * A user's serving platform behind an adapter: it keeps deployed revisions, traffic weights and per-version counters,
 * requires a bearer token and a tenant header, applies every opId once, and refuses what a platform would refuse.
 */
class Platform {
  readonly calls: Call[] = [];
  readonly revisions = new Map<string, Set<string>>();
  readonly weights = new Map<string, Record<string, number>>();
  readonly counters = new Map<string, Map<string, VersionTelemetry>>();
  readonly behaviour = new Map<string, Behaviour>();
  private readonly applied = new Set<string>();
  private failure: { status: number; body: unknown } | null = null;
  /** Replaces the next telemetry answer (a receiver outside the contract). */
  telemetryOverride: { contentType: string; body: string } | null = null;
  private readonly rand = random(42);

  /** The next request is answered with this status and body. */
  failNext(status: number, body: unknown): void {
    this.failure = { status, body };
  }

  reset(): void {
    this.calls.length = 0;
    this.failure = null;
    this.telemetryOverride = null;
  }

  /** `n` prediction requests routed by the current weights, counted as the gateway counts them. */
  serve(model: string, n: number): void {
    const weights = Object.entries(this.weights.get(model) ?? {});
    const versions = this.counters.get(model)!;
    for (let i = 0; i < n; i++) {
      let pick = this.rand() * 100;
      const [version] = weights.find(([, w]) => (pick -= w) < 0) ?? weights[weights.length - 1]!;
      const c = versions.get(version)!;
      const b = this.behaviour.get(version) ?? { errorRate: 0, latencyMs: 20, positiveRate: 0.2 };
      c.requests++;
      if (this.rand() < b.errorRate) {
        c.errors++;
        continue;
      }
      const latency = b.latencyMs * (0.5 + 2.5 * this.rand() ** 3);
      const bucket = LATENCY_BUCKETS_MS.findIndex((upper) => latency <= upper);
      c.latencyBucketCounts[bucket === -1 ? LATENCY_BUCKETS_MS.length : bucket]!++;
      c.latencySumMs += latency;
      const positive = this.rand() < b.positiveRate;
      const probability = positive ? 0.5 + this.rand() / 2 : this.rand() / 2;
      c.predictionBinCounts[Math.min(PREDICTION_BINS - 1, Math.floor(probability * PREDICTION_BINS))]!++;
      if (positive) c.positiveCount++;
      c.lastSuccessAt = new Date().toISOString();
    }
  }

  /** Applies an opId once; a repeat answers `applied: false`, like the gateway. */
  private once(opId: string, apply: () => void): { opId: string; applied: boolean } {
    if (this.applied.has(opId)) return { opId, applied: false };
    apply();
    this.applied.add(opId);
    return { opId, applied: true };
  }

  async listen(): Promise<{ app: FastifyInstance; url: string }> {
    const app = Fastify();
    app.addHook('preHandler', async (request, reply) => {
      this.calls.push({
        method: request.method,
        url: request.raw.url ?? '',
        params: request.params as Record<string, string>,
        headers: request.headers,
        body: request.body,
      });
      if (request.headers.authorization !== `Bearer ${TOKEN}`) {
        return reply.code(401).send({ error: 'Unauthorized', message: 'missing or wrong bearer token' });
      }
      if (request.headers['x-tenant'] !== 'ml-team') return reply.code(403).send({ error: 'unknown tenant' });
      if (this.failure) {
        const { status, body } = this.failure;
        this.failure = null;
        return reply.code(status).send(body);
      }
    });
    type Params = { model: string; version?: string };
    const prefix = '/platform/v1/models/:model';

    app.post<{ Params: Params; Body: { opId: string; artifactDir: string } }>(
      `${prefix}/revisions/:version`,
      async (request) => {
        const { model, version } = request.params;
        return this.once(request.body.opId, () => {
          if (!this.revisions.has(model)) {
            this.revisions.set(model, new Set());
            this.counters.set(model, new Map());
          }
          this.revisions.get(model)!.add(version!);
          this.counters.get(model)!.set(version!, zeroCounters(version!));
        });
      },
    );

    app.patch<{ Params: Params; Body: { opId: string; weights: Record<string, number> } }>(
      `${prefix}/traffic`,
      async (request, reply) => {
        const { model } = request.params;
        const { weights, opId } = request.body;
        const deployed = this.revisions.get(model) ?? new Set<string>();
        const missing = Object.keys(weights).filter((v) => !deployed.has(v));
        if (missing.length > 0) {
          return reply.code(422).send({ error: 'Unprocessable', message: `no revision ${missing.join(', ')}` });
        }
        const sum = Object.values(weights).reduce((a, b) => a + b, 0);
        if (Object.keys(weights).length > 0 && sum !== 100) {
          return reply.code(422).send({ error: 'Unprocessable', message: `weights sum to ${sum}, not 100` });
        }
        return this.once(opId, () => this.weights.set(model, weights));
      },
    );

    app.delete<{ Params: Params; Querystring: { opId?: string }; Body: { opId: string } }>(
      `${prefix}/revisions/:version`,
      async (request, reply) => {
        const { model, version } = request.params;
        const weight = this.weights.get(model)?.[version!] ?? 0;
        if (weight > 0)
          return reply.code(409).send({ error: `revision ${version} still serves ${weight}% of traffic` });
        return this.once(request.query.opId ?? request.body.opId, () => {
          this.revisions.get(model)?.delete(version!);
          this.counters.get(model)?.delete(version!);
        });
      },
    );

    app.get<{ Params: Params }>(`${prefix}/telemetry`, async (request, reply) => {
      const { model } = request.params;
      if (this.telemetryOverride) {
        return reply.type(this.telemetryOverride.contentType).send(this.telemetryOverride.body);
      }
      const versions = this.counters.get(model);
      if (!versions) return reply.code(404).send({ error: `model ${model} has no revisions` });
      return { model, at: new Date().toISOString(), versions: Object.fromEntries(structuredClone([...versions])) };
    });

    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    return { app, url };
  }
}

/** The target a lifecycle spec would carry for the platform: paths with placeholders, a secret header from the env. */
function platformTarget(url: string, patch: Partial<z.input<typeof HttpTargetSpec>> = {}) {
  return {
    kind: 'http',
    name: 'acme-serving',
    baseUrl: `${url}/platform/`,
    headers: { authorization: { fromEnv: TOKEN_ENV }, 'x-tenant': 'ml-team' },
    endpoints: {
      deploy: { method: 'POST', path: '/v1/models/{model}/revisions/{version}' },
      setWeights: { method: 'PATCH', path: '/v1/models/{model}/traffic' },
      undeploy: { method: 'DELETE', path: '/v1/models/{model}/revisions/{version}' },
      telemetry: { method: 'GET', path: '/v1/models/{model}/telemetry' },
    },
    ...patch,
  } satisfies DeploymentTargetSpecInput;
}

const noop = () => undefined;
/** Failures below are expected: the SDK's "Activity failed" warnings would only bury the assertions. */
const QUIET = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };

/** Runs an activity in the SDK's activity test environment, typed as the activity is. */
function runIn<I, O>(env: MockActivityEnvironment, activity: (input: I) => Promise<O>, input: I): Promise<O> {
  return env.run(activity, input) as Promise<O>;
}

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await promise.then(
    () => expect.unreachable('the activity should have failed'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('deployment targets: an HTTP target', () => {
  const platform = new Platform();
  const env = new MockActivityEnvironment(undefined, { logger: QUIET });
  const run = <I, O>(activity: (input: I) => Promise<O>, input: I) => runIn(env, activity, input);
  // The worker's own gateway is nowhere: every call below must go to the target.
  const activities = createGatewayActivities({
    gateway: { url: 'http://127.0.0.1:9', token: 'never-sent-to-the-target' },
    pollIntervalMs: 50,
  });
  let app: FastifyInstance;
  let target: ReturnType<typeof platformTarget>;

  beforeAll(async () => {
    process.env[TOKEN_ENV] = `Bearer ${TOKEN}`;
    const started = await platform.listen();
    app = started.app;
    target = platformTarget(started.url);
  });

  afterAll(async () => {
    delete process.env[TOKEN_ENV];
    await app?.close();
  });

  beforeEach(() => platform.reset());

  it('deploys, weighs and undeploys with the configured methods, paths, bodies and headers', async () => {
    const deployed = await run(activities.deployVersion, {
      model: 'churn',
      version: 'v2',
      artifactDir: '/artifacts/churn/v2',
      artifactDigest: DIGEST,
      opId: 'lc-1:deploy',
      target,
    });
    expect(deployed).toEqual({ opId: 'lc-1:deploy', applied: true });
    await run(activities.deployVersion, {
      model: 'churn',
      version: 'v1',
      artifactDir: '/artifacts/churn/v1',
      artifactDigest: DIGEST,
      opId: 'lc-1:deploy-stable',
      target,
    });
    expect(
      await run(activities.setTrafficWeights, {
        model: 'churn',
        weights: { v1: 90, v2: 10 },
        opId: 'lc-1:weights:0',
        target,
      }),
    ).toEqual({ opId: 'lc-1:weights:0', applied: true });
    await run(activities.setTrafficWeights, {
      model: 'churn',
      weights: { v1: 100 },
      opId: 'lc-1:rollback-weights',
      target,
    });
    expect(
      await run(activities.undeployVersion, { model: 'churn', version: 'v2', opId: 'lc-1:undeploy', target }),
    ).toEqual({ opId: 'lc-1:undeploy', applied: true });

    expect(platform.calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      'POST /platform/v1/models/churn/revisions/v2',
      'POST /platform/v1/models/churn/revisions/v1',
      'PATCH /platform/v1/models/churn/traffic',
      'PATCH /platform/v1/models/churn/traffic',
      'DELETE /platform/v1/models/churn/revisions/v2?opId=lc-1%3Aundeploy',
    ]);
    expect(platform.calls.map((c) => c.body)).toEqual([
      {
        model: 'churn',
        version: 'v2',
        artifactDir: '/artifacts/churn/v2',
        artifactDigest: DIGEST,
        opId: 'lc-1:deploy',
      },
      {
        model: 'churn',
        version: 'v1',
        artifactDir: '/artifacts/churn/v1',
        artifactDigest: DIGEST,
        opId: 'lc-1:deploy-stable',
      },
      { model: 'churn', weights: { v1: 90, v2: 10 }, opId: 'lc-1:weights:0' },
      { model: 'churn', weights: { v1: 100 }, opId: 'lc-1:rollback-weights' },
      { model: 'churn', version: 'v2', opId: 'lc-1:undeploy' },
    ]);
    for (const call of platform.calls) {
      expect(call.headers).toMatchObject({
        authorization: `Bearer ${TOKEN}`,
        'x-tenant': 'ml-team',
        'content-type': 'application/json',
        accept: 'application/json',
      });
    }
    expect(platform.weights.get('churn')).toEqual({ v1: 100 });
    expect([...platform.revisions.get('churn')!]).toEqual(['v1']);

    // A retried activity sends the same opId; the platform's own answer (not applied again) comes back.
    expect(
      await run(activities.setTrafficWeights, {
        model: 'churn',
        weights: { v1: 100 },
        opId: 'lc-1:rollback-weights',
        target,
      }),
    ).toEqual({ opId: 'lc-1:rollback-weights', applied: false });
  });

  it('fills placeholders URL-encoded, one path segment each', async () => {
    const version = 'rc 1/ü?#';
    await run(activities.deployVersion, {
      model: 'fraud',
      version,
      artifactDir: '/a',
      artifactDigest: DIGEST,
      opId: 'op:1',
      target,
    });
    await run(activities.undeployVersion, { model: 'fraud', version, opId: 'op:2&x=1', target });
    expect(platform.calls.map((c) => c.url)).toEqual([
      '/platform/v1/models/fraud/revisions/rc%201%2F%C3%BC%3F%23',
      '/platform/v1/models/fraud/revisions/rc%201%2F%C3%BC%3F%23?opId=op%3A2%26x%3D1',
    ]);
    expect(platform.calls.map((c) => c.params.version)).toEqual([version, version]);
    expect(platform.revisions.get('fraud')?.size).toBe(0);
  });

  it("refuses without retry on a 4xx, with the receiver's message; retries a 5xx, a 429 and a dead receiver", async () => {
    const refused = await failureOf(
      run(activities.setTrafficWeights, {
        model: 'churn',
        weights: { v1: 60, v2: 30 },
        opId: 'lc-2:weights:0',
        target,
      }),
    );
    expect(refused).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(refused.message).toBe(
      'http target acme-serving PATCH /v1/models/churn/traffic → 422: Unprocessable: no revision v2',
    );

    platform.failNext(409, { error: 'revision v1 is locked by a running rollout' });
    const conflict = await failureOf(
      run(activities.undeployVersion, { model: 'churn', version: 'v1', opId: 'lc-2:undeploy', target }),
    );
    expect(conflict).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(conflict.message).toMatch(/→ 409: revision v1 is locked by a running rollout$/);

    platform.failNext(503, { error: 'upstream connect error' });
    const unavailable = await failureOf(
      run(activities.deployVersion, {
        model: 'churn',
        version: 'v3',
        artifactDir: '/a',
        artifactDigest: DIGEST,
        opId: 'lc-2:d',
        target,
      }),
    );
    expect(unavailable).toMatchObject({ type: ErrorType.GatewayUnavailable, nonRetryable: false });
    expect(unavailable.message).toMatch(/POST \/v1\/models\/churn\/revisions\/v3 → 503: upstream connect error$/);

    platform.failNext(429, 'slow down');
    const throttled = await failureOf(run(activities.readTelemetry, { model: 'churn', target }));
    expect(throttled).toMatchObject({ type: ErrorType.GatewayUnavailable, nonRetryable: false });

    const dead = await failureOf(
      run(activities.readTelemetry, {
        model: 'churn',
        target: { ...target, baseUrl: 'http://127.0.0.1:9/platform' },
      }),
    );
    expect(dead).toMatchObject({ type: ErrorType.GatewayUnavailable, nonRetryable: false });
    expect(dead.message).toMatch(/^http target acme-serving http:\/\/127\.0\.0\.1:9\/platform unreachable for GET/);

    // A wrong token is the receiver's 401: a refusal, not something a retry fixes.
    process.env[TOKEN_ENV] = 'Bearer wrong';
    try {
      const unauthorized = await failureOf(run(activities.readTelemetry, { model: 'churn', target }));
      expect(unauthorized).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
      expect(unauthorized.message).toMatch(/→ 401: Unauthorized: missing or wrong bearer token$/);
    } finally {
      process.env[TOKEN_ENV] = `Bearer ${TOKEN}`;
    }
  });

  it('fails without retry, naming the variable, when a header secret is missing from the environment', async () => {
    const spec = platformTarget(target.baseUrl.replace(/\/platform\/$/, ''), {
      headers: { authorization: { fromEnv: 'MLL_TEST_UNSET_TOKEN' }, 'x-tenant': 'ml-team' },
    });
    const failure = await failureOf(
      run(activities.deployVersion, {
        model: 'churn',
        version: 'v9',
        artifactDir: '/a',
        artifactDigest: DIGEST,
        opId: 'x',
        target: spec,
      }),
    );
    expect(failure).toMatchObject({ type: ErrorType.InvalidSpec, nonRetryable: true });
    expect(failure.message).toBe(
      'http target acme-serving: environment variable MLL_TEST_UNSET_TOKEN (header authorization) is not set on the worker',
    );
    expect(platform.calls).toEqual([]);
  });

  it('rejects unknown placeholders and GET mutations in the spec, naming the path', async () => {
    const bad = platformTarget('http://platform.internal', {
      endpoints: {
        ...platformTarget('http://x').endpoints,
        deploy: { method: 'GET', path: '/v1/{model}/{revision}' },
        telemetry: { method: 'GET', path: '/v1/{model}/{version}/stats' },
      },
    });
    const parsed = DeploymentTargetSpec.safeParse(bad);
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      [
        'endpoints.deploy.path',
        'unknown placeholder {revision} in path "/v1/{model}/{revision}": this endpoint fills {model}, {version}',
      ],
      ['endpoints.deploy.method', 'deploy sends a JSON body: use POST, PUT, PATCH or DELETE, not GET'],
      [
        'endpoints.telemetry.path',
        'unknown placeholder {version} in path "/v1/{model}/{version}/stats": this endpoint fills {model}',
      ],
    ]);
    // Strict: a misspelt field is an error, not silently ignored.
    expect(DeploymentTargetSpec.safeParse({ ...target, timeout: 5000 }).success).toBe(false);
    expect(DeploymentTargetSpec.parse(target)).toMatchObject({ timeoutMs: 30_000 });

    const failure = await failureOf(run(activities.readTelemetry, { model: 'churn', target: bad }));
    expect(failure).toMatchObject({ type: ErrorType.InvalidSpec, nonRetryable: true });
    expect(failure.message).toMatch(/^invalid deployment target:\n/);
    expect(failure.message).toContain('"/v1/{model}/{revision}"');
    expect(failure.message).toContain('→ at endpoints.telemetry.path');
    expect(platform.calls).toEqual([]);
  });

  it('judges a stage from the target telemetry: realistic counters in, decisions out', async () => {
    const model = 'churn-analysis';
    for (const [version, opId] of [
      ['v1', 'a:deploy-stable'],
      ['v2', 'a:deploy'],
    ] as const) {
      await run(activities.deployVersion, { model, version, artifactDir: '/a', artifactDigest: DIGEST, opId, target });
    }
    await run(activities.setTrafficWeights, { model, weights: { v1: 100 }, opId: 'a:w0', target });
    platform.serve(model, 500);
    const before = await run(activities.readTelemetry, { model, target });
    expect(before.versions.v1).toMatchObject({ version: 'v1', requests: 500 });
    expect(before.versions.v2).toMatchObject({ requests: 0 });

    await run(activities.setTrafficWeights, { model, weights: { v1: 80, v2: 20 }, opId: 'a:w1', target });
    platform.behaviour.set('v2', { errorRate: 0.002, latencyMs: 25, positiveRate: 0.21 });
    platform.serve(model, 2000);
    const input: AnalyzeStageInput = {
      model,
      candidate: 'v2',
      stable: 'v1',
      before,
      rules: AnalysisSpec.parse({ minSamples: 100, maxWaitForSamples: 2000 }),
      stage: 'canary',
      target,
    };
    const healthy = await run(activities.analyzeStage, input);
    const outcome = (check: string) => healthy.decisions.find((d) => d.check === check)?.outcome;
    expect(outcome('errorRate')).toBe('pass');
    expect(outcome('latencyP99Ms')).toBe('pass');
    expect(outcome('predictionDrift')).toBe('pass');
    const errorRate = healthy.decisions.find((d) => d.check === 'errorRate')!;
    expect(errorRate.sampleSize).toBeGreaterThan(300);
    expect(errorRate.sampleSize).toBeLessThan(500);

    // The candidate starts failing one request in five: the same telemetry path fails the stage.
    const broken = await run(activities.readTelemetry, { model, target });
    platform.behaviour.set('v2', { errorRate: 0.2, latencyMs: 25, positiveRate: 0.21 });
    platform.serve(model, 2000);
    const failing = await run(activities.analyzeStage, { ...input, before: broken });
    expect(failing.outcome).toBe('fail');
    expect(failing.decisions.find((d) => d.check === 'errorRate')).toMatchObject({ outcome: 'fail' });
    expect(platform.calls.filter((c) => c.url.endsWith('/telemetry')).length).toBeGreaterThanOrEqual(4);
  });

  it('fails without retry, naming what is wrong, when the telemetry answer is not ModelTelemetry', async () => {
    const v1 = { ...zeroCounters('v1'), requests: '120', latencyBucketCounts: [3, 4, 5] };
    const { predictionBinCounts: _, ...v2 } = zeroCounters('v2');
    platform.telemetryOverride = {
      contentType: 'application/json',
      body: JSON.stringify({ model: 'churn', at: new Date().toISOString(), versions: { v1, v2 } }),
    };
    const malformed = await failureOf(run(activities.readTelemetry, { model: 'churn', target }));
    expect(malformed).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(malformed.message).toMatch(
      /^http target acme-serving GET \/v1\/models\/churn\/telemetry: the telemetry answer is not ModelTelemetry:\n/,
    );
    expect(malformed.message).toContain('expected number, received string\n  → at versions.v1.requests');
    expect(malformed.message).toContain('expected 13 latency buckets');
    expect(malformed.message).toContain('→ at versions.v1.latencyBucketCounts');
    expect(malformed.message).toContain('→ at versions.v2.predictionBinCounts');

    platform.telemetryOverride = {
      contentType: 'application/json',
      body: JSON.stringify({ model: 'other', at: new Date().toISOString(), versions: {} }),
    };
    const otherModel = await failureOf(run(activities.readTelemetry, { model: 'churn', target }));
    expect(otherModel.message).toMatch(/the telemetry answer is for model "other", not "churn"$/);

    platform.telemetryOverride = { contentType: 'text/html', body: '<html>maintenance</html>' };
    const html = await failureOf(run(activities.readTelemetry, { model: 'churn', target }));
    expect(html).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(html.message).toMatch(/the telemetry answer is empty or not JSON/);
  });

  it('refuses, without retry and naming the size, telemetry too large for workflow history', async () => {
    // Valid ModelTelemetry, but its input sketch names 10,000 keys: more than history can carry per snapshot.
    const v1 = {
      ...zeroCounters('v1'),
      inputs: {
        rows: 1,
        unknownKeys: Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`key-${i}`.padEnd(60, 'k'), 1])),
        features: {},
      },
    };
    platform.telemetryOverride = {
      contentType: 'application/json',
      body: JSON.stringify({ model: 'churn', at: new Date().toISOString(), versions: { v1 } }),
    };
    const large = await failureOf(run(activities.readTelemetry, { model: 'churn', target }));
    expect(large).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(large.message).toMatch(
      new RegExp(`the telemetry answer is \\d+ bytes of JSON, more than ${MAX_TELEMETRY_BYTES} can be carried`),
    );

    // Malformed in thousands of places: the failure names the first problems only.
    const broken = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`v${i}`, { version: `v${i}` }]));
    platform.telemetryOverride = {
      contentType: 'application/json',
      body: JSON.stringify({ model: 'churn', at: new Date().toISOString(), versions: broken }),
    };
    const malformed = await failureOf(run(activities.readTelemetry, { model: 'churn', target }));
    expect(malformed.message).toMatch(/\(and \d+ more problems\)$/);
    expect(malformed.message.length).toBeLessThan(5000);

    // An answer larger than any a target needs is not even read whole.
    platform.telemetryOverride = { contentType: 'application/json', body: `"${'x'.repeat(MAX_ANSWER_BYTES)}"` };
    const huge = await failureOf(run(activities.readTelemetry, { model: 'churn', target }));
    expect(huge).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(huge.message).toMatch(new RegExp(`the answer is larger than ${MAX_ANSWER_BYTES} bytes$`));

    // A refusal quotes at most 2,000 characters of what the target said.
    platform.failNext(400, { error: 'e'.repeat(1_000_000) });
    const refused = await failureOf(run(activities.readTelemetry, { model: 'churn', target }));
    expect(refused.message.length).toBeLessThan(2200);
  });
});

describe('deployment targets: the default gateway target', () => {
  const env = new MockActivityEnvironment(undefined, { logger: QUIET });
  const run = <I, O>(activity: (input: I) => Promise<O>, input: I) => runIn(env, activity, input);
  let gateway: Gateway;
  let workDir: string;
  let artifactDir: string;
  let digest: string;
  let features: Record<string, number | string>[];

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'mll-targets-'));
    artifactDir = join(workDir, 'v1');
    const data = join(EXAMPLE, 'data');
    await promisify(execFile)(
      trainerPython(),
      [join(EXAMPLE, 'train.py'), '--data-dir', data, '--out', artifactDir, '--params', '{"nEstimators": 20}'],
      { cwd: ROOT },
    );
    const [header, ...lines] = (await readFile(join(data, 'test.csv'), 'utf8')).trim().split('\n');
    const columns = header!.split(',');
    features = lines.slice(0, 30).map((line) => {
      const cells = line.split(',');
      const row: Record<string, number | string> = {};
      for (const name of ['age', 'tenure_months', 'monthly_charges', 'support_calls', 'plan', 'region']) {
        const cell = cells[columns.indexOf(name)]!;
        row[name] = ['plan', 'region'].includes(name) ? cell : Number(cell);
      }
      return row;
    });
    digest = await artifactDigest(artifactDir);
    gateway = await startGateway({ artifactRoot: workDir });
  });

  afterAll(async () => {
    await gateway?.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('reaches the worker gateway when the input has no target, exactly as before targets', async () => {
    const activities = createGatewayActivities({ gateway: gateway.access });
    const model = uniqueName('targets');
    const deploy = { model, version: 'v1', artifactDir, artifactDigest: digest, opId: `${model}:deploy` };
    expect(await run(activities.deployVersion, deploy)).toEqual({ opId: `${model}:deploy`, applied: true });
    await run(activities.setTrafficWeights, { model, weights: { v1: 100 }, opId: `${model}:weights` });
    for (const [i, row] of features.entries()) {
      const res = await fetch(`${gateway.url}/v1/models/${model}/predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ userId: `u${i}`, features: row }),
      });
      expect(res.status).toBe(200);
    }
    const telemetry = await run(activities.readTelemetry, { model });
    expect(telemetry.model).toBe(model);
    expect(telemetry.versions.v1).toMatchObject({ version: 'v1', requests: features.length, errors: 0 });

    // Still the gateway's rules: a version with traffic cannot go (409, non-retryable, the gateway's message).
    const refused = await failureOf(run(activities.undeployVersion, { model, version: 'v1', opId: `${model}:u` }));
    expect(refused).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(refused.message).toMatch(/^gateway DELETE \/admin\/models\/[^ ]+\/versions\/v1\?opId=[^ ]+ → 409: /);

    await run(activities.setTrafficWeights, { model, weights: {}, opId: `${model}:weights-off` });
    await run(activities.undeployVersion, { model, version: 'v1', opId: `${model}:undeploy` });
    const ops = AdminOp.array().parse(await (await gateway.admin(`/admin/ops?model=${model}`)).json());
    expect(ops.map((o) => [o.kind, o.opId])).toEqual([
      ['deploy', `${model}:deploy`],
      ['set-weights', `${model}:weights`],
      ['set-weights', `${model}:weights-off`],
      ['undeploy', `${model}:undeploy`],
    ]);
  });

  it("reaches another gateway's admin URL given as { kind: 'gateway', url }, and retries while it is down", async () => {
    // The worker's own gateway is nowhere; the other one shares the platform's admin token, which the worker sends.
    const activities = createGatewayActivities({ gateway: { url: 'http://127.0.0.1:9', token: gateway.adminToken } });
    const model = uniqueName('targets');
    const target = { kind: 'gateway', url: gateway.adminUrl } as const;
    await run(activities.deployVersion, {
      model,
      version: 'v1',
      artifactDir,
      artifactDigest: digest,
      opId: `${model}:deploy`,
      target,
    });
    const telemetry = await run(activities.readTelemetry, { model, target });
    expect(telemetry.versions.v1).toMatchObject({ requests: 0 });

    const down = await failureOf(run(activities.readTelemetry, { model }));
    expect(down).toMatchObject({ type: ErrorType.GatewayUnavailable, nonRetryable: false });
    expect(down.message).toMatch(/^gateway http:\/\/127\.0\.0\.1:9 unreachable for GET \/admin\/models\//);
  });

  it('is refused without retry with a wrong admin token, at the public URL, and with a digest that does not match', async () => {
    const model = uniqueName('targets');
    const deploy = { model, version: 'v1', artifactDir, artifactDigest: digest, opId: `${model}:deploy` };
    const wrong = createGatewayActivities({ gateway: { url: gateway.adminUrl, token: 'not-the-gateway-token-0' } });
    const unauthorized = await failureOf(run(wrong.deployVersion, deploy));
    expect(unauthorized).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(unauthorized.message).toMatch(/→ 401: admin API: missing or wrong bearer token/);

    // The admin API does not exist on the public listener.
    const publicUrl = createGatewayActivities({ gateway: { url: gateway.url, token: gateway.adminToken } });
    const notThere = await failureOf(run(publicUrl.deployVersion, deploy));
    expect(notThere).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(notThere.message).toMatch(/→ 404: no route PUT \/admin\/models\//);

    const activities = createGatewayActivities({ gateway: gateway.access });
    const tampered = await failureOf(
      run(activities.deployVersion, { ...deploy, artifactDigest: `sha256:${'0'.repeat(64)}` }),
    );
    expect(tampered).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(tampered.message).toMatch(
      /→ 422: artifact for model '[^']+' version 'v1' cannot be loaded: artifact digest does not match the digest recorded at training$/,
    );
    const ops = AdminOp.array().parse(await (await gateway.admin(`/admin/ops?model=${model}`)).json());
    expect(ops).toEqual([]);
  });
});
