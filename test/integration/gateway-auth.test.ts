import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactDigest } from '../../src/artifacts/digest';
import { trainerPython } from '../../src/config/toolchain';
import { startNode } from '../../src/dev/processes';
import { createGateway, type Gateway as GatewayServer } from '../../src/serving/server';
import { ROUTING_FILE } from '../../src/serving/routing-store';
import { EXAMPLE, newToken, ROOT } from '../helpers/harness';

const DATA = path.join(EXAMPLE, 'data');
const GATEWAY_MAIN = path.join(ROOT, 'dist', 'src', 'serving', 'main.js');
const FEATURES = {
  age: 41,
  tenure_months: 12,
  monthly_charges: 70.5,
  support_calls: 2,
  plan: 'basic',
  region: 'north',
};
const UNAVAILABLE = 'not found, unreadable or outside the artifact root';
const ADMIN_401 =
  'admin API: missing or wrong bearer token (send Authorization: Bearer <the token the gateway was given in ' +
  'GATEWAY_ADMIN_TOKEN or GATEWAY_ADMIN_TOKEN_FILE>)';

interface Reply<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}
interface LogLine {
  level: number;
  msg: string;
  detail?: string;
  problem?: string;
}

let workDir: string;
/** The gateways' artifact root: only what is inside it may be served. */
let root: string;
/** A trained model inside the root. */
let model: string;
let digest: string;
/** The same files outside the root, with the same digest. */
let outside: string;

async function call<T = unknown>(
  url: string,
  method: string,
  options: { body?: unknown; raw?: string; authorization?: string } = {},
): Promise<Reply<T>> {
  const headers: Record<string, string> = {};
  if (options.authorization !== undefined) headers.authorization = options.authorization;
  if (options.body !== undefined || options.raw !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(url, {
    method,
    headers,
    body: options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body)),
  });
  return { status: response.status, body: (await response.json()) as T, headers: response.headers };
}

/** A gateway on loopback with a fresh token, its log lines kept for the assertions. */
class TestGateway {
  readonly token = newToken();
  readonly log: LogLine[] = [];
  server!: GatewayServer;
  url = '';
  adminUrl = '';

  constructor(readonly dataDir: string) {}

  async start(): Promise<this> {
    const logger = pino({ level: 'info' }, { write: (line: string) => void this.log.push(JSON.parse(line)) });
    this.server = await createGateway({ dataDir: this.dataDir, artifactRoot: root, adminToken: this.token, logger });
    const loopback = { port: 0, host: '127.0.0.1' };
    const urls = await this.server.listen({ public: loopback, admin: loopback });
    this.url = urls.public;
    this.adminUrl = urls.admin;
    return this;
  }

  admin<T = unknown>(method: string, url: string, body?: unknown): Promise<Reply<T>> {
    return call<T>(this.adminUrl + url, method, { body, authorization: `Bearer ${this.token}` });
  }

  deploy(version: string, opId: string, artifactDir: string, artifactDigest = digest): Promise<Reply> {
    return this.admin('PUT', `/admin/models/churn/versions/${version}`, { opId, artifactDir, artifactDigest });
  }

  predict(user = 'u1'): Promise<Reply<{ version?: string; error?: string }>> {
    return call(`${this.url}/v1/models/churn/predict`, 'POST', { body: { userId: user, features: FEATURES } });
  }

  /** Routing, journal and the routing file as they are now: what an refused call must leave as it was. */
  async snapshot(): Promise<unknown> {
    return {
      routing: (await this.admin('GET', '/admin/models')).body,
      ops: (await this.admin('GET', '/admin/ops')).body,
      file: await readFile(path.join(this.dataDir, ROUTING_FILE), 'utf8').catch(() => null),
    };
  }

  close(): Promise<void> {
    return this.server.close();
  }
}

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'gateway-auth-'));
  root = path.join(workDir, 'artifacts');
  model = path.join(root, 'model-a');
  outside = path.join(workDir, 'outside', 'model-a');
  await promisify(execFile)(
    trainerPython(),
    [path.join(EXAMPLE, 'train.py'), '--data-dir', DATA, '--out', model, '--params', '{"nEstimators":20}'],
    { cwd: ROOT },
  );
  await cp(model, outside, { recursive: true });
  digest = await artifactDigest(model);
  expect(await artifactDigest(outside)).toBe(digest);
});

