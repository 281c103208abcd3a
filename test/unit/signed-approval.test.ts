import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  generateApproverKey,
  KeyFileError,
  newNonce,
  readPrivateKey,
  signApproval,
} from '../../src/client/approval-signing';
import { loadApproverKeyring } from '../../src/config/approver-keys';
import { InvalidFileError } from '../../src/config/yaml-file';
import {
  ApprovalClaim,
  approvalMessage,
  decodeBase64,
  keyFingerprint,
  verifySignedApproval,
  type ApprovalExpectation,
  type ApproverKeyring,
  type SignedApproval,
} from '../../src/shared/signed-approval';
import { tempDir } from '../helpers/temp';

const NOW = Date.parse('2025-06-01T12:00:00.000Z');
const alice = generateApproverKey();
const aliceNext = generateApproverKey();
const mallory = generateApproverKey();
const bob = generateApproverKey();
const keyring: ApproverKeyring = { alice: [alice.publicKey], bob: [bob.publicKey] };

function claim(overrides: Partial<ApprovalClaim> = {}): ApprovalClaim {
  return {
    lifecycleId: 'lc-churn-v7',
    gate: 'deploy',
    gateOpening: 'deploy#1',
    decision: 'approved',
    by: 'alice',
    reason: 'offline metrics beat production; drift checks clean',
    issuedAt: new Date(NOW - 30_000).toISOString(),
    nonce: 'n0nce-0123456789abcdef',
    ...overrides,
  };
}

function expectation(overrides: Partial<ApprovalExpectation> = {}): ApprovalExpectation {
  return {
    lifecycleId: 'lc-churn-v7',
    gate: 'deploy',
    gateOpening: 'deploy#1',
    decision: 'approved',
    by: 'alice',
    nowMs: NOW,
    maxAgeMs: 10 * 60_000,
    usedNonces: new Set(),
    ...overrides,
  };
}

function refusal(signed: unknown, expect: Partial<ApprovalExpectation> = {}, ring = keyring): string {
  const result = verifySignedApproval(signed, ring, expectation(expect));
  if (result.ok) throw new Error('expected a refusal, the approval verified');
  return result.reason;
}

