import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactDigest } from '../../src/artifacts/digest';
import {
  ArtifactStoreError,
  FsArtifactStore,
  S3ArtifactStore,
  createArtifactStore,
  loadArtifactStoreConfig,
  parseStoreLocation,
  type ArtifactStore,
  type ArtifactStoreProblem,
} from '../../src/artifacts/store';
import { projectRoot } from '../../src/config/paths';
import { startS3Server, type S3Server } from '../../src/dev/s3-server';

const run = promisify(execFile);

/** A folder laid out as the trainer leaves one: the served files, metrics, and a nested file. */
async function makeArtifact(dir: string, modelBytes = 3 * 1024 * 1024): Promise<string> {
  await mkdir(join(dir, 'reports'), { recursive: true });
  await writeFile(join(dir, 'model.onnx'), randomBytes(modelBytes));
  await writeFile(join(dir, 'model.json'), JSON.stringify({ task: 'classification', features: ['a', 'b'] }));
  await writeFile(join(dir, 'profile.json'), JSON.stringify({ rows: 100, columns: { a: { mean: 0.5 } } }));
  await writeFile(join(dir, 'metrics.json'), JSON.stringify({ accuracy: 0.91 }));
  await writeFile(join(dir, 'reports', 'confusion.csv'), 'tp,fp\n10,2\n');
  return artifactDigest(dir);
}

/** Every file below `dir`: relative path → SHA-256 of its bytes (a deep compare of megabytes is slow). */
async function filesOf(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const absolute = join(entry.parentPath, entry.name);
    out.set(absolute.slice(dir.length + 1), sha256(await readFile(absolute)));
  }
  return out;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function refusal(promise: Promise<unknown>): Promise<ArtifactStoreError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ArtifactStoreError);
  return err as ArtifactStoreError;
}

function expectKind(err: ArtifactStoreError, kind: ArtifactStoreProblem) {
  expect(err.kind, err.message).toBe(kind);
}

/** How a test reaches behind a store to damage or half-write an artifact. */
interface Backdoor {
  store: ArtifactStore;
  /** Another store object on the same location: what a second process would have. */
  another(): ArtifactStore;
  /** Overwrites one stored file (`files/<path>`) or the manifest (`manifest.json`) of the artifact at `uri`. */
  overwrite(uri: string, name: string, bytes: Buffer): Promise<void>;
  read(uri: string, name: string): Promise<Buffer>;
  remove(uri: string, name: string): Promise<void>;
}

let workDir: string;
let s3: S3Server | undefined;
const backdoors = new Map<string, () => Backdoor>();

