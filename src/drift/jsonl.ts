import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { InvalidFileError } from '../config/yaml-file';
import {
  builderFor,
  MAX_EXAMPLES,
  NumericBuilder,
  type ColumnarData,
  type ColumnBuilder,
  type ColumnType,
  type MalformedRow,
} from './columns';
import type { ReadOptions } from './csv';

type Cell = unknown;

/** The type of a column from sampled JSON values: numeric when every non-null value is a number. */
function inferJsonType(values: readonly Cell[]): ColumnType {
  let numbers = 0;
  for (const v of values) {
    if (v === null || v === undefined) continue;
    if (typeof v === 'number') numbers++;
    else return 'categorical';
  }
  return numbers > 0 ? 'numeric' : 'categorical';
}

function store(b: ColumnBuilder, row: number, v: Cell, line: number): void {
  if (v === null || v === undefined) {
    b.missing(row);
    return;
  }
  if (b instanceof NumericBuilder) {
    if (typeof v === 'number') b.setNumber(row, v);
    else b.wrongType(row, JSON.stringify(v), line);
    return;
  }
  if (typeof v === 'string') b.setText(row, v);
  else if (typeof v === 'number' || typeof v === 'boolean') b.setText(row, String(v));
  else b.wrongType(row, JSON.stringify(v), line);
}

/**
 * Reads a JSON Lines file (one object per line) into typed columns, line by line. Columns are the keys of the first
 * `inferRows` objects (or those named in `types`); a later key not among them is reported in `ignoredColumns`. A line
 * that is not a JSON object is skipped and reported as malformed.
 */
export async function readJsonlColumns(path: string, options: ReadOptions = {}): Promise<ColumnarData> {
  const inferRows = options.inferRows ?? 10_000;
  let bytes: number;
  try {
    bytes = (await stat(path)).size;
  } catch (err) {
    throw new InvalidFileError(path, 'JSONL data', [
      `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    ]);
  }
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let pending: Record<string, Cell>[] | null = [];
  let pendingLines: number[] = [];
  let names: string[] = [];
  let known = new Set<string>();
  let builders: (ColumnBuilder | null)[] = [];
  const ignored = new Set<string>();
  let rows = 0;
  let line = 0;
  let malformed = 0;
  const malformedExamples: MalformedRow[] = [];

  const setup = () => {
    const seen = new Set<string>(Object.keys(options.types ?? {}));
    if (!options.onlyTyped) for (const o of pending!) for (const k of Object.keys(o)) seen.add(k);
    names = [...seen];
    known = seen;
    builders = names.map((name) =>
      builderFor(name, options.types?.[name] ?? inferJsonType(pending!.map((o) => o[name])), pending!.length + 1024),
    );
    pending!.forEach((o, r) => {
      builders.forEach((b, i) => store(b!, r, o[names[i]!], pendingLines[r]!));
      for (const k of Object.keys(o)) if (!seen.has(k)) ignored.add(k);
    });
    pending = null;
    pendingLines = [];
  };

  for await (const text of lines) {
    line++;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      value = err;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Error) {
      malformed++;
      if (malformedExamples.length < MAX_EXAMPLES) {
        malformedExamples.push({
          line,
          fields: 0,
          problem: value instanceof Error ? `not JSON: ${value.message}` : 'not a JSON object',
        });
      }
      continue;
    }
    const object = value as Record<string, Cell>;
    if (pending) {
      pending.push(object);
      pendingLines.push(line);
      rows++;
      if (pending.length >= inferRows) setup();
      continue;
    }
    const row = rows++;
    for (let i = 0; i < names.length; i++) store(builders[i]!, row, object[names[i]!], line);
    for (const k in object) if (!known.has(k)) ignored.add(k);
  }
  if (pending) setup();
  return {
    rows,
    columns: builders.filter((b): b is ColumnBuilder => b !== null).map((b) => b.finish(rows)),
    malformedRows: malformed,
    malformedExamples,
    ignoredColumns: [...ignored],
    source: { format: 'jsonl', path, bytes },
  };
}
