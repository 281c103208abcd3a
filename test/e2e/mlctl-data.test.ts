import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE, ROOT, startStack, uniqueName, type Stack } from '../helpers/harness';
import { mlctl } from '../helpers/mlctl';
import { tempDir } from '../helpers/temp';

// `mlctl data` needs no server: it reads files.
const run = (...args: string[]) => mlctl('127.0.0.1:1', 'data', ...args);
const TRAIN = join(EXAMPLE, 'data', 'train.csv');
const TEST = join(EXAMPLE, 'data', 'test.csv');

interface Report {
  features: {
    name: string;
    type: string;
    role: string;
    method: string;
    statistic: number | null;
    pValue?: number;
    threshold: number | null;
    drifted: boolean;
    moved: { what: string }[];
  }[];
  datasetDrift: boolean;
  problems: { kind: string; feature?: string; message: string }[];
  ok: boolean;
}

/** The example's test rows with monthly charges raised 30%, some ages unreadable and an unknown plan. */
function skewedBatch(file: string): void {
  const [header, ...rows] = readFileSync(TEST, 'utf8').trim().split('\n');
  const cols = header!.split(',');
  const at = (name: string) => cols.indexOf(name);
  const out = rows.slice(0, 400).map((line, i) => {
    const cells = line.split(',');
    cells[at('monthly_charges')] = (Number(cells[at('monthly_charges')]) * 1.3).toFixed(2);
    if (i % 50 === 0) cells[at('age')] = 'unknown';
    if (i % 100 === 0) cells[at('plan')] = 'platinum';
    return cells.join(',');
  });
  writeFileSync(file, `${header}\n${out.join('\n')}\n`);
}

