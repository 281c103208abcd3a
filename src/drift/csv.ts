import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { InvalidFileError } from '../config/yaml-file';
import { featureNameProblem } from '../shared/names';
import { mapOf } from '../shared/own';
import {
  builderFor,
  inferType,
  MAX_EXAMPLES,
  MAX_RECORD_BYTES,
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
 * `inferRows` rows, which are held back until then. Every header name must be a feature name (src/shared/names.ts).
 * A row with the wrong number of fields is skipped and reported; an unterminated quote, or a record longer than
 * `maxRecordBytes`, fails the read with its line.
 */
export interface ReadOptions {
  /** Column types by name; columns not named are inferred, or ignored when `onlyTyped` is set. */
  types?: Readonly<Record<string, ColumnType>>;
  /** Read only the columns named in `types` (the others are listed in `ignoredColumns`). */
  onlyTyped?: boolean;
  /** Rows used to infer the types of columns not in `types`; default 10,000. */
  inferRows?: number;
  /** Longest record (CSV) or line (JSON Lines) in bytes; default `MAX_RECORD_BYTES` (64 MiB). */
  maxRecordBytes?: number;
  /** Bytes per read; default 1 MiB (tests read in tiny chunks to put a chunk boundary everywhere). */
  chunkBytes?: number;
}

export const CHUNK_BYTES = 1 << 20;
const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

/** `64 MiB`, `4 KiB`, `100 bytes`. */
export const bytesText = (n: number) =>
  n % (1 << 20) === 0 ? `${n >> 20} MiB` : n % 1024 === 0 ? `${n >> 10} KiB` : `${n} bytes`;

/**
 * The bytes of a file not consumed yet, in one buffer: `fill` reads the next chunk after them, `drop` forgets a
 * consumed prefix and moves the rest to the front. A record longer than a chunk grows the buffer by doubling, so each
 * of its bytes is copied a bounded number of times, not once per chunk as concatenating the carry would.
 */
export class ReadWindow {
  buf: Buffer;
  /** Bytes held: `buf[0, end)`. */
  end = 0;
  private position = 0;

  constructor(
    private readonly handle: FileHandle,
    private readonly chunk: number,
  ) {
    this.buf = Buffer.allocUnsafe(2 * chunk);
  }

  /** Reads the next chunk after the bytes held; 0 at the end of the file. */
  async fill(): Promise<number> {
    if (this.buf.length - this.end < this.chunk) {
      const bigger = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.end + this.chunk));
      this.buf.copy(bigger, 0, 0, this.end);
      this.buf = bigger;
    }
    const { bytesRead } = await this.handle.read(this.buf, this.end, this.chunk, this.position);
    this.end += bytesRead;
    this.position += bytesRead;
    return bytesRead;
  }

  /** Forgets the first `n` bytes held. */
  drop(n: number): void {
    if (n === 0) return;
    const rest = this.end - n;
    if (this.buf.length > 4 * this.chunk && rest <= this.chunk) {
      // Past a long record: give its memory back.
      const smaller = Buffer.allocUnsafe(2 * this.chunk);
      this.buf.copy(smaller, 0, n, this.end);
      this.buf = smaller;
    } else this.buf.copyWithin(0, n, this.end);
    this.end = rest;
  }
}

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
const UNTERMINATED = -2;

// Where a record in progress stopped: at no record, before a field, in an unquoted field, inside quotes, in text
// after a closing quote, after a CR that an LF may follow.
const FRESH = 0;
const FIELD = 1;
const UNQUOTED = 2;
const QUOTED = 3;
const TRAILING = 4;
const AFTER_CR = 5;

/** Where `tokenize` stopped when the buffer ended inside a record; `phase` is FRESH between records. */
interface Resume {
  phase: number;
  /** The field in progress: its first byte, or its opening quote (the CR for AFTER_CR). */
  at: number;
  /** Where the scan of that field goes on. */
  scan: number;
  escaped: number;
}

function suspend(r: Resume, phase: number, at: number, scan: number, escaped: number): number {
  r.phase = phase;
  r.at = at;
  r.scan = scan;
  r.escaped = escaped;
  return INCOMPLETE;
}

