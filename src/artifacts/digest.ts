import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';

/**
 * The digest of an artifact as it is served: the files the gateway loads, in a fixed order, each named, sized and
 * hashed. Computed by the training activity once the trainer has exited, recorded in the lifecycle's history and the
 * registry, and checked by the gateway against the bytes it loads: a file changed after training is refused.
 * Files written later beside the model (validation predictions) are not part of it.
 */
export const ARTIFACT_DIGEST_FILES = ['model.json', 'model.onnx', 'profile.json'] as const;
/** Files an artifact cannot be served without; the others are hashed when present and recorded as absent otherwise. */
export const REQUIRED_ARTIFACT_FILES: readonly string[] = ['model.json', 'model.onnx'];

// The pattern lives with the workflow-safe schema (src/shared/artifact-digest.ts); re-exported under its old home.
export { ARTIFACT_DIGEST_PATTERN } from '../shared/artifact-digest';

export type ArtifactFiles = ReadonlyMap<string, Uint8Array | null>;

/** The digest of already-read artifact files (null: absent), so a reader can hash exactly the bytes it then uses. */
export function digestOfFiles(files: ArtifactFiles): string {
  const outer = createHash('sha256');
  outer.update('ml-lifecycle/artifact/v1\n');
  for (const name of ARTIFACT_DIGEST_FILES) {
    const bytes = files.get(name) ?? null;
    const inner = bytes === null ? '-' : createHash('sha256').update(bytes).digest('hex');
    outer.update(`${name}\0${bytes === null ? -1 : bytes.length}\0${inner}\n`);
  }
  return `sha256:${outer.digest('hex')}`;
}

/** An artifact folder that cannot be read as one: the message names the file, never its contents. */
export class ArtifactReadError extends Error {}

// O_NOFOLLOW: a symbolic link in place of a file fails the open (ELOOP) instead of being followed, with no window
// between a check and the open. O_NONBLOCK: a FIFO put in place of a file cannot hang the open; it fails the
// regular-file check below. Both are 0 where the platform lacks them (Windows), which only loses the hardening.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/** The bytes of `file`, null when it does not exist; a link, a folder, a device or an unreadable file throws. */
async function readRegularFile(file: string, name: string): Promise<Uint8Array | null> {
  let handle;
  try {
    handle = await open(file, OPEN_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    if (code === 'ELOOP') throw new ArtifactReadError(`${name}: not a regular file (a symbolic link)`);
    throw new ArtifactReadError(`${name}: cannot be read (${code ?? 'error'})`);
  }
  try {
    // Checked on the open handle: what is read is what was checked, whatever replaces the path meanwhile.
    if (!(await handle.stat()).isFile()) throw new ArtifactReadError(`${name}: not a regular file`);
    return await handle.readFile();
  } catch (err) {
    if (err instanceof ArtifactReadError) throw err;
    throw new ArtifactReadError(`${name}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    await handle.close();
  }
}

/**
 * Reads the digested files of `dir`. Only regular files count: a symbolic link (which could point anywhere) is refused,
 * as is a missing required file.
 */
export async function readArtifactFiles(dir: string): Promise<Map<string, Uint8Array | null>> {
  const files = new Map<string, Uint8Array | null>();
  for (const name of ARTIFACT_DIGEST_FILES) {
    const bytes = await readRegularFile(path.join(dir, name), name);
    if (bytes === null && REQUIRED_ARTIFACT_FILES.includes(name)) throw new ArtifactReadError(`${name}: missing`);
    files.set(name, bytes);
  }
  return files;
}

/** The digest of the artifact in `dir` (see {@link digestOfFiles}). */
export async function artifactDigest(dir: string): Promise<string> {
  return digestOfFiles(await readArtifactFiles(dir));
}
