import { MAX_LABEL_REQUEST_ID_LENGTH, type LabelledPrediction } from '../shared/quality';
import type { Task } from '../shared/task';
import type { VersionCounters } from './telemetry';

/** One successful prediction the gateway remembers, so that its ground-truth label can join it when it arrives. */
export interface RememberedPrediction {
  readonly version: string;
  /**
   * The counters of the version that answered. A label counts there only while they are still the version's live
   * counters: an undeploy (or an undeploy and a redeploy under the same name) makes its earlier predictions unknown.
   */
  readonly counters: VersionCounters;
  /** What the model that answered predicts: how a label is read and counted. */
  readonly task: Task;
  /** The classes of the model that answered (its manifest's array, shared): the labels it accepts; [] for regression. */
  readonly classes: readonly number[];
  /** A classifier's predicted class label. */
  readonly label?: number;
  /** A binary classifier's positive-class probability. */
  readonly probability?: number;
  /** A multiclass classifier's probabilities (in the order of `classes`) and its predicted class's index. */
  readonly probabilities?: Float32Array;
  readonly classIndex?: number;
  /** A regression's predicted value. */
  readonly value?: number;
  /** Epoch milliseconds of the prediction. */
  readonly atMs: number;
  /** A label has joined this prediction; later ones are duplicates. */
  labelled: boolean;
}

/**
 * Bounds of the gateway's memory of predictions awaiting their labels: count and age here, and the request id's length
 * ({@link MAX_LABEL_REQUEST_ID_LENGTH}; model names are ModelNames). An entry takes about 0.3 KB of heap with a
 * generated request id and 0.6 KB with one of the longest length (measured on Node 20), so the default count holds
 * the memory to about 60 MB whatever callers send; a multiclass prediction adds 4 bytes per class (at most 64).
 */
export interface PredictionMemoryOptions {
  /** Predictions remembered at most, all models together (default 100,000); the oldest are forgotten first. 0 keeps none. */
  maxEntries?: number;
  /** Predictions older than this are forgotten (default 24 h). */
  maxAgeMs?: number;
}

export const DEFAULT_PREDICTION_MEMORY: Required<PredictionMemoryOptions> = {
  maxEntries: 100_000,
  maxAgeMs: 24 * 60 * 60 * 1000,
};

/**
 * Recent successful predictions by model and request id, bounded in count and age. Predictions arrive in time order,
 * so the oldest is always at the head of a queue kept beside the Map: eviction is O(1) per entry forgotten. (Taking
 * the Map's own first entry instead costs a scan over every slot deleted since V8 last compacted the table: at a full
 * memory, one eviction per prediction made that tens of microseconds per request and growing, `npm run
 * bench:memory`.) In memory only: a gateway restart forgets every prediction, and their labels then count as unknown.
 */
export class PredictionMemory {
  private readonly entries = new Map<string, StoredPrediction>();
  /**
   * Every remembered entry in the order it was remembered, from `head` on. An entry replaced or forgotten since is
   * stale (the Map holds another object, or none under its key) and is skipped.
   */
  private order: StoredPrediction[] = [];
  private head = 0;
  readonly maxEntries: number;
  readonly maxAgeMs: number;

