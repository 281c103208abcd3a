import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { AdminOp } from '../shared/gateway-api';

/** Name of the routing state file inside the gateway's data dir. */
export const ROUTING_FILE = 'routing.json';

/** How many admin ops the journal keeps; an opId stays idempotent while it is in the journal. */
export const DEFAULT_JOURNAL_LIMIT = 10_000;

export const DeployedVersionRecord = z.object({
  version: z.string(),
  /** Absolute path of the artifact folder. */
  artifactDir: z.string(),
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
});
export type ModelRecord = z.infer<typeof ModelRecord>;

/** One journal entry: the op as requested and whether it changed anything (false for a no-op success). */
export const JournalEntry = AdminOp.extend({ applied: z.boolean() });
export type JournalEntry = z.infer<typeof JournalEntry>;

/** Everything the gateway persists. Plain JSON; treat a loaded state as immutable and save a new one per change. */
export const RoutingState = z.object({
  format: z.literal(1),
  nextSeq: z.number().int().nonnegative(),
  models: z.record(z.string(), ModelRecord),
  /** Admin ops in the order they were accepted, oldest first, capped at the journal limit. */
  ops: z.array(JournalEntry),
});
export type RoutingState = z.infer<typeof RoutingState>;

export function emptyRoutingState(): RoutingState {
  return { format: 1, nextSeq: 0, models: {}, ops: [] };
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

  constructor(
    readonly dataDir: string,
    readonly journalLimit: number = DEFAULT_JOURNAL_LIMIT,
  ) {
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
    const parsed = RoutingState.safeParse(json);
    if (!parsed.success) throw new RoutingStateError(`${this.file} is invalid:\n${z.prettifyError(parsed.error)}`);
    return parsed.data;
  }

  /** Writes `state` atomically and durably. */
  async save(state: RoutingState): Promise<void> {
    const temp = `${this.file}.${process.pid}.${++this.tempCounter}.tmp`;
    try {
      const handle = await open(temp, 'w');
      try {
        await handle.writeFile(JSON.stringify(state));
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

  /** `ops` with `entry` appended, keeping the newest `journalLimit` entries. */
  appendOp(ops: readonly JournalEntry[], entry: JournalEntry): JournalEntry[] {
    const kept = ops.length >= this.journalLimit ? ops.slice(ops.length - this.journalLimit + 1) : ops;
    return [...kept, entry];
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
