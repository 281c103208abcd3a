import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dataCheckObservations } from '../../src/domain/data-check';
import {
  buildProfile,
  checkData,
  columnsFromArrays,
  compareData,
  loadProfile,
  loadReference,
  saveProfile,
  type DriftReport,
  type Reference,
} from '../../src/drift';
import { DriftOptions, issueText } from '../../src/shared/drift';
import { DataCheckInput } from '../../src/shared/data-check';
import { tempDir } from '../helpers/temp';

/**
 * A data batch is hostile input: whatever it holds, a check's report (an activity result, then workflow history and
 * alerts) stays small, quotes no cell whole and names the line of what it could not read.
 */
const dir = tempDir('drift-bounds-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
function file(content: string, ext = 'csv'): string {
  const path = join(dir, `f${fileNo++}.${ext}`);
  writeFileSync(path, content);
  return path;
}

const HUGE = 3_000_000;
const rows = (n: number, row: (i: number) => string) => Array.from({ length: n }, (_, i) => row(i)).join('\n');

async function reference(): Promise<Reference> {
  return loadReference(file(`amount,plan\n${rows(200, (i) => `${(i % 37) + 0.5},${['basic', 'pro'][i % 2]}`)}\n`));
}

const size = (r: DriftReport) => JSON.stringify(r).length;

describe('reports of hostile batches stay small', () => {
  it('a CSV whose numeric column holds one 3 MB string', async () => {
    const batch = file(
      `amount,plan\n${rows(50, (i) => `${i % 30},basic`)}\n${'9'.repeat(10)}x${'y'.repeat(HUGE)},pro\n`,
    );
    const report = await checkData(await reference(), batch);
    expect(size(report)).toBeLessThan(20_000);
    const wrong = report.problems.find((p) => p.kind === 'wrong-type')!;
    expect(wrong.message).toMatch(/^amount: 1 value\(s\) that are not numbers, e\.g\. "9{10}xy+…" \(3000011 chars\)$/);
    expect(wrong.examples).toEqual([
      { row: 51, line: 52, value: `${'9'.repeat(10)}x${'y'.repeat(68)}…`, length: 3_000_011 },
    ]);
  });

  it('a CSV with a 3 MB category the reference never had', async () => {
    const batch = file(`amount,plan\n${rows(50, (i) => `${i % 30},basic`)}\n3,${'z'.repeat(HUGE)}\n`);
    const report = await checkData(await reference(), batch);
    expect(size(report)).toBeLessThan(20_000);
    const plan = report.features.find((f) => f.name === 'plan')!;
    expect(plan.unseen).toEqual([{ value: `${'z'.repeat(79)}…`, count: 1, length: HUGE }]);
    expect(plan.moved.map((m) => m.what)).toContain(`(unseen) ${'z'.repeat(79)}… (${HUGE} chars)`);
    expect(report.problems.find((p) => p.kind === 'out-of-domain')!.message).toMatch(/"z+…" \(3000000 chars\) ×1$/);
  });

  it('a JSONL batch with a huge line that is not JSON, and a 3 MB string in a numeric key', async () => {
    const good = rows(50, (i) => JSON.stringify({ amount: i % 30, plan: 'basic' }));
    const batch = file(
      `${good}\n{"amount": 1, "plan": "SECRET${'s'.repeat(HUGE)}\n{"amount": "${'7'.repeat(HUGE)}!", "plan": "pro"}\n`,
      'jsonl',
    );
    const report = await checkData(await reference(), batch);
    expect(size(report)).toBeLessThan(20_000);
    expect(JSON.stringify(report)).not.toContain('SECRET');
    expect(report.problems.find((p) => p.kind === 'malformed-rows')!.message).toBe(
      '1 malformed row(s) skipped, e.g. line 51: not valid JSON',
    );
    expect(report.problems.find((p) => p.kind === 'wrong-type')!.message).toMatch(/"\\"7+…" \(3000003 chars\)$/);
  });

  it('a batch with thousands of new columns names twenty and counts the rest', async () => {
    const extra = Array.from({ length: 5000 }, (_, i) => `extra_column_${i}_${'w'.repeat(100)}`);
    const batch = file(`amount,plan,${extra.join(',')}\n1,basic,${extra.map(() => '1').join(',')}\n`);
    const report = await checkData(await reference(), batch);
    expect(size(report)).toBeLessThan(20_000);
    const added = report.problems.filter((p) => p.kind === 'new-column');
    expect(added).toHaveLength(21);
    expect(added[20]).toEqual({
      kind: 'new-column',
      count: 4980,
      message: '4980 more column(s) the reference does not have (5000 in all)',
    });
  });

  it('the data-check observations of such reports stay small', async () => {
    const batch = file(`amount,plan\n${rows(50, (i) => `${i % 30},basic`)}\n${'y'.repeat(HUGE)},${'z'.repeat(HUGE)}\n`);
    const report = await checkData(await reference(), batch);
    const settings = DataCheckInput.parse({ name: 'etl', reference: 'r.json', current: 'b.csv' });
    const observations = dataCheckObservations({ settings, current: 'b.csv', report, at: '2025-01-01T00:00:00Z' });
    expect(JSON.stringify(observations).length).toBeLessThan(20_000);
    const unread = dataCheckObservations({
      settings,
      current: 'b.csv',
      report: null,
      readError: 'e'.repeat(HUGE),
      at: 'x',
    });
    expect(JSON.stringify(unread).length).toBeLessThan(20_000);
  });
});

describe('profiles are never half written', () => {
  it('a save that fails leaves no file behind and the earlier profile as it was', async () => {
    const out = mkdtempSync(join(dir, 'profile-'));
    const target = join(out, 'profile.json');
    const first = await buildProfile(columnsFromArrays({ x: Float64Array.of(1, 2, 3), c: ['a', 'b', 'a'] }));
    await saveProfile(first, target);
    const before = new Map(readdirSync(out).map((f) => [f, readFileSync(join(out, f))]));
    expect([...before.keys()].sort()).toEqual(['profile.json', 'profile.values.f64']);

    const second = await buildProfile(columnsFromArrays({ x: Float64Array.of(7, 8, 9, 10), c: ['z', 'z', 'y', 'y'] }));
    // A value JSON cannot hold: the profile's JSON fails after its values were written.
    (second.profile as unknown as { createdAt: unknown }).createdAt = 1n;
    await expect(saveProfile(second, target)).rejects.toThrow(TypeError);
    expect(readdirSync(out).sort()).toEqual(['profile.json', 'profile.values.f64']);
    for (const [f, bytes] of before) expect(readFileSync(join(out, f)).equals(bytes)).toBe(true);
    const kept = await loadProfile(target);
    expect(Array.from(kept.sorted.get('x')!)).toEqual([1, 2, 3]);
  });

  it('a profile that is not JSON is refused without quoting it', async () => {
    const bad = file(`{"format": "ml-lifecycle/data-profile@1", "SECRET": ${'x'.repeat(1000)}`, 'json');
    const err = (await loadProfile(bad).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/invalid data profile:\n\s+- not valid JSON \(expected a profile written by/);
    expect(err.message).not.toContain('SECRET');
  });
});

describe('drift options name features as the readers do', () => {
  it('are refused at the edge when an override is keyed by something that is not a feature name', () => {
    const parsed = DriftOptions.safeParse({ features: { 'a\tb': { skip: true } } });
    expect(parsed.success).toBe(false);
    expect(issueText(parsed.error!.issues[0]!)).toBe(
      'features.a\tb: a feature name: 1 to 128 characters, no control characters, no space at either end',
    );
    const proto = DriftOptions.safeParse(JSON.parse('{"features": {"__proto__": {"skip": true}}}'));
    expect(proto.success).toBe(false);
  });

  it('apply to any name a profile holds, as one saved before names were checked', async () => {
    const ref = await buildProfile(columnsFromArrays({ 'Age [y]': [1, 2, 3], b: [1, 2, 3] }));
    const report = await compareData(ref, columnsFromArrays({ 'Age [y]': [1, 2, 3], b: [1, 2, 3] }), {
      features: { 'Age [y]': { skip: true } },
    });
    expect(report.features[0]).toMatchObject({ name: 'Age [y]', skipped: 'skipped by the options' });
    await expect(
      compareData(ref, columnsFromArrays({ b: [1] }), { features: { ['x'.repeat(1000)]: {} } }),
    ).rejects.toThrow(/^features\.x{79}…: the reference has no column "x{79}…" \(1000 chars\)$/);
  });
});
