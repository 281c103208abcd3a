import { ed25519 } from '@noble/curves/ed25519';
import { sha256 } from '@noble/hashes/sha2';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils';
import { z } from 'zod';
import { describeIssues } from './spec';
import { Identity, nameRecord } from './names';

/*
 * Signed approvals: a production gate can require that an approval carries an Ed25519 signature by the approver's own
 * key. The lifecycle's update validator verifies it, so this file stays workflow-safe: zod and pure-JS @noble only,
 * synchronous, no Node built-ins (the CLI signs with node:crypto in src/client/approval-signing.ts).
 */

/** Domain prefix of the signed bytes: a signature over anything else never passes for an approval. */
export const APPROVAL_DOMAIN = 'ml-lifecycle/approval/v1\n';

/** Accepted clock skew when the verifier gets no `maxSkewMs`: a claim issued up to this far in the future passes. */
export const DEFAULT_MAX_SKEW_MS = 60_000;

const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const BASE64_VALUE = new Map([...BASE64_ALPHABET].map((c, i) => [c, i]));

/** Padded standard base64 to bytes; undefined unless `text` is canonical. Workflows have no Buffer, hence this. */
export function decodeBase64(text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - padding);
  let bits = 0;
  let acc = 0;
  let at = 0;
  for (const c of text.slice(0, text.length - padding)) {
    acc = ((acc << 6) | BASE64_VALUE.get(c)!) & 0x3fff; // at most 8 + 6 bits are pending
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  // Leftover bits must be zero, so each byte string has exactly one accepted encoding.
  return (acc & ((1 << bits) - 1)) === 0 ? out : undefined;
}

/** A standard-base64 string that decodes to exactly `length` bytes. */
export const base64Bytes = (length: number, what: string) =>
  z.string().refine((s) => decodeBase64(s)?.length === length, `${what}: base64 of exactly ${length} bytes`);

/** A raw 32-byte Ed25519 public key, base64. */
export const Ed25519PublicKey = base64Bytes(32, 'an Ed25519 public key');

/** What an approver signs: one decision on one opening of one gate of one lifecycle. */
export const ApprovalClaim = z
  .object({
    lifecycleId: z.string().min(1).max(1000),
    gate: z.string().min(1).max(200),
    /** This opening of the gate (`deploy#1`): a signature never carries over to a later opening. */
    gateOpening: z.string().min(1).max(200),
    decision: z.enum(['approved', 'rejected']),
    by: Identity,
    reason: z.string().max(2000),
    issuedAt: z.iso.datetime(),
    nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, '16 to 64 characters of letters, digits, _ and -'),
  })
  .strict();
export type ApprovalClaim = z.infer<typeof ApprovalClaim>;

/** `ed25519:` + 16 hex digits: the first 8 bytes of the SHA-256 of the raw public key. */
export const KeyId = z.string().regex(/^ed25519:[0-9a-f]{16}$/, 'a key id: ed25519: and 16 hex digits');

export const SignedApproval = z
  .object({
    claim: ApprovalClaim,
    keyId: KeyId,
    signature: base64Bytes(64, 'an Ed25519 signature'),
  })
  .strict();
export type SignedApproval = z.infer<typeof SignedApproval>;

/** Approver identity → their raw 32-byte Ed25519 public keys in base64; several keys allow rotation. */
export const ApproverKeyring = nameRecord(Identity, z.array(Ed25519PublicKey).min(1));
export type ApproverKeyring = z.infer<typeof ApproverKeyring>;

/** The claim's keys in the order they are signed: a wire contract, change it only with a new domain version. */
const CLAIM_KEYS = [
  'by',
  'decision',
  'gate',
  'gateOpening',
  'issuedAt',
  'lifecycleId',
  'nonce',
  'reason',
] as const satisfies readonly (keyof ApprovalClaim)[];

/** The bytes signed and verified: APPROVAL_DOMAIN, then the claim as JSON with its keys sorted, in UTF-8. */
export function approvalMessage(claim: ApprovalClaim): Uint8Array {
  const body = CLAIM_KEYS.map((k) => `${JSON.stringify(k)}:${JSON.stringify(claim[k])}`).join(',');
  return utf8ToBytes(`${APPROVAL_DOMAIN}{${body}}`);
}

