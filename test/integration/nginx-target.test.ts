import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { artifactDigest } from '../../src/artifacts/digest';
import { loadNginxTargetsFromEnv } from '../../src/config/nginx-targets';
import { LoadGenerator } from '../../src/dev/load-generator';
import { startNginx, type NginxServer } from '../../src/dev/nginx';
import { freePort } from '../../src/dev/ports';
import type { ManagedProcess } from '../../src/dev/processes';
import { ErrorType } from '../../src/shared/errors';
import type { LifecycleSpec } from '../../src/shared/spec';
import { createNginxTargets, type NginxTarget } from '../../src/targets/nginx';
import type { DeploymentTarget } from '../../src/targets/contract';
import { GATEWAY_MAIN, startGatewayProcess } from '../helpers/gateway-process';
import { approveAll, EXAMPLE, startStack, testSpec, uniqueName, waitForStatus, type Stack } from '../helpers/harness';
import { tempDir } from '../helpers/temp';

const USER_HEADER = 'x-ml-user';
const ROUTER = 'edge';

/** A slot: a gateway process of its own in single-version mode, as an operator runs them behind nginx. */
interface Slot {
  name: string;
  publicUrl: string;
  adminUrl: string;
  process: ManagedProcess;
  admin(path: string, init?: RequestInit): Promise<Response>;
}

/** Starts `dist/src/serving/main.js` on free loopback ports and waits for its "listening" log line. */
async function startSlot(name: string, adminToken: string, artifactRoot: string, workDir: string): Promise<Slot> {
  const log = join(workDir, `slot-${name}.log`);
  const started = await startGatewayProcess(
    `slot ${name}`,
    {
      GATEWAY_ADMIN_TOKEN: adminToken,
      GATEWAY_ARTIFACT_ROOT: artifactRoot,
      GATEWAY_DATA_DIR: join(workDir, `slot-${name}`),
      GATEWAY_SINGLE_VERSION: 'true',
      LOG_LEVEL: 'info',
    },
    log,
  );
  const process = started.process;
  const addresses = { public: started.publicUrl, admin: started.adminUrl };
  return {
    name,
    publicUrl: addresses.public,
    adminUrl: addresses.admin,
    process,
    admin: (path, init = {}) =>
      fetch(`${addresses.admin}${path}`, {
        ...init,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      }),
  };
}

/** The rows of the example's test set, as the load generator sends them (label and id dropped). */
function testRows(): Record<string, number | string>[] {
  const rows = parseCsv(readFileSync(join(EXAMPLE, 'data', 'test.csv'), 'utf8'), { columns: true }) as Record<
    string,
    string
  >[];
  return rows.map((row) =>
    Object.fromEntries(
      Object.entries(row)
        .filter(([k]) => k !== 'churned' && k !== 'customer_id')
        .map(([k, v]) => [k, Number.isFinite(Number(v)) ? Number(v) : v]),
    ),
  );
}