describe('signed approvals', () => {
  it('verifies an approval signed with node:crypto by the approver registered key', () => {
    const signed = signApproval(claim(), alice.privateKeyPem);
    expect(signed.keyId).toBe(alice.keyId);
    expect(decodeBase64(signed.signature)).toHaveLength(64);
    const result = verifySignedApproval(JSON.parse(JSON.stringify(signed)), keyring, expectation());
    expect(result).toEqual({ ok: true, claim: claim(), keyId: alice.keyId });
  });

  it('signs the domain prefix and the claim as JSON with its keys sorted', () => {
    const text = new TextDecoder().decode(approvalMessage(claim({ reason: 'ok ✓ "quoted"' })));
    expect(text.startsWith('ml-lifecycle/approval/v1\n{"by":"alice","decision":"approved","gate":"deploy",')).toBe(
      true,
    );
    const body = JSON.parse(text.slice('ml-lifecycle/approval/v1\n'.length)) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(Object.keys(ApprovalClaim.shape).sort());
    expect(body.reason).toBe('ok ✓ "quoted"');
    // The key order of the claim object does not matter.
    const reversed = Object.fromEntries(Object.entries(claim()).reverse()) as ApprovalClaim;
    expect(approvalMessage(reversed)).toEqual(approvalMessage(claim()));
  });

  it('fingerprints a key as ed25519: and 16 hex digits of its SHA-256', () => {
    expect(alice.keyId).toMatch(/^ed25519:[0-9a-f]{16}$/);
    expect(keyFingerprint(decodeBase64(alice.publicKey)!)).toBe(alice.keyId);
    expect(alice.keyId).not.toBe(aliceNext.keyId);
  });

  it('refuses a malformed approval and names every bad field', () => {
    const reason = refusal({
      claim: { ...claim(), nonce: 'short', extra: 1 },
      keyId: 'abc',
      signature: 'AAAA',
    });
    expect(reason).toMatch(/^The signed approval is malformed: /);
    expect(reason).toMatch(/claim\.nonce: /);
    expect(reason).toMatch(/claim: Unrecognized key: "extra"/);
    expect(reason).toMatch(/keyId: /);
    expect(reason).toMatch(/signature: an Ed25519 signature: base64 of exactly 64 bytes/);
  });

  it('refuses an approval by someone with no registered key', () => {
    const carol = generateApproverKey();
    const signed = signApproval(claim({ by: 'carol' }), carol.privateKeyPem);
    expect(refusal(signed, { by: 'carol' })).toBe('Approver carol has no registered signing key.');
  });

  it('refuses a forged approval signed by another key that claims to be alice', () => {
    const forged = signApproval(claim(), mallory.privateKeyPem);
    expect(refusal(forged)).toBe(`Key ${mallory.keyId} is not a registered key of approver alice.`);
    // The forger copies alice's key id: the signature then fails.
    expect(refusal({ ...forged, keyId: alice.keyId })).toBe(
      `The signature does not verify with key ${alice.keyId} of alice: forged or altered.`,
    );
  });

  it('refuses an approval whose reason was changed after signing', () => {
    const signed = signApproval(claim(), alice.privateKeyPem);
    const altered: SignedApproval = { ...signed, claim: { ...signed.claim, reason: 'rubber stamp' } };
    expect(refusal(altered)).toMatch(/^The signature does not verify with key .* forged or altered\.$/);
  });

  it('refuses a replay of an approval whose nonce was already used', () => {
    const signed = signApproval(claim(), alice.privateKeyPem);
    expect(refusal(signed, { usedNonces: new Set(['other-nonce-000000', claim().nonce]) })).toBe(
      `The signed approval's nonce ${claim().nonce} was already used: replayed.`,
    );
  });

  it('refuses a replay into a later opening of the gate, another gate or another lifecycle', () => {
    const signed = signApproval(claim(), alice.privateKeyPem);
    expect(refusal(signed, { gateOpening: 'deploy#2' })).toBe(
      'The signed approval is for gate opening "deploy#1", not "deploy#2": replayed or misused.',
    );
    expect(refusal(signed, { gate: 'ramp' })).toBe(
      'The signed approval is for gate "deploy", not "ramp": replayed or misused.',
    );
    expect(refusal(signed, { lifecycleId: 'lc-churn-v8' })).toBe(
      'The signed approval is for lifecycle "lc-churn-v7", not "lc-churn-v8": replayed or misused.',
    );
  });

  it('refuses an approval used for the other decision or sent by another approver', () => {
    const signed = signApproval(claim(), alice.privateKeyPem);
    expect(refusal(signed, { decision: 'rejected' })).toBe(
      'The signed approval is for decision "approved", not "rejected": replayed or misused.',
    );
    expect(refusal(signed, { by: 'bob' })).toBe(
      'The signed approval is for approver "alice", not "bob": replayed or misused.',
    );
  });

  it('refuses an approval issued too long ago', () => {
    const signed = signApproval(claim({ issuedAt: new Date(NOW - 11 * 60_000).toISOString() }), alice.privateKeyPem);
    expect(refusal(signed)).toBe('The signed approval was issued 660 s ago, longer than the allowed 600 s.');
  });

  it('refuses an approval issued in the future beyond the clock skew, and accepts one within it', () => {
    const ahead = signApproval(claim({ issuedAt: new Date(NOW + 5 * 60_000).toISOString() }), alice.privateKeyPem);
    expect(refusal(ahead)).toBe(
      'The signed approval is issued 300 s in the future, more than the allowed clock skew of 60 s.',
    );
    expect(verifySignedApproval(ahead, keyring, expectation({ maxSkewMs: 6 * 60_000 })).ok).toBe(true);
    const slightly = signApproval(claim({ issuedAt: new Date(NOW + 20_000).toISOString() }), alice.privateKeyPem);
    expect(verifySignedApproval(slightly, keyring, expectation()).ok).toBe(true);
  });

  it('accepts both the old and the new key while a key is rotated', () => {
    const rotating: ApproverKeyring = { alice: [alice.publicKey, aliceNext.publicKey] };
    const old = signApproval(claim(), alice.privateKeyPem);
    const next = signApproval(claim({ nonce: newNonce() }), aliceNext.privateKeyPem);
    expect(verifySignedApproval(old, rotating, expectation())).toMatchObject({ ok: true, keyId: alice.keyId });
    expect(verifySignedApproval(next, rotating, expectation())).toMatchObject({ ok: true, keyId: aliceNext.keyId });
    // Once the old key is dropped its signatures stop verifying.
    expect(refusal(old, {}, { alice: [aliceNext.publicKey] })).toBe(
      `Key ${alice.keyId} is not a registered key of approver alice.`,
    );
  });

  it('refuses to sign an invalid claim', () => {
    expect(() => signApproval(claim({ nonce: 'has spaces in it!!' }), alice.privateKeyPem)).toThrow(/nonce/);
  });

  it('makes nonces the claim accepts', () => {
    const a = newNonce();
    expect(a).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(newNonce()).not.toBe(a);
  });

  it('decodes only canonical base64', () => {
    expect(decodeBase64(Buffer.from('hello!').toString('base64'))).toEqual(new Uint8Array(Buffer.from('hello!')));
    expect(decodeBase64('aGk=')).toEqual(new Uint8Array([104, 105]));
    expect(decodeBase64('aGl=')).toBeUndefined(); // non-zero leftover bits
    expect(decodeBase64('aGk')).toBeUndefined();
    expect(decodeBase64('a-k=')).toBeUndefined();
    for (let n = 0; n < 40; n++) {
      const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff));
      expect(decodeBase64(bytes.toString('base64'))).toEqual(new Uint8Array(bytes));
    }
  });
});

