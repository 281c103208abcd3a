import type { Client } from '@temporalio/client';
import type { AlertSinkConfig } from '../alerts/sinks';
import type { AlertRouteSpec } from '../config/alert-sinks';
import type { LifecycleMetrics } from '../metrics/lifecycle-metrics';
import type { Alert } from '../shared/alerts';
import type { QuotaPoolsFile } from '../shared/quota';
import { QuotaClient } from '../client/quota-client';
import { createAlertingActivities } from './alerting';
import { createControlPlaneActivities } from './control-plane';
import { createDataActivities } from './data';
import { createEvaluationActivities } from './evaluation';
import { createGatewayActivities } from './gateway';
import { createMonitoringActivities } from './monitoring';
import { createTrainingActivities } from './training';

export interface ActivityDeps {
  client: Client;
  gatewayUrl: string;
  artifactsDir: string;
  python: string;
  root: string;
  quotaPools: QuotaPoolsFile;
  alertSink?: (alert: Alert) => Promise<void> | void;
  /** Where alerts are posted besides the log (ALERT_SINKS_FILE, read at worker start). */
  alertSinks?: AlertSinkConfig[];
  /** Routes of ALERT_SINKS_FILE: which sinks and owner an alert goes to (default: every sink). */
  alertRoutes?: AlertRouteSpec[];
  /** How long the alert router gathers a model's alerts into one notification (ALERT_GROUP_WAIT; default 10 s). */
  alertGroupWaitMs?: number;
  analysisPollIntervalMs?: number;
  /** Hardware catalog file (default: HARDWARE_CATALOG_FILE or config/hardware-catalog.yaml). */
  hardwareCatalogFile?: string;
  /** Approver keyring for signed approvals (default: ML_APPROVER_KEYS). */
  approverKeysFile?: string;
  /** The worker's Prometheus metrics: training durations, rollout readouts and drift, alerts delivered. */
  metrics?: LifecycleMetrics;
}

/** Every activity of the project, built once per worker from its dependencies. */
export function createActivities(deps: ActivityDeps) {
  const quota = new QuotaClient(deps.client, deps.quotaPools);
  return {
    ...createControlPlaneActivities({ ...deps, quota }),
    ...createMonitoringActivities({ client: deps.client, gatewayUrl: deps.gatewayUrl, quota, root: deps.root }),
    ...createAlertingActivities({
      client: deps.client,
      alertConfig: { sinks: deps.alertSinks ?? [], routes: deps.alertRoutes ?? [] },
      ...(deps.alertSink ? { alertSink: deps.alertSink } : {}),
      ...(deps.alertGroupWaitMs !== undefined ? { groupWaitMs: deps.alertGroupWaitMs } : {}),
      ...(deps.metrics ? { onDelivered: (a: Alert) => deps.metrics!.alertDelivered(a) } : {}),
    }),
    ...createEvaluationActivities({ root: deps.root }),
    ...createDataActivities({ root: deps.root }),
    ...createGatewayActivities({
      gatewayUrl: deps.gatewayUrl,
      pollIntervalMs: deps.analysisPollIntervalMs,
      metrics: deps.metrics,
    }),
    ...createTrainingActivities({
      artifactsDir: deps.artifactsDir,
      python: deps.python,
      root: deps.root,
      renewLease: async ({ pool, leaseId, ttlMs }) => (await quota.renew(pool, { leaseId, ttlMs })) !== null,
      metrics: deps.metrics,
    }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
