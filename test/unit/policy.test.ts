import { utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateApproverKey, operationClaim, signOperation } from '../../src/client/approval-signing';
import { loadPolicyFile, PolicySource } from '../../src/config/policy';
import { InvalidFileError } from '../../src/config/yaml-file';
import {
  globMatches,
  modelPolicy,
  PolicyFile,
  policyViolations,
  sameIdentity,
  urlAllowed,
  type PolicedSpec,
} from '../../src/shared/policy';
import {
  authorizeOperation,
  canonicalJson,
  NonceLedger,
  OperationTarget,
  specDigest,
  verifySignedOperation,
} from '../../src/shared/signed-operation';
import { tempDir } from '../helpers/temp';

const POLICY = PolicyFile.parse({
  version: 1,
  defaults: {
    approval: { approvers: ['alice', 'bob', 'carol'], quorum: 1 },
    operators: { abort: ['ops'], pause: ['ops', 'alice'] },
    targets: { baseUrls: ['https://kserve.internal/adapter', 'http://127.0.0.1:*'], headerEnv: ['KSERVE_TOKEN'] },
  },
  models: [
    { match: 'fraud-*', approval: { quorum: 2, gates: { 'promote-now': { approvers: ['carol'], quorum: 1 } } } },
    { match: '*', signatures: { unsigned: ['pause', 'resume'] } },
  ],
  quota: { operators: ['ops'] },
});

const spec = (over: Partial<PolicedSpec> = {}): PolicedSpec => ({
  model: 'churn',
  submittedBy: 'ci@pipelines',
  approval: { approvers: ['alice', 'bob'], quorum: 1, gates: {} },
  explicitlyUnsigned: [],
  deployment: {},
  ...over,
});

