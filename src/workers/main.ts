import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime } from '@temporalio/worker';
import { createActivities } from '../activities';
import { QuotaClient } from '../client/quota-client';
import { loadAlertSinksFromEnv } from '../config/alert-sinks';
import { loadConfig } from '../config/env';
import { InvalidFileError } from '../config/yaml-file';
import { temporalSettings } from '../config/temporal';
import { createLogger, PinoTemporalLogger } from './logger';
import { createWorkers } from './workers';

/** Worker process: connects with the environment's Temporal settings and runs every worker until SIGINT/SIGTERM. */
async function main(): Promise<void> {
  const config = loadConfig();
  // Read once at start, secrets included: a bad sinks file or a missing secret stops the worker (exit 2).
  const alertSinks = loadAlertSinksFromEnv();
  const logger = createLogger(config.logLevel, 'worker');
  Runtime.install({ logger: new PinoTemporalLogger(logger) });
  const settings = temporalSettings();
  const { namespace } = settings;
  const connection = await NativeConnection.connect(settings.native);
  const client = new Client({ connection: await Connection.connect(settings.connection), namespace });
  const activities = createActivities({
    client,
    gatewayUrl: config.gatewayUrl,
    artifactsDir: config.artifactsDir,
    python: config.python,
    root: config.root,
    quotaPools: config.quotaPools,
    alertSinks,
  });
  const trainingClasses = (process.env.TRAINING_CLASSES ?? 'cpu,gpu,tpu').split(',').filter(Boolean);
  const workers = await createWorkers({ connection, namespace, activities, trainingClasses });
  logger.info(
    { address: settings.connection.address, namespace, trainingClasses, alertSinks: alertSinks.map((s) => s.name) },
    'worker running',
  );
  const running = Promise.all(workers.map((w) => w.run()));
  // Pools take the file's capacity, caps and alert settings; leases already held stay.
  new QuotaClient(client, config.quotaPools).configureAll().then(
    (changed) => logger.info({ pools: config.quotaPools.pools.map((p) => p.name), changed }, 'quota pools configured'),
    (err: unknown) => logger.error({ err }, 'could not apply the quota pool configuration'),
  );
  try {
    await running;
  } finally {
    await client.connection.close();
    await connection.close();
  }
  logger.info('worker stopped');
}

main().catch((err: unknown) => {
  console.error(`worker: ${err instanceof Error ? err.message : String(err)}`);
  // A bad configuration file is invalid input (exit 2), like mlctl's.
  process.exit(err instanceof InvalidFileError ? 2 : 1);
});
