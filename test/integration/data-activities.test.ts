import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { createDataActivities, type CheckDataInput } from '../../src/activities/data';
import type { DriftReport } from '../../src/drift';
import { ErrorType } from '../../src/shared/errors';
import { EXAMPLE, ROOT } from '../helpers/harness';
import { tempDir } from '../helpers/temp';

/** The data activities as a worker runs them: real files, the activity context of the SDK's test environment. */
describe('data activities', () => {
  const activities = createDataActivities({ root: ROOT });
  const env = new MockActivityEnvironment();
  const dir = tempDir('data-activities-');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('profiles a data set, then checks batches against the profile or a folder holding it', async () => {
    const out = join(dir, 'profile.json');
    const profiled = await env.run(activities.profileData, {
      data: join(EXAMPLE, 'data', 'train.csv'),
      out,
      label: 'churned',
    });
    expect(profiled).toEqual({ rows: 4800, features: 8, out });
    expect(existsSync(join(dir, 'profile.values.f64'))).toBe(true);

    const clean = await env.run(activities.checkData, { reference: dir, current: join(EXAMPLE, 'data', 'test.csv') });
    expect(clean).toMatchObject({ ok: true, datasetDrift: false, comparedFeatures: 6 });

    const [header, ...rows] = readFileSync(join(EXAMPLE, 'data', 'test.csv'), 'utf8')
      .trim()
      .split('\n');
    const at = header!.split(',').indexOf('tenure_months');
    const batch = join(dir, 'batch.csv');
    writeFileSync(
      batch,
      `${header}\n${rows
        .map((line) => {
          const cells = line.split(',');
          cells[at] = String(Number(cells[at]) + 24);
          return cells.join(',');
        })
        .join('\n')}\n`,
    );
    const input: CheckDataInput = {
      reference: out,
      current: batch,
      options: { features: { tenure_months: { direction: 'increase' } } },
    };
    const drifted: DriftReport = await env.run(activities.checkData, input);
    expect(drifted.ok).toBe(false);
    expect(drifted.features.find((f) => f.name === 'tenure_months')).toMatchObject({
      drifted: true,
      direction: 'increase',
    });
  });

  it('fails without retries, naming the problem, on unreadable data or bad options', async () => {
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, 'a,b\n"x,1\n');
    const failure = await env
      .run(activities.checkData, { reference: join(EXAMPLE, 'data', 'train.csv'), current: bad })
      .catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: ErrorType.DataInvalid, nonRetryable: true });
    expect((failure as Error).message).toMatch(
      /bad\.csv: invalid CSV data:\n\s+- line 2: a quoted field is never closed/,
    );

    const options = await env
      .run(activities.checkData, {
        reference: join(EXAMPLE, 'data', 'train.csv'),
        current: join(EXAMPLE, 'data', 'test.csv'),
        options: { features: { region: { direction: 'increase' } } },
      } satisfies CheckDataInput)
      .catch((err: unknown) => err);
    expect(options).toMatchObject({ type: ErrorType.DataInvalid, nonRetryable: true });
    expect((options as Error).message).toBe('features.region.direction: a direction applies to numeric features only');
  });

  it('refuses a header that is not feature names without retries, naming the column, and writes nothing', async () => {
    const data = join(dir, 'proto.csv');
    writeFileSync(data, 'age,__proto__\n1,2\n');
    const out = join(dir, 'never', 'profile.json');
    const failure = await env.run(activities.profileData, { data, out }).catch((err: unknown) => err);
    expect(failure).toMatchObject({ type: ErrorType.DataInvalid, nonRetryable: true });
    expect((failure as Error).message).toMatch(
      /proto\.csv: invalid CSV data:\n\s+- line 1, column 2 of the header: "__proto__" is not a valid feature name/,
    );
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });

  it('answers a batch holding a 3 MB cell with a small report', async () => {
    const [header, ...rows] = readFileSync(join(EXAMPLE, 'data', 'test.csv'), 'utf8')
      .trim()
      .split('\n');
    const at = header!.split(',').indexOf('tenure_months');
    const cells = rows[0]!.split(',');
    cells[at] = 'x'.repeat(3_000_000);
    const batch = join(dir, 'huge-cell.csv');
    writeFileSync(batch, `${header}\n${[cells.join(','), ...rows.slice(1)].join('\n')}\n`);
    const report: DriftReport = await env.run(activities.checkData, {
      reference: join(EXAMPLE, 'data', 'train.csv'),
      current: batch,
    });
    expect(JSON.stringify(report).length).toBeLessThan(20_000);
    expect(report.problems.find((p) => p.kind === 'wrong-type')).toMatchObject({
      feature: 'tenure_months',
      count: 1,
      examples: [{ row: 1, line: 2, value: `${'x'.repeat(79)}…`, length: 3_000_000 }],
    });
  });
});
