/**
 * The nginx.conf an nginx router runs (pure: no I/O). Each model routed by the router gets a `split_clients` block
 * over the user's id and a location for its `/v1` and `/v2` (Open Inference Protocol) paths proxied to the upstream
 * its user falls in: the slot gateway serving that version. Everything written into the file is checked against a
 * strict pattern here, again, whatever validated it before: a name that could close a block or a string never reaches
 * the file.
 */
import { MODEL_NAME_RE, VERSION_NAME_RE } from '../shared/names';
import type { NginxRouterConfig } from '../config/nginx-targets';

/** One version of a routed model: where it is served and its percentage of the traffic. */
export interface NginxRouteVersion {
  version: string;
  slot: string;
  weight: number;
}

/** A model's traffic as nginx splits it. */
export interface NginxRoute {
  model: string;
  /**
   * Newest deploy first. split_clients gives its entries consecutive ranges of the hash space in this order, so a
   * candidate listed first keeps its users as its share grows (5 → 50 → 100 %) and loses only the last ones as it
   * shrinks: the order the gateway's own router keeps (src/serving/router.ts).
   */
  versions: NginxRouteVersion[];
}

export type NginxConfigRouter = Pick<
  NginxRouterConfig,
  'name' | 'confDir' | 'listen' | 'userHeader' | 'clientKeepaliveMs' | 'slots'
>;

/** One entry of a split: a slot and its share in hundredths of a percent (nginx's finest step). */
export interface SplitShare {
  slot: string;
  version: string;
  /** 1..10000; the shares of a split sum to 10000. */
  hundredths: number;
}

/** Where the target asks which config generation nginx runs (loopback and the listen address only). */
export const GENERATION_PATH = '/.ml-lifecycle/generation';

const SLOT_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const ROUTER_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const PATH_RE = /^\/[A-Za-z0-9._/@+-]*$/;
const SERVER_RE = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}$/;
const HEADER_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** `value`, refused unless it matches `re`: the last check before it is written into the config. */
function checked(value: string, re: RegExp, what: string): string {
  if (!re.test(value)) throw new Error(`refusing to write ${what} ${JSON.stringify(value)} into nginx.conf`);
  return value;
}

/** A double-quoted nginx string. Callers pass checked values only; escaping is the second line of defence. */
function quote(value: string): string {
  if (/[\p{Cc}$]/u.test(value)) throw new Error(`refusing to write ${JSON.stringify(value)} into nginx.conf`);
  return `"${value.replace(/[\\"]/g, '\\$&')}"`;
}

/**
 * The weights as nginx shares: hundredths of a percent summing to exactly 10000, by cumulative rounding in the given
 * order (each bound a function of the weights before it only, as the gateway's router lays out its buckets), versions
 * at 0 left out. Throws when the weights are not finite percentages summing to 100.
 */
export function splitShares(versions: readonly NginxRouteVersion[]): SplitShare[] {
  let sum = 0;
  for (const v of versions) {
    if (!Number.isFinite(v.weight) || v.weight < 0 || v.weight > 100) {
      throw new Error(`weight of ${v.version} must be a percentage in [0, 100], got ${v.weight}`);
    }
    sum += v.weight;
  }
  if (Math.abs(sum - 100) > 1e-9) throw new Error(`weights must sum to 100, got ${sum}`);
  const shares: SplitShare[] = [];
  let cumulative = 0;
  let from = 0;
  for (const v of versions) {
    cumulative += v.weight;
    const to = Math.min(10_000, Math.round(cumulative * 100));
    if (to > from) shares.push({ slot: v.slot, version: v.version, hundredths: to - from });
    from = to;
  }
  // The sum is 100 within 1e-9, so rounding already reaches 10000; the last share is pinned so that none is lost.
  const last = shares[shares.length - 1];
  if (last) last.hundredths += 10_000 - from;
  return shares;
}

/** `5.00%`, `0.01%`: split_clients takes at most two decimals. */
function percent(hundredths: number): string {
  return `${Math.floor(hundredths / 100)}.${String(hundredths % 100).padStart(2, '0')}%`;
}

const upstreamOf = (slot: string) => `slot_${checked(slot, SLOT_RE, 'slot name')}`;

/**
 * The whole nginx.conf of `router` routing `routes` (models with an empty table are simply absent: nginx answers 404
 * for them). `generation` is what GENERATION_PATH answers, so the target knows when a reload has taken effect.
 */
