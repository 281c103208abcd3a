/**
 * The S3-compatible artifact store (`s3://bucket/prefix`): AWS S3 or any server speaking its API (SeaweedFS in the
 * tests, src/dev/s3-server.ts). An artifact is `<prefix>/<key>/sha256-<hex>/files/<path>` plus
 * `<prefix>/<key>/sha256-<hex>/manifest.json`, which is uploaded last: S3 has no rename, so the manifest's presence
 * is what makes the artifact complete.
 *
 * The client is small on purpose: requests are signed with aws4fetch's `AwsV4Signer` (SigV4, no dependencies) and sent
 * with undici, which streams bodies both ways and has per-request timeouts. Uploads carry the file's SHA-256 as the
 * signed payload hash, so the server refuses bytes that differ from the ones hashed; addressing is path-style
 * (`<endpoint>/<bucket>/<key>`), which every S3-compatible server accepts.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { AwsV4Signer } from 'aws4fetch';
import { request, type Dispatcher } from 'undici';
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
  type PutResult,
  type StoreLocation,
} from './store-core';

/** Where and as whom to reach an S3-compatible server. */
export interface S3Connection {
  /** `http(s)://host[:port]`, no path: requests go to `<endpoint>/<bucket>/<key>`. */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3ClientOptions {
  /** Time to the response headers; default 30 s. */
  headersTimeoutMs?: number;
  /** Longest silence while a body streams; default 60 s. */
  bodyTimeoutMs?: number;
}

// SHA-256 of nothing: the signed payload hash of a request without a body.
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

interface SendOptions {
  method: 'GET' | 'HEAD' | 'PUT' | 'DELETE';
  bucket: string;
  key?: string;
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  /** Hex SHA-256 of the body (signed: the server checks it). */
  payloadSha256?: string;
}

/** What the object operations say went wrong, from the status and the S3 XML error body. */
function describeFailure(status: number, body: string): string {
  const field = (name: string) => new RegExp(`<${name}>([^<]{0,300})</${name}>`).exec(body)?.[1];
  const code = field('Code');
  const message = field('Message')
    ?.replace(/&#39;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, '&');
  return `HTTP ${status}${code ? ` ${code}` : ''}${message ? `: ${message}` : ''}`;
}

/**
 * The few S3 operations the store needs (and the test server's starter: create a bucket), over one signing path.
 * Errors are ArtifactStoreErrors: `unavailable` for an unreachable server, a 5xx, a throttle or refused credentials
 * (which a retry after a fix can cure), `invalid` for another 4xx.
 */
export class S3Client {
  /** The endpoint without a trailing slash. */
  readonly endpoint: string;
  private readonly signingCache = new Map<string, ArrayBuffer>();

  constructor(
    readonly connection: S3Connection,
    private readonly options: S3ClientOptions = {},
  ) {
    this.endpoint = connection.endpoint.replace(/\/+$/, '');
  }

  /** Creates `bucket`; one that exists already (owned by these credentials) is fine. */
  async createBucket(bucket: string): Promise<void> {
    const res = await this.send({ method: 'PUT', bucket });
    const body = await res.body.text();
    if (res.statusCode === 200 || (res.statusCode === 409 && body.includes('BucketAlreadyOwnedByYou'))) return;
    throw this.failure('PUT', bucket, undefined, res.statusCode, body);
  }

  /** Uploads one object: `body` (streamed) has `size` bytes with SHA-256 `sha256`, which the server checks. */
  async putObject(
    bucket: string,
    key: string,
    body: Readable | Buffer,
    size: number,
    sha256: string,
    metadata: ReadonlyMap<string, string> = new Map(),
  ): Promise<void> {
    const headers = Object.fromEntries([
      ['content-length', String(size)],
      ...[...metadata].map(([name, value]) => [`x-amz-meta-${name}`, value]),
    ]) as Record<string, string>;
    const res = await this.send({ method: 'PUT', bucket, key, headers, body, payloadSha256: sha256 });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw this.failure('PUT', bucket, key, res.statusCode, text);
  }

  /** The object's size and user metadata, or null when there is none. */
  async headObject(bucket: string, key: string): Promise<{ size: number; metadata: Map<string, string> } | null> {
    const res = await this.send({ method: 'HEAD', bucket, key });
    await res.body.dump();
    if (res.statusCode === 404) return null;
    if (res.statusCode !== 200) throw this.failure('HEAD', bucket, key, res.statusCode, '');
    const metadata = new Map<string, string>();
    for (const [name, value] of Object.entries(res.headers)) {
      if (name.startsWith('x-amz-meta-') && typeof value === 'string') metadata.set(name.slice(11), value);
    }
    return { size: Number(res.headers['content-length'] ?? -1), metadata };
  }

  /** The object's body as a stream, or null when there is no such object. */
  async getObject(bucket: string, key: string): Promise<Readable | null> {
    const res = await this.send({ method: 'GET', bucket, key });
    if (res.statusCode === 404) {
      await res.body.dump();
      return null;
    }
    if (res.statusCode !== 200) throw this.failure('GET', bucket, key, res.statusCode, await res.body.text());
    return res.body;
  }

  /** The object's bytes (at most `maxBytes`, else `invalid`), or null when there is no such object. */
  async getObjectBytes(bucket: string, key: string, maxBytes: number): Promise<Buffer | null> {
    const body = await this.getObject(bucket, key);
    if (!body) return null;
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBytes) {
          body.destroy();
          throw new ArtifactStoreError('invalid', `s3://${bucket}/${key} is larger than ${maxBytes} bytes`);
        }
        chunks.push(chunk);
      }
    } catch (err) {
      if (err instanceof ArtifactStoreError) throw err;
      throw this.unreachable('GET', bucket, key, err);
    }
    return Buffer.concat(chunks);
  }

  async deleteObject(bucket: string, key: string): Promise<void> {
    const res = await this.send({ method: 'DELETE', bucket, key });
    const text = await res.body.text();
    if (res.statusCode !== 204 && res.statusCode !== 200)
      throw this.failure('DELETE', bucket, key, res.statusCode, text);
  }

  private async send(options: SendOptions): Promise<Dispatcher.ResponseData> {
    const { method, bucket, key } = options;
    // Bucket and key are checked names (no characters that need encoding): the signed path is the sent path.
    const url = `${this.endpoint}/${bucket}${key === undefined ? '' : `/${key}`}`;
    const signer = new AwsV4Signer({
      method,
      url,
      headers: { ...options.headers, 'x-amz-content-sha256': options.payloadSha256 ?? EMPTY_SHA256 },
      accessKeyId: this.connection.accessKeyId,
      secretAccessKey: this.connection.secretAccessKey,
      sessionToken: this.connection.sessionToken,
      service: 's3',
      region: this.connection.region,
      cache: this.signingCache,
    });
    const signed = await signer.sign();
    const headers = Object.fromEntries(signed.headers) as Record<string, string>;
    try {
      return await request(signed.url, {
        method,
        headers,
        body: options.body,
        headersTimeout: this.options.headersTimeoutMs ?? 30_000,
        bodyTimeout: this.options.bodyTimeoutMs ?? 60_000,
      });
    } catch (err) {
      if (options.body && !Buffer.isBuffer(options.body)) options.body.destroy();
      throw this.unreachable(method, bucket, key, err);
    }
  }

  private where(bucket: string, key: string | undefined): string {
    return `s3://${bucket}${key === undefined ? '' : `/${key}`} at ${this.endpoint}`;
  }

  private unreachable(method: string, bucket: string, key: string | undefined, err: unknown): ArtifactStoreError {
    const cause = err as Error & { code?: string };
    return new ArtifactStoreError(
      'unavailable',
      `${method} ${this.where(bucket, key)} failed: ${cause.code ? `${cause.code} ` : ''}${cause.message}`,
      { cause: err },
    );
  }

  private failure(method: string, bucket: string, key: string | undefined, status: number, body: string) {
    const retryable = status >= 500 || status === 429 || status === 401 || status === 403 || status === 408;
    const hint = status === 401 || status === 403 ? ' (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)' : '';
    return new ArtifactStoreError(
      retryable ? 'unavailable' : 'invalid',
      `${method} ${this.where(bucket, key)} failed: ${describeFailure(status, body)}${hint}`,
    );
  }
}

