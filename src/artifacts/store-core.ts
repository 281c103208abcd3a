/**
 * The artifact store: where a trained model version's folder goes so that a gateway on another host can load it.
 *
 * `put` uploads every file of a folder and then a manifest (names, sizes, SHA-256 of each file, and the folder's
 * `artifactDigest`); an artifact whose manifest is not there is not complete, so a half-uploaded one is never fetched.
 * The URI it returns ends in the digest (`<location>/<key>/sha256-<hex>`): an artifact, once there, is never replaced,
 * and putting the same folder again (a retried activity) is a no-op. `fetch` downloads into a temp dir beside the
 * cache, checks every file against the manifest and the folder against the expected digest, and renames it into the
 * cache (`<cacheRoot>/<hex>`) in one step: the cache holds complete, verified artifacts or nothing.
 *
 * Two implementations: a shared filesystem (`file:///...`, src/artifacts/fs-store.ts) and S3-compatible object
 * storage (`s3://bucket/prefix`, src/artifacts/s3-store.ts). src/config/artifact-store.ts reads which one from the
 * environment; {@link createArtifactStore} builds it.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, open, opendir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { ARTIFACT_DIGEST_PATTERN } from '../shared/artifact-digest';
import { describeIssues } from '../shared/spec';
import { ArtifactReadError, artifactDigest } from './digest';

/**
 * What went wrong, for the caller to decide on a retry: `unavailable` (the store could not be reached or answered an
 * error: worth retrying), `not-found` (no complete artifact at the URI), `digest-mismatch` (bytes other than the ones
 * recorded), `invalid` (a URI, key, folder or manifest that can never work), `conflict` (something else occupies the
 * place of the artifact).
 */
export type ArtifactStoreProblem = 'unavailable' | 'not-found' | 'digest-mismatch' | 'invalid' | 'conflict';

/** A failure of the artifact store; `kind` says whether a retry can help (only `unavailable`). */
export class ArtifactStoreError extends Error {
  constructor(
    readonly kind: ArtifactStoreProblem,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'ArtifactStoreError';
  }
}

/** The name of the manifest object beside an artifact's `files/`. */
export const MANIFEST_NAME = 'manifest.json';
/** Where an artifact's files live, below its URI. */
export const FILES_DIR = 'files';
export const MANIFEST_FORMAT = 'ml-lifecycle/artifact-manifest/v1';
/** Bounds on what a manifest (possibly written by someone hostile) may make a fetch do. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
export const MAX_ARTIFACT_FILES = 1_000;
/** S3's limit on one PUT; larger files would need a multipart upload, which this store does not do. */
export const MAX_FILE_BYTES = 5 * 1024 ** 3;
/**
 * Lengths of a file's path in an artifact, of a key and of a location's prefix. S3 keys are at most 1024 bytes: these
 * with `/sha256-<hex>/files/` between them stay below that.
 */
export const MAX_FILE_PATH_LENGTH = 400;
export const MAX_KEY_LENGTH = 300;
export const MAX_PREFIX_LENGTH = 200;

// One path segment: a name any filesystem and any S3 implementation store as is, and which needs no URL encoding.
const SEGMENT_RE = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * Checks a relative path (a key, or a file's path inside an artifact): `/`-separated segments of letters, digits,
 * `.`, `_` and `-`, none of them `.` or `..`, not absolute, no empty segment. Returns it; throws an `invalid`
 * ArtifactStoreError naming `what` otherwise. Nothing that passes can leave the folder it is joined to.
 */
export function checkRelativePath(value: string, what: string, maxLength = MAX_FILE_PATH_LENGTH): string {
  const fail = (why: string): never => {
    throw new ArtifactStoreError('invalid', `${what} ${JSON.stringify(String(value).slice(0, 200))}: ${why}`);
  };
  if (typeof value !== 'string' || value.length === 0) fail('empty');
  if (value.length > maxLength) fail(`longer than ${maxLength} characters`);
  if (value.startsWith('/')) fail('an absolute path');
  for (const segment of value.split('/')) {
    if (segment === '') fail('an empty path segment (`//` or a trailing `/`)');
    if (segment === '.' || segment === '..') fail(`a \`${segment}\` segment`);
    if (!SEGMENT_RE.test(segment)) {
      fail('segments are 1 to 128 letters, digits, `.`, `_` or `-`');
    }
  }
  return value;
}

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, '64 lowercase hex digits');