afterAll(async () => {
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('gateway admin listener', () => {
  let gateway: TestGateway;

  beforeAll(async () => {
    gateway = await new TestGateway(path.join(workDir, 'gw-admin')).start();
    expect((await gateway.deploy('v1', 'deploy-v1', model)).status).toBe(200);
    expect(
      (await gateway.admin('PUT', '/admin/models/churn/weights', { opId: 'w1', weights: { v1: 100 } })).status,
    ).toBe(200);
  });
  afterAll(async () => {
    await gateway?.close();
  });

  /** Every admin route, each with a body that would change something. */
  const routes = (): { method: string; url: string; body?: unknown; raw?: string }[] => [
    {
      method: 'PUT',
      url: '/admin/models/churn/versions/v2',
      body: { opId: 'x1', artifactDir: model, artifactDigest: digest },
    },
    { method: 'DELETE', url: '/admin/models/churn/versions/v1?opId=x2' },
    { method: 'PUT', url: '/admin/models/churn/weights', body: { opId: 'x3', weights: {} } },
    { method: 'PUT', url: '/admin/models/churn/versions/v1/faults', body: { down: true } },
    { method: 'GET', url: '/admin/models/churn/versions/v1/faults' },
    { method: 'DELETE', url: '/admin/models/churn/versions/v1/faults' },
    { method: 'GET', url: '/admin/models' },
    { method: 'GET', url: '/admin/models/churn' },
    { method: 'GET', url: '/admin/models/churn/telemetry' },
    { method: 'GET', url: '/admin/ops' },
    // Not a route, and not JSON: still the same 401, so without the token nothing is parsed and nothing is told.
    { method: 'GET', url: '/admin/no/such/route' },
    { method: 'PUT', url: '/admin/models/churn/weights', raw: '{"opId":' },
  ];

  it('refuses every admin route without the right bearer token (401), changing nothing', async () => {
    const before = await gateway.snapshot();
    const wrong = [
      undefined,
      '',
      'Bearer',
      `Bearer ${newToken()}`,
      `Bearer ${gateway.token}x`,
      `Bearer ${gateway.token.slice(0, -1)}`,
      `Basic ${Buffer.from(`admin:${gateway.token}`).toString('base64')}`,
      gateway.token,
      `Bearer ${gateway.token} ${gateway.token}`,
    ];
    for (const route of routes()) {
      for (const authorization of wrong) {
        const reply = await call(gateway.adminUrl + route.url, route.method, { ...route, authorization });
        expect(reply.status, `${route.method} ${route.url} with ${authorization}`).toBe(401);
        expect(reply.body).toEqual({ error: ADMIN_401 });
        expect(reply.headers.get('www-authenticate')).toBe('Bearer');
      }
    }
    expect(await gateway.snapshot()).toEqual(before);
    expect((await gateway.predict()).body.version).toBe('v1');
    // The health check needs no token: it tells nothing.
    expect((await call(`${gateway.adminUrl}/healthz`, 'GET')).body).toEqual({ ok: true });
  });

  it('takes the right token (the scheme in any case) on every route', async () => {
    expect((await gateway.admin('GET', '/admin/models/churn')).status).toBe(200);
    const lower = await call(`${gateway.adminUrl}/admin/ops`, 'GET', { authorization: `bearer ${gateway.token}` });
    expect(lower.status).toBe(200);
    expect((await gateway.admin('PUT', '/admin/models/churn/versions/v1/faults', { delayMs: 1 })).status).toBe(200);
    expect((await gateway.admin('DELETE', '/admin/models/churn/versions/v1/faults')).status).toBe(200);
    expect((await gateway.admin('GET', '/admin/no/such/route')).status).toBe(404);
  });

  it('serves no admin route on the public listener (404), and no prediction on the admin one', async () => {
    const before = await gateway.snapshot();
    // (A body that is not JSON is refused there as such, before routing: nothing to do with admin routes.)
    for (const route of routes().filter((r) => r.raw === undefined)) {
      const reply = await call<{ error: string }>(gateway.url + route.url, route.method, {
        ...route,
        authorization: `Bearer ${gateway.token}`,
      });
      expect(reply.status, `${route.method} ${route.url}`).toBe(404);
      expect(reply.body.error).toMatch(/^no route /);
    }
    expect(await gateway.snapshot()).toEqual(before);
    const predictOnAdmin = await call(`${gateway.adminUrl}/v1/models/churn/predict`, 'POST', {
      body: { userId: 'u1', features: FEATURES },
      authorization: `Bearer ${gateway.token}`,
    });
    expect(predictOnAdmin.status).toBe(404);
    expect((await call(`${gateway.url}/healthz`, 'GET')).body).toEqual({ ok: true });
  });
});

describe('gateway artifact root and digest', () => {
  let gateway: TestGateway;

  beforeAll(async () => {
    gateway = await new TestGateway(path.join(workDir, 'gw-root')).start();
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it('refuses a deploy from outside the artifact root, however the path gets there, telling nothing', async () => {
    await mkdir(path.join(root, 'links'), { recursive: true });
    await symlink(outside, path.join(root, 'links', 'to-outside'));
    await symlink('/etc', path.join(root, 'links', 'to-etc'));
    // A folder inside the root whose model file is a link to a file outside it.
    const linkedFile = path.join(root, 'linked-file');
    await mkdir(linkedFile);
    await cp(path.join(model, 'model.json'), path.join(linkedFile, 'model.json'));
    await symlink(path.join(outside, 'model.onnx'), path.join(linkedFile, 'model.onnx'));
    const before = await gateway.snapshot();
    const refused = [
      '/etc',
      '/',
      outside,
      `${root}/../outside/model-a`,
      path.relative(process.cwd(), outside),
      path.join(root, 'links', 'to-outside'),
      path.join(root, 'links', 'to-etc'),
      linkedFile,
      path.join(root, 'nowhere'),
      path.join(model, 'model.onnx'),
      `${root}-sibling`,
    ];
    for (const [i, artifactDir] of refused.entries()) {
      const reply = await gateway.deploy('v9', `out-${i}`, artifactDir);
      expect(reply, artifactDir).toEqual({
        status: 422,
        body: { error: `artifact for model 'churn' version 'v9' cannot be loaded: ${UNAVAILABLE}` },
        headers: reply.headers,
      });
    }
    expect(await gateway.snapshot()).toEqual(before);
    // The operator's log has the real cause of each, at warn level; the answers had none of it.
    const warnings = gateway.log.filter((l) => l.msg === 'deploy refused: artifact cannot be loaded');
    expect(warnings).toHaveLength(refused.length);
    expect(warnings.every((l) => l.level === 40 && l.problem === 'unavailable')).toBe(true);
    expect(warnings.filter((l) => l.detail?.includes('outside the artifact root'))).toHaveLength(7);
    expect(warnings.some((l) => l.detail?.includes('ENOENT'))).toBe(true);
    expect(warnings.some((l) => l.detail?.includes('model.onnx: not a regular file (a symbolic link)'))).toBe(true);
  });

  it('refuses a deploy whose files do not have the recorded digest, and loads nothing', async () => {
    const before = await gateway.snapshot();
    const other = `sha256:${'1'.repeat(64)}`;
    expect(await gateway.deploy('v1', 'digest-1', model, other)).toMatchObject({
      status: 422,
      body: {
        error:
          "artifact for model 'churn' version 'v1' cannot be loaded: artifact digest does not match the digest " +
          'recorded at training',
      },
    });
    const malformed = await gateway.deploy('v1', 'digest-2', model, digest.toUpperCase());
    expect(malformed.status).toBe(400);
    expect((malformed.body as { error: string }).error).toMatch(/^invalid deploy request: artifactDigest: /);
    expect(await gateway.snapshot()).toEqual(before);
    expect((await gateway.deploy('v1', 'digest-3', model)).body).toEqual({ opId: 'digest-3', applied: true });
    const routing = (await gateway.admin<{ versions: { artifactDigest?: string }[] }>('GET', '/admin/models/churn'))
      .body;
    expect(routing.versions.map((v) => v.artifactDigest)).toEqual([digest]);
  });

  it('names a manifest problem by its field, never quoting the file', async () => {
    const secret = 'TOPSECRET-do-not-echo';
    const cases: [string, string][] = [
      [`{"name": "${secret}", "features": `, 'model.json is not UTF-8 JSON'],
      [
        JSON.stringify({
          name: 'x',
          features: secret,
          label: 'y',
          classes: [0, 1],
          outputs: { label: 'a', probabilities: 'b' },
        }),
        'model.json is invalid: features: Invalid input: expected array, received string',
      ],
    ];
    for (const [i, [manifest, message]] of cases.entries()) {
      const dir = path.join(root, `bad-manifest-${i}`);
      await cp(model, dir, { recursive: true });
      await writeFile(path.join(dir, 'model.json'), manifest);
      const reply = await gateway.deploy(`bad${i}`, `bad-${i}`, dir, await artifactDigest(dir));
      expect(reply.status).toBe(422);
      expect(reply.body).toEqual({
        error: `artifact for model 'churn' version 'bad${i}' cannot be loaded: ${message}`,
      });
    }
    expect(JSON.stringify(gateway.log)).not.toContain(secret);
  });
});

describe('gateway restart and changed artifacts', () => {
  it('does not reload a version whose files changed after the deploy, until they are the recorded ones again', async () => {
    const dataDir = path.join(workDir, 'gw-restart');
    const copy = path.join(root, 'model-restart');
    await cp(model, copy, { recursive: true });
    let gateway = await new TestGateway(dataDir).start();
    try {
      expect((await gateway.deploy('v1', 'r-deploy', copy)).status).toBe(200);
      expect(
        (await gateway.admin('PUT', '/admin/models/churn/weights', { opId: 'r-w', weights: { v1: 100 } })).status,
      ).toBe(200);
      expect((await gateway.predict()).status).toBe(200);
      await gateway.close();

      // One byte more in the manifest (still valid JSON): not the trained file any more.
      const manifest = path.join(copy, 'model.json');
      const original = await readFile(manifest);
      await appendFile(manifest, ' ');
      gateway = await new TestGateway(dataDir).start();
      const routing = await gateway.admin<{ weights: unknown; versions: { version: string }[] }>(
        'GET',
        '/admin/models/churn',
      );
      expect(routing.body.weights).toEqual({ v1: 100 });
      const failed = await gateway.predict();
      expect(failed.status).toBe(500);
      expect(failed.body.error).toBe(
        "version 'v1' of model 'churn' is not loaded: its artifact failed to load when the gateway started " +
          "(see the gateway's log)",
      );
      const logged = gateway.log.find((l) => l.msg === 'cannot reload deployed model version');
      expect(logged).toMatchObject({ level: 50, problem: 'digest-mismatch' });

      // A deploy of the recorded digest retries the load: refused while the file differs, applied once it is back.
      expect((await gateway.deploy('v1', 'r-repair-1', copy)).status).toBe(422);
      await writeFile(manifest, original);
      expect((await gateway.deploy('v1', 'r-repair-2', copy)).body).toEqual({ opId: 'r-repair-2', applied: true });
      expect((await gateway.predict()).status).toBe(200);

      // The recorded digest is the version's: another one is a conflict, not a new artifact.
      const other = await gateway.deploy('v1', 'r-other', copy, `sha256:${'2'.repeat(64)}`);
      expect(other.status).toBe(409);
    } finally {
      await gateway.close();
    }
  });
});

describe('gateway process configuration', () => {
  /** Runs the built gateway with exactly `env` (no token inherited from the test's environment). */
  function run(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
    const base: Record<string, string> = { PATH: process.env.PATH ?? '', GATEWAY_PORT: '0', GATEWAY_ADMIN_PORT: '0' };
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [GATEWAY_MAIN],
        {
          env: { ...base, GATEWAY_DATA_DIR: path.join(workDir, 'gw-config'), GATEWAY_ARTIFACT_ROOT: root, ...env },
          timeout: 30_000,
        },
        (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
      );
    });
  }

  it('refuses to start (exit 2) without a usable admin or labels token, saying which', async () => {
    if (!existsSync(GATEWAY_MAIN)) throw new Error(`${GATEWAY_MAIN} is missing: run npm run build first`);
    const missingFile = path.join(workDir, 'no-such-token-file');
    const cases: [Record<string, string>, RegExp][] = [
      [{}, /the admin API needs a bearer token: set GATEWAY_ADMIN_TOKEN, or GATEWAY_ADMIN_TOKEN_FILE/],
      [{ GATEWAY_ADMIN_TOKEN: '   ' }, /the admin API needs a bearer token/],
      [{ GATEWAY_ADMIN_TOKEN: 'short-token' }, /GATEWAY_ADMIN_TOKEN: the token must be at least 16 characters, got 11/],
      [{ GATEWAY_ADMIN_TOKEN_FILE: missingFile }, /GATEWAY_ADMIN_TOKEN_FILE: cannot read .* \(ENOENT\)/],
      [
        { GATEWAY_ADMIN_TOKEN: newToken(), GATEWAY_ADMIN_TOKEN_FILE: missingFile },
        /GATEWAY_ADMIN_TOKEN and GATEWAY_ADMIN_TOKEN_FILE are both set/,
      ],
      [{ GATEWAY_ADMIN_TOKEN: 'a token with spaces inside' }, /printable ASCII without spaces/],
      [{ GATEWAY_ADMIN_TOKEN: newToken(), GATEWAY_LABELS_TOKEN: 'short' }, /GATEWAY_LABELS_TOKEN: the token must be/],
      [{ GATEWAY_ADMIN_TOKEN: newToken(), GATEWAY_ADMIN_PORT: '8790', GATEWAY_PORT: '8790' }, /GATEWAY_ADMIN_PORT/],
    ];
    for (const [env, message] of cases) {
      const { code, stderr } = await run(env);
      expect(code, `${JSON.stringify(env)}: ${stderr}`).toBe(2);
      expect(stderr).toMatch(/^invalid gateway configuration:/);
      expect(stderr).toMatch(message);
      // Never the token itself.
      for (const [name, value] of Object.entries(env)) {
        if (name.endsWith('_TOKEN') && value.trim().length > 0) expect(stderr).not.toContain(value.trim());
      }
    }
  });

  it('starts with the token in a file (trimmed) and answers the admin API with it', async () => {
    const token = newToken();
    const file = path.join(workDir, 'admin.token');
    await writeFile(file, `\n${token}\n`, { mode: 0o600 });
    const gateway = startNode(
      'gateway-token-file',
      GATEWAY_MAIN,
      {
        GATEWAY_PORT: '0',
        GATEWAY_ADMIN_PORT: '0',
        GATEWAY_ADMIN_TOKEN: '',
        GATEWAY_ADMIN_TOKEN_FILE: file,
        GATEWAY_ARTIFACT_ROOT: root,
        GATEWAY_DATA_DIR: path.join(workDir, 'gw-token-file'),
      },
      path.join(workDir, 'gateway-token-file.log'),
    );
    try {
      const adminAddress = await new Promise<string>((resolve, reject) => {
        let pending = '';
        gateway.child.stdout?.on('data', (chunk: Buffer) => {
          const lines = (pending + chunk.toString('utf8')).split('\n');
          pending = lines.pop() ?? '';
          for (const line of lines) {
            const entry = (line.startsWith('{') ? JSON.parse(line) : {}) as { msg?: string; adminAddress?: string };
            if (entry.msg === 'serving gateway listening' && entry.adminAddress) resolve(entry.adminAddress);
          }
        });
        gateway.child.once('exit', (code) => reject(new Error(`gateway exited (${code}) before listening`)));
      });
      expect((await call(`${adminAddress}/admin/models`, 'GET', { authorization: `Bearer ${token}` })).status).toBe(
        200,
      );
      expect((await call(`${adminAddress}/admin/models`, 'GET')).status).toBe(401);
    } finally {
      await gateway.stop();
    }
  });
});
