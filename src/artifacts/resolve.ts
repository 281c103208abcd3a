/**
 * How an activity on any host gets the files of a trained artifact: the one helper every reader of an artifact goes
 * through (validation, the deploy activity's bin edges, the stage analysis's training profile).
 *
 * - A reference without a store URI (a history from before the store was wired in, or a worker without a store) is
 *   the trainer's folder, read where it is, as before.
 * - A folder below this process's own artifacts folder is its own training output (one host running control plane and
 *   training together): read in place, so that what validation writes beside it stays where the serving monitor reads
 *   it.
 * - Anything else is fetched by URI into this process's cache, checked against the digest recorded at training.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorType } from '../shared/errors';
import { ArtifactStoreError, type ArtifactStore } from './store-core';

/** An artifact as the lifecycle passes it: the trainer's folder, and where the store has it (absent before stores). */
export interface ArtifactRef {
  artifactDir: string;
  artifactUri?: string | undefined;
  artifactDigest?: string | undefined;
}

export interface ArtifactResolverOptions {
  /** The process's artifact store (absent: references with a URI cannot be fetched here). */
  store?: ArtifactStore | undefined;
  /** Where fetched artifacts are kept, verified (`<cacheDir>/<hex of the digest>`). */
  cacheDir?: string | undefined;
  /** The folder this process trains into: references inside it are read in place. */
  ownDir?: string | undefined;
}

/** The local folder holding the artifact's files; throws ArtifactStoreError when it cannot be had. */
export type ArtifactResolver = (ref: ArtifactRef) => Promise<string>;

export function createArtifactResolver(options: ArtifactResolverOptions): ArtifactResolver {
  const own = options.ownDir === undefined ? null : path.resolve(options.ownDir);
  return async ({ artifactDir, artifactUri, artifactDigest }) => {
    if (!artifactUri) return artifactDir;
    if (own !== null && isInside(own, path.resolve(artifactDir)) && (await isFolder(artifactDir))) return artifactDir;
    if (!options.store || options.cacheDir === undefined) {
      throw new ArtifactStoreError('invalid', `${artifactUri}: this process has no artifact store to fetch it from`);
    }
    if (!artifactDigest) {
      throw new ArtifactStoreError('invalid', `${artifactUri}: no artifact digest was recorded to check it against`);
    }
    return (await options.store.fetch(artifactUri, artifactDigest, options.cacheDir)).dir;
  };
}

/**
 * An activity's failure for a resolution error: a store that cannot be reached is retried (the error as is); an
 * artifact that is missing, other bytes than the recorded ones, or a URI that can never work is non-retryable.
 */
export function artifactFailure(err: unknown): unknown {
  if (!(err instanceof ArtifactStoreError) || err.kind === 'unavailable') return err;
  return ApplicationFailure.create({
    type: ErrorType.ArtifactInvalid,
    message: `the artifact cannot be fetched from the artifact store (${err.kind}): ${err.message}`,
    nonRetryable: true,
    details: [{ kind: err.kind }],
  });
}

function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

async function isFolder(dir: string): Promise<boolean> {
  return (await stat(dir).catch(() => null))?.isDirectory() ?? false;
}