describe('nginx deployment target', () => {
  const model = uniqueName('nginx-churn');
  const routers = new Map<string, DeploymentTarget>();
  const rows = testRows();
  let next = 0;
  let workDir: string;
  let stack: Stack;
  let slots: Slot[] = [];
  let nginx: NginxServer | undefined;
  let target: NginxTarget;
  let load: LoadGenerator | undefined;
  /** The first version's artifact, deployed again under other names by the last test. */
  let firstArtifact: string | null = null;

  /** A spec of the churn example deployed on the router, with short bakes (20 % canary: its sample comes in 3 s). */
  const nginxSpec = (version: string, variant: 'good' | 'bad'): LifecycleSpec =>
    testSpec(model, version, variant, (s) => {
      s.deployment.target = { kind: 'nginx', name: ROUTER };
      s.rollout.canary = { ...s.rollout.canary, percent: 20, bake: 3000 };
      s.rollout.steps = [
        { percent: 50, bake: 4000, approval: false },
        { percent: 100, bake: 1000, approval: false },
      ];
    });

  /**
   * A prediction through nginx for `user`: the version that answered, or the status when it failed. Each takes the
   * next row of the test set, so that the versions' live predictions keep the distribution the drift check compares.
   */
  const predict = async (user?: string): Promise<string> => {
    const row = rows[next++ % rows.length];
    const res = await fetch(`${nginx!.url}/v1/models/${model}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(user ? { [USER_HEADER]: user } : {}) },
      body: JSON.stringify({ userId: user ?? 'anonymous', features: row }),
    });
    const body = (await res.json()) as { version?: string };
    return res.status === 200 && body.version ? body.version : `status ${res.status}`;
  };
  /** Which versions of the model a slot's gateway holds. */
  const slotVersions = async (slot: Slot): Promise<string[]> => {
    const res = await slot.admin(`/admin/models/${model}`);
    if (res.status === 404) return [];
    return ((await res.json()) as { versions: { version: string }[] }).versions.map((v) => v.version);
  };

  beforeAll(async () => {
    if (!existsSync(GATEWAY_MAIN)) throw new Error(`${GATEWAY_MAIN} is missing: run npm run build first`);
    workDir = tempDir('mll-nginx-target-');
    // nginx started as root runs its workers as nobody: they must reach the temp folders under the router's folder.
    chmodSync(workDir, 0o755);
    stack = await startStack({ nginxTargets: routers });
    slots = await Promise.all(
      ['a', 'b'].map((name) => startSlot(name, stack.gateway.adminToken, stack.artifactsDir, workDir)),
    );
    const listen = { host: '127.0.0.1', port: await freePort() };
    const confDir = join(workDir, ROUTER);
    const file = join(workDir, 'nginx-targets.yaml');
    writeFileSync(
      file,
      stringify({
        routers: [
          {
            name: ROUTER,
            confDir,
            listen: `${listen.host}:${listen.port}`,
            userHeader: USER_HEADER,
            slots: slots.map(({ name, publicUrl, adminUrl }) => ({ name, publicUrl, adminUrl })),
          },
        ],
      }),
    );
    // What the worker does at start (src/workers/main.ts) with ML_NGINX_TARGETS naming the file.
    const built = createNginxTargets(
      loadNginxTargetsFromEnv({ ...process.env, ML_NGINX_TARGETS: file }),
      stack.gateway.adminToken,
    );
    for (const [name, router] of built) {
      await router.prepare();
      routers.set(name, router);
    }
    target = built.get(ROUTER)!;
    nginx = await startNginx({ prefix: confDir, configFile: target.configFile, listen });
  });

  afterAll(async () => {
    await load?.stop();
    await nginx?.stop();
    await Promise.all(slots.map((slot) => slot.process.stop()));
    await stack?.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('serves a first version through nginx from a slot gateway that takes one version per model', async () => {
    expect(await predict('someone')).toBe('status 404');
    const { id } = await stack.lifecycles.start(nginxSpec('v1', 'good'));
    const ending = approveAll(stack.lifecycles, id);
    // Traffic starts the moment nginx routes the model: from then on not one request may fail.
    await waitForStatus(stack.lifecycles, id, (s) => s.trafficPercent === 100);
    load = new LoadGenerator({
      gatewayUrl: nginx!.url,
      model,
      rowsCsv: join(EXAMPLE, 'data', 'test.csv'),
      labelColumn: 'churned',
      dropColumns: ['customer_id'],
      ratePerSecond: 100,
      userHeader: USER_HEADER,
    });
    load.start();
    const end = await ending;
    expect(end.stage, JSON.stringify(end.events.slice(-5))).toBe('promoted');
    firstArtifact = end.artifactDir;
    expect(await target.readWeights(model)).toEqual({ v1: 100 });
    expect(await predict('someone')).toBe('v1');
    expect(await predict()).toBe('v1');
    const [a, b] = slots as [Slot, Slot];
    expect([await slotVersions(a), await slotVersions(b)]).toEqual([['v1'], []]);

    // The slot refuses a second version of the model, saying why.
    const artifactDir = join(stack.artifactsDir, id);
    const refused = await a.admin(`/admin/models/${model}/versions/v1-copy`, {
      method: 'PUT',
      body: JSON.stringify({ opId: `${id}:copy`, artifactDir, artifactDigest: `sha256:${'0'.repeat(64)}` }),
    });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: string }).error).toMatch(
      /serves one version per model \(GATEWAY_SINGLE_VERSION\): model '.*' already has version 'v1'/,
    );
  });

  it('promotes a good candidate under 100 req/s through nginx reloads with no failed request, users sticky', async () => {
    expect(load).toBeDefined();
    const { id } = await stack.lifecycles.start(nginxSpec('v2', 'good'));
    const ending = approveAll(stack.lifecycles, id);
    await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'ramping' && s.trafficPercent === 50, 120_000);
    // Held at 50 % (the next stage waits while paused), so that no weight change can land during the probe.
    await stack.lifecycles.pause(id, { by: 'olivia', reason: 'probing stickiness' });
    const held = await waitForStatus(stack.lifecycles, id, (s) =>
      s.events.some((e) => e.message === 'ramping:50 passed its checks'),
    );
    expect(held).toMatchObject({ paused: true, trafficPercent: 50 });

    // While the 50 % table holds, each user keeps the version nginx's split gave it; both versions have users.
    const users = Array.from({ length: 40 }, (_, i) => `sticky-${i}`);
    const answers = await Promise.all(
      users.map(async (user) => [await predict(user), await predict(user), await predict(user)]),
    );
    for (const [i, versions] of answers.entries()) expect(new Set(versions), users[i]).toEqual(new Set([versions[0]]));
    expect(new Set(answers.map((v) => v[0]))).toEqual(new Set(['v1', 'v2']));
    await stack.lifecycles.resume(id, { by: 'olivia', reason: 'probed' });

    const end = await ending;
    expect(end.stage, JSON.stringify(end.decisions.filter((d) => d.outcome !== 'pass'))).toBe('promoted');
    expect(new Set(end.decisions.map((d) => d.stage))).toEqual(
      new Set(['validating', 'canary', 'ramping:50', 'ramping:100']),
    );
    expect(await target.readWeights(model)).toEqual({ v2: 100 });
    // The old stable version is gone from its slot, which is free for the next candidate.
    const [a, b] = slots as [Slot, Slot];
    expect([await slotVersions(a), await slotVersions(b)]).toEqual([[], ['v2']]);
    expect(load!.stats.failed, JSON.stringify(load!.stats.failedBy) + load!.stats.lastError).toBe(0);
    expect(load!.stats.byVersion.v2).toBeGreaterThan(0);
  });

  it('rolls a bad candidate back through nginx under the same traffic, still without a failed request', async () => {
    const before = load!.stats.ok;
    const { id } = await stack.lifecycles.start(nginxSpec('v3', 'bad'));
    const end = await approveAll(stack.lifecycles, id);
    expect(end.stage, JSON.stringify(end.decisions.filter((d) => d.outcome !== 'pass'))).toBe('rolled-back');
    // Caught on its live predictions: each version's counters come from its own slot.
    const breached = end.decisions.filter((d) => d.outcome === 'fail');
    expect(breached.map((d) => [d.stage, d.check])).toEqual([['canary', 'predictionDrift']]);
    expect(breached[0]!.sampleSize).toBeGreaterThanOrEqual(60);
    expect(await target.readWeights(model)).toEqual({ v2: 100 });
    const [a, b] = slots as [Slot, Slot];
    expect([await slotVersions(a), await slotVersions(b)]).toEqual([[], ['v2']]);
    expect(await predict('someone')).toBe('v2');

    await load!.stop();
    const { stats } = load!;
    expect(stats.failed, JSON.stringify(stats.failedBy) + stats.lastError).toBe(0);
    expect(stats.ok).toBeGreaterThan(before);
    expect(Object.keys(stats.byVersion).sort()).toEqual(['v1', 'v2', 'v3']);
  });

  it('keeps the gateway rules on the router: each opId once, no undeploy under traffic, one version per slot', async () => {
    const failure = async (promise: Promise<unknown>): Promise<ApplicationFailure> => {
      const err = await promise.then(
        () => expect.unreachable('the call should have been refused'),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ApplicationFailure);
      return err as ApplicationFailure;
    };
    const refusedUndeploy = await failure(target.undeploy({ model, version: 'v2', opId: 'rules-undeploy-v2' }));
    expect(refusedUndeploy).toMatchObject({ type: ErrorType.GatewayRefused, nonRetryable: true });
    expect(refusedUndeploy.message).toMatch(/nginx target edge: version 'v2' of model '.*' has weight 100/);
    const unknown = await failure(target.setWeights({ model, weights: { v9: 100 }, opId: 'rules-weights-v9' }));
    expect(unknown.message).toMatch(/version 'v9' is not deployed/);

    expect(firstArtifact).not.toBeNull();
    const artifact = { artifactDir: firstArtifact!, artifactDigest: await artifactDigest(firstArtifact!) };
    const deployV4 = { model, version: 'v4', ...artifact, opId: 'rules-deploy-v4' };
    expect(await target.deploy(deployV4)).toEqual({ opId: 'rules-deploy-v4', applied: true });
    expect(await target.deploy(deployV4)).toEqual({ opId: 'rules-deploy-v4', applied: false });
    const [a, b] = slots as [Slot, Slot];
    expect([await slotVersions(a), await slotVersions(b)]).toEqual([['v4'], ['v2']]);
    const full = await failure(target.deploy({ ...deployV4, version: 'v5', opId: 'rules-deploy-v5' }));
    expect(full.message).toMatch(/no free slot for model '.*': every slot serves a version of it \(a: v4, b: v2\)/);
    // Deployed at 0 %: its counters are read from its slot, beside v2's from the other.
    expect(Object.keys((await target.readTelemetry(model)).versions).sort()).toEqual(['v2', 'v4']);
    expect(await target.undeploy({ model, version: 'v4', opId: 'rules-undeploy-v4' })).toEqual({
      opId: 'rules-undeploy-v4',
      applied: true,
    });
    expect([await slotVersions(a), await slotVersions(b)]).toEqual([[], ['v2']]);
    expect(await target.readWeights(model)).toEqual({ v2: 100 });
  });
});
