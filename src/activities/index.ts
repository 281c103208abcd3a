import type { Client } from '@temporalio/client';
import type { AlertSinkConfig } from '../alerts/sinks';
import { createArtifactResolver } from '../artifacts/resolve';
import type { ArtifactStore } from '../artifacts/store-core';
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
import { createHookActivities } from './hooks';
import { createMonitoringActivities } from './monitoring';
import type { GatewayAdminAccess, TargetDeps } from '../targets/target';
import { createTrainingActivities, DEFAULT_TRAINER_POLICY, type TrainingDeps } from './training';

import { dirname, join } from 'node:path';
import { approverKeysPath } from '../config/approver-keys';
import { PolicySource, policyPath } from '../config/policy';

export interface ActivityDeps {
  client: Client;
  /** The worker's serving gateway: its admin URL (GATEWAY_ADMIN_URL) and admin token (GATEWAY_ADMIN_TOKEN). */
  gateway: GatewayAdminAccess;
  /** The worker's nginx routers by name (ML_NGINX_TARGETS, built once at start: see createNginxTargets). */
  nginxTargets?: TargetDeps['nginx'];
  artifactsDir: string;
  /**
   * The artifact store (src/artifacts/store.ts): training puts every artifact into it, and the other activities fetch
   * what is not this process's own into `artifactCacheDir`. Absent: artifacts stay in `artifactsDir`, read by path.
   */
  artifactStore?: ArtifactStore;
  /** Where fetched artifacts are kept (default: `artifact-cache` beside `artifactsDir`). */
  artifactCacheDir?: string;
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
  /** The platform policy and keyring privileged operations are checked against (default: ML_POLICY_FILE). */
  policy?: PolicySource;
  /** The worker's Prometheus metrics: training durations, rollout readouts and drift, alerts delivered. */
  metrics?: LifecycleMetrics;
  /** Worker-side rules for a model's trainer, from the platform policy (absent: DEFAULT_TRAINER_POLICY). */
  trainerPolicy?: TrainingDeps['trainerPolicy'];
  /**
   * The secret the worker's lease owner keys derive from, shared by every worker of a deployment (absent:
   * ML_WORKER_SECRET, ML_WORKER_SECRET_FILE or `<data>/worker-secret`, read on first use: see loadWorkerSecret).
   */
  workerSecret?: string;
}

/** Every activity of the project, built once per worker from its dependencies. */
export function createActivities(deps: ActivityDeps) {
  const quota = QuotaClient.forWorker(deps.client, deps.quotaPools, deps.workerSecret);
  const policy = deps.policy ?? new PolicySource(policyPath(), deps.approverKeysFile ?? approverKeysPath(), deps.root);
  const resolveArtifact = createArtifactResolver({
    store: deps.artifactStore,
    cacheDir: deps.artifactCacheDir ?? join(dirname(deps.artifactsDir), 'artifact-cache'),
    ownDir: deps.artifactsDir,
  });
  return {
    ...createControlPlaneActivities({ ...deps, quota, policy }),
    ...createMonitoringActivities({
      client: deps.client,
      gateway: deps.gateway,
      quota,
      root: deps.root,
      ...(deps.nginxTargets ? { nginx: deps.nginxTargets } : {}),
      resolveArtifact,
    }),
    ...createAlertingActivities({
      client: deps.client,
      alertConfig: { sinks: deps.alertSinks ?? [], routes: deps.alertRoutes ?? [] },
      ...(deps.alertSink ? { alertSink: deps.alertSink } : {}),
      ...(deps.alertGroupWaitMs !== undefined ? { groupWaitMs: deps.alertGroupWaitMs } : {}),
      ...(deps.metrics ? { onDelivered: (a: Alert) => deps.metrics!.alertDelivered(a) } : {}),
    }),
    ...createEvaluationActivities({ root: deps.root, resolveArtifact }),
    ...createDataActivities({ root: deps.root }),
    ...createHookActivities(),
    ...createGatewayActivities({
      gateway: deps.gateway,
      ...(deps.nginxTargets ? { nginx: deps.nginxTargets } : {}),
      pollIntervalMs: deps.analysisPollIntervalMs,
      metrics: deps.metrics,
      resolveArtifact,
    }),
    ...createTrainingActivities({
      artifactsDir: deps.artifactsDir,
      ...(deps.artifactStore ? { artifactStore: deps.artifactStore } : {}),
      python: deps.python,
      root: deps.root,
      renewLease: async ({ pool, leaseId, ttlMs }) => (await quota.renew(pool, { leaseId, ttlMs })) !== null,
      metrics: deps.metrics,
      // The policy's training rules, read when each training starts (the file is re-read when it changes).
      trainerPolicy:
        deps.trainerPolicy ??
        ((model) => {
          const { env, roots } = policy.forModel(model).training;
          return {
            // The policy's variables come on top of the few a Python process needs to run (none of them a secret).
            env: [...new Set([...DEFAULT_TRAINER_POLICY.env, ...(env ?? [])])],
            programRoots: roots.length > 0 ? roots : DEFAULT_TRAINER_POLICY.programRoots,
          };
        }),
    }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
