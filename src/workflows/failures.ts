import { ActivityFailure, ApplicationFailure, TemporalFailure } from '@temporalio/workflow';

/**
 * How workflows read the errors they catch. Temporal wraps what went wrong: an activity's failure arrives as an
 * `ActivityFailure` whose cause is the activity's `ApplicationFailure`, a child's as a `ChildWorkflowFailure` around the
 * child's, and any of them may carry causes of its own. These helpers are the only walks down that chain.
 */

/** What a failure says: its type (for an `ApplicationFailure`), its message and its first detail (an object). */
export interface FailureInfo {
  type?: string;
  message: string;
  details?: Record<string, unknown>;
}

/** `err`, followed down its `cause`s to the innermost error, or to the first one `stop` accepts. */
function innermost(err: unknown, stop: (e: Error) => boolean = () => false): unknown {
  let e: unknown = err;
  while (e instanceof Error && !stop(e) && 'cause' in e && e.cause instanceof Error) e = e.cause;
  return e;
}

/** The innermost failure's type, message and details (activity failures wrap an ApplicationFailure). */
export function failureOf(err: unknown): FailureInfo {
  const e = innermost(err);
  if (e instanceof ApplicationFailure) {
    const d = e.details?.[0];
    return {
      ...(e.type ? { type: e.type } : {}),
      message: e.message,
      details: d && typeof d === 'object' ? (d as Record<string, unknown>) : undefined,
    };
  }
  return { message: e instanceof Error ? e.message : String(e) };
}

/** The innermost failure's message: what a history entry, an event or an alert says went wrong. */
export function failureMessage(err: unknown): string {
  return failureOf(err).message;
}

/**
 * The `ApplicationFailure` an activity failed with (of `type`, when given); undefined for anything else (a timeout, a
 * cancellation, an error raised in the workflow itself).
 */
export function activityFailure(err: unknown, type?: string): ApplicationFailure | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : undefined;
  return cause instanceof ApplicationFailure && (type === undefined || cause.type === type) ? cause : undefined;
}

/**
 * What kind of failure ended a workflow, for metrics: the application failure type under activity or child-workflow
 * wrappers, else the failure's class name.
 */
export function failureKind(err: TemporalFailure): string {
  const e = innermost(err, (x) => !(x instanceof TemporalFailure) || x instanceof ApplicationFailure) as Error;
  return e instanceof ApplicationFailure ? (e.type ?? 'ApplicationFailure') : e.name;
}