  constructor(
    options: PredictionMemoryOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.maxEntries = options.maxEntries ?? DEFAULT_PREDICTION_MEMORY.maxEntries;
    this.maxAgeMs = options.maxAgeMs ?? DEFAULT_PREDICTION_MEMORY.maxAgeMs;
    if (!(Number.isInteger(this.maxEntries) && this.maxEntries >= 0)) {
      throw new RangeError(`maxEntries must be a whole number >= 0, got ${this.maxEntries}`);
    }
    if (!(this.maxAgeMs > 0)) throw new RangeError(`maxAgeMs must be > 0, got ${this.maxAgeMs}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Remembers a successful prediction, and says whether it did. Request ids are the caller's choice, so one may name
   * a prediction that is still remembered and waiting for its label: then the first prediction wins and this one is
   * not remembered (false). Otherwise anyone who learnt or guessed another caller's request id could replace that
   * caller's prediction with one of their own, and the label meant for it would judge the wrong answer.
   * A request id whose prediction was labelled already is free again: it is replaced (moved to the newest end,
   * unlabelled), and the label that comes for it is about the latest answer. A request id longer than a label can
   * name ({@link MAX_LABEL_REQUEST_ID_LENGTH}) is not remembered: it could never be labelled.
   */
  remember(model: string, requestId: string, prediction: Omit<RememberedPrediction, 'atMs' | 'labelled'>): boolean {
    if (requestId.length > MAX_LABEL_REQUEST_ID_LENGTH) return false;
    const key = keyOf(model, requestId);
    const atMs = this.now();
    const earlier = this.entries.get(key);
    if (earlier && !earlier.labelled && earlier.atMs > atMs - this.maxAgeMs) return false;
    // Deleted first, so that the new entry goes to the Map's newest end.
    if (earlier) this.entries.delete(key);
    const entry = new StoredPrediction(key, prediction, atMs);
    this.entries.set(key, entry);
    this.order.push(entry);
    this.evict(atMs);
    return this.entries.has(key);
  }

  /** The remembered prediction, or undefined when there is none (never made, failed, or already forgotten). */
  find(model: string, requestId: string): RememberedPrediction | undefined {
    const nowMs = this.now();
    this.evict(nowMs);
    const entry = this.entries.get(keyOf(model, requestId));
    // Only an out-of-order clock can leave an expired entry behind the first one.
    if (entry && entry.atMs <= nowMs - this.maxAgeMs) {
      this.entries.delete(keyOf(model, requestId));
      return undefined;
    }
    return entry;
  }

  /**
   * Joins a label to a remembered prediction and counts it in the version's quality counters, once: a second label
   * for the same prediction is a duplicate and changes nothing. `actual` is a class of the model (its value, as in
   * `classes`) for a classifier, the true value for a regression.
   */
  label(entry: RememberedPrediction, actual: number): 'accepted' | 'duplicate' {
    if (entry.labelled) return 'duplicate';
    entry.labelled = true;
    entry.counters.recordLabel(labelled(entry, actual));
    return 'accepted';
  }

  private evict(nowMs: number): void {
    const oldest = nowMs - this.maxAgeMs;
    const order = this.order;
    while (this.head < order.length) {
      const entry = order[this.head]!;
      if (this.entries.get(entry.key) === entry) {
        if (this.entries.size <= this.maxEntries && entry.atMs > oldest) break;
        this.entries.delete(entry.key);
      }
      this.head++;
    }
    // The consumed head is dropped once it is half the queue; stale items (replaced request ids) once they outnumber
    // the live ones: both amortised O(1) per prediction.
    if (this.head > 1024 && this.head * 2 > order.length) {
      this.order = order.slice(this.head);
      this.head = 0;
    } else if (order.length - this.head > 2 * this.entries.size + 1024) {
      this.order = [...this.entries.values()];
      this.head = 0;
    }
  }
}

/**
 * A remembered prediction as the memory keeps it: one class, so that every entry has the same few fields (a spread
 * copy of the caller's object took about 440 bytes of heap, this about 150) and carries its own key for eviction.
 * Every entry survives several young-generation collections and is copied by each: its size is GC time per request.
 */
class StoredPrediction implements RememberedPrediction {
  readonly version: string;
  readonly counters: VersionCounters;
  readonly task: Task;
  readonly classes: readonly number[];
  readonly label: number | undefined;
  readonly probability: number | undefined;
  readonly probabilities: Float32Array | undefined;
  readonly classIndex: number | undefined;
  readonly value: number | undefined;
  labelled = false;

  constructor(
    readonly key: string,
    p: Omit<RememberedPrediction, 'atMs' | 'labelled'>,
    readonly atMs: number,
  ) {
    this.version = p.version;
    this.counters = p.counters;
    this.task = p.task;
    this.classes = p.classes;
    this.label = p.label;
    this.probability = p.probability;
    this.probabilities = p.probabilities;
    this.classIndex = p.classIndex;
    this.value = p.value;
  }
}

// Model names cannot hold a newline (ModelName), so the key is unambiguous.
function keyOf(model: string, requestId: string): string {
  return `${model}\n${requestId}`;
}

function labelled(entry: RememberedPrediction, actual: number): LabelledPrediction {
  if (entry.task === 'regression') return { task: 'regression', value: entry.value ?? 0, actual };
  if (entry.task === 'multiclass-classification') {
    return {
      task: 'multiclass-classification',
      classIndex: entry.classIndex ?? 0,
      probabilities: entry.probabilities ?? new Float32Array(entry.classes.length),
      actualIndex: entry.classes.indexOf(actual),
    };
  }
  return { task: 'binary-classification', label: entry.label ?? 0, probability: entry.probability ?? 0, actual };
}
