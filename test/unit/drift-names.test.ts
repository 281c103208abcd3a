import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkData, loadReference, type CategoricalProfile, type DriftReport } from '../../src/drift';
import { tempDir } from '../helpers/temp';

/**
 * Column names and category values are the caller's: names that Object.prototype has (`constructor`, `toString`,
 * `hasOwnProperty`, `valueOf`) and the value `__proto__` are data like any other, read from CSV and JSON Lines alike.
 */
const dir = tempDir('drift-names-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
function file(content: string, ext: string): string {
  const path = join(dir, `f${fileNo++}.${ext}`);
  writeFileSync(path, content);
  return path;
}

const NAMES = ['constructor', 'toString', 'hasOwnProperty', 'valueOf'] as const;
const VALUES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];

/**
 * Rows with the four hostile column names: three categorical (values from VALUES), `valueOf` numeric; every 40th row
 * lacks `hasOwnProperty` and `valueOf` (an absent key in JSON, an empty cell in CSV).
 */
function table(n: number, shift: number): Record<string, string | number>[] {
  return Array.from({ length: n }, (_, i) => ({
    constructor: VALUES[(i + shift) % 4]!,
    toString: VALUES[(i * 3) % 4]!,
    ...(i % 40 === 39 ? {} : { hasOwnProperty: VALUES[i % 2]!, valueOf: (i % 50) + shift * 10 }),
  }));
}
const asCsv = (rows: Record<string, string | number>[]) =>
  `${NAMES.join(',')}\n${rows.map((r) => NAMES.map((k) => (Object.hasOwn(r, k) ? r[k] : '')).join(',')).join('\n')}\n`;
const asJsonl = (rows: Record<string, string | number>[]) => `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`;

/** Keys holding null (NaN in JSON) in the report, features skipped on purpose left out. */
function nulls(report: DriftReport): string[] {
  const found: string[] = [];
  const compared = { ...report, features: report.features.filter((f) => !f.skipped) };
  JSON.stringify(compared, (key, value: unknown) => {
    if (value === null) found.push(key);
    return value;
  });
  return found;
}

describe('columns and categories named like Object.prototype members', () => {
  for (const [format, write] of [
    ['csv', asCsv],
    ['jsonl', asJsonl],
  ] as const) {
    it(`profile and compare correctly from ${format}`, async () => {
      const reference = await loadReference(file(write(table(400, 0)), format));
      const profile = reference.profile;
      expect(profile.features.map((f) => `${f.name}:${f.type}`)).toEqual([
        'constructor:categorical',
        'toString:categorical',
        'hasOwnProperty:categorical',
        'valueOf:numeric',
      ]);
      const ctor = profile.features[0] as CategoricalProfile;
      expect(ctor.domain.map((d) => [d.value, d.count]).sort()).toEqual(VALUES.map((v) => [v, 100]).sort());
      expect(ctor).toMatchObject({ count: 400, missing: 0, wrongType: 0, otherCount: 0 });
      expect(profile.features[2]).toMatchObject({ count: 390, missing: 10, wrongType: 0 });
      expect((profile.features[2] as CategoricalProfile).domain).toHaveLength(2);
      expect(profile.features[3]).toMatchObject({ count: 390, missing: 10, wrongType: 0, min: 0, max: 49 });

      // Built from entries: in an object literal TypeScript types a `constructor` key as the class member.
      const features = Object.fromEntries([
        ['constructor', { method: 'psi' as const }],
        ['toString', { skip: true }],
      ]);
      const same = await checkData(reference, file(write(table(400, 0)), format), { features });
      expect(same.ok).toBe(true);
      expect(same.problems).toEqual([]);
      const byName = new Map(same.features.map((f) => [f.name, f]));
      expect(byName.get('constructor')).toMatchObject({ method: 'psi', statistic: 0, drifted: false });
      expect(byName.get('toString')).toMatchObject({ method: 'none', skipped: 'skipped by the options' });
      expect(byName.get('hasOwnProperty')).toMatchObject({ method: 'chisquare', currentSize: 390, drifted: false });
      expect(byName.get('valueOf')).toMatchObject({ method: 'ks', currentSize: 390, drifted: false });
      expect(nulls(same)).toEqual([]);

      const shifted = await checkData(reference, file(write(table(400, 1)), format));
      expect(shifted.features.filter((f) => f.drifted).map((f) => f.name)).toEqual(['valueOf']);
      expect(nulls(shifted)).toEqual([]);
      expect(Object.keys(Object.prototype)).toEqual([]);
    });
  }
});