describe('platform policy', () => {
  it('matches model globs with * and ?', () => {
    expect(globMatches('fraud-*', 'fraud-v2')).toBe(true);
    expect(globMatches('fraud-*', 'fraud')).toBe(false);
    expect(globMatches('*', 'anything')).toBe(true);
    expect(globMatches('ch?rn', 'churn')).toBe(true);
    expect(globMatches('a*b*c', 'axxbyyc')).toBe(true);
    expect(globMatches('a*b*c', 'axxbyy')).toBe(false);
  });

  it('resolves the first matching rule over the defaults, field by field', () => {
    const fraud = modelPolicy(POLICY, 'fraud-v2');
    expect(fraud.rule).toBe('models[0] (fraud-*)');
    expect(fraud.approval).toMatchObject({ approvers: ['alice', 'bob', 'carol'], quorum: 2 });
    expect(fraud.approval.gates['promote-now']).toEqual({ approvers: ['carol'], quorum: 1 });
    expect(fraud.signatures).toEqual({ required: true, unsigned: [] });
    expect(fraud.operators.abort).toEqual(['ops']);
    // Unlisted operators default to the approvers.
    expect(fraud.operators.rollback).toEqual(['alice', 'bob', 'carol']);
    const churn = modelPolicy(POLICY, 'churn');
    expect(churn.rule).toBe('models[1] (*)');
    expect(churn.signatures.unsigned).toEqual(['pause', 'resume']);
    expect(churn.quota.operators).toEqual(['ops']);
  });

  it('compares identities case-insensitively', () => {
    expect(sameIdentity('Alice', 'alice')).toBe(true);
    const problems = policyViolations(
      spec({ approval: { approvers: ['ALICE'], quorum: 1, gates: {} } }),
      modelPolicy(POLICY, 'churn'),
    );
    expect(problems).toEqual([]);
  });

  it('refuses a spec that loosens the policy, naming each field and the rule', () => {
    const fraud = modelPolicy(POLICY, 'fraud-v2');
    const problems = policyViolations(
      spec({
        model: 'fraud-v2',
        approval: { approvers: ['alice', 'ci-2'], quorum: 1, signed: false, gates: {} },
        explicitlyUnsigned: ['approval.signed'],
        deployment: {
          target: {
            kind: 'http',
            baseUrl: 'https://attacker.example/x',
            headers: { authorization: { fromEnv: 'TEMPORAL_API_KEY' }, plain: 'ok' },
          },
        },
      }),
      fraud,
    );
    const text = problems.join('\n');
    expect(text).toContain(
      'approval.approvers: ci-2 may not approve gate "deploy" of fraud-v2 (policy rule models[0] (fraud-*)',
    );
    expect(text).toContain('approval.quorum: 1 is below the quorum of 2');
    expect(text).toContain('approval.signed: false, but policy rule models[0] (fraud-*) requires signed approvals');
    expect(text).toContain('deployment.target.baseUrl: https://attacker.example/x is not a deployment target');
    expect(text).toContain('deployment.target.headers.authorization: variable TEMPORAL_API_KEY is not one');
    expect(text).not.toContain('headers.plain');
  });

  it('lets metric checks call only the providers and read only the variables the policy allows', () => {
    const policy = modelPolicy(
      PolicyFile.parse({
        version: 1,
        defaults: {
          approval: { approvers: ['alice', 'bob'] },
          analysis: { urls: ['http://prometheus.internal:9090'], headerEnv: ['PROM_TOKEN'] },
        },
      }),
      'churn',
    );
    const metrics = [
      {
        field: 'rollout.analysis.metrics.0.provider.prometheus',
        urlField: 'address',
        url: 'http://prometheus.internal:9090',
      },
      {
        field: 'rollout.analysis.metrics.1.provider.web',
        urlField: 'url',
        url: 'http://metadata.internal/latest?m={{model}}',
        headers: { authorization: { fromEnv: 'AWS_SECRET_ACCESS_KEY' }, ok: { fromEnv: 'PROM_TOKEN' } },
      },
      { field: 'monitoring.metrics.0.provider.web', urlField: 'url', url: 'http://{{model}}.internal/x' },
    ];
    expect(policyViolations(spec({ metrics }), policy)).toEqual([
      'rollout.analysis.metrics.1.provider.web.url: http://metadata.internal/latest?m={{model}} is not a metric ' +
        'provider policy rule defaults allows (http://prometheus.internal:9090)',
      'rollout.analysis.metrics.1.provider.web.headers.authorization: variable AWS_SECRET_ACCESS_KEY is not one ' +
        'policy rule defaults lets a metric check read (PROM_TOKEN)',
      "monitoring.metrics.0.provider.web.url: the host of a metric check's URL cannot come from a placeholder",
    ]);
    // With no `analysis` section, no provider at all.
    expect(policyViolations(spec({ metrics: metrics.slice(0, 1) }), modelPolicy(POLICY, 'churn'))).toEqual([
      'rollout.analysis.metrics.0.provider.prometheus.address: http://prometheus.internal:9090 is not a metric ' +
        'provider policy rule models[1] (*) allows (none)',
    ]);
  });

  it('lets a spec tighten: fewer approvers, a higher quorum, signatures', () => {
    const problems = policyViolations(
      spec({ approval: { approvers: ['alice', 'bob'], quorum: 2, signed: true, gates: {} } }),
      modelPolicy(POLICY, 'churn'),
    );
    expect(problems).toEqual([]);
  });

  it('allows target URLs under a prefix, at a path boundary, with a port wildcard', () => {
    const prefixes = ['https://kserve.internal/adapter', 'http://127.0.0.1:*'];
    expect(urlAllowed(prefixes, 'https://kserve.internal/adapter')).toBe(true);
    expect(urlAllowed(prefixes, 'https://kserve.internal/adapter/v1')).toBe(true);
    expect(urlAllowed(prefixes, 'https://kserve.internal/adapterx')).toBe(false);
    expect(urlAllowed(prefixes, 'https://kserve.internal.attacker.example/adapter')).toBe(false);
    expect(urlAllowed(prefixes, 'http://127.0.0.1:9999/x')).toBe(true);
    expect(urlAllowed(prefixes, 'https://127.0.0.1:9999/x')).toBe(false);
    expect(urlAllowed(prefixes, 'http://user:pw@127.0.0.1:9999/x')).toBe(false);
    expect(urlAllowed([], 'http://127.0.0.1:8701')).toBe(false);
  });

  it('reports a bad policy file with the field and its line', () => {
    const dir = tempDir('mll-policy-');
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'version: 1\ndefaults:\n  signatures:\n    required: maybe\n');
    expect(() => loadPolicyFile(file)).toThrow(InvalidFileError);
    expect(() => loadPolicyFile(file)).toThrow(/defaults\.signatures\.required \(line 4\)/);
  });

  it('re-reads the files when they change, and refuses everything while the policy file is invalid', () => {
    const dir = tempDir('mll-policy-');
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'version: 1\ndefaults:\n  approval: { approvers: [alice] }\n');
    const source = new PolicySource(file, undefined, dir);
    expect(source.forModel('churn').approval.approvers).toEqual(['alice']);
    writeFileSync(file, 'version: 1\ndefaults:\n  approval: { approvers: [bob, carol] }\n');
    utimesSync(file, new Date(), new Date(Date.now() + 5_000));
    expect(source.forModel('churn').approval.approvers).toEqual(['bob', 'carol']);
    writeFileSync(file, 'version: 2\n');
    utimesSync(file, new Date(), new Date(Date.now() + 10_000));
    expect(() => source.forModel('churn')).toThrow(InvalidFileError);
  });

  it('keeps training programs under the allowed roots without saying whether a file exists', () => {
    const dir = tempDir('mll-policy-');
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'version: 1\ndefaults:\n  training: { roots: [trainers] }\n');
    const source = new PolicySource(file, undefined, dir);
    expect(source.programProblem('churn', 'trainers/train.py')).toBeNull();
    const outside = source.programProblem('churn', '/etc/passwd');
    const missing = source.programProblem('churn', '/nope/train.py');
    expect(outside).toContain('is not under a training root policy rule defaults allows (trainers)');
    expect(missing?.replace('/nope/train.py', 'X')).toBe(outside?.replace('/etc/passwd', 'X'));
    expect(source.programProblem('churn', 'trainers/../../x.py')).not.toBeNull();
  });
});

