import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { loadNginxTargets } from '../../src/config/nginx-targets';
import { InvalidFileError } from '../../src/config/yaml-file';
import { ErrorType } from '../../src/shared/errors';
import {
  GENERATION_PATH,
  renderNginxConf,
  splitShares,
  type NginxConfigRouter,
  type NginxRoute,
} from '../../src/targets/nginx-config';
import { createNginxTargets } from '../../src/targets/nginx';
import { DeploymentTargetSpec, targetLabel } from '../../src/shared/deployment-target';
import { resolveTarget } from '../../src/targets/target';
import { tempDir } from '../helpers/temp';

const router: NginxConfigRouter = {
  name: 'edge',
  confDir: '/var/lib/ml-nginx/edge',
  listen: { host: '127.0.0.1', port: 8080 },
  userHeader: 'x-ml-user',
  clientKeepaliveMs: 0,
  slots: [
    { name: 'a', publicUrl: 'http://127.0.0.1:8710', server: '127.0.0.1:8710', adminUrl: 'http://127.0.0.1:8711' },
    { name: 'b', publicUrl: 'http://127.0.0.1:8720', server: '127.0.0.1:8720', adminUrl: 'http://127.0.0.1:8721' },
  ],
};

const canary: NginxRoute = {
  model: 'churn',
  versions: [
    { version: 'v2', slot: 'b', weight: 5 },
    { version: 'v1', slot: 'a', weight: 95 },
  ],
};

/** The entries of the split_clients block of `variable`: `[share, upstream]` in order. */
function splitEntries(conf: string, variable: string): [string, string][] {
  const block = new RegExp(`split_clients "\\$ml_user_key" \\${variable} \\{\\n([^}]*)\\}`).exec(conf);
  if (!block) throw new Error(`no split_clients for ${variable} in:\n${conf}`);
  return block[1]!
    .trim()
    .split('\n')
    .map((l) => l.trim().replace(/;$/, '').split(' ') as [string, string]);
}

/** The percentage a split's entries give out: explicit shares, plus what `*` takes. */
function totalPercent(entries: [string, string][]): number {
  const explicit = entries.filter(([share]) => share !== '*').reduce((sum, [share]) => sum + parseFloat(share), 0);
  return entries.some(([share]) => share === '*') ? 100 : explicit;
}

