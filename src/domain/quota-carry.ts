/**
 * What a quota pool carries across continue-as-new, packed (pure, runs in the workflow sandbox). The pool's whole state
 * travels in one continue-as-new input, which a stock server refuses past 2 MB (the pool would stall there, its task
 * failing on every attempt), so the packed form stores each lease in about 70 bytes instead of 317:
 *
 * - columns instead of objects (one array per field: no key names repeated per lease);
 * - holders, kinds, operations, reasons, identities and resource names interned in one string table, resource
 *   amounts (`{ cpu: 1 }`) in a table of vectors, run profiles and usages in a table of objects, TTLs in a table;
 * - times as integer milliseconds: a chain of deltas within a column (grants come in order), or an offset from a
 *   time of the same row (`renewedAt` from `grantedAt`, a deadline from its enqueue);
 * - what derives from other fields is not stored when it does (`expiresAt` = renewedAt + ttlMs, a run's `heldMs`);
 *   a row where it does not is listed with its value;
 * - lease ids front-coded (the length shared with the id before, then the rest);
 * - owner digests (SHA-256) as one base64url string, 43 characters each instead of 66.
 *
 * Decoding gives back exactly the objects encoded (same fields, same order of rows and keys), and checks everything it
 * reads: a corrupted state is refused with one {@link CarryError} naming where, never turned into other objects.
 * Caller-chosen strings are only ever values or `Map` keys here, never keys of plain objects (resource vectors and
 * profiles are rebuilt with `Object.fromEntries`, which defines own properties).
 */
import {
  PipelineKind,
  type QuotaJournalEntry,
  type QuotaLease,
  type QuotaRun,
  type QuotaWaiting,
  type RefusalReason,
  type Resources,
  type ReserveQuotaResult,
  type RunProfile,
  type RunUsage,
} from '../shared/quota';
import type { UsageSample } from './quota';

/** The pool's counters carried across runs (`stats` of the pool state, less `opsThisRun`). */
export interface CarriedStats {
  grants: number;
  refusals: number;
  releases: number;
  expirations: number;
  continuedAsNew: number;
}

/** A refusal kept for whoever watches a reservation that waited in vain. */
export type TimedOut = [string, ReserveQuotaResult & { granted: false }];

/** Everything a pool carries from one run to the next, as the workflow holds it. */
export interface CarriedState {
  leases: QuotaLease[];
  waiting: QuotaWaiting[];
  timedOut: TimedOut[];
  journal: QuotaJournalEntry[];
  runs: QuotaRun[];
  samples: UsageSample[];
  capRefusals: [string, number[]][];
  stats: Partial<CarriedStats>;
  /** Lease id → SHA-256 (hex) of its owner key. */
  owners: [string, string][];
  nonces: string[];
}

/** The parts of a {@link CarriedState} that are history only: trimmed, oldest first, when the state is too big. */
export const HISTORY_PARTS = ['journal', 'runs', 'samples', 'timedOut'] as const;
export type HistoryPart = (typeof HISTORY_PARTS)[number];

/** The packed form's version: a decoder refuses any other. */
export const CARRY_VERSION = 1;

/** A time column entry: a delta or offset in ms; a string is a time kept verbatim (not a canonical ISO time). */
type Time = number | string;
/** A number column entry that may not be delta-coded exactly (not a safe integer): kept verbatim in `[x]`. */
type Num = number | [number];

export interface PackedLeases {
  n: number;
  /** Lease ids, front-coded: characters shared with the id before, then the rest. */
  idShared: number[];
  idRest: string[];
  holder: number[];
  kind: number[];
  resources: number[];
  /** Chain of deltas from `t0`. */
  grantedAt: Time[];
  /** Offset from the row's `grantedAt`. */
  renewedAt: Time[];
  /** Index into `ttls`. */
  ttl: number[];
  /** Rows whose `expiresAt` is not renewedAt + ttlMs (null when ttlMs is null): [row, expiresAt]. */
  expiresAt: [number, string | null][];
  /** Offset from the row's `grantedAt` (> 0), a verbatim time, or 0: absent. */
  expectedReleaseAt?: Time[];
  /** Index + 1 into `objects`, or 0: absent. */
  profile?: number[];
  waitedMs: number[];
}

export interface PackedWaiting {
  n: number;
  leaseId: string[];
  holder: number[];
  kind: number[];
  resources: number[];
  priority: number[];
  /** Chain of deltas from `t0`. */
  enqueuedAt: Time[];
  /** Offset from the row's `enqueuedAt`. */
  deadline: Time[];
  /** Index + 1 into `ttls`, or 0: absent (the pool's `leaseTtl`). */
  ttl: number[];
  /** null: absent. */
  expectedDurationMs: (number | null)[];
  /** Index + 1 into `objects`, or 0: absent. */
  profile: number[];
  /** Index + 1 into `objects` (the `notify` object), or 0: absent. */
  notify: number[];
}

export interface PackedJournal {
  n: number;
  /** Chain of deltas from `t0`. */
  at: Time[];
  op: number[];
  /** 0: absent. */
  leaseId: (string | 0)[];
  /** Index + 1 (into `strings` or `vectors`), or 0: absent. */
  holder?: number[];
  resources?: number[];
  reason?: number[];
  by?: number[];
  keyId?: number[];
  used?: number[];
}

export interface PackedRuns {
  n: number;
  leaseId: string[];
  holder: number[];
  kind: number[];
  resources: number[];
  /** Chain of deltas from `t0`. */
  endedAt: Time[];
  /** Offset from the row's `endedAt`. */
  grantedAt: Time[];
  /** Rows whose `heldMs` is not endedAt − grantedAt: [row, heldMs]. */
  heldMs: [number, number][];
  ended: number[];
  /** Index + 1 (into `objects` or `strings`), or 0: absent. */
  profile?: number[];
  usage?: number[];
  releasedBy?: number[];
  keyId?: number[];
}

export interface PackedSamples {
  n: number;
  /** Chain of deltas from `t0`. */
  atMs: Num[];
  /** Index into `vectors`. */
  used: number[];
}

