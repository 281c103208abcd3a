import { log, proxyActivities, setCurrentDetails, type ActivityOptions } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { Alert } from '../../shared/alerts';
import type { LifecycleSpec } from '../../shared/spec';
import { Stage, type Decision } from '../../shared/status';
import type { DeploymentTargetSpec } from '../../shared/deployment-target';
import { Compensations } from './compensations';
import type { LifecycleState } from './state';
import type { LifecycleFailureType } from '../../shared/errors';
import { CONTROL_OPTIONS, FAIL_FAST_OPTIONS } from '../activity-options';

export interface LifecycleInput {
  /** The spec as validated at the edge; validated again here, since anyone may start the workflow. */
  spec: unknown;
}

export const control = proxyActivities<Activities>(CONTROL_OPTIONS);

// Stage analysis waits for the minimum sample; it heartbeats while it waits, so a dead worker is noticed quickly.
export const ANALYSIS_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { maximumAttempts: 5 },
};
export const analysis = proxyActivities<Activities>(ANALYSIS_OPTIONS);

// The rollback's calls fail fast: the rollback itself retries them from workflow timers until traffic holds, so it
// can tell (and page) when it is stuck instead of waiting inside one activity's retries.
export const rollbackControl = proxyActivities<Activities>(FAIL_FAST_OPTIONS);

/** Where production traffic is served: the spec's deployment target, or the worker's gateway. */
export interface Where {
  model: string;
  target?: DeploymentTargetSpec;
}

/**
 * What every phase of a lifecycle works with: the spec, the state, where production serves, the compensation stack,
 * and the few helpers each phase needs. One per run.
 */
export class LifecycleContext {
  readonly comp = new Compensations();
  readonly prod: Where;
  /** Pool of the training lease (the chosen device's pool). */
  trainingPool: string;
  /** Stops the timer renewals of each serving lease the lifecycle holds, by lease id. */
  readonly stopRenewing = new Map<string, () => void>();
  /**
   * Ends the lifecycle on an abort taken in the middle of a phase (a wait in a quota queue): as the story ends it
   * between phases (src/workflows/model-lifecycle.ts sets it).
   */
  stopAborted: () => Promise<unknown> = async () => undefined;
  private alertsRaised = 0;

  constructor(
    readonly spec: LifecycleSpec,
    readonly input: LifecycleInput,
    readonly lc: LifecycleState,
    /** The run's id: opIds carry it, so a re-run of the same lifecycle id really deploys again. */
    readonly runId: string,
  ) {
    this.prod = { model: spec.model, ...(spec.deployment.target ? { target: spec.deployment.target } : {}) };
    this.trainingPool = spec.quota.pool;
  }

  /** The idempotency key of one change a target applies once: `lifecycle-…@1a2b3c4d:deploy`. */
  op(name: string): string {
    return `${this.lc.id}@${runTag(this.runId)}:${name}`;
  }

  servingLease(version: string): string {
    return `serve:${this.spec.model}:${version}`;
  }

  /** The one-line summary the Temporal UI shows for the workflow. */
  details(text: string): void {
    setCurrentDetails(`**${this.spec.model} ${this.spec.version}** — ${text}`);
  }

  /**
   * Raises an alert through the alert router (dedup, grouping, routing, retried delivery off the lifecycle's path).
   * `dedupKey` replaces the default key (`<lifecycle id>:<kind>:<n>`); `label` is what the Temporal UI's timeline
   * calls the call (default `alert: <kind>`).
   */
  async alert({
    label,
    dedupKey,
    ...a
  }: Omit<Alert, 'model' | 'version' | 'lifecycleId' | 'dedupKey'> & {
    dedupKey?: string;
    label?: string;
  }): Promise<void> {
    const { spec, lc } = this;
    try {
      await control.raiseAlert.executeWithOptions({ ...CONTROL_OPTIONS, summary: label ?? `alert: ${a.kind}` }, [
        {
          ...a,
          model: spec.model,
          version: spec.version,
          lifecycleId: lc.id,
          dedupKey: dedupKey ?? `${lc.id}:${a.kind}:${++this.alertsRaised}`,
        },
      ]);
    } catch (err) {
      log.error('alert delivery failed', { kind: a.kind, error: String(err) });
    }
  }

  abortMessage(): string {
    const abort = this.lc.abort;
    return `aborted by ${abort?.by}${abort?.reason ? `: ${abort.reason}` : ''}`;
  }

  /** Ends the lifecycle `failed`: the error recorded, an alert raised, the stage entered. */
  async endFailed(
    type: LifecycleFailureType,
    message: string,
    alert?: Omit<Alert, 'model' | 'version' | 'lifecycleId' | 'dedupKey' | 'summary'> & { summary?: string },
  ): Promise<void> {
    this.lc.fail(type, message);
    if (alert) await this.alert({ summary: message, ...alert });
    this.lc.enter(Stage.Failed, message);
  }
}

/**
 * The part of a run id that opIds carry: its last 8 hex digits. Run ids are UUIDs, and in a UUIDv7 (what current
 * servers issue) the first 8 digits are the top of a millisecond timestamp, the same for every run started within the
 * same ~65 s: a re-run would reuse its cancelled run's opIds and the gateway would swallow them. The last digits are
 * random in v4 and v7 alike.
 */
export function runTag(runId: string): string {
  return runId.slice(-8);
}

/** Why a rollout stops: a failed check, an abort or rejection, or a deployment the target refused. */
export interface RolloutStop {
  kind: 'failed-check' | 'aborted' | 'rejected' | 'deploy-failed';
  message: string;
}

/**
 * `check=value (rule)` of each failed decision, for failure messages and alerts; a metric provider's errors as
 * `check could not be measured: why`.
 */
export function describeFailures(failed: readonly Decision[]): string {
  return failed
    .map((d) =>
      d.outcome === 'error'
        ? `${d.check} could not be measured: ${d.detail ?? 'error'}`
        : `${d.check}=${d.value} (${d.rule})`,
    )
    .join('; ');
}
