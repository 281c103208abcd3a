import { CancellationScope, condition } from '@temporalio/workflow';
import type { Stage } from '../../shared/status';
import { runTag, type LifecycleContext } from './context';

/** Marks lifecycles that announce every stage change as a `stage-changed` event (src/shared/alerts.ts). */
export const STAGE_EVENTS = 'stage-events';

interface StageChange {
  stage: Stage;
  at: string;
  message: string;
  trafficPercent: number;
}

/**
 * The lifecycle's stage changes on their way to the alert router, in order, one `stage-changed` event each. Stages
 * change in synchronous code; the events are raised by a coroutine of their own, which nothing cancels, so a rollback
 * after a cancellation is announced too. Each event's key (`<id>@<run>:stage:<n>`) is unique per run: a receiver
 * drops a retried delivery by it, never a re-run's event.
 */
export class StageEvents {
  private readonly queue: StageChange[] = [];
  private closed = false;
  private pump: Promise<void> | undefined;
  private sent = 0;

  /** Queues a stage change (called where the lifecycle enters a stage). */
  push(change: StageChange): void {
    this.queue.push(change);
  }

  /** Starts raising the queued changes. */
  start(ctx: LifecycleContext): void {
    this.pump = CancellationScope.nonCancellable(async () => {
      for (;;) {
        await condition(() => this.queue.length > 0 || this.closed);
        const change = this.queue.shift();
        if (!change) return;
        await this.raise(ctx, change);
      }
    });
  }

  /** Waits until every queued change is raised; no more are taken afterwards. */
  async flush(): Promise<void> {
    this.closed = true;
    await CancellationScope.nonCancellable(async () => this.pump);
  }

  private async raise(ctx: LifecycleContext, change: StageChange): Promise<void> {
    const { spec, lc, runId } = ctx;
    const seq = ++this.sent;
    await ctx.alert({
      kind: 'stage-changed',
      severity: 'info',
      summary: `${spec.model} ${spec.version} is ${change.stage}: ${change.message}`,
      details: {
        stage: change.stage,
        at: change.at,
        message: change.message,
        trafficPercent: change.trafficPercent,
        sequence: seq,
        runId,
        submittedBy: spec.submittedBy,
        ...(lc.error ? { error: lc.error } : {}),
      },
      dedupKey: `${lc.id}@${runTag(runId)}:stage:${seq}`,
      label: `stage event: ${change.stage}`,
    });
  }
}