export const ManifestFile = z.strictObject({
  /** Relative to the artifact folder; checked with {@link checkRelativePath}. */
  path: z.string(),
  size: z.number().int().min(0).max(MAX_FILE_BYTES),
  sha256: Sha256Hex,
});
export type ManifestFile = z.infer<typeof ManifestFile>;

export const ArtifactManifest = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  /** `artifactDigest` of the folder (src/artifacts/digest.ts). */
  digest: z.string().regex(ARTIFACT_DIGEST_PATTERN, 'sha256: and 64 lowercase hex digits'),
  files: z.array(ManifestFile).min(1).max(MAX_ARTIFACT_FILES),
});
export type ArtifactManifest = z.infer<typeof ArtifactManifest>;

/**
 * Parses manifest bytes from the store and checks every path: no file may leave the folder, none may be listed twice,
 * and none may be both a file and a folder (`a` and `a/b`).
 */
export function parseManifest(bytes: Uint8Array, where: string): ArtifactManifest {
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new ArtifactStoreError('invalid', `${where}: the manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new ArtifactStoreError('invalid', `${where}: the manifest is not JSON`);
  }
  const parsed = ArtifactManifest.safeParse(json);
  if (!parsed.success) {
    throw new ArtifactStoreError('invalid', `${where}: invalid manifest: ${describeIssues(parsed.error).join('; ')}`);
  }
  const files = new Set<string>();
  const dirs = new Set<string>();
  for (const file of parsed.data.files) {
    checkRelativePath(file.path, `${where}: manifest file`);
    if (files.has(file.path) || dirs.has(file.path)) {
      throw new ArtifactStoreError('invalid', `${where}: manifest lists ${file.path} twice or as a file and a folder`);
    }
    files.add(file.path);
    const segments = file.path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const dir = segments.slice(0, i).join('/');
      if (files.has(dir)) {
        throw new ArtifactStoreError('invalid', `${where}: manifest lists ${dir} as a file and a folder`);
      }
      dirs.add(dir);
    }
  }
  return parsed.data;
}

/** A regular file of an artifact folder, found by {@link scanArtifactDir}. */
export interface LocalArtifactFile {
  /** Relative, `/`-separated. */
  path: string;
  absolute: string;
  size: number;
  sha256: string;
}

/** An artifact folder ready to upload: its files (sorted by path), its digest and the manifest to write last. */
export interface ScannedArtifact {
  digest: string;
  files: LocalArtifactFile[];
  manifest: ArtifactManifest;
  /** The manifest as uploaded. */
  manifestBytes: Buffer;
}

/** SHA-256 (hex) and size of a file, streamed. */
export async function hashFile(file: string): Promise<{ sha256: string; size: number }> {
  const handle = await open(file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
  try {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of handle.createReadStream({ autoClose: false }) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
    }
    return { sha256: hash.digest('hex'), size };
  } finally {
    await handle.close();
  }
}

/**
 * Lists, hashes and digests an artifact folder for upload. Only regular files and folders are allowed: a symbolic
 * link, a device or a FIFO anywhere in it is refused (`invalid`), as is a name {@link checkRelativePath} refuses or a
 * folder the gateway could not serve (no model.onnx or model.json).
 */
export async function scanArtifactDir(localDir: string): Promise<ScannedArtifact> {
  const root = path.resolve(localDir);
  const top = await lstat(root).catch((err: NodeJS.ErrnoException) => {
    throw new ArtifactStoreError('invalid', `${root}: cannot be read (${err.code ?? err.message})`);
  });
  if (!top.isDirectory()) throw new ArtifactStoreError('invalid', `${root}: not a folder`);
  const found: { path: string; absolute: string }[] = [];
  const walk = async (dir: string, prefix: string) => {
    for await (const entry of await opendir(dir)) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      checkRelativePath(rel, `${root}: file`);
      const absolute = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(absolute, rel);
      else if (entry.isFile()) found.push({ path: rel, absolute });
      else {
        const kind = entry.isSymbolicLink() ? 'a symbolic link' : 'not a regular file';
        throw new ArtifactStoreError('invalid', `${root}: ${rel} is ${kind}; an artifact holds regular files only`);
      }
    }
  };
  await walk(root, '');
  if (found.length > MAX_ARTIFACT_FILES) {
    throw new ArtifactStoreError('invalid', `${root}: more than ${MAX_ARTIFACT_FILES} files`);
  }
  found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  let digest: string;
  try {
    digest = await artifactDigest(root);
  } catch (err) {
    if (err instanceof ArtifactReadError) {
      throw new ArtifactStoreError('invalid', `${root}: not a servable artifact: ${err.message}`, { cause: err });
    }
    throw err;
  }
  const files: LocalArtifactFile[] = [];
  for (const file of found) {
    const { sha256, size } = await hashFile(file.absolute);
    if (size > MAX_FILE_BYTES) {
      throw new ArtifactStoreError('invalid', `${root}: ${file.path} is larger than ${MAX_FILE_BYTES} bytes`);
    }
    files.push({ ...file, sha256, size });
  }
  const manifest: ArtifactManifest = {
    format: MANIFEST_FORMAT,
    digest,
    files: files.map(({ path: p, size, sha256 }) => ({ path: p, size, sha256 })),
  };
  return { digest, files, manifest, manifestBytes: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`) };
}

