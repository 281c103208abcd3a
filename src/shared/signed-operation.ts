import { ed25519 } from '@noble/curves/ed25519';
import { sha256 } from '@noble/hashes/sha2';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils';
import { z } from 'zod';
import { Identity } from './names';
import type { ModelPolicy } from './policy';
import { allowedFor, listed, Operation, normalizeIdentity, signatureRequired } from './policy';
import {
  base64Bytes,
  decodeBase64,
  DEFAULT_MAX_SKEW_MS,
  keyFingerprint,
  KeyId,
  type ApproverKeyring,
} from './signed-approval';
import { describeIssues } from './spec';

/*
 * Signed operations: every privileged operation (approve, reject, promote-now, abort, pause, resume, rollback, alert
 * override and silence, quota release and renewal of a lease one does not hold) carries an Ed25519 signature by the
 * person's own key over a claim that binds the operation, its target (lifecycle and run, gate opening, model,
 * incident or lease), the spec and artifact digests where they exist, the person, the time and a nonce. Workflow-safe:
 * zod and pure-JS @noble only (the CLI signs with node:crypto in src/client/approval-signing.ts).
 */

/** Domain prefix of the signed bytes; a signature over anything else (an approval of the v1 format) never passes. */
export const OPERATION_DOMAIN = 'ml-lifecycle/operation/v1\n';

/** How old a signed claim may be when it arrives. */
export const OPERATION_MAX_AGE_MS = 10 * 60_000;

const Digest = z.string().max(200);

export const OperationClaim = z
  .object({
    op: Operation,
    /** What the operation acts on, e.g. `lifecycle/<id>/<run>/gate/deploy#1`, `pool/default/lease/serve:churn:v7`. */
    target: z.string().min(1).max(1000),
    /** The lifecycle spec's digest, or '' where no spec is involved. */
    specDigest: Digest,
    /** The candidate artifact's digest, or '' where none exists yet or none is involved. */
    artifactDigest: Digest,
    by: Identity,
    reason: z.string().max(2000),
    issuedAt: z.iso.datetime(),
    nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, '16 to 64 characters of letters, digits, _ and -'),
  })
  .strict();
export type OperationClaim = z.infer<typeof OperationClaim>;

export const SignedOperation = z
  .object({
    claim: OperationClaim,
    keyId: KeyId,
    signature: base64Bytes(64, 'an Ed25519 signature'),
  })
  .strict();
export type SignedOperation = z.infer<typeof SignedOperation>;

/** The claim's keys in the order they are signed: a wire contract, change it only with a new domain version. */
const CLAIM_KEYS = [
  'artifactDigest',
  'by',
  'issuedAt',
  'nonce',
  'op',
  'reason',
  'specDigest',
  'target',
] as const satisfies readonly (keyof OperationClaim)[];

/** The bytes signed and verified: OPERATION_DOMAIN, then the claim as JSON with its keys sorted, in UTF-8. */
export function operationMessage(claim: OperationClaim): Uint8Array {
  const body = CLAIM_KEYS.map((k) => `${JSON.stringify(k)}:${JSON.stringify(claim[k])}`).join(',');
  return utf8ToBytes(`${OPERATION_DOMAIN}{${body}}`);
}

/** Targets of the operations, built the same way by the signer and the verifier. */
export const OperationTarget = {
  gate: (lifecycleId: string, runId: string, opening: string) => `lifecycle/${lifecycleId}/${runId}/gate/${opening}`,
  promoteNow: (lifecycleId: string, runId: string) => `lifecycle/${lifecycleId}/${runId}/promote-now`,
  lifecycle: (lifecycleId: string, runId: string) => `lifecycle/${lifecycleId}/${runId}`,
  rollback: (model: string, rollbackId: string, to: string | undefined) =>
    `model/${model}/rollback/${rollbackId}/to/${to ?? 'previous'}`,
  incident: (incidentId: string, action: string) => `incident/${incidentId}/override/${action}`,
  silence: (model: string, forMs: number) => `model/${model}/silence/${forMs}`,
  lease: (pool: string, leaseId: string) => `pool/${pool}/lease/${leaseId}`,
} as const;

