import { ActivityFailure, ApplicationFailure, RetryState, TimeoutFailure, TimeoutType } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { ErrorType } from '../../src/shared/errors';
import { activityFailure, failureKind, failureMessage, failureOf } from '../../src/workflows/failures';

const activity = (cause: Error) =>
  new ActivityFailure('Activity task failed', 'deliverToSink', '7', RetryState.NON_RETRYABLE_FAILURE, 'w', cause);
const refused = ApplicationFailure.create({
  type: ErrorType.QuotaRefused,
  message: 'pool "gpu" is full',
  details: [{ pool: 'gpu' }],
  nonRetryable: true,
});

describe('failures', () => {
  it("reads an activity's ApplicationFailure under its wrapper: type, message and details", () => {
    expect(failureOf(activity(refused))).toEqual({
      type: ErrorType.QuotaRefused,
      message: 'pool "gpu" is full',
      details: { pool: 'gpu' },
    });
    expect(failureMessage(activity(refused))).toBe('pool "gpu" is full');
  });

  it('takes the innermost message of a deeper chain, and any thrown value as text', () => {
    const timeout = new TimeoutFailure('activity ScheduleToClose timeout', undefined, TimeoutType.SCHEDULE_TO_CLOSE);
    Object.assign(timeout, { cause: new Error('connect ECONNREFUSED') });
    expect(failureMessage(activity(timeout))).toBe('connect ECONNREFUSED');
    expect(failureOf('boom')).toEqual({ message: 'boom' });
  });

  it("picks an activity's failure only of the type asked for, and only from an activity", () => {
    expect(activityFailure(activity(refused), ErrorType.QuotaRefused)).toBe(refused);
    expect(activityFailure(activity(refused), ErrorType.DataInvalid)).toBeUndefined();
    expect(activityFailure(refused)).toBeUndefined();
  });

  it('names the kind of a failure by its application type, else by the wrapper it stopped at', () => {
    expect(failureKind(activity(refused))).toBe(ErrorType.QuotaRefused);
    expect(failureKind(activity(new TimeoutFailure('t', undefined, TimeoutType.START_TO_CLOSE)))).toBe(
      'TimeoutFailure',
    );
  });
});