/** Where a store keeps its artifacts, parsed from its URI (ML_ARTIFACT_STORE). */
export type StoreLocation =
  | {
      kind: 'fs';
      /** The canonical `file:///...` URI, no trailing slash. */
      uri: string;
      /** Absolute path of the shared folder. */
      root: string;
    }
  | {
      kind: 's3';
      /** The canonical `s3://bucket[/prefix]` URI, no trailing slash. */
      uri: string;
      bucket: string;
      /** Key prefix without leading or trailing `/`; may be empty. */
      prefix: string;
    };

// DNS-style S3 bucket names: 3-63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit.
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Parses a store location: `file:///absolute/folder` (a filesystem every host mounts at that path) or
 * `s3://bucket[/prefix]`. Throws an `invalid` ArtifactStoreError saying what is wrong.
 */
export function parseStoreLocation(value: string): StoreLocation {
  const fail = (why: string): never => {
    throw new ArtifactStoreError('invalid', `artifact store ${JSON.stringify(String(value).slice(0, 300))}: ${why}`);
  };
  if (typeof value !== 'string' || value === '') return fail('empty');
  if (value.startsWith('s3://')) {
    const match = /^s3:\/\/([^/?#]*)(?:\/([^?#]*))?$/.exec(value);
    if (!match) return fail('an s3:// URI has no query or fragment');
    const bucket = match[1] as string;
    if (!BUCKET_RE.test(bucket) || bucket.includes('..')) {
      return fail('the bucket must be 3 to 63 lowercase letters, digits, `.` or `-`');
    }
    const prefix = (match[2] ?? '').replace(/\/+$/, '');
    if (prefix !== '') checkRelativePath(prefix, 'artifact store prefix', MAX_PREFIX_LENGTH);
    return { kind: 's3', bucket, prefix, uri: `s3://${bucket}${prefix ? `/${prefix}` : ''}` };
  }
  if (value.startsWith('file:')) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return fail('not a valid file: URL');
    }
    if (url.host !== '' && url.host !== 'localhost') return fail('a file:// URI names no host (file:///path)');
    if (url.search || url.hash) return fail('a file:// URI has no query or fragment');
    // URL parsing would resolve them silently: a location that says `..` is refused rather than reinterpreted.
    if (/(^|\/)(\.|%2e){1,2}(\/|$)/i.test(value.slice('file:'.length))) return fail('no `.` or `..` segments');
    let root: string;
    try {
      root = fileURLToPath(url);
    } catch (err) {
      return fail((err as Error).message);
    }
    root = root.replace(/\/+$/, '');
    if (!path.isAbsolute(root) || root === '') return fail('the folder must be absolute and not /');
    return { kind: 'fs', root, uri: pathToFileURL(root).href };
  }
  return fail('not a file:///folder or s3://bucket/prefix URI');
}