describe('mlctl data', () => {
  const dir = tempDir('mll-data-');
  const profile = join(dir, 'profile.json');

  it('profiles the training set into a profile and its sorted values', async () => {
    const r = await run('profile', TRAIN, '-o', profile, '--label', 'churned');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/train\.csv: 4800 rows, 8 columns/);
    expect(r.stdout).toMatch(/customer_id\s+categorical\s+identifier/);
    expect(r.stdout).toMatch(/churned\s+numeric\s+label/);
    expect(existsSync(join(dir, 'profile.values.f64'))).toBe(true);
    const p = JSON.parse(readFileSync(profile, 'utf8')) as { rows: number; features: { name: string }[] };
    expect(p.rows).toBe(4800);
  });

  it('finds no drift in the held-out test set: exit 0, with the JSON fields', async () => {
    const r = await run('check', '--reference', profile, '--current', TEST, '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report).toMatchObject({ datasetDrift: false, ok: true, problems: [] });
    const charges = report.features.find((f) => f.name === 'monthly_charges')!;
    expect(charges).toMatchObject({ type: 'numeric', method: 'wasserstein', threshold: 0.1, drifted: false });
    expect(report.features.find((f) => f.name === 'plan')).toMatchObject({ method: 'jensenshannon' });
  });

  it('finds drift and data problems in a skewed batch: exit 5, explained per feature', async () => {
    const batch = join(dir, 'batch.csv');
    skewedBatch(batch);
    const r = await run('check', '--reference', profile, '--current', batch, '--json');
    expect(r.code).toBe(5);
    const report = JSON.parse(r.stdout) as Report;
    const charges = report.features.find((f) => f.name === 'monthly_charges')!;
    // 400 rows: the KS test with its p-value.
    expect(charges).toMatchObject({ method: 'ks', threshold: 0.05, drifted: true });
    expect(charges.pValue).toBeLessThan(1e-10);
    expect(charges.moved[0]!.what).toMatch(/, inf\]$/);
    expect(report.problems.map((p) => `${p.kind}:${p.feature}`).sort()).toEqual([
      'out-of-domain:plan',
      'out-of-range:monthly_charges',
      'wrong-type:age',
    ]);
    // The table says the same for people.
    const text = await run('check', '--reference', profile, '--current', batch);
    expect(text.code).toBe(5);
    expect(text.stdout).toMatch(/monthly_charges\s+numeric\s+ks\s+[\d.]+\s+[\d.e-]+\s+0\.05\s+DRIFT/);
    expect(text.stdout).toMatch(/age: 8 value\(s\) that are not numbers, e\.g\. "unknown"/);
  });

  it('takes a data file as the reference, JSONL as the current data, and per-feature options', async () => {
    const jsonl = join(dir, 'batch.jsonl');
    const [header, ...rows] = readFileSync(TEST, 'utf8').trim().split('\n');
    const cols = header!.split(',');
    writeFileSync(
      jsonl,
      rows
        .slice(0, 300)
        .map((line) => {
          const cells = line.split(',');
          return JSON.stringify(
            Object.fromEntries(
              cols.map((c, i) => [c, ['plan', 'region', 'customer_id'].includes(c) ? cells[i] : Number(cells[i])]),
            ),
          );
        })
        .join('\n'),
    );
    const options = join(dir, 'drift.yaml');
    writeFileSync(options, 'features:\n  age:\n    method: psi\n    threshold: 0.3\n  region:\n    skip: true\n');
    const r = await run(
      'check',
      '--reference',
      TRAIN,
      '--current',
      jsonl,
      '--options',
      options,
      '--label',
      'churned',
      '--json',
    );
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.features.find((f) => f.name === 'age')).toMatchObject({ method: 'psi', threshold: 0.3 });
    expect(report.features.find((f) => f.name === 'region')).toMatchObject({ method: 'none' });
  });

  it('exits 2 naming the problem for bad input', async () => {
    const broken = join(dir, 'broken.csv');
    writeFileSync(broken, 'a,b\n1,2\n3,"never closed\n');
    const bad = await run('check', '--reference', profile, '--current', broken);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/broken\.csv: invalid CSV data:\n\s+- line 3: a quoted field is never closed/);

    const options = join(dir, 'bad.yaml');
    writeFileSync(options, 'features:\n  age:\n    method: nonsense\n');
    const badOptions = await run('check', '--reference', profile, '--current', TEST, '--options', options);
    expect(badOptions.code).toBe(2);
    expect(badOptions.stderr).toMatch(/bad\.yaml.*\n.*features\.age\.method.*line 3/);

    writeFileSync(options, 'features:\n  plan:\n    method: ks\n');
    const wrongType = await run('check', '--reference', profile, '--current', TEST, '--options', options);
    expect(wrongType.code).toBe(2);
    expect(wrongType.stderr).toMatch(/features\.plan\.method: "ks" does not apply to a categorical feature/);

    const notProfile = join(dir, 'other.json');
    writeFileSync(notProfile, '{"hello": 1}');
    const r = await run('check', '--reference', notProfile, '--current', TEST);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/must be a data profile written by `mlctl data profile`/);

    const missing = await run('profile', join(dir, 'absent.csv'), '-o', join(dir, 'x.json'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/absent\.csv: invalid CSV data:\n\s+- cannot read the file: ENOENT/);
  });
});

