import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArtifactStoreConfigError,
  ArtifactStoreError,
  MANIFEST_FORMAT,
  artifactPathOf,
  checkRelativePath,
  loadArtifactStoreConfig,
  parseManifest,
  parseStoreLocation,
  scanArtifactDir,
} from '../../src/artifacts/store';

const HEX = 'ab'.repeat(32);
const DIGEST = `sha256:${HEX}`;

function thrown(fn: () => unknown): ArtifactStoreError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ArtifactStoreError);
    return err as ArtifactStoreError;
  }
  throw new Error('expected a refusal');
}

describe('relative paths of keys and artifact files', () => {
  it.each(['model.onnx', 'reports/confusion.csv', 'churn/v3/lifecycle-churn_v3', '.hidden', 'a..b'])(
    'accepts %s',
    (value) => {
      expect(checkRelativePath(value, 'file')).toBe(value);
    },
  );

  it.each([
    ['', 'empty'],
    ['..', '`..` segment'],
    ['../model.onnx', '`..` segment'],
    ['reports/../../etc/passwd', '`..` segment'],
    ['./model.onnx', '`.` segment'],
    ['/etc/passwd', 'an absolute path'],
    ['a//b', 'empty path segment'],
    ['a/', 'empty path segment'],
    ['a\\..\\b', 'letters, digits'],
    ['C:model', 'letters, digits'],
    ['sp ace', 'letters, digits'],
    ['nul\0byte', 'letters, digits'],
    ['%2e%2e', 'letters, digits'],
    ['x'.repeat(129), 'letters, digits'],
    [`${'a/'.repeat(200)}a`, 'longer than 400'],
  ])('refuses %j (%s)', (value, why) => {
    const err = thrown(() => checkRelativePath(value, 'file'));
    expect(err.kind).toBe('invalid');
    expect(err.message).toContain(why);
  });
});

describe('store locations', () => {
  it('parses s3://bucket and s3://bucket/prefix, without trailing slashes', () => {
    expect(parseStoreLocation('s3://models')).toEqual({ kind: 's3', bucket: 'models', prefix: '', uri: 's3://models' });
    expect(parseStoreLocation('s3://ml-artifacts.prod/team/a/')).toEqual({
      kind: 's3',
      bucket: 'ml-artifacts.prod',
      prefix: 'team/a',
      uri: 's3://ml-artifacts.prod/team/a',
    });
  });

  it('parses file:///folder (and file://localhost/folder) to an absolute path', () => {
    expect(parseStoreLocation('file:///mnt/shared/artifacts/')).toEqual({
      kind: 'fs',
      root: '/mnt/shared/artifacts',
      uri: 'file:///mnt/shared/artifacts',
    });
    expect(parseStoreLocation('file://localhost/srv/a')).toMatchObject({ root: '/srv/a', uri: 'file:///srv/a' });
  });

  it.each([
    ['s3://', 'bucket'],
    ['s3://UPPER', 'bucket'],
    ['s3://a..b/x', 'bucket'],
    ['s3://bucket/a/../b', '`..` segment'],
    ['s3://bucket/p?x=1', 'no query'],
    ['file://otherhost/x', 'names no host'],
    ['file:///shared/../etc', 'no `.` or `..`'],
    ['file:///shared/%2E%2E/etc', 'no `.` or `..`'],
    ['file:///', 'absolute and not /'],
    ['/mnt/shared', 'not a file:///folder or s3://bucket/prefix URI'],
    ['https://s3.amazonaws.com/bucket', 'not a file:///folder'],
  ])('refuses %j', (value, why) => {
    const err = thrown(() => parseStoreLocation(value));
    expect(err.kind).toBe('invalid');
    expect(err.message).toContain(why);
  });
});

