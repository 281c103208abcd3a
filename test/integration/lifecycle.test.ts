import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorType } from '../../src/shared/errors';
import { lifecycleWorkflowId } from '../../src/shared/spec';
import type { LoadGenerator } from '../../src/dev/load-generator';
import {
  approveAll,
  EXAMPLE,
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

/** Lifecycles end to end on a real dev server, with the real trainer, gateway and live HTTP traffic. */
describe('model lifecycle on a real Temporal dev server', () => {
  let stack: Stack;
  let load: LoadGenerator;
  const model = uniqueName('churn');
  /** A pool too small for any training hardware of the catalog. */
  const TINY = uniqueName('tiny');

  beforeAll(async () => {
    stack = await startStack({ pools: [{ name: TINY, capacity: { cpu: 2, memoryGiB: 64 } }] });
    load = liveTraffic(stack.gateway.url, model);
  });
  afterAll(async () => {
    await load?.stop();
    await stack?.close();
  });

  /** `RECORD_HISTORIES=1 npx vitest run test/integration/lifecycle.test.ts` refreshes the replay fixtures. */
  const record = (id: string, name: string) => recordHistory(stack.client, id, name);
  /** The gateway's routing for the model; a model with no version deployed (404) routes nothing. */
  const routing = async (): Promise<{ weights: Record<string, number>; versions: { version: string }[] }> => {
    const res = await stack.gateway.admin(`/admin/models/${model}`);
    if (res.status === 404) return { weights: {}, versions: [] };
    expect(res.status).toBe(200);
    return (await res.json()) as { weights: Record<string, number>; versions: { version: string }[] };
  };
  const leasesOf = async (id: string) =>
    (await poolState(stack.client)).leases.filter((l) => l.holder === id || l.leaseId.startsWith(id));

  it('deploys a first version to all traffic when the model has no production version', async () => {
    const { id } = await stack.lifecycles.start(testSpec(model, 'v1'));
    const end = await approveAll(stack.lifecycles, id);
    expect(end.stage).toBe('promoted');
    expect(end.trafficPercent).toBe(100);
    expect((await routing()).weights).toEqual({ v1: 100 });
  });

  it('promotes a good candidate to 100% through canary and ramp stages', async () => {
    const { id } = await stack.lifecycles.start(testSpec(model, 'v2'));
    const end = await approveAll(stack.lifecycles, id);
    expect(end.stage, JSON.stringify(end.decisions.filter((d) => d.outcome !== 'pass'))).toBe('promoted');
    expect(end.trafficPercent).toBe(100);
    expect(end.stableVersion).toBe('v1');
    expect(end.approvals).toEqual([expect.objectContaining({ gate: 'deploy', by: 'alice', decision: 'approved' })]);
    const stages = new Set(end.decisions.map((d) => d.stage));
    expect([...stages]).toEqual(['validating', 'canary', 'ramping:50', 'ramping:100']);
    // The test set was compared with the training profile stored with the artifact (R10) ...
    expect(end.decisions.find((d) => d.check === 'testData.drift')).toMatchObject({
      outcome: 'pass',
      sampleSize: 1200,
      detail: '6 features compared, none drifted',
    });
    // ... and every stage compared the candidate's live inputs with it.
    const skew = end.decisions.filter((d) => d.check === 'featureSkew');
    expect(skew.map((d) => d.stage)).toEqual(['canary', 'ramping:50', 'ramping:100']);
    expect(skew.every((d) => d.outcome === 'pass' && d.sampleSize! >= 60)).toBe(true);
    expect(end.decisions.filter((d) => d.stage !== 'validating').every((d) => d.outcome === 'pass')).toBe(true);
    const r = await routing();
    expect(r.weights).toEqual({ v2: 100 });
    expect(r.versions.map((v) => v.version)).toEqual(['v2']);
    expect(await leasesOf(id)).toEqual([]);
    await record(id, 'lifecycle-promoted');
  });

  it('rolls back a bad candidate caught by prediction drift in the canary, keeping the evidence', async () => {
    const { id } = await stack.lifecycles.start(testSpec(model, 'v3', 'bad'));
    const end = await approveAll(stack.lifecycles, id);
    expect(end.stage, JSON.stringify(end.decisions.filter((d) => d.check === 'predictionDrift'))).toBe('rolled-back');
    expect(end.trafficPercent).toBe(0);
    const breached = end.decisions.filter((d) => d.outcome === 'fail');
    expect(breached.map((d) => [d.stage, d.check])).toEqual([['canary', 'predictionDrift']]);
    expect(breached[0]!.value).toBeGreaterThan(breached[0]!.threshold!);
    expect(breached[0]!.sampleSize).toBeGreaterThanOrEqual(60);
    const r = await routing();
    expect(r.weights).toEqual({ v2: 100 });
    expect(r.versions.map((v) => v.version)).toEqual(['v2']);
    expect(await leasesOf(id)).toEqual([]);
    expect(await leasesOf(`serve:${model}:v3`)).toEqual([]);
    await expect
      .poll(() => stack.alerts.some((a) => a.kind === 'rollback' && a.lifecycleId === id), { timeout: 15_000 })
      .toBe(true);
    await record(id, 'lifecycle-rolled-back');
  });

  it('rolls back a candidate whose live inputs are not what it was trained on (training-serving skew)', async () => {
    // The candidate's pipeline trained on charges in another unit (×1.6): validation on its own test split is
    // consistent, but live traffic carries the charges as they are.
    const dataDir = tempDir('skewed-data-');
    for (const name of ['train.csv', 'test.csv']) {
      const [header, ...rows] = readFileSync(join(EXAMPLE, 'data', name), 'utf8')
        .trim()
        .split('\n');
      const at = header!.split(',').indexOf('monthly_charges');
      const scaled = rows.map((line) => {
        const cells = line.split(',');
        cells[at] = (Number(cells[at]) * 1.6).toFixed(2);
        return cells.join(',');
      });
      writeFileSync(join(dataDir, name), `${header}\n${scaled.join('\n')}\n`);
    }
    const { id } = await stack.lifecycles.start(testSpec(model, 'v3s', 'good', (s) => (s.training.dataDir = dataDir)));
    const end = await approveAll(stack.lifecycles, id);
    expect(end.stage, JSON.stringify(end.decisions.filter((d) => d.outcome !== 'pass'))).toBe('rolled-back');
    expect(end.decisions.find((d) => d.check === 'testData.drift')?.outcome).toBe('pass');
    const skew = end.decisions.find((d) => d.check === 'featureSkew' && d.outcome === 'fail');
    expect(skew).toMatchObject({ stage: 'canary', threshold: 0.5 });
    expect(skew!.value).toBeGreaterThan(0.5);
    expect(skew!.detail).toMatch(/^skewed: monthly_charges PSI=[\d.]+ p=/);
    expect((await routing()).weights).toEqual({ v2: 100 });
    expect(await leasesOf(id)).toEqual([]);
  });

  it('ends rejected with nothing deployed and quota released when an approver rejects', async () => {
    const { id } = await stack.lifecycles.start(testSpec(model, 'v4'));
    const waiting = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
    expect(waiting.stage).toBe('awaiting-approval');
    await stack.lifecycles.reject(id, { by: 'bob', reason: 'not this week' });
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rejected');
    expect(end.approvals).toEqual([
      expect.objectContaining({ gate: 'deploy', by: 'bob', decision: 'rejected', reason: 'not this week' }),
    ]);
    expect(end.trafficPercent).toBe(0);
    expect((await routing()).versions.map((v) => v.version)).not.toContain('v4');
    expect(await leasesOf(id)).toEqual([]);
  });

  it('ends rejected when nobody approves before the approval timeout', async () => {
    const { id } = await stack.lifecycles.start(testSpec(model, 'v5', 'good', (s) => (s.approval.timeout = 2000)));
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rejected');
    expect(end.error?.type).toBe('ApprovalTimeout');
    expect(end.approvals).toEqual([
      expect.objectContaining({ gate: 'deploy', by: 'system', decision: 'rejected', reason: 'approval timed out' }),
    ]);
    expect((await routing()).versions.map((v) => v.version)).not.toContain('v5');
    expect(await leasesOf(id)).toEqual([]);
    await expect
      .poll(() => stack.alerts.some((a) => a.kind === 'approval-timeout' && a.lifecycleId === id), { timeout: 15_000 })
      .toBe(true);
  });

  it('refuses approvals from someone not in the approver list and from the submitter', async () => {
    const { id } = await stack.lifecycles.start(testSpec(model, 'v6'));
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
    await expect(stack.lifecycles.approve(id, { by: 'mallory' })).rejects.toThrow(/not an approver/);
    await expect(stack.lifecycles.approve(id, { by: 'ci@pipelines' })).rejects.toThrow(/submitted this lifecycle/);
    const s = await stack.lifecycles.status(id);
    expect(s.approvals).toEqual([]);
    expect(s.stage).toBe('awaiting-approval');
    await stack.lifecycles.abort(id, { by: 'bob', reason: 'test over' });
    const end = await waitForStatus(stack.lifecycles, id, (x) => x.stage === 'rejected');
    expect(end.error?.type).toBe('Aborted');
  });

  it('fails non-retryably when the trainer rejects its parameters, releasing the training lease', async () => {
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v7', 'good', (s) => (s.training.params = { algorithm: 'quantum_forest' })),
    );
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'failed');
    expect(end.error?.type).toBe(ErrorType.TrainingFailed);
    expect(end.error?.message).toMatch(/exited with code 2/);
    expect(await leasesOf(id)).toEqual([]);
    await expect
      .poll(() => stack.alerts.find((a) => a.kind === 'training-failed' && a.lifecycleId === id), { timeout: 15_000 })
      .toBeDefined();
    expect(stack.alerts.find((a) => a.kind === 'training-failed' && a.lifecycleId === id)?.details).toMatchObject({
      exitCode: 2,
    });
    expect(id).toBe(lifecycleWorkflowId(model, 'v7'));
  });

  it('fails naming every refused hardware option when the quota pool cannot hold any of them', async () => {
    const { id } = await stack.lifecycles.start(testSpec(model, 'v8', 'good', (s) => (s.quota.pool = TINY)));
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'failed');
    expect(end.error?.type).toBe(ErrorType.QuotaRefused);
    // cpu-4 needs 4 cpu of the 2 this pool has; the GPU options need GPUs it does not have.
    expect(end.error?.message).toMatch(
      /^no training hardware could be reserved: cpu-4 \(never-fits: cpu needs 4, 2 of 2\)/,
    );
    expect(end.error?.message).toMatch(/gpu-t4 \(never-fits: [^)]*gpu:t4 needs 1, 0 of 0\)/);
    expect(end.events.filter((e) => /refused by pool/.test(e.message)).length).toBeGreaterThanOrEqual(2);
    expect(end.events.some((e) => e.stage === 'training')).toBe(false);
    expect((await poolState(stack.client, TINY)).leases).toEqual([]);
    await expect
      .poll(() => stack.alerts.find((a) => a.kind === 'quota-refused' && a.lifecycleId === id), { timeout: 15_000 })
      .toBeDefined();
    const refused = stack.alerts.find((a) => a.kind === 'quota-refused' && a.lifecycleId === id);
    expect(refused?.details).toMatchObject({
      refusals: expect.arrayContaining([expect.objectContaining({ device: 'cpu-4', reason: 'never-fits' })]) as unknown,
    });
  });

  it('holds a paused rollout at the next stage boundary, and an abort then rolls it back', async () => {
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v9', 'good', (s) => {
        s.rollout.canary.bake = 4000;
      }),
    );
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
    await stack.lifecycles.approve(id, { by: 'alice' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary');
    await stack.lifecycles.pause(id, { by: 'olivia', reason: 'holding for the release freeze' });
    // The canary bakes, passes its checks, and then the rollout waits instead of ramping.
    const held = await waitForStatus(stack.lifecycles, id, (s) =>
      s.events.some((e) => e.message === 'canary passed its checks'),
    );
    expect(held.paused).toBe(true);
    await new Promise((r) => setTimeout(r, 2000));
    const still = await stack.lifecycles.status(id);
    expect(still.stage).toBe('canary');
    expect(still.trafficPercent).toBe(10);
    await stack.lifecycles.abort(id, { by: 'olivia', reason: 'freeze extended' });
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rolled-back');
    expect(end.trafficPercent).toBe(0);
    expect(end.error).toMatchObject({ message: 'aborted by olivia: freeze extended' });
    expect(end.events.map((e) => e.message)).toEqual(
      expect.arrayContaining([
        'paused by olivia: holding for the release freeze',
        'abort requested by olivia: freeze extended',
      ]),
    );
    expect((await routing()).versions.map((v) => v.version)).not.toContain('v9');
    expect(await leasesOf(`serve:${model}:v9`)).toEqual([]);
  });

  it('retries a trainer process that was killed mid-run, and trains to completion', async () => {
    const { id } = await stack.lifecycles.start(testSpec(model, 'v10'));
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'training');
    // The trainer is a real process; find it by its output folder (named after the lifecycle) and kill it.
    let pid: number | undefined;
    const deadline = Date.now() + 30_000;
    while (pid === undefined && Date.now() < deadline) {
      const found = spawnSync('pgrep', ['-f', `train.py.*${id}`], { encoding: 'utf8' })
        .stdout.trim()
        .split('\n')[0];
      if (found) pid = Number(found);
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGKILL');
    const waiting = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null || s.stage === 'failed');
    expect(waiting.stage).toBe('awaiting-approval');
    expect(waiting.events.find((e) => e.message.startsWith('trained in'))?.message).toMatch(/\(attempt 2\)/);
    await stack.lifecycles.reject(id, { by: 'bob', reason: 'only testing the retry' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rejected');
  });

  it('rolls back and releases everything when the workflow is cancelled from outside during the canary', async () => {
    const { id } = await stack.lifecycles.start(
      testSpec(model, 'v11', 'good', (s) => (s.rollout.canary.bake = 60_000)),
    );
    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
    await stack.lifecycles.approve(id, { by: 'alice' });
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary');
    const handle = stack.client.workflow.getHandle(id);
    await handle.cancel();
    await expect(handle.result()).rejects.toThrow(/cancel/i);
    const end = await stack.lifecycles.status(id);
    expect(end.stage).toBe('rolled-back');
    expect(end.trafficPercent).toBe(0);
    expect((await routing()).versions.map((v) => v.version)).not.toContain('v11');
    expect(await leasesOf(`serve:${model}:v11`)).toEqual([]);
    expect(await leasesOf(id)).toEqual([]);
  });

  it('rolls the production model back to its previous version under live traffic, losing no request', async () => {
    const before = await stack.lifecycles.history(model);
    const from = before.production!.version;
    const to = before.previous!.version;
    const failedBefore = load.stats.failed;
    const requested = Date.now();
    const result = await stack.lifecycles.rollback(model, { by: 'carol', reason: 'complaints since the release' });
    const tookMs = Date.now() - requested;
    expect(result).toMatchObject({ model, from, to });
    // Traffic goes on through the swap and the unloading of the replaced version.
    const sent = load.stats.sent;
    while (load.stats.sent < sent + 100) await new Promise((r) => setTimeout(r, 50));
    expect(load.stats.failed, JSON.stringify(load.stats.failedBy)).toBe(failedBefore);
    const r = await routing();
    expect(r.weights).toEqual({ [to]: 100 });
    expect(r.versions.map((v) => v.version)).toEqual([to]);
    const after = await stack.lifecycles.history(model);
    expect(after.production).toMatchObject({
      version: to,
      kind: 'rollback',
      by: 'carol',
      reason: 'complaints since the release',
    });
    expect(after.previous?.version).toBe(from);
    // The serving quota follows the traffic: the replaced version's lease is released, the restored one held.
    expect(await leasesOf(`serve:${model}:${from}`)).toEqual([]);
    expect((await leasesOf(`serve:${model}:${to}`)).map((l) => l.expiresAt)).toEqual([null]);
    console.log(
      `rollback ${from} -> ${to}: all traffic moved ${result.trafficMovedMs} ms after start, done in ${tookMs} ms`,
    );

    await expect(stack.lifecycles.rollback(model, { to: 'v404', by: 'carol', reason: 'x' })).rejects.toThrow(
      `version "v404" of "${model}" was never in production`,
    );
    await expect(stack.lifecycles.rollback(uniqueName('none'), { by: 'carol', reason: 'x' })).rejects.toThrow(
      /has no production version to roll back/,
    );
  });

  it('rolls back gradually in steps under live traffic, losing no request', async () => {
    const before = await stack.lifecycles.history(model);
    const from = before.production!.version;
    const to = before.previous!.version;
    const failedBefore = load.stats.failed;
    // Watch the weights while the rollback runs: every table the gateway routes by on the way.
    const seen: string[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const w = JSON.stringify((await routing()).weights);
        if (seen.at(-1) !== w) seen.push(w);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const result = await stack.lifecycles.rollback(model, {
      by: 'carol',
      reason: 'stepwise back',
      steps: [25, 50, 100],
      stepIntervalMs: 1200,
    });
    watching = false;
    await watcher;
    expect(result).toMatchObject({ from, to });
    // The restored version's share went 0 → 25 → 50 → 100, the rest staying on the replaced one meanwhile.
    const shares = seen.map((w) => JSON.parse(w) as Record<string, number>);
    expect(shares.map((x) => x[to] ?? 0).filter((p, i, all) => p !== all[i - 1])).toEqual([0, 25, 50, 100]);
    expect(shares.find((x) => x[to] === 25)).toEqual({ [to]: 25, [from]: 75 });
    expect(shares.at(-1)).toEqual({ [to]: 100 });
    expect(result.trafficMovedMs).toBeGreaterThanOrEqual(2400);
    expect(load.stats.failed, JSON.stringify(load.stats.failedBy)).toBe(failedBefore);
    expect((await routing()).versions.map((v) => v.version)).toEqual([to]);
    await expect(
      stack.lifecycles.rollback(model, { by: 'carol', reason: 'x', steps: [50, 40, 100], stepIntervalMs: 10 }),
    ).rejects.toThrow('rollback steps must increase within (0, 100] and end at 100, got 50, 40, 100');
  });
});