/** The packed form (JSON). Its parts are objects, never arrays: a worker from before it fails its task on one. */
export interface PackedCarried {
  v: typeof CARRY_VERSION;
  /** Base of the time chains, ms since the epoch. */
  t0: number;
  strings: string[];
  /** Resource amounts: [name (index into `strings`), amount, name, amount, ...], in the object's key order. */
  vectors: number[][];
  /** Run profiles, run usages and `notify` objects. */
  objects: Record<string, string | number>[];
  ttls: (number | null)[];
  leases: PackedLeases;
  waiting: PackedWaiting;
  /** Owner digests, 32 bytes each, base64url without padding: the leases' then the waiting reservations', in order. */
  owners: { digests: string; unowned: number[]; other: [string, string][] };
  journal: PackedJournal;
  runs: PackedRuns;
  samples: PackedSamples;
  timedOut: TimedOut[];
  /** [holder (index into `strings`), times]. */
  capRefusals: [number, number[]][];
  stats: Partial<CarriedStats>;
  nonces: string[];
}

/** A packed state that cannot be read: corrupted, truncated, or of another version. */
export class CarryError extends Error {
  /** `row`: the row of the column `where` names (none: -1); the place is spelt out only when there is an error. */
  constructor(where: string, problem: string, row = -1) {
    super(`carried state: ${row < 0 ? where : `${where}[${row}]`}: ${problem}`);
    this.name = 'CarryError';
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Times

const MAX_TIME_MS = 8.64e15;
/**
 * The last time formatted, and the last one parsed: rows come in runs of the same time (a batch of grants, a lease
 * never renewed), and formatting is most of what packing and unpacking cost.
 */
let lastIso: { ms: number; s: string | undefined } = { ms: NaN, s: undefined };
let lastParsed: { s: string; ms: number | null } = { s: '', ms: null };
/** The ISO form of `ms`, or undefined when `ms` is no time a `Date` holds. */
function isoOf(ms: number): string | undefined {
  if (ms === lastIso.ms) return lastIso.s;
  const s = Number.isFinite(ms) && Math.abs(ms) <= MAX_TIME_MS ? new Date(ms).toISOString() : undefined;
  lastIso = { ms, s };
  return s;
}
/** `s` as ms when it is exactly the ISO form of that time (what the pool writes), else null. */
function canonicalMs(s: unknown): number | null {
  if (typeof s !== 'string') return null;
  if (s === lastParsed.s) return lastParsed.ms;
  const parsed = Date.parse(s);
  const ms = Number.isSafeInteger(parsed) && isoOf(parsed) === s ? parsed : null;
  lastParsed = { s, ms };
  return ms;
}

/** A column of times, each a delta from the one before (the first from `t0`); others kept verbatim. */
class TimeChain {
  constructor(private prev: number) {}

  put(s: string): Time {
    const ms = canonicalMs(s);
    if (ms === null) return s;
    const d = ms - this.prev;
    this.prev = ms;
    return d;
  }

  take(x: unknown, where: string, row = -1): string {
    if (typeof x === 'string') return x;
    if (!Number.isSafeInteger(x)) throw new CarryError(where, 'not a time', row);
    const ms = this.prev + (x as number);
    const s = isoOf(ms);
    if (s === undefined) throw new CarryError(where, 'a time out of range', row);
    this.prev = ms;
    return s;
  }
}

/** `s` as an offset from `base` (the ms of another canonical time of the row, else t0); verbatim when not canonical. */
function offsetOf(s: string, base: number): Time {
  const ms = canonicalMs(s);
  return ms === null ? s : ms - base;
}
function fromOffset(x: unknown, base: number, where: string, row = -1): string {
  if (typeof x === 'string') return x;
  if (!Number.isSafeInteger(x)) throw new CarryError(where, 'not a time', row);
  const s = isoOf(base + (x as number));
  if (s === undefined) throw new CarryError(where, 'a time out of range', row);
  return s;
}

/** A chain of plain numbers (sample times): deltas while they are safe integers, others verbatim in `[x]`. */
class NumChain {
  constructor(private prev: number) {}

  put(x: number): Num {
    if (!Number.isSafeInteger(x) || !Number.isSafeInteger(x - this.prev)) return [x];
    const d = x - this.prev;
    this.prev = x;
    return d;
  }

  take(x: unknown, where: string, row = -1): number {
    if (Array.isArray(x) && x.length === 1 && typeof x[0] === 'number' && Number.isFinite(x[0])) return x[0];
    if (!Number.isSafeInteger(x)) throw new CarryError(where, 'not a number', row);
    const v = this.prev + (x as number);
    if (!Number.isSafeInteger(v)) throw new CarryError(where, 'a number out of range', row);
    this.prev = v;
    return v;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Owner digests: hex ⇄ base64url

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64_CODES = [...B64].map((c) => c.charCodeAt(0));
/** Character code → 6-bit value, 255 for a character not in the alphabet. */
const B64_VALUES = new Uint8Array(128).fill(255);
B64_CODES.forEach((code, i) => (B64_VALUES[code] = i));
/** Character code of a lowercase hex digit → its value, 255 for any other. */
const HEX_VALUES = new Uint8Array(128).fill(255);
[...'0123456789abcdef'].forEach((c, i) => (HEX_VALUES[c.charCodeAt(0)] = i));
const BYTE_HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));
const DIGEST_BYTES = 32;

/** Whether `s` is a digest as the pool keeps them: 64 lowercase hex digits. */
function isHexDigest(s: string): boolean {
  if (s.length !== 2 * DIGEST_BYTES) return false;
  for (let i = 0; i < s.length; i++) if ((HEX_VALUES[s.charCodeAt(i)] ?? 255) === 255) return false;
  return true;
}

function hexToBytes(hexes: readonly string[]): Uint8Array {
  const out = new Uint8Array(hexes.length * DIGEST_BYTES);
  let o = 0;
  for (const hex of hexes)
    for (let i = 0; i < hex.length; i += 2)
      out[o++] = (HEX_VALUES[hex.charCodeAt(i)]! << 4) | HEX_VALUES[hex.charCodeAt(i + 1)]!;
  return out;
}

function toBase64url(bytes: Uint8Array): string {
  const chunks: string[] = [];
  const codes: number[] = [];
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const left = bytes.length - i;
    codes.push(B64_CODES[(n >> 18) & 63]!, B64_CODES[(n >> 12) & 63]!);
    if (left > 1) codes.push(B64_CODES[(n >> 6) & 63]!);
    if (left > 2) codes.push(B64_CODES[n & 63]!);
    if (codes.length >= 8192) chunks.push(String.fromCharCode(...codes.splice(0)));
  }
  chunks.push(String.fromCharCode(...codes));
  return chunks.join('');
}

function fromBase64url(s: string, bytes: number, where: string): Uint8Array {
  if (s.length !== Math.ceil((bytes * 4) / 3)) throw new CarryError(where, `not ${bytes / DIGEST_BYTES} digests`);
  const out = new Uint8Array(bytes);
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    let n = 0;
    for (let k = 0; k < 4; k++) {
      const c = i + k < s.length ? (B64_VALUES[s.charCodeAt(i + k)] ?? 255) : 0;
      if (c === 255) throw new CarryError(where, `not base64url at character ${i + k}`);
      n = (n << 6) | c;
    }
    if (o < bytes) out[o++] = (n >> 16) & 255;
    if (o < bytes) out[o++] = (n >> 8) & 255;
    if (o < bytes) out[o++] = n & 255;
  }
  return out;
}

