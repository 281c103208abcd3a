/**
 * A real Prometheus and a real Alertmanager (Debian's `prometheus` and `prometheus-alertmanager`, which
 * scripts/setup.mjs installs when run as root) on free loopback ports, for tests and benchmarks. Each instance owns a
 * fresh temp dir (config, data, log) that `stop()` removes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { freePort, waitFor } from './ports';
import { executable, onPath } from '../config/toolchain';
import { stopChild } from './processes';

const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;

/** `fromEnv` (the value of `env`) if set, else `name` on PATH, else an error naming the Debian package. */
export function debianBinary(name: string, pkg: string, env: string, fromEnv: string | undefined): string {
  if (fromEnv) {
    if (!executable(fromEnv)) throw new Error(`${env}=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  const found = onPath(name);
  if (found) return found;
  throw new Error(
    `${name} is missing: install the Debian package \`${pkg}\` (\`apt-get install --no-install-recommends ${pkg}\`; ` +
      `\`npm ci\` does it when run as root) or set ${env} to the binary`,
  );
}

/** The Prometheus server: `PROMETHEUS_PATH`, else `prometheus` on PATH (Debian package `prometheus`). */
export function prometheusBinary(): string {
  return debianBinary('prometheus', 'prometheus', 'PROMETHEUS_PATH', process.env.PROMETHEUS_PATH);
}

/** Alertmanager: `ALERTMANAGER_PATH`, else `prometheus-alertmanager` on PATH (package `prometheus-alertmanager`). */
export function alertmanagerBinary(): string {
  const fromEnv = process.env.ALERTMANAGER_PATH;
  return debianBinary('prometheus-alertmanager', 'prometheus-alertmanager', 'ALERTMANAGER_PATH', fromEnv);
}

/** The last `bytes` of a log file, for error messages. */
function logTail(file: string, bytes = 2_000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.length > bytes ? `…${text.slice(-bytes)}` : text;
  } catch {
    return '(no log)';
  }
}

function spawnLogged(binary: string, args: string[], logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  try {
    return spawn(binary, args, { stdio: ['ignore', fd, fd] });
  } finally {
    // The child holds its own copy of the descriptor.
    closeSync(fd);
  }
}

async function getStatus(url: string): Promise<number> {
  const res = await request(url, { headersTimeout: 2_000, bodyTimeout: 2_000 });
  await res.body.dump();
  return res.statusCode;
}

/**
 * Spawns `binary` and waits until `${url}/-/ready` answers 200; fails fast, with the log's tail, if it exits first.
 * On failure the process is gone.
 */
async function startReady(what: string, binary: string, args: string[], url: string, logFile: string) {
  const child = spawnLogged(binary, args, logFile);
  let exited: string | null = null;
  child.once('exit', (code, signal) => {
    exited = `exited with ${signal ?? `code ${code}`}`;
  });
  child.once('error', (err) => {
    exited = `failed to start: ${err.message}`;
  });
  try {
    await waitFor(what, async () => exited !== null || (await getStatus(`${url}/-/ready`)) === 200, READY_TIMEOUT_MS);
    if (exited) throw new Error(`${what} ${exited}`);
  } catch (err) {
    await stopChild(child, STOP_GRACE_MS);
    throw new Error(`${(err as Error).message}; its log ends:\n${logTail(logFile)}`);
  }
  return child;
}

function durationMs(ms: number): string {
  if (!Number.isInteger(ms) || ms <= 0) throw new Error(`a duration must be a positive whole number of ms, not ${ms}`);
  return `${ms}ms`;
}

export interface ScrapeTarget {
  job: string;
  /** `host:port` each. */
  targets: string[];
  /** Default `/metrics`. */
  metricsPath?: string;
  /** Sent as `Authorization: Bearer <token>`. */
  bearerToken?: string;
}

export interface PrometheusOptions {
  scrapeTargets: ScrapeTarget[];
  /** Global scrape interval (the scrape timeout equals it); default 1000. */
  scrapeIntervalMs?: number;
  /** Rule evaluation interval; default the scrape interval. */
  evaluationIntervalMs?: number;
  /** `--storage.tsdb.retention.time`, e.g. `'1h'`; Prometheus's default (15d) when absent. */
  retention?: string;
  /** Where stdout and stderr go; default `prometheus.log` in the temp dir (removed by `stop()`). */
  logFile?: string;
}

