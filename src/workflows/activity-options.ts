import type { ActivityOptions, RetryPolicy } from '@temporalio/workflow';

/**
 * How the workflows call activities. Every retry doubles its wait from `initialInterval`; the profiles below are the
 * ones more than one workflow uses, each with why. A refusal is a non-retryable failure whatever the profile.
 */

/** Exponential backoff (×2) from `first`, capped at `max`, for `attempts` tries (unlimited when absent). */
export function backoff(first: string, max?: string, attempts?: number): RetryPolicy {
  return {
    initialInterval: first,
    backoffCoefficient: 2,
    ...(max !== undefined ? { maximumInterval: max } : {}),
    ...(attempts !== undefined ? { maximumAttempts: attempts } : {}),
  };
}

/**
 * Control-plane calls (gateway, registry, quota pools, policy): retried for a few minutes so that a restarting
 * gateway or server does not fail the workflow.
 */
export const CONTROL_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '1 minute',
  retry: backoff('1 second', '20 seconds', 15),
};

/** Quick calls (a query, a signal, a visibility lookup): retried for about three minutes. */
export const QUICK_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: backoff('1 second', '30 seconds', 10),
};

/**
 * Calls whose caller retries on its own timers (a rollback holding traffic, a re-send that the next interval repeats):
 * three quick tries, so that the caller hears of a failure and can tell, or page, instead of waiting in one activity.
 */
export const FAIL_FAST_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: backoff('1 second', undefined, 3),
};
