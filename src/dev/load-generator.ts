import { readFileSync } from 'node:fs';
import { parse as parseCsv } from 'csv-parse/sync';
import { Agent, request } from 'undici';
import { mulberry32 } from './random';
import { ShareCounter } from '../serving/faults';
import { own } from '../shared/own';
import type { LabelsResponse } from '../shared/quality';

type Row = Record<string, number | string>;
type Label = number | string;

/** A ground-truth label waiting for its time to be sent. */
interface PendingLabel {
  requestId: string;
  label: Label;
  dueAtMs: number;
  /** The gateway that answered the prediction: the one that can join its label. */
  gatewayUrl: string;
}

const DEFAULT_LABEL_BATCH = 1000;

export interface LoadGeneratorOptions {
  gatewayUrl: string;
  /**
   * Replicas of one gateway (public URLs), when it runs as several: requests are spread evenly over them, so that every
   * user's requests reach every replica (the routing must agree for a user to keep its version), each label to the replica that answered its prediction.
   * Overrides `gatewayUrl`.
   */
  gatewayUrls?: string[];
  model: string;
  /** CSV whose rows are sent as live traffic (label column dropped). */
  rowsCsv: string;
  labelColumn: string;
  /** Columns that are identifiers, not features. */
  dropColumns?: string[];
  ratePerSecond: number;
  /** Distinct simulated users (sticky routing keys). */
  users?: number;
  /**
   * A request header that also carries each request's user id (`x-ml-user`), for a router in front of the gateways
   * that splits traffic on a header rather than on the body's `userId` (the nginx target).
   */
  userHeader?: string;
  /**
   * Share in [0, 1] of the requests that carry a broken row (default 0): exactly ⌊n · share⌋ of n requests, picked by
   * a counter. They alternate between a missing feature and a non-numeric string in a numeric feature, so the gateway
   * must refuse each with 400 (counted as `invalidRequests` of the version the user is routed to).
   */
  corruptShare?: number;
  /**
   * When set, the ground-truth label of each answered row (its `labelColumn` value) is sent this many milliseconds
   * after the answer, by the answer's `requestId`, to `POST /v1/models/:model/labels`, in batches. `stop()` sends the
   * labels still waiting at once. Unset (default): no labels are sent.
   */
  labelDelayMs?: number;
  /** Bearer token of the labels endpoint (the gateway's GATEWAY_LABELS_TOKEN); without it the gateway refuses labels. */
  labelsToken?: string;
  /** Share in [0, 1] of the answered rows whose label is sent (default 1): exactly ⌊n · share⌋ of n, by a counter. */
  labelShare?: number;
  /**
   * Share in [0, 1] of the labels sent that are wrong on purpose (default 0), exactly ⌊n · share⌋ of n, so that a
   * test can make the model look wrong: another class, or another row's regression target (see `wrongLabels`).
   */
  labelFlipShare?: number;
  /** At most this many labels per POST (default 1000). */
  labelBatchSize?: number;
}

export interface LoadStats {
  /** Every request sent, corrupt ones included. */
  sent: number;
  /** Requests with a valid row answered with a prediction. */
  ok: number;
  /** Requests that did not get the answer they should: a valid row not answered 200, a corrupt row not refused 400. */
  failed: number;
  byVersion: Record<string, number>;
  /**
   * Failed requests by HTTP status (`error` when no response came back, `corrupt-accepted` for a corrupt row answered
   * with a prediction).
   */
  failedBy: Record<string, number>;
  /** Failed requests by the gateway URL they were sent to (see `gatewayUrls`). */
  failedByGateway: Record<string, number>;
  lastError: string | null;
  /** Requests sent with a deliberately broken row (see `corruptShare`). */
  corruptSent: number;
  /** Corrupt requests refused with 400, as they should be: expected refusals, not counted in `failed`. */
  refusedCorrupt: number;
  /** Ground-truth labels posted (see `labelDelayMs`), flipped ones included. */
  labelsSent: number;
  /** Labels posted with the other class on purpose (see `labelFlipShare`). */
  labelsFlipped: number;
  /** The gateway's answers to the label posts, summed. */
  labelsAccepted: number;
  labelsUnknown: number;
  labelsDuplicate: number;
  /** Labels in posts that were not answered 200 (not counted in `failed`, which is about predictions). */
  labelsFailed: number;
}