describe('nginx config writer', () => {
  it('splits a model by its weights, candidate first, on the user header, proxying its v1 and v2 paths', () => {
    const conf = renderNginxConf(router, [canary], 7);
    expect(splitEntries(conf, '$ml_route_0')).toEqual([
      ['5.00%', 'slot_b'],
      ['*', 'slot_a'],
    ]);
    expect(conf).toContain('map $http_x_ml_user $ml_user_key {');
    expect(conf).toContain('location ^~ "/v1/models/churn/" {\n      proxy_pass http://$ml_route_0;');
    expect(conf).toContain('location ^~ "/v2/models/churn/" {');
    expect(conf).toContain('location = "/v2/models/churn" {');
    expect(conf).toMatch(/upstream slot_a \{\n\s+server 127\.0\.0\.1:8710;/);
    expect(conf).toMatch(/upstream slot_b \{\n\s+server 127\.0\.0\.1:8720;/);
    expect(conf).toContain(`location = ${GENERATION_PATH} {`);
    expect(conf).toContain("return 200 '7';");
    expect(conf).toContain('pid "/var/lib/ml-nginx/edge/nginx.pid";');
    expect(conf).toContain('keepalive_timeout 0s;');
  });

  it('writes percentages nginx accepts (two decimals) that always give out exactly 100 %', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 1, maxLength: 8 }), (raw) => {
        const total = raw.reduce((a, b) => a + b, 0);
        fc.pre(total > 0);
        const versions = raw.map((r, i) => ({ version: `v${i}`, slot: i % 2 ? 'a' : 'b', weight: (r / total) * 100 }));
        const shares = splitShares(versions);
        expect(shares.reduce((sum, s) => sum + s.hundredths, 0)).toBe(10_000);
        expect(shares.every((s) => Number.isInteger(s.hundredths) && s.hundredths > 0)).toBe(true);
        const conf = renderNginxConf(router, [{ model: 'churn', versions }], 1);
        const entries = splitEntries(conf, '$ml_route_0');
        expect(entries.every(([share]) => share === '*' || /^\d{1,3}\.\d\d%$/.test(share))).toBe(true);
        expect(entries.at(-1)![0]).toBe('*');
        expect(totalPercent(entries)).toBe(100);
        expect(
          entries.filter(([share]) => share !== '*').reduce((s, [p]) => s + Math.round(parseFloat(p) * 100), 0),
        ).toBeLessThan(10_000);
      }),
    );
  });

  it('keeps the candidate on the first share as it grows, so its users stay on it', () => {
    let previous = 0;
    for (const percent of [1, 5, 25, 50, 75, 100]) {
      const shares = splitShares([
        { version: 'v2', slot: 'b', weight: percent },
        { version: 'v1', slot: 'a', weight: 100 - percent },
      ]);
      expect(shares[0]).toMatchObject({ version: 'v2' });
      expect(shares[0]!.hundredths).toBeGreaterThan(previous);
      previous = shares[0]!.hundredths;
    }
  });

  it('leaves versions at 0 out of the split and routes a single version with `*` alone', () => {
    const conf = renderNginxConf(
      router,
      [
        {
          model: 'churn',
          versions: [
            { version: 'v2', slot: 'b', weight: 0 },
            { version: 'v1', slot: 'a', weight: 100 },
          ],
        },
      ],
      2,
    );
    expect(splitEntries(conf, '$ml_route_0')).toEqual([['*', 'slot_a']]);
    // No version of the split is on slot b: nginx gets no upstream for it.
    expect(conf).not.toContain('upstream slot_b');
  });

  it('takes a model with an empty table out of the config: nothing routes it, nginx answers 404', () => {
    const conf = renderNginxConf(router, [], 3);
    expect(conf).not.toContain('split_clients');
    expect(conf).not.toContain('/v1/models/');
    expect(conf).not.toContain('upstream');
    expect(conf).toContain(`return 404 '{"error":"no model is routed here"}';`);
  });

  it('refuses weights that do not sum to 100 or are not percentages', () => {
    const two = (a: number, b: number) => [
      { version: 'v2', slot: 'b', weight: a },
      { version: 'v1', slot: 'a', weight: b },
    ];
    expect(() => splitShares(two(5, 90))).toThrow(/sum to 100, got 95/);
    expect(() => splitShares(two(Number.NaN, 100))).toThrow(/percentage/);
    expect(() => splitShares(two(-5, 105))).toThrow(/percentage/);
  });

  it('refuses to write a name or path that could break out of its directive, whatever validated it before', () => {
    const hostile: [string, () => string][] = [
      ['model', () => renderNginxConf(router, [{ ...canary, model: 'churn/" { return 200; } #' }], 1)],
      ['model with newline', () => renderNginxConf(router, [{ ...canary, model: 'churn\nserver {' }], 1)],
      [
        'version',
        () =>
          renderNginxConf(
            router,
            [{ model: 'churn', versions: [{ version: 'v1;include /etc/x', slot: 'a', weight: 100 }] }],
            1,
          ),
      ],
      [
        'slot',
        () =>
          renderNginxConf(
            { ...router, slots: [{ ...router.slots[0]!, name: 'a; }' }] },
            [{ model: 'churn', versions: [{ version: 'v1', slot: 'a; }', weight: 100 }] }],
            1,
          ),
      ],
      ['folder', () => renderNginxConf({ ...router, confDir: '/tmp/x";\nuser root;#' }, [], 1)],
      ['folder with $', () => renderNginxConf({ ...router, confDir: '/tmp/$document_root' }, [], 1)],
      ['header', () => renderNginxConf({ ...router, userHeader: 'x-user; }' }, [], 1)],
      [
        'slot address',
        () =>
          renderNginxConf(
            { ...router, slots: [{ ...router.slots[0]!, server: '127.0.0.1:8710; server evil:80' }] },
            [{ model: 'churn', versions: [{ version: 'v1', slot: 'a', weight: 100 }] }],
            1,
          ),
      ],
    ];
    for (const [what, render] of hostile) expect(render, what).toThrow(/refusing to write/);
  });
});

