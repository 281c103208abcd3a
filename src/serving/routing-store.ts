import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ArtifactDigest } from '../shared/artifact-digest';
import { AdminOp, ModelRoutes } from '../shared/gateway-api';
import { mapOf } from '../shared/own';

/** Name of the routing state file inside the gateway's data dir. */
export const ROUTING_FILE = 'routing.json';

/**
 * How many admin ops the journal keeps; an opId stays idempotent while it is in the journal. Every admin op rewrites
 * the whole state file, so the journal is also capped in bytes ({@link DEFAULT_JOURNAL_MAX_BYTES}): the newest ops are
 * kept within both. A lifecycle's retries come within minutes, hundreds of ops before these bounds forget them.
 */
export const DEFAULT_JOURNAL_LIMIT = 1_000;

/**
 * Most bytes of JSON the journal's entries take together. An entry is at most about 6.5 KB (an opId of 200
 * characters, model and version names of 63, a table of 64 weights) and usually under 250 bytes, so the journal keeps
 * at least 160 ops, usually all 1,000, and routing.json is the deployed versions (about 4.4 KB each at most: an
 * artifact path of up to 4,096 characters and a digest of 71) plus at most this.
 */
export const DEFAULT_JOURNAL_MAX_BYTES = 1024 * 1024;

export const DeployedVersionRecord = z.object({
  version: z.string(),
  /** Real path (symbolic links resolved) of the artifact folder, inside the gateway's artifact root when deployed. */
  artifactDir: z.string(),
  /**
   * The artifact's digest as recorded at training (src/artifacts/digest.ts), checked again whenever the gateway loads
   * the version. Absent in records written before digests: such a version is not reloaded until it is redeployed
   * with its digest.
   */
  artifactDigest: ArtifactDigest.optional(),
  /** The artifact store URI it was fetched from (then `artifactDir` is the gateway's cache folder): fetched again on restore. */
  artifactUri: z.string().optional(),
  /** A regression's prediction bin edges, as the deploy gave them (src/shared/gateway-api.ts `PredictionEdges`). */
  predictionEdges: z.array(z.number()).optional(),
  deployedAt: z.string(),
  /** Deploy sequence number, unique and increasing across the gateway: the routing order (newest first). */
  seq: z.number().int().nonnegative(),
});
export type DeployedVersionRecord = z.infer<typeof DeployedVersionRecord>;

export const ModelRecord = z.object({
  /** Oldest deploy first. */
  versions: z.array(DeployedVersionRecord),
  /** Empty until the first weights are set: the model then receives no traffic. */
  weights: z.record(z.string(), z.number()),
  /** Pinned routes and shadow traffic; absent when the model has none. */
  routes: ModelRoutes.optional(),
});
export type ModelRecord = z.infer<typeof ModelRecord>;

/** One journal entry: the op as requested and whether it changed anything (false for a no-op success). */
export const JournalEntry = AdminOp.extend({ applied: z.boolean() });
export type JournalEntry = z.infer<typeof JournalEntry>;

/** Everything the gateway persists, as written in routing.json. */
export const RoutingFile = z.object({
  format: z.literal(1),
  nextSeq: z.number().int().nonnegative(),
  models: z.record(z.string(), ModelRecord),
  /** Admin ops in the order they were accepted, oldest first, capped at the journal's limits. */
  ops: z.array(JournalEntry),
});
export type RoutingFile = z.infer<typeof RoutingFile>;

/** A model's routing in memory: its versions (oldest deploy first) and its weights by version name. */
export interface ModelState {
  readonly versions: readonly DeployedVersionRecord[];
  readonly weights: ReadonlyMap<string, number>;
  readonly routes?: ModelRoutes;
}

/**
 * The routing state in memory, keyed by model and version names in Maps. Immutable: the gateway saves a new state per
 * change and makes it current once it is on disk.
 */
export interface RoutingState {
  readonly nextSeq: number;
  readonly models: ReadonlyMap<string, ModelState>;
  /** Admin ops in the order they were accepted, oldest first, capped at the journal's limits. */
  readonly ops: readonly JournalEntry[];
}

export function emptyRoutingState(): RoutingState {
  return { nextSeq: 0, models: new Map(), ops: [] };
}