export function renderNginxConf(router: NginxConfigRouter, routes: readonly NginxRoute[], generation: number): string {
  if (!Number.isSafeInteger(generation) || generation < 0) throw new Error(`bad config generation ${generation}`);
  const dir = checked(router.confDir, PATH_RE, 'folder');
  const inDir = (name: string) => quote(`${dir === '/' ? '' : dir}/${name}`);
  const header = checked(router.userHeader, HEADER_RE, 'user header');
  const headerVar = `$http_${header.replace(/-/g, '_')}`;
  const { host, port } = router.listen;
  const listen = checked(`${host}:${port}`, SERVER_RE, 'listen address');
  const keepaliveS = Math.ceil(router.clientKeepaliveMs / 1000);
  if (!Number.isSafeInteger(keepaliveS) || keepaliveS < 0) throw new Error('bad client keepalive');
  // The generation is also asked from the listen address itself when nginx listens on one address only.
  const askers = ['127.0.0.1', '::1'];
  const bare = host.replace(/^\[|\]$/g, '');
  if (!['0.0.0.0', '::', ...askers].includes(bare)) askers.push(bare);

  const slots = new Map(router.slots.map((s) => [s.name, s]));
  const out: string[] = [];
  const line = (indent: number, text: string) => out.push(`${'  '.repeat(indent)}${text}`);
  line(0, `# nginx target ${checked(router.name, ROUTER_RE, 'router name')}, config generation ${generation}.`);
  line(0, '# Written by the ml-lifecycle worker on every weight change: edits here are overwritten.');
  line(0, 'worker_processes auto;');
  line(0, `pid ${inDir('nginx.pid')};`);
  line(0, `error_log ${inDir('error.log')} warn;`);
  line(0, 'events {');
  line(1, 'worker_connections 4096;');
  line(0, '}');
  line(0, 'http {');
  line(1, 'access_log off;');
  line(1, 'server_tokens off;');
  line(1, 'default_type application/json;');
  for (const temp of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    line(1, `${temp}_temp_path ${inDir(`${temp}_temp`)};`);
  }
  // The gateway takes prediction and label bodies of up to 8 MiB.
  line(1, 'client_max_body_size 8m;');
  line(1, 'client_body_buffer_size 1m;');
  line(1, `keepalive_timeout ${keepaliveS}s;`);
  // HTTP/1.1 without `Connection: close` keeps the upstream connections of each `keepalive` pool open.
  line(1, 'proxy_http_version 1.1;');
  line(1, 'proxy_set_header Connection "";');
  line(1, 'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;');
  // A request without a user id is split on its own random id: weighted, not sticky, not all on one version.
  line(1, `map ${headerVar} $ml_user_key {`);
  line(2, '"" $request_id;');
  line(2, `default ${headerVar};`);
  line(1, '}');

  const used = new Set<string>();
  const splits: { route: NginxRoute; variable: string }[] = [];
  for (const [index, route] of routes.entries()) {
    checked(route.model, MODEL_NAME_RE, 'model name');
    for (const v of route.versions) {
      checked(v.version, VERSION_NAME_RE, 'version');
      if (!slots.has(v.slot)) throw new Error(`model ${route.model} version ${v.version}: no slot ${v.slot}`);
    }
    const shares = splitShares(route.versions);
    const variable = `$ml_route_${index}`;
    line(1, `# model ${route.model}: ${shares.map((s) => `${s.version} ${percent(s.hundredths)}`).join(', ')}`);
    line(1, `split_clients "$ml_user_key" ${variable} {`);
    shares.forEach((share, i) => {
      used.add(share.slot);
      // The last entry takes what is left (`*`): the shares sum to 100 % exactly, and nginx wants at most 100 %.
      const key = i === shares.length - 1 ? '*' : percent(share.hundredths);
      line(2, `${key} ${upstreamOf(share.slot)};`);
    });
    line(1, '}');
    splits.push({ route, variable });
  }
  for (const name of [...used].sort()) {
    const slot = slots.get(name)!;
    line(1, `upstream ${upstreamOf(name)} {`);
    line(2, `server ${checked(slot.server, SERVER_RE, 'slot address')};`);
    line(2, 'keepalive 32;');
    // Below the gateway's own idle timeout (72 s): nginx closes idle upstream connections first, so it never sends a
    // request on one the gateway is closing.
    line(2, 'keepalive_timeout 30s;');
    line(1, '}');
  }

  line(1, 'server {');
  line(2, `listen ${listen};`);
  line(2, 'location / {');
  line(3, `return 404 '{"error":"no model is routed here"}';`);
  line(2, '}');
  line(2, 'location = /healthz {');
  line(3, `return 200 '{"ok":true}';`);
  line(2, '}');
  line(2, `location = ${GENERATION_PATH} {`);
  for (const asker of askers) line(3, `allow ${asker};`);
  line(3, 'deny all;');
  line(3, 'default_type text/plain;');
  line(3, `return 200 '${generation}';`);
  line(2, '}');
  for (const { route, variable } of splits) {
    const m = route.model;
    for (const location of [
      `^~ ${quote(`/v1/models/${m}/`)}`,
      `^~ ${quote(`/v2/models/${m}/`)}`,
      `= ${quote(`/v2/models/${m}`)}`,
    ]) {
      line(2, `location ${location} {`);
      line(3, `proxy_pass http://${variable};`);
      line(2, '}');
    }
  }
  line(1, '}');
  line(0, '}');
  return `${out.join('\n')}\n`;
}
