import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { HardwareCatalog } from '../shared/hardware';
import { QuotaPoolsFile } from '../shared/quota';
import { describeIssues } from '../shared/spec';
import type { GatewayAdminAccess } from '../targets/target';
import { projectRoot } from './paths';
import { requireToken } from './tokens';
import { trainerPython } from './toolchain';
import { loadYamlFile } from './yaml-file';

const Env = z.object({
  /**
   * The gateway's admin listener (GATEWAY_ADMIN_PORT of the gateway): every call the worker makes goes there. A
   * comma-separated list names the replicas of one gateway: every mutation goes to all of them (see
   * src/targets/replicas.ts).
   */
  GATEWAY_ADMIN_URL: z.string().default('http://127.0.0.1:8701'),
  ML_DATA_DIR: z.string().optional(),
  QUOTA_POOLS_FILE: z.string().optional(),
  /**
   * The secret the worker derives quota lease owner keys from, the same for every worker of a deployment (else
   * ML_WORKER_SECRET_FILE, else `<ML_DATA_DIR>/worker-secret`; see loadWorkerSecret in src/client/quota-client.ts).
   */
  ML_WORKER_SECRET: z.string().min(32, 'at least 32 characters').optional(),
  ML_WORKER_SECRET_FILE: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  TEMPORAL_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  METRICS_HOST: z.string().min(1).default('127.0.0.1'),
});

/** Settings of the worker, from the environment (Temporal connection settings come from envconfig). */
export interface AppConfig {
  root: string;
  /** The serving gateway's admin API: GATEWAY_ADMIN_URL, and the token of GATEWAY_ADMIN_TOKEN[_FILE]. */
  gateway: GatewayAdminAccess;
  dataDir: string;
  artifactsDir: string;
  python: string;
  quotaPools: QuotaPoolsFile;
  logLevel: z.infer<typeof Env>['LOG_LEVEL'];
  /**
   * The worker's Prometheus endpoints on `host`: its own series (METRICS_PORT) and the Temporal SDK's
   * (TEMPORAL_METRICS_PORT); each is off while its port is unset.
   */
  metrics: { host: string; port?: number; temporalPort?: number };
}

/** The quota pools file: QUOTA_POOLS_FILE, else config/quota-pools.yaml of the project. */
export function quotaPoolsPath(env: NodeJS.ProcessEnv = process.env): string {
  const file = env.QUOTA_POOLS_FILE ?? 'config/quota-pools.yaml';
  return isAbsolute(file) ? file : join(projectRoot(), file);
}

/**
 * The worker's configuration. Throws on an invalid variable; a missing or unusable admin token is a TokenConfigError
 * (the worker deploys through the gateway's admin API: without the token every deploy would be refused).
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  /** False for a training-only process (WORKER_CONTROL_PLANE=false): it never calls the gateway, so needs no token. */
  options: { gatewayToken?: boolean } = {},
): AppConfig {
  const parsed = Env.safeParse(env);
  if (!parsed.success) throw new Error(`invalid environment: ${describeIssues(parsed.error).join('; ')}`);
  const root = projectRoot();
  const abs = (p: string) => (isAbsolute(p) ? p : join(root, p));
  const dataDir = abs(parsed.data.ML_DATA_DIR ?? 'data');
  const poolsFile = quotaPoolsPath(env);
  return {
    root,
    gateway: {
      ...gatewayAdminUrls(parsed.data.GATEWAY_ADMIN_URL),
      token:
        options.gatewayToken === false
          ? ''
          : requireToken(env, 'GATEWAY_ADMIN_TOKEN', 'the worker calls the serving gateway admin API'),
    },
    dataDir,
    artifactsDir: join(dataDir, 'artifacts'),
    python: trainerPython(),
    quotaPools: loadQuotaPools(poolsFile),
    logLevel: parsed.data.LOG_LEVEL,
    metrics: {
      host: parsed.data.METRICS_HOST,
      port: parsed.data.METRICS_PORT,
      temporalPort: parsed.data.TEMPORAL_METRICS_PORT,
    },
  };
}

const AdminUrl = z.url({ protocol: /^https?$/, error: 'an http:// or https:// URL' });

/**
 * GATEWAY_ADMIN_URL: one admin URL, or the comma-separated admin URLs of a gateway's replicas (each http(s), none
 * twice once trailing slashes are dropped). `url` is the first, `replicas` all of them when there are several. Throws
 * one line naming the variable and every bad entry.
 */
export function gatewayAdminUrls(value: string): Pick<GatewayAdminAccess, 'url' | 'replicas'> {
  const entries = value.split(',').map((e) => e.trim());
  const problems: string[] = [];
  const seen = new Set<string>();
  const urls: string[] = [];
  entries.forEach((entry, i) => {
    const where = entries.length > 1 ? `entry ${i + 1} ` : '';
    const quoted = JSON.stringify(entry.length > 200 ? `${entry.slice(0, 200)}…` : entry);
    if (!AdminUrl.safeParse(entry).success) {
      problems.push(`${where}${quoted} is not an http:// or https:// URL`);
      return;
    }
    const url = entry.replace(/\/+$/, '');
    // Compared as URLs: `HTTP://Host:80/` and `http://host` are the same listener.
    const parsed = new URL(url);
    const key = `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}`;
    if (seen.has(key)) problems.push(`${where}${quoted} names a replica already listed`);
    seen.add(key);
    urls.push(url);
  });
  if (problems.length > 0) throw new Error(`invalid environment: GATEWAY_ADMIN_URL: ${problems.join('; ')}`);
  return { url: urls[0] as string, ...(urls.length > 1 ? { replicas: urls } : {}) };
}

/** Reads and validates the quota pools file; an invalid one throws InvalidFileError naming every problem. */
export function loadQuotaPools(file: string): QuotaPoolsFile {
  return loadYamlFile(file, QuotaPoolsFile, 'quota pools');
}

/** The hardware catalog: `file`, else HARDWARE_CATALOG_FILE, else config/hardware-catalog.yaml of the project. */
export function loadHardwareCatalog(file?: string, env: NodeJS.ProcessEnv = process.env): HardwareCatalog {
  const path = file ?? env.HARDWARE_CATALOG_FILE ?? 'config/hardware-catalog.yaml';
  return loadYamlFile(isAbsolute(path) ? path : join(projectRoot(), path), HardwareCatalog, 'hardware catalog');
}
