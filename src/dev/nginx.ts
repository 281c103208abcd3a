/**
 * A real nginx (Debian's `nginx`, which scripts/setup.mjs installs when run as root) for tests, benchmarks and the
 * nginx deployment target: a master process in the foreground (`daemon off`), its config, pid file, error log and
 * temp files all under one prefix folder, listening on loopback.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nginxBinary } from '../config/nginx-targets';
import { freePort, portOpen, waitFor } from './ports';
import { stopChild } from './processes';

const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 10_000;

export interface NginxOptions {
  /**
   * The folder nginx runs in (`-p`): config, pid file, error log, temp files. Default: a fresh temp dir, removed by
   * `stop()`. A given one is left in place.
   */
  prefix?: string;
  /**
   * The config file to run (default `<prefix>/nginx.conf`). Its `pid` and `error_log` should point inside the prefix;
   * the nginx target's configs do. When neither it nor `config` is given, a config answering 404 on a free port is
   * written.
   */
  configFile?: string;
  /** Config text written to `configFile` before the start. */
  config?: string;
  /** The address nginx listens on as the config says (`host:port`), waited for; default the written config's. */
  listen?: { host: string; port: number };
  /** The binary (default: NGINX_PATH, `nginx` on PATH, /usr/sbin/nginx). */
  binary?: string;
}

export interface NginxServer {
  /** `http://<listen host>:<port>`. */
  url: string;
  prefix: string;
  configFile: string;
  /** Where nginx writes its errors, when the config sends them there (the default config and the target's do). */
  errorLog: string;
  /** The master's pid. */
  readonly pid: number | undefined;
  /** Checks the config with `nginx -t` (rewriting it first when given) and sends the master SIGHUP: a graceful reload. */
  reload(config?: string): Promise<void>;
  /** SIGQUIT (graceful: the workers finish their requests), SIGKILL after 10 s; removes a temp prefix. */
  stop(): Promise<void>;
  /** SIGKILL to the master and its workers: an outage. */
  kill(): Promise<void>;
}

const run = promisify(execFile);

/** A config answering 404 on `listen`, with every path nginx writes inside `prefix`. */
export function minimalNginxConfig(prefix: string, listen: { host: string; port: number }): string {
  const p = (name: string) => JSON.stringify(join(prefix, name));
  return [
    `pid ${p('nginx.pid')};`,
    `error_log ${p('error.log')} warn;`,
    'events { worker_connections 1024; }',
    'http {',
    '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${p(`${t}_temp`)};`),
    `  server { listen ${listen.host}:${listen.port}; location / { return 404; } }`,
    '}',
    '',
  ].join('\n');
}

function logTail(file: string, bytes = 2_000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.length > bytes ? `…${text.slice(-bytes)}` : text || '(empty)';
  } catch {
    return '(no log)';
  }
}

/** Starts nginx in the foreground and waits until its listen address accepts connections. */
export async function startNginx(options: NginxOptions = {}): Promise<NginxServer> {
  const binary = options.binary ?? nginxBinary();
  const ownPrefix = options.prefix === undefined;
  const prefix = options.prefix ?? mkdtempSync(join(tmpdir(), 'mll-nginx-'));
  // Workers of a master started as root run as `nobody`: they must be able to reach the temp folders in the prefix.
  if (ownPrefix) chmodSync(prefix, 0o755);
  const configFile = options.configFile ?? join(prefix, 'nginx.conf');
  let listen = options.listen;
  if (options.config !== undefined) writeFileSync(configFile, options.config);
  else if (options.configFile === undefined && !listen) {
    listen = { host: '127.0.0.1', port: await freePort() };
    writeFileSync(configFile, minimalNginxConfig(prefix, listen));
  }
  if (!listen) throw new Error('startNginx: give `listen` with a config of your own');
  const errorLog = join(prefix, 'error.log');
  const stdio = join(prefix, 'nginx.stdio.log');
  const args = ['-p', `${prefix}/`, '-c', configFile, '-g', 'daemon off;'];
  const fd = openSync(stdio, 'a');
  let child: ChildProcess;
  try {
    child = spawn(binary, args, { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  let exited: string | null = null;
  child.once('exit', (code, signal) => {
    exited = `exited with ${signal ?? `code ${code}`}`;
  });
  child.once('error', (err) => {
    exited = `failed to start: ${err.message}`;
  });
  const { host, port } = listen;
  const connect = host === '0.0.0.0' ? '127.0.0.1' : host.replace(/^\[|\]$/g, '');
  try {
    await waitFor(`nginx on ${host}:${port}`, async () => exited !== null || portOpen(port, connect), READY_TIMEOUT_MS);
    if (exited) throw new Error(`nginx ${exited}`);
  } catch (err) {
    await stopChild(child, STOP_GRACE_MS);
    if (ownPrefix) rmSync(prefix, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}; its output:\n${logTail(stdio)}\nits error log:\n${logTail(errorLog)}`);
  }

  const graceful = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGQUIT');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await gone;
    clearTimeout(timer);
  };
  return {
    url: `http://${host}:${port}`,
    prefix,
    configFile,
    errorLog,
    get pid() {
      return child.pid;
    },
    async reload(config?: string) {
      if (config !== undefined) writeFileSync(configFile, config);
      try {
        await run(binary, ['-t', '-q', '-p', `${prefix}/`, '-c', configFile]);
      } catch (err) {
        throw new Error(
          `nginx refuses ${configFile}: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`,
        );
      }
      child.kill('SIGHUP');
    },
    async stop() {
      await graceful();
      if (ownPrefix) rmSync(prefix, { recursive: true, force: true });
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      // The workers would keep the listen socket open without their master: they go too.
      const workers = await run('pgrep', ['-P', String(child.pid)]).then(
        ({ stdout }) => stdout.split('\n').filter(Boolean).map(Number),
        () => [] as number[],
      );
      child.kill('SIGKILL');
      for (const pid of workers) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await gone;
    },
  };
}
