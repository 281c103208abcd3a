import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactDigest } from '../../src/artifacts/digest';
import { QuotaClient } from '../../src/client/quota-client';
import { QuotaPoolsFile, type QuotaPoolConfigInput, type QuotaPoolState } from '../../src/shared/quota';
import {
  EXAMPLE,
  liveTraffic,
  startStack,
  testSpec,
  uniqueName,
  waitForStatus,
  WORKER_SECRET,
  type Stack,
} from '../helpers/harness';
import { mlctl } from '../helpers/mlctl';
import { tempDir } from '../helpers/temp';

describe('mlctl quota against a real dev server', () => {
  let stack: Stack;
  const dir = tempDir('mll-quota-cli-');
  const POOL = uniqueName('cli-pool');
  const PLAN = uniqueName('plan-pool');
  const BIG = uniqueName('big-pool');
  const poolConfigs: QuotaPoolConfigInput[] = [
    { name: POOL, capacity: { cpu: 8, memoryGiB: 32, 'gpu:t4': 2 }, caps: { perPipeline: { 'gpu:*': 0.5 } } },
    {
      name: PLAN,
      capacity: { cpu: 16, memoryGiB: 64 },
      caps: { perKind: { experiment: 0.3 } },
      pipelines: [
        { name: 'features-nightly', kind: 'data', resources: { cpu: 4, memoryGiB: 16 } },
        { name: 'churn-serving', kind: 'serving', resources: { cpu: 2, memoryGiB: 2 } },
      ],
    },
    { name: BIG, capacity: { cpu: 1000 } },
  ];
  const poolsFile = join(dir, 'pools.yaml');
  const run = (...args: string[]) => mlctl(stack.address, ...args, '--pools', poolsFile);

  beforeAll(async () => {
    writeFileSync(poolsFile, stringify({ pools: poolConfigs }));
    stack = await startStack({ pools: poolConfigs });
    await stack.startWorkers();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('exits 2 naming every problem of a bad pools file, with its line', async () => {
    const bad = join(dir, 'bad-pools.yaml');
    writeFileSync(
      bad,
      [
        'pools:',
        '  - name: Shared Pool',
        '    capacity: { cpu: -4, memoryGiB: 64 }',
        '    caps:',
        '      perPipeline: 2',
        '      perKind: { batch: 0.5 }',
        '    leaseTtl: soon',
      ].join('\n'),
    );
    const r = await mlctl(stack.address, 'quota', 'show', '--pools', bad);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${bad}: invalid quota pools:`);
    expect(r.stderr).toMatch(/pools\.0\.name \(line 2\): a pool name: lowercase letters/);
    expect(r.stderr).toMatch(/pools\.0\.capacity\.cpu \(line 3\)/);
    expect(r.stderr).toMatch(/pools\.0\.caps\.perPipeline \(line 5\): a share of capacity of at most 1/);
    expect(r.stderr).toMatch(/pools\.0\.caps\.perKind \(line 6\): Unrecognized key: "batch"/);
    expect(r.stderr).toMatch(/pools\.0\.leaseTtl \(line 7\): invalid duration "soon"/);
    const json = await mlctl(stack.address, 'quota', 'show', '--json', '--pools', bad);
    expect(json.code).toBe(2);
    expect((JSON.parse(json.stderr) as { problems: string[] }).problems).toHaveLength(5);
  });

  it('reserves, shows, refuses over a cap with exit 4, and releases idempotently', async () => {
    const granted = await run(
      'quota',
      'reserve',
      POOL,
      '--lease',
      'etl-1',
      '--holder',
      'etl',
      '--kind',
      'data',
      '--resources',
      'cpu=4,memoryGiB=16,gpu:t4=1',
      '--ttl',
      '15m',
      '--json',
    );
    expect(granted.code).toBe(0);
    expect(JSON.parse(granted.stdout)).toMatchObject({ granted: true, lease: { leaseId: 'etl-1', ttlMs: 900_000 } });

    const capped = await run(
      'quota',
      'reserve',
      POOL,
      '--lease',
      'etl-2',
      '--holder',
      'etl',
      '--kind',
      'data',
      '--resources',
      'gpu:t4=1',
    );
    expect(capped.code).toBe(4);
    expect(capped.stderr).toContain('the pipeline would exceed its cap: gpu:t4 needs 1, 0 of 1 (pipeline cap)');

    const shown = await run('quota', 'show', POOL, '--json');
    expect(shown.code).toBe(0);
    const state = JSON.parse(shown.stdout) as { used: Record<string, number>; byPipeline: Record<string, unknown> };
    expect(state.used).toEqual({ cpu: 4, memoryGiB: 16, 'gpu:t4': 1 });
    expect(state.byPipeline).toEqual({ etl: { cpu: 4, memoryGiB: 16, 'gpu:t4': 1 } });
    const text = await run('quota', 'show', POOL);
    expect(text.stdout).toMatch(/gpu:t4\s+1\s+2\s+50%/);
    expect(text.stdout).toMatch(/etl-1\s+etl\s+data\s+cpu=4 memoryGiB=16 gpu:t4=1\s+in 15m/);

    expect((await run('quota', 'release', POOL, 'etl-1', '--as', 'ops')).stdout).toMatch(/released etl-1/);
    const again = await run('quota', 'release', POOL, 'etl-1', '--as', 'ops');
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/was not held/);
    expect((await run('quota', 'renew', POOL, 'etl-1', '--as', 'ops')).code).toBe(4);
    const unknown = await run('quota', 'show', 'no-such-pool');
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('unknown quota pool "no-such-pool"');
  });

  it('estimates training from the pool history and serving from measured service time', async () => {
    // One real training run in the pool, so there is history to estimate from.
    const model = uniqueName('est');
    const { id } = await stack.lifecycles.start(testSpec(model, 'v1', 'good', (s) => (s.quota.pool = PLAN)));
    const trained = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
    await stack.lifecycles.reject(id, { by: 'alice', reason: 'only for the estimate' });
    // Serve the trained artifact with live traffic, so the gateway has measured service times.
    const gw = stack.gateway.adminUrl;
    const put = (path: string, body: unknown) =>
      stack.gateway.admin(path, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const artifactDir = trained.artifactDir!;
    const deploy = { opId: 'd', artifactDir, artifactDigest: await artifactDigest(artifactDir) };
    expect((await put(`/admin/models/${model}/versions/v1`, deploy)).ok).toBe(true);
    expect((await put(`/admin/models/${model}/weights`, { opId: 'w', weights: { v1: 100 } })).ok).toBe(true);
    const load = liveTraffic(stack.gateway.url, model, 200);
    await new Promise((r) => setTimeout(r, 1500));
    await load.stop();

    const spec = join(dir, 'spec.yaml');
    const base = testSpec(model, 'v2');
    writeFileSync(
      spec,
      stringify({
        ...base,
        training: { ...base.training, program: join(EXAMPLE, 'train.py'), dataDir: join(EXAMPLE, 'data') },
        quota: { ...base.quota, pool: PLAN },
        serving: { qps: 400, latencyP99Ms: 100 },
      }),
    );
    // mlctl reads the gateway's admin token from its environment, as an operator's shell would hold it.
    process.env.GATEWAY_ADMIN_TOKEN = stack.gateway.adminToken;
    const r = await run('quota', 'estimate', spec, '--gateway', gw, '--json');
    expect(r.code).toBe(0);
    const e = JSON.parse(r.stdout) as {
      training: { basis: string; similarRuns: number; datasetRows: number; durationMs: { mid: number } };
      serving: { replicas: { low: number; mid: number; high: number }; perReplicaRps: { mid: number } };
    };
    expect(e.training).toMatchObject({ basis: 'history', similarRuns: 1 });
    expect(e.training.datasetRows).toBeGreaterThan(1000);
    expect(e.training.durationMs.mid).toBeGreaterThan(0);
    expect(e.serving.perReplicaRps.mid).toBeGreaterThan(0);
    expect(e.serving.replicas.low).toBeLessThanOrEqual(e.serving.replicas.mid);
    expect(e.serving.replicas.mid).toBeLessThanOrEqual(e.serving.replicas.high);
    const text = await run('quota', 'estimate', spec, '--gateway', gw);
    delete process.env.GATEWAY_ADMIN_TOKEN;
    expect(text.stdout).toMatch(/training: 1 similar runs \(kind training, family tree-ensemble/);
    expect(text.stdout).toMatch(/serving: 400 QPS at 70% target utilisation/);

    // The hardware plan for the same spec, corrected by the measured training in the pool.
    const hw = await run('hardware', 'plan', spec, '--calibrated', '--json');
    expect(hw.code).toBe(0);
    const plan = JSON.parse(hw.stdout) as { calibration: { runs: number; factor: number }; notes: string[] };
    expect(plan.calibration.runs).toBe(1);
    expect(plan.calibration.factor).toBeGreaterThan(0);
    expect(plan.notes).toContainEqual(
      expect.stringMatching(/^estimates calibrated by 1 measured tree-ensemble training/),
    );

    // A data pipeline (not a lifecycle) with no history says so and keeps what was declared.
    const data = await run('quota', 'estimate', '--kind', 'data', '--pool', PLAN, '--family', 'etl', '--json');
    expect(JSON.parse(data.stdout)).toMatchObject({ basis: 'declared', similarRuns: 0 });
  });

  it('checks whether the pool runs every registered pipeline plus running experiments, naming what falls short', async () => {
    const fits = await run('quota', 'check', PLAN, '--json');
    expect(fits.code).toBe(0);
    expect(JSON.parse(fits.stdout)).toMatchObject({ fits: true, demand: { cpu: 6, memoryGiB: 18 } });
    // Two experiments running now: 4 + 3 cpu, over the 30% experiment cap (4.8 cpu).
    const experiments: [string, string][] = [
      ['exp-a', '4'],
      ['exp-b', '0.8'],
    ];
    for (const [lease, cpu] of experiments)
      expect(
        (
          await run(
            'quota',
            'reserve',
            PLAN,
            '--lease',
            lease,
            '--holder',
            lease,
            '--kind',
            'experiment',
            '--resources',
            `cpu=${cpu}`,
          )
        ).code,
      ).toBe(0);
    const refusedExperiment = await run(
      'quota',
      'reserve',
      PLAN,
      '--lease',
      'exp-c',
      '--holder',
      'exp-c',
      '--kind',
      'experiment',
      '--resources',
      'cpu=1',
    );
    expect(refusedExperiment.code).toBe(4);
    expect(refusedExperiment.stderr).toContain('kind cap');

    const spec = join(dir, 'big.yaml');
    const base = testSpec('big-model', 'v1');
    writeFileSync(
      spec,
      stringify({
        ...base,
        training: {
          ...base.training,
          program: join(EXAMPLE, 'train.py'),
          dataDir: join(EXAMPLE, 'data'),
          resources: { cpu: 8, memoryGiB: 40 },
        },
        // A family with no run in the pool's history: its declared request stands.
        hardware: { ...base.hardware, architecture: 'transformer' },
        quota: { ...base.quota, pool: PLAN },
      }),
    );
    const short = await run('quota', 'check', PLAN, '--spec', spec);
    expect(short.code).toBe(5);
    expect(short.stdout).toContain('CANNOT run every pipeline below at once');
    expect(short.stdout).toMatch(/exp-a\s+experiment\s+cpu=4\s+running \(exp-a\)/);
    expect(short.stdout).toContain('SHORT cpu: all pipelines needs 18.8, capacity is 16');
    const json = JSON.parse((await run('quota', 'check', PLAN, '--spec', spec, '--json')).stdout) as {
      fits: boolean;
      problems: { resource: string; scope: string }[];
    };
    expect(json.fits).toBe(false);
    expect(json.problems).toContainEqual(expect.objectContaining({ resource: 'cpu', scope: 'pool' }));
    for (const lease of ['exp-a', 'exp-b']) await run('quota', 'release', PLAN, lease, '--as', 'ops');
  });
  it('shows a pool of many leases as a summary with bounded lists, and its whole state with --all', async () => {
    const quota = new QuotaClient(stack.client, QuotaPoolsFile.parse({ pools: poolConfigs }), {
      maxInFlight: 4,
      ownerSecret: WORKER_SECRET,
    });
    // Lease job-i expires in i + 1 minutes; six pipelines hold them in turn.
    const reserve = (from: number, to: number) =>
      Promise.all(
        Array.from({ length: to - from }, (_, k) => from + k).map(async (i) => {
          const r = await quota.reserve(BIG, {
            leaseId: `job-${i}`,
            holder: `etl-${i % 6}`,
            kind: 'data',
            resources: { cpu: 1 },
            ttlMs: (i + 1) * 60_000,
          });
          expect(r.granted, `job-${i}`).toBe(true);
        }),
      );
    const shownBytes = async (...args: string[]) => (await run('quota', 'show', BIG, '--json', ...args)).stdout.length;

    await reserve(0, 60);
    const summaryAt60 = await shownBytes();
    const wholeAt60 = await shownBytes('--all');
    await reserve(60, 120);

    const text = (await run('quota', 'show', BIG)).stdout;
    expect(text).toMatch(new RegExp(`pool ${BIG}\\s+leases 120\\s+waiting 0`));
    expect(text.match(/^job-\d+\s+etl-\d/gm)).toHaveLength(50);
    expect(text).toMatch(/^job-0\s+etl-0\s+data\s+cpu=1\s+in \d/m);
    expect(text).toContain('… 70 more leases (the 50 soonest to expire shown: --limit, --all)');

    const five = JSON.parse((await run('quota', 'show', BIG, '--json', '--limit', '5')).stdout) as QuotaPoolState;
    expect(five.counts).toEqual({ leases: 120, waiting: 0, matching: 120 });
    expect(five.leases.map((l) => l.leaseId)).toEqual(['job-0', 'job-1', 'job-2', 'job-3', 'job-4']);
    expect(five.used).toEqual({ cpu: 120 });
    // The pipelines of the leases listed, with all they hold.
    expect(Object.keys(five.byPipeline).sort()).toEqual(['etl-0', 'etl-1', 'etl-2', 'etl-3', 'etl-4']);
    expect(five.byPipeline['etl-0']).toEqual({ cpu: 20 });
    expect(five.journal).toHaveLength(5);

    const whole = JSON.parse((await run('quota', 'show', BIG, '--json', '--all')).stdout) as QuotaPoolState;
    expect(whole.leases).toHaveLength(120);
    expect(whole.counts).toBeUndefined();
    expect(Object.keys(whole.byPipeline)).toHaveLength(6);

    // What a summary carries does not grow with the pool's leases; the whole state does.
    const summaryAt120 = await shownBytes();
    expect(summaryAt120).toBeLessThan(summaryAt60 * 1.1);
    expect(await shownBytes('--all')).toBeGreaterThan(wholeAt60 * 1.7);
    expect((await run('quota', 'show', BIG, '--limit', '0')).stderr).toContain(
      '--limit: "0" is not an integer from 1 to 1000',
    );
  });
});