/** What a signed operation must be about to pass. */
export interface OperationExpectation {
  op: Operation;
  target: string;
  specDigest: string;
  artifactDigest: string;
  /** The identity the request names; compared case-insensitively. */
  by: string;
  nowMs: number;
  maxAgeMs?: number;
  maxSkewMs?: number;
  /** Nonces already used where this operation lands (a lifecycle, a router, a pool). */
  usedNonces?: ReadonlySet<string>;
}

export type OperationVerification = { ok: true; claim: OperationClaim; keyId: string } | { ok: false; reason: string };

const seconds = (ms: number) => `${Math.round(ms / 1000)} s`;

/** The keyring's keys of `who`, matched case-insensitively (the keyring file is written by people). */
function keysOf(keyring: ApproverKeyring, who: string): string[] {
  const me = normalizeIdentity(who);
  return Object.entries(keyring).flatMap(([name, keys]) => (normalizeIdentity(name) === me ? keys : []));
}

/**
 * Checks a signed operation against the keyring and the operation being requested: well formed, signed by a key of
 * the named person, about this operation, target, digests and person, not replayed and fresh. Synchronous and
 * deterministic, so an update validator can call it; the worker calls it again with the keyring as it is now.
 */
export function verifySignedOperation(
  signed: unknown,
  keyring: ApproverKeyring,
  expect: OperationExpectation,
): OperationVerification {
  const refuse = (reason: string): OperationVerification => ({ ok: false, reason });
  const parsed = SignedOperation.safeParse(signed);
  if (!parsed.success)
    return refuse(`the signed ${expect.op} is malformed: ${describeIssues(parsed.error).join('; ')}`);
  const { claim, keyId, signature } = parsed.data;

  const keys = keysOf(keyring, claim.by);
  if (keys.length === 0) return refuse(`${claim.by} has no registered signing key (or it was revoked)`);
  let publicKey: Uint8Array | undefined;
  for (const key of keys) {
    const raw = decodeBase64(key);
    if (raw?.length === 32 && keyFingerprint(raw) === keyId) publicKey = raw;
  }
  if (!publicKey) return refuse(`key ${keyId} is not a registered key of ${claim.by} (unknown or revoked)`);

  let valid = false;
  try {
    // zip215 off: strict RFC 8032 checks, so a valid signature cannot be re-encoded into another valid one.
    valid = ed25519.verify(decodeBase64(signature)!, operationMessage(claim), publicKey, { zip215: false });
  } catch {
    valid = false;
  }
  if (!valid) return refuse(`the signature does not verify with key ${keyId} of ${claim.by}: forged or altered`);

  const mismatch = (
    [
      ['operation', claim.op, expect.op],
      ['target', claim.target, expect.target],
      ['spec digest', claim.specDigest, expect.specDigest],
      ['artifact digest', claim.artifactDigest, expect.artifactDigest],
      ['person', normalizeIdentity(claim.by), normalizeIdentity(expect.by)],
    ] as const
  ).find(([, got, want]) => got !== want);
  if (mismatch) {
    const [what, got, want] = mismatch;
    return refuse(
      `the signed claim is for ${what} "${got || '(none)'}", not "${want || '(none)'}": replayed or misused`,
    );
  }
  if (expect.usedNonces?.has(claim.nonce)) return refuse(`the claim's nonce ${claim.nonce} was already used: replayed`);

  const age = expect.nowMs - Date.parse(claim.issuedAt);
  const maxAge = expect.maxAgeMs ?? OPERATION_MAX_AGE_MS;
  if (age > maxAge)
    return refuse(`the claim was issued ${seconds(age)} ago, longer than the allowed ${seconds(maxAge)}`);
  const skew = expect.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  if (-age > skew)
    return refuse(
      `the claim is issued ${seconds(-age)} in the future, beyond the allowed clock skew of ${seconds(skew)}`,
    );
  return { ok: true, claim, keyId };
}