/** The metadata key under which each uploaded file carries its SHA-256 (so a retried put skips what is there). */
const SHA256_METADATA = 'sha256';

export class S3ArtifactStore implements ArtifactStore {
  readonly location: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;

  constructor(location: Extract<StoreLocation, { kind: 's3' }>, connection: S3Connection, options?: S3ClientOptions) {
    this.location = location.uri;
    this.bucket = location.bucket;
    this.prefix = location.prefix;
    this.client = new S3Client(connection, options);
  }

  async put(localDir: string, key: string): Promise<PutResult> {
    checkRelativePath(key, 'artifact key', MAX_KEY_LENGTH);
    const scanned = await scanArtifactDir(localDir);
    const base = this.objectKey(`${key}/${digestSegment(scanned.digest)}`);
    const uri = `${this.location}/${key}/${digestSegment(scanned.digest)}`;
    const bytes = scanned.files.reduce((sum, file) => sum + file.size, 0);
    const result = { uri, digest: scanned.digest, files: scanned.files.length, bytes };
    if (await this.client.headObject(this.bucket, `${base}/${MANIFEST_NAME}`)) return { ...result, uploaded: false };
    for (const file of scanned.files) {
      const objectKey = `${base}/${FILES_DIR}/${file.path}`;
      // A retry after an interrupted put: a file already uploaded with these bytes is not sent again.
      const there = await this.client.headObject(this.bucket, objectKey);
      if (there?.size === file.size && there.metadata.get(SHA256_METADATA) === file.sha256) continue;
      await this.client.putObject(
        this.bucket,
        objectKey,
        createReadStream(file.absolute),
        file.size,
        file.sha256,
        new Map([[SHA256_METADATA, file.sha256]]),
      );
    }
    // Last: until this object exists, the artifact is not there for `exists` or `fetch`.
    const manifestSha256 = createHash('sha256').update(scanned.manifestBytes).digest('hex');
    await this.client.putObject(
      this.bucket,
      `${base}/${MANIFEST_NAME}`,
      scanned.manifestBytes,
      scanned.manifestBytes.length,
      manifestSha256,
    );
    return { ...result, uploaded: true };
  }

