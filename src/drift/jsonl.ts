import { open } from 'node:fs/promises';
import { InvalidFileError } from '../config/yaml-file';
import { mapOf, own } from '../shared/own';
import {
  builderFor,
  MAX_EXAMPLES,
  MAX_RECORD_BYTES,
  NumericBuilder,
  type ColumnarData,
  type ColumnBuilder,
  type ColumnType,
  type MalformedRow,
} from './columns';
import { bytesText, CHUNK_BYTES, nameProblem, ReadWindow, type ReadOptions } from './csv';

type Cell = unknown;
type JsonObject = Readonly<Record<string, Cell>>;

const LF = 0x0a;
const CR = 0x0d;

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
    else b.wrongType(row, () => JSON.stringify(v), line);
    return;
  }
  if (typeof v === 'string') b.setText(row, v);
  else if (typeof v === 'number' || typeof v === 'boolean') b.setText(row, String(v));
  else b.wrongType(row, () => JSON.stringify(v), line);
}

/** What a line holds when it is JSON but not an object. */
function kindOf(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/**
 * Reads a JSON Lines file (one object per line, LF or CRLF) into typed columns, line by line. Columns are the keys of
 * the first `inferRows` objects (or those named in `types`); a later key not among them is reported in
 * `ignoredColumns`. Every key must be a feature name (src/shared/names.ts), as a CSV header's names: a key that is
 * not fails the read with its line. A line that is not a JSON object is skipped and reported as malformed; a line
 * longer than `maxRecordBytes` (default 64 MiB) fails the read with its line, before more of it is buffered.
 */
export async function readJsonlColumns(path: string, options: ReadOptions = {}): Promise<ColumnarData> {
  const inferRows = options.inferRows ?? 10_000;
  const maxLineBytes = options.maxRecordBytes ?? MAX_RECORD_BYTES;
  const types = mapOf(options.types);
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw new InvalidFileError(path, 'JSONL data', [
      `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    ]);
  }
  let pending: JsonObject[] | null = [];
  let pendingLines: number[] = [];
  let names: string[] = [];
  const known = new Set<string>();
  let builders: ColumnBuilder[] = [];
  const ignored = new Set<string>();
  let rows = 0;
  let line = 0;
  let malformed = 0;
  const malformedExamples: MalformedRow[] = [];

  /** Checks a key met for the first time on `at`: it becomes a column name. */
  const checkKey = (key: string, at: number) => {
    const why = nameProblem(key);
    if (why !== null) {
      throw new InvalidFileError(path, 'JSONL data', [`line ${at}: ${why} (every key of an object names a column)`]);
    }
  };

  const setup = () => {
    for (const name of types.keys()) known.add(name);
    if (!options.onlyTyped) for (const o of pending!) for (const k of Object.keys(o)) known.add(k);
    names = [...known];
    builders = names.map((name) =>
      builderFor(name, types.get(name) ?? inferJsonType(pending!.map((o) => own(o, name))), pending!.length + 1024),
    );
    pending!.forEach((o, r) => {
      builders.forEach((b, i) => store(b, r, own(o, names[i]!), pendingLines[r]!));
      for (const k of Object.keys(o)) if (!known.has(k)) ignored.add(k);
    });
    pending = null;
    pendingLines = [];
  };

  const seen = new Set<string>();
  const onLine = (text: string) => {
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      // V8's message quotes the line's first bytes: the report names the line instead.
      malformed++;
      if (malformedExamples.length < MAX_EXAMPLES)
        malformedExamples.push({ line, fields: 0, problem: 'not valid JSON' });
      return;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      malformed++;
      if (malformedExamples.length < MAX_EXAMPLES) {
        malformedExamples.push({ line, fields: 0, problem: `${kindOf(value)}, not a JSON object` });
      }
      return;
    }
    const object = value as JsonObject;
    for (const k of Object.keys(object)) {
      if (seen.has(k)) continue;
      checkKey(k, line);
      seen.add(k);
    }
    if (pending) {
      pending.push(object);
      pendingLines.push(line);
      rows++;
      if (pending.length >= inferRows) setup();
      return;
    }
    const row = rows++;
    for (let i = 0; i < names.length; i++) store(builders[i]!, row, own(object, names[i]!), line);
    for (const k of Object.keys(object)) if (!known.has(k)) ignored.add(k);
  };

  try {
    const bytes = (await handle.stat()).size;
    const window = new ReadWindow(handle, options.chunkBytes ?? CHUNK_BYTES);
    // Where the search for the current line's end goes on: a long line is searched once, not from its start per read.
    let scanned = 0;
    let atStart = true;
    for (;;) {
      const bytesRead = await window.fill();
      const final = bytesRead === 0;
      // Only the bytes held: a search must not run on into the rest of the buffer.
      const buf = window.buf.subarray(0, window.end);
      const end = buf.length;
      let start = 0;
      if (atStart) {
        if (end < 3 && !final) continue;
        atStart = false;
        if (end >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) start = scanned = 3;
      }
      for (let lf = buf.indexOf(LF, scanned); lf >= 0 && lf < end; lf = buf.indexOf(LF, start)) {
        line++;
        if (lf - start > maxLineBytes) throw tooLong(path, line, maxLineBytes);
        onLine(buf.toString('utf8', start, lf > start && buf[lf - 1] === CR ? lf - 1 : lf));
        start = lf + 1;
      }
      if (final) {
        if (start < end) {
          line++;
          if (end - start > maxLineBytes) throw tooLong(path, line, maxLineBytes);
          onLine(buf.toString('utf8', start, end));
        }
        break;
      }
      window.drop(start);
      scanned = window.end;
      if (window.end > maxLineBytes) throw tooLong(path, line + 1, maxLineBytes);
    }
    if (pending) setup();
    return {
      rows,
      columns: builders.map((b) => b.finish(rows)),
      malformedRows: malformed,
      malformedExamples,
      ignoredColumns: [...ignored],
      source: { format: 'jsonl', path, bytes },
    };
  } finally {
    await handle.close();
  }
}

const tooLong = (path: string, line: number, max: number) =>
  new InvalidFileError(path, 'JSONL data', [`line ${line}: longer than ${bytesText(max)} (one JSON object per line)`]);
