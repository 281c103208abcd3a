import { open } from 'node:fs/promises';
import { InvalidFileError } from '../config/yaml-file';
import {
  builderFor,
  inferType,
  MAX_EXAMPLES,
  NumericBuilder,
  type ColumnarData,
  type ColumnBuilder,
  type ColumnType,
  type MalformedRow,
} from './columns';

/**
 * Streaming CSV reader straight into typed columns (RFC 4180: comma-separated, optional double quotes with `""` as an
 * escaped quote, quoted fields may hold commas and newlines, LF or CRLF line ends, a header line, a UTF-8 BOM ignored).
 *
 * The file is read in 1 MiB chunks and never held whole, nor as one string per cell: numeric cells are parsed from the
 * bytes (plain decimals exactly, by the correctly rounded fast path; anything else through `Number`), categorical
 * cells become integer codes. Column types come from `types` (a profile's schema) or are inferred from the first
 * `inferRows` rows, which are held back until then. A row with the wrong number of fields is skipped and reported,
 * an unterminated quote fails the read with its line.
 */
export interface ReadOptions {
  /** Column types by name; columns not named are inferred, or ignored when `onlyTyped` is set. */
  types?: Record<string, ColumnType>;
  /** Read only the columns named in `types` (the others are listed in `ignoredColumns`). */
  onlyTyped?: boolean;
  /** Rows used to infer the types of columns not in `types`; default 10,000. */
  inferRows?: number;
}

const CHUNK_BYTES = 1 << 20;
/** A record longer than this is taken for an unterminated quote rather than buffered further. */
const MAX_RECORD_BYTES = 64 << 20;
const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

/** Exact powers of ten: a decimal with at most 15 significant digits divided by one of them is correctly rounded. */
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);

/**
 * A plain decimal (`-12`, `3.25`, `.5`) parsed from bytes; NaN when the text is anything else (exponent, spaces,
 * more than 15 digits, other characters), which the caller hands to the slow path.
 */
function parseDecimal(buf: Buffer, start: number, end: number): number {
  let i = start;
  let negative = false;
  const first = buf[i];
  if (first === 0x2d || first === 0x2b) {
    negative = first === 0x2d;
    i++;
  }
  let mantissa = 0;
  let digits = 0;
  let fraction = -1;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c >= 0x30 && c <= 0x39) {
      mantissa = mantissa * 10 + (c - 0x30);
      digits++;
      if (fraction >= 0) fraction++;
    } else if (c === 0x2e && fraction < 0) fraction = 0;
    else return NaN;
  }
  if (digits === 0 || digits > 15) return NaN;
  const value = fraction > 0 ? mantissa / POW10[fraction]! : mantissa;
  return negative ? -value : value;
}

interface Spans {
  starts: Int32Array;
  ends: Int32Array;
  /** 1 when the field was quoted and holds escaped quotes (needs unescaping). */
  escaped: Uint8Array;
  /** 1 when the field was quoted. */
  quoted: Uint8Array;
  count: number;
  /** Newlines inside quoted fields of the record. */
  innerLines: number;
}

const INCOMPLETE = -1;

/**
 * Tokenizes one record starting at `pos`; returns the position after it, or INCOMPLETE when `buf` ends inside the
 * record and more input may follow. Throws (via `unterminated`) on a quote left open at the end of input.
 */
