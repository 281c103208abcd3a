import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { NginxRouterName } from '../shared/deployment-target';
import { projectRoot } from './paths';
import { executable, onPath } from './toolchain';
import { loadYamlFile } from './yaml-file';
import { Duration } from '../shared/duration';

/**
 * The worker's nginx routers: the file named by ML_NGINX_TARGETS. A lifecycle spec names a router
 * (`deployment.target: { kind: nginx, name: edge }`); everything that touches the machine (folders, the binary, the
 * address nginx listens on, the gateways behind it) is declared here, by the operator, and never by a spec.
 */

/** Where Debian and most distributions install nginx; not on a non-root user's PATH. */
const SBIN_NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'];

/**
 * Absolute paths of characters that need no escaping anywhere nginx reads a path: the target quotes them anyway, and
 * a path with a quote, `$`, `;`, braces or a newline is refused here rather than escaped into the config.
 */
const CONFIG_PATH_RE = /^\/[A-Za-z0-9._/@+-]*$/;
const ConfigPath = z
  .string()
  .max(1024)
  .regex(CONFIG_PATH_RE, 'an absolute path of letters, digits and . _ - / + @ (nginx reads it from its config)')
  .refine((p) => !p.split('/').includes('..'), 'a path without ".." segments');

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6_RE = /^\[[0-9A-Fa-f:.]{2,45}\]$/;
const DNS_RE =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** `host:port` split, or undefined; host is an IPv4 address, a bracketed IPv6 address or (when allowed) a DNS name. */
function hostPort(text: string, names: boolean): { host: string; port: number } | undefined {
  const match = /^(.+):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const host = match[1]!;
  const port = Number(match[2]);
  if (port < 1 || port > 65_535) return undefined;
  if (IPV4_RE.test(host) || IPV6_RE.test(host) || (names && DNS_RE.test(host))) return { host, port };
  return undefined;
}

/**
 * Where nginx listens: an IP address and a port (`127.0.0.1:8080`, `0.0.0.0:80`, `[::1]:8080`). An address, not a
 * name: the target also reaches nginx there to confirm each reload, and lets only that address and loopback ask.
 */
export const ListenAddress = z.string().transform((text, ctx) => {
  const parsed = hostPort(text, false);
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: 'an IP address and a port, e.g. 127.0.0.1:8080 or [::1]:8080' });
    return z.NEVER;
  }
  return parsed;
});

/**
 * A slot gateway's public listener: `http://host:port` and nothing more (no path, query or credentials), because it
 * becomes an nginx `upstream` server line.
 */
const PublicUrl = z.string().transform((text, ctx) => {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  const parsed = url && hostPort(url.host, true);
  if (
    !url ||
    url.protocol !== 'http:' ||
    !parsed ||
    url.username !== '' ||
    url.password !== '' ||
    (url.pathname !== '/' && url.pathname !== '') ||
    url.search !== '' ||
    url.hash !== '' ||
    !/^http:\/\/[^/]+\/?$/.test(text)
  ) {
    ctx.addIssue({
      code: 'custom',
      message: 'http://<host>:<port> of the gateway public listener, with an explicit port and nothing after it',
    });
    return z.NEVER;
  }
  return { url: `http://${url.host}`, server: `${parsed.host}:${parsed.port}` };
});

const SlotName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a slot name: lowercase letters, digits and dashes (at most 63)');

/** A request header nginx reads as `$http_<name>`: letters, digits and dashes only, so the variable name is valid. */
const UserHeader = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/, 'a header name of letters, digits and dashes (at most 64)')
  .transform((h) => h.toLowerCase());

/** One gateway process in single-version mode (GATEWAY_SINGLE_VERSION=true) that versions are deployed to. */
export const NginxSlotSpec = z
  .object({
    name: SlotName,
    /** The gateway's public listener (GATEWAY_PORT): nginx proxies predictions there. */
    publicUrl: PublicUrl,
    /** The gateway's admin listener (GATEWAY_ADMIN_PORT): the worker deploys there, with its admin token. */
    adminUrl: z.url({ protocol: /^https?$/, error: 'an http:// or https:// URL' }),
  })
  .strict();

export const NginxRouterSpec = z
  .object({
    name: NginxRouterName,
    /** Where the target writes nginx.conf and its state; nginx's pid, logs and temp files go there too. */
    confDir: ConfigPath,
    listen: ListenAddress,
    /** The header holding a user's id: traffic is split on it, so a user keeps a version while the weights hold. */
    userHeader: UserHeader.default('x-ml-user'),
    /** The nginx binary (default: NGINX_PATH, else `nginx` on PATH, else /usr/sbin/nginx). */
    nginx: ConfigPath.optional(),
    /**
     * How long nginx keeps an idle client connection open. 0 (the default) closes each one after its answer: a reload
     * closes the old workers' idle connections, and a client that sends on one at that instant gets a reset, which
     * only clients that retry such requests survive. Longer saves a connection per request for clients that do.
     */
    clientKeepalive: Duration.default(0).refine((ms) => ms <= 3_600_000, 'at most 1h'),
    slots: z.array(NginxSlotSpec).min(1).max(64),
  })
  .strict()
  .superRefine((router, ctx) => {
    const names = new Set<string>();
    const urls = new Set<string>();
    for (const [i, slot] of router.slots.entries()) {
      if (names.has(slot.name))
        ctx.addIssue({ code: 'custom', path: ['slots', i, 'name'], message: `slot ${slot.name} is declared twice` });
      if (urls.has(slot.publicUrl.url))
        ctx.addIssue({
          code: 'custom',
          path: ['slots', i, 'publicUrl'],
          message: `${slot.publicUrl.url} is the public URL of another slot too`,
        });
      names.add(slot.name);
      urls.add(slot.publicUrl.url);
    }
  });

