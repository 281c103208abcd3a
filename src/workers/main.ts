import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime } from '@temporalio/worker';
import { createActivities } from '../activities';
import { ArtifactStoreConfigError, artifactStoreFromEnv } from '../artifacts/store';
import { QuotaClient } from '../client/quota-client';
import { alertGroupWaitFromEnv, loadAlertConfigFromEnv } from '../config/alert-sinks';
import { loadConfig } from '../config/env';
import { TokenConfigError } from '../config/tokens';
import { approverKeysPath } from '../config/approver-keys';
import { PolicySource, policyPath } from '../config/policy';
import { InvalidFileError } from '../config/yaml-file';
import { loadNginxTargetsFromEnv } from '../config/nginx-targets';
import { createNginxTargets } from '../targets/nginx';
import { LifecycleMetrics } from '../metrics/lifecycle-metrics';
import { startMetricsServer, temporalPrometheusTelemetry, type MetricsServer } from '../metrics/server';
import { temporalSettings } from '../config/temporal';
import { createLogger, PinoTemporalLogger } from './logger';
import { createWorkers, workerRolesFromEnv, WorkerRolesError } from './workers';
import { removeOrphanedWorkDirs } from '../activities/training';
import { callbackAddressFromEnv, createCallbackServer } from '../client/callback-server';
import { LifecycleClient } from '../client/lifecycle-client';

/** Worker process: connects with the environment's Temporal settings and runs every worker until SIGINT/SIGTERM. */
async function main(): Promise<void> {
  // What this process serves: the control plane, training classes, or both (a GPU host: training only).
  const { controlPlane, trainingClasses } = workerRolesFromEnv();
  const config = loadConfig(process.env, { gatewayToken: controlPlane });
  // Training puts every artifact here; the other activities fetch from here what this host did not train. Default: a
  // folder of the data dir, the same one the gateway defaults to on one machine (created: nothing else would).
  const defaultStore = join(config.dataDir, 'artifact-store');
  const artifactStore = artifactStoreFromEnv(process.env, { defaultLocation: pathToFileURL(defaultStore).href });
  if (artifactStore.location === pathToFileURL(defaultStore).href) await mkdir(defaultStore, { recursive: true });
  // Read once at start, secrets included: a bad sinks file or a missing secret stops the worker (exit 2).
  const { sinks: alertSinks, routes: alertRoutes } = loadAlertConfigFromEnv();
  const alertGroupWaitMs = alertGroupWaitFromEnv();
  // The nginx routers (ML_NGINX_TARGETS) are checked now too; each gets its folder and a first nginx.conf to start on.
  const nginxTargets = createNginxTargets(loadNginxTargetsFromEnv(), config.gateway.token);
  await Promise.all([...nginxTargets.values()].map((target) => target.prepare()));
  // The platform policy and the keyring are checked now (exit 2 naming the field and line) and re-read on change.
  const policy = new PolicySource(policyPath(), approverKeysPath(), config.root);
  policy.check();
  const callbackAddress = callbackAddressFromEnv();
  const logger = createLogger(config.logLevel, 'worker');
  const { metrics: metricsConfig } = config;
  // The SDK's own metrics come from the Runtime, which a process installs once: its endpoint is decided here.
  const temporalMetrics =
    metricsConfig.temporalPort === undefined ? null : `${metricsConfig.host}:${metricsConfig.temporalPort}`;
  Runtime.install({
    logger: new PinoTemporalLogger(logger),
    ...(temporalMetrics ? { telemetryOptions: temporalPrometheusTelemetry(temporalMetrics) } : {}),
  });
  if (temporalMetrics) logger.info({ address: `http://${temporalMetrics}/metrics` }, 'temporal sdk metrics endpoint');
  const settings = temporalSettings();
  const { namespace } = settings;
  const connection = await NativeConnection.connect(settings.native);
  const client = new Client({ connection: await Connection.connect(settings.connection), namespace });
  const metrics = new LifecycleMetrics({ client, quotaPools: config.quotaPools, logger, processMetrics: true });
  const activities = createActivities({
    client,
    gateway: config.gateway,
    nginxTargets,
    artifactsDir: config.artifactsDir,
    artifactStore,
    artifactCacheDir: join(config.dataDir, 'artifact-cache'),
    python: config.python,
    root: config.root,
    quotaPools: config.quotaPools,
    alertSinks,
    alertRoutes,
    policy,
    ...(alertGroupWaitMs !== undefined ? { alertGroupWaitMs } : {}),
    metrics,
  });
  const workers = await createWorkers({ connection, namespace, activities, trainingClasses, controlPlane, metrics });
  // A worker of this host killed mid-training left its trainer's working folder behind.
  if (trainingClasses.length > 0) {
    const orphaned = await removeOrphanedWorkDirs();
    if (orphaned.length > 0) logger.info({ removed: orphaned }, 'removed working folders of trainers of dead workers');
  }
  let metricsServer: MetricsServer | null = null;
  if (metricsConfig.port !== undefined) {
    metricsServer = await startMetricsServer(metrics, { port: metricsConfig.port, host: metricsConfig.host });
    logger.info({ address: `${metricsServer.url}/metrics` }, 'metrics endpoint');
  }
  // Where external systems send their signed gate decisions (src/client/callback-server.ts).
  const callbacks =
    callbackAddress && controlPlane
      ? createCallbackServer({
          lifecycles: new LifecycleClient(client),
          logger: logger.child({ component: 'callbacks' }),
        })
      : null;
  if (callbacks && callbackAddress) {
    const url = await callbacks.listen(callbackAddress);
    logger.info({ address: url }, 'gate decision callback endpoint');
  }
  logger.info(
    {
      address: settings.connection.address,
      namespace,
      controlPlane,
      trainingClasses,
      artifactStore: artifactStore.location,
      alertSinks: alertSinks.map((s) => s.name),
      nginxTargets: [...nginxTargets.keys()],
      policy: policy.policyFile,
    },
    'worker running',
  );
  const running = Promise.all(workers.map((w) => w.run()));
  // Pools take the file's capacity, caps and alert settings; leases already held stay. The control plane's job.
  if (controlPlane) {
    new QuotaClient(client, config.quotaPools).configureAll().then(
      (changed) =>
        logger.info({ pools: config.quotaPools.pools.map((p) => p.name), changed }, 'quota pools configured'),
      (err: unknown) => logger.error({ err }, 'could not apply the quota pool configuration'),
    );
  }
  try {
    await running;
  } finally {
    await callbacks?.close();
    await metricsServer?.close();
    await metrics.close();
    await client.connection.close();
    await connection.close();
  }
  logger.info('worker stopped');
}

main().catch((err: unknown) => {
  console.error(`worker: ${err instanceof Error ? err.message : String(err)}`);
  // A bad configuration file or admin token is invalid input (exit 2), like mlctl's.
  process.exit(
    err instanceof InvalidFileError ||
      err instanceof TokenConfigError ||
      err instanceof WorkerRolesError ||
      err instanceof ArtifactStoreConfigError
      ? 2
      : 1,
  );
});
