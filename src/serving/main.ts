import pino from 'pino';
import { z } from 'zod';
import { Duration } from '../shared/duration';
import { DEFAULT_PREDICTION_MEMORY } from './prediction-memory';
import { createGateway } from './server';

/** The gateway's configuration, parsed from the environment once. */
const GatewayEnv = z.object({
  GATEWAY_PORT: z.coerce.number().int().min(0).max(65_535).default(8700),
  GATEWAY_HOST: z.string().min(1).default('127.0.0.1'),
  GATEWAY_DATA_DIR: z.string().min(1).default('data/gateway'),
  /** Predictions remembered for their ground-truth labels, all models together; 0 remembers none. */
  GATEWAY_LABEL_MEMORY_MAX: z.coerce.number().int().min(0).default(DEFAULT_PREDICTION_MEMORY.maxEntries),
  /** How long a prediction waits for its label: `24h`, `90m`, or milliseconds. */
  GATEWAY_LABEL_MEMORY_TTL: z
    .preprocess((v) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v), Duration)
    .default(DEFAULT_PREDICTION_MEMORY.maxAgeMs)
    .refine((ms) => ms > 0, 'a positive duration'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

async function main(): Promise<void> {
  const parsed = GatewayEnv.safeParse(process.env);
  if (!parsed.success) {
    process.stderr.write(`invalid gateway configuration:\n${z.prettifyError(parsed.error)}\n`);
    process.exit(2);
  }
  const env = parsed.data;
  const logger = pino({ level: env.LOG_LEVEL });
  const app = await createGateway({
    dataDir: env.GATEWAY_DATA_DIR,
    logger,
    predictionMemory: { maxEntries: env.GATEWAY_LABEL_MEMORY_MAX, maxAgeMs: env.GATEWAY_LABEL_MEMORY_TTL },
  });
  const address = await app.listen({ port: env.GATEWAY_PORT, host: env.GATEWAY_HOST });
  logger.info({ address, dataDir: env.GATEWAY_DATA_DIR }, 'serving gateway listening');

  let closing = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'serving gateway closing');
    app.close().then(
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