/**
 * The wrong label sent for each true one when labels are flipped: a classifier's (a column of at most 64 values) is
 * the next of its classes in sorted order (the other class of a binary one); a regression target's is the value half
 * the sorted distinct values away, so the flipped labels keep the column's range but not its rows.
 */
function wrongLabels(truths: readonly Label[]): Map<Label, Label> {
  const distinct = [...new Set(truths)].sort((a, b) =>
    typeof a === 'number' && typeof b === 'number' ? a - b : String(a) < String(b) ? -1 : 1,
  );
  const step = distinct.length <= 64 ? 1 : Math.floor(distinct.length / 2);
  return new Map(distinct.map((label, i) => [label, distinct[(i + step) % distinct.length] as Label]));
}

/** A row of deliberately broken input: alternately a feature left out and a numeric feature sent as a string. */
function corruptRow(row: Row, n: number): Row {
  const names = Object.keys(row);
  const numeric = Object.entries(row)
    .filter(([, value]) => typeof value === 'number')
    .map(([name]) => name);
  if (n % 2 === 1 && numeric.length > 0) {
    return { ...row, [numeric[Math.floor(n / 2) % numeric.length] as string]: 'n/a' };
  }
  const missing = names[Math.floor(n / 2) % Math.max(1, names.length)];
  return Object.fromEntries(Object.entries(row).filter(([name]) => name !== missing));
}

/** Stats at zero; `byVersion` and `failedBy` read the Maps the generator counts in (a JSON object on each read). */
function newStats(
  byVersion: ReadonlyMap<string, number>,
  failedBy: ReadonlyMap<string, number>,
  failedByGateway: ReadonlyMap<string, number>,
): LoadStats {
  return {
    sent: 0,
    ok: 0,
    failed: 0,
    get byVersion() {
      return Object.fromEntries(byVersion);
    },
    get failedBy() {
      return Object.fromEntries(failedBy);
    },
    get failedByGateway() {
      return Object.fromEntries(failedByGateway);
    },
    lastError: null,
    corruptSent: 0,
    refusedCorrupt: 0,
    labelsSent: 0,
    labelsFlipped: 0,
    labelsAccepted: 0,
    labelsUnknown: 0,
    labelsDuplicate: 0,
    labelsFailed: 0,
  };
}

/**
 * Live traffic for the demo and tests: real HTTP predictions at a steady rate from a pool of simulated users, with
 * features drawn from a real data set, optionally a share of corrupt rows, and optionally the rows' ground-truth
 * labels after a delay (some flipped on purpose). Stops by itself when `stop()` is called.
 */
export class LoadGenerator {
  /** Answers by version and failures by kind: names from the gateway's answers (`constructor` is a version name). */
  private readonly answeredBy = new Map<string, number>();
  private readonly failedByKind = new Map<string, number>();
  private readonly failedByUrl = new Map<string, number>();
  readonly stats: LoadStats = newStats(this.answeredBy, this.failedByKind, this.failedByUrl);
  private timer: NodeJS.Timeout | null = null;
  private inFlight = new Set<Promise<void>>();
  private readonly rows: Row[];
  /** The label column's value of each row, a number when it reads as one. */
  private readonly truths: Label[];
  /** The wrong label sent in place of each true one when labels are flipped (see {@link wrongLabels}). */
  private readonly otherClass: Map<Label, Label>;
  private readonly agent = new Agent({ connections: 16, keepAliveTimeout: 10_000 });
  private next = 0;
  /**
   * Picks each request's user (mulberry32, fixed seed: the same sequence every run). Not a function of the row: with
   * `user = f(i)` and `row = i mod rows`, a user would only ever send the few rows of one residue class, and the users
   * a split sends to the candidate would see other rows than the stable version's for a whole run, so every
   * candidate-vs-stable comparison would compare two fixed samples of the test set, not the two models.
   */
  private readonly nextUnit = mulberry32(0x6d2b79f5);
  private corrupt: ShareCounter;
  private readonly labelPick: ShareCounter;
  private labelFlip: ShareCounter;
  /** In answer order, hence in order of due time (the delay is constant). */
  private pendingLabels: PendingLabel[] = [];

