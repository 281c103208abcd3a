import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApproverKey, operationClaim, signOperation } from '../../src/client/approval-signing';
import { OperationTarget, type OperationClaim } from '../../src/shared/signed-operation';
import type { LoadGenerator } from '../../src/dev/load-generator';
import type { FaultSettings } from '../../src/shared/gateway-api';
import type { LifecycleSpec } from '../../src/shared/spec';
import { DeploymentTargetSpec } from '../../src/shared/deployment-target';
import {
  approveAll,
  liveTraffic,
  poolState,
  recordHistory,
  startStack,
  testSpec,
  uniqueName,
  waitForStatus,
  type Stack,
} from '../helpers/harness';
import { tempDir } from '../helpers/temp';

/**
 * Rollout analysis and controls on the real stack: each check breached by a real fault on the gateway (or real bad
 * traffic) stops the rollout naming it; inconclusive stages pause and alert; post-promotion guard; quorum, escalation,
 * promote-now and signed approvals.
 */
describe('rollout analysis and controls', () => {
  let stack: Stack;
  const loads: LoadGenerator[] = [];
  const alice = generateApproverKey();
  const bob = generateApproverKey();
  const mallory = generateApproverKey();

  beforeAll(async () => {
    const dir = tempDir('mll-keys-');
    const keyring = join(dir, 'approvers.yaml');
    writeFileSync(
      keyring,
      `approvers:\n  alice: { keys: ["${alice.publicKey}"] }\n  bob: { keys: ["${bob.publicKey}"] }\n`,
    );
    stack = await startStack({ approverKeysFile: keyring });
  });
  afterAll(async () => {
    await Promise.all(loads.map((l) => l.stop()));
    await stack?.close();
  });

  const traffic = (model: string, rate = 60, corruptShare = 0) => {
    const load = liveTraffic(stack.gateway.url, model, rate);
    if (corruptShare > 0) load.setCorruptShare(corruptShare);
    loads.push(load);
    return load;
  };
  const routing = async (model: string): Promise<{ weights: Record<string, number> }> => {
    const res = await stack.gateway.admin(`/admin/models/${model}`);
    if (res.status === 404) return { weights: {} };
    return (await res.json()) as { weights: Record<string, number> };
  };
  const inject = async (model: string, version: string, faults: FaultSettings) => {
    const res = await stack.gateway.admin(`/admin/models/${model}/versions/${version}/faults`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(faults),
    });
    expect(res.status, await res.clone().text()).toBe(200);
  };
  /** Polls the gateway until the version has no traffic weight; the time it took, in ms. */
  const untilNoTraffic = async (model: string, version: string, from: number, timeoutMs = 60_000) => {
    while (Date.now() - from < timeoutMs) {
      if (!((await routing(model)).weights[version]! > 0)) return Date.now() - from;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`${model} ${version} still had traffic after ${timeoutMs} ms`);
  };
  /** Short bakes sampled every second with a small minimum sample, so a breach shows within a second or two. */
  const sampled = (s: LifecycleSpec) => {
    s.rollout.canary.bake = 8000;
    s.rollout.analysis.interval = 1000;
    s.rollout.analysis.minSamples = 20;
    s.rollout.analysis.maxWaitForSamples = 20_000;
  };

  it('rolls back on each check breached by a real fault, naming the check, and reports breach-to-0% time', async () => {
    // A version that is down also fails the error rate; the outage case turns that check off to see its own.
    const cases: { check: string; faults?: FaultSettings; corrupt?: number; patch?: (s: LifecycleSpec) => void }[] = [
      { check: 'errorRate', faults: { errorRate: 0.5 } },
      { check: 'latencyP99Ms', faults: { delayMs: 400 } },
      { check: 'outage', faults: { down: true }, patch: (s) => (s.rollout.analysis.errorRate.max = 1) },
      { check: 'inputQuality', corrupt: 0.3 },
    ];
    const runs = cases.map(async (c) => {
      const model = uniqueName(`chk-${c.check.toLowerCase()}`);
      traffic(model, 50, c.corrupt ?? 0);
      const { id } = await stack.lifecycles.start(
        testSpec(model, 'v1', 'good', (s) => {
          sampled(s);
          c.patch?.(s);
        }),
      );
      await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
      await stack.lifecycles.approve(id, { by: 'alice' });
      // First deployment: the candidate takes all traffic and bakes under the absolute checks.
      await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary', 60_000);
      const breachAt = Date.now();
      if (c.faults) await inject(model, 'v1', c.faults);
      const toZeroMs = await untilNoTraffic(model, 'v1', breachAt);
      const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rolled-back', 60_000);
      return { ...c, end, toZeroMs };
    });
    const results = await Promise.all(runs);
    for (const { check, end, toZeroMs } of results) {
      const failed = end.decisions.filter((d) => d.outcome === 'fail' && !d.tolerated);
      expect(
        failed.map((d) => d.check),
        `${check}: ${JSON.stringify(failed)}`,
      ).toContain(check);
      expect(end.error?.message).toMatch(new RegExp(`initial:100 failed: .*${check}=`));
      const d = failed.find((x) => x.check === check)!;
      expect(d.rule).toEqual(expect.any(String));
      expect(d.sampleSize).toBeGreaterThan(0);
      expect(end.trafficPercent).toBe(0);
      await expect
        .poll(() => stack.alerts.some((a) => a.kind === 'rollback' && a.lifecycleId === end.id), { timeout: 15_000 })
        .toBe(true);
      console.log(
        `${check}: breach → 0% candidate traffic in ${toZeroMs} ms (${d.sample ? `sample ${d.sample}` : 'end of bake'})`,
      );
    }
    // Breaches are caught by the samples within the bake, not at its end.
    expect(results.filter((r) => r.check !== 'inputQuality').every((r) => r.toZeroMs < 8000)).toBe(true);
  });

  it('rolls a canary back on its latency relative to the stable version, under the absolute limit', async () => {
    const model = uniqueName('chk-ratio');
    traffic(model, 60);
    expect((await approveAll(stack.lifecycles, (await stack.lifecycles.start(testSpec(model, 'v1'))).id)).stage).toBe(
      'promoted',
    );
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v2', 'good', (s) => {
        sampled(s);
        s.rollout.canary.percent = 30;
      }),
    );
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    await stack.lifecycles.approve(id, { by: 'alice' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary');
    // 150 ms more than stable: far above the spec's 4× stable p99, under its 250 ms absolute limit.
    await inject(model, 'v2', { delayMs: 150 });
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rolled-back', 60_000);
    const failed = end.decisions.filter((d) => d.outcome === 'fail');
    expect(failed.map((d) => d.check)).toEqual(['latencyP99RatioToStable']);
    expect(failed[0]).toMatchObject({ stage: 'canary', threshold: 4 });
    expect(failed[0]!.detail).toMatch(/^stable p99 [\d.]+ ms$/);
    expect(end.decisions.some((d) => d.check === 'latencyP99Ms' && d.outcome === 'fail')).toBe(false);
    expect((await routing(model)).weights).toEqual({ v1: 100 });
  });

  it('pauses an inconclusive stage and alerts, then rolls back when aborted', async () => {
    const model = uniqueName('inconclusive');
    traffic(model, 20);
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v1', 'good', (s) => {
        s.rollout.canary.bake = 1000;
        s.rollout.analysis.minSamples = 100_000;
        s.rollout.analysis.maxWaitForSamples = 1000;
      }),
    );
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    await stack.lifecycles.approve(id, { by: 'alice' });
    const held = await waitForStatus(stack.lifecycles, id, (s) => s.paused, 60_000);
    expect(held.stage).toBe('canary');
    expect(held.decisions.filter((d) => d.outcome === 'inconclusive').map((d) => d.check)).toContain('errorRate');
    await expect
      .poll(() => stack.alerts.some((a) => a.kind === 'rollout-inconclusive' && a.lifecycleId === id), {
        timeout: 15_000,
      })
      .toBe(true);
    const ack = await stack.lifecycles.abort(id, { by: 'olivia', reason: 'not enough traffic to judge' });
    expect(ack).toMatchObject({ action: 'abort', stage: 'canary' });
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rolled-back');
    expect(end.error?.message).toBe('aborted by olivia: not enough traffic to judge');
    await expect(stack.lifecycles.abort(id, { by: 'olivia' })).rejects.toThrow(/already ended rolled-back|not running/);
  });

  it('rolls a promotion back to the previous version when the guard window sees a breach', async () => {
    const model = uniqueName('guard');
    traffic(model, 60);
    const first = await stack.lifecycles.start(testSpec(model, 'v1'));
    expect((await approveAll(stack.lifecycles, first.id)).stage).toBe('promoted');
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v2', 'good', (s) => {
        s.rollout.postPromotion.window = 20_000;
        s.rollout.analysis.interval = 1000;
        s.rollout.analysis.minSamples = 20;
      }),
    );
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    await stack.lifecycles.approve(id, { by: 'alice' });
    const guarding = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'guarding', 90_000);
    expect(guarding.trafficPercent).toBe(100);
    expect((await stack.lifecycles.history(model)).production?.version).toBe('v2');
    // The previous version is still loaded, at 0%.
    expect((await routing(model)).weights).toEqual({ v2: 100, v1: 0 });
    const breachAt = Date.now();
    await inject(model, 'v2', { errorRate: 1 });
    const toZeroMs = await untilNoTraffic(model, 'v2', breachAt);
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rolled-back');
    console.log(`post-promotion breach → all traffic back on v1 in ${toZeroMs} ms`);
    expect(end.error?.message).toMatch(
      /^post-promotion failed: (outage=0 .*; )?errorRate=[\d.]+ \(errors \/ requests <= 0.01\)/,
    );
    expect((await routing(model)).weights).toEqual({ v1: 100 });
    const history = await stack.lifecycles.history(model);
    expect(history.production, JSON.stringify(end.events.slice(-6))).toMatchObject({
      version: 'v1',
      kind: 'rollback',
      by: 'system',
    });
    expect(history.previous?.version).toBe('v2');
    const leases = (await poolState(stack.client)).leases.filter((l) => l.leaseId.startsWith(`serve:${model}:`));
    expect(leases.map((l) => [l.leaseId, l.expiresAt])).toEqual([[`serve:${model}:v1`, null]]);
    await recordHistory(stack.client, id, 'lifecycle-guard-rolled-back');
  });

  it('keeps a gate open until its quorum of distinct approvers, and refuses the submitter and repeat approvals', async () => {
    const model = uniqueName('quorum');
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v1', 'good', (s) => {
        s.approval.approvers = ['alice', 'bob', 'carol'];
        s.approval.quorum = 2;
      }),
    );
    const open = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    expect(open.pendingGate).toMatchObject({ gate: 'deploy', opening: 'deploy#1', quorum: 2, approvedBy: [] });
    const first = await stack.lifecycles.approve(id, { by: 'alice', reason: 'metrics fine' });
    expect(first).toMatchObject({ gate: 'deploy', approvals: 1, quorum: 2, outcome: null });
    await expect(stack.lifecycles.approve(id, { by: 'alice' })).rejects.toThrow(
      '"alice" has already decided gate "deploy"',
    );
    const submitter = open.submittedBy;
    await expect(stack.lifecycles.approve(id, { by: submitter })).rejects.toThrow(/submitted this lifecycle/);
    expect((await stack.lifecycles.status(id)).stage).toBe('awaiting-approval');
    const second = await stack.lifecycles.approve(id, { by: 'carol' });
    expect(second).toMatchObject({ approvals: 2, outcome: 'approved' });
    const moved = await waitForStatus(stack.lifecycles, id, (s) => s.stage !== 'awaiting-approval');
    expect(moved.approvals.map((a) => [a.by, a.decision, a.opening])).toEqual([
      ['alice', 'approved', 'deploy#1'],
      ['carol', 'approved', 'deploy#1'],
    ]);
    await stack.lifecycles.abort(id, { by: 'olivia', reason: 'quorum test done' });
    await waitForStatus(stack.lifecycles, id, (s) => ['rolled-back', 'rejected'].includes(s.stage));
  });

  it('escalates a gate left waiting, then expires it', async () => {
    const model = uniqueName('escalate');
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v1', 'good', (s) => {
        s.approval.timeout = 4000;
        s.approval.escalateAfter = 1500;
        s.approval.escalateTo = ['team-lead'];
      }),
    );
    const escalated = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate?.escalated === true, 120_000);
    expect(escalated.stage).toBe('awaiting-approval');
    await expect
      .poll(() => stack.alerts.find((a) => a.kind === 'approval-escalation' && a.lifecycleId === id), {
        timeout: 15_000,
      })
      .toBeDefined();
    const alert = stack.alerts.find((a) => a.kind === 'approval-escalation' && a.lifecycleId === id);
    expect(alert?.summary).toMatch(/gate "deploy" .* still waiting after 1500 ms; escalated to team-lead/);
    expect(alert?.details).toMatchObject({ escalateTo: ['team-lead'], quorum: 1 });
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rejected');
    expect(end.error).toMatchObject({ type: 'ApprovalTimeout' });
    await expect
      .poll(() => stack.alerts.some((a) => a.kind === 'approval-timeout' && a.lifecycleId === id), { timeout: 15_000 })
      .toBe(true);
  });

  it('promotes at once on promote-now from an approver, and refuses it from the submitter', async () => {
    const model = uniqueName('promote-now');
    traffic(model, 40);
    await approveAll(stack.lifecycles, (await stack.lifecycles.start(testSpec(model, 'v1'))).id);
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v2', 'good', (s) => {
        s.rollout.canary.bake = 120_000;
      }),
    );
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    await expect(stack.lifecycles.promoteNow(id, { by: 'alice' })).rejects.toThrow(/nothing to promote/);
    await stack.lifecycles.approve(id, { by: 'alice' });
    const canary = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary');
    await expect(stack.lifecycles.promoteNow(id, { by: canary.submittedBy })).rejects.toThrow(
      /submitted this lifecycle/,
    );
    await expect(stack.lifecycles.promoteNow(id, { by: 'mallory' })).rejects.toThrow(/not an approver/);
    const started = Date.now();
    const ack = await stack.lifecycles.promoteNow(id, { by: 'bob', reason: 'hotfix must ship' });
    expect(ack).toMatchObject({ granted: true, quorum: 1, requestedBy: ['bob'] });
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'promoted');
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(end.events.map((e) => e.message)).toContain(
      'promote-now requested by bob: hotfix must ship; granted, skipping the rest of the rollout',
    );
    expect((await routing(model)).weights).toEqual({ v2: 100 });
    expect((await stack.lifecycles.history(model)).production?.version).toBe('v2');
  });

  it('requires signed approvals where the policy says so, and refuses forged and replayed ones', async () => {
    const model = uniqueName('signed');
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v1', 'good', (s) => {
        s.approval.approvers = ['alice', 'bob', 'carol'];
        s.approval.quorum = 2;
        s.approval.signed = true;
      }),
    );
    const open = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    expect(open.pendingGate).toMatchObject({ signed: true, opening: 'deploy#1', quorum: 2 });
    const target = OperationTarget.gate(id, open.runId!, 'deploy#1');
    const claim = (over: Partial<OperationClaim> = {}): OperationClaim => ({
      ...operationClaim({
        op: 'approve',
        target,
        by: 'alice',
        reason: 'signed off',
        specDigest: open.specDigest!,
        artifactDigest: open.artifactDigest ?? '',
      }),
      ...over,
    });
    await expect(stack.lifecycles.approve(id, { by: 'alice' })).rejects.toThrow(/requires a signed approval/);
    // Mallory signs a claim in alice's name with her own key, then passes it off under alice's key id.
    const forged = signOperation(claim(), mallory.privateKeyPem);
    await expect(stack.lifecycles.approve(id, { by: 'alice', signed: forged })).rejects.toThrow(
      /is not a registered key of alice/,
    );
    await expect(
      stack.lifecycles.approve(id, { by: 'alice', signed: { ...forged, keyId: alice.keyId } }),
    ).rejects.toThrow(/does not verify .*forged or altered/);
    // Really signed by alice, but for another lifecycle (or another run), or altered after signing.
    const elsewhere = signOperation(
      claim({ target: OperationTarget.gate('lifecycle-other-v9', open.runId!, 'deploy#1') }),
      alice.privateKeyPem,
    );
    await expect(stack.lifecycles.approve(id, { by: 'alice', signed: elsewhere })).rejects.toThrow(
      /for target "lifecycle\/lifecycle-other-v9.*replayed or misused/,
    );
    const genuine = signOperation(claim(), alice.privateKeyPem);
    const altered = { ...genuine, claim: { ...genuine.claim, reason: 'something else' } };
    await expect(stack.lifecycles.approve(id, { by: 'alice', signed: altered })).rejects.toThrow(/forged or altered/);
    // Carol is an approver but has no registered key.
    await expect(stack.lifecycles.approve(id, { by: 'carol' }, generateApproverKey().privateKeyPem)).rejects.toThrow(
      /carol has no registered signing key/,
    );

    const first = await stack.lifecycles.approve(id, { by: 'alice', signed: genuine });
    expect(first).toMatchObject({ approvals: 1, quorum: 2, outcome: null });
    // Replays: the same approval again, and bob's claim reusing the nonce alice's approval spent.
    await expect(stack.lifecycles.approve(id, { by: 'alice', signed: genuine })).rejects.toThrow(/already decided/);
    const reused = signOperation(claim({ by: 'bob', nonce: genuine.claim.nonce }), bob.privateKeyPem);
    await expect(stack.lifecycles.approve(id, { by: 'bob', signed: reused })).rejects.toThrow(
      /nonce .* was already used: replayed/,
    );
    // Bob signs through the client, which signs for the gate's current opening.
    const second = await stack.lifecycles.approve(id, { by: 'bob', reason: 'ship it' }, bob.privateKeyPem);
    expect(second).toMatchObject({ approvals: 2, outcome: 'approved' });
    const approved = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate === null);
    expect(approved.approvals.map((a) => [a.by, a.keyId, a.reason])).toEqual([
      ['alice', alice.keyId, 'signed off'],
      ['bob', bob.keyId, 'ship it'],
    ]);
    await stack.lifecycles.abort(id, { by: 'olivia', reason: 'signature test done' });
    await waitForStatus(stack.lifecycles, id, (s) => ['rolled-back', 'rejected'].includes(s.stage));
  });

  it('goes through a staging route with its own checks and a production gate before production traffic', async () => {
    const model = uniqueName('staged');
    const stagingRoute = `${model}-staging`;
    traffic(stagingRoute, 40);
    traffic(model, 40);
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v1', 'good', (s) => {
        s.deployment.staging = { bake: 2000, gate: true };
        s.rollout.analysis.minSamples = 20;
      }),
    );
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate?.gate === 'deploy', 120_000);
    await stack.lifecycles.approve(id, { by: 'alice' });
    const staged = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'staging');
    expect((await routing(stagingRoute)).weights).toEqual({ v1: 100 });
    expect((await routing(model)).weights).toEqual({});
    const gate = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate?.gate === 'production');
    expect(gate.decisions.filter((d) => d.stage === 'staging').every((d) => d.outcome === 'pass')).toBe(true);
    expect(gate.decisions.filter((d) => d.stage === 'staging').map((d) => d.check)).toContain('errorRate');
    // Production has not been touched while the production gate waits.
    expect((await routing(model)).weights).toEqual({});
    await stack.lifecycles.approve(id, { by: 'bob', reason: 'staging looks right' });
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'promoted');
    expect(end.events.map((e) => e.message)).toContain(`staging on "${stagingRoute}" taken down`);
    expect((await routing(stagingRoute)).weights).toEqual({});
    expect((await routing(model)).weights).toEqual({ v1: 100 });
    expect(staged.trafficPercent).toBe(0);
    const leases = (await poolState(stack.client)).leases.filter((l) => l.leaseId.startsWith(`serve:${model}:`));
    expect(leases.map((l) => l.leaseId)).toEqual([`serve:${model}:v1`]);
    await recordHistory(stack.client, id, 'lifecycle-staged-promoted');

    // A candidate that breaks in staging never reaches production.
    const second = await stack.lifecycles.start(
      testSpec(model, 'v2', 'good', (s) => {
        s.deployment.staging = { bake: 6000, gate: true };
        s.rollout.analysis.minSamples = 20;
        s.rollout.analysis.interval = 1000;
      }),
    );
    await waitForStatus(stack.lifecycles, second.id, (s) => s.pendingGate?.gate === 'deploy', 120_000);
    await stack.lifecycles.approve(second.id, { by: 'alice' });
    await waitForStatus(stack.lifecycles, second.id, (s) => s.stage === 'staging');
    await inject(stagingRoute, 'v2', { errorRate: 1 });
    const failed = await waitForStatus(stack.lifecycles, second.id, (s) => s.stage === 'rolled-back');
    expect(failed.error).toMatchObject({ type: 'StagingFailed' });
    expect(failed.error?.message).toMatch(/^staging failed: (outage=0 .*; )?errorRate=/);
    expect((await routing(model)).weights).toEqual({ v1: 100 });
    expect((await routing(stagingRoute)).weights).toEqual({});
  });

  it('deploys through a generic HTTP target: an adapter in front of the platform, with a secret header', async () => {
    const model = uniqueName('http-target');
    traffic(model, 60);
    const token = 'adapter-secret-1';
    // The worker reads the header's secret from its environment; the spec names only the variable.
    process.env.MLL_TEST_ADAPTER_AUTH = `Bearer ${token}`;
    const calls: string[] = [];
    const adapter = Fastify();
    adapter.addHook('onRequest', async (req, reply) => {
      if (req.headers.authorization !== `Bearer ${token}`) return reply.code(401).send({ error: 'bad token' });
    });
    const forward = async (method: string, path: string, body?: unknown) => {
      const res = await stack.gateway.admin(path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as unknown };
    };
    type Params = { model: string; version: string };
    type Body = { artifactDir?: string; artifactDigest?: string; opId: string; weights?: Record<string, number> };
    adapter.post<{ Params: Params; Body: Body }>('/platform/:model/revisions/:version', async (req, reply) => {
      calls.push(`deploy ${req.params.version}`);
      const r = await forward('PUT', `/admin/models/${req.params.model}/versions/${req.params.version}`, {
        opId: req.body.opId,
        artifactDir: req.body.artifactDir,
        artifactDigest: req.body.artifactDigest,
      });
      return reply.code(r.status).send(r.body);
    });
    adapter.put<{ Params: Params; Body: Body }>('/platform/:model/traffic', async (req, reply) => {
      calls.push(`weights ${JSON.stringify(req.body.weights)}`);
      const r = await forward('PUT', `/admin/models/${req.params.model}/weights`, {
        opId: req.body.opId,
        weights: req.body.weights,
      });
      return reply.code(r.status).send(r.body);
    });
    adapter.delete<{ Params: Params; Querystring: { opId: string } }>(
      '/platform/:model/revisions/:version',
      async (req, reply) => {
        calls.push(`undeploy ${req.params.version}`);
        const r = await forward(
          'DELETE',
          `/admin/models/${req.params.model}/versions/${req.params.version}?opId=${encodeURIComponent(req.query.opId)}`,
        );
        return reply.code(r.status).send(r.body);
      },
    );
    adapter.get<{ Params: Params }>('/platform/:model/metrics', async (req, reply) => {
      const r = await forward('GET', `/admin/models/${req.params.model}/telemetry`);
      return reply.code(r.status).send(r.body);
    });
    const address = await adapter.listen({ port: 0, host: '127.0.0.1' });
    try {
      const { id } = await stack.lifecycles.start(
        testSpec(model, 'v1', 'good', (s) => {
          s.deployment.target = DeploymentTargetSpec.parse({
            kind: 'http',
            name: 'platform-adapter',
            baseUrl: address,
            headers: { authorization: { fromEnv: 'MLL_TEST_ADAPTER_AUTH' } },
            endpoints: {
              deploy: { method: 'POST', path: '/platform/{model}/revisions/{version}' },
              setWeights: { method: 'PUT', path: '/platform/{model}/traffic' },
              undeploy: { method: 'DELETE', path: '/platform/{model}/revisions/{version}' },
              telemetry: { method: 'GET', path: '/platform/{model}/metrics' },
            },
          });
        }),
      );
      const end = await approveAll(stack.lifecycles, id);
      expect(end.stage, JSON.stringify(end.decisions.filter((d) => d.outcome !== 'pass'))).toBe('promoted');
      expect(calls.filter((c) => !c.startsWith('telemetry'))).toEqual(['deploy v1', 'weights {"v1":100}']);
      expect((await routing(model)).weights).toEqual({ v1: 100 });
      expect((await stack.lifecycles.history(model)).production?.target).toMatchObject({
        kind: 'http',
        name: 'platform-adapter',
      });
    } finally {
      await adapter.close();
    }
  });
});