  async fetch(
    uri: string,
    expectedDigest: string,
    cacheRoot: string,
    options?: FetchOptions,
  ): Promise<FetchedArtifact> {
    const { key } = artifactPathOf(this.location, uri, expectedDigest);
    const base = this.objectKey(`${key}/${digestSegment(expectedDigest)}`);
    return fetchIntoCache(
      uri,
      expectedDigest,
      cacheRoot,
      {
        where: `S3 endpoint ${this.client.endpoint}`,
        readManifest: () => this.client.getObjectBytes(this.bucket, `${base}/${MANIFEST_NAME}`, MAX_MANIFEST_BYTES),
        openFile: async (relPath) => {
          const body = await this.client.getObject(this.bucket, `${base}/${FILES_DIR}/${relPath}`);
          if (!body)
            throw new ArtifactStoreError('not-found', `${uri}: ${relPath}, listed in its manifest, is missing`);
          return body;
        },
      },
      options,
    );
  }

  async exists(uri: string): Promise<boolean> {
    const { key, digest } = artifactPathOf(this.location, uri);
    return (
      (await this.client.headObject(
        this.bucket,
        `${this.objectKey(`${key}/${digestSegment(digest)}`)}/${MANIFEST_NAME}`,
      )) !== null
    );
  }

  /** The object key of `relative` (below the location's prefix). */
  objectKey(relative: string): string {
    return this.prefix ? `${this.prefix}/${relative}` : relative;
  }
}
