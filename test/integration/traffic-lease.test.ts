import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadGenerator } from '../../src/dev/load-generator';
import type { JournalEntry } from '../../src/serving/routing-store';
import type { ModelRouting } from '../../src/shared/gateway-api';
import { registryStateQuery } from '../../src/shared/messages';
import { registryWorkflowId, type RegistryState } from '../../src/shared/registry';
import type { LifecycleStatus } from '../../src/shared/status';
import { runTag } from '../../src/workflows/lifecycle/context';
import {
  approveAll,
  liveTraffic,
  startStack,
  testSpec,
  uniqueName,
  waitForStatus,
  type Stack,
} from '../helpers/harness';
import { mlctl } from '../helpers/mlctl';

type Routing = Pick<ModelRouting, 'weights' | 'versions'>;

/**
 * The model's traffic lease on a real dev server, gateway and workers: one writer of a model's weights at a time
 * (lifecycles queue behind each other, a rollback is refused while a lifecycle ramps), and opIds per run so that a
 * re-run of a cancelled lifecycle really deploys. The tests run in order on one model and build on each other.
 */
describe('the traffic lease: one writer of a model’s weights at a time', () => {
  let stack: Stack;
  let load: LoadGenerator;
  const model = uniqueName('lease');

  beforeAll(async () => {
    stack = await startStack();
    load = liveTraffic(stack.gateway.url, model);
  });
  afterAll(async () => {
    await load?.stop();
    await stack?.close();
  });

  /** The gateway's routing for the model, read in one request; a model with nothing deployed (404) routes nothing. */
  const routing = async (): Promise<Routing> => {
    const res = await stack.gateway.admin(`/admin/models/${model}`);
    if (res.status === 404) return { weights: {}, versions: [] };
    expect(res.status).toBe(200);
    return (await res.json()) as Routing;
  };
  const registry = (): Promise<RegistryState> =>
    stack.client.workflow.getHandle(registryWorkflowId(model)).query(registryStateQuery);
  const eventAt = (s: LifecycleStatus, pred: (message: string) => boolean): number => {
    const e = s.events.find((x) => pred(x.message));
    expect(e, `${s.id}: no such event in ${JSON.stringify(s.events.map((x) => x.message))}`).toBeDefined();
    return Date.parse(e!.at);
  };
  /** Versions with a weight entry (zero or not), sorted: the versions a table names. */
  const named = (r: Routing) => Object.keys(r.weights).sort();

  it('runs two lifecycles of one model one after the other, the second comparing with what the first promoted', async () => {
    const v1 = await stack.lifecycles.start(testSpec(model, 'v1'));
    expect((await approveAll(stack.lifecycles, v1.id)).stage).toBe('promoted');
    expect((await routing()).weights).toEqual({ v1: 100 });

    // Every distinct routing the gateway serves while both run, polled every ~100 ms.
    const seen: Routing[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const r = await routing();
        if (JSON.stringify(seen.at(-1)) !== JSON.stringify(r)) seen.push(r);
        await new Promise((done) => setTimeout(done, 100));
      }
    })();
    const started = await Promise.all([
      stack.lifecycles.start(testSpec(model, 'v2')),
      stack.lifecycles.start(testSpec(model, 'v3')),
    ]);
    // Both wait at their deploy gates, then are approved together: they reach the model's traffic at the same time.
    await Promise.all(started.map(({ id }) => waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null)));
    const ends = await Promise.all(started.map(({ id }) => approveAll(stack.lifecycles, id)));
    watching = false;
    await watcher;

    for (const end of ends) {
      expect(end.stage, `${end.id}: ${JSON.stringify(end.error)}`).toBe('promoted');
      expect(end.approvals.map((a) => a.gate)).toEqual(['deploy']);
    }
    // Exactly one of them waited for the other's traffic.
    const waited = ends.map((s) => s.events.some((e) => e.message.startsWith(`waiting for the traffic of ${model}`)));
    expect(waited.filter(Boolean)).toHaveLength(1);
    const [first, second] = waited[0] ? [ends[1]!, ends[0]!] : [ends[0]!, ends[1]!];
    const A = first.version;
    const B = second.version;
    expect(
      second.events
        .find((e) => e.message.startsWith('waiting for the traffic'))
        ?.message.startsWith(
          `waiting for the traffic of ${model}: held by lifecycle ${first.id} (rollout of ${A}, since `,
        ),
    ).toBe(true);
    // The first compared with v1; the second with what production held once the traffic was its own: the first's.
    expect(first.stableVersion).toBe('v1');
    expect(second.stableVersion).toBe(A);
    expect(second.events.map((e) => e.message)).toContain(
      `production is ${A} now, v1 at validation: the rollout compares with ${A}`,
    );
    // The second deployed only after the first had ended.
    expect(eventAt(second, (m) => m.startsWith(`deployed ${B} `))).toBeGreaterThanOrEqual(
      eventAt(first, (m) => m === `${A} is the production version of ${model}`),
    );

    // The weight tables, in the order the gateway served them: each names only deployed versions; the first
    // lifecycle's tables name v1 and A alone, and B appears only once A holds all traffic, then with A alone.
    for (const r of seen) {
      expect(r.versions.map((v) => v.version)).toEqual(expect.arrayContaining(named(r)));
    }
    const firstOfB = seen.findIndex((r) => named(r).includes(B));
    expect(firstOfB, JSON.stringify(seen)).toBeGreaterThan(0);
    const before = seen.slice(0, firstOfB);
    const after = seen.slice(firstOfB);
    for (const r of before) expect([['v1'], ['v1', A].sort(), [A]]).toContainEqual(named(r));
    for (const r of after) expect([[A, B].sort(), [B]]).toContainEqual(named(r));
    expect(before.at(-1)!.weights).toEqual({ [A]: 100 });
    // The watcher really saw both rollouts: each candidate sharing traffic with its own stable version.
    expect(
      before.some((r) => r.weights[A]! > 0 && r.weights.v1! > 0),
      JSON.stringify(seen),
    ).toBe(true);
    expect(
      after.some((r) => r.weights[A]! > 0 && r.weights[B]! > 0),
      JSON.stringify(seen),
    ).toBe(true);

    const last = await routing();
    expect(last.weights).toEqual({ [B]: 100 });
    expect(last.versions.map((v) => v.version)).toEqual([B]);
    const reg = await registry();
    expect(reg.traffic).toBeNull();
    expect(reg.production).toMatchObject({ version: B, lifecycleId: second.id });
    expect(reg.previous).toMatchObject({ version: A, lifecycleId: first.id });
  });

  it('refuses mlctl rollback while a lifecycle ramps, naming it, and rolls back once it is aborted', async () => {
    const before = await registry();
    const prod = before.production!.version;
    const prev = before.previous!.version;
    const { id } = await stack.lifecycles.start(testSpec(model, 'v4', 'good', (s) => (s.rollout.canary.bake = 20_000)));
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
    await stack.lifecycles.approve(id, { by: 'alice' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary');
    const canary = await routing();
    expect(canary.weights).toEqual({ v4: 10, [prod]: 90 });

    const refused = await mlctl(stack.address, 'rollback', model, '--as', 'bob', '--reason', 'x');
    expect(refused.code, refused.stderr).toBe(4); // Exit.Refused
    expect(refused.stderr).toContain(`held by lifecycle ${id} (rollout of v4`);
    expect(refused.stderr).toContain(`abort it (mlctl abort ${id})`);
    // Nothing moved: the canary's weights, production and the lifecycle's hold on the traffic.
    expect(await routing()).toEqual(canary);
    const during = await registry();
    expect(during.production).toEqual(before.production);
    expect(during.traffic).toMatchObject({ workflowId: id, kind: 'lifecycle' });
    expect((await stack.lifecycles.status(id)).stage).toBe('canary');

    await stack.lifecycles.abort(id, { by: 'bob', reason: 'rolling production back' });
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rolled-back');
    expect(end.error?.message).toBe('aborted by bob: rolling production back');
    const back = await routing();
    expect(back.weights).toEqual({ [prod]: 100 });
    expect(back.versions.map((v) => v.version)).toEqual([prod]);
    expect((await registry()).traffic).toBeNull();

    const done = await mlctl(stack.address, 'rollback', model, '--as', 'bob', '--reason', 'x');
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toContain(`${model}: rolled back from ${prod} to ${prev}`);
    const restored = await routing();
    expect(restored.weights).toEqual({ [prev]: 100 });
    expect(restored.versions.map((v) => v.version)).toEqual([prev]);
    const after = await registry();
    expect(after.production).toMatchObject({ version: prev, kind: 'rollback', by: 'bob', reason: 'x' });
    expect(after.traffic).toBeNull();
  });

  it('really deploys a re-run of a lifecycle cancelled during its canary (opIds per run)', async () => {
    const stable = (await registry()).production!.version;
    const spec = testSpec(model, 'v5', 'good', (s) => (s.rollout.canary.bake = 4000));
    const run1 = await stack.lifecycles.start(spec);
    const { id } = run1;
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
    await stack.lifecycles.approve(id, { by: 'alice' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary');
    expect((await routing()).weights).toEqual({ v5: 10, [stable]: 90 });
    const handle = stack.client.workflow.getHandle(id);
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow(/cancel/i);
    expect((await handle.describe()).status.name).toBe('CANCELLED');
    expect((await stack.lifecycles.status(id)).stage).toBe('rolled-back');
    const undone = await routing();
    expect(undone.weights).toEqual({ [stable]: 100 });
    expect(undone.versions.map((v) => v.version)).toEqual([stable]);

    // ALLOW_DUPLICATE_FAILED_ONLY lets a cancelled lifecycle run again under its id.
    const run2 = await stack.lifecycles.start(spec);
    expect(run2.id).toBe(id);
    expect(run2.runId).not.toBe(run1.runId);
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
    await stack.lifecycles.approve(id, { by: 'alice' });
    const canary = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary');
    expect(canary.trafficPercent).toBe(10);
    const live = await routing();
    expect(live.versions.map((v) => v.version)).toContain('v5');
    expect(live.weights).toEqual({ v5: 10, [stable]: 90 });
    const end = await waitForStatus(stack.lifecycles, id, (s) =>
      ['promoted', 'rolled-back', 'rollback-stuck', 'failed', 'rejected'].includes(s.stage),
    );
    expect(end.stage, JSON.stringify(end.error)).toBe('promoted');
    expect((await routing()).weights).toEqual({ v5: 100 });
    expect((await registry()).production).toMatchObject({ version: 'v5', lifecycleId: id, runId: run2.runId });

    // The gateway journal holds both runs' ops, each run under its own run part, each deploy applied.
    const res = await stack.gateway.admin(`/admin/ops?model=${model}`);
    expect(res.status).toBe(200);
    const ops = ((await res.json()) as JournalEntry[]).filter((op) => op.opId.startsWith(`${id}@`));
    const runParts = new Set(ops.map((op) => op.opId.slice(id.length + 1).split(':')[0]));
    const [r1, r2] = [runTag(run1.runId), runTag(run2.runId)];
    expect(r1).not.toBe(r2);
    expect([...runParts].sort()).toEqual([r1, r2].sort());
    const op = (run: string, name: string) => ops.find((o) => o.opId === `${id}@${run}:${name}`);
    expect(op(r1, 'deploy')).toMatchObject({ kind: 'deploy', version: 'v5', applied: true });
    expect(op(r1, 'rollback-undeploy')).toMatchObject({ kind: 'undeploy', version: 'v5', applied: true });
    expect(op(r2, 'deploy')).toMatchObject({ kind: 'deploy', version: 'v5', applied: true });
    expect(op(r2, 'weights:0')).toMatchObject({
      kind: 'set-weights',
      weights: { v5: 10, [stable]: 90 },
      applied: true,
    });
  });
});
