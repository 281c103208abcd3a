import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidFileError } from '../../src/config/yaml-file';
import { columnsFromArrays, type CategoricalColumn, type NumericColumn } from '../../src/drift/columns';
import { readCsvColumns } from '../../src/drift/csv';
import { readJsonlColumns } from '../../src/drift/jsonl';
import { finiteValues } from '../../src/drift/kernels';
import { sortFloat64 } from '../../src/drift/sort';

const dir = mkdtempSync(join(tmpdir(), 'drift-io-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
function file(content: string | Buffer, ext = 'csv'): string {
  const path = join(dir, `f${fileNo++}.${ext}`);
  writeFileSync(path, content);
  return path;
}
const num = (c: unknown) => c as NumericColumn;
const cat = (c: unknown) => c as CategoricalColumn;
const decode = (c: CategoricalColumn) => Array.from(c.codes, (k) => (k < 0 ? null : c.dictionary[k]));

describe('readCsvColumns', () => {
  it('reads quoted fields with commas, newlines and escaped quotes, CRLF, a BOM and blank lines', async () => {
    const path = file('\ufeffid,name,score\r\n1,"Smith, J",1.5\r\n\r\n2,"say ""hi""",-2\n3,"two\nlines",.25\n');
    const data = await readCsvColumns(path);
    expect(data.rows).toBe(3);
    expect(data.columns.map((c) => `${c.name}:${c.type}`)).toEqual(['id:numeric', 'name:categorical', 'score:numeric']);
    expect(decode(cat(data.columns[1]))).toEqual(['Smith, J', 'say "hi"', 'two\nlines']);
    expect(Array.from(num(data.columns[2]).values)).toEqual([1.5, -2, 0.25]);
    expect(data.malformedRows).toBe(0);
  });

  it('parses every decimal exactly as Number does (fast path and fallback)', async () => {
    const texts: string[] = [];
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 5000; i++) {
      const digits = 1 + Math.floor(rand() * 18);
      const frac = Math.floor(rand() * Math.min(digits, 20));
      let t = '';
      for (let d = 0; d < digits; d++) t += Math.floor(rand() * 10);
      if (frac > 0) t = `${t.slice(0, digits - frac) || '0'}.${t.slice(digits - frac)}`;
      if (rand() < 0.3) t = `-${t}`;
      if (rand() < 0.1) t += `e${Math.floor(rand() * 40) - 20}`;
      texts.push(t);
    }
    texts.push('1e308', '4.9e-324', '0.1', '-0', '123456789012345678901234567890', '0.30000000000000004');
    const data = await readCsvColumns(file(`x\n${texts.join('\n')}\n`));
    const values = num(data.columns[0]).values;
    texts.forEach((t, i) => expect(Object.is(values[i], Number(t)) || values[i] === Number(t)).toBe(true));
  });

  it('counts missing, NaN, infinities and wrong types, with the lines of the wrong ones', async () => {
    const data = await readCsvColumns(file('a,b\n1,x\n,y\nNA,\nnan,z\ninf,x\n-Infinity,x\nabc,x\n0x10,x\n'), {
      types: { a: 'numeric' },
    });
    const a = num(data.columns[0]);
    expect(a.type).toBe('numeric');
    expect(a.issues).toMatchObject({ missing: 2, nan: 1, posInf: 1, negInf: 1, wrongType: 2 });
    expect(a.issues.wrongTypeExamples).toEqual([
      { row: 7, line: 8, value: 'abc' },
      { row: 8, line: 9, value: '0x10' },
    ]);
    expect(Array.from(a.values).map(String)).toEqual(['1', 'NaN', 'NaN', 'NaN', 'Infinity', '-Infinity', 'NaN', 'NaN']);
    const b = cat(data.columns[1]);
    expect(b.issues.missing).toBe(1);
  });

  it('infers types from the first rows only; later text in a numeric column is a wrong type', async () => {
    const data = await readCsvColumns(file('a\n1\n2\n3\nfour\n'), { inferRows: 2 });
    expect(data.columns[0]!.type).toBe('numeric');
    expect(num(data.columns[0]).issues.wrongType).toBe(1);
  });

  it('follows the given types and reads only them when asked', async () => {
    const data = await readCsvColumns(file('zip,amount,extra\n01234,5,q\n'), {
      types: { zip: 'categorical', amount: 'numeric' },
      onlyTyped: true,
    });
    expect(data.columns.map((c) => c.name)).toEqual(['zip', 'amount']);
    expect(decode(cat(data.columns[0]))).toEqual(['01234']);
    expect(data.ignoredColumns).toEqual(['extra']);
  });

  it('skips and reports rows with the wrong number of fields', async () => {
    const data = await readCsvColumns(file('a,b\n1,2\n3\n4,5,6\n7,8\n'));
    expect(data.rows).toBe(2);
    expect(data.malformedRows).toBe(2);
    expect(data.malformedExamples).toEqual([
      { line: 3, fields: 1, problem: '1 fields where the header has 2' },
      { line: 4, fields: 3, problem: '3 fields where the header has 2' },
    ]);
  });

  it('fails with the line of an unterminated quote, an empty file and a bad header', async () => {
    await expect(readCsvColumns(file('a,b\n1,2\n3,"open\n4,5\n'))).rejects.toThrow(
      /line 3: a quoted field is never closed/,
    );
    await expect(readCsvColumns(file(''))).rejects.toThrow(/no header line/);
    await expect(readCsvColumns(file('a,a\n1,2\n'))).rejects.toThrow(/column "a" appears twice/);
    await expect(readCsvColumns(join(dir, 'absent.csv'))).rejects.toBeInstanceOf(InvalidFileError);
  });

  it('reads records across chunk boundaries the same as csv-parse', async () => {
    const lines = ['k,text,v'];
    for (let i = 0; i < 60_000; i++) {
      const text = i % 7 === 0 ? `"multi\nline ""${i}"", with comma"` : `plain${i % 13}`;
      lines.push(`${i},${text},${(i * 0.37).toFixed(3)}`);
    }
    const content = `${lines.join('\r\n')}\r\n`;
    expect(content.length).toBeGreaterThan(1 << 20); // more than one read chunk
    const path = file(content);
    const ours = await readCsvColumns(path);
    const theirs = parseCsv(content, { columns: true }) as Record<string, string>[];
    expect(ours.rows).toBe(theirs.length);
    expect(decode(cat(ours.columns[1]))).toEqual(theirs.map((r) => r.text));
    expect(Array.from(num(ours.columns[2]).values)).toEqual(theirs.map((r) => Number(r.v)));
  });

  it('codes categories by their bytes: multibyte text, hash collisions, thousands of distinct values', async () => {
    const values: string[] = [];
    for (let i = 0; i < 30_000; i++) {
      values.push(i % 3 === 0 ? `città-${i % 7}` : i % 3 === 1 ? `東京${i % 11}` : `id-${i}`);
    }
    const path = file(`v\n${values.join('\n')}\n`);
    const ours = await readCsvColumns(path);
    const column = cat(ours.columns[0]);
    expect(decode(column)).toEqual(values);
    expect(new Set(column.dictionary).size).toBe(column.dictionary.length);
  });
});

describe('readJsonlColumns', () => {
  it('reads objects line by line: numbers, strings, null, wrong types, bad lines and new keys', async () => {
    const path = file(
      [
        '{"a": 1, "b": "x"}',
        '{"a": null, "b": "y"}',
        'not json',
        '[1,2]',
        '{"a": "3", "b": true}',
        '{"a": 4, "b": {"nested": 1}, "c": 1}',
        '',
      ].join('\n'),
      'jsonl',
    );
    const data = await readJsonlColumns(path, { inferRows: 2 });
    expect(data.rows).toBe(4);
    const a = num(data.columns.find((c) => c.name === 'a'));
    expect(a.type).toBe('numeric');
    expect(Array.from(a.values).map(String)).toEqual(['1', 'NaN', 'NaN', '4']);
    expect(a.issues).toMatchObject({ missing: 1, wrongType: 1 });
    expect(a.issues.wrongTypeExamples[0]).toEqual({ row: 3, line: 5, value: '"3"' });
    const b = cat(data.columns.find((c) => c.name === 'b'));
    expect(decode(b)).toEqual(['x', 'y', 'true', null]);
    expect(b.issues.wrongType).toBe(1);
    expect(data.malformedRows).toBe(2);
    expect(data.malformedExamples.map((m) => m.line)).toEqual([3, 4]);
    expect(data.ignoredColumns).toEqual(['c']);
  });
});

describe('columnsFromArrays', () => {
  it('takes typed arrays and number arrays as numeric, string arrays as categorical', () => {
    const data = columnsFromArrays({ x: Float64Array.of(1, NaN, Infinity), y: [1, null, 3], z: ['a', null, 'a'] });
    expect(data.columns.map((c) => c.type)).toEqual(['numeric', 'numeric', 'categorical']);
    expect(num(data.columns[0]).issues).toMatchObject({ nan: 1, posInf: 1 });
    expect(num(data.columns[1]).issues.missing).toBe(1);
    expect(cat(data.columns[2]).dictionary).toEqual(['a']);
    expect(() => columnsFromArrays({ a: [1, 2], b: [1] })).toThrow(/column "b" has 1 values, the first column has 2/);
  });
});

describe('sortFloat64', () => {
  const check = (values: Float64Array) => {
    const expected = values.slice().sort();
    const sorted = sortFloat64(values.slice());
    expect(Array.from(sorted).map((v) => (Object.is(v, -0) ? '-0' : String(v)))).toEqual(
      Array.from(expected).map((v) => (Object.is(v, -0) ? '-0' : String(v))),
    );
  };
  it('sorts like the comparison sort: negatives, zeros of both signs, infinities, ties, denormals', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const specials = [0, -0, Infinity, -Infinity, 5e-324, -5e-324, Number.MAX_VALUE, -Number.MAX_VALUE];
    for (const n of [10, 4095, 4096, 50_000]) {
      check(
        Float64Array.from({ length: n }, (_, i) =>
          i % 17 === 0 ? specials[i % 8]! : (rand() - 0.5) * 10 ** (rand() * 20 - 10),
        ),
      );
      check(Float64Array.from({ length: n }, () => Math.floor(rand() * 30) - 15));
      check(Float64Array.from({ length: n }, () => Math.round(rand() * 1e4) / 100));
      check(new Float64Array(n).fill(3.5));
    }
  });
});

describe('finiteValues', () => {
  it('copies the finite values in order, block by block, onto shared memory when asked', () => {
    const values = Float64Array.from({ length: 10_000 }, (_, i) =>
      i % 13 === 0 ? NaN : i % 29 === 0 ? -Infinity : i * 0.5,
    );
    const expected = Array.from(values).filter((v) => Number.isFinite(v));
    for (const shared of [false, true]) {
      const out = finiteValues(values, shared);
      expect(out.buffer instanceof SharedArrayBuffer).toBe(shared);
      expect(Array.from(out)).toEqual(expected);
    }
    expect(Array.from(finiteValues(Float64Array.of(NaN, 1, 2, NaN, NaN, 3, Infinity), false))).toEqual([1, 2, 3]);
    expect(Array.from(finiteValues(Float64Array.of(4, 5), false))).toEqual([4, 5]);
  });
});
