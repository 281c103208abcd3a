import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readPrivateKey, signApproval } from '../../src/client/approval-signing';
import { loadApproverKeyring } from '../../src/config/approver-keys';
import { verifySignedApproval } from '../../src/shared/signed-approval';
import { mlctl } from '../helpers/mlctl';
import { tempDir } from '../helpers/temp';

// `mlctl keys` needs no server: it writes a file.
const run = (...args: string[]) => mlctl('127.0.0.1:1', 'keys', ...args);

describe('mlctl keys generate', () => {
  const dir = tempDir('mll-keys-e2e-');

  it('writes the private key with mode 0600 and prints the keyring entry that verifies its signatures', async () => {
    const out = join(dir, 'alice.pem');
    const r = await run('generate', '--as', 'alice', '--out', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(readFileSync(out, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const keyId = /^key id: (ed25519:[0-9a-f]{16})$/m.exec(r.stdout)?.[1];
    const snippet = /^ {2}(alice: \{ keys: \[".*"\] \})$/m.exec(r.stdout)?.[1];
    expect(keyId).toBeDefined();
    expect(snippet).toBeDefined();

    // The printed entry is what the worker's keyring needs to accept this key's signatures.
    const keyringFile = join(dir, 'approvers.yaml');
    writeFileSync(keyringFile, `approvers:\n  ${snippet}\n`);
    const keyring = loadApproverKeyring(keyringFile);
    const now = Date.now();
    const signed = signApproval(
      {
        lifecycleId: 'lc-1',
        gate: 'deploy',
        gateOpening: 'deploy#1',
        decision: 'approved',
        by: 'alice',
        reason: 'looks good',
        issuedAt: new Date(now).toISOString(),
        nonce: 'e2e-nonce-0123456789',
      },
      readPrivateKey(out),
    );
    expect(signed.keyId).toBe(keyId);
    const verified = verifySignedApproval(signed, keyring, {
      lifecycleId: 'lc-1',
      gate: 'deploy',
      gateOpening: 'deploy#1',
      decision: 'approved',
      by: 'alice',
      nowMs: now,
      maxAgeMs: 60_000,
      usedNonces: new Set(),
    });
    expect(verified.ok).toBe(true);
  });

  it('refuses to overwrite an existing file (exit 2) and leaves it as it was', async () => {
    const out = join(dir, 'taken.pem');
    writeFileSync(out, 'keep me');
    const r = await run('generate', '--as', 'alice', '--out', out);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`mlctl: --out: ${out} already exists; not overwriting a private key\n`);
    expect(r.stdout).toBe('');
    expect(readFileSync(out, 'utf8')).toBe('keep me');
  });

  it('prints identity, key id, public key and file with --json, quoting identities in the keyring entry', async () => {
    const out = join(dir, 'ci.pem');
    const r = await run('generate', '--as', 'ci@pipelines', '--out', out, '--json');
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout) as Record<string, string>;
    expect(Object.keys(json).sort()).toEqual(['identity', 'keyId', 'privateKeyFile', 'publicKey']);
    expect(json).toMatchObject({ identity: 'ci@pipelines', privateKeyFile: out });
    expect(Buffer.from(json.publicKey!, 'base64')).toHaveLength(32);
    expect(statSync(out).mode & 0o777).toBe(0o600);

    const text = await run('generate', '--as', 'svc:nightly', '--out', join(dir, 'svc.pem'));
    expect(text.stdout).toMatch(/^ {2}"svc:nightly": \{ keys: \[".*"\] \}$/m);
  });

  it('refuses an invalid identity (exit 2) without writing a file', async () => {
    const out = join(dir, 'nobody.pem');
    const r = await run('generate', '--as', 'not valid!', '--out', out);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mlctl: --as: "not valid!" is not a valid identity/);
    expect(() => statSync(out)).toThrow();
  });
});