beforeAll(async () => {
  // Builds SeaweedFS into .tools on the first run (about 5 minutes on 2 cores); a no-op once it is there.
  await run(process.execPath, [join(projectRoot(), 'scripts', 'setup-s3.mjs')], {
    timeout: 25 * 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  workDir = await mkdtemp(join(tmpdir(), 'mll-artifact-store-'));
  s3 = await startS3Server();
  const server = s3;
  const sharedRoot = join(workDir, 'shared');
  await mkdir(sharedRoot);

  const fsLocation = pathToFileURL(sharedRoot).href;
  const fsStore = () => createArtifactStore(loadArtifactStoreConfig({ ML_ARTIFACT_STORE: fsLocation }));
  backdoors.set('shared filesystem', () => {
    const store = fsStore();
    const pathOf = (uri: string, name: string) => join(new URL(uri).pathname, name);
    return {
      store,
      another: fsStore,
      overwrite: (uri, name, bytes) => writeFile(pathOf(uri, name), bytes),
      read: (uri, name) => readFile(pathOf(uri, name)),
      remove: (uri, name) => rm(pathOf(uri, name)),
    };
  });

  // The S3 store as a process configures it: from the environment.
  const s3Env = {
    ML_ARTIFACT_STORE: `s3://${server.bucket}/models`,
    ML_S3_ENDPOINT: server.endpoint,
    ML_S3_REGION: server.region,
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
  };
  const s3Store = () => createArtifactStore(loadArtifactStoreConfig(s3Env)) as S3ArtifactStore;
  backdoors.set('S3 (SeaweedFS)', () => {
    const store = s3Store();
    const keyOf = (uri: string, name: string) => `${uri.slice(`s3://${server.bucket}/`.length)}/${name}`;
    return {
      store,
      another: s3Store,
      overwrite: async (uri, name, bytes) => {
        await store.client.putObject(server.bucket, keyOf(uri, name), bytes, bytes.length, sha256(bytes));
      },
      read: async (uri, name) => {
        const bytes = await store.client.getObjectBytes(server.bucket, keyOf(uri, name), 1 << 30);
        if (!bytes) throw new Error(`no ${name} at ${uri}`);
        return bytes;
      },
      remove: (uri, name) => store.client.deleteObject(server.bucket, keyOf(uri, name)),
    };
  });
}, 30 * 60_000);

afterAll(async () => {
  await s3?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe.each(['shared filesystem', 'S3 (SeaweedFS)'])('the %s artifact store', (name) => {
  let door: Backdoor;
  let n = 0;
  /** A fresh artifact folder on the "training host" and an empty cache on the "gateway host". */
  async function scenario(modelBytes?: number) {
    n += 1;
    const base = join(workDir, `${name.replace(/\W+/g, '-')}-${n}`);
    const trained = join(base, 'training-host', 'artifact');
    const cache = join(base, 'gateway-host', 'cache');
    const digest = await makeArtifact(trained, modelBytes);
    return { trained, cache, digest, key: `churn/v${n}/lifecycle-${n}` };
  }

  beforeAll(() => {
    door = (backdoors.get(name) as () => Backdoor)();
  });

  it('puts a folder and fetches it, byte for byte and verified, into the cache of another host', async () => {
    const { trained, cache, digest, key } = await scenario();
    const put = await door.store.put(trained, key);
    expect(put).toMatchObject({ digest, files: 5, uploaded: true });
    expect(put.uri).toBe(`${door.store.location}/${key}/sha256-${digest.slice(7)}`);
    expect(await door.store.exists(put.uri)).toBe(true);

    const fetched = await door.another().fetch(put.uri, digest, cache);
    expect(fetched).toEqual({ dir: join(cache, digest.slice(7)), digest, fromCache: false });
    expect(await artifactDigest(fetched.dir)).toBe(digest);
    expect(await filesOf(fetched.dir)).toEqual(await filesOf(trained));
    // Only the entry: the temp dir it was downloaded into is gone.
    expect(await readdir(cache)).toEqual([digest.slice(7)]);

    expect(await door.store.fetch(put.uri, digest, cache)).toEqual({ ...fetched, fromCache: true });
    // A retried put of the same folder uploads nothing and names the same artifact.
    expect(await door.store.put(trained, key)).toEqual({ ...put, uploaded: false });
  });

  it('refuses a tampered file, and a tampered file with a manifest to match, leaving nothing in the cache', async () => {
    const { trained, cache, digest, key } = await scenario();
    const { uri } = await door.store.put(trained, key);
    const original = await door.read(uri, 'files/model.onnx');
    const tampered = Buffer.from(original);
    tampered[1000] = (tampered[1000] as number) ^ 0xff;
    await door.overwrite(uri, 'files/model.onnx', tampered);

    const err = await refusal(door.store.fetch(uri, digest, cache));
    expectKind(err, 'digest-mismatch');
    expect(err.message).toContain('model.onnx does not match its manifest');
    expect(await readdir(cache)).toEqual([]);

    // Someone who can write the store rewrites the manifest too: the artifact's digest still gives it away.
    const manifest = JSON.parse((await door.read(uri, 'manifest.json')).toString()) as {
      files: { path: string; sha256: string }[];
    };
    const entry = manifest.files.find((f) => f.path === 'model.onnx') as { sha256: string };
    entry.sha256 = sha256(tampered);
    await door.overwrite(uri, 'manifest.json', Buffer.from(JSON.stringify(manifest)));
    const again = await refusal(door.store.fetch(uri, digest, cache));
    expectKind(again, 'digest-mismatch');
    expect(again.message).toContain(`the downloaded files have digest`);
    expect(await readdir(cache)).toEqual([]);
  });

  it('ends concurrent fetches of one digest, from one process and from several, with one cache entry', async () => {
    const { trained, cache, digest, key } = await scenario();
    const { uri } = await door.store.put(trained, key);
    const stores = [door.store, door.store, door.another(), door.another(), door.another()];
    const results = await Promise.all(stores.map((store) => store.fetch(uri, digest, cache)));
    for (const result of results) expect(result.dir).toBe(join(cache, digest.slice(7)));
    expect(results.filter((result) => !result.fromCache).length).toBeGreaterThanOrEqual(1);
    expect(await readdir(cache)).toEqual([digest.slice(7)]);
    expect(await artifactDigest(join(cache, digest.slice(7)))).toBe(digest);
  });

  it('does not fetch an artifact whose upload stopped before its manifest, and a put completes it', async () => {
    const { trained, cache, digest, key } = await scenario();
    const { uri } = await door.store.put(trained, key);
    await door.remove(uri, 'manifest.json');

    expect(await door.store.exists(uri)).toBe(false);
    const err = await refusal(door.store.fetch(uri, digest, cache));
    expectKind(err, 'not-found');
    expect(err.message).toContain('no complete artifact there');
    expect(await readdir(cache)).toEqual([]);

    expect(await door.store.put(trained, key)).toMatchObject({ uri, uploaded: true });
    expect((await door.store.fetch(uri, digest, cache)).fromCache).toBe(false);
  });

  it('refuses a URI outside its location and a URI that names another digest', async () => {
    const { trained, cache, digest, key } = await scenario();
    const { uri } = await door.store.put(trained, key);
    const other = `sha256:${'0'.repeat(64)}`;
    expectKind(await refusal(door.store.fetch(uri, other, cache)), 'digest-mismatch');
    const outside = uri.replace(door.store.location, `${door.store.location}-elsewhere`);
    expectKind(await refusal(door.store.fetch(outside, digest, cache)), 'invalid');
    expectKind(
      await refusal(door.store.fetch(`${door.store.location}/../x/sha256-${digest.slice(7)}`, digest, cache)),
      'invalid',
    );
    expect(await readdir(cache).catch(() => [])).toEqual([]);
  });
});

describe('the S3 store against a server that goes away', () => {
  let server: S3Server | undefined;

  afterAll(async () => {
    await server?.stop();
  });

  it('fails a fetch clearly when the server stops mid-download, and leaves no partial cache entry', async () => {
    server = await startS3Server({ bucket: 'outage' });
    const live = server;
    const store = new S3ArtifactStore(parseStoreLocation(`s3://${live.bucket}`) as never, live, {
      headersTimeoutMs: 5_000,
      bodyTimeoutMs: 5_000,
    });
    const trained = join(workDir, 'outage', 'artifact');
    const cache = join(workDir, 'outage', 'cache');
    const digest = await makeArtifact(trained, 32 * 1024 * 1024);
    const { uri } = await store.put(trained, 'big/v1/run');

    let killed = false;
    const err = await refusal(
      store.fetch(uri, digest, cache, {
        // The first bytes of the model are in: the server dies with most of the 32 MB still to send.
        onProgress: async ({ file }) => {
          if (file !== 'model.onnx' || killed) return;
          killed = true;
          await live.kill();
        },
      }),
    );
    expect(killed).toBe(true);
    expectKind(err, 'unavailable');
    expect(err.message).toContain(`download of model.onnx from S3 endpoint ${live.endpoint} failed`);
    expect(await readdir(cache)).toEqual([]);

    // And while it is down: a clear error naming the endpoint, for a fetch and for `exists`.
    const down = await refusal(store.exists(uri));
    expectKind(down, 'unavailable');
    expect(down.message).toContain(live.endpoint);
  });

  it('names the credentials when the server refuses them', async () => {
    const live = s3 as S3Server;
    const store = new S3ArtifactStore(parseStoreLocation(`s3://${live.bucket}`) as never, {
      ...live,
      secretAccessKey: 'not-the-secret',
    });
    const err = await refusal(store.exists(`s3://${live.bucket}/k/sha256-${'1'.repeat(64)}`));
    expectKind(err, 'unavailable');
    expect(err.message).toContain('AWS_SECRET_ACCESS_KEY');
    expect(err.message).not.toContain('not-the-secret');
  });
});

describe('the shared filesystem store', () => {
  it('refuses to write when its folder is missing (an unmounted share) instead of creating it', async () => {
    const store = new FsArtifactStore(parseStoreLocation(pathToFileURL(join(workDir, 'not-mounted')).href) as never);
    const trained = join(workDir, 'unmounted', 'artifact');
    await makeArtifact(trained, 1024);
    const err = await refusal(store.put(trained, 'a/b'));
    expectKind(err, 'unavailable');
    expect(err.message).toContain('is the shared filesystem mounted?');
  });
});
