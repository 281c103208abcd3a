import { readFileSync } from 'node:fs';
import { parse as parseCsv } from 'csv-parse/sync';
import { Agent, request } from 'undici';
import { ShareCounter } from '../serving/faults';

type Row = Record<string, number | string>;

export interface LoadGeneratorOptions {
  gatewayUrl: string;
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
   * Share in [0, 1] of the requests that carry a broken row (default 0): exactly ⌊n · share⌋ of n requests, picked by
   * a counter. They alternate between a missing feature and a non-numeric string in a numeric feature, so the gateway
   * must refuse each with 400 (counted as `invalidRequests` of the version the user is routed to).
   */
  corruptShare?: number;
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
  lastError: string | null;
  /** Requests sent with a deliberately broken row (see `corruptShare`). */
  corruptSent: number;
  /** Corrupt requests refused with 400, as they should be: expected refusals, not counted in `failed`. */
  refusedCorrupt: number;
}

/** A row of deliberately broken input: alternately a feature left out and a numeric feature sent as a string. */
function corruptRow(row: Row, n: number): Row {
  const names = Object.keys(row);
  const numeric = names.filter((name) => typeof row[name] === 'number');
  if (n % 2 === 1 && numeric.length > 0) {
    return { ...row, [numeric[Math.floor(n / 2) % numeric.length] as string]: 'n/a' };
  }
  const missing = names[Math.floor(n / 2) % Math.max(1, names.length)];
  return Object.fromEntries(Object.entries(row).filter(([name]) => name !== missing));
}

/**
 * Live traffic for the demo and tests: real HTTP predictions at a steady rate from a pool of simulated users, with
 * features drawn from a real data set, and optionally a share of corrupt rows. Stops by itself when `stop()` is
 * called.
 */
export class LoadGenerator {
  readonly stats: LoadStats = {
    sent: 0,
    ok: 0,
    failed: 0,
    byVersion: {},
    failedBy: {},
    lastError: null,
    corruptSent: 0,
    refusedCorrupt: 0,
  };
  private timer: NodeJS.Timeout | null = null;
  private inFlight = new Set<Promise<void>>();
  private readonly rows: Row[];
  private readonly agent = new Agent({ connections: 16, keepAliveTimeout: 10_000 });
  private next = 0;
  private corrupt: ShareCounter;

  constructor(private readonly options: LoadGeneratorOptions) {
    const drop = new Set([options.labelColumn, ...(options.dropColumns ?? [])]);
    const raw = parseCsv(readFileSync(options.rowsCsv, 'utf8'), { columns: true, skip_empty_lines: true }) as Record<
      string,
      string
    >[];
    this.rows = raw.map((r) =>
      Object.fromEntries(
        Object.entries(r)
          .filter(([k]) => !drop.has(k))
          .map(([k, v]) => [k, v !== '' && Number.isFinite(Number(v)) ? Number(v) : v]),
      ),
    );
    if (this.rows.length === 0) throw new Error(`${options.rowsCsv} has no rows`);
    this.corrupt = new ShareCounter(options.corruptShare ?? 0);
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
    }, tickMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.inFlight]);
    await this.agent.close();
  }

  private fail(kind: string, message: string): void {
    this.stats.failed++;
    this.stats.failedBy[kind] = (this.stats.failedBy[kind] ?? 0) + 1;
    this.stats.lastError = message;
  }

  private fire(): void {
    const i = this.next++;
    let row = this.rows[i % this.rows.length]!;
    const user = `user-${(i * 7919) % (this.options.users ?? 5000)}`;
    const corrupt = this.corrupt.next();
    if (corrupt) row = corruptRow(row, this.stats.corruptSent++);
    this.stats.sent++;
    const p = request(`${this.options.gatewayUrl}/v1/models/${this.options.model}/predict`, {
      method: 'POST',
      dispatcher: this.agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: user, features: row }),
    })
      .then(async (res) => {
        const body = (await res.body.json()) as { version?: string; error?: string };
        if (corrupt && res.statusCode === 400) {
          this.stats.refusedCorrupt++;
        } else if (corrupt && res.statusCode === 200) {
          this.fail('corrupt-accepted', `a corrupt row was answered by ${body.version}: ${JSON.stringify(row)}`);
        } else if (res.statusCode === 200 && body.version) {
          this.stats.ok++;
          this.stats.byVersion[body.version] = (this.stats.byVersion[body.version] ?? 0) + 1;
        } else {
          this.fail(String(res.statusCode), `${res.statusCode}: ${body.error ?? ''}`);
        }
      })
      .catch((err: unknown) => this.fail('error', String(err)))
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }
}