describe('ML_NGINX_TARGETS file', () => {
  const dir = tempDir('mll-nginx-targets-');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** An executable that stands for nginx: the loader only checks that the binary can be run. */
  const nginx = process.execPath;
  const write = (text: string) => {
    const file = join(dir, `targets-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, text);
    return file;
  };
  const problems = (file: string): string[] => {
    try {
      loadNginxTargets(file, {});
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidFileError);
      return (err as InvalidFileError).problems;
    }
    throw new Error('the file should have been refused');
  };

  it('reads routers with their defaults and the nginx binary resolved', () => {
    const file = write(`
routers:
  - name: edge
    confDir: /var/lib/ml-nginx/edge/
    listen: 0.0.0.0:8080
    nginx: ${nginx}
    slots:
      - { name: a, publicUrl: "http://127.0.0.1:8710", adminUrl: "http://127.0.0.1:8711/" }
      - { name: b, publicUrl: "http://gw-b.internal:8720/", adminUrl: "http://gw-b.internal:8721" }
`);
    expect(loadNginxTargets(file, {})).toEqual([
      {
        name: 'edge',
        confDir: '/var/lib/ml-nginx/edge',
        listen: { host: '0.0.0.0', port: 8080 },
        userHeader: 'x-ml-user',
        nginx,
        clientKeepaliveMs: 0,
        slots: [
          {
            name: 'a',
            publicUrl: 'http://127.0.0.1:8710',
            server: '127.0.0.1:8710',
            adminUrl: 'http://127.0.0.1:8711',
          },
          {
            name: 'b',
            publicUrl: 'http://gw-b.internal:8720',
            server: 'gw-b.internal:8720',
            adminUrl: 'http://gw-b.internal:8721',
          },
        ],
      },
    ]);
  });

  it('names the field and its line of each problem', () => {
    const file = write(`
routers:
  - name: edge
    confDir: relative/dir
    listen: localhost:80
    userHeader: "x user"
    nginx: ${nginx}
    slots:
      - { name: a, publicUrl: "http://127.0.0.1:8710/predict", adminUrl: "http://127.0.0.1:8711" }
      - { name: a, publicUrl: "https://127.0.0.1:8720", adminUrl: "ftp://x" }
`);
    const found = problems(file);
    const fields = found.map((p) => p.split(' ')[0]);
    expect(fields).toEqual(
      expect.arrayContaining([
        'routers.0.confDir',
        'routers.0.listen',
        'routers.0.userHeader',
        'routers.0.slots.0.publicUrl',
        'routers.0.slots.1.publicUrl',
        'routers.0.slots.1.adminUrl',
      ]),
    );
    expect(found.find((p) => p.startsWith('routers.0.confDir'))).toMatch(/\(line 4\): an absolute path/);
  });

  it('refuses a path that could inject nginx config, duplicate slots and routers sharing a folder', () => {
    const file = write(`
routers:
  - name: edge
    confDir: '/tmp/x;user root'
    listen: 127.0.0.1:8080
    nginx: ${nginx}
    slots:
      - { name: a, publicUrl: "http://127.0.0.1:8710", adminUrl: "http://127.0.0.1:8711" }
      - { name: a, publicUrl: "http://127.0.0.1:8720", adminUrl: "http://127.0.0.1:8721" }
  - name: edge2
    confDir: /tmp/shared
    listen: 127.0.0.1:8081
    nginx: ${nginx}
    slots: [{ name: a, publicUrl: "http://127.0.0.1:8730", adminUrl: "http://127.0.0.1:8731" }]
  - name: edge3
    confDir: /tmp/shared/
    listen: 127.0.0.1:8082
    nginx: ${nginx}
    slots: [{ name: a, publicUrl: "http://127.0.0.1:8740", adminUrl: "http://127.0.0.1:8741" }]
`);
    const found = problems(file);
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^routers\.0\.confDir .*an absolute path of letters/),
        expect.stringMatching(/^routers\.0\.slots\.1\.name .*slot a is declared twice/),
        expect.stringMatching(/^routers\.2\.confDir .*the same folder as router edge2/),
      ]),
    );
  });

  it('says when nginx cannot be found, naming the router and the package', () => {
    const file = write(`
routers:
  - name: edge
    confDir: /tmp/edge
    listen: 127.0.0.1:8080
    nginx: /nonexistent/nginx
    slots: [{ name: a, publicUrl: "http://127.0.0.1:8710", adminUrl: "http://127.0.0.1:8711" }]
`);
    expect(problems(file)).toEqual([
      expect.stringMatching(/^routers\.0\.nginx .*\/nonexistent\/nginx is not an executable/),
    ]);
  });
});

describe('nginx target spec', () => {
  it('names a router and nothing else: paths and binaries are the worker’s', () => {
    expect(DeploymentTargetSpec.parse({ kind: 'nginx', name: 'edge' })).toEqual({ kind: 'nginx', name: 'edge' });
    expect(targetLabel({ kind: 'nginx', name: 'edge' })).toBe('nginx target edge');
    for (const bad of [
      { kind: 'nginx', name: 'edge', confDir: '/tmp' },
      { kind: 'nginx', name: 'edge', nginx: '/bin/sh' },
      { kind: 'nginx', name: 'Edge; rm' },
      { kind: 'nginx' },
    ]) {
      expect(DeploymentTargetSpec.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
  });

  it('resolves to the router the worker declares; another name is an InvalidSpec naming those it does', () => {
    const routers = createNginxTargets([{ ...router, nginx: process.execPath }], 'admin-token-0123456789');
    const deps = { gateway: { url: 'http://127.0.0.1:8701', token: 'admin-token-0123456789' }, nginx: routers };
    expect(resolveTarget({ kind: 'nginx', name: 'edge' }, deps)).toBe(routers.get('edge'));
    for (const [nginx, declared] of [
      [routers, 'declares edge'],
      [undefined, 'declares none'],
    ] as const) {
      let thrown: unknown;
      try {
        resolveTarget({ kind: 'nginx', name: 'core' }, { ...deps, nginx });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(ApplicationFailure);
      expect(thrown).toMatchObject({ type: ErrorType.InvalidSpec, nonRetryable: true });
      expect((thrown as Error).message).toBe(
        `nginx target core: the worker declares no router of that name (ML_NGINX_TARGETS ${declared})`,
      );
    }
  });
});
