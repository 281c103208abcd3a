import { z } from 'zod';

/**
 * The digest of a model artifact as it crosses process boundaries (deploy requests, routing records, lifecycle
 * history). Workflow-safe (zod only): src/artifacts/digest.ts computes it from the files, with Node's crypto.
 */

/** `sha256:` and 64 lowercase hex digits. */
export const ARTIFACT_DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

export const ArtifactDigest = z
  .string({ error: 'an artifact digest (a string): sha256: and 64 lowercase hex digits' })
  .regex(ARTIFACT_DIGEST_PATTERN, 'an artifact digest: sha256: and 64 lowercase hex digits');
export type ArtifactDigest = z.infer<typeof ArtifactDigest>;