/**
 * Tokenizes one record starting at `pos`; returns the position after it, INCOMPLETE when `buf` ends inside the
 * record and more input may follow, or UNTERMINATED for a quote still open at the end of input. After INCOMPLETE, `r`
 * and `spans` hold how far the record got, and the next call (the record's bytes at the same offsets, more after
 * them) goes on from there: a long record is scanned once, not again from its start after every read.
 */
function tokenize(buf: Buffer, pos: number, end: number, final: boolean, spans: Spans, r: Resume): number {
  let phase = r.phase;
  if (phase === FRESH) {
    spans.count = 0;
    spans.innerLines = 0;
    phase = FIELD;
  } else pos = r.at;
  r.phase = FRESH;
  for (;;) {
    if (phase === AFTER_CR) {
      if (pos + 1 >= end) return final ? pos + 1 : suspend(r, AFTER_CR, pos, pos, 0);
      return buf[pos + 1] === LF ? pos + 2 : pos + 1;
    }
    if (spans.count === spans.starts.length) grow(spans);
    const k = spans.count;
    if (phase === UNQUOTED || (phase === FIELD && (pos >= end || buf[pos] !== QUOTE))) {
      let p = phase === UNQUOTED ? r.scan : pos;
      while (p < end) {
        const c = buf[p]!;
        if (c === COMMA || c === LF || c === CR) break;
        p++;
      }
      // An empty start may still turn out to be an opening quote.
      if (p >= end && !final) return suspend(r, p === pos ? FIELD : UNQUOTED, pos, p, 0);
      spans.starts[k] = pos;
      spans.ends[k] = p;
      spans.escaped[k] = 0;
      spans.quoted[k] = 0;
      pos = p;
    } else {
      let escaped = phase === FIELD ? 0 : r.escaped;
      let stop: number;
      let trailing = phase === TRAILING;
      let p = trailing ? r.scan : 0;
      if (trailing) stop = p;
      else {
        let from = phase === QUOTED ? r.scan : pos + 1;
        let q: number;
        for (;;) {
          q = buf.indexOf(QUOTE, from);
          if (q < 0 || q >= end) return final ? UNTERMINATED : suspend(r, QUOTED, pos, end, escaped);
          if (q + 1 < end && buf[q + 1] === QUOTE) {
            escaped = 1;
            from = q + 2;
            continue;
          }
          // A quote that ends the buffer may be the first of an escaped pair: decide when more input is there.
          if (q + 1 >= end && !final) return suspend(r, QUOTED, pos, q, escaped);
          break;
        }
        // Within the field only: a search for the next LF could run on through a long record once per field.
        for (let j = pos + 1; j < q; j++) if (buf[j] === LF) spans.innerLines++;
        stop = q;
        p = q + 1;
        const c = buf[p];
        // Text after the closing quote: kept in the field as written (lenient, like most readers).
        trailing = p < end && c !== COMMA && c !== LF && c !== CR;
      }
      if (trailing) {
        while (p < end) {
          const c = buf[p]!;
          if (c === COMMA || c === LF || c === CR) break;
          p++;
        }
        if (p >= end && !final) return suspend(r, TRAILING, pos, p, 1);
        escaped = 1;
        stop = p;
      }
      spans.starts[k] = pos + 1;
      spans.ends[k] = stop;
      spans.escaped[k] = escaped;
      spans.quoted[k] = 1;
      pos = p;
    }
    spans.count++;
    phase = FIELD;
    // Every field that meets the end of the buffer before its delimiter suspended above, unless this is the end.
    if (pos >= end) return pos;
    const c = buf[pos];
    if (c === COMMA) {
      pos++;
      continue;
    }
    if (c === CR) {
      phase = AFTER_CR;
      continue;
    }
    return pos + 1;
  }
}

/** Moves what `tokenize` holds of a record in progress `by` bytes to the front, as the window drops them. */
function shiftResume(spans: Spans, r: Resume, by: number): void {
  if (r.phase === FRESH || by === 0) return;
  r.at -= by;
  r.scan -= by;
  for (let k = 0; k < spans.count; k++) {
    spans.starts[k]! -= by;
    spans.ends[k]! -= by;
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
  if (!spans.escaped[k]) return buf.toString('utf8', start, end);
  // `""` → `"` on the bytes, then one decode: a regex over a long field's string costs many times its length.
  const out = Buffer.allocUnsafe(end - start);
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    out[n++] = c;
    if (c === QUOTE && i + 1 < end && buf[i + 1] === QUOTE) i++;
  }
  return out.toString('utf8', 0, n);
}