describe('signed operations', () => {
  const alice = generateApproverKey();
  const ops = generateApproverKey();
  const keyring = { alice: [alice.publicKey], Ops: [ops.publicKey] };
  const target = OperationTarget.lifecycle('lifecycle-churn-v2', 'run-1');
  const claim = (over: Partial<Parameters<typeof operationClaim>[0]> = {}) =>
    operationClaim({ op: 'abort', target, by: 'ops', reason: 'bad data', specDigest: 'sha256:s', ...over });
  const expectation = { op: 'abort' as const, target, specDigest: 'sha256:s', artifactDigest: '', by: 'ops' };

  it('verifies a claim signed by the person, case-insensitively', () => {
    const signed = signOperation(claim(), ops.privateKeyPem);
    const verdict = verifySignedOperation(signed, keyring, { ...expectation, by: 'OPS', nowMs: Date.now() });
    expect(verdict).toMatchObject({ ok: true, keyId: ops.keyId });
  });

  it('refuses a claim for another run, operation, person, digest, a replayed nonce or a stale one', () => {
    const signed = signOperation(claim(), ops.privateKeyPem);
    const now = Date.now();
    const check = (over: object) => verifySignedOperation(signed, keyring, { ...expectation, nowMs: now, ...over });
    expect(check({ target: OperationTarget.lifecycle('lifecycle-churn-v2', 'run-2') })).toMatchObject({
      ok: false,
      reason: expect.stringContaining('replayed or misused'),
    });
    expect(check({ op: 'pause' })).toMatchObject({ ok: false });
    expect(check({ by: 'alice' })).toMatchObject({ ok: false });
    expect(check({ specDigest: 'sha256:other' })).toMatchObject({ ok: false });
    expect(check({ usedNonces: new Set([signed.claim.nonce]) })).toMatchObject({
      ok: false,
      reason: expect.stringContaining('already used'),
    });
    expect(check({ nowMs: now + 11 * 60_000 })).toMatchObject({ ok: false, reason: expect.stringContaining('ago') });
  });

  it('refuses a forged claim and one signed with a key that is no longer in the keyring', () => {
    const signed = signOperation(claim(), ops.privateKeyPem);
    const altered = { ...signed, claim: { ...signed.claim, reason: 'changed' } };
    expect(verifySignedOperation(altered, keyring, { ...expectation, nowMs: Date.now() })).toMatchObject({
      ok: false,
      reason: expect.stringContaining('forged or altered'),
    });
    expect(
      verifySignedOperation(signed, { alice: [alice.publicKey] }, { ...expectation, nowMs: Date.now() }),
    ).toMatchObject({
      ok: false,
      reason: expect.stringContaining('revoked'),
    });
    const byAliceAsOps = signOperation(claim(), alice.privateKeyPem);
    expect(verifySignedOperation(byAliceAsOps, keyring, { ...expectation, nowMs: Date.now() })).toMatchObject({
      ok: false,
    });
  });

  it('authorizes by the policy: who may, and signed unless the policy lets the operation go unsigned', () => {
    const churn = modelPolicy(POLICY, 'churn');
    const fraud = modelPolicy(POLICY, 'fraud-v2');
    const base = { target, specDigest: 'sha256:s', artifactDigest: '' };
    expect(authorizeOperation(churn, keyring, { ...base, op: 'abort', by: 'alice' }, Date.now())).toMatchObject({
      ok: false,
      reason: 'alice may not abort churn: policy rule models[1] (*) allows ops',
    });
    expect(authorizeOperation(churn, keyring, { ...base, op: 'abort', by: 'ops' }, Date.now())).toMatchObject({
      ok: false,
      reason: expect.stringContaining('requires a signed abort'),
    });
    const signed = signOperation(claim(), ops.privateKeyPem);
    expect(authorizeOperation(churn, keyring, { ...base, op: 'abort', by: 'ops', signed }, Date.now())).toMatchObject({
      ok: true,
      keyId: ops.keyId,
      reason: 'bad data',
    });
    // Pause goes unsigned for churn (its rule says so), not for fraud-v2.
    expect(authorizeOperation(churn, keyring, { ...base, op: 'pause', by: 'alice' }, Date.now())).toMatchObject({
      ok: true,
      keyId: null,
    });
    expect(authorizeOperation(fraud, keyring, { ...base, op: 'pause', by: 'alice' }, Date.now())).toMatchObject({
      ok: false,
    });
    // The holder of a lease may act on it; others need to be quota operators.
    const lease = OperationTarget.lease('default', 'exp-1');
    expect(
      authorizeOperation(
        churn,
        {},
        { ...base, target: lease, op: 'quota-release', by: 'dave', holder: 'dave' },
        Date.now(),
      ),
    ).toMatchObject({ ok: false, reason: expect.stringContaining('requires a signed quota-release') });
    expect(
      authorizeOperation(
        churn,
        {},
        { ...base, target: lease, op: 'quota-release', by: 'eve', holder: 'dave' },
        Date.now(),
      ),
    ).toMatchObject({ ok: false, reason: expect.stringContaining('eve may not quota-release this lease') });
  });

  it('digests specs canonically: key order does not matter, values do', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: null }] })).toBe('{"a":[{"c":null,"d":2}],"b":1}');
    expect(specDigest({ a: 1, b: 2 })).toBe(specDigest({ b: 2, a: 1 }));
    expect(specDigest({ a: 1 })).not.toBe(specDigest({ a: 2 }));
    expect(specDigest({ a: 1 })).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe('nonce ledger', () => {
  it('takes a nonce once, forgets only the oldest beyond its capacity, and carries over', () => {
    const ledger = new NonceLedger([], 3);
    expect(['a', 'b', 'c'].map((n) => ledger.take(n))).toEqual([true, true, true]);
    expect(ledger.take('b')).toBe(false);
    expect(ledger.take('d')).toBe(true);
    expect(ledger.toArray()).toEqual(['b', 'c', 'd']);
    const next = new NonceLedger(ledger.toArray(), 3);
    expect(next.take('c')).toBe(false);
    expect(next.take('a')).toBe(true);
  });
});
