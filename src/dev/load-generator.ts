import { readFileSync } from 'node:fs';
import { parse as parseCsv } from 'csv-parse/sync';
import { Agent, request } from 'undici';

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
}

export interface LoadStats {
  sent: number;
  ok: number;
  failed: number;
  byVersion: Record<string, number>;
  /** Failed requests by HTTP status (`error` when no response came back). */
  failedBy: Record<string, number>;
  lastError: string | null;
}

/**
 * Live traffic for the demo and tests: real HTTP predictions at a steady rate from a pool of simulated users, with
 * features drawn from a real data set. Stops by itself when `stop()` is called.
 */
export class LoadGenerator {
  readonly stats: LoadStats = { sent: 0, ok: 0, failed: 0, byVersion: {}, failedBy: {}, lastError: null };
  private timer: NodeJS.Timeout | null = null;
  private inFlight = new Set<Promise<void>>();
  private readonly rows: Record<string, number | string>[];
  private readonly agent = new Agent({ connections: 16, keepAliveTimeout: 10_000 });
  private next = 0;

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
    const row = this.rows[i % this.rows.length]!;
    const user = `user-${(i * 7919) % (this.options.users ?? 5000)}`;
    this.stats.sent++;
    const p = request(`${this.options.gatewayUrl}/v1/models/${this.options.model}/predict`, {
      method: 'POST',
      dispatcher: this.agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: user, features: row }),
    })
      .then(async (res) => {
        const body = (await res.body.json()) as { version?: string; error?: string };
        if (res.statusCode === 200 && body.version) {
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