function isBlank(spans: Spans): boolean {
  return spans.count === 1 && spans.starts[0] === spans.ends[0] && !spans.quoted[0];
}

/** At most this many problems of one file are listed; the rest are counted. */
const MAX_LISTED = 10;

/** `problems`, the first `MAX_LISTED` of them and a count of the others. */
export function listed(problems: string[]): string[] {
  return problems.length <= MAX_LISTED
    ? problems
    : [...problems.slice(0, MAX_LISTED), `… and ${problems.length - MAX_LISTED} more`];
}

/** Why `name` cannot name a column, saying what a name may be. */
export const nameProblem = featureNameProblem;

/** Why a header is unusable, a line per column: no name, not a feature name, or a name taken by an earlier column. */
function headerProblems(header: readonly string[], line: number): string[] {
  const problems: string[] = [];
  const seen = new Map<string, number>();
  header.forEach((name, i) => {
    const at = `line ${line}, column ${i + 1} of the header`;
    const first = seen.get(name);
    if (name === '') problems.push(`${at} has no name (expected a feature name)`);
    else if (nameProblem(name) !== null) problems.push(`${at}: ${nameProblem(name)}`);
    else if (first !== undefined) problems.push(`${at}: "${name}" appears twice (first as column ${first + 1})`);
    else seen.set(name, i);
  });
  return problems;
}

/** Reads a CSV file into typed columns. Bad structure throws InvalidFileError naming the file and line. */
export async function readCsvColumns(path: string, options: ReadOptions = {}): Promise<ColumnarData> {
  const inferRows = options.inferRows ?? 10_000;
  const maxRecordBytes = options.maxRecordBytes ?? MAX_RECORD_BYTES;
  const types = mapOf(options.types);
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
        const known = types.get(name);
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
        const problems = headerProblems(header, recordLine);
        if (problems.length > 0) throw new InvalidFileError(path, 'CSV data', listed(problems));
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

    const tooLong = () =>
      new InvalidFileError(path, 'CSV data', [
        `line ${line}: a record longer than ${bytesText(maxRecordBytes)} (a quoted field never closed?)`,
      ]);

    const window = new ReadWindow(handle, options.chunkBytes ?? CHUNK_BYTES);
    const resume: Resume = { phase: FRESH, at: 0, scan: 0, escaped: 0 };
    let atStart = true;
    let sizing = true;
    for (;;) {
      const bytesRead = await window.fill();
      const final = bytesRead === 0;
      // Only the bytes held: a search must not run on into the rest of the buffer.
      const buf = window.buf.subarray(0, window.end);
      const end = buf.length;
      let pos = 0;
      if (atStart) {
        if (end < 3 && !final) continue;
        atStart = false;
        if (end >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) pos = 3;
      }
      while (pos < end) {
        const next = tokenize(buf, pos, end, final, spans, resume);
        if (next === INCOMPLETE) break;
        if (next === UNTERMINATED) {
          throw new InvalidFileError(path, 'CSV data', [`line ${line}: a quoted field is never closed`]);
        }
        if (next - pos > maxRecordBytes) throw tooLong();
        const recordLine = line;
        line += 1 + spans.innerLines;
        if (!isBlank(spans)) onRecord(buf, recordLine);
        pos = next;
      }
      if (sizing && rows > 0 && bytesRead > 0) {
        // Size the columns from the bytes per row seen so far, so they rarely grow.
        capacity = Math.ceil((bytes / Math.max(pos, 1)) * rows * 1.05) + 1024;
      }
      sizing = sizing && rows === 0;
      if (final) break;
      shiftResume(spans, resume, pos);
      window.drop(pos);
      if (window.end > maxRecordBytes) throw tooLong();
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

/** Data rows of a CSV file (lines after the header), counted without holding the file in memory. */
export async function countCsvRows(file: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    let newlines = 0;
    let last = 10;
    createReadStream(file)
      .on('data', (chunk: Buffer | string) => {
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) newlines++;
        if (buf.length > 0) last = buf[buf.length - 1]!;
      })
      .on('error', () => resolve(undefined))
      .on('end', () => {
        const lines = newlines + (last === 10 ? 0 : 1);
        resolve(Math.max(0, lines - 1));
      });
  });
}