/** The JSON of a state, as routing.json holds it (Object.fromEntries defines own properties only). */
export function routingFileOf(state: RoutingState): RoutingFile {
  return {
    format: 1,
    nextSeq: state.nextSeq,
    models: Object.fromEntries(
      [...state.models].map(([model, m]) => [
        model,
        {
          versions: [...m.versions],
          weights: Object.fromEntries(m.weights),
          ...(m.routes ? { routes: m.routes } : {}),
        },
      ]),
    ),
    ops: [...state.ops],
  };
}

/** The corrupt or unreadable state file; the gateway refuses to start rather than forget its routing. */
export class RoutingStateError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RoutingStateError';
  }
}

/**
 * Persists the gateway's routing state (deployed versions, weights, ops journal) as one JSON file in its data dir.
 * Every save is atomic: write a temp file, fsync it, rename it over the old one, fsync the folder. A crash leaves
 * either the old or the new state, never a torn file. Saves must not overlap (the gateway serialises admin ops).
 */
export class RoutingStore {
  readonly file: string;
  private tempCounter = 0;
  /** JSON bytes of each journal entry, computed once (entries are immutable and shared between states). */
  private readonly entryBytes = new WeakMap<JournalEntry, number>();

  constructor(
    readonly dataDir: string,
    readonly journalLimit: number = DEFAULT_JOURNAL_LIMIT,
    readonly journalMaxBytes: number = DEFAULT_JOURNAL_MAX_BYTES,
  ) {
    if (!(Number.isInteger(journalLimit) && journalLimit >= 1)) {
      throw new RangeError(`journalLimit must be a whole number >= 1, got ${journalLimit}`);
    }
    if (!(journalMaxBytes > 0)) throw new RangeError(`journalMaxBytes must be > 0, got ${journalMaxBytes}`);
    this.file = path.join(dataDir, ROUTING_FILE);
  }

  /** Reads the state; an empty state when the file does not exist yet. Throws {@link RoutingStateError} if corrupt. */
  async load(): Promise<RoutingState> {
    await mkdir(this.dataDir, { recursive: true });
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyRoutingState();
      throw new RoutingStateError(`cannot read ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new RoutingStateError(`${this.file} is not JSON: ${(err as Error).message}`, { cause: err });
    }
    const parsed = RoutingFile.safeParse(json);
    if (!parsed.success) throw new RoutingStateError(`${this.file} is invalid:\n${z.prettifyError(parsed.error)}`);
    const file = parsed.data;
    return {
      nextSeq: file.nextSeq,
      models: new Map(
        Object.entries(file.models).map(([model, m]) => [
          model,
          { versions: m.versions, weights: mapOf(m.weights), ...(m.routes ? { routes: m.routes } : {}) },
        ]),
      ),
      // A journal written under larger limits is cut to the current ones.
      ops: this.keep(file.ops),
    };
  }

  /** Writes `state` atomically and durably. */
  async save(state: RoutingState): Promise<void> {
    const temp = `${this.file}.${process.pid}.${++this.tempCounter}.tmp`;
    try {
      const handle = await open(temp, 'w');
      try {
        await handle.writeFile(JSON.stringify(routingFileOf(state)));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.file);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    await syncDir(this.dataDir);
  }

  /** `ops` with `entry` appended, keeping the newest entries within `journalLimit` and `journalMaxBytes`. */
  appendOp(ops: readonly JournalEntry[], entry: JournalEntry): JournalEntry[] {
    return this.keep([...ops, entry]);
  }

  /** The newest entries of `ops` within the journal's limits (the newest one always). */
  private keep(ops: readonly JournalEntry[]): JournalEntry[] {
    let from = ops.length;
    let bytes = 0;
    while (from > 0 && ops.length - from < this.journalLimit) {
      const next = bytes + this.bytesOf(ops[from - 1] as JournalEntry);
      if (next > this.journalMaxBytes && from < ops.length) break;
      bytes = next;
      from--;
    }
    return ops.slice(from);
  }

  private bytesOf(entry: JournalEntry): number {
    let bytes = this.entryBytes.get(entry);
    if (bytes === undefined) {
      bytes = Buffer.byteLength(JSON.stringify(entry)) + 1;
      this.entryBytes.set(entry, bytes);
    }
    return bytes;
  }
}

/** fsync a folder so a rename inside it is durable; skipped where folders cannot be opened (Windows). */
async function syncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
  } catch {
    return;
  }
  try {
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on a folder; the rename is still atomic there.
  } finally {
    await handle.close();
  }
}
