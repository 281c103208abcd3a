import { createHash, createHmac } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { loadWorkerSecret, QuotaClient, WorkerSecretError } from '../../src/client/quota-client';
import { assess, checkCapacity } from '../../src/domain/quota';
import { allowedFor, modelPolicy, PolicyFile } from '../../src/shared/policy';
import {
  MIN_REQUEST_AMOUNT,
  ownerDigest,
  QuotaPoolConfig,
  QuotaPoolsFile,
  ReleaseQuotaInput,
  ReserveQuotaInput,
  type QuotaLease,
  type Resources,
} from '../../src/shared/quota';
import { authorizeOperation, OperationTarget } from '../../src/shared/signed-operation';
import { describeIssues } from '../../src/shared/spec';
import { tempDir } from '../helpers/temp';

const lease = (leaseId: string, resources: Resources, holder = leaseId): QuotaLease => ({
  leaseId,
  holder,
  kind: 'data',
  resources,
  grantedAt: '2025-01-01T00:00:00.000Z',
  renewedAt: '2025-01-01T00:00:00.000Z',
  expiresAt: null,
  ttlMs: null,
  waitedMs: 0,
});
const problems = (input: unknown) => {
  const r = ReserveQuotaInput.safeParse(input);
  return r.success ? [] : describeIssues(r.error);
};
const base = { leaseId: 'l1', holder: 'etl', kind: 'data' } as const;

describe('tiny requests (review M6)', () => {
  it('refuses an amount below the minimum a pool accounts for, naming the resource', () => {
    expect(MIN_REQUEST_AMOUNT).toBe(0.001);
    expect(problems({ ...base, resources: { cpu: 1e-10 } })).toEqual([
      expect.stringMatching(/^resources\.cpu: 0 or at least 0\.001/),
    ]);
    expect(problems({ ...base, resources: { cpu: 0.0009 } })).not.toEqual([]);
    expect(problems({ ...base, resources: { cpu: 0.001 } })).toEqual([]);
    expect(problems({ ...base, resources: { cpu: 0, memoryGiB: 0.5 } })).toEqual([]);
    expect(problems({ ...base, resources: { cpu: 0 } })).toEqual([
      expect.stringMatching(/^resources: request at least one resource/),
    ]);
  });

  it('grants nothing from a full pool, however small the request the schema lets through', () => {
    const pool = QuotaPoolConfig.parse({ name: 'full', capacity: { cpu: 1 } });
    // Full through float sums: ten leases of 0.1 leave 1.1e-16 "free".
    const held = Array.from({ length: 10 }, (_, i) => lease(`l${i}`, { cpu: 0.1 }));
    expect(assess(pool, held, { holder: 'x', kind: 'data', resources: { cpu: MIN_REQUEST_AMOUNT } })).toMatchObject({
      fits: false,
      reason: 'capacity',
    });
    const exact = [lease('all', { cpu: 1 })];
    expect(assess(pool, exact, { holder: 'x', kind: 'data', resources: { cpu: MIN_REQUEST_AMOUNT } }).fits).toBe(false);
    // What is really free is granted to the last thousandth.
    const most = [lease('most', { cpu: 0.999 })];
    expect(assess(pool, most, { holder: 'x', kind: 'data', resources: { cpu: MIN_REQUEST_AMOUNT } }).fits).toBe(true);
    expect(assess(pool, most, { holder: 'x', kind: 'data', resources: { cpu: 0.002 } }).fits).toBe(false);
  });
});

describe('resources and caps named like Object.prototype members', () => {
  it('caps a resource named toString by its own share, and checks capacity of one named constructor', () => {
    const pool = QuotaPoolConfig.parse({
      name: 'p',
      capacity: { toString: 4, constructor: 2 },
      caps: { perPipeline: { toString: 0.5 }, perKind: { data: { constructor: 0.5 } } },
    });
    const req = (resources: Resources, holder = 'a') => ({ holder, kind: 'data' as const, resources });
    expect(assess(pool, [], req({ toString: 2 })).fits).toBe(true);
    expect(assess(pool, [], req({ toString: 3 }))).toMatchObject({
      fits: false,
      reason: 'never-fits',
      shortfalls: [{ resource: 'toString', limit: 2, scope: 'pipeline' }],
    });
    expect(assess(pool, [lease('x', { toString: 2 }, 'a')], req({ toString: 1 }))).toMatchObject({
      reason: 'pipeline-cap',
    });
    expect(assess(pool, [lease('y', { constructor: 1 }, 'b')], req({ constructor: 1 }))).toMatchObject({
      reason: 'kind-cap',
    });
    expect(checkCapacity(pool, [{ name: 'a', kind: 'data', resources: { toString: 3, valueOf: 1 } }]).problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ resource: 'toString', scope: 'pipeline', limit: 2 }),
        expect.objectContaining({ resource: 'valueOf', scope: 'pool', limit: 0 }),
      ]),
    );
  });

  it('refuses a cap on a member-named resource the pool lacks', () => {
    const r = QuotaPoolConfig.safeParse({ name: 'p', capacity: { cpu: 4 }, caps: { perPipeline: { toString: 0.5 } } });
    expect(r.success).toBe(false);
    expect(describeIssues(r.error!)).toEqual([
      expect.stringMatching(/^caps\.perPipeline\.toString: caps a resource the pool does not have/),
    ]);
  });
});