function tokenize(buf: Buffer, pos: number, end: number, final: boolean, spans: Spans): number {
  spans.count = 0;
  spans.innerLines = 0;
  for (;;) {
    if (spans.count === spans.starts.length) grow(spans);
    const k = spans.count;
    if (pos < end && buf[pos] === QUOTE) {
      let p = pos + 1;
      let escaped = 0;
      for (;;) {
        const q = buf.indexOf(QUOTE, p);
        if (q < 0 || q >= end) return final ? -2 : INCOMPLETE;
        if (q + 1 < end && buf[q + 1] === QUOTE) {
          escaped = 1;
          p = q + 2;
          continue;
        }
        if (q + 1 >= end && !final) return INCOMPLETE;
        for (let j = buf.indexOf(LF, pos + 1); j >= 0 && j < q; j = buf.indexOf(LF, j + 1)) spans.innerLines++;
        spans.starts[k] = pos + 1;
        spans.ends[k] = q;
        spans.escaped[k] = escaped;
        spans.quoted[k] = 1;
        pos = q + 1;
        break;
      }
    } else {
      let p = pos;
      while (p < end) {
        const c = buf[p]!;
        if (c === COMMA || c === LF || c === CR) break;
        p++;
      }
      spans.starts[k] = pos;
      spans.ends[k] = p;
      spans.escaped[k] = 0;
      spans.quoted[k] = 0;
      pos = p;
    }
    spans.count++;
    if (pos >= end) return final ? pos : INCOMPLETE;
    const c = buf[pos];
    if (c === COMMA) {
      pos++;
      continue;
    }
    if (c === CR) {
      if (pos + 1 >= end) return final ? pos + 1 : INCOMPLETE;
      return buf[pos + 1] === LF ? pos + 2 : pos + 1;
    }
    if (c === LF) return pos + 1;
    // Text after a closing quote: keep it in the field as written (lenient, like most readers).
    const q = buf.indexOf(COMMA, pos);
    const l = buf.indexOf(LF, pos);
    let stop = Math.min(q < 0 || q >= end ? end : q, l < 0 || l >= end ? end : l);
    if (stop > pos && buf[stop - 1] === CR) stop--;
    spans.ends[k] = stop;
    spans.escaped[k] = 1;
    pos = stop;
    if (pos >= end) return final ? pos : INCOMPLETE;
  }
}

function grow(spans: Spans): void {
  const n = spans.starts.length * 2;
  const starts = new Int32Array(n);
  starts.set(spans.starts);
  const ends = new Int32Array(n);
  ends.set(spans.ends);
  const escaped = new Uint8Array(n);
  escaped.set(spans.escaped);
  const quoted = new Uint8Array(n);
  quoted.set(spans.quoted);
  Object.assign(spans, { starts, ends, escaped, quoted });
}

function fieldText(buf: Buffer, spans: Spans, k: number): string {
  const start = spans.starts[k]!;
  const end = spans.ends[k]!;
  const text = buf.toString('utf8', start, end);
  return spans.escaped[k] ? text.replace(/""/g, '"') : text;
}

function isBlank(spans: Spans): boolean {
  return spans.count === 1 && spans.starts[0] === spans.ends[0] && !spans.quoted[0];
}