/** The ML_NGINX_TARGETS file: `routers: [{ name, confDir, listen, userHeader?, nginx?, clientKeepalive?, slots }]`. */
export const NginxTargetsFile = z
  .object({ routers: z.array(NginxRouterSpec).min(1) })
  .strict()
  .superRefine((file, ctx) => {
    const seen = (what: string, key: (r: z.output<typeof NginxRouterSpec>) => string, field: string) => {
      const by = new Map<string, string>();
      for (const [i, router] of file.routers.entries()) {
        const value = key(router);
        const first = by.get(value);
        if (first !== undefined)
          ctx.addIssue({ code: 'custom', path: ['routers', i, field], message: `${what} as router ${first}` });
        else by.set(value, router.name);
      }
    };
    seen('the same name', (r) => r.name, 'name');
    // Two routers writing one folder would overwrite each other's config and state.
    seen('the same folder', (r) => r.confDir.replace(/\/+$/, ''), 'confDir');
    seen('the same address', (r) => `${r.listen.host}:${r.listen.port}`, 'listen');
  });
export type NginxTargetsFile = z.output<typeof NginxTargetsFile>;

export interface NginxSlot {
  name: string;
  /** `http://host:port`. */
  publicUrl: string;
  /** `host:port`, as the upstream's server line. */
  server: string;
  adminUrl: string;
}

/** One router as the worker uses it: validated, with its nginx binary resolved. */
export interface NginxRouterConfig {
  name: string;
  confDir: string;
  listen: { host: string; port: number };
  /** Lower case. */
  userHeader: string;
  /** Absolute path of an executable nginx. */
  nginx: string;
  clientKeepaliveMs: number;
  slots: NginxSlot[];
}

/** The file from ML_NGINX_TARGETS (relative paths from the project root); undefined when it is not set. */
export function nginxTargetsPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = env.ML_NGINX_TARGETS;
  if (!file) return undefined;
  return isAbsolute(file) ? file : join(projectRoot(), file);
}

/**
 * The nginx binary: `configured` (a router's `nginx`), else NGINX_PATH, else `nginx` on PATH, else /usr/sbin/nginx or
 * /usr/local/sbin/nginx. Throws, naming where it looked and the Debian package, when none is executable.
 */
export function nginxBinary(configured?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (configured) {
    if (!executable(configured)) throw new Error(`${configured} is not an executable file`);
    return configured;
  }
  const fromEnv = env.NGINX_PATH;
  if (fromEnv) {
    if (!executable(fromEnv)) throw new Error(`NGINX_PATH=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  const found = onPath('nginx') ?? SBIN_NGINX.find((path) => executable(path));
  if (found) return found;
  throw new Error(
    'nginx is missing: install the Debian package `nginx` (`apt-get install --no-install-recommends nginx`; ' +
      '`npm ci` does it when run as root) or set NGINX_PATH to the binary',
  );
}

/**
 * Reads and validates a routers file once, at worker start, and resolves each router's nginx binary. Any problem
 * throws InvalidFileError naming the file, the field and its line.
 */
export function loadNginxTargets(file: string, env: NodeJS.ProcessEnv = process.env): NginxRouterConfig[] {
  const withBinaries = NginxTargetsFile.superRefine((parsed, ctx) => {
    for (const [i, router] of parsed.routers.entries()) {
      try {
        nginxBinary(router.nginx, env);
      } catch (err) {
        ctx.addIssue({
          code: 'custom',
          path: router.nginx ? ['routers', i, 'nginx'] : ['routers', i],
          message: (err as Error).message,
        });
      }
    }
  });
  const parsed = loadYamlFile(file, withBinaries, 'nginx targets');
  return parsed.routers.map((router) => ({
    name: router.name,
    confDir: router.confDir.length > 1 ? router.confDir.replace(/\/+$/, '') : router.confDir,
    listen: router.listen,
    userHeader: router.userHeader,
    nginx: nginxBinary(router.nginx, env),
    clientKeepaliveMs: router.clientKeepalive,
    slots: router.slots.map((slot) => ({
      name: slot.name,
      publicUrl: slot.publicUrl.url,
      server: slot.publicUrl.server,
      adminUrl: slot.adminUrl.replace(/\/+$/, ''),
    })),
  }));
}

/** The worker's routers: ML_NGINX_TARGETS's, or none. */
export function loadNginxTargetsFromEnv(env: NodeJS.ProcessEnv = process.env): NginxRouterConfig[] {
  const file = nginxTargetsPath(env);
  return file ? loadNginxTargets(file, env) : [];
}
