import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApproverKey, operationClaim, signOperation } from '../../src/client/approval-signing';
import { createCallbackServer } from '../../src/client/callback-server';
import type { HookPayload } from '../../src/activities/hooks';
import type { LoadGenerator } from '../../src/dev/load-generator';
import type { ModelRouting } from '../../src/shared/gateway-api';
import type { ModelTelemetry } from '../../src/shared/telemetry';
import {
  approveAll,
  EXAMPLE,
  liveTraffic,
  recordHistory,
  startStack,
  testSpec,
  uniqueName,
  waitForStatus,
  type Stack,
} from '../helpers/harness';
import { tempDir } from '../helpers/temp';

/**
 * Traffic and integrations of a rollout on the real stack: the gateway copies production requests to the candidate
 * after stable answered and the lifecycle judges the pairs before any user is served by the candidate; a QA header
 * reaches the candidate at 0 % weight, counted apart; pre-rollout hooks (a CI smoke test reaching the candidate by its
 * pin) gate the rollout; an external system confirms a gate through the signed callback.
 */
describe('rollout traffic: shadow, pinned routes, hooks and confirm callbacks', () => {
  let stack: Stack;
  let load: LoadGenerator;
  let hooks: FastifyInstance;
  let hooksUrl: string;
  let callbacks: FastifyInstance;
  let callbacksUrl: string;
  const hookCalls: { path: string; body: HookPayload }[] = [];
  const model = uniqueName('traffic');
  const ciBot = generateApproverKey();
  const mallory = generateApproverKey();

  /** One row of the example's test set as prediction features. */
  const features = (() => {
    const [header, row] = readFileSync(join(EXAMPLE, 'data', 'test.csv'), 'utf8')
      .trim()
      .split('\n');
    const columns = header!.split(',');
    const cells = row!.split(',');
    const out: Record<string, number | string> = {};
    columns.forEach((c, i) => {
      if (c === 'customer_id' || c === 'churned') return;
      const v = cells[i]!;
      out[c] = Number.isFinite(Number(v)) ? Number(v) : v;
    });
    return out;
  })();
  const predict = async (headers: Record<string, string>, userId: string) => {
    const res = await fetch(`${stack.gateway.url}/v1/models/${model}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ userId, features }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    return ((await res.json()) as { version: string }).version;
  };
  const telemetry = async () =>
    (await (await stack.gateway.admin(`/admin/models/${model}/telemetry`)).json()) as ModelTelemetry;
  const routing = async () => (await (await stack.gateway.admin(`/admin/models/${model}`)).json()) as ModelRouting;

  beforeAll(async () => {
    const keyring = join(tempDir('mll-keys-'), 'approvers.yaml');
    writeFileSync(keyring, `approvers:\n  ci-bot: { keys: ["${ciBot.publicKey}"] }\n`);
    stack = await startStack({ approverKeysFile: keyring });
    // CI's endpoints: a smoke test that reaches the candidate through its pinned route, and one that fails.
    hooks = Fastify();
    hooks.post('/smoke', async (req, reply) => {
      const body = req.body as HookPayload;
      hookCalls.push({ path: '/smoke', body });
      const pin = body.pins.find((p) => p.version === body.version);
      if (!pin) return reply.code(422).send({ message: 'no pinned route reaches the candidate' });
      const versions: string[] = [];
      for (let i = 0; i < 5; i++) versions.push(await predict({ [pin.header]: pin.values[0]! }, `smoke-${i}`));
      const served = versions.filter((v) => v === body.version).length;
      return served === 5
        ? { message: `smoke passed: 5/5 answered by ${body.version}` }
        : reply.code(422).send({ message: `smoke failed: ${served}/5 answered by ${body.version}` });
    });
    hooks.post('/smoke-fails', async (req, reply) => {
      hookCalls.push({ path: '/smoke-fails', body: req.body as HookPayload });
      return reply.code(422).send({ message: 'load test failed: p99 41 ms over the 20 ms budget' });
    });
    hooksUrl = await hooks.listen({ port: 0, host: '127.0.0.1' });
    callbacks = createCallbackServer({ lifecycles: stack.lifecycles });
    callbacksUrl = await callbacks.listen({ port: 0, host: '127.0.0.1' });
    // Traffic from the start: the first version's bake is judged on it.
    load = liveTraffic(stack.gateway.url, model, 100);
    const { id } = await stack.lifecycles.start(testSpec(model, 'v1'));
    expect((await approveAll(stack.lifecycles, id)).stage).toBe('promoted');
  }, 120_000);
  afterAll(async () => {
    await load?.stop();
    await stack?.close();
    await hooks?.close();
    await callbacks?.close();
  });
  const decide = (id: string, gate: string, body: unknown) =>
    fetch(`${callbacksUrl}/v1/lifecycles/${id}/gates/${gate}/decision`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  it('catches the bad candidate in its shadow stage before any user is served by it', async () => {
    const before = load.stats.byVersion;
    const spec = testSpec(model, 'v2', 'bad', (s) => {
      s.rollout.shadow = {
        percent: 50,
        bake: 8000,
        compare: { minAgreement: 0.9, failureLimit: 0, dryRun: false },
      };
      s.rollout.analysis.interval = 2000;
    });
    const { id } = await stack.lifecycles.start(spec);
    const end = await approveAll(stack.lifecycles, id);
    expect(end.stage, JSON.stringify(end.events.slice(-6))).toBe('rolled-back');
    const failed = end.decisions.filter((d) => d.outcome === 'fail' && !d.tolerated);
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((d) => d.stage === 'shadow')).toBe(true);
    // The cents pipeline predicts differently on the very same requests: the pairwise checks see it.
    expect(failed.map((d) => d.check)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^(shadowAgreement|shadowScoreDiff|predictionDrift)$/)]),
    );
    expect(end.error?.message).toMatch(/shadow failed/);
    await recordHistory(stack.client, id, 'lifecycle-shadow-rolled-back');
    // No user was ever answered by v2, and it never had weight.
    expect(load.stats.byVersion.v2 ?? 0).toBe(before.v2 ?? 0);
    expect(end.events.some((e) => /% of traffic to v2/.test(e.message))).toBe(false);
    const r = await routing();
    expect(r.weights).toEqual({ v1: 100 });
    expect(r.routes).toBeUndefined();
    await expect
      .poll(() => stack.alerts.some((a) => a.kind === 'rollback' && a.lifecycleId === id), { timeout: 15_000 })
      .toBe(true);
  }, 120_000);

  it('pins a QA header to the candidate at 0 %, passes a smoke hook and a shadow stage, and takes a signed confirm', async () => {
    const spec = testSpec(model, 'v3', 'good', (s) => {
      s.rollout.shadow = { percent: 100, bake: 6000, compare: { minAgreement: 0.8, failureLimit: 0, dryRun: false } };
      s.rollout.pins = [{ header: 'x-ml-qa', values: ['1'], to: 'candidate', counted: false }];
      s.rollout.hooks.preRollout = [{ name: 'smoke', url: `${hooksUrl}/smoke`, timeout: 10_000, maxAttempts: 2 }];
      s.rollout.analysis.interval = 2000;
      // CI confirms the 50 % step: its own identity, its own key.
      s.rollout.steps[0]!.approval = true;
      s.approval.gates = { 'ramp-50': { approvers: ['ci-bot'], signed: true } };
    });
    const { id } = await stack.lifecycles.start(spec);
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate?.gate === 'deploy', 90_000);
    await stack.lifecycles.approve(id, { gate: 'deploy', by: 'alice' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'shadow', 90_000);
    expect((await routing()).weights).toEqual({ v1: 100 });
    // The smoke hook ran first, and reached the candidate through the QA pin.
    const smoke = hookCalls.filter((c) => c.body.lifecycleId === id);
    expect(smoke.map((c) => [c.path, c.body.stage, c.body.version, c.body.stableVersion])).toEqual([
      ['/smoke', 'pre-rollout', 'v3', 'v1'],
    ]);
    // The QA header reaches the candidate; the same user without it stays on stable.
    const qa = [];
    for (let i = 0; i < 20; i++) qa.push(await predict({ 'X-ML-QA': '1' }, `qa-${i}`));
    expect(new Set(qa)).toEqual(new Set(['v3']));
    expect(await predict({}, 'qa-0')).toBe('v1');
    expect(await predict({ 'x-ml-qa': '2' }, 'qa-0')).toBe('v1');
    const t = await telemetry();
    expect(t.pinned?.v3?.requests).toBe(25);
    // Pinned requests never enter the candidate's own counters (its analysis windows); shadow copies are counted apart.
    expect(t.versions.v3?.requests ?? 0).toBe(0);
    expect(t.shadow?.v3?.compared).toBeGreaterThan(0);

    // The 50 % step waits for CI, which was asked (approval-requested, with what to sign) and answers by callback.
    const gated = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate?.gate === 'ramp-50', 90_000);
    expect(gated.trafficPercent).toBe(10);
    const askedFor = () =>
      stack.alerts.find(
        (a) => a.kind === 'approval-requested' && a.lifecycleId === id && a.details?.gate === 'ramp-50',
      );
    await expect.poll(askedFor, { timeout: 10_000 }).toBeDefined();
    const asked = askedFor()!;
    expect(asked.audience).toEqual(['ci-bot']);
    const signing = asked.details!.signing as {
      target: string;
      specDigest: string;
      artifactDigest: string;
      callback: string;
    };
    expect(signing.callback).toBe(`/v1/lifecycles/${id}/gates/ramp-50/decision`);
    const claim = () =>
      operationClaim({
        op: 'approve',
        target: signing.target,
        specDigest: signing.specDigest,
        artifactDigest: signing.artifactDigest,
        by: 'ci-bot',
        reason: 'integration tests green',
      });
    // Hostile input is refused before anything reaches the lifecycle, naming what is wrong.
    const badPath = await decide('lifecycle-..%2F..%2Fx', 'ramp-50', { decision: 'approved', by: 'ci-bot' });
    expect(badPath.status).toBe(400);
    expect(((await badPath.json()) as { error: string }).error).toMatch(/^invalid path: id: a lifecycle id/);
    const badGate = await decide(id, 'everything', { decision: 'approved', by: 'ci-bot' });
    expect(((await badGate.json()) as { error: string }).error).toMatch(/^invalid path: gate: a gate/);
    const extra = await decide(id, 'ramp-50', { decision: 'approved', by: 'ci-bot', signed: {}, admin: true });
    expect(((await extra.json()) as { error: string }).error).toMatch(/^invalid decision: /);
    const unsigned = await decide(id, 'ramp-50', { decision: 'approved', by: 'ci-bot' });
    expect(unsigned.status).toBe(400);
    expect(((await unsigned.json()) as { error: string }).error).toMatch(/must carry a signed claim/);
    const forged = await decide(id, 'ramp-50', {
      decision: 'approved',
      by: 'ci-bot',
      reason: 'integration tests green',
      signed: signOperation(claim(), mallory.privateKeyPem),
    });
    expect(forged.status, await forged.clone().text()).toBe(403);
    expect((await stack.lifecycles.status(id)).pendingGate?.gate).toBe('ramp-50');
    const confirmed = await decide(id, 'ramp-50', {
      decision: 'approved',
      by: 'ci-bot',
      reason: 'integration tests green',
      signed: signOperation(claim(), ciBot.privateKeyPem),
    });
    expect(confirmed.status, await confirmed.clone().text()).toBe(200);

    const end = await waitForStatus(
      stack.lifecycles,
      id,
      (s) => s.stage === 'promoted' || s.stage === 'rolled-back',
      90_000,
    );
    expect(end.stage, JSON.stringify(end.events.slice(-6))).toBe('promoted');
    expect(end.approvals.filter((a) => a.gate === 'ramp-50').map((a) => [a.by, a.decision])).toEqual([
      ['ci-bot', 'approved'],
    ]);
    expect(end.decisions.find((d) => d.check === 'hook:smoke')).toMatchObject({
      stage: 'pre-rollout',
      outcome: 'pass',
      value: 200,
    });
    const shadowChecks = end.decisions.filter((d) => d.stage === 'shadow' && d.sample === undefined);
    expect(shadowChecks.find((d) => d.check === 'shadowAgreement')?.outcome).toBe('pass');
    expect(shadowChecks.find((d) => d.check === 'shadowScoreDiff')?.outcome).toBe('pass');
    // Routes end with the rollout: the header follows the weights again.
    expect((await routing()).routes).toBeUndefined();
    expect(await predict({ 'x-ml-qa': '1' }, 'qa-0')).toBe('v3');
    await recordHistory(stack.client, id, 'lifecycle-shadow-confirmed-promoted');
  }, 180_000);

  it('stops the rollout before any traffic when a pre-rollout hook fails', async () => {
    const before = load.stats.byVersion;
    const spec = testSpec(model, 'v4', 'good', (s) => {
      s.rollout.hooks.preRollout = [
        { name: 'load-test', url: `${hooksUrl}/smoke-fails`, timeout: 10_000, maxAttempts: 3 },
      ];
    });
    const { id } = await stack.lifecycles.start(spec);
    const end = await approveAll(stack.lifecycles, id);
    expect(end.stage, JSON.stringify(end.events.slice(-6))).toBe('rolled-back');
    expect(end.error?.message).toMatch(
      /pre-rollout hook load-test failed: load test failed: p99 41 ms over the 20 ms budget/,
    );
    expect(end.decisions.find((d) => d.check === 'hook:load-test')).toMatchObject({ outcome: 'fail', value: 422 });
    // A refusal is the hook's verdict: asked once, not retried.
    expect(hookCalls.filter((c) => c.body.lifecycleId === id)).toHaveLength(1);
    expect(load.stats.byVersion.v4 ?? 0).toBe(before.v4 ?? 0);
    expect(end.events.some((e) => /% of traffic to v4/.test(e.message))).toBe(false);
    expect((await routing()).weights).toEqual({ v3: 100 });
  }, 120_000);
});
