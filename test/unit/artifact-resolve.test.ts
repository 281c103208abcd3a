import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactFailure, createArtifactResolver } from '../../src/artifacts/resolve';
import { ArtifactStoreError, FsArtifactStore, parseStoreLocation, type PutResult } from '../../src/artifacts/store';
import { createGateway, type Gateway } from '../../src/serving/server';
import { ErrorType } from '../../src/shared/errors';

const ADMIN_TOKEN = 'unit-admin-token-0123456789';

let dir: string;
let store: FsArtifactStore;
let stored: PutResult;
let trainerDir: string;

/** A folder the store takes (its bytes are no model: what is under test happens before any load). */
async function artifactFolder(at: string, onnx = 'onnx'): Promise<string> {
  await mkdir(at, { recursive: true });
  await writeFile(join(at, 'model.onnx'), onnx);
  await writeFile(join(at, 'model.json'), '{}');
  return at;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mll-resolve-unit-'));
  await mkdir(join(dir, 'store'));
  store = new FsArtifactStore(
    parseStoreLocation(pathToFileURL(join(dir, 'store')).href) as Extract<
      ReturnType<typeof parseStoreLocation>,
      { kind: 'fs' }
    >,
  );
  trainerDir = await artifactFolder(join(dir, 'trainer', 'artifacts', 'churn', 'v1', 'run-1'));
  stored = await store.put(trainerDir, 'churn/v1/run-1');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('artifact resolution', () => {
  it('uses the folder as named when there is no URI (histories from before the store)', async () => {
    const resolve = createArtifactResolver({ store, cacheDir: join(dir, 'cache-a') });
    await expect(resolve({ artifactDir: '/elsewhere/churn/v1' })).resolves.toBe('/elsewhere/churn/v1');
    await expect(readdir(join(dir, 'cache-a'))).rejects.toThrow();
  });

  it("reads this process's own training output in place", async () => {
    const resolve = createArtifactResolver({
      store,
      cacheDir: join(dir, 'cache-b'),
      ownDir: join(dir, 'trainer', 'artifacts'),
    });
    const ref = { artifactDir: trainerDir, artifactUri: stored.uri, artifactDigest: stored.digest };
    await expect(resolve(ref)).resolves.toBe(trainerDir);
  });

  it("fetches another host's artifact into this process's cache, verified", async () => {
    const cacheDir = join(dir, 'cache-c');
    const resolve = createArtifactResolver({ store, cacheDir, ownDir: join(dir, 'control', 'artifacts') });
    const ref = { artifactDir: trainerDir, artifactUri: stored.uri, artifactDigest: stored.digest };
    const folder = await resolve(ref);
    expect(folder).toBe(join(cacheDir, stored.digest.slice('sha256:'.length)));
    expect((await readdir(folder)).sort()).toEqual(['model.json', 'model.onnx']);
    // A second resolution is the same cache entry.
    await expect(resolve(ref)).resolves.toBe(folder);
  });

  it('refuses a URI whose recorded digest differs, and a URI without a store or a digest', async () => {
    const other = `sha256:${'0'.repeat(64)}`;
    const resolve = createArtifactResolver({ store, cacheDir: join(dir, 'cache-d') });
    const mismatch = await resolve({ artifactDir: trainerDir, artifactUri: stored.uri, artifactDigest: other }).catch(
      (e: unknown) => e as ArtifactStoreError,
    );
    expect(mismatch).toBeInstanceOf(ArtifactStoreError);
    expect((mismatch as ArtifactStoreError).kind).toBe('digest-mismatch');
    await expect(readdir(join(dir, 'cache-d'))).rejects.toThrow();

    const noDigest = createArtifactResolver({ store, cacheDir: join(dir, 'cache-d') });
    await expect(noDigest({ artifactDir: trainerDir, artifactUri: stored.uri })).rejects.toThrow('no artifact digest');
    const noStore = createArtifactResolver({});
    await expect(
      noStore({ artifactDir: trainerDir, artifactUri: stored.uri, artifactDigest: stored.digest }),
    ).rejects.toThrow('no artifact store');
  });

  it('makes an unreachable store a retryable failure and everything else a non-retryable ArtifactInvalid', () => {
    const unavailable = new ArtifactStoreError('unavailable', 'down');
    expect(artifactFailure(unavailable)).toBe(unavailable);
    for (const kind of ['not-found', 'digest-mismatch', 'invalid'] as const) {
      const failure = artifactFailure(new ArtifactStoreError(kind, 'no')) as ApplicationFailure;
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure.type).toBe(ErrorType.ArtifactInvalid);
      expect(failure.nonRetryable).toBe(true);
    }
    const other = new Error('x');
    expect(artifactFailure(other)).toBe(other);
  });
});

