import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { gatewayAdminUrls } from '../../src/config/env';
import { windowOf } from '../../src/domain/guardrails';
import { modelShadowWindowOf, modelWindowOf, sumSketches } from '../../src/domain/replica-telemetry';
import { DataSketcher } from '../../src/drift/sketch';
import type { SketchPlan } from '../../src/shared/drift';
import { ErrorType } from '../../src/shared/errors';
import type { AdminResult } from '../../src/shared/gateway-api';
import { own } from '../../src/shared/own';
import {
  LATENCY_BUCKETS_MS,
  MAX_TELEMETRY_BYTES,
  PREDICTION_BINS,
  type ModelTelemetry,
  type ShadowTelemetry,
  type VersionTelemetry,
} from '../../src/shared/telemetry';
import { ReplicatedGatewayTarget } from '../../src/targets/replicas';
import type { DeploymentTarget } from '../../src/targets/contract';
import { resolveTarget } from '../../src/targets/target';

const A = 'http://10.0.0.1:8701';
const B = 'http://10.0.0.2:8701';

/** Counters of one version: `requests` rows, all successful, one latency bucket and one prediction bin each. */
function counters(version: string, epoch: string, requests: number, extra: Partial<VersionTelemetry> = {}) {
  const latency = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
  latency[2] = requests;
  const bins = new Array<number>(PREDICTION_BINS).fill(0);
  bins[3] = requests;
  return {
    version,
    epoch,
    requests,
    errors: 0,
    invalidRequests: 0,
    latencyBucketCounts: latency,
    latencySumMs: 3 * requests,
    predictionBinCounts: bins,
    positiveCount: Math.floor(requests / 2),
    ...extra,
  } satisfies VersionTelemetry;
}

const snapshot = (versions: VersionTelemetry[], extra: Partial<ModelTelemetry> = {}): ModelTelemetry => ({
  model: 'churn',
  at: '2025-01-01T00:00:00.000Z',
  versions: Object.fromEntries(versions.map((v) => [v.version, v])),
  ...extra,
});

/** A replica whose answers the test sets; every mutation recorded. */
class FakeReplica implements DeploymentTarget {
  readonly label = 'gateway';
  telemetry: ModelTelemetry | Error = snapshot([]);
  weights: Record<string, number> | Error = {};
  mutation: AdminResult | Error | null = null;
  readonly calls: string[] = [];

  private answer(kind: string, opId: string): Promise<AdminResult> {
    this.calls.push(`${kind}:${opId}`);
    if (this.mutation instanceof Error) return Promise.reject(this.mutation);
    return Promise.resolve(this.mutation ?? { opId, applied: true });
  }
  deploy(i: { opId: string }) {
    return this.answer('deploy', i.opId);
  }
  setWeights(i: { opId: string }) {
    return this.answer('weights', i.opId);
  }
  setRoutes(i: { opId: string }) {
    return this.answer('routes', i.opId);
  }
  undeploy(i: { opId: string }) {
    return this.answer('undeploy', i.opId);
  }
  readTelemetry() {
    return this.telemetry instanceof Error ? Promise.reject(this.telemetry) : Promise.resolve(this.telemetry);
  }
  readWeights() {
    return this.weights instanceof Error ? Promise.reject(this.weights) : Promise.resolve(this.weights);
  }
}

const unavailable = (url: string) =>
  ApplicationFailure.create({ type: ErrorType.GatewayUnavailable, message: `gateway ${url} unreachable` });
const refused = (message: string) =>
  ApplicationFailure.create({ type: ErrorType.GatewayRefused, message, nonRetryable: true });

function pair() {
  const a = new FakeReplica();
  const b = new FakeReplica();
  const target = new ReplicatedGatewayTarget([
    { url: A, target: a },
    { url: B, target: b },
  ]);
  return { a, b, target };
}

