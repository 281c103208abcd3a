import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { QuotaPoolsFile } from '../shared/quota';
import { describeIssues } from '../shared/spec';
import { projectRoot } from './paths';
import { trainerPython } from './toolchain';

const Env = z.object({
  GATEWAY_URL: z.url().default('http://127.0.0.1:8700'),
  ML_DATA_DIR: z.string().optional(),
  QUOTA_POOLS_FILE: z.string().optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
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
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const parsed = Env.safeParse(env);
  if (!parsed.success) throw new Error(`invalid environment: ${describeIssues(parsed.error).join('; ')}`);
  const root = projectRoot();
  const abs = (p: string) => (isAbsolute(p) ? p : join(root, p));
  const dataDir = abs(parsed.data.ML_DATA_DIR ?? 'data');
  const poolsFile = abs(parsed.data.QUOTA_POOLS_FILE ?? 'config/quota-pools.yaml');
  return {
    root,
    gatewayUrl: parsed.data.GATEWAY_URL.replace(/\/$/, ''),
    dataDir,
    artifactsDir: join(dataDir, 'artifacts'),
    python: trainerPython(),
    quotaPools: loadQuotaPools(poolsFile),
    logLevel: parsed.data.LOG_LEVEL,
  };
}

export function loadQuotaPools(file: string): QuotaPoolsFile {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read quota pools from ${file}: ${(err as Error).message}`);
  }
  const parsed = QuotaPoolsFile.safeParse(raw);
  if (!parsed.success) throw new Error(`invalid quota pools in ${file}: ${describeIssues(parsed.error).join('; ')}`);
  return parsed.data;
}
