import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { HardwareCatalog } from '../shared/hardware';
import { QuotaPoolsFile } from '../shared/quota';
import { describeIssues } from '../shared/spec';
import { projectRoot } from './paths';
import { trainerPython } from './toolchain';
import { loadYamlFile } from './yaml-file';

const Env = z.object({
  GATEWAY_URL: z.url().default('http://127.0.0.1:8700'),
  ML_DATA_DIR: z.string().optional(),
  QUOTA_POOLS_FILE: z.string().optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  TEMPORAL_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  METRICS_HOST: z.string().min(1).default('127.0.0.1'),
});

/** Settings of the worker and the CLI, from the environment (Temporal connection settings come from envconfig). */
export interface AppConfig {
  root: string;
  gatewayUrl: string;
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

export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const parsed = Env.safeParse(env);
  if (!parsed.success) throw new Error(`invalid environment: ${describeIssues(parsed.error).join('; ')}`);
  const root = projectRoot();
  const abs = (p: string) => (isAbsolute(p) ? p : join(root, p));
  const dataDir = abs(parsed.data.ML_DATA_DIR ?? 'data');
  const poolsFile = quotaPoolsPath(env);
  return {
    root,
    gatewayUrl: parsed.data.GATEWAY_URL.replace(/\/$/, ''),
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