/** A privileged operation as a workflow asks the policy about it. */
export interface OperationRequest {
  op: Operation;
  /** Who the request says acts (checked against the signature when there is one). */
  by: string;
  /** The SignedOperation, when the caller signed. */
  signed?: unknown;
  target: string;
  specDigest: string;
  artifactDigest: string;
  /** The gate decided (approve, reject). */
  gate?: string;
  /** Quota: the lease's holder, who may act on its own lease. */
  holder?: string;
}

export type Authorization =
  | {
      ok: true;
      by: string;
      /** The signing key and the claim's nonce and reason; null for an unsigned operation the policy allows. */
      keyId: string | null;
      nonce: string | null;
      reason: string | null;
    }
  | { ok: false; reason: string };

/**
 * Whether `request` may happen under `policy` with `keyring`: the person is one the policy allows for the operation,
 * and the operation is signed by them unless the policy lets it go unsigned. A signature that is present is always
 * checked. Pure and synchronous: validators call it with the keyring they hold, the worker with the current one.
 */
export function authorizeOperation(
  policy: ModelPolicy,
  keyring: ApproverKeyring,
  request: OperationRequest,
  nowMs: number,
  usedNonces?: ReadonlySet<string>,
): Authorization {
  const rule = `policy rule ${policy.rule}`;
  const allowed = allowedFor(policy, request.op, request.gate);
  const isHolder = request.holder !== undefined && normalizeIdentity(request.holder) === normalizeIdentity(request.by);
  if (!listed(allowed, request.by) && !isHolder) {
    return {
      ok: false,
      reason:
        `${request.by} may not ${request.op} ${request.op.startsWith('quota') ? 'this lease' : policy.model}: ` +
        `${rule} allows ${allowed.length ? allowed.join(', ') : 'no one'}`,
    };
  }
  if (request.signed === undefined) {
    if (signatureRequired(policy, request.op))
      return {
        ok: false,
        reason: `${rule} requires a signed ${request.op}: sign it with your key (mlctl … --key <file> or MLCTL_SIGNING_KEY)`,
      };
    return { ok: true, by: request.by, keyId: null, nonce: null, reason: null };
  }
  const verdict = verifySignedOperation(request.signed, keyring, {
    op: request.op,
    target: request.target,
    specDigest: request.specDigest,
    artifactDigest: request.artifactDigest,
    by: request.by,
    nowMs,
    ...(usedNonces ? { usedNonces } : {}),
  });
  if (!verdict.ok) return verdict;
  return { ok: true, by: request.by, keyId: verdict.keyId, nonce: verdict.claim.nonce, reason: verdict.claim.reason };
}

/** JSON with object keys sorted at every level: one text per value, whatever order its keys were written in. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** The digest of a lifecycle spec as validated (defaults applied): `sha256:` and 64 hex digits. */
export function specDigest(spec: unknown): string {
  return `sha256:${bytesToHex(sha256(utf8ToBytes(canonicalJson(spec))))}`;
}

/**
 * The nonces of the signed operations a long-running workflow accepted, the newest `capacity` of them: a claim is
 * fresh for only `OPERATION_MAX_AGE_MS`, so a nonce older than the ledger's memory cannot be replayed anyway.
 */
export class NonceLedger {
  private readonly seen: Set<string>;

  constructor(
    carried: Iterable<string> = [],
    private readonly capacity = 1000,
  ) {
    this.seen = new Set(carried);
  }

  /** Takes `nonce`; false when it was taken before (a replayed claim), and nothing changes. */
  take(nonce: string): boolean {
    if (this.seen.has(nonce)) return false;
    this.seen.add(nonce);
    if (this.seen.size > this.capacity) this.seen.delete(this.seen.values().next().value!);
    return true;
  }

  /** The nonces to carry into the next run, oldest first. */
  toArray(): string[] {
    return [...this.seen];
  }
}
