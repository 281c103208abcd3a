import { rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidFileError } from '../../src/config/yaml-file';
import { columnsFromArrays, type CategoricalColumn, type NumericColumn } from '../../src/drift/columns';
import { readCsvColumns } from '../../src/drift/csv';
import { readJsonlColumns } from '../../src/drift/jsonl';
import { finiteValues } from '../../src/drift/kernels';
import { finishSort, sortedFinite, sortFloat64, SortScratch } from '../../src/drift/sort';
import { tempDir } from '../helpers/temp';

const dir = tempDir('drift-io-');
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
    await expect(readCsvColumns(file('a,a\n1,2\n'))).rejects.toThrow(
      /line 1, column 2 of the header: "a" appears twice \(first as column 1\)/,
    );
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

describe('sortedFinite', () => {
  const show = (values: Float64Array) => Array.from(values).map((v) => (Object.is(v, -0) ? '-0' : String(v)));
  let seed = 11;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const columns: Record<string, (n: number) => Float64Array> = {
    'full-precision doubles of both signs, with NaN and infinities': (n) =>
      Float64Array.from({ length: n }, (_, i) =>
        i % 13 === 0 ? NaN : i % 29 === 0 ? -Infinity : i % 31 === 0 ? Infinity : (rand() - 0.5) * 10 ** (rand() * 8),
      ),
    'integer counts with zeros (a wide key range, few keys)': (n) =>
      Float64Array.from({ length: n }, () => (rand() < 0.3 ? 0 : Math.floor(rand() * 100))),
    'values agreeing to 9 digits (sharing high words)': (n) =>
      Float64Array.from({ length: n }, () => 1 + rand() * 1e-9),
    'a few values agreeing to 12 digits': (n) =>
      Float64Array.from({ length: n }, () => 1 + Math.floor(rand() * 5) * 1e-12),
    'zeros of both signs and denormals': (n) =>
      Float64Array.from({ length: n }, (_, i) => [0, -0, 5e-324, -5e-324, 1e-310][i % 5]!),
  };
  it.each(Object.keys(columns))('sorts the finite values exactly as filtering then sorting: %s', (name) => {
    const scratch = new SortScratch();
    for (const n of [10, 5000, 70_000]) {
      const column = columns[name]!(n);
      const expected = show(column.filter((v) => Number.isFinite(v)).sort());
      expect(show(sortedFinite(column, { scratch }))).toEqual(expected);
      const shared = sortedFinite(column, { shared: true });
      expect(shared.buffer instanceof SharedArrayBuffer).toBe(true);
      expect(show(shared)).toEqual(expected);
      const into = new Float64Array(n + 3);
      expect(show(sortedFinite(column, { into, scratch }))).toEqual(expected);
      // Partial: ordered by high words only, until finishSort.
      const partial = sortedFinite(column, { scratch, partial: true });
      finishSort(partial);
      expect(show(partial)).toEqual(expected);
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

/** Deterministic uniform [0, 1). */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A CSV (CRLF) with a header `k,text,v` whose text fields are plain, empty, quoted with commas, LF/CRLF newlines,
 * escaped quotes, multibyte characters, or text after the closing quote; every 17th record has a field too many. Also
 * the lines where those malformed records start, counted as the file's lines.
 */
function awkwardCsv(seed: number, records: number): { content: string; malformedLines: number[] } {
  const r = rng(seed);
  const texts = [
    () => `plain${Math.floor(r() * 5)}`,
    () => '',
    () => '""',
    () => '"a, b, c"',
    () => '"two\nlines"',
    () => '"crlf\r\ninside, too"',
    () => '"say ""hi"""',
    () => '"città ""東京"" 🙂"',
    () => `"${'long, '.repeat(20 + Math.floor(r() * 40))}"`,
  ];
  const lines = ['k,text,v'];
  const malformedLines: number[] = [];
  let line = 2;
  for (let i = 0; i < records; i++) {
    const text = texts[Math.floor(r() * texts.length)]!();
    const extra = i % 17 === 5 ? ',extra' : '';
    if (extra) malformedLines.push(line);
    lines.push(`${i},${text},${(i * 0.25).toFixed(2)}${extra}`);
    line += 1 + (text.match(/\n/g)?.length ?? 0);
  }
  return { content: `${lines.join('\r\n')}\r\n`, malformedLines };
}

describe('readCsvColumns at chunk boundaries', () => {
  it('reads every record as csv-parse does, wherever a read ends inside it', async () => {
    for (const [records, sizes] of [
      [60, [1, 2, 3]],
      [400, [5, 8, 13, 64, 1000]],
    ] as const) {
      const { content, malformedLines } = awkwardCsv(records, records);
      await sameAsCsvParse(content, malformedLines, sizes);
    }
  });

  async function sameAsCsvParse(content: string, malformedLines: number[], sizes: readonly number[]) {
    const path = file(content);
    const theirs = (parseCsv(content, { relax_column_count: true }) as string[][])
      .slice(1)
      .filter((fields) => fields.length === 3);
    for (const chunkBytes of sizes) {
      const ours = await readCsvColumns(path, { chunkBytes, types: { text: 'categorical' } });
      expect(ours.rows).toBe(theirs.length);
      expect(decode(cat(ours.columns[1]))).toEqual(theirs.map((f) => (f[1] === '' ? null : f[1])));
      expect(Array.from(num(ours.columns[2]).values)).toEqual(theirs.map((f) => Number(f[2])));
      expect(ours.malformedRows).toBe(malformedLines.length);
      expect(ours.malformedExamples.map((m) => m.line)).toEqual(malformedLines.slice(0, 5));
    }
  }

  it('reads a quoted field of several MiB across many reads, with the lines after it counted', async () => {
    const value = `${'lorem, "ipsum"\ndolor 🙂 '.repeat(220_000)}end`;
    expect(value.length).toBeGreaterThan(5e6);
    const content = `id,text\n1,"${value.replace(/"/g, '""')}"\n2,x,too many\n3,y\n`;
    const data = await readCsvColumns(file(content));
    expect(data.rows).toBe(2);
    const text = cat(data.columns[1]);
    expect(text.dictionary[text.codes[0]!]).toBe(value);
    expect(decode(text)[1]).toBe('y');
    expect(data.malformedExamples).toEqual([
      { line: 2 + 220_000 + 1, fields: 3, problem: '3 fields where the header has 2' },
    ]);
  });

  it('keeps text after a closing quote in its field, with the fields of the record counted right', async () => {
    const data = await readCsvColumns(file('x,y\n"a"b,c\n"d"e\n"f"g,"h"\n'));
    expect(decode(cat(data.columns[0]))).toEqual(['a"b', 'f"g']);
    expect(decode(cat(data.columns[1]))).toEqual(['c', 'h']);
    expect(data.malformedExamples).toEqual([{ line: 3, fields: 1, problem: '1 fields where the header has 2' }]);
  });

  it('refuses a record longer than maxRecordBytes, naming its line, whether or not it fits one read', async () => {
    const content = `a,b\n1,2\n3,"${'x'.repeat(10_000)}"\n`;
    for (const chunkBytes of [1024, 1 << 20]) {
      await expect(readCsvColumns(file(content), { maxRecordBytes: 4096, chunkBytes })).rejects.toThrow(
        /line 3: a record longer than 4 KiB \(a quoted field never closed\?\)/,
      );
    }
    expect((await readCsvColumns(file(content), { maxRecordBytes: 16_384, chunkBytes: 1024 })).rows).toBe(2);
  });
});

describe('readCsvColumns and column names', () => {
  it('refuses a header whose names are not feature names, naming each column by its position', async () => {
    const err = await readCsvColumns(file('id,__proto__,pri\u0007ce,,id\n1,2,3,4,5\n')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidFileError);
    expect((err as InvalidFileError).problems).toEqual([
      'line 1, column 2 of the header: "__proto__" is not a valid feature name',
      'line 1, column 3 of the header: "pri\u0007ce" is not a valid feature name: 1 to 128 characters, no control characters, no space at either end',
      'line 1, column 4 of the header has no name (expected a feature name)',
      'line 1, column 5 of the header: "id" appears twice (first as column 1)',
    ]);
  });

  it('lists ten problems of a header with thousands of bad names, and counts the rest', async () => {
    const names = Array.from({ length: 5000 }, (_, i) => `bad?${'x'.repeat(200)}${i}`);
    const err = (await readCsvColumns(file(`${names.join(',')}\n`)).catch((e: unknown) => e)) as InvalidFileError;
    expect(err.problems).toHaveLength(11);
    expect(err.problems[10]).toBe('… and 4990 more');
    expect(err.message.length).toBeLessThan(3000);
  });

  it('reads columns named like Object.prototype members as any others', async () => {
    const content = 'a,constructor,toString,hasOwnProperty,valueOf\n1,__proto__,x,y,z\n2,constructor,x,y,z\n';
    const data = await readCsvColumns(file(content), { types: { a: 'numeric' }, onlyTyped: true });
    expect(data.columns.map((c) => c.name)).toEqual(['a']);
    expect(data.ignoredColumns).toEqual(['constructor', 'toString', 'hasOwnProperty', 'valueOf']);
    const all = await readCsvColumns(file(content));
    expect(all.columns.map((c) => `${c.name}:${c.type}`)).toEqual([
      'a:numeric',
      'constructor:categorical',
      'toString:categorical',
      'hasOwnProperty:categorical',
      'valueOf:categorical',
    ]);
    expect(decode(cat(all.columns[1]))).toEqual(['__proto__', 'constructor']);
  });

  it('cuts a wrong-type example to 80 characters and keeps its length', async () => {
    const huge = 'x'.repeat(3_000_000);
    const data = await readCsvColumns(file(`a\n1\n${huge}\n2\n`), { types: { a: 'numeric' } });
    const [example] = num(data.columns[0]).issues.wrongTypeExamples;
    expect(example).toEqual({ row: 2, line: 3, value: `${'x'.repeat(79)}…`, length: 3_000_000 });
  });
});

describe('readJsonlColumns, bounded', () => {
  it('reads lines wherever a read ends: CRLF, a BOM, multibyte text, blank lines', async () => {
    const objects = Array.from({ length: 120 }, (_, i) => ({
      i,
      text: i % 3 === 0 ? `città 東京 🙂 ${i}` : `plain ${i % 7}`,
      v: i % 11 === 0 ? null : i / 4,
    }));
    const content = `\ufeff${objects.map((o, i) => JSON.stringify(o) + (i % 5 === 0 ? '\r\n\r\n' : '\n')).join('')}`;
    for (const chunkBytes of [1, 3, 7, 64, 1 << 20]) {
      const data = await readJsonlColumns(file(content, 'jsonl'), { chunkBytes });
      expect(data.malformedRows).toBe(0);
      expect(data.rows).toBe(120);
      expect(decode(cat(data.columns.find((c) => c.name === 'text')))).toEqual(objects.map((o) => o.text));
      const v = num(data.columns.find((c) => c.name === 'v'));
      expect(Array.from(v.values).map((x) => (Number.isNaN(x) ? null : x))).toEqual(objects.map((o) => o.v));
    }
  });

  it('refuses a line longer than maxRecordBytes, naming it, whether or not it fits one read', async () => {
    const content = `{"a":1}\n{"a":2}\n{"a":"${'x'.repeat(10_000)}"}\n{"a":4}\n`;
    for (const chunkBytes of [1000, 1 << 20]) {
      await expect(readJsonlColumns(file(content, 'jsonl'), { maxRecordBytes: 4096, chunkBytes })).rejects.toThrow(
        /line 3: longer than 4 KiB \(one JSON object per line\)/,
      );
    }
    expect((await readJsonlColumns(file(content, 'jsonl'), { maxRecordBytes: 16_384 })).rows).toBe(4);
  });

  it('stops at the default cap instead of buffering a 1 GB line', async () => {
    const path = file('{"a":1}\n{"a":"', 'jsonl');
    truncateSync(path, 1 << 30); // sparse: a 1 GiB line of NUL bytes that takes no disk
    await expect(readJsonlColumns(path)).rejects.toThrow(/line 2: longer than 64 MiB/);
  });

  it('names the line of text that is not JSON without quoting it', async () => {
    const secret = `{"a": "SECRET${'x'.repeat(3_000_000)}`;
    const data = await readJsonlColumns(file(`{"a":1}\n${secret}\n[1]\n"s"\nnull\n`, 'jsonl'));
    expect(data.malformedExamples).toEqual([
      { line: 2, fields: 0, problem: 'not valid JSON' },
      { line: 3, fields: 0, problem: 'an array, not a JSON object' },
      { line: 4, fields: 0, problem: 'a string, not a JSON object' },
      { line: 5, fields: 0, problem: 'null, not a JSON object' },
    ]);
  });

  it('refuses a key that is not a feature name, naming its line', async () => {
    await expect(readJsonlColumns(file('{"a":1}\n{"a":2}\n{"__proto__":{"x":1}}\n', 'jsonl'))).rejects.toThrow(
      /line 3: "__proto__" is not a valid feature name \(every key of an object names a column\)/,
    );
    await expect(
      readJsonlColumns(file('{"a":1}\n{"a":2," b":1}\n', 'jsonl'), { types: { a: 'numeric' }, onlyTyped: true }),
    ).rejects.toThrow(/line 2: " b" is not a valid feature name: 1 to 128 characters/);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('reads keys named like Object.prototype members, missing where a line lacks them', async () => {
    const content = [
      '{"constructor": "__proto__", "toString": 1, "valueOf": "a"}',
      '{"toString": 2}',
      '{"constructor": "toString", "hasOwnProperty": "x"}',
    ].join('\n');
    for (const inferRows of [1, 10]) {
      const data = await readJsonlColumns(file(content, 'jsonl'), { inferRows });
      const byName = new Map(data.columns.map((c) => [c.name, c]));
      const ctor = cat(byName.get('constructor'));
      expect(decode(ctor)).toEqual(['__proto__', null, 'toString']);
      expect(ctor.issues).toMatchObject({ missing: 1, wrongType: 0 });
      const ts = num(byName.get('toString'));
      expect(Array.from(ts.values).map(String)).toEqual(['1', '2', 'NaN']);
      expect(ts.issues).toMatchObject({ missing: 1, wrongType: 0 });
      if (inferRows === 10) expect(decode(cat(byName.get('hasOwnProperty')))).toEqual([null, null, 'x']);
    }
  });
});
