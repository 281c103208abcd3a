/**
 * The shared-filesystem artifact store (`file:///shared/folder`): a folder every host mounts at the same path (NFS, a
 * bind mount, a local disk for one host). An artifact is `<root>/<key>/sha256-<hex>/` with `files/` and
 * `manifest.json`; it is written in a temp folder beside that and renamed into place once the manifest is in it, so
 * the folder either holds a complete artifact or does not exist.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import {
  ArtifactStoreError,
  FILES_DIR,
  MANIFEST_NAME,
  MAX_KEY_LENGTH,
  MAX_MANIFEST_BYTES,
  artifactPathOf,
  checkRelativePath,
  digestSegment,
  fetchIntoCache,
  scanArtifactDir,
  type ArtifactStore,
  type FetchOptions,
  type FetchedArtifact,
  type LocalArtifactFile,
  type PutResult,
  type StoreLocation,
} from './store-core';

// O_NOFOLLOW: a link planted in the store is not followed; O_NONBLOCK: a FIFO cannot hang the open (it then fails the
// regular-file check).
const READ_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);

export class FsArtifactStore implements ArtifactStore {
  readonly location: string;
  readonly root: string;

  constructor(location: Extract<StoreLocation, { kind: 'fs' }>) {
    this.location = location.uri;
    this.root = location.root;
  }

  async put(localDir: string, key: string): Promise<PutResult> {
    checkRelativePath(key, 'artifact key', MAX_KEY_LENGTH);
    await this.checkRoot();
    const scanned = await scanArtifactDir(localDir);
    const relative = `${key}/${digestSegment(scanned.digest)}`;
    const uri = `${this.location}/${relative}`;
    const bytes = scanned.files.reduce((sum, file) => sum + file.size, 0);
    const result = { uri, digest: scanned.digest, files: scanned.files.length, bytes };
    if (await this.exists(uri)) return { ...result, uploaded: false };
    const target = this.folderOf(relative);
    await mkdir(path.dirname(target), { recursive: true });
    const tmp = await mkdtemp(path.join(path.dirname(target), `.tmp-${path.basename(target).slice(0, 20)}-`));
    try {
      for (const file of scanned.files) await copyVerified(file, path.join(tmp, FILES_DIR, ...file.path.split('/')));
      await writeSynced(path.join(tmp, MANIFEST_NAME), scanned.manifestBytes);
      await this.install(tmp, target);
      return { ...result, uploaded: true };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  async fetch(
    uri: string,
    expectedDigest: string,
    cacheRoot: string,
    options?: FetchOptions,
  ): Promise<FetchedArtifact> {
    const { key } = artifactPathOf(this.location, uri, expectedDigest);
    const folder = this.folderOf(`${key}/${digestSegment(expectedDigest)}`);
    return fetchIntoCache(
      uri,
      expectedDigest,
      cacheRoot,
      {
        where: `folder ${this.root}`,
        readManifest: async () => {
          await this.checkRoot();
          return readBounded(path.join(folder, MANIFEST_NAME), MAX_MANIFEST_BYTES, uri);
        },
        openFile: async (relPath) => openRegular(path.join(folder, FILES_DIR, ...relPath.split('/')), uri, relPath),
      },
      options,
    );
  }

  async exists(uri: string): Promise<boolean> {
    const { key, digest } = artifactPathOf(this.location, uri);
    await this.checkRoot();
    const manifest = await lstat(path.join(this.folderOf(`${key}/${digestSegment(digest)}`), MANIFEST_NAME)).catch(
      () => null,
    );
    return manifest?.isFile() ?? false;
  }

  private folderOf(relative: string): string {
    return path.join(this.root, ...relative.split('/'));
  }

  /** The root must be there: creating it would write to a local disk where a shared mount is missing. */
  private async checkRoot(): Promise<void> {
    const found = await stat(this.root).catch(() => null);
    if (!found?.isDirectory()) {
      throw new ArtifactStoreError(
        'unavailable',
        `artifact store folder ${this.root} does not exist (is the shared filesystem mounted?)`,
      );
    }
  }

  /** Renames the complete `tmp` to `target`; a concurrent put of the same artifact may win, an incomplete one not. */
  private async install(tmp: string, target: string): Promise<void> {
    try {
      await rename(tmp, target);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    }
    const manifest = await lstat(path.join(target, MANIFEST_NAME)).catch(() => null);
    if (manifest?.isFile()) return;
    // A folder without a manifest is no artifact (written by hand, or by something else): set aside, then replaced.
    const aside = `${target}.stale-${process.pid}-${Date.now()}`;
    await rename(target, aside);
    await rm(aside, { recursive: true, force: true });
    await rename(tmp, target);
  }
}

/** Copies `file` to `to` (a new file), checking that the bytes are the ones scanned, and syncs it. */
async function copyVerified(file: LocalArtifactFile, to: string): Promise<void> {
  await mkdir(path.dirname(to), { recursive: true });
  const source = await open(file.absolute, READ_FLAGS);
  try {
    const target = await open(to, CREATE_FLAGS, 0o644);
    try {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of source.createReadStream({ autoClose: false }) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        size += chunk.length;
        await target.write(chunk);
      }
      if (size !== file.size || hash.digest('hex') !== file.sha256) {
        throw new ArtifactStoreError('invalid', `${file.absolute} changed while it was being stored`);
      }
      await target.sync();
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

async function writeSynced(file: string, bytes: Uint8Array): Promise<void> {
  const handle = await open(file, CREATE_FLAGS, 0o644);
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The bytes of a regular file, null when it does not exist; larger than `max` is `invalid`. */
async function readBounded(file: string, max: number, uri: string): Promise<Buffer | null> {
  let handle;
  try {
    handle = await open(file, READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new ArtifactStoreError('invalid', `${uri}: ${MANIFEST_NAME} cannot be read (${code ?? 'error'})`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ArtifactStoreError('invalid', `${uri}: ${MANIFEST_NAME} is not a regular file`);
    if (info.size > max)
      throw new ArtifactStoreError('invalid', `${uri}: ${MANIFEST_NAME} is larger than ${max} bytes`);
    return await readFile(handle);
  } finally {
    await handle.close();
  }
}

/** A read stream of a regular file of the store; a missing file is `not-found`, a link or FIFO `invalid`. */
async function openRegular(file: string, uri: string, relPath: string): Promise<Readable> {
  let handle;
  try {
    handle = await open(file, READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new ArtifactStoreError('not-found', `${uri}: ${relPath}, listed in its manifest, is missing`);
    }
    throw new ArtifactStoreError('invalid', `${uri}: ${relPath} cannot be read (${code ?? 'error'})`);
  }
  if (!(await handle.stat()).isFile()) {
    await handle.close();
    throw new ArtifactStoreError('invalid', `${uri}: ${relPath} is not a regular file`);
  }
  return handle.createReadStream();
}