function bytesToHex(bytes: Uint8Array, from: number): string {
  const parts: string[] = [];
  for (let i = from; i < from + DIGEST_BYTES; i++) parts.push(BYTE_HEX[bytes[i]!]!);
  return parts.join('');
}

// ---------------------------------------------------------------------------------------------------------------------
// Encoding

/** A table of values by index, interning each distinct one by a string key (a `Map`: keys are callers' strings). */
class Table<T> {
  readonly values: T[] = [];
  private readonly index = new Map<string, number>();

  intern(key: string, value: T): number {
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.values.length;
      this.values.push(value);
      this.index.set(key, i);
    }
    return i;
  }
}

class Packer {
  readonly strings = new Table<string>();
  readonly vectors = new Table<number[]>();
  readonly objects = new Table<Record<string, string | number>>();
  readonly ttls = new Table<number | null>();

  str = (s: string): number => this.strings.intern(s, s);
  /** Index + 1, or 0 for undefined. */
  optStr = (s: string | undefined): number => (s === undefined ? 0 : this.str(s) + 1);
  vector = (r: Resources): number => {
    const flat: number[] = [];
    for (const [name, amount] of Object.entries(r)) flat.push(this.str(name), amount);
    return this.vectors.intern(JSON.stringify(flat), flat);
  };
  optVector = (r: Resources | undefined): number => (r === undefined ? 0 : this.vector(r) + 1);
  optObject = (o: object | undefined): number =>
    o === undefined ? 0 : this.objects.intern(JSON.stringify(o), o as Record<string, string | number>) + 1;
  ttl = (t: number | null): number => this.ttls.intern(String(t), t);
}

/** Drops an optional column in which every row is absent (0). */
const column = (values: number[]): number[] | undefined => (values.some((v) => v !== 0) ? values : undefined);

function packLeases(p: Packer, leases: readonly QuotaLease[], t0: number): PackedLeases {
  const granted = new TimeChain(t0);
  const out: PackedLeases = {
    n: leases.length,
    idShared: [],
    idRest: [],
    holder: [],
    kind: [],
    resources: [],
    grantedAt: [],
    renewedAt: [],
    ttl: [],
    expiresAt: [],
    waitedMs: [],
  };
  const expected: Time[] = [];
  const profile: number[] = [];
  let prevId = '';
  leases.forEach((l, row) => {
    let shared = 0;
    const max = Math.min(prevId.length, l.leaseId.length);
    while (shared < max && prevId.charCodeAt(shared) === l.leaseId.charCodeAt(shared)) shared++;
    // Never between the two halves of a surrogate pair.
    const high = l.leaseId.charCodeAt(shared - 1);
    if (shared > 0 && high >= 0xd800 && high <= 0xdbff) shared--;
    out.idShared.push(shared);
    out.idRest.push(l.leaseId.slice(shared));
    prevId = l.leaseId;
    out.holder.push(p.str(l.holder));
    out.kind.push(p.str(l.kind));
    out.resources.push(p.vector(l.resources));
    out.grantedAt.push(granted.put(l.grantedAt));
    const base = canonicalMs(l.grantedAt) ?? t0;
    out.renewedAt.push(offsetOf(l.renewedAt, base));
    out.ttl.push(p.ttl(l.ttlMs));
    const renewed = canonicalMs(l.renewedAt);
    const derived = l.ttlMs === null ? null : renewed === null ? undefined : isoOf(renewed + l.ttlMs);
    if (derived !== l.expiresAt) out.expiresAt.push([row, l.expiresAt]);
    if (l.expectedReleaseAt === undefined) expected.push(0);
    else {
      const at = offsetOf(l.expectedReleaseAt, base);
      expected.push(typeof at === 'number' && at <= 0 ? l.expectedReleaseAt : at);
    }
    profile.push(p.optObject(l.profile));
    out.waitedMs.push(l.waitedMs);
  });
  if (expected.some((e) => e !== 0)) out.expectedReleaseAt = expected;
  const profiles = column(profile);
  if (profiles) out.profile = profiles;
  return out;
}

function packWaiting(p: Packer, waiting: readonly QuotaWaiting[], t0: number): PackedWaiting {
  const enqueued = new TimeChain(t0);
  const out: PackedWaiting = {
    n: waiting.length,
    leaseId: [],
    holder: [],
    kind: [],
    resources: [],
    priority: [],
    enqueuedAt: [],
    deadline: [],
    ttl: [],
    expectedDurationMs: [],
    profile: [],
    notify: [],
  };
  for (const w of waiting) {
    out.leaseId.push(w.leaseId);
    out.holder.push(p.str(w.holder));
    out.kind.push(p.str(w.kind));
    out.resources.push(p.vector(w.resources));
    out.priority.push(w.priority);
    out.enqueuedAt.push(enqueued.put(w.enqueuedAt));
    out.deadline.push(offsetOf(w.deadline, canonicalMs(w.enqueuedAt) ?? t0));
    out.ttl.push(w.ttlMs === undefined ? 0 : p.ttl(w.ttlMs) + 1);
    out.expectedDurationMs.push(w.expectedDurationMs ?? null);
    out.profile.push(p.optObject(w.profile));
    out.notify.push(p.optObject(w.notify));
  }
  return out;
}

