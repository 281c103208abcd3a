import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ApprovalClaim, approvalMessage, keyFingerprint, type SignedApproval } from '../shared/signed-approval';
import { OperationClaim, operationMessage, type SignedOperation } from '../shared/signed-operation';

/** A private key file that cannot be used for signing approvals; names the file. */
export class KeyFileError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

export interface ApproverKey {
  /** PKCS#8 PEM: the approver keeps it, never the worker. */
  privateKeyPem: string;
  /** Raw 32-byte public key, base64: what goes into the approver keyring. */
  publicKey: string;
  keyId: string;
}

function rawPublicKey(key: KeyObject): Buffer {
  const { x } = key.export({ format: 'jwk' });
  return Buffer.from(x!, 'base64url');
}

function ed25519PrivateKey(pem: string): KeyObject {
  const key = createPrivateKey({ key: pem, format: 'pem' });
  if (key.asymmetricKeyType !== 'ed25519')
    throw new TypeError(`an ed25519 private key is needed, not ${key.asymmetricKeyType ?? 'a symmetric key'}`);
  return key;
}

/** A fresh Ed25519 key pair for an approver. */
export function generateApproverKey(): ApproverKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = rawPublicKey(publicKey);
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKey: raw.toString('base64'),
    keyId: keyFingerprint(raw),
  };
}

/** Signs `claim` (validated first; a bad claim throws a ZodError) with the approver's PKCS#8 PEM private key. */
export function signApproval(claim: ApprovalClaim, privateKeyPem: string): SignedApproval {
  const parsed = ApprovalClaim.parse(claim);
  const key = ed25519PrivateKey(privateKeyPem);
  return {
    claim: parsed,
    keyId: keyFingerprint(rawPublicKey(createPublicKey(key))),
    signature: sign(null, approvalMessage(parsed), key).toString('base64'),
  };
}

/** Reads an approver's private key file: an unencrypted ed25519 PKCS#8 PEM, else a KeyFileError naming the file. */
export function readPrivateKey(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KeyFileError(
      path,
      code === 'ENOENT' ? 'no such private key file' : `cannot read the private key: ${code ?? (err as Error).message}`,
    );
  }
  if (!pem.includes('-----BEGIN PRIVATE KEY-----'))
    throw new KeyFileError(path, 'not an unencrypted PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)');
  try {
    ed25519PrivateKey(pem);
  } catch (err) {
    throw new KeyFileError(path, `not an ed25519 PKCS#8 PEM private key: ${(err as Error).message}`);
  }
  return pem;
}

/** A single-use nonce for a claim: 18 random bytes, base64url (24 characters). */
export function newNonce(): string {
  return randomBytes(18).toString('base64url');
}

/** Signs an operation claim (validated first; a bad claim throws a ZodError) with the person's PKCS#8 PEM key. */
export function signOperation(claim: OperationClaim, privateKeyPem: string): SignedOperation {
  const parsed = OperationClaim.parse(claim);
  const key = ed25519PrivateKey(privateKeyPem);
  return {
    claim: parsed,
    keyId: keyFingerprint(rawPublicKey(createPublicKey(key))),
    signature: sign(null, operationMessage(parsed), key).toString('base64'),
  };
}

/** A fresh claim of `op` on `target` by `by`, issued now with a new nonce. */
export function operationClaim(
  fields: Pick<OperationClaim, 'op' | 'target' | 'by'> &
    Partial<Pick<OperationClaim, 'reason' | 'specDigest' | 'artifactDigest'>>,
): OperationClaim {
  return {
    specDigest: '',
    artifactDigest: '',
    reason: '',
    ...fields,
    issuedAt: new Date().toISOString(),
    nonce: newNonce(),
  };
}
