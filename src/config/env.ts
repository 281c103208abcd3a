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
  /** The gateway's admin listener (GATEWAY_ADMIN_PORT of the gateway): every call the worker makes goes there. */
  GATEWAY_ADMIN_URL: z
    .url({ protocol: /^https?$/, error: 'an http:// or https:// URL' })
    .default('http://127.0.0.1:8701'),
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
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const parsed = Env.safeParse(env);
  if (!parsed.success) throw new Error(`invalid environment: ${describeIssues(parsed.error).join('; ')}`);
  const root = projectRoot();
  const abs = (p: string) => (isAbsolute(p) ? p : join(root, p));
  const dataDir = abs(parsed.data.ML_DATA_DIR ?? 'data');
  const poolsFile = quotaPoolsPath(env);
  return {
    root,
    gateway: {
      url: parsed.data.GATEWAY_ADMIN_URL.replace(/\/+$/, ''),
      token: requireToken(env, 'GATEWAY_ADMIN_TOKEN', 'the worker calls the serving gateway admin API'),
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

/** Reads and validates the quota pools file; an invalid one throws InvalidFileError naming every problem. */
export function loadQuotaPools(file: string): QuotaPoolsFile {
  return loadYamlFile(file, QuotaPoolsFile, 'quota pools');
}

/** The hardware catalog: `file`, else HARDWARE_CATALOG_FILE, else config/hardware-catalog.yaml of the project. */
export function loadHardwareCatalog(file?: string, env: NodeJS.ProcessEnv = process.env): HardwareCatalog {
  const path = file ?? env.HARDWARE_CATALOG_FILE ?? 'config/hardware-catalog.yaml';
  return loadYamlFile(isAbsolute(path) ? path : join(projectRoot(), path), HardwareCatalog, 'hardware catalog');
}