/** `sha256-<hex>`: the last segment of an artifact's URI. */
export function digestSegment(digest: string): string {
  return `sha256-${digest.slice('sha256:'.length)}`;
}

/** Checks a digest given to `fetch`; returns its hex part. */
export function checkDigest(digest: string): string {
  if (typeof digest !== 'string' || !ARTIFACT_DIGEST_PATTERN.test(digest)) {
    throw new ArtifactStoreError(
      'invalid',
      `expected digest ${JSON.stringify(String(digest).slice(0, 100))}: not sha256: and 64 hex digits`,
    );
  }
  return digest.slice('sha256:'.length);
}

/**
 * Splits an artifact URI below a store's location into its key and digest: `<location>/<key>/sha256-<hex>`. Refuses a
 * URI outside the location (a store reads only its own artifacts), a key {@link checkRelativePath} refuses, and a last
 * segment that is not the expected digest (`digest-mismatch`: the URI names other bytes than the caller expects).
 */
export function artifactPathOf(
  location: string,
  uri: string,
  expectedDigest?: string,
): { key: string; digest: string } {
  if (expectedDigest !== undefined) checkDigest(expectedDigest);
  if (typeof uri !== 'string' || !uri.startsWith(`${location}/`)) {
    throw new ArtifactStoreError(
      'invalid',
      `${JSON.stringify(String(uri).slice(0, 300))} is not an artifact URI below ${location}`,
    );
  }
  const rest = uri.slice(location.length + 1);
  checkRelativePath(rest, 'artifact URI path', MAX_KEY_LENGTH + 72);
  const segments = rest.split('/');
  const last = segments.pop() as string;
  const match = /^sha256-([0-9a-f]{64})$/.exec(last);
  if (!match || segments.length === 0) {
    throw new ArtifactStoreError('invalid', `${uri}: an artifact URI ends in /<key>/sha256-<64 hex digits>`);
  }
  const digest = `sha256:${match[1]}`;
  if (expectedDigest !== undefined && digest !== expectedDigest) {
    throw new ArtifactStoreError(
      'digest-mismatch',
      `${uri} names digest ${digest}, the caller expects ${expectedDigest}`,
    );
  }
  return { key: segments.join('/'), digest };
}

/** Progress of one file of a fetch; `fetch` waits for a returned promise before it reads on. */
export interface FetchProgress {
  uri: string;
  file: string;
  /** Bytes of this file received so far. */
  bytes: number;
  /** Its size per the manifest. */
  size: number;
}

export interface FetchOptions {
  /** Called as bytes arrive (at most once per chunk); awaited, so it can also pace or heartbeat. */
  onProgress?: (progress: FetchProgress) => void | Promise<void>;
}

/** Where a fetched artifact is: `dir` holds exactly its files, verified against the expected digest. */
export interface FetchedArtifact {
  dir: string;
  digest: string;
  /** True when the cache had it already (nothing was downloaded). */
  fromCache: boolean;
}