describe('owner keys', () => {
  it('are 32 to 128 URL-safe characters, and the pool keeps their SHA-256 only', () => {
    const key = 'k'.repeat(43);
    expect(problems({ ...base, resources: { cpu: 1 }, ownerKey: key })).toEqual([]);
    expect(problems({ ...base, resources: { cpu: 1 }, ownerKey: 'short' })).toEqual([
      expect.stringMatching(/^ownerKey: an owner key: 32 to 128/),
    ]);
    expect(problems({ ...base, resources: { cpu: 1 }, ownerKey: `${'k'.repeat(40)}/+=` })).not.toEqual([]);
    expect(problems({ ...base, resources: { cpu: 1 }, ownerKey: 'k'.repeat(129) })).not.toEqual([]);
    expect(ownerDigest(key)).toBe(createHash('sha256').update(key).digest('hex'));
    const release = ReleaseQuotaInput.safeParse({ leaseId: 'l1', by: 'not an identity' });
    expect(release.success).toBe(false);
  });

  it("derive from the worker's secret per pool and lease: the same in every worker, different per lease", () => {
    const secret = 's'.repeat(40);
    const pools = QuotaPoolsFile.parse({ pools: [{ name: 'default', capacity: { cpu: 1 } }] });
    const a = new QuotaClient({} as Client, pools, { ownerSecret: secret });
    const b = QuotaClient.forWorker({} as Client, pools, secret);
    const expected = createHmac('sha256', secret).update('default/serve:churn:v7').digest('base64url');
    expect(a.ownerKey('default', 'serve:churn:v7')).toBe(expected);
    expect(b.ownerKey('default', 'serve:churn:v7')).toBe(expected);
    expect(a.ownerKey('default', 'serve:churn:v8')).not.toBe(expected);
    expect(a.ownerKey('other', 'serve:churn:v7')).not.toBe(expected);
    expect(ReserveQuotaInput.shape.ownerKey.safeParse(expected).success).toBe(true);
    // A client without a secret owns only what it reserves itself.
    expect(new QuotaClient({} as Client, pools).ownerKey('default', 'serve:churn:v7')).not.toBe(expected);
    expect(() => new QuotaClient({} as Client, pools, { ownerSecret: 'too short' })).toThrow(WorkerSecretError);
  });

  it('reads the worker secret from ML_WORKER_SECRET, its file, or makes one in the data folder once', () => {
    const dir = tempDir('mll-secret-');
    expect(loadWorkerSecret({ ML_WORKER_SECRET: 'x'.repeat(32) })).toBe('x'.repeat(32));
    expect(() => loadWorkerSecret({ ML_WORKER_SECRET: 'x'.repeat(31) })).toThrow(/ML_WORKER_SECRET: .*at least 32/);
    const file = join(dir, 'secret');
    writeFileSync(file, `${'y'.repeat(40)}\n`);
    expect(loadWorkerSecret({ ML_WORKER_SECRET_FILE: file })).toBe('y'.repeat(40));
    expect(() => loadWorkerSecret({ ML_WORKER_SECRET_FILE: join(dir, 'none') })).toThrow(/ENOENT/);
    const made = loadWorkerSecret({ ML_DATA_DIR: join(dir, 'data') });
    expect(made).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const path = join(dir, 'data', 'worker-secret');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, 'utf8').trim()).toBe(made);
    expect(loadWorkerSecret({ ML_DATA_DIR: join(dir, 'data') })).toBe(made);
  });
});

describe("the platform policy of a pool (model '')", () => {
  const file = PolicyFile.parse({
    version: 1,
    defaults: { approval: { approvers: ['alice'] }, signatures: { required: true } },
    models: [
      { match: 'churn*', signatures: { required: false } },
      { match: '?', signatures: { required: false } },
    ],
    quota: { operators: ['ops'] },
  });

  it('applies the defaults and the quota operators: no model pattern but * matches the empty name', () => {
    const policy = modelPolicy(file, '');
    expect(policy.rule).toBe('defaults');
    expect(policy.signatures.required).toBe(true);
    expect(allowedFor(policy, 'quota-release')).toEqual(['ops']);
    const star = PolicyFile.parse({ ...file, models: [{ match: '*', signatures: { required: false } }] });
    expect(modelPolicy(star, '').rule).toBe('models[0] (*)');
  });

  it("lets a quota operator or the lease's holder act, signed, and no one else", () => {
    const policy = modelPolicy(file, '');
    const request = (by: string) => ({
      op: 'quota-release' as const,
      by,
      target: OperationTarget.lease('default', 'serve:churn:v7'),
      specDigest: '',
      artifactDigest: '',
      holder: 'lifecycle-churn-v7',
    });
    expect(authorizeOperation(policy, {}, request('mallory'), Date.now())).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/mallory may not quota-release this lease: policy rule defaults allows ops/),
    });
    expect(authorizeOperation(policy, {}, request('ops'), Date.now())).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/requires a signed quota-release/),
    });
    expect(authorizeOperation(policy, {}, request('lifecycle-churn-v7'), Date.now())).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/requires a signed/),
    });
  });
});