/** The key id of a raw 32-byte public key (see KeyId). */
export function keyFingerprint(publicKeyRaw32: Uint8Array): string {
  if (publicKeyRaw32.length !== 32)
    throw new TypeError(`an Ed25519 public key has 32 bytes, not ${publicKeyRaw32.length}`);
  return `ed25519:${bytesToHex(sha256(publicKeyRaw32)).slice(0, 16)}`;
}

export interface ApprovalExpectation {
  lifecycleId: string;
  gate: string;
  gateOpening: string;
  decision: ApprovalClaim['decision'];
  by: string;
  /** The workflow's clock (Date.now() inside a workflow is deterministic). */
  nowMs: number;
  /** Oldest accepted claim. */
  maxAgeMs: number;
  /** Furthest in the future a claim may be issued (clock skew); DEFAULT_MAX_SKEW_MS when absent. */
  maxSkewMs?: number;
  /** Nonces of the signed approvals this lifecycle already accepted. */
  usedNonces: ReadonlySet<string>;
}

export type ApprovalVerification = { ok: true; claim: ApprovalClaim; keyId: string } | { ok: false; reason: string };

const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;

/**
 * Checks a signed approval against the approver keyring and the decision being requested: well formed, signed by a
 * registered key of the claimed approver, about this lifecycle, gate opening, decision and approver, not replayed and
 * fresh. Synchronous and deterministic, for update validators.
 */
export function verifySignedApproval(
  signed: unknown,
  keyring: ApproverKeyring,
  expect: ApprovalExpectation,
): ApprovalVerification {
  const refuse = (reason: string): ApprovalVerification => ({ ok: false, reason });
  const parsed = SignedApproval.safeParse(signed);
  if (!parsed.success) return refuse(`The signed approval is malformed: ${describeIssues(parsed.error).join('; ')}.`);
  const { claim, keyId, signature } = parsed.data;

  const keys = Object.hasOwn(keyring, claim.by) ? keyring[claim.by] : undefined;
  if (!keys || keys.length === 0) return refuse(`Approver ${claim.by} has no registered signing key.`);
  let publicKey: Uint8Array | undefined;
  for (const [i, key] of keys.entries()) {
    const raw = decodeBase64(key);
    if (raw?.length !== 32)
      return refuse(`The keyring entry ${i} of approver ${claim.by} is not a base64 32-byte Ed25519 public key.`);
    if (keyFingerprint(raw) === keyId) publicKey = raw;
  }
  if (!publicKey) return refuse(`Key ${keyId} is not a registered key of approver ${claim.by}.`);

  let valid = false;
  try {
    // zip215 off: strict RFC 8032 checks, so a valid signature cannot be re-encoded into another valid one.
    valid = ed25519.verify(decodeBase64(signature)!, approvalMessage(claim), publicKey, { zip215: false });
  } catch {
    valid = false;
  }
  if (!valid) return refuse(`The signature does not verify with key ${keyId} of ${claim.by}: forged or altered.`);

  const mismatch = (
    [
      ['lifecycle', claim.lifecycleId, expect.lifecycleId],
      ['gate', claim.gate, expect.gate],
      ['gate opening', claim.gateOpening, expect.gateOpening],
      ['decision', claim.decision, expect.decision],
      ['approver', claim.by, expect.by],
    ] as const
  ).find(([, got, want]) => got !== want);
  if (mismatch) {
    const [what, got, want] = mismatch;
    return refuse(`The signed approval is for ${what} "${got}", not "${want}": replayed or misused.`);
  }

  if (expect.usedNonces.has(claim.nonce))
    return refuse(`The signed approval's nonce ${claim.nonce} was already used: replayed.`);

  const age = expect.nowMs - Date.parse(claim.issuedAt);
  if (age > expect.maxAgeMs)
    return refuse(
      `The signed approval was issued ${seconds(age)} ago, longer than the allowed ${seconds(expect.maxAgeMs)}.`,
    );
  const skew = expect.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  if (-age > skew)
    return refuse(
      `The signed approval is issued ${seconds(-age)} in the future, more than the allowed clock skew of ${seconds(skew)}.`,
    );

  return { ok: true, claim, keyId };
}
