import { ApplicationFailure, log } from '@temporalio/workflow';
import type { z } from 'zod';
import { ErrorType } from '../shared/errors';
import { describeIssues } from '../shared/spec';

/**
 * How every workflow takes messages from outside. Inputs are checked with the same zod schemas the clients use, and
 * nothing a caller sends can fail a workflow task (a plain error thrown in workflow code fails the task, which the
 * server retries forever on the same history):
 * - an update's validator refuses with a typed `ApplicationFailure` before anything is written;
 * - an update handler turns an unexpected error into a failed update, not a failed task;
 * - a signal cannot answer, so a malformed one is logged and dropped, and one whose handling throws is logged and
 *   dropped too.
 */

/** `raw` parsed with `schema`, or a non-retryable `InvalidInput` failure naming each bad field. */
export function parseInput<S extends z.ZodType>(schema: S, raw: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw ApplicationFailure.create({
    type: ErrorType.InvalidInput,
    message: `invalid ${what}: ${describeIssues(parsed.error).join('; ')}`,
    nonRetryable: true,
  });
}

/** A refusal of an update in the workflow's current state: `ApprovalRefused` for gates, `Refused` otherwise. */
export function refuse(message: string, type: ErrorType = ErrorType.Refused): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true });
}

/** Any error as a failure an update may end with (a TemporalFailure passes through). */
function asFailure(err: unknown, what: string): ApplicationFailure {
  if (err instanceof ApplicationFailure) return err;
  const message = err instanceof Error ? err.message : String(err);
  log.error('update handler failed', { update: what, error: message });
  return ApplicationFailure.create({ type: ErrorType.Refused, message: `${what}: ${message}`, nonRetryable: true });
}

/**
 * An update handler that cannot fail the workflow task: an unexpected error fails the update instead (the caller sees
 * it; the workflow keeps running).
 */
export function guardedUpdate<A extends unknown[], R>(what: string, handler: (...args: A) => R): (...args: A) => R {
  return (...args: A): R => {
    try {
      const result = handler(...args);
      if (result instanceof Promise)
        return result.catch((err: unknown) => {
          throw asFailure(err, what);
        }) as R;
      return result;
    } catch (err) {
      throw asFailure(err, what);
    }
  };
}

/** An update validator that refuses with a typed failure whatever goes wrong in it. */
export function guardedValidator<A extends unknown[]>(
  what: string,
  validate: (...args: A) => void,
): (...args: A) => void {
  return (...args: A): void => {
    try {
      validate(...args);
    } catch (err) {
      if (err instanceof ApplicationFailure) throw err;
      throw refuse(err instanceof Error ? err.message : String(err));
    }
  };
}

/**
 * A signal handler: `raw` parsed with `schema`, then applied; a malformed payload is logged and dropped, and so is
 * one whose handling throws (a signal has no caller to refuse to, and a throw would fail the task on every replay).
 */
export function guardedSignal<S extends z.ZodType>(
  name: string,
  schema: S,
  apply: (input: z.output<S>) => void,
): (raw: unknown) => void {
  return (raw: unknown) => {
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      log.warn('ignored malformed signal', { signal: name, problems: describeIssues(parsed.error).slice(0, 10) });
      return;
    }
    try {
      apply(parsed.data);
    } catch (err) {
      log.error('signal handling failed; the signal is dropped', {
        signal: name,
        error: err instanceof Error ? err.message : String(err),
      });
    }
  };
}
