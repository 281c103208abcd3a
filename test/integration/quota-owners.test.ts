import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { generateApproverKey, operationClaim, signOperation } from '../../src/client/approval-signing';
import { QuotaClient, QuotaOperationError } from '../../src/client/quota-client';
import { runMlctl } from '../../src/cli/mlctl';
import { ErrorType } from '../../src/shared/errors';
import { reserveQuotaUpdate } from '../../src/shared/messages';
import {
  ownerDigest,
  QuotaPoolsFile,
  quotaPoolWorkflowId,
  type QuotaPoolConfigInput,
  type QuotaPoolState,
} from '../../src/shared/quota';
import { OperationTarget } from '../../src/shared/signed-operation';
import {
  approveAll,
  liveTraffic,
  OPEN_POLICY,
  poolState,
  recordHistory,
  startStack,
  testSpec,
  uniqueName,
  WORKER_SECRET,
  type Stack,
} from '../helpers/harness';
import { tempDir } from '../helpers/temp';

const dir = tempDir('mll-quota-owners-');
const policyFile = join(dir, 'policy.yaml');
const keyringFile = join(dir, 'approvers.yaml');
const poolsFile = join(dir, 'pools.yaml');
const ops = generateApproverKey();
const mallory = generateApproverKey();
const opsKeyFile = join(dir, 'ops.pem');

const DEFAULT_POOL: QuotaPoolConfigInput = { name: 'default', capacity: { cpu: 64, memoryGiB: 256 } };
const OWNED = uniqueName('owned');
const TINY = uniqueName('tiny');
const pools = QuotaPoolsFile.parse({
  pools: [DEFAULT_POOL, { name: OWNED, capacity: { cpu: 8 } }, { name: TINY, capacity: { cpu: 1 } }],
});

/**
 * Signatures required for every operation (the defaults), and quota operators `ops`. The `churn*` rule lets its
 * models go unsigned: a pool is no model, so it must not apply to lease operations.
 */
const SIGNED_POLICY = {
  version: 1,
  defaults: { approval: { approvers: ['alice', 'bob'] }, signatures: { required: true } },
  models: [{ match: 'churn*', signatures: { required: false } }],
  quota: { operators: ['ops'] },
};