describe('mlctl data schedule against a real dev server', () => {
  let stack: Stack;
  const dir = tempDir('mll-data-schedule-');
  const profile = join(dir, 'profile.json');
  const name = uniqueName('cli-batches');
  const schedule = (...args: string[]) => mlctl(stack.address, 'data', 'schedule', ...args);

  beforeAll(async () => {
    // Workers run the triggered checks.
    stack = await startStack();
    expect((await run('profile', TRAIN, '-o', profile, '--label', 'churned')).code).toBe(0);
  });
  afterAll(async () => {
    await schedule('delete', name).catch(() => undefined);
    await stack?.close();
  });

  it('exits 2 naming the flag for a bad interval, cron expression or drift share', async () => {
    const create = (...flags: string[]) =>
      schedule('create', name, '--reference', profile, '--current', TEST, ...flags);
    const every = await create('--every', 'sometimes');
    expect(every.code).toBe(2);
    expect(every.stderr).toMatch(/^mlctl: --every: "sometimes" is not a duration/);
    const cron = await create('--cron', 'at dawn');
    expect(cron.code).toBe(2);
    expect(cron.stderr).toMatch(/^mlctl: --cron: "at dawn" is not a cron expression/);
    // Five fields the server cannot read: its own check, named the same way.
    const serverCron = await create('--cron', '99 99 * * *');
    expect(serverCron.code).toBe(2);
    expect(serverCron.stderr).toMatch(/^mlctl: --cron: /);
    const share = await create('--drift-share', '1.5');
    expect(share.code).toBe(2);
    expect(share.stderr).toMatch(/^mlctl: --drift-share: "1.5" is not a number in 0\.\.1/);
    const horizon = await create('--quota-horizon', 'soon', '--pool', 'default');
    expect(horizon.code).toBe(2);
    expect(horizon.stderr).toMatch(/^mlctl: --quota-horizon: invalid duration "soon"/);
    const bad = await schedule('create', 'Not_A_Name', '--reference', profile, '--current', TEST);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^mlctl: <name>: /);
  });

  it('creates, lists, triggers and deletes a schedule; exit 4 when it exists, 3 when it does not', async () => {
    const batch = join(dir, 'batch.csv');
    skewedBatch(batch);
    // A relative path is stored absolute: the worker does not run where mlctl ran.
    const relative = join('examples', 'churn', 'data', 'test.csv');
    const created = await schedule('create', name, '--reference', profile, '--current', relative, '--every', '100d');
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect(created.stdout).toContain(`created data-check-${name}: every 100d`);
    expect(created.stdout).toContain(`checks    ${join(ROOT, relative)}`);
    const again = await schedule('create', name, '--reference', profile, '--current', batch, '--json');
    expect(again.code).toBe(4);
    expect(JSON.parse(again.stderr)).toMatchObject({ exitCode: 4, error: expect.stringMatching(/exists already/) });

    await expect
      .poll(
        async () => {
          const list = await schedule('list', '--json');
          return (JSON.parse(list.stdout) as { name: string; input: { current: string } }[]).find(
            (s) => s.name === name,
          )?.input.current;
        },
        { timeout: 15_000, interval: 500 },
      )
      .toBe(join(ROOT, relative));
    expect((await schedule('list')).stdout).toMatch(new RegExp(`${name}\\s+every 100d\\s+${join(ROOT, relative)}`));

    // The held-out test set: nothing bad, exit 0.
    const clean = await schedule('trigger', name, '--wait', '--json');
    expect(clean.code).toBe(0);
    expect(JSON.parse(clean.stdout)).toMatchObject({ name, started: true, result: { firing: [], problems: [] } });

    // Point the schedule at the skewed batch: exit 5 and what is bad.
    expect((await schedule('delete', name)).code).toBe(0);
    expect((await schedule('create', name, '--reference', profile, '--current', batch, '--every', '100d')).code).toBe(
      0,
    );
    const skewed = await schedule('trigger', name, '--wait');
    expect(skewed.code).toBe(5);
    expect(skewed.stdout).toMatch(/BAD\s+data-drift\s+pipeline ".*": \d of 6 features drifted.*monthly_charges \(ks/);
    expect(skewed.stdout).toMatch(/BAD\s+data-types\s+.*wrong-type ×1 \(age: 8 value\(s\)/);
    expect(skewed.stdout).toMatch(/ok\s+label-drift/);
    expect(skewed.stdout).toMatch(/firing: data-drift, data-types$/m);

    const deleted = await schedule('delete', name, '--json');
    expect(deleted.code).toBe(0);
    expect(JSON.parse(deleted.stdout)).toEqual({ name, deleted: true });
    const gone = await schedule('trigger', name);
    expect(gone.code).toBe(3);
    expect(gone.stderr).toBe(`mlctl: no data check schedule "${name}" (data-check-${name})\n`);
    expect((await schedule('delete', name)).code).toBe(3);
  });
});
