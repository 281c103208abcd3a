/**
 * Reading a workflow's history in benchmarks: event times, ids, and the intervals in which the orchestration itself
 * was at work (workflow tasks and activities other than the ones named as the user's work).
 */
import { temporal } from '@temporalio/proto';

export type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
export const EventType = temporal.api.enums.v1.EventType;

/** The event's time, ms since the epoch. */
export function eventMs(e: HistoryEvent): number {
  const t = e.eventTime;
  if (!t) return NaN;
  const seconds = typeof t.seconds === 'number' ? t.seconds : Number(t.seconds?.toString() ?? 0);
  return seconds * 1000 + (t.nanos ?? 0) / 1e6;
}

export const eventId = (e: HistoryEvent) => Number(e.eventId?.toString() ?? 0);

const idOf = (v: { toString(): string } | null | undefined) => Number(v?.toString() ?? 0);

/** A closed interval of time, ms since the epoch. */
export interface Interval {
  start: number;
  end: number;
}

/**
 * When the orchestration was busy: every workflow task from scheduled to completed (or failed, timed out), and every
 * activity from scheduled to closed, except the activities named in `work` (the user's own work, such as training,
 * which is not the orchestration's cost). Timers and waits for signals are not in it: a bake or an approval wait is
 * time asked for, not spent. Also returns the busy time per activity type and for workflow tasks, each split into
 * the time it waited in its task queue (`queued`) and the time a worker ran it (`ran`), for "where does it go".
 */
export function busyIntervals(
  events: readonly HistoryEvent[],
  work: ReadonlySet<string>,
): { intervals: Interval[]; byActivity: Map<string, { queued: number; ran: number }> } {
  const scheduledAt = new Map<number, { at: number; name: string | null; startedAt?: number }>();
  const intervals: Interval[] = [];
  const byActivity = new Map<string, { queued: number; ran: number }>();
  const started = (scheduledId: number, at: number) => {
    const s = scheduledAt.get(scheduledId);
    if (s) s.startedAt = at;
  };
  const close = (scheduledId: number, at: number) => {
    const s = scheduledAt.get(scheduledId);
    if (!s) return;
    scheduledAt.delete(scheduledId);
    if (s.name !== null && work.has(s.name)) return;
    intervals.push({ start: s.at, end: at });
    const key = s.name ?? 'workflow task';
    const sum = byActivity.get(key) ?? { queued: 0, ran: 0 };
    const startedAt = s.startedAt ?? at;
    sum.queued += startedAt - s.at;
    sum.ran += at - startedAt;
    byActivity.set(key, sum);
  };
  for (const e of events) {
    const at = eventMs(e);
    switch (e.eventType) {
      case EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
        scheduledAt.set(eventId(e), { at, name: null });
        break;
      case EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
        started(idOf(e.workflowTaskStartedEventAttributes?.scheduledEventId), at);
        break;
      case EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
        close(idOf(e.workflowTaskCompletedEventAttributes?.scheduledEventId), at);
        break;
      case EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
        close(idOf(e.workflowTaskFailedEventAttributes?.scheduledEventId), at);
        break;
      case EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
        close(idOf(e.workflowTaskTimedOutEventAttributes?.scheduledEventId), at);
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        scheduledAt.set(eventId(e), { at, name: e.activityTaskScheduledEventAttributes?.activityType?.name ?? '?' });
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        started(idOf(e.activityTaskStartedEventAttributes?.scheduledEventId), at);
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        close(idOf(e.activityTaskCompletedEventAttributes?.scheduledEventId), at);
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
        close(idOf(e.activityTaskFailedEventAttributes?.scheduledEventId), at);
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        close(idOf(e.activityTaskTimedOutEventAttributes?.scheduledEventId), at);
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
        close(idOf(e.activityTaskCanceledEventAttributes?.scheduledEventId), at);
        break;
      default:
        break;
    }
  }
  return { intervals, byActivity };
}

/** How much of [from, to) the intervals cover, counting overlaps once. */
export function coveredMs(intervals: readonly Interval[], from: number, to: number): number {
  const clipped = intervals
    .map((i) => ({ start: Math.max(i.start, from), end: Math.min(i.end, to) }))
    .filter((i) => i.end > i.start)
    .sort((a, b) => a.start - b.start);
  let total = 0;
  let start = -Infinity;
  let end = -Infinity;
  for (const i of clipped) {
    if (i.start > end) {
      if (end > start) total += end - start;
      start = i.start;
      end = i.end;
    } else end = Math.max(end, i.end);
  }
  if (end > start) total += end - start;
  return total;
}
