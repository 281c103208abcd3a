import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { z } from 'zod';
import { ArtifactStoreConfigError, artifactStoreFromEnv, type ArtifactStore } from '../artifacts/store';
import { readToken, TokenConfigError } from '../config/tokens';
import { Duration } from '../shared/duration';
import { DEFAULT_PREDICTION_MEMORY } from './prediction-memory';
import { createGateway } from './server';

const Port = z.coerce.number().int().min(0).max(65_535);

/**
 * The gateway's configuration, parsed from the environment once. The bearer tokens (GATEWAY_ADMIN_TOKEN[_FILE],
 * GATEWAY_LABELS_TOKEN[_FILE]) are read by src/config/tokens.ts: never logged, never echoed in an error.
 */
const GatewayEnv = z
  .object({
    /** The public listener: predictions and labels. */
    GATEWAY_PORT: Port.default(8700),
    GATEWAY_HOST: z.string().min(1).default('127.0.0.1'),
    /** The admin listener: every /admin/... route. Loopback by default: only the control plane should reach it. */
    GATEWAY_ADMIN_PORT: Port.default(8701),
    GATEWAY_ADMIN_HOST: z.string().min(1).default('127.0.0.1'),
    GATEWAY_DATA_DIR: z.string().min(1).default('data/gateway'),
    /** Artifacts are loaded from inside this folder only (relative: from the gateway's working directory). */
    GATEWAY_ARTIFACT_ROOT: z.string().min(1).default('data/artifacts'),
    /** Predictions remembered for their ground-truth labels, all models together; 0 remembers none. */
    GATEWAY_LABEL_MEMORY_MAX: z.coerce.number().int().min(0).default(DEFAULT_PREDICTION_MEMORY.maxEntries),
    /** How long a prediction waits for its label: `24h`, `90m`, or milliseconds. */
    GATEWAY_LABEL_MEMORY_TTL: z
      .preprocess((v) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v), Duration)
      .default(DEFAULT_PREDICTION_MEMORY.maxAgeMs)
      .refine((ms) => ms > 0, 'a positive duration'),
    /** One version per model: a deploy of a second version is refused (409). For the nginx target's slots. */
    GATEWAY_SINGLE_VERSION: z
      .enum(['true', 'false', '1', '0'], { error: 'true or false' })
      .default('false')
      .transform((v) => v === 'true' || v === '1'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .refine(
    (env) =>
      env.GATEWAY_PORT === 0 ||
      env.GATEWAY_PORT !== env.GATEWAY_ADMIN_PORT ||
      env.GATEWAY_HOST !== env.GATEWAY_ADMIN_HOST,
    { path: ['GATEWAY_ADMIN_PORT'], message: 'the admin listener needs a port (or host) of its own, not GATEWAY_PORT' },
  );

/** Refuses to start (exit 2) on a configuration problem, saying which. */
function invalid(message: string): never {
  process.stderr.write(`invalid gateway configuration:\n${message}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const parsed = GatewayEnv.safeParse(process.env);
  if (!parsed.success) invalid(z.prettifyError(parsed.error));
  const env = parsed.data;
  let adminToken: string | undefined;
  let labelsToken: string | undefined;
  try {
    adminToken = readToken(process.env, 'GATEWAY_ADMIN_TOKEN');
    labelsToken = readToken(process.env, 'GATEWAY_LABELS_TOKEN');
  } catch (err) {
    if (err instanceof TokenConfigError) invalid(err.message);
    throw err;
  }
  if (adminToken === undefined) {
    invalid(
      'the admin API needs a bearer token: set GATEWAY_ADMIN_TOKEN, or GATEWAY_ADMIN_TOKEN_FILE to a file holding it ' +
        '(at least 16 characters; e.g. `openssl rand -base64 32`)',
    );
  }
  // ML_ARTIFACT_STORE, else the `artifact-store` folder beside the artifact root: on one machine that root is the
  // worker's <ML_DATA_DIR>/artifacts, so both use <ML_DATA_DIR>/artifact-store. Only read here, never created.
  let artifactStore: ArtifactStore;
  try {
    artifactStore = artifactStoreFromEnv(process.env, {
      defaultLocation: pathToFileURL(resolve(dirname(resolve(env.GATEWAY_ARTIFACT_ROOT)), 'artifact-store')).href,
    });
  } catch (err) {
    if (err instanceof ArtifactStoreConfigError) invalid(err.message);
    throw err;
  }
  const logger = pino({ level: env.LOG_LEVEL });
  const gateway = await createGateway({
    artifactStore,
    dataDir: env.GATEWAY_DATA_DIR,
    artifactRoot: env.GATEWAY_ARTIFACT_ROOT,
    adminToken,
    ...(labelsToken === undefined ? {} : { labelsToken }),
    logger,
    predictionMemory: { maxEntries: env.GATEWAY_LABEL_MEMORY_MAX, maxAgeMs: env.GATEWAY_LABEL_MEMORY_TTL },
    singleVersion: env.GATEWAY_SINGLE_VERSION,
  });
  if (labelsToken === undefined) {
    logger.warn('no labels token (GATEWAY_LABELS_TOKEN): POST /v1/models/:model/labels refuses every call');
  }
  let addresses;
  try {
    addresses = await gateway.listen({
      public: { port: env.GATEWAY_PORT, host: env.GATEWAY_HOST },
      admin: { port: env.GATEWAY_ADMIN_PORT, host: env.GATEWAY_ADMIN_HOST },
    });
  } catch (err) {
    await gateway.close().catch(() => undefined);
    throw err;
  }
  logger.info(
    {
      address: addresses.public,
      adminAddress: addresses.admin,
      dataDir: env.GATEWAY_DATA_DIR,
      artifactRoot: env.GATEWAY_ARTIFACT_ROOT,
      artifactStore: artifactStore.location,
      labels: labelsToken !== undefined,
      singleVersion: env.GATEWAY_SINGLE_VERSION,
    },
    'serving gateway listening',
  );

  let closing = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'serving gateway closing');
    gateway.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'serving gateway failed to close cleanly');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((err: unknown) => {
  process.stderr.write(`serving gateway failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