export interface PrometheusServer {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  port: number;
  dataDir: string;
  configFile: string;
  logFile: string;
  /** SIGTERM (SIGKILL after 10 s), wait for the exit, remove the temp dir. Safe to call twice or after `kill()`. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit: an outage. The data dir stays for `restart()`. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data dir and waits until it is ready. */
  restart(): Promise<void>;
  /** Rewrites the config (with new scrape targets when given) and applies it through `POST /-/reload`. */
  reload(scrapeTargets?: ScrapeTarget[]): Promise<void>;
}

function prometheusConfig(options: PrometheusOptions, scrapeTargets: ScrapeTarget[]): string {
  const interval = durationMs(options.scrapeIntervalMs ?? 1_000);
  return stringify({
    global: {
      scrape_interval: interval,
      scrape_timeout: interval,
      evaluation_interval: durationMs(options.evaluationIntervalMs ?? options.scrapeIntervalMs ?? 1_000),
    },
    scrape_configs: scrapeTargets.map((target) => ({
      job_name: target.job,
      metrics_path: target.metricsPath ?? '/metrics',
      ...(target.bearerToken ? { authorization: { type: 'Bearer', credentials: target.bearerToken } } : {}),
      static_configs: [{ targets: target.targets }],
    })),
  });
}

/** Starts Prometheus on a free 127.0.0.1 port scraping `scrapeTargets`, and waits until `/-/ready` answers 200. */
export async function startPrometheus(options: PrometheusOptions): Promise<PrometheusServer> {
  const binary = prometheusBinary();
  const dir = mkdtempSync(join(tmpdir(), 'mll-prometheus-'));
  const configFile = join(dir, 'prometheus.yml');
  const dataDir = join(dir, 'data');
  const logFile = options.logFile ?? join(dir, 'prometheus.log');
  writeFileSync(configFile, prometheusConfig(options, options.scrapeTargets));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${dataDir}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--web.enable-lifecycle',
    ...(options.retention ? [`--storage.tsdb.retention.time=${options.retention}`] : []),
  ];
  const start = () => startReady(`Prometheus on ${url}`, binary, args, url, logFile);
  let child: ChildProcess;
  try {
    child = await start();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    port,
    dataDir,
    configFile,
    logFile,
    async stop() {
      await stopChild(child, STOP_GRACE_MS);
      rmSync(dir, { recursive: true, force: true });
    },
    async kill() {
      // SIGKILL alone, not stopChild's SIGTERM first: an outage is a crash, with no clean shutdown.
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGKILL');
      await gone;
    },
    async restart() {
      if (child.exitCode === null && child.signalCode === null) {
        throw new Error(`Prometheus on ${url} is still running: kill() or stop() it first`);
      }
      child = await start();
    },
    async reload(scrapeTargets?: ScrapeTarget[]) {
      if (scrapeTargets) writeFileSync(configFile, prometheusConfig(options, scrapeTargets));
      const res = await request(`${url}/-/reload`, { method: 'POST' });
      const body = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`Prometheus reload failed (${res.statusCode}): ${body}`);
    },
  };
}

/** The `data` of a successful `/api/v1/query` answer. */
export type PromQueryData =
  | { resultType: 'vector'; result: { metric: Record<string, string>; value: [number, string] }[] }
  | { resultType: 'matrix'; result: { metric: Record<string, string>; values: [number, string][] }[] }
  | { resultType: 'scalar' | 'string'; result: [number, string] };

/** An instant PromQL query (`GET /api/v1/query`) at `time` (default: now at the server); throws with the body. */
export async function queryPrometheus(url: string, promql: string, time?: Date): Promise<PromQueryData> {
  const params = new URLSearchParams({ query: promql });
  if (time) params.set('time', (time.getTime() / 1000).toFixed(3));
  const res = await request(`${url}/api/v1/query?${params}`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  const body = await res.body.text();
  let parsed: { status?: string; data?: PromQueryData } | undefined;
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    // Reported below with the raw body.
  }
  if (res.statusCode !== 200 || parsed?.status !== 'success' || !parsed.data) {
    throw new Error(`Prometheus query ${JSON.stringify(promql)} failed (${res.statusCode}): ${body}`);
  }
  return parsed.data;
}

interface ActiveTarget {
  labels: Record<string, string>;
  scrapePool: string;
  scrapeUrl: string;
  health: 'up' | 'down' | 'unknown';
  lastError: string;
}

/**
 * Waits until every target of `job` is `health: "up"` in `/api/v1/targets` and its samples are queryable (`up` of
 * each is 1), so a query right after sees the scraped values. Prometheus 2.42 hands new targets to its scrapers on a
 * fixed 5 s tick (no flag shortens it), so the first scrape after a start, restart or reload comes 5–6 s later.
 */
