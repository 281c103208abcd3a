import { condition, continueAsNew, log, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  MonitorPolicy,
  monitorPolicySignal,
  servingMonitorQuery,
  type CheckServingResult,
  type ServingMonitorState,
} from '../shared/monitoring';
import { ModelName } from '../shared/names';
import { MonitoringSpec } from '../shared/spec';
import { guardedSignal, parseInput } from './handlers';
import { setLogContext } from './log-context';
import { backoff } from './activity-options';

export interface ServingMonitorInput {
  model: string;
  monitoring: MonitoringSpec;
  /** The production version's lifecycle spec: what a `retrain` action starts from. */
  spec?: unknown;
  carried?: { since: CheckServingResult['since']; checks: number };
}

/**
 * Each check carries the production version's telemetry snapshot in and out (input sketches included: ~10-25 KB), so a
 * run continues as new after this many to keep its history around a megabyte.
 */
const CHECKS_PER_RUN = 50;

const monitor = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: backoff('1 second', '30 seconds', 5),
});

/**
 * The serving monitor of one model: every `interval` it checks whichever version is in production (the registry
 * says which, so promotions and rollbacks retarget it) and reports every condition to the alert router, which
 * decides what fires, resolves, is silenced and acted on. Runs until terminated, continuing as new; a newly promoted
 * version's policy reaches it by signal.
 */
export async function servingMonitorWorkflow(input: ServingMonitorInput): Promise<void> {
  parseInput(ModelName, input?.model, 'serving monitor model');
  setLogContext({ model: input.model });
  let monitoring = parseInput(MonitoringSpec, input.monitoring, 'serving monitor policy');
  let spec = input.spec;
  let since = input.carried?.since ?? null;
  let checks = input.carried?.checks ?? 0;
  let policyChanged = false;
  const state: ServingMonitorState = {
    model: input.model,
    version: since?.version ?? null,
    enabled: monitoring.enabled,
    checks,
    lastCheckAt: null,
    lastRequests: 0,
    latest: [],
  };
  setHandler(
    monitorPolicySignal,
    guardedSignal('monitorPolicy', MonitorPolicy, (p) => {
      monitoring = p.monitoring;
      spec = p.spec;
      state.enabled = monitoring.enabled;
      policyChanged = true;
    }),
  );
  setHandler(servingMonitorQuery, () => ({ ...state, checks }));

  let run = 0;
  while (run < CHECKS_PER_RUN && !workflowInfo().continueAsNewSuggested) {
    if (monitoring.enabled) {
      run++;
      try {
        const result = await monitor.checkServing({
          model: input.model,
          monitoring,
          since,
          ...(spec !== undefined ? { retrainSpec: spec } : {}),
        });
        checks++;
        since = result.since;
        state.version = result.version;
        state.lastCheckAt = new Date().toISOString();
        state.lastRequests = result.requests;
        state.latest = result.observations.map((o) => ({
          kind: o.kind,
          firing: o.firing,
          summary: o.summary,
          at: o.at,
        }));
        await monitor.reportObservations(result.observations);
      } catch (err) {
        // A check that keeps failing is the worker's or the registry's problem, not the model's: log, try next time.
        log.warn('serving check failed', { model: input.model, error: String(err) });
      }
    }
    policyChanged = false;
    await condition(() => policyChanged, monitoring.enabled ? monitoring.interval : 3_600_000);
  }
  await continueAsNew<typeof servingMonitorWorkflow>({
    model: input.model,
    monitoring,
    ...(spec !== undefined ? { spec } : {}),
    carried: { since, checks },
  });
}