function packJournal(p: Packer, journal: readonly QuotaJournalEntry[], t0: number): PackedJournal {
  const at = new TimeChain(t0);
  const cols = { holder: [], resources: [], reason: [], by: [], keyId: [], used: [] } as Record<
    'holder' | 'resources' | 'reason' | 'by' | 'keyId' | 'used',
    number[]
  >;
  const out: PackedJournal = { n: journal.length, at: [], op: [], leaseId: [] };
  for (const j of journal) {
    out.at.push(at.put(j.at));
    out.op.push(p.str(j.op));
    out.leaseId.push(j.leaseId ?? 0);
    cols.holder.push(p.optStr(j.holder));
    cols.resources.push(p.optVector(j.resources));
    cols.reason.push(p.optStr(j.reason));
    cols.by.push(p.optStr(j.by));
    cols.keyId.push(p.optStr(j.keyId));
    cols.used.push(p.optVector(j.used));
  }
  for (const name of ['holder', 'resources', 'reason', 'by', 'keyId', 'used'] as const) {
    const values = column(cols[name]);
    if (values) out[name] = values;
  }
  return out;
}

function packRuns(p: Packer, runs: readonly QuotaRun[], t0: number): PackedRuns {
  const ended = new TimeChain(t0);
  const cols = { profile: [], usage: [], releasedBy: [], keyId: [] } as Record<
    'profile' | 'usage' | 'releasedBy' | 'keyId',
    number[]
  >;
  const out: PackedRuns = {
    n: runs.length,
    leaseId: [],
    holder: [],
    kind: [],
    resources: [],
    endedAt: [],
    grantedAt: [],
    heldMs: [],
    ended: [],
  };
  runs.forEach((r, row) => {
    out.leaseId.push(r.leaseId);
    out.holder.push(p.str(r.holder));
    out.kind.push(p.str(r.kind));
    out.resources.push(p.vector(r.resources));
    out.endedAt.push(ended.put(r.endedAt));
    const endMs = canonicalMs(r.endedAt);
    out.grantedAt.push(offsetOf(r.grantedAt, endMs ?? t0));
    const grantMs = canonicalMs(r.grantedAt);
    if (endMs === null || grantMs === null || endMs - grantMs !== r.heldMs) out.heldMs.push([row, r.heldMs]);
    out.ended.push(p.str(r.ended));
    cols.profile.push(p.optObject(r.profile));
    cols.usage.push(p.optObject(r.usage));
    cols.releasedBy.push(p.optStr(r.releasedBy));
    cols.keyId.push(p.optStr(r.keyId));
  });
  for (const name of ['profile', 'usage', 'releasedBy', 'keyId'] as const) {
    const values = column(cols[name]);
    if (values) out[name] = values;
  }
  return out;
}

function packOwners(
  leases: readonly QuotaLease[],
  waiting: readonly QuotaWaiting[],
  owners: readonly [string, string][],
): PackedCarried['owners'] {
  const byLease = new Map(owners);
  const hexes: string[] = [];
  const unowned: number[] = [];
  const placed = new Set<string>();
  [...leases, ...waiting].forEach((entry, i) => {
    const digest = byLease.get(entry.leaseId);
    if (digest !== undefined && isHexDigest(digest) && !placed.has(entry.leaseId)) {
      hexes.push(digest);
      placed.add(entry.leaseId);
    } else unowned.push(i);
  });
  const other = [...byLease].filter(([leaseId]) => !placed.has(leaseId));
  return { digests: toBase64url(hexToBytes(hexes)), unowned, other };
}

/**
 * The packed form of `state`, times counted from `t0` (the pool's clock when it packs). Total: any state the pool holds
 * packs (what is not in its usual form is kept verbatim), so continuing as new never fails here.
 */