/** What `put` stored. */
export interface PutResult {
  /** `<location>/<key>/sha256-<hex>`: what `fetch` and `exists` take. */
  uri: string;
  digest: string;
  files: number;
  bytes: number;
  /** False when a complete artifact with this digest was already at the key (nothing was uploaded). */
  uploaded: boolean;
}

/** A place many hosts put artifact folders into and fetch them from. */
export interface ArtifactStore {
  /** The store's base URI (`file:///...` or `s3://bucket/prefix`); artifact URIs lie below it. */
  readonly location: string;
  /**
   * Uploads the folder `localDir` under `key` (`/`-separated segments of letters, digits, `.`, `_`, `-`; for instance
   * `<model>/<version>/<lifecycle>`): every file, then the manifest. Idempotent: a complete artifact with the same
   * digest already there is left as is.
   */
  put(localDir: string, key: string): Promise<PutResult>;
  /**
   * The artifact at `uri` as a verified folder of `cacheRoot` (`<cacheRoot>/<hex of the digest>`), downloaded unless
   * the cache has it. Refuses (ArtifactStoreError) bytes whose digest is not `expectedDigest`, leaving nothing in the
   * cache. Concurrent fetches of one digest, in one process or several, end with one cache entry.
   */
  fetch(uri: string, expectedDigest: string, cacheRoot: string, options?: FetchOptions): Promise<FetchedArtifact>;
  /** Whether a complete artifact (its manifest) is at `uri`. */
  exists(uri: string): Promise<boolean>;
}

/** How a store reads one artifact: its manifest (null when absent) and its files' bytes. */
export interface ArtifactSource {
  /** Where the bytes come from, for error messages (`S3 endpoint http://…`, `folder /shared/…`). */
  where: string;
  readManifest(): Promise<Uint8Array | null>;
  /** A stream of the file at `relPath` (already checked) below the artifact's `files/`. */
  openFile(relPath: string): Promise<Readable>;
}

// Fetches in flight in this process, by cache folder: a second caller waits for the first instead of downloading too.
const inFlight = new Map<string, Promise<FetchedArtifact>>();

/**
 * The download half of `fetch`, shared by the stores: cache lookup (with the cached folder's digest checked, so a
 * damaged entry is fetched again), download into `<cacheRoot>/.tmp-*`, checks, then one rename.
 */
export async function fetchIntoCache(
  uri: string,
  expectedDigest: string,
  cacheRoot: string,
  source: ArtifactSource,
  options: FetchOptions = {},
): Promise<FetchedArtifact> {
  const hex = checkDigest(expectedDigest);
  const root = path.resolve(cacheRoot);
  const final = path.join(root, hex);
  const pending = inFlight.get(final);
  if (pending) return pending.then((fetched) => ({ ...fetched, fromCache: true }));
  const run = (async () => {
    await mkdir(root, { recursive: true });
    if (await cachedEntryValid(final, expectedDigest)) return { dir: final, digest: expectedDigest, fromCache: true };
    await pruneStaleTemps(root);
    return download(uri, expectedDigest, root, final, source, options);
  })();
  inFlight.set(final, run);
  try {
    return await run;
  } finally {
    inFlight.delete(final);
  }
}

/** How old a download's temp folder must be before a later fetch takes it for the leftover of a crashed process. */
export const STALE_TEMP_MS = 24 * 60 * 60 * 1000;

/** Removes `.tmp-*` and `.stale-*` folders of `root` older than {@link STALE_TEMP_MS}: what killed fetches left. */
async function pruneStaleTemps(root: string): Promise<void> {
  const now = Date.now();
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (!name.startsWith('.tmp-') && !name.startsWith('.stale-')) continue;
    const info = await lstat(path.join(root, name)).catch(() => null);
    if (info && now - info.mtimeMs > STALE_TEMP_MS) await rm(path.join(root, name), { recursive: true, force: true });
  }
}