async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('GATEWAY_ADMIN_URL with replicas', () => {
  it('takes one URL as a single gateway and a comma-separated list as replicas', () => {
    expect(gatewayAdminUrls('http://127.0.0.1:8701/')).toEqual({ url: 'http://127.0.0.1:8701' });
    expect(gatewayAdminUrls(` ${A}/ , ${B} `)).toEqual({ url: A, replicas: [A, B] });
  });

  it('names the variable and every bad entry in one line', () => {
    expect(() => gatewayAdminUrls(`${A},ftp://x,${B},,${A.toUpperCase()}/`)).toThrow(
      /^invalid environment: GATEWAY_ADMIN_URL: entry 2 "ftp:\/\/x" is not an http:\/\/ or https:\/\/ URL; entry 4 "" is not an http:\/\/ or https:\/\/ URL; entry 5 "HTTP:\/\/10\.0\.0\.1:8701\/" names a replica already listed$/,
    );
  });

  it('makes the worker gateway replicated, and a spec naming one gateway URL a single one', () => {
    const gateway = { url: A, replicas: [A, B], token: 't' };
    expect(resolveTarget(undefined, { gateway })).toBeInstanceOf(ReplicatedGatewayTarget);
    expect(resolveTarget({ kind: 'gateway' }, { gateway })).toBeInstanceOf(ReplicatedGatewayTarget);
    expect(resolveTarget({ kind: 'gateway', url: B }, { gateway })).not.toBeInstanceOf(ReplicatedGatewayTarget);
    expect(resolveTarget(undefined, { gateway: { url: A, token: 't' } })).not.toBeInstanceOf(ReplicatedGatewayTarget);
  });
});

describe('a replicated gateway target', () => {
  it('sends every mutation to every replica with the same opId, and succeeds when all confirm', async () => {
    const { a, b, target } = pair();
    b.mutation = { opId: 'op-1', applied: false };
    expect(await target.setWeights({ model: 'churn', weights: { v1: 100 }, opId: 'op-1' })).toEqual({
      opId: 'op-1',
      applied: true,
    });
    await target.deploy({ model: 'churn', version: 'v2', artifactDir: '/a', artifactDigest: 'd', opId: 'op-2' });
    await target.setRoutes({ model: 'churn', pins: [], opId: 'op-3' });
    await target.undeploy({ model: 'churn', version: 'v2', opId: 'op-4' });
    const want = ['weights:op-1', 'deploy:op-2', 'routes:op-3', 'undeploy:op-4'];
    expect(a.calls).toEqual(want);
    expect(b.calls).toEqual(want);
  });

  it('fails retryably, naming the replica, when one does not answer; a retry with the same opId completes', async () => {
    const { a, b, target } = pair();
    b.mutation = unavailable(B);
    const failure = await failureOf(target.setWeights({ model: 'churn', weights: { v2: 50, v1: 50 }, opId: 'op-9' }));
    expect(failure.type).toBe(ErrorType.GatewayUnavailable);
    expect(failure.nonRetryable).toBe(false);
    expect(failure.message).toContain(`replica ${B} did not answer (1 of 2 did)`);
    expect(failure.message).not.toContain(A);
    b.mutation = null;
    a.mutation = { opId: 'op-9', applied: false }; // applied on the first attempt already
    expect(await target.setWeights({ model: 'churn', weights: { v2: 50, v1: 50 }, opId: 'op-9' })).toEqual({
      opId: 'op-9',
      applied: true,
    });
    expect(b.calls).toEqual(['weights:op-9', 'weights:op-9']);
  });

  it('keeps a refusal by any replica non-retryable, naming the replica, even when another is down', async () => {
    const { a, b, target } = pair();
    a.mutation = unavailable(A);
    b.mutation = refused('gateway PUT /admin/models/churn/weights → 400: version v3 is not deployed');
    const failure = await failureOf(target.setWeights({ model: 'churn', weights: { v3: 100 }, opId: 'op-5' }));
    expect(failure.type).toBe(ErrorType.GatewayRefused);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain(`refused by replica ${B} (gateway PUT`);
  });

  it('answers the weight table only when every replica routes by the same one', async () => {
    const { a, b, target } = pair();
    a.weights = { v1: 50, v2: 50 };
    b.weights = { v2: 50, v1: 50, v3: 0 };
    expect(await target.readWeights('churn')).toEqual({ v1: 50, v2: 50 });
    b.weights = { v1: 90, v2: 10 };
    const failure = await failureOf(target.readWeights('churn'));
    expect(failure.type).toBe(ErrorType.GatewayUnavailable);
    expect(failure.message).toMatch(/disagree.*10\.0\.0\.1.*"v2",50.*10\.0\.0\.2.*"v2",10/);
    b.weights = unavailable(B);
    expect((await failureOf(target.readWeights('churn'))).message).toContain(`replica ${B} did not answer`);
  });

  it('fails a telemetry read retryably when one replica cannot be read: never a smaller sum', async () => {
    const { a, b, target } = pair();
    a.telemetry = snapshot([counters('v1', 'boot-a/1', 100)]);
    b.telemetry = unavailable(B);
    const failure = await failureOf(target.readTelemetry('churn'));
    expect(failure.type).toBe(ErrorType.GatewayUnavailable);
    expect(failure.message).toContain(B);
  });
});