export async function waitForScrape(prom: { url: string }, job: string, timeoutMs = 15_000): Promise<void> {
  let seen: ActiveTarget[] = [];
  const check = async () => {
    const res = await request(`${prom.url}/api/v1/targets?state=active`, { headersTimeout: 2_000 });
    const body = (await res.body.json()) as { data?: { activeTargets?: ActiveTarget[] } };
    seen = (body.data?.activeTargets ?? []).filter((target) => target.scrapePool === job);
    if (seen.length === 0 || seen.some((target) => target.health !== 'up')) return false;
    const up = await queryPrometheus(prom.url, `up{job=${JSON.stringify(job)}} == 1`);
    return up.resultType === 'vector' && up.result.length === seen.length;
  };
  try {
    await waitFor(`scrape of job ${job} by ${prom.url}`, check, timeoutMs);
  } catch (err) {
    const targets = seen.map((t) => `${t.scrapeUrl}: ${t.health}${t.lastError ? ` (${t.lastError})` : ''}`);
    throw new Error(`${(err as Error).message}; targets: ${targets.join(', ') || 'none'}`);
  }
}

export interface AlertmanagerOptions {
  /** `global.resolve_timeout`: how long an alert without `endsAt` stays firing; default 5 min. */
  resolveTimeoutMs?: number;
  /** Where stdout and stderr go; default `alertmanager.log` in the temp dir (removed by `stop()`). */
  logFile?: string;
}

export interface AlertmanagerServer {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  port: number;
  /** `${url}/api/v2/alerts`: where alerts are POSTed. */
  alertsUrl: string;
  logFile: string;
  /** SIGTERM (SIGKILL after 10 s), wait for the exit, remove the temp dir. */
  stop(): Promise<void>;
}

/**
 * Starts Alertmanager on a free 127.0.0.1 port with one route to a receiver that sends nothing, clustering off, and
 * waits until `/-/ready` answers 200.
 */
export async function startAlertmanager(options: AlertmanagerOptions = {}): Promise<AlertmanagerServer> {
  const binary = alertmanagerBinary();
  const dir = mkdtempSync(join(tmpdir(), 'mll-alertmanager-'));
  const configFile = join(dir, 'alertmanager.yml');
  const logFile = options.logFile ?? join(dir, 'alertmanager.log');
  writeFileSync(
    configFile,
    stringify({
      global: { resolve_timeout: durationMs(options.resolveTimeoutMs ?? 300_000) },
      // A receiver with no integrations is valid: alerts are grouped and listed, never sent anywhere.
      route: { receiver: 'null', group_wait: '100ms', group_interval: '1s', repeat_interval: '1h' },
      receivers: [{ name: 'null' }],
    }),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = [
    `--config.file=${configFile}`,
    `--storage.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    // Empty turns off clustering: no gossip port, no peer discovery on the sandbox's network.
    '--cluster.listen-address=',
  ];
  let child: ChildProcess;
  try {
    child = await startReady(`Alertmanager on ${url}`, binary, args, url, logFile);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    port,
    alertsUrl: `${url}/api/v2/alerts`,
    logFile,
    async stop() {
      await stopChild(child, STOP_GRACE_MS);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One alert as `GET /api/v2/alerts` lists it. */
export interface AlertmanagerAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  updatedAt: string;
  fingerprint: string;
  generatorURL?: string;
  receivers: { name: string }[];
  status: { state: 'unprocessed' | 'active' | 'suppressed'; silencedBy: string[]; inhibitedBy: string[] };
}

export interface AlertmanagerAlertStates {
  /** Each defaults to true at the server (every state listed). */
  active?: boolean;
  silenced?: boolean;
  inhibited?: boolean;
  unprocessed?: boolean;
}

/**
 * `GET /api/v2/alerts` of the Alertmanager at `url` (its base URL or its alertsUrl), keeping alerts whose labels equal
 * every `filter` entry. Alertmanager leaves out alerts whose `endsAt` has passed (resolved ones).
 */
export async function alertmanagerAlerts(
  url: string,
  filter: Record<string, string> = {},
  states: AlertmanagerAlertStates = {},
): Promise<AlertmanagerAlert[]> {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(filter)) params.append('filter', `${name}=${JSON.stringify(value)}`);
  for (const [state, on] of Object.entries(states)) if (on !== undefined) params.set(state, String(on));
  const base = url.replace(/\/api\/v2\/alerts\/?$/, '').replace(/\/$/, '');
  const res = await request(`${base}/api/v2/alerts?${params}`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  const body = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`Alertmanager GET /api/v2/alerts failed (${res.statusCode}): ${body}`);
  return JSON.parse(body) as AlertmanagerAlert[];
}
