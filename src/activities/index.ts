import type { Client } from '@temporalio/client';
import type { Alert } from '../shared/alerts';
import type { QuotaPoolsFile } from '../shared/quota';
import { createControlPlaneActivities } from './control-plane';
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
  analysisPollIntervalMs?: number;
}

/** Every activity of the project, built once per worker from its dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createControlPlaneActivities(deps),
    ...createEvaluationActivities({ root: deps.root }),
    ...createGatewayActivities({ gatewayUrl: deps.gatewayUrl, pollIntervalMs: deps.analysisPollIntervalMs }),
    ...createTrainingActivities({ artifactsDir: deps.artifactsDir, python: deps.python, root: deps.root }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