describe('telemetry of replicas: sums and windows', () => {
  it('sums the replicas and keeps each one, with an epoch that changes when any replica restarts', async () => {
    const { a, b, target } = pair();
    a.telemetry = snapshot([counters('v1', 'boot-a/1', 100), counters('v2', 'boot-a/2', 10)], {
      at: '2025-01-01T00:00:02.000Z',
    });
    b.telemetry = snapshot([counters('v1', 'boot-b/1', 80)], { at: '2025-01-01T00:00:01.000Z' });
    const t1 = await target.readTelemetry('churn');
    expect(t1.at).toBe('2025-01-01T00:00:01.000Z');
    expect(t1.versions.v1?.requests).toBe(180);
    expect(t1.versions.v1?.latencyBucketCounts[2]).toBe(180);
    expect(t1.versions.v1?.positiveCount).toBe(90);
    expect(t1.versions.v2?.requests).toBe(10);
    expect(Object.keys(t1.replicas ?? {})).toEqual([A, B]);
    expect(own(t1.replicas, B)?.versions.v1?.requests).toBe(80);

    const again = await target.readTelemetry('churn');
    expect(again.versions.v1?.epoch).toBe(t1.versions.v1?.epoch);
    b.telemetry = snapshot([counters('v1', 'boot-b2/1', 5)]);
    const restarted = await target.readTelemetry('churn');
    expect(restarted.versions.v1?.epoch).not.toBe(t1.versions.v1?.epoch);
    // v2 is on A alone: B's restart did not restart its counters.
    expect(restarted.versions.v2?.epoch).toBe(t1.versions.v2?.epoch);
  });

  it('differences replica by replica across one replica restart, then sums', async () => {
    const { a, b, target } = pair();
    a.telemetry = snapshot([counters('v1', 'boot-a/1', 1000), counters('v2', 'boot-a/2', 100)]);
    b.telemetry = snapshot([counters('v1', 'boot-b/1', 900), counters('v2', 'boot-b/2', 90)]);
    const before = await target.readTelemetry('churn');
    // A served 200 more of v1 and 40 of v2; B restarted (its counters from zero) and served 30 and 7 since.
    a.telemetry = snapshot([counters('v1', 'boot-a/1', 1200), counters('v2', 'boot-a/2', 140)]);
    b.telemetry = snapshot([counters('v1', 'boot-b2/1', 30), counters('v2', 'boot-b2/2', 7)]);
    const after = await target.readTelemetry('churn');

    const v2 = modelWindowOf(after, before, (t) => own(t.versions, 'v2'));
    expect(v2.requests).toBe(40 + 7);
    expect(v2.successes).toBe(47);
    expect(v2.predictionBinCounts[3]).toBe(47);
    expect(modelWindowOf(after, before, (t) => own(t.versions, 'v1')).requests).toBe(230);
    // Differencing the sums would be wrong either way: 1,230 − 1,900 is negative; the sums' epochs changed, so a
    // reader of the sums alone takes the later one whole (1,230): too much, never a subtraction across the restart.
    expect(windowOf(after.versions.v1, before.versions.v1).requests).toBe(1230);
    // A snapshot that is not a replicated one is differenced as before.
    const single = snapshot([counters('v1', 'e', 50)]);
    expect(modelWindowOf(single, snapshot([counters('v1', 'e', 20)]), (t) => own(t.versions, 'v1')).requests).toBe(30);
  });

  it('counts a replica missing from the earlier snapshot whole', async () => {
    const { a, b, target } = pair();
    a.telemetry = snapshot([counters('v1', 'boot-a/1', 100)]);
    b.telemetry = snapshot([counters('v1', 'boot-b/1', 50)]);
    const after = await target.readTelemetry('churn');
    const before: ModelTelemetry = { ...after, replicas: { [A]: { ...own(after.replicas, A)! } } };
    a.telemetry = snapshot([counters('v1', 'boot-a/1', 100)]);
    expect(modelWindowOf(after, before, (t) => own(t.versions, 'v1')).requests).toBe(50);
  });

  it('differences shadow comparisons replica by replica', async () => {
    const { a, b, target } = pair();
    const shadow = (epoch: string, compared: number): ShadowTelemetry => ({
      candidate: counters('v2', `${epoch}/shadow`, compared),
      primary: counters('v1', `${epoch}/primary`, compared),
      compared,
      agreed: compared - 1,
      scoreDiffSum: compared / 10,
      dropped: 0,
    });
    a.telemetry = snapshot([], { shadow: { v2: shadow('a', 100) } });
    b.telemetry = snapshot([], { shadow: { v2: shadow('b', 100) } });
    const before = await target.readTelemetry('churn');
    a.telemetry = snapshot([], { shadow: { v2: shadow('a', 150) } });
    b.telemetry = snapshot([], { shadow: { v2: shadow('b2', 20) } });
    const after = await target.readTelemetry('churn');
    expect(after.shadow?.v2?.compared).toBe(170);
    const w = modelShadowWindowOf(after, before, 'v2');
    expect(w.compared).toBe(50 + 20);
    expect(w.agreed).toBe(50 + 19);
    expect(modelWindowOf(after, before, (t) => own(t.shadow, 'v2')?.candidate).requests).toBe(70);
  });

  it('adds input sketches as one sketcher fed all the rows would have counted them, and windows of them too', () => {
    const plan: SketchPlan = {
      features: [
        { name: 'tenure', type: 'numeric', edges: [10, 20], min: 0, max: 100 },
        { name: 'plan', type: 'categorical', domain: ['basic', 'pro'], hasOther: false },
      ],
    };
    const rows = Array.from({ length: 60 }, (_, i) => ({
      tenure: i % 7 === 0 ? Number.NaN : i * 2 - 5,
      plan: i % 5 === 0 ? `new-${i % 3}` : i % 2 ? 'basic' : 'pro',
      ...(i % 11 === 0 ? { extra: 1 } : {}),
    }));
    const all = new DataSketcher(plan);
    const a = new DataSketcher(plan);
    const b = new DataSketcher(plan);
    rows.forEach((r, i) => {
      all.record(r);
      (i % 3 === 0 ? a : b).record(r);
    });
    expect(sumSketches([a.snapshot(), b.snapshot()])).toEqual(all.snapshot());
  });

  it('refuses hostile replica answers: counters past 2^53, another task, other features; odd version names are fine', async () => {
    const { a, b, target } = pair();
    const huge = Number.MAX_SAFE_INTEGER - 1;
    a.telemetry = snapshot([counters('v1', 'a', huge)]);
    b.telemetry = snapshot([counters('v1', 'b', huge)]);
    let failure = await failureOf(target.readTelemetry('churn'));
    expect(failure.type).toBe(ErrorType.GatewayRefused);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toMatch(/do not add up: version "v1" requests: the sum .* is past 2\^53/);

    a.telemetry = snapshot([counters('v1', 'a', 10, { task: 'regression' })]);
    b.telemetry = snapshot([counters('v1', 'b', 10, { task: 'binary-classification' })]);
    failure = await failureOf(target.readTelemetry('churn'));
    expect(failure.message).toMatch(/version "v1": predicts regression on one, binary-classification on another/);

    const sketch = (feature: string) => ({ rows: 1, unknownKeys: {}, features: { [feature]: numericFeature() } });
    a.telemetry = snapshot([counters('v1', 'a', 10, { inputs: sketch('x') })]);
    b.telemetry = snapshot([counters('v1', 'b', 10, { inputs: sketch('y') })]);
    failure = await failureOf(target.readTelemetry('churn'));
    expect(failure.message).toMatch(/different features/);

    // Names that are members of every object are versions like any other; `replicas` a replica sends is not taken.
    a.telemetry = {
      ...snapshot([counters('__proto__', 'a', 3), counters('constructor', 'a', 4)]),
      replicas: { forged: snapshot([counters('v1', 'x', 1_000_000)]) },
    };
    b.telemetry = snapshot([counters('constructor', 'b', 5)]);
    const t = await target.readTelemetry('churn');
    expect(own(t.versions, '__proto__')?.requests).toBe(3);
    expect(own(t.versions, 'constructor')?.requests).toBe(9);
    expect(Object.keys(t.replicas ?? {})).toEqual([A, B]);
    expect(Object.getPrototypeOf(t.versions)).toBe(Object.prototype);
  });

  it('stays within MAX_TELEMETRY_BYTES: drops the sum’s input sketches first, then refuses', async () => {
    const { a, b, target } = pair();
    const names = (n: number, prefix: string) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`.padEnd(60, 'x'), 1]));
    const bigSketch = (prefix: string) => ({
      rows: 1,
      unknownKeys: names(50, prefix),
      unknownKeysOther: 0,
      features: Object.fromEntries(
        Array.from({ length: 40 }, (_, f) => [
          `f${f}`,
          {
            type: 'categorical' as const,
            rows: 1,
            missing: 0,
            wrongType: 0,
            counts: [1, 0],
            unseen: names(2, `${prefix}${f}`),
            unseenOther: 0,
          },
        ]),
      ),
    });
    const versions = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => counters(`v${i}`, prefix, 10, { inputs: bigSketch(prefix) }));
    a.telemetry = snapshot(versions('a', 14));
    b.telemetry = snapshot(versions('b', 14));
    const t = await target.readTelemetry('churn');
    expect(Buffer.byteLength(JSON.stringify(t))).toBeLessThanOrEqual(MAX_TELEMETRY_BYTES);
    expect(t.versions.v0?.inputs).toBeUndefined();
    expect(own(t.replicas, A)?.versions.v0?.inputs).toBeDefined();

    a.telemetry = snapshot(versions('a', 21));
    b.telemetry = snapshot(versions('b', 21));
    const failure = await failureOf(target.readTelemetry('churn'));
    expect(failure.type).toBe(ErrorType.GatewayRefused);
    expect(failure.message).toMatch(/bytes of JSON, more than 524288/);
  });
});

function numericFeature() {
  return {
    type: 'numeric' as const,
    rows: 1,
    missing: 0,
    wrongType: 0,
    nan: 0,
    posInf: 0,
    negInf: 0,
    counts: [1],
    belowMin: 0,
    aboveMax: 0,
    sum: 1,
  };
}
