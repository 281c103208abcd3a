/**
 * The artifact store: how a trained model version's folder travels from the training worker's host to the gateways'.
 * See src/artifacts/store-core.ts for the layout and the guarantees, docs/artifact-store.md for the configuration.
 *
 *     const store = artifactStoreFromEnv(process.env, { defaultLocation: pathToFileURL(dir).href });
 *     const { uri, digest } = await store.put(artifactDir, `${model}/${version}/${lifecycleId}`);  // training host
 *     const { dir } = await store.fetch(uri, digest, cacheRoot);                                   // gateway host
 */
import { ArtifactStoreConfigError, loadArtifactStoreConfig, type ArtifactStoreConfig } from '../config/artifact-store';
import { FsArtifactStore } from './fs-store';
import { S3ArtifactStore, type S3ClientOptions } from './s3-store';
import type { ArtifactStore } from './store-core';

export * from './store-core';
export { FsArtifactStore } from './fs-store';
export { S3ArtifactStore, S3Client, type S3Connection, type S3ClientOptions } from './s3-store';
export { ArtifactStoreConfigError, loadArtifactStoreConfig, type ArtifactStoreConfig };

/** The store a configuration describes. */
export function createArtifactStore(config: ArtifactStoreConfig, s3Options?: S3ClientOptions): ArtifactStore {
  if ('s3' in config) return new S3ArtifactStore(config.location, config.s3, s3Options);
  return new FsArtifactStore(config.location);
}

/** The store of `env` (ML_ARTIFACT_STORE and friends; see src/config/artifact-store.ts). */
export function artifactStoreFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  options: { defaultLocation?: string } = {},
): ArtifactStore {
  return createArtifactStore(loadArtifactStoreConfig(env, options));
}