  constructor(private readonly options: LoadGeneratorOptions) {
    const drop = new Set([options.labelColumn, ...(options.dropColumns ?? [])]);
    const raw = parseCsv(readFileSync(options.rowsCsv, 'utf8'), { columns: true, skip_empty_lines: true }) as Record<
      string,
      string
    >[];
    const cell = (v: string): number | string => (v !== '' && Number.isFinite(Number(v)) ? Number(v) : v);
    this.rows = raw.map((r) =>
      Object.fromEntries(
        Object.entries(r)
          .filter(([k]) => !drop.has(k))
          .map(([k, v]) => [k, cell(v)]),
      ),
    );
    if (this.rows.length === 0) throw new Error(`${options.rowsCsv} has no rows`);
    this.corrupt = new ShareCounter(options.corruptShare ?? 0);

    this.truths = raw.map((r) => cell(own(r, options.labelColumn) ?? ''));
    this.labelPick = new ShareCounter(options.labelShare ?? 1);
    this.labelFlip = new ShareCounter(options.labelFlipShare ?? 0);
    const delay = options.labelDelayMs;
    if (delay !== undefined && !(Number.isFinite(delay) && delay >= 0)) {
      throw new RangeError(`labelDelayMs must be a number >= 0, got ${delay}`);
    }
    const batch = options.labelBatchSize ?? DEFAULT_LABEL_BATCH;
    if (!(Number.isInteger(batch) && batch >= 1)) throw new RangeError(`labelBatchSize must be >= 1, got ${batch}`);
    this.otherClass = wrongLabels(this.truths);
  }

  /** The current share of corrupt rows. */
  get corruptShare(): number {
    return this.corrupt.share;
  }

  /**
   * Changes the share of corrupt rows from the next request on, also while running; the exact count restarts (of the
   * n requests after this call, ⌊n · share⌋ are corrupt). Throws a RangeError outside [0, 1].
   */
  setCorruptShare(share: number): void {
    this.corrupt = new ShareCounter(share);
  }

  /** Changes the share of labels sent flipped from the next label on (see `labelFlipShare`); a RangeError outside [0, 1]. */
  setLabelFlipShare(share: number): void {
    this.labelFlip = new ShareCounter(share);
  }

  start(): void {
    if (this.timer) return;
    const tickMs = 50;
    let carry = 0;
    this.timer = setInterval(() => {
      carry += (this.options.ratePerSecond * tickMs) / 1000;
      while (carry >= 1) {
        carry -= 1;
        this.fire();
      }
      this.sendLabels(Date.now());
    }, tickMs);
  }