describe('approver private key files', () => {
  const dir = tempDir('mll-keys-');

  it('reads an ed25519 PKCS#8 PEM', () => {
    const file = join(dir, 'alice.pem');
    writeFileSync(file, alice.privateKeyPem);
    expect(readPrivateKey(file)).toBe(alice.privateKeyPem);
  });

  it('names the file when it is missing or not an ed25519 PKCS#8 PEM', () => {
    const missing = join(dir, 'missing.pem');
    expect(() => readPrivateKey(missing)).toThrow(KeyFileError);
    expect(() => readPrivateKey(missing)).toThrow(`${missing}: no such private key file`);
    const pub = join(dir, 'public.pem');
    writeFileSync(pub, '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n');
    expect(() => readPrivateKey(pub)).toThrow(`${pub}: not an unencrypted PKCS#8 PEM private key`);
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
    expect(() => readPrivateKey(garbage)).toThrow(`${garbage}: not an ed25519 PKCS#8 PEM private key`);
  });
});

describe('approver keyring file', () => {
  const dir = tempDir('mll-keyring-');
  const write = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  const problems = (file: string): string[] => {
    try {
      loadApproverKeyring(file);
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidFileError);
      expect((err as InvalidFileError).message.startsWith(`${file}: invalid approver keyring:`)).toBe(true);
      return (err as InvalidFileError).problems;
    }
    throw new Error('expected the keyring to be refused');
  };

  it('loads every approver with its keys', () => {
    const file = write(
      'ok.yaml',
      `approvers:\n  alice: { keys: ["${alice.publicKey}", "${aliceNext.publicKey}"] }\n  "ci@pipelines":\n    keys:\n      - ${bob.publicKey}\n`,
    );
    expect(loadApproverKeyring(file)).toEqual({
      alice: [alice.publicKey, aliceNext.publicKey],
      'ci@pipelines': [bob.publicKey],
    });
  });

  it('names the file and the field of a key that is not base64', () => {
    const file = write('bad-base64.yaml', `approvers:\n  alice:\n    keys: ["not base64 at all!"]\n`);
    expect(problems(file)).toEqual([
      'approvers.alice.keys.0 (line 3): an Ed25519 public key: base64 of exactly 32 bytes',
    ]);
  });

  it('names the file and the field of a key of the wrong length', () => {
    const short = Buffer.alloc(31, 7).toString('base64');
    const file = write('short.yaml', `approvers:\n  alice:\n    keys:\n      - ${alice.publicKey}\n      - ${short}\n`);
    expect(problems(file)).toEqual([
      'approvers.alice.keys.1 (line 5): an Ed25519 public key: base64 of exactly 32 bytes',
    ]);
  });

  it('names an unknown field', () => {
    const file = write('unknown.yaml', `approvers:\n  alice:\n    keys: ["${alice.publicKey}"]\n    expires: soon\n`);
    expect(problems(file)).toEqual(['approvers.alice (line 3): Unrecognized key: "expires"']);
  });

  it('refuses one key registered for two approvers', () => {
    const file = write(
      'shared.yaml',
      `approvers:\n  alice: { keys: ["${alice.publicKey}"] }\n  bob: { keys: ["${alice.publicKey}"] }\n`,
    );
    expect(problems(file)).toEqual(['approvers.bob.keys.0 (line 3): this key is already registered for alice']);
  });
});