describe('artifact URIs below a location', () => {
  it('splits <location>/<key>/sha256-<hex> into key and digest', () => {
    expect(artifactPathOf('s3://b/p', `s3://b/p/churn/v3/run-1/sha256-${HEX}`, DIGEST)).toEqual({
      key: 'churn/v3/run-1',
      digest: DIGEST,
    });
  });

  it('refuses an expected digest that is not one', () => {
    const err = thrown(() => artifactPathOf('s3://b/p', `s3://b/p/k/sha256-${HEX}`, 'sha256:XYZ'));
    expect(err.kind).toBe('invalid');
    expect(err.message).toContain('not sha256: and 64 hex digits');
  });

  it('refuses a URI naming another digest than the expected one', () => {
    const err = thrown(() => artifactPathOf('s3://b/p', `s3://b/p/k/sha256-${HEX}`, `sha256:${'cd'.repeat(32)}`));
    expect(err.kind).toBe('digest-mismatch');
  });

  it.each([
    [`s3://b/other/k/sha256-${HEX}`, 'not an artifact URI below'],
    [`s3://b/pp/k/sha256-${HEX}`, 'not an artifact URI below'],
    [`s3://b/p/sha256-${HEX}`, 'ends in /<key>/sha256-'],
    ['s3://b/p/k/v1', 'ends in /<key>/sha256-'],
    [`s3://b/p/../q/k/sha256-${HEX}`, '`..` segment'],
    [`s3://b/p/k//sha256-${HEX}`, 'empty path segment'],
  ])('refuses %s', (uri, why) => {
    const err = thrown(() => artifactPathOf('s3://b/p', uri));
    expect(err.kind).toBe('invalid');
    expect(err.message).toContain(why);
  });
});

describe('manifests read from a store', () => {
  const file = (path: string) => ({ path, size: 1, sha256: 'c'.repeat(64) });
  const manifest = (files: unknown[], extra: object = {}) =>
    Buffer.from(JSON.stringify({ format: MANIFEST_FORMAT, digest: DIGEST, files, ...extra }));

  it('accepts a manifest of distinct files inside the folder', () => {
    expect(parseManifest(manifest([file('model.onnx'), file('reports/a.csv')]), 'u').files).toHaveLength(2);
  });

  it.each([
    ['a file outside the folder', [file('../../.ssh/authorized_keys')], '`..` segment'],
    ['an absolute path', [file('/etc/cron.d/x')], 'an absolute path'],
    ['a file listed twice', [file('model.onnx'), file('model.onnx')], 'twice'],
    ['a file that is also a folder', [file('a'), file('a/b')], 'as a file and a folder'],
    ['a folder that is also a file', [file('a/b'), file('a')], 'twice or as a file and a folder'],
    ['no files', [], 'files'],
    ['a negative size', [{ ...file('x'), size: -1 }], 'files.0.size'],
    ['an unknown field', [{ ...file('x'), mode: 0o4755 }], 'mode'],
  ])('refuses %s', (_what, files, why) => {
    const err = thrown(() => parseManifest(manifest(files), 's3://b/k/sha256-x'));
    expect(err.kind).toBe('invalid');
    expect(err.message).toContain(why);
  });

  it('refuses what is not a manifest: not JSON, another format, too large', () => {
    expect(thrown(() => parseManifest(Buffer.from('<xml/>'), 'u')).message).toContain('not JSON');
    expect(thrown(() => parseManifest(manifest([file('x')], { format: 'v0' }), 'u')).message).toContain('format');
    expect(thrown(() => parseManifest(Buffer.alloc(2 * 1024 * 1024, 32), 'u')).message).toContain('larger than');
  });
});