/** Reads a CSV file into typed columns. Bad structure throws InvalidFileError naming the file and line. */
export async function readCsvColumns(path: string, options: ReadOptions = {}): Promise<ColumnarData> {
  const inferRows = options.inferRows ?? 10_000;
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw new InvalidFileError(path, 'CSV data', [
      `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    ]);
  }
  try {
    const bytes = (await handle.stat()).size;
    const spans: Spans = {
      starts: new Int32Array(64),
      ends: new Int32Array(64),
      escaped: new Uint8Array(64),
      quoted: new Uint8Array(64),
      count: 0,
      innerLines: 0,
    };
    let header: string[] | null = null;
    let builders: (ColumnBuilder | null)[] = [];
    let pending: string[][] | null = [];
    let pendingLines: number[] = [];
    const ignored: string[] = [];
    let rows = 0;
    let line = 1;
    let malformed = 0;
    const malformedExamples: MalformedRow[] = [];
    let capacity = 1024;

    const setupBuilders = (sample: string[][]) => {
      const names = header!;
      builders = names.map((name, i) => {
        const known = options.types?.[name];
        if (!known && options.onlyTyped) {
          ignored.push(name);
          return null;
        }
        return builderFor(name, known ?? inferType(sample.map((r) => r[i]!)), capacity);
      });
    };

    const storeText = (b: ColumnBuilder, row: number, text: string, at: number) => {
      if (b instanceof NumericBuilder) b.setText(row, text, at);
      else b.setText(row, text);
    };

    const flushPending = () => {
      setupBuilders(pending!);
      pending!.forEach((fields, r) => {
        builders.forEach((b, i) => b && storeText(b, r, fields[i]!, pendingLines[r]!));
      });
      pending = null;
      pendingLines = [];
    };

    const onRecord = (buf: Buffer, recordLine: number) => {
      if (header === null) {
        header = Array.from({ length: spans.count }, (_, k) => fieldText(buf, spans, k).trim());
        if (header[0]?.charCodeAt(0) === 0xfeff) header[0] = header[0].slice(1);
        const problems: string[] = [];
        const seen = new Set<string>();
        header.forEach((name, i) => {
          if (name === '') problems.push(`line ${recordLine}: column ${i + 1} of the header has no name`);
          else if (seen.has(name)) problems.push(`line ${recordLine}: column "${name}" appears twice in the header`);
          seen.add(name);
        });
        if (problems.length > 0) throw new InvalidFileError(path, 'CSV data', problems);
        return;
      }
      if (spans.count !== header.length) {
        malformed++;
        if (malformedExamples.length < MAX_EXAMPLES) {
          malformedExamples.push({
            line: recordLine,
            fields: spans.count,
            problem: `${spans.count} fields where the header has ${header.length}`,
          });
        }
        return;
      }
      if (pending) {
        pending.push(Array.from({ length: spans.count }, (_, k) => fieldText(buf, spans, k)));
        pendingLines.push(recordLine);
        rows++;
        if (pending.length >= inferRows) flushPending();
        return;
      }
      const row = rows++;
      for (let k = 0; k < spans.count; k++) {
        const b = builders[k];
        if (!b) continue;
        if (b instanceof NumericBuilder) {
          const start = spans.starts[k]!;
          const end = spans.ends[k]!;
          const v = spans.escaped[k] ? NaN : parseDecimal(buf, start, end);
          if (v === v) b.set(row, v);
          else b.setText(row, fieldText(buf, spans, k), recordLine);
        } else if (spans.escaped[k]) b.setText(row, fieldText(buf, spans, k));
        else b.setBytes(row, buf, spans.starts[k]!, spans.ends[k]!);
      }
    };

    let carry: Buffer = Buffer.alloc(0);
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    let position = 0;
    let firstChunk = true;
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, CHUNK_BYTES, position);
      position += bytesRead;
      const final = bytesRead === 0;
      const buf =
        carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
      let pos = 0;
      if (firstChunk && buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) pos = 3;
      const end = buf.length;
      while (pos < end) {
        const next = tokenize(buf, pos, end, final, spans);
        if (next === INCOMPLETE) break;
        if (next === -2) {
          throw new InvalidFileError(path, 'CSV data', [`line ${line}: a quoted field is never closed`]);
        }
        const recordLine = line;
        line += 1 + spans.innerLines;
        if (!isBlank(spans)) onRecord(buf, recordLine);
        pos = next;
      }
      if (firstChunk && rows > 0 && bytesRead > 0) {
        // Size the columns from the bytes per row seen so far, so they rarely grow.
        capacity = Math.ceil((bytes / Math.max(pos, 1)) * rows * 1.05) + 1024;
      }
      firstChunk = firstChunk && rows === 0;
      if (final) break;
      carry = Buffer.from(buf.subarray(pos));
      if (carry.length > MAX_RECORD_BYTES) {
        throw new InvalidFileError(path, 'CSV data', [
          `line ${line}: a record longer than ${MAX_RECORD_BYTES >> 20} MiB (a quoted field never closed?)`,
        ]);
      }
    }
    if (header === null) throw new InvalidFileError(path, 'CSV data', ['the file is empty (no header line)']);
    if (pending) flushPending();
    const columns = builders.filter((b): b is ColumnBuilder => b !== null).map((b) => b.finish(rows));
    return {
      rows,
      columns,
      malformedRows: malformed,
      malformedExamples,
      ignoredColumns: ignored,
      source: { format: 'csv', path, bytes },
    };
  } finally {
    await handle.close();
  }
}