/** The pool's refusal of an operation sent on its own: its failure type and message. */
async function refusal(call: Promise<unknown>): Promise<{ type: string | undefined; message: string }> {
  const err = await call.then(
    () => expect.fail('the pool did it'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
  const cause = (err as WorkflowUpdateFailedError).cause;
  expect(cause).toBeInstanceOf(ApplicationFailure);
  return { type: (cause as ApplicationFailure).type ?? undefined, message: (cause as ApplicationFailure).message };
}

/** The pool's refusal of one operation of a batch. */
async function batchRefusal(call: Promise<unknown>): Promise<QuotaOperationError> {
  const err = await call.then(
    () => expect.fail('the pool did it'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(QuotaOperationError);
  return err as QuotaOperationError;
}

/** Activities the pool's workflow has scheduled so far (its policy checks). */
async function activitiesScheduled(stack: Stack, pool: string): Promise<number> {
  const history = await stack.client.workflow.getHandle(quotaPoolWorkflowId(pool)).fetchHistory();
  return (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes).length;
}

const lastJournal = (state: QuotaPoolState, op: string, leaseId: string) =>
  state.journal.filter((j) => j.op === op && j.leaseId === leaseId).at(-1);

describe('quota leases are owned (review M6), on a real dev server', () => {
  let stack: Stack;
  /** The workers' own client: the secret every worker of the deployment shares. */
  let worker: QuotaClient;
  /** Another process: a secret of its own, so it owns only what it reserves itself. */
  let stranger: QuotaClient;
  let owner: QuotaClient;

  beforeAll(async () => {
    writeFileSync(policyFile, readFileSync(OPEN_POLICY, 'utf8'));
    writeFileSync(
      keyringFile,
      stringify({ approvers: { ops: { keys: [ops.publicKey] }, mallory: { keys: [mallory.publicKey] } } }),
    );
    writeFileSync(opsKeyFile, ops.privateKeyPem, { mode: 0o600 });
    writeFileSync(poolsFile, stringify({ pools: pools.pools }));
    stack = await startStack({
      pool: DEFAULT_POOL,
      pools: pools.pools.slice(1),
      policyFile,
      approverKeysFile: keyringFile,
    });
    worker = new QuotaClient(stack.client, pools, { ownerSecret: WORKER_SECRET });
    stranger = new QuotaClient(stack.client, pools);
    owner = new QuotaClient(stack.client, pools);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("hands serving leases from one lifecycle to the next by the workers' key, and refuses a stranger's release", async () => {
    const model = uniqueName('owned');
    const load = liveTraffic(stack.gateway.url, model, 100);
    try {
      const v1 = await stack.lifecycles.start(testSpec(model, 'v1'));
      expect((await approveAll(stack.lifecycles, v1.id)).stage).toBe('promoted');
      const v1Lease = `serve:${model}:v1`;
      expect((await poolState(stack.client)).leases.find((l) => l.leaseId === v1Lease)).toMatchObject({
        holder: `${model}/v1`,
        ttlMs: null,
      });

      // A stranger's release of production's lease: without a key, in a batch; then naming someone the policy
      // does not allow. Both refused, nothing changed.
      const unnamed = await batchRefusal(stranger.release('default', { leaseId: v1Lease }));
      expect(unnamed.type).toBe(ErrorType.Unauthorized);
      expect(unnamed.message).toMatch(/release of lease .* without its owner's key is a privileged operation/);
      const named = await refusal(stranger.release('default', { leaseId: v1Lease, by: 'mallory' }));
      expect(named).toEqual({
        type: ErrorType.Unauthorized,
        message: expect.stringMatching(/^mallory may not quota-release this lease: policy rule defaults allows alice/),
      });
      expect((await batchRefusal(stranger.renew('default', { leaseId: v1Lease, ttlMs: 1000 }))).type).toBe(
        ErrorType.Unauthorized,
      );
      const state = await poolState(stack.client);
      expect(state.leases.find((l) => l.leaseId === v1Lease)).toMatchObject({ ttlMs: null, expiresAt: null });
      // Neither the owner key nor its digest is ever shown.
      const key = worker.ownerKey('default', v1Lease);
      expect(JSON.stringify(state)).not.toContain(key);
      expect(JSON.stringify(state)).not.toContain(ownerDigest(key));

      // The next version's promotion (another workflow) releases its predecessor's lease as its owner.
      const v2 = await stack.lifecycles.start(testSpec(model, 'v2'));
      const end = await approveAll(stack.lifecycles, v2.id);
      expect(end.stage, JSON.stringify(end.decisions.filter((d) => d.outcome !== 'pass'))).toBe('promoted');
      const after = await poolState(stack.client);
      expect(after.leases.map((l) => l.leaseId)).not.toContain(v1Lease);
      const run = after.runs.filter((r) => r.leaseId === v1Lease).at(-1);
      expect(run).toMatchObject({ ended: 'released', holder: `${model}/v1` });
      expect(run?.releasedBy).toBeUndefined();

      // Any worker of the deployment (the same secret) owns v2's lease too.
      const v2Lease = `serve:${model}:v2`;
      expect(await worker.renew('default', { leaseId: v2Lease, ttlMs: null })).toMatchObject({ leaseId: v2Lease });
      expect(await worker.release('default', { leaseId: v2Lease })).toMatchObject({ leaseId: v2Lease });
    } finally {
      await load.stop();
    }
  });

  it('lets the key a lease was reserved with renew and release it, and no other key', async () => {
    const key = randomBytes(32).toString('base64url');
    const granted = await stranger.reserve(OWNED, {
      leaseId: 'own-1',
      holder: 'etl',
      kind: 'data',
      resources: { cpu: 2 },
      ownerKey: key,
    });
    expect(granted.granted).toBe(true);
    // This client's own key for the lease, and a made-up one: not the owner's.
    expect((await batchRefusal(stranger.release(OWNED, { leaseId: 'own-1' }))).type).toBe(ErrorType.Unauthorized);
    const wrong = await batchRefusal(stranger.release(OWNED, { leaseId: 'own-1', ownerKey: 'w'.repeat(43) }));
    expect(wrong.message).toMatch(/not taken in a batch: send it on its own/);
    const state = (await stranger.state(OWNED))!;
    expect(state.leases.map((l) => l.leaseId)).toEqual(['own-1']);
    expect(JSON.stringify(state)).not.toContain(key);
    expect(JSON.stringify(state)).not.toContain(ownerDigest(key));

    const renewed = await owner.renew(OWNED, { leaseId: 'own-1', ownerKey: key, ttlMs: 60_000 });
    expect(Date.parse(renewed!.expiresAt!)).toBeGreaterThan(Date.now() + 50_000);
    expect(await owner.release(OWNED, { leaseId: 'own-1', ownerKey: key })).toMatchObject({ leaseId: 'own-1' });
    expect(await owner.release(OWNED, { leaseId: 'own-1', ownerKey: key })).toBeNull();

    // A client owns what it reserved (its own key, derived the same way each time).
    await owner.reserve(OWNED, { leaseId: 'own-2', holder: 'etl', kind: 'data', resources: { cpu: 1 } });
    expect(await owner.release(OWNED, { leaseId: 'own-2' })).toMatchObject({ leaseId: 'own-2' });
    expect((await owner.state(OWNED))!.journal.filter((j) => j.by !== undefined)).toEqual([]);
  });

  it('answers null for a lease the pool does not hold, without asking the worker', async () => {
    await owner.reserve(OWNED, { leaseId: 'probe', holder: 'etl', kind: 'data', resources: { cpu: 1 } });
    await owner.release(OWNED, { leaseId: 'probe' });
    const before = await activitiesScheduled(stack, OWNED);
    expect(await stranger.release(OWNED, { leaseId: 'no-such-lease', by: 'mallory' })).toBeNull();
    expect(await stranger.renew(OWNED, { leaseId: 'no-such-lease' })).toBeNull();
    expect(await activitiesScheduled(stack, OWNED)).toBe(before);
  });

  it("lets a quota operator or the lease's holder release another's lease where the policy allows it unsigned", async () => {
    await owner.reserve(OWNED, { leaseId: 'op-1', holder: 'etl', kind: 'data', resources: { cpu: 1 } });
    await owner.reserve(OWNED, { leaseId: 'h-1', holder: 'nightly', kind: 'data', resources: { cpu: 1 } });
    expect(await stranger.release(OWNED, { leaseId: 'op-1', by: 'ops' })).toMatchObject({ leaseId: 'op-1' });
    expect(await stranger.release(OWNED, { leaseId: 'h-1', by: 'nightly' })).toMatchObject({ leaseId: 'h-1' });
    const state = (await stranger.state(OWNED))!;
    expect(lastJournal(state, 'release', 'op-1')).toMatchObject({ by: 'ops', holder: 'etl' });
    expect(lastJournal(state, 'release', 'op-1')?.keyId).toBeUndefined();
    expect(state.runs.find((r) => r.leaseId === 'h-1')).toMatchObject({ ended: 'released', releasedBy: 'nightly' });
  });

  it('closes the tiny-request hole: a full pool grants nothing, and amounts below 0.001 are refused', async () => {
    expect(
      await owner.reserve(TINY, { leaseId: 'all', holder: 'etl', kind: 'data', resources: { cpu: 1 } }),
    ).toMatchObject({ granted: true });
    expect(
      await owner.reserve(TINY, { leaseId: 'crumb', holder: 'etl2', kind: 'data', resources: { cpu: 0.001 } }),
    ).toMatchObject({ granted: false, reason: 'capacity' });
    // The client checks with the pool's schema; the pool refuses the same when sent directly.
    await expect(
      owner.reserve(TINY, { leaseId: 'dust', holder: 'etl2', kind: 'data', resources: { cpu: 1e-10 } }),
    ).rejects.toThrow(/0 or at least 0\.001/);
    const direct = await refusal(
      stack.client.workflow.getHandle(quotaPoolWorkflowId(TINY)).executeUpdate(reserveQuotaUpdate, {
        args: [{ leaseId: 'dust', holder: 'etl2', kind: 'data', resources: { cpu: 1e-10 } }],
      }),
    );
    expect(direct).toEqual({
      type: ErrorType.InvalidInput,
      message: expect.stringMatching(/resources\.cpu: 0 or at least 0\.001/),
    });
    const state = (await owner.state(TINY))!;
    expect(state.leases.map((l) => l.leaseId)).toEqual(['all']);
    expect(state.used).toEqual({ cpu: 1 });
  });

  describe('under a policy that requires signatures', () => {
    beforeAll(() => {
      // The worker re-reads the policy when it changes.
      writeFileSync(policyFile, stringify(SIGNED_POLICY));
    });

    const signedBy = (key: string, by: string, op: 'quota-release' | 'quota-renew', pool: string, leaseId: string) =>
      signOperation(operationClaim({ op, target: OperationTarget.lease(pool, leaseId), by }), key);

    it("refuses an operator's unsigned release, takes a signed one and records who and which key", async () => {
      await owner.reserve(OWNED, { leaseId: 's-1', holder: 'etl', kind: 'data', resources: { cpu: 1 } });
      expect(await refusal(stranger.release(OWNED, { leaseId: 's-1', by: 'ops' }))).toEqual({
        type: ErrorType.Unauthorized,
        message: expect.stringMatching(/^policy rule defaults requires a signed quota-release/),
      });
      // Signed by another person's key, or for another lease: refused too.
      const forged = signedBy(mallory.privateKeyPem, 'ops', 'quota-release', OWNED, 's-1');
      expect((await refusal(stranger.release(OWNED, { leaseId: 's-1', by: 'ops', signed: forged }))).message).toMatch(
        /not a registered key of ops/,
      );
      const elsewhere = signedBy(ops.privateKeyPem, 'ops', 'quota-release', OWNED, 's-other');
      expect(
        (await refusal(stranger.release(OWNED, { leaseId: 's-1', by: 'ops', signed: elsewhere }))).message,
      ).toMatch(/the signed claim is for target/);
      expect((await stranger.state(OWNED))!.leases.map((l) => l.leaseId)).toContain('s-1');

      const renewal = signedBy(ops.privateKeyPem, 'ops', 'quota-renew', OWNED, 's-1');
      expect(await stranger.renew(OWNED, { leaseId: 's-1', ttlMs: 120_000, by: 'ops', signed: renewal })).toMatchObject(
        {
          leaseId: 's-1',
          ttlMs: 120_000,
        },
      );
      const signed = signedBy(ops.privateKeyPem, 'ops', 'quota-release', OWNED, 's-1');
      expect(await stranger.release(OWNED, { leaseId: 's-1', by: 'ops', signed })).toMatchObject({ leaseId: 's-1' });
      const state = (await stranger.state(OWNED))!;
      expect(lastJournal(state, 'renew', 's-1')).toMatchObject({ by: 'ops', keyId: ops.keyId });
      expect(lastJournal(state, 'release', 's-1')).toMatchObject({ by: 'ops', keyId: ops.keyId });
      expect(state.runs.filter((r) => r.leaseId === 's-1').at(-1)).toMatchObject({
        releasedBy: 'ops',
        keyId: ops.keyId,
      });
    });

    it('refuses a signed claim used a second time', async () => {
      const claim = signedBy(ops.privateKeyPem, 'ops', 'quota-release', OWNED, 's-2');
      await owner.reserve(OWNED, { leaseId: 's-2', holder: 'etl', kind: 'data', resources: { cpu: 1 } });
      expect(await stranger.release(OWNED, { leaseId: 's-2', by: 'ops', signed: claim })).toMatchObject({
        leaseId: 's-2',
      });
      // The same lease id granted again: the claim names it, but it was spent.
      await owner.reserve(OWNED, { leaseId: 's-2', holder: 'etl', kind: 'data', resources: { cpu: 1 } });
      expect(await refusal(stranger.release(OWNED, { leaseId: 's-2', by: 'ops', signed: claim }))).toEqual({
        type: ErrorType.Unauthorized,
        message: expect.stringMatching(/nonce .* was already used: replayed/),
      });
      expect((await stranger.state(OWNED))!.leases.map((l) => l.leaseId)).toContain('s-2');
      expect(await owner.release(OWNED, { leaseId: 's-2' })).toMatchObject({ leaseId: 's-2' });
    });

    it('mlctl quota release needs --as (exit 2), is refused for a stranger (exit 4) and signs with --key', async () => {
      await owner.reserve(OWNED, { leaseId: 'cli-1', holder: 'etl', kind: 'data', resources: { cpu: 1 } });
      const saved = process.env.TEMPORAL_ADDRESS;
      process.env.TEMPORAL_ADDRESS = stack.address;
      try {
        const mlctl = (...args: string[]) => runMlctl(['quota', ...args, '--pools', poolsFile]);
        expect(await mlctl('release', OWNED, 'cli-1')).toBe(2);
        expect(await mlctl('renew', OWNED, 'cli-1')).toBe(2);
        expect(await mlctl('release', OWNED, 'cli-1', '--as', 'mallory')).toBe(4);
        expect(await mlctl('release', OWNED, 'cli-1', '--as', 'ops')).toBe(4);
        expect((await owner.state(OWNED))!.leases.map((l) => l.leaseId)).toContain('cli-1');
        expect(await mlctl('renew', OWNED, 'cli-1', '--as', 'ops', '--key', opsKeyFile)).toBe(0);
        expect(await mlctl('release', OWNED, 'cli-1', '--as', 'ops', '--key', opsKeyFile)).toBe(0);
        expect((await owner.state(OWNED))!.leases.map((l) => l.leaseId)).not.toContain('cli-1');
        expect(lastJournal((await owner.state(OWNED))!, 'release', 'cli-1')).toMatchObject({
          by: 'ops',
          keyId: ops.keyId,
        });
      } finally {
        if (saved === undefined) delete process.env.TEMPORAL_ADDRESS;
        else process.env.TEMPORAL_ADDRESS = saved;
      }
      // `RECORD_HISTORIES=1 npx vitest run test/integration/quota-owners.test.ts` refreshes the replay fixture: a pool
      // with owners' operations, refusals and policy checks (allowed, refused, replayed).
      await recordHistory(stack.client, quotaPoolWorkflowId(OWNED), 'quota-pool-owners');
    });
  });
});