/** Whether `dir` holds an artifact with `digest`; a damaged entry (other bytes, unreadable) is removed. */
async function cachedEntryValid(dir: string, digest: string): Promise<boolean> {
  const stat = await lstat(dir).catch(() => null);
  if (!stat) return false;
  if (stat.isDirectory()) {
    const actual = await artifactDigest(dir).catch(() => null);
    if (actual === digest) return true;
  }
  // Moved aside first: a concurrent fetch sees either the damaged entry or none, never a half-removed one.
  const aside = `${path.dirname(dir)}/.stale-${path.basename(dir)}-${process.pid}-${Date.now()}`;
  await rename(dir, aside).catch(() => undefined);
  await rm(aside, { recursive: true, force: true });
  return false;
}

async function download(
  uri: string,
  digest: string,
  root: string,
  final: string,
  source: ArtifactSource,
  options: FetchOptions,
): Promise<FetchedArtifact> {
  const manifestBytes = await source.readManifest();
  if (manifestBytes === null) {
    throw new ArtifactStoreError(
      'not-found',
      `${uri}: no complete artifact there (no ${MANIFEST_NAME}: never uploaded, or its upload did not finish)`,
    );
  }
  const manifest = parseManifest(manifestBytes, uri);
  if (manifest.digest !== digest) {
    throw new ArtifactStoreError(
      'digest-mismatch',
      `${uri}: its manifest records digest ${manifest.digest}, not ${digest}`,
    );
  }
  const tmp = await mkdtemp(path.join(root, `.tmp-${path.basename(final).slice(0, 16)}-`));
  try {
    for (const file of manifest.files) await downloadFile(uri, tmp, file, source, options);
    let actual: string;
    try {
      actual = await artifactDigest(tmp);
    } catch (err) {
      throw new ArtifactStoreError('invalid', `${uri}: not a servable artifact: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (actual !== digest) {
      throw new ArtifactStoreError(
        'digest-mismatch',
        `${uri}: the downloaded files have digest ${actual}, not ${digest}`,
      );
    }
    try {
      await rename(tmp, final);
      return { dir: final, digest, fromCache: false };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      // Another fetch (another process) renamed its copy first: use it if it is sound.
      if (await cachedEntryValid(final, digest)) return { dir: final, digest, fromCache: false };
      await rename(tmp, final);
      return { dir: final, digest, fromCache: false };
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function downloadFile(
  uri: string,
  tmp: string,
  file: ManifestFile,
  source: ArtifactSource,
  options: FetchOptions,
): Promise<void> {
  const target = path.join(tmp, ...file.path.split('/'));
  await mkdir(path.dirname(target), { recursive: true });
  const stream = await source.openFile(file.path);
  const hash = createHash('sha256');
  let bytes = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (bytes > file.size) {
        callback(new ArtifactStoreError('digest-mismatch', `${uri}: ${file.path} is longer than its manifest says`));
        return;
      }
      hash.update(chunk);
      const progress = options.onProgress?.({ uri, file: file.path, bytes, size: file.size });
      if (progress) progress.then(() => callback(null, chunk), callback);
      else callback(null, chunk);
    },
  });
  // `wx` with O_NOFOLLOW: a fresh regular file in a folder this fetch created, never through a link.
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);
  try {
    const out = await open(target, flags, 0o644);
    await pipeline(stream, check, out.createWriteStream());
  } catch (err) {
    if (err instanceof ArtifactStoreError) throw err;
    throw new ArtifactStoreError(
      'unavailable',
      `${uri}: download of ${file.path} from ${source.where} failed: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (bytes !== file.size || hash.digest('hex') !== file.sha256) {
    throw new ArtifactStoreError(
      'digest-mismatch',
      `${uri}: ${file.path} does not match its manifest (${bytes} bytes received, ${file.size} recorded, or other bytes)`,
    );
  }
  // Read-only: a cache entry is shared by every load of the digest and is not to be edited in place.
  await chmod(target, 0o444);
}