describe('artifact folders to put', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mll-store-unit-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function folder(name: string): Promise<string> {
    const at = join(dir, name);
    await mkdir(at, { recursive: true });
    await writeFile(join(at, 'model.onnx'), 'onnx');
    await writeFile(join(at, 'model.json'), '{}');
    return at;
  }

  it('lists regular files, sorted, with their hashes and the folder digest', async () => {
    const at = await folder('ok');
    await mkdir(join(at, 'sub'));
    await writeFile(join(at, 'sub', 'x.txt'), 'x');
    const scanned = await scanArtifactDir(at);
    expect(scanned.files.map((f) => f.path)).toEqual(['model.json', 'model.onnx', 'sub/x.txt']);
    expect(scanned.manifest.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(JSON.parse(scanned.manifestBytes.toString())).toEqual(scanned.manifest);
  });

  it('refuses a symbolic link anywhere in the folder', async () => {
    const at = await folder('link');
    await mkdir(join(at, 'sub'));
    await symlink('/etc/passwd', join(at, 'sub', 'passwd'));
    const err = await scanArtifactDir(at).catch((e: unknown) => e as ArtifactStoreError);
    expect(err).toBeInstanceOf(ArtifactStoreError);
    expect((err as ArtifactStoreError).message).toContain('sub/passwd is a symbolic link');
  });

  it('refuses a FIFO, a name it cannot store, and a folder the gateway could not serve', async () => {
    const fifo = await folder('fifo');
    execFileSync('mkfifo', [join(fifo, 'pipe')]);
    await expect(scanArtifactDir(fifo)).rejects.toThrow('pipe is not a regular file');
    const named = await folder('named');
    await writeFile(join(named, 'with space.txt'), '');
    await expect(scanArtifactDir(named)).rejects.toThrow('letters, digits');
    const unservable = join(dir, 'unservable');
    await mkdir(unservable);
    await writeFile(join(unservable, 'model.json'), '{}');
    await expect(scanArtifactDir(unservable)).rejects.toThrow('model.onnx: missing');
  });
});

describe('artifact store configuration from the environment', () => {
  const s3 = {
    ML_ARTIFACT_STORE: 's3://models/prod',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
  };

  it('reads an S3 store, with the AWS endpoint of the region by default', () => {
    expect(loadArtifactStoreConfig({ ...s3, ML_S3_REGION: 'eu-west-3' })).toEqual({
      location: { kind: 's3', bucket: 'models', prefix: 'prod', uri: 's3://models/prod' },
      s3: {
        endpoint: 'https://s3.eu-west-3.amazonaws.com',
        region: 'eu-west-3',
        accessKeyId: 'AKIDEXAMPLE',
        secretAccessKey: s3.AWS_SECRET_ACCESS_KEY,
      },
    });
    expect(loadArtifactStoreConfig({ ...s3, ML_S3_ENDPOINT: 'http://127.0.0.1:8333/' })).toMatchObject({
      s3: { endpoint: 'http://127.0.0.1:8333', region: 'us-east-1' },
    });
  });

  it('falls back to the caller default, and requires ML_ARTIFACT_STORE without one', () => {
    expect(loadArtifactStoreConfig({}, { defaultLocation: 'file:///srv/artifacts' })).toEqual({
      location: { kind: 'fs', root: '/srv/artifacts', uri: 'file:///srv/artifacts' },
    });
    expect(() => loadArtifactStoreConfig({})).toThrow(/ML_ARTIFACT_STORE: required/);
  });

  it.each([
    [{ ...s3, AWS_SECRET_ACCESS_KEY: undefined }, 'AWS_SECRET_ACCESS_KEY: required when ML_ARTIFACT_STORE is an s3://'],
    [{ ...s3, AWS_ACCESS_KEY_ID: '' }, 'AWS_ACCESS_KEY_ID: not empty'],
    [{ ...s3, ML_S3_ENDPOINT: 'ftp://x' }, 'ML_S3_ENDPOINT: an http:// or https:// URL'],
    [{ ...s3, ML_S3_ENDPOINT: 'http://x/path' }, 'ML_S3_ENDPOINT: a URL without a path'],
    [{ ...s3, ML_S3_REGION: 'EU West' }, 'ML_S3_REGION: a region name'],
    [{ ...s3, ML_ARTIFACT_STORE: '/mnt/shared' }, 'ML_ARTIFACT_STORE: a file:///folder or s3://bucket/prefix URI'],
    [{ ...s3, ML_ARTIFACT_STORE: 's3://Bad_Bucket' }, 'ML_ARTIFACT_STORE:'],
  ])('names the variable at fault (%#)', (env, message) => {
    let err: unknown;
    try {
      loadArtifactStoreConfig(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ArtifactStoreConfigError);
    expect((err as Error).message).toContain(message);
    expect((err as Error).message).not.toContain(s3.AWS_SECRET_ACCESS_KEY);
  });
});
