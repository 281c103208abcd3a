/** `ApplicationFailure.type` values raised by workflows and activities; tests and clients match on these. */
export const ErrorType = {
  InvalidSpec: 'InvalidSpec',
  /** A signal, update, query or workflow input that does not match its schema (the message names the field). */
  InvalidInput: 'InvalidInput',
  /** An update refused in the state the workflow is in (no such incident, nothing pending, already ended). */
  Refused: 'Refused',
  TrainingFailed: 'TrainingFailed',
  TrainingBadInput: 'TrainingBadInput',
  ArtifactInvalid: 'ArtifactInvalid',
  ValidationFailed: 'ValidationFailed',
  QuotaRefused: 'QuotaRefused',
  GatewayRefused: 'GatewayRefused',
  GatewayUnavailable: 'GatewayUnavailable',
  ApprovalRefused: 'ApprovalRefused',
  NotFound: 'NotFound',
  /** A rollback that cannot be done: no previous version, or the target is already in production. */
  RollbackRefused: 'RollbackRefused',
  /** Data that cannot be read or profiled (bad CSV, bad profile, bad drift options). */
  DataInvalid: 'DataInvalid',
  /** Traffic could not be put back on the stable version: the lifecycle keeps its leases and pages. */
  RollbackStuck: 'RollbackStuck',
  /** Another writer (a lifecycle or a rollback of the same model) holds the model's traffic. */
  TrafficHeld: 'TrafficHeld',
  /** An error the lifecycle did not expect ended it; what it had deployed was rolled back. */
  LifecycleError: 'LifecycleError',
  /** An alert some sink could not take now (5xx, 429, timeout, unreachable): retryable. */
  AlertDeliveryFailed: 'AlertDeliveryFailed',
  /** A spec that asks for more than the platform policy allows (an approver, a target, a secret, a trainer). */
  PolicyViolation: 'PolicyViolation',
  /** A privileged operation the policy does not allow this person, or that lacks a valid signature. */
  Unauthorized: 'Unauthorized',
  /** The platform policy or keyring file cannot be used: everything privileged is refused until it is fixed. */
  PolicyInvalid: 'PolicyInvalid',
} as const;
export type ErrorType = (typeof ErrorType)[keyof typeof ErrorType];

/**
 * How a lifecycle ended, where no error type says it: recorded as its status's `error.type` (the first five) and as
 * the `reason` label of its failed-lifecycle metric (all of them). Tests, dashboards and alerts match on these strings.
 */
export const LifecycleEndReason = {
  /** An operator aborted it (or it was cancelled from outside). */
  Aborted: 'Aborted',
  /** A gate was not decided within its timeout. */
  ApprovalTimeout: 'ApprovalTimeout',
  /** A gate was rejected. */
  Rejected: 'Rejected',
  /** The staging deployment failed its checks or was aborted there. */
  StagingFailed: 'StagingFailed',
  /** The rollout was rolled back (a check, a guard or an operator; its decisions say which). */
  RolledBack: 'RolledBack',
  /** Metrics only: a rollback whose cause was a failed check. */
  CheckFailed: 'CheckFailed',
  /** Metrics only: an end nothing recorded a reason for. */
  Unknown: 'Unknown',
} as const;
export type LifecycleEndReason = (typeof LifecycleEndReason)[keyof typeof LifecycleEndReason];

/**
 * A failure type a lifecycle records without choosing it: the type an activity or a child workflow failed with, kept
 * as it came. Only {@link relayedFailureType} makes one, so a new literal cannot slip into a lifecycle's record.
 */
export type RelayedFailureType = string & { readonly relayedFailureType: unique symbol };
export function relayedFailureType(type: string): RelayedFailureType {
  return type as RelayedFailureType;
}

/** The type of the error a lifecycle records when it ends without promoting. */
export type LifecycleFailureType = ErrorType | LifecycleEndReason | RelayedFailureType;
