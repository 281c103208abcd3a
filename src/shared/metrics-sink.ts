import type { Sinks } from '@temporalio/workflow';
import type { Stage } from './status';

/** A lifecycle left `stage` after `durationMs` of workflow time. */
export interface StageEnded {
  stage: Stage;
  durationMs: number;
}

/** A lifecycle ended rolled back or failed: the stage it failed in (before any rollback) and the kind of reason. */
export interface LifecycleFailed {
  outcome: 'rolled-back' | 'failed';
  stage: Stage;
  /** An error type (`TrainingFailed`, `QuotaRefused`, ...), `CheckFailed` or `Aborted` for a stopped rollout. */
  reason: string;
}

/**
 * The worker's lifecycle metrics as workflow code sees them. Workflows cannot reach prom-client; a sink call leaves
 * the sandbox after the activation without producing a command, so it writes nothing to history and needs no
 * `patched()` marker. The worker registers it with `callDuringReplay: false`, so replays do not count twice.
 */
export interface LifecycleMetricsSinks extends Sinks {
  lifecycleMetrics: {
    stageEnded(event: StageEnded): void;
    lifecycleFailed(event: LifecycleFailed): void;
  };
}