  /**
   * Stops sending, waits for the answers still due, sends the labels still waiting (at once), and waits for those.
   * Stopping again does nothing.
   */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.inFlight]);
    this.sendLabels(Number.POSITIVE_INFINITY);
    await Promise.allSettled([...this.inFlight]);
    if (!this.agent.closed && !this.agent.destroyed) await this.agent.close();
  }

  private fail(kind: string, message: string, gatewayUrl: string): void {
    this.stats.failed++;
    this.failedByKind.set(kind, (this.failedByKind.get(kind) ?? 0) + 1);
    this.failedByUrl.set(gatewayUrl, (this.failedByUrl.get(gatewayUrl) ?? 0) + 1);
    this.stats.lastError = message;
  }

  /** Queues the ground-truth label of an answered row, if labels are sent and this row is one of the share. */
  private queueLabel(row: number, requestId: string | undefined, gatewayUrl: string): void {
    const delay = this.options.labelDelayMs;
    if (delay === undefined || !requestId || !this.labelPick.next()) return;
    let label = this.truths[row % this.truths.length] as Label;
    if (this.labelFlip.next()) {
      label = this.otherClass.get(label) ?? label;
      this.stats.labelsFlipped++;
    }
    this.pendingLabels.push({ requestId, label, dueAtMs: Date.now() + delay, gatewayUrl });
  }

  /** Posts the labels due by `nowMs`, in batches. */
  private sendLabels(nowMs: number): void {
    let due = 0;
    while (due < this.pendingLabels.length && (this.pendingLabels[due] as PendingLabel).dueAtMs <= nowMs) due++;
    if (due === 0) return;
    const ready = this.pendingLabels.slice(0, due);
    this.pendingLabels = this.pendingLabels.slice(due);
    const size = this.options.labelBatchSize ?? DEFAULT_LABEL_BATCH;
    const byGateway = new Map<string, PendingLabel[]>();
    for (const p of ready) byGateway.set(p.gatewayUrl, [...(byGateway.get(p.gatewayUrl) ?? []), p]);
    for (const [url, labels] of byGateway) {
      for (let start = 0; start < labels.length; start += size) this.postLabels(url, labels.slice(start, start + size));
    }
  }

  private postLabels(gatewayUrl: string, batch: PendingLabel[]): void {
    this.stats.labelsSent += batch.length;
    const failLabels = (message: string) => {
      this.stats.labelsFailed += batch.length;
      this.stats.lastError = message;
    };
    const { labelsToken } = this.options;
    const p = request(`${gatewayUrl}/v1/models/${this.options.model}/labels`, {
      method: 'POST',
      dispatcher: this.agent,
      headers: {
        'content-type': 'application/json',
        ...(labelsToken === undefined ? {} : { authorization: `Bearer ${labelsToken}` }),
      },
      body: JSON.stringify({ labels: batch.map(({ requestId, label }) => ({ requestId, label })) }),
    })
      .then(async (res) => {
        const body = (await res.body.json()) as Partial<LabelsResponse> & { error?: string };
        if (res.statusCode !== 200) return failLabels(`labels ${res.statusCode}: ${body.error ?? ''}`);
        this.stats.labelsAccepted += body.accepted ?? 0;
        this.stats.labelsUnknown += body.unknown ?? 0;
        this.stats.labelsDuplicate += body.duplicate ?? 0;
      })
      .catch((err: unknown) => failLabels(`labels: ${String(err)}`))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private fire(): void {
    const i = this.next++;
    let row = this.rows[i % this.rows.length]!;
    const user = `user-${Math.floor(this.nextUnit() * (this.options.users ?? 5000))}`;
    const corrupt = this.corrupt.next();
    if (corrupt) row = corruptRow(row, this.stats.corruptSent++);
    this.stats.sent++;
    const urls = this.options.gatewayUrls;
    // Spread over the replicas by index, whatever users the requests carry.
    const gatewayUrl =
      urls && urls.length > 0
        ? (urls[(i + Math.floor(i / urls.length)) % urls.length] as string)
        : this.options.gatewayUrl;
    const fail = (kind: string, message: string) => this.fail(kind, message, gatewayUrl);
    const p = request(`${gatewayUrl}/v1/models/${this.options.model}/predict`, {
      method: 'POST',
      dispatcher: this.agent,
      headers: {
        'content-type': 'application/json',
        ...(this.options.userHeader === undefined ? {} : { [this.options.userHeader]: user }),
      },
      body: JSON.stringify({ userId: user, features: row }),
    })
      .then(async (res) => {
        const body = (await res.body.json()) as { version?: string; requestId?: string; error?: string };
        if (corrupt && res.statusCode === 400) {
          this.stats.refusedCorrupt++;
        } else if (corrupt && res.statusCode === 200) {
          fail('corrupt-accepted', `a corrupt row was answered by ${body.version}: ${JSON.stringify(row)}`);
        } else if (res.statusCode === 200 && body.version) {
          this.stats.ok++;
          this.answeredBy.set(body.version, (this.answeredBy.get(body.version) ?? 0) + 1);
          this.queueLabel(i, body.requestId, gatewayUrl);
        } else {
          fail(String(res.statusCode), `${res.statusCode}: ${body.error ?? ''}`);
        }
      })
      .catch((err: unknown) => fail('error', String(err)))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }
}