export function packCarried(state: CarriedState, t0: number): PackedCarried {
  const p = new Packer();
  const leases = packLeases(p, state.leases, t0);
  const waiting = packWaiting(p, state.waiting, t0);
  const journal = packJournal(p, state.journal, t0);
  const runs = packRuns(p, state.runs, t0);
  const atMs = new NumChain(t0);
  const samples: PackedSamples = { n: state.samples.length, atMs: [], used: [] };
  for (const s of state.samples) {
    samples.atMs.push(atMs.put(s.atMs));
    samples.used.push(p.vector(s.used));
  }
  const capRefusals = state.capRefusals.map(([holder, times]): [number, number[]] => [p.str(holder), times]);
  return {
    v: CARRY_VERSION,
    t0,
    strings: p.strings.values,
    vectors: p.vectors.values,
    objects: p.objects.values,
    ttls: p.ttls.values,
    leases,
    waiting,
    owners: packOwners(state.leases, state.waiting, state.owners),
    journal,
    runs,
    samples,
    timedOut: state.timedOut,
    capRefusals,
    stats: state.stats,
    nonces: state.nonces,
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Decoding

const isRecord = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);

/** The own member `key` of `o` (fixed names of the format, never a caller's string). */
const member = (o: Record<string, unknown>, key: string): unknown => (Object.hasOwn(o, key) ? o[key] : undefined);

function part(packed: Record<string, unknown>, name: string): Record<string, unknown> {
  const x = member(packed, name);
  if (!isRecord(x)) throw new CarryError(name, 'missing');
  return x;
}

function rows(of: Record<string, unknown>, where: string): number {
  const n = member(of, 'n');
  if (!Number.isSafeInteger(n) || (n as number) < 0) throw new CarryError(`${where}.n`, 'not a row count');
  return n as number;
}

/** Column `name` of `of`: `n` entries, or (optional) undefined when absent. */
function col(of: Record<string, unknown>, where: string, name: string, n: number, optional = false): unknown[] {
  const x = member(of, name);
  if (x === undefined && optional) return new Array<unknown>(n).fill(0);
  if (!Array.isArray(x)) throw new CarryError(`${where}.${name}`, 'missing');
  if (x.length !== n) throw new CarryError(`${where}.${name}`, `${x.length} rows, not ${n}`);
  return x;
}

function arrayOf(x: unknown, where: string): unknown[] {
  if (!Array.isArray(x)) throw new CarryError(where, 'not a list');
  return x;
}

const KINDS: readonly string[] = PipelineKind.options;
const OPS: readonly QuotaJournalEntry['op'][] = [
  'grant',
  'release',
  'refuse',
  'expire',
  'renew',
  'enqueue',
  'withdraw',
  'configure',
];
const REASONS: readonly RefusalReason[] = [
  'capacity',
  'pipeline-cap',
  'kind-cap',
  'queued-ahead',
  'never-fits',
  'wait-timeout',
  'pool-full',
];
const ENDED: readonly QuotaRun['ended'][] = ['released', 'expired'];

class Unpacker {
  readonly strings: string[];
  private readonly vectors: [string, number][][];
  private readonly objects: Record<string, string | number>[];
  readonly ttls: (number | null)[];

  constructor(packed: Record<string, unknown>) {
    this.strings = arrayOf(member(packed, 'strings'), 'strings').map((s, i) => {
      if (typeof s !== 'string') throw new CarryError(`strings[${i}]`, 'not a string');
      return s;
    });
    this.vectors = arrayOf(member(packed, 'vectors'), 'vectors').map((v, i) => {
      const flat = arrayOf(v, `vectors[${i}]`);
      if (flat.length % 2 !== 0) throw new CarryError(`vectors[${i}]`, 'not name and amount pairs');
      const pairs: [string, number][] = [];
      const names = new Set<string>();
      for (let k = 0; k < flat.length; k += 2) {
        const name = this.str(flat[k], `vectors[${i}][${k}]`);
        const amount = flat[k + 1];
        if (typeof amount !== 'number' || !Number.isFinite(amount))
          throw new CarryError(`vectors[${i}][${k + 1}]`, 'not an amount');
        if (names.has(name)) throw new CarryError(`vectors[${i}]`, `"${name}" twice`);
        names.add(name);
        pairs.push([name, amount]);
      }
      return pairs;
    });
    this.objects = arrayOf(member(packed, 'objects'), 'objects').map((o, i) => {
      if (!isRecord(o)) throw new CarryError(`objects[${i}]`, 'not an object');
      for (const [k, v] of Object.entries(o))
        if (typeof v !== 'string' && !(typeof v === 'number' && Number.isFinite(v)))
          throw new CarryError(`objects[${i}].${k}`, 'not a string or a number');
      return o as Record<string, string | number>;
    });
    this.ttls = arrayOf(member(packed, 'ttls'), 'ttls').map((t, i) => {
      if (t !== null && (typeof t !== 'number' || !Number.isFinite(t))) throw new CarryError(`ttls[${i}]`, 'not a TTL');
      return t as number | null;
    });
  }

  private index(x: unknown, size: number, where: string, row: number, what: string): number {
    if (!Number.isSafeInteger(x) || (x as number) < 0 || (x as number) >= size)
      throw new CarryError(where, `not one of the ${size} ${what}`, row);
    return x as number;
  }

  /** An optional reference: 0 is none, else index + 1 (checked before any arithmetic: no string slips through). */
  opt = (x: unknown, where: string, row = -1): number | undefined => {
    if (x === 0) return undefined;
    if (!Number.isSafeInteger(x) || (x as number) < 1) throw new CarryError(where, 'not a reference', row);
    return (x as number) - 1;
  };

  str = (x: unknown, where: string, row = -1): string =>
    this.strings[this.index(x, this.strings.length, where, row, 'strings')]!;
  optStr = (x: unknown, where: string, row = -1): string | undefined => {
    const i = this.opt(x, where, row);
    return i === undefined ? undefined : this.str(i, where, row);
  };
  oneOf = <T extends string>(x: unknown, allowed: readonly T[], where: string, row = -1): T => {
    const s = this.str(x, where, row);
    if (!allowed.includes(s as T)) throw new CarryError(where, `"${s}" is none of ${allowed.join(', ')}`, row);
    return s as T;
  };
  /** A fresh object per row: rows never share one. */
  vector = (x: unknown, where: string, row = -1): Resources =>
    Object.fromEntries(this.vectors[this.index(x, this.vectors.length, where, row, 'resource vectors')]!);
  optVector = (x: unknown, where: string, row = -1): Resources | undefined => {
    const i = this.opt(x, where, row);
    return i === undefined ? undefined : this.vector(i, where, row);
  };
  optObject = <T>(x: unknown, where: string, row = -1): T | undefined => {
    const i = this.opt(x, where, row);
    if (i === undefined) return undefined;
    const o = this.objects[this.index(i, this.objects.length, where, row, 'objects')]!;
    return Object.fromEntries(Object.entries(o)) as T;
  };
  ttl = (x: unknown, where: string, row = -1): number | null =>
    this.ttls[this.index(x, this.ttls.length, where, row, 'TTLs')]!;
}

function num(x: unknown, where: string, row = -1): number {
  if (typeof x !== 'number' || !Number.isFinite(x)) throw new CarryError(where, 'not a number', row);
  return x;
}

/** Sparse exceptions of a column: [row, value] pairs, rows ascending and within `n`. */
function exceptions<T>(x: unknown, n: number, where: string, value: (v: unknown, at: string) => T): Map<number, T> {
  const out = new Map<number, T>();
  let last = -1;
  arrayOf(x, where).forEach((e, i) => {
    const pair = arrayOf(e, `${where}[${i}]`);
    const row = pair[0];
    if (pair.length !== 2 || !Number.isSafeInteger(row) || (row as number) <= last || (row as number) >= n)
      throw new CarryError(`${where}[${i}]`, 'not a [row, value] of a later row');
    last = row as number;
    out.set(last, value(pair[1], `${where}[${i}]`));
  });
  return out;
}

function unpackLeases(u: Unpacker, x: Record<string, unknown>, t0: number): QuotaLease[] {
  const w = 'leases';
  const n = rows(x, w);
  const c = (name: string, optional = false) => col(x, w, name, n, optional);
  const [idShared, idRest, holder, kind, resources, grantedAt, renewedAt, ttl, expected, profile, waitedMs] = [
    c('idShared'),
    c('idRest'),
    c('holder'),
    c('kind'),
    c('resources'),
    c('grantedAt'),
    c('renewedAt'),
    c('ttl'),
    c('expectedReleaseAt', true),
    c('profile', true),
    c('waitedMs'),
  ];
  const expires = exceptions(member(x, 'expiresAt'), n, `${w}.expiresAt`, (v, at) => {
    if (v !== null && typeof v !== 'string') throw new CarryError(at, 'not a time or null');
    return v;
  });
  const granted = new TimeChain(t0);
  const out: QuotaLease[] = [];
  let prevId = '';
  for (let i = 0; i < n; i++) {
    const shared = idShared[i];
    const rest = idRest[i];
    if (!Number.isSafeInteger(shared) || (shared as number) < 0 || (shared as number) > prevId.length)
      throw new CarryError('leases.idShared', 'not a length of the id before', i);
    if (typeof rest !== 'string') throw new CarryError('leases.idRest', 'not a string', i);
    const leaseId = prevId.slice(0, shared as number) + rest;
    if (leaseId.length === 0) throw new CarryError('leases.idRest', 'an empty lease id', i);
    prevId = leaseId;
    const grantedIso = granted.take(grantedAt[i], 'leases.grantedAt', i);
    const base = canonicalMs(grantedIso) ?? t0;
    const renewedIso = fromOffset(renewedAt[i], base, 'leases.renewedAt', i);
    const ttlMs = u.ttl(ttl[i], 'leases.ttl', i);
    let expiresAt: string | null;
    if (expires.has(i)) expiresAt = expires.get(i)!;
    else {
      const renewed = canonicalMs(renewedIso);
      const derived = ttlMs === null ? null : renewed === null ? undefined : isoOf(renewed + ttlMs);
      if (derived === undefined) throw new CarryError('leases.expiresAt', 'neither stored nor derivable', i);
      expiresAt = derived;
    }
    const e = expected[i];
    let expectedReleaseAt: string | undefined;
    if (e !== 0) {
      if (typeof e === 'number' && e < 0) throw new CarryError('leases.expectedReleaseAt', 'before its grant', i);
      expectedReleaseAt = fromOffset(e, base, 'leases.expectedReleaseAt', i);
    }
    const prof = u.optObject<RunProfile>(profile[i], 'leases.profile', i);
    out.push({
      leaseId,
      holder: u.str(holder[i], 'leases.holder', i),
      kind: u.oneOf(kind[i], KINDS as PipelineKind[], 'leases.kind', i),
      resources: u.vector(resources[i], 'leases.resources', i),
      grantedAt: grantedIso,
      renewedAt: renewedIso,
      expiresAt,
      ttlMs,
      ...(expectedReleaseAt !== undefined ? { expectedReleaseAt } : {}),
      ...(prof !== undefined ? { profile: prof } : {}),
      waitedMs: num(waitedMs[i], 'leases.waitedMs', i),
    });
  }
  return out;
}

function unpackWaiting(u: Unpacker, x: Record<string, unknown>, t0: number): QuotaWaiting[] {
  const w = 'waiting';
  const n = rows(x, w);
  const c = (name: string) => col(x, w, name, n);
  const [leaseId, holder, kind, resources, priority, enqueuedAt, deadline, ttl, expectedDuration, profile, notify] = [
    c('leaseId'),
    c('holder'),
    c('kind'),
    c('resources'),
    c('priority'),
    c('enqueuedAt'),
    c('deadline'),
    c('ttl'),
    c('expectedDurationMs'),
    c('profile'),
    c('notify'),
  ];
  const enqueued = new TimeChain(t0);
  const out: QuotaWaiting[] = [];
  for (let i = 0; i < n; i++) {
    const id = leaseId[i];
    if (typeof id !== 'string' || id.length === 0) throw new CarryError('waiting.leaseId', 'not a lease id', i);
    const enqueuedIso = enqueued.take(enqueuedAt[i], 'waiting.enqueuedAt', i);
    const ttlRef = u.opt(ttl[i], 'waiting.ttl', i);
    const ttlMs = ttlRef === undefined ? undefined : u.ttl(ttlRef, 'waiting.ttl', i);
    const expectedDurationMs =
      expectedDuration[i] === null ? undefined : num(expectedDuration[i], 'waiting.expected', i);
    const prof = u.optObject<RunProfile>(profile[i], 'waiting.profile', i);
    const to = u.optObject<{ workflowId: string }>(notify[i], 'waiting.notify', i);
    if (to !== undefined && typeof to.workflowId !== 'string')
      throw new CarryError('waiting.notify', 'no workflow id', i);
    out.push({
      leaseId: id,
      holder: u.str(holder[i], 'waiting.holder', i),
      kind: u.oneOf(kind[i], KINDS as PipelineKind[], 'waiting.kind', i),
      resources: u.vector(resources[i], 'waiting.resources', i),
      priority: num(priority[i], 'waiting.priority', i),
      enqueuedAt: enqueuedIso,
      deadline: fromOffset(deadline[i], canonicalMs(enqueuedIso) ?? t0, 'waiting.deadline', i),
      ...(ttlMs !== undefined ? { ttlMs } : {}),
      ...(expectedDurationMs !== undefined ? { expectedDurationMs } : {}),
      ...(prof !== undefined ? { profile: prof } : {}),
      ...(to !== undefined ? { notify: to } : {}),
    });
  }
  return out;
}

function unpackJournal(u: Unpacker, x: Record<string, unknown>, t0: number): QuotaJournalEntry[] {
  const w = 'journal';
  const n = rows(x, w);
  const c = (name: string, optional = false) => col(x, w, name, n, optional);
  const [at, op, leaseId, holder, resources, reason, by, keyId, used] = [
    c('at'),
    c('op'),
    c('leaseId'),
    c('holder', true),
    c('resources', true),
    c('reason', true),
    c('by', true),
    c('keyId', true),
    c('used', true),
  ];
  const chain = new TimeChain(t0);
  const out: QuotaJournalEntry[] = [];
  for (let i = 0; i < n; i++) {
    const id = leaseId[i];
    if (id !== 0 && typeof id !== 'string') throw new CarryError('journal.leaseId', 'not a lease id', i);
    const h = u.optStr(holder[i], 'journal.holder', i);
    const r = u.optVector(resources[i], 'journal.resources', i);
    const reasonRef = u.opt(reason[i], 'journal.reason', i);
    const why = reasonRef === undefined ? undefined : u.oneOf(reasonRef, REASONS, 'journal.reason', i);
    const who = u.optStr(by[i], 'journal.by', i);
    const key = u.optStr(keyId[i], 'journal.keyId', i);
    const usage = u.optVector(used[i], 'journal.used', i);
    out.push({
      at: chain.take(at[i], 'journal.at', i),
      op: u.oneOf(op[i], OPS, 'journal.op', i),
      ...(id !== 0 ? { leaseId: id as string } : {}),
      ...(h !== undefined ? { holder: h } : {}),
      ...(r !== undefined ? { resources: r } : {}),
      ...(why !== undefined ? { reason: why } : {}),
      ...(who !== undefined ? { by: who } : {}),
      ...(key !== undefined ? { keyId: key } : {}),
      ...(usage !== undefined ? { used: usage } : {}),
    });
  }
  return out;
}

function unpackRuns(u: Unpacker, x: Record<string, unknown>, t0: number): QuotaRun[] {
  const w = 'runs';
  const n = rows(x, w);
  const c = (name: string, optional = false) => col(x, w, name, n, optional);
  const [leaseId, holder, kind, resources, endedAt, grantedAt, ended, profile, usage, releasedBy, keyId] = [
    c('leaseId'),
    c('holder'),
    c('kind'),
    c('resources'),
    c('endedAt'),
    c('grantedAt'),
    c('ended'),
    c('profile', true),
    c('usage', true),
    c('releasedBy', true),
    c('keyId', true),
  ];
  const held = exceptions(member(x, 'heldMs'), n, `${w}.heldMs`, num);
  const chain = new TimeChain(t0);
  const out: QuotaRun[] = [];
  for (let i = 0; i < n; i++) {
    const id = leaseId[i];
    if (typeof id !== 'string' || id.length === 0) throw new CarryError('runs.leaseId', 'not a lease id', i);
    const endedIso = chain.take(endedAt[i], 'runs.endedAt', i);
    const endMs = canonicalMs(endedIso);
    const grantedIso = fromOffset(grantedAt[i], endMs ?? t0, 'runs.grantedAt', i);
    const grantMs = canonicalMs(grantedIso);
    let heldMs: number;
    if (held.has(i)) heldMs = held.get(i)!;
    else if (endMs !== null && grantMs !== null) heldMs = endMs - grantMs;
    else throw new CarryError('runs.heldMs', 'neither stored nor derivable', i);
    const prof = u.optObject<RunProfile>(profile[i], 'runs.profile', i);
    const use = u.optObject<RunUsage>(usage[i], 'runs.usage', i);
    const by = u.optStr(releasedBy[i], 'runs.releasedBy', i);
    const key = u.optStr(keyId[i], 'runs.keyId', i);
    out.push({
      leaseId: id,
      holder: u.str(holder[i], 'runs.holder', i),
      kind: u.oneOf(kind[i], KINDS as PipelineKind[], 'runs.kind', i),
      resources: u.vector(resources[i], 'runs.resources', i),
      grantedAt: grantedIso,
      endedAt: endedIso,
      heldMs,
      ended: u.oneOf(ended[i], ENDED, 'runs.ended', i),
      ...(prof !== undefined ? { profile: prof } : {}),
      ...(use !== undefined ? { usage: use } : {}),
      ...(by !== undefined ? { releasedBy: by } : {}),
      ...(key !== undefined ? { keyId: key } : {}),
    });
  }
  return out;
}

function unpackOwners(
  x: Record<string, unknown>,
  leases: readonly QuotaLease[],
  waiting: readonly QuotaWaiting[],
): [string, string][] {
  const entries = [...leases, ...waiting];
  const unowned = new Set<number>();
  arrayOf(member(x, 'unowned'), 'owners.unowned').forEach((i, k) => {
    if (!Number.isSafeInteger(i) || (i as number) < 0 || (i as number) >= entries.length || unowned.has(i as number))
      throw new CarryError(`owners.unowned[${k}]`, 'not a lease or waiting reservation');
    unowned.add(i as number);
  });
  const digests = member(x, 'digests');
  if (typeof digests !== 'string') throw new CarryError('owners.digests', 'not a string');
  const owned = entries.length - unowned.size;
  const bytes = fromBase64url(digests, owned * DIGEST_BYTES, 'owners.digests');
  const out: [string, string][] = [];
  let k = 0;
  entries.forEach((entry, i) => {
    if (unowned.has(i)) return;
    out.push([entry.leaseId, bytesToHex(bytes, k * DIGEST_BYTES)]);
    k++;
  });
  arrayOf(member(x, 'other'), 'owners.other').forEach((e, i) => {
    const pair = arrayOf(e, `owners.other[${i}]`);
    if (pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string')
      throw new CarryError(`owners.other[${i}]`, 'not a [lease id, digest]');
    out.push([pair[0], pair[1]]);
  });
  return out;
}

function unpackTimedOut(x: unknown): TimedOut[] {
  return arrayOf(x, 'timedOut').map((e, i) => {
    const pair = arrayOf(e, `timedOut[${i}]`);
    const result = pair[1];
    if (
      pair.length !== 2 ||
      typeof pair[0] !== 'string' ||
      !isRecord(result) ||
      member(result, 'granted') !== false ||
      typeof member(result, 'message') !== 'string' ||
      !Array.isArray(member(result, 'shortfalls'))
    )
      throw new CarryError(`timedOut[${i}]`, 'not a [lease id, refusal]');
    return pair as TimedOut;
  });
}

function unpackStats(x: unknown): Partial<CarriedStats> {
  if (!isRecord(x)) throw new CarryError('stats', 'not an object');
  const out: Partial<CarriedStats> = {};
  for (const key of ['grants', 'refusals', 'releases', 'expirations', 'continuedAsNew'] as const) {
    const v = member(x, key);
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || (v as number) < 0) throw new CarryError(`stats.${key}`, 'not a count');
    out[key] = v as number;
  }
  return out;
}

/** Whether `carried` is the packed form (else the plain form of runs before it). */
export function isPacked(carried: unknown): boolean {
  return isRecord(carried) && member(carried, 'v') !== undefined;
}

/**
 * The state `packed` holds, exactly as it was packed; a {@link CarryError} naming the first problem when it is not a
 * packed state of this version (corrupted, truncated, or from a later worker).
 */
export function unpackCarried(packed: unknown): CarriedState {
  if (!isRecord(packed)) throw new CarryError('(root)', 'not an object');
  const v = member(packed, 'v');
  if (v !== CARRY_VERSION)
    throw new CarryError('v', `version ${JSON.stringify(v)}, this worker reads ${CARRY_VERSION}`);
  const t0 = member(packed, 't0');
  if (!Number.isSafeInteger(t0) || isoOf(t0 as number) === undefined) throw new CarryError('t0', 'not a time');
  const u = new Unpacker(packed);
  const leases = unpackLeases(u, part(packed, 'leases'), t0 as number);
  const waiting = unpackWaiting(u, part(packed, 'waiting'), t0 as number);
  const samplesPart = part(packed, 'samples');
  const ns = rows(samplesPart, 'samples');
  const atMs = col(samplesPart, 'samples', 'atMs', ns);
  const used = col(samplesPart, 'samples', 'used', ns);
  const chain = new NumChain(t0 as number);
  const samples: UsageSample[] = atMs.map((a, i) => ({
    atMs: chain.take(a, `samples.atMs[${i}]`),
    used: u.vector(used[i], `samples.used[${i}]`),
  }));
  const capRefusals = arrayOf(member(packed, 'capRefusals'), 'capRefusals').map((e, i): [string, number[]] => {
    const pair = arrayOf(e, `capRefusals[${i}]`);
    if (pair.length !== 2) throw new CarryError(`capRefusals[${i}]`, 'not a [holder, times]');
    const times = arrayOf(pair[1], `capRefusals[${i}][1]`).map((t, k) => num(t, `capRefusals[${i}][1][${k}]`));
    return [u.str(pair[0], `capRefusals[${i}][0]`), times];
  });
  const nonces = arrayOf(member(packed, 'nonces'), 'nonces').map((s, i) => {
    if (typeof s !== 'string') throw new CarryError(`nonces[${i}]`, 'not a string');
    return s;
  });
  return {
    leases,
    waiting,
    timedOut: unpackTimedOut(member(packed, 'timedOut')),
    journal: unpackJournal(u, part(packed, 'journal'), t0 as number),
    runs: unpackRuns(u, part(packed, 'runs'), t0 as number),
    samples,
    capRefusals,
    stats: unpackStats(member(packed, 'stats')),
    owners: unpackOwners(part(packed, 'owners'), leases, waiting),
    nonces,
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Size

/** Bytes of `s` in UTF-8 (what a JSON payload weighs), counted without encoding it. */
export function utf8Bytes(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/** JSON bytes of `value` (UTF-8). */
export const jsonBytes = (value: unknown): number => utf8Bytes(JSON.stringify(value));

/** What {@link fitCarried} dropped to bring a state under its budget, per part (oldest entries first). */
export type Dropped = Partial<Record<HistoryPart | 'capRefusals', number>>;

/**
 * `state` packed, its history trimmed until `measure(packed)` (the bytes of the whole continue-as-new input) is at most
 * `budget`: the oldest entries of the journal, the runs, the usage samples and the timed-out reservations go first, in
 * the same proportion from each; then, if that is not enough, the cap refusals. Leases, waiting reservations, owner
 * digests, nonces and counters are never dropped: when they alone pass the budget the result is over it (`over`).
 */
export function fitCarried(
  state: CarriedState,
  t0: number,
  budget: number,
  measure: (packed: PackedCarried) => number,
): { packed: PackedCarried; bytes: number; before: number; dropped: Dropped; over: boolean } {
  let packed = packCarried(state, t0);
  const before = measure(packed);
  let bytes = before;
  if (bytes <= budget) return { packed, bytes, before, dropped: {}, over: false };
  const kept = { ...state };
  const dropped: Dropped = {};
  const drop = (name: HistoryPart | 'capRefusals', count: number) => {
    const list = kept[name] as unknown[];
    const n = Math.min(list.length, count);
    if (n <= 0) return;
    kept[name] = list.slice(n) as never;
    dropped[name] = (dropped[name] ?? 0) + n;
  };
  // What the history weighs: the state packed without it.
  const bare: CarriedState = { ...state, journal: [], runs: [], samples: [], timedOut: [], capRefusals: [] };
  const essential = measure(packCarried(bare, t0));
  const withCaps = measure(packCarried({ ...bare, capRefusals: state.capRefusals }, t0));
  for (let round = 0; bytes > budget && round < 8; round++) {
    const history = Math.max(bytes - withCaps, 1);
    // The share of each part to drop, with some slack so that one or two rounds do; the last round drops it all.
    const share = round >= 6 ? 1 : Math.min(1, ((bytes - budget) / history) * 1.1 + 0.02);
    if (HISTORY_PARTS.every((name) => kept[name].length === 0)) break;
    for (const name of HISTORY_PARTS) drop(name, Math.ceil(kept[name].length * share));
    packed = packCarried(kept, t0);
    bytes = measure(packed);
  }
  if (bytes > budget && kept.capRefusals.length > 0 && essential <= budget) {
    // Oldest holders first (the order they were first refused in).
    const over = bytes - budget;
    const caps = Math.max(bytes - essential, 1);
    drop('capRefusals', Math.ceil(kept.capRefusals.length * Math.min(1, (over / caps) * 1.1 + 0.02)));
    packed = packCarried(kept, t0);
    bytes = measure(packed);
    if (bytes > budget) {
      drop('capRefusals', kept.capRefusals.length);
      packed = packCarried(kept, t0);
      bytes = measure(packed);
    }
  }
  return { packed, bytes, before, dropped, over: bytes > budget };
}