describe('gateway deploys by artifact store URI', () => {
  let gateway: Gateway;
  let gatewayData: string;

  beforeAll(async () => {
    gatewayData = join(dir, 'gateway');
    gateway = await createGateway({
      dataDir: gatewayData,
      artifactRoot: join(dir, 'gateway-artifacts'),
      adminToken: ADMIN_TOKEN,
      artifactStore: store,
    });
  });
  afterAll(async () => {
    await gateway.close();
  });

  const deploy = (version: string, body: Record<string, unknown>) =>
    gateway.admin.inject({
      method: 'PUT',
      url: `/admin/models/churn/versions/${version}`,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: { opId: `op-${version}-${Math.random()}`, artifactDir: '/not/used', ...body },
    });

  it.each([
    ['another folder', () => `${pathToFileURL(join(dir, 'elsewhere')).href}/churn/v1/run-1/sha256-${hex()}`],
    ['a folder whose name extends the store', () => `${store.location}-evil/churn/v1/run-1/sha256-${hex()}`],
    ['a `..` segment', () => `${store.location}/churn/../../etc/sha256-${hex()}`],
    ['an encoded `..`', () => `${store.location}/churn/%2e%2e/%2e%2e/sha256-${hex()}`],
    ['another bucket', () => `s3://other-bucket/churn/v1/run-1/sha256-${hex()}`],
    ['another scheme', () => `https://example.com/churn/v1/run-1/sha256-${hex()}`],
    ['no digest segment', () => `${store.location}/churn/v1/run-1`],
  ])('refuses a URI outside its store (%s) with a 400 naming artifactUri', async (_case, uri) => {
    const res = await deploy('v-hostile', { artifactUri: uri(), artifactDigest: stored.digest });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ error: string }>().error).toContain('artifactUri');
    expect(await cacheEntries()).toEqual([]);
  });

  it('refuses a URI naming another digest than artifactDigest', async () => {
    const res = await deploy('v-other', { artifactUri: stored.uri, artifactDigest: `sha256:${'1'.repeat(64)}` });
    expect(res.statusCode).toBe(422);
    expect(res.json<{ error: string }>().error).toContain('artifactUri');
  });

  it('refuses stored bytes that are not the recorded ones, loading nothing and caching nothing', async () => {
    const source = await artifactFolder(join(dir, 'tampered-src'), 'original');
    const put = await store.put(source, 'churn/v2/run-2');
    const storedOnnx = join(
      dir,
      'store',
      'churn',
      'v2',
      'run-2',
      `sha256-${put.digest.slice(7)}`,
      'files',
      'model.onnx',
    );
    await chmod(storedOnnx, 0o644);
    await writeFile(storedOnnx, 'tampered');
    const res = await deploy('v2', { artifactUri: put.uri, artifactDigest: put.digest });
    expect(res.statusCode).toBe(422);
    expect(res.json<{ error: string }>().error).toMatch(/artifactUri: the stored files do not have artifactDigest/);
    expect(await cacheEntries()).toEqual([]);
    const routing = await gateway.admin.inject({
      method: 'GET',
      url: '/admin/models',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(routing.json()).toEqual([]);
  });

  function hex(): string {
    return stored.digest.slice('sha256:'.length);
  }

  async function cacheEntries(): Promise<string[]> {
    return readdir(join(gatewayData, 'artifact-cache')).catch(() => []);
  }
});
