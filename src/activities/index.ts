import type { Client } from '@temporalio/client';
import type { AlertSinkConfig } from '../alerts/sinks';
import type { Alert } from '../shared/alerts';
import type { QuotaPoolsFile } from '../shared/quota';
import { QuotaClient } from '../client/quota-client';
import { createControlPlaneActivities } from './control-plane';
import { createDataActivities } from './data';
import { createEvaluationActivities } from './evaluation';
import { createGatewayActivities } from './gateway';
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
  analysisPollIntervalMs?: number;
  /** Hardware catalog file (default: HARDWARE_CATALOG_FILE or config/hardware-catalog.yaml). */
  hardwareCatalogFile?: string;
  /** Approver keyring for signed approvals (default: ML_APPROVER_KEYS). */
  approverKeysFile?: string;
}

/** Every activity of the project, built once per worker from its dependencies. */
export function createActivities(deps: ActivityDeps) {
  const quota = new QuotaClient(deps.client, deps.quotaPools);
  return {
    ...createControlPlaneActivities({ ...deps, quota }),
    ...createEvaluationActivities({ root: deps.root }),
    ...createDataActivities({ root: deps.root }),
    ...createGatewayActivities({ gatewayUrl: deps.gatewayUrl, pollIntervalMs: deps.analysisPollIntervalMs }),
    ...createTrainingActivities({
      artifactsDir: deps.artifactsDir,
      python: deps.python,
      root: deps.root,
      renewLease: async ({ pool, leaseId, ttlMs }) => (await quota.renew(pool, { leaseId, ttlMs })) !== null,
    }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
