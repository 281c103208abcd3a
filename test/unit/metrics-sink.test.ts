import { ActivityFailure, ApplicationFailure, CancelledFailure, RetryState } from '@temporalio/common';
import type * as Workflow from '@temporalio/workflow';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { LifecycleFailed, StageEnded } from '../../src/shared/metrics-sink';
import { reportLifecycleError, reportStageChange, type LifecycleView } from '../../src/workflows/metrics-sink';
import { Stage } from '../../src/shared/status';

// Outside a workflow there is no sink to call: record what the workflow would send to the worker (vi.mock is hoisted
// above the imports).
const calls = vi.hoisted(() => ({ ended: [] as unknown[], failed: [] as unknown[] }));
vi.mock('@temporalio/workflow', async (importOriginal) => ({
  ...(await importOriginal<typeof Workflow>()),
  proxySinks: () => ({
    lifecycleMetrics: {
      stageEnded: (e: unknown) => calls.ended.push(e),
      lifecycleFailed: (e: unknown) => calls.failed.push(e),
    },
  }),
}));

const T0 = Date.parse('2025-03-01T10:00:00.000Z');

/** A lifecycle state as the workflow's LifecycleState holds it, moved through stages at given seconds. */
function lifecycle(): LifecycleView & {
  decisions: { outcome: string; tolerated?: boolean }[];
  go(stage: Stage, atSeconds: number): void;
} {
  const lc = {
    stage: Stage.Provisioning as Stage,
    startedAt: new Date(T0).toISOString(),
    error: null as LifecycleView['error'],
    abort: null as unknown,
    decisions: [] as { outcome: string; tolerated?: boolean }[],
    go(stage: Stage, atSeconds: number) {
      vi.setSystemTime(T0 + atSeconds * 1000);
      lc.stage = stage;
      reportStageChange(lc, stage);
    },
  };
  return lc;
}

describe('lifecycle metrics sink (workflow side)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    calls.ended.length = 0;
    calls.failed.length = 0;
  });
  afterEach(() => vi.useRealTimers());

  it('reports how long each stage lasted, once per stage change, and nothing after the lifecycle ended', () => {
    const lc = lifecycle();
    lc.go(Stage.Provisioning, 1); // re-entering the first stage is no change
    lc.go(Stage.Training, 2);
    lc.go(Stage.Validating, 32);
    lc.go(Stage.AwaitingApproval, 40);
    lc.go(Stage.Canary, 100);
    lc.go(Stage.Ramping, 130);
    lc.go(Stage.Ramping, 140); // the next ramp step: the same stage goes on
    lc.go(Stage.Promoted, 160);
    lc.go(Stage.RolledBack, 170);
    expect(calls.ended).toEqual<StageEnded[]>([
      { stage: 'provisioning', durationMs: 2_000 },
      { stage: 'training', durationMs: 30_000 },
      { stage: 'validating', durationMs: 8_000 },
      { stage: 'awaiting-approval', durationMs: 60_000 },
      { stage: 'canary', durationMs: 30_000 },
      { stage: 'ramping', durationMs: 30_000 },
    ]);
    expect(calls.failed).toEqual([]);
  });

  it('reports a rollback as failed in the stage before rolling back, with the failed check as its reason', () => {
    const lc = lifecycle();
    lc.go(Stage.Training, 1);
    lc.go(Stage.Canary, 5);
    lc.decisions.push({ outcome: 'pass' }, { outcome: 'fail', tolerated: true }, { outcome: 'fail' });
    lc.go(Stage.RollingBack, 9);
    lc.error = { type: 'RolledBack' };
    lc.go(Stage.RolledBack, 10);
    expect(calls.failed).toEqual<LifecycleFailed[]>([
      { outcome: 'rolled-back', stage: 'canary', reason: 'CheckFailed' },
    ]);
    expect(calls.ended.at(-1)).toEqual({ stage: 'rolling-back', durationMs: 1_000 });
  });

  it('names an aborted rollout Aborted, and a named error by its type', () => {
    const aborted = lifecycle();
    aborted.go(Stage.Ramping, 1);
    aborted.abort = { by: 'alice', reason: 'no' };
    aborted.go(Stage.RollingBack, 2);
    aborted.error = { type: 'RolledBack' };
    aborted.go(Stage.RolledBack, 3);
    const quota = lifecycle();
    quota.error = { type: 'QuotaRefused' };
    quota.go(Stage.Failed, 1);
    expect(calls.failed).toEqual([
      { outcome: 'rolled-back', stage: 'ramping', reason: 'Aborted' },
      { outcome: 'failed', stage: 'provisioning', reason: 'QuotaRefused' },
    ]);
  });

  it('reports a workflow failure in the current stage by its application failure type, once', () => {
    const lc = lifecycle();
    lc.go(Stage.Ramping, 1);
    const wrapped = new ActivityFailure(
      'activity failed',
      'recordPromotion',
      '7',
      RetryState.MAXIMUM_ATTEMPTS_REACHED,
      'worker',
      ApplicationFailure.create({ type: 'GatewayUnavailable', message: 'down' }),
    );
    reportLifecycleError(lc, wrapped);
    reportLifecycleError(lc, wrapped);
    expect(calls.failed).toEqual([{ outcome: 'failed', stage: 'ramping', reason: 'GatewayUnavailable' }]);
  });

  it('does not count a cancellation, a plain Error (a workflow task failure), or a lifecycle that already ended', () => {
    const cancelled = lifecycle();
    reportLifecycleError(cancelled, new CancelledFailure('cancelled'));
    const buggy = lifecycle();
    reportLifecycleError(buggy, new Error('bug'));
    const ended = lifecycle();
    ended.error = { type: 'TrainingFailed' };
    ended.go(Stage.Failed, 1);
    reportLifecycleError(ended, ApplicationFailure.create({ type: 'X', message: 'x' }));
    expect(calls.failed).toEqual([{ outcome: 'failed', stage: 'provisioning', reason: 'TrainingFailed' }]);
  });
});
