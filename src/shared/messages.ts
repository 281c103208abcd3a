import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { GateDecisionInput, LifecycleStatus, OperatorAction } from './status';
import type {
  PoolStateRead,
  QuotaBatchOp,
  QuotaDecided,
  QuotaBatchResult,
  QuotaLease,
  QuotaMonitorState,
  QuotaPoolConfig,
  QuotaPoolState,
  ReservationState,
  ReleaseQuotaInput,
  RenewQuotaInput,
  ReserveQuotaInput,
  ReserveQuotaResult,
} from './quota';
import type {
  AcquireTrafficInput,
  AcquireTrafficResult,
  PromotionRecord,
  RegistryState,
  ReleaseTrafficInput,
} from './registry';

// Lifecycle. Gate decisions are updates: the approver gets a synchronous ack, or the validator's reason for refusing
// (not an approver, self-approval, nothing pending), and nothing is written to history when it is refused.
export const approveGateUpdate = defineUpdate<ApprovalAck, [GateDecisionInput]>('approveGate');
export const rejectGateUpdate = defineUpdate<ApprovalAck, [GateDecisionInput]>('rejectGate');
// Operator nudges are signals: fire-and-forget, they take effect at the next safe point of the rollout.
export const pauseSignal = defineSignal<[OperatorAction]>('pause');
export const resumeSignal = defineSignal<[OperatorAction]>('resume');
export const abortSignal = defineSignal<[OperatorAction]>('abort');
/** From a quota pool to a workflow waiting on a queued reservation: it was decided; ask where it stands. */
export const quotaDecidedSignal = defineSignal<[QuotaDecided]>('quotaDecided');
export const statusQuery = defineQuery<LifecycleStatus>('status');
/** Abort with an answer: the caller learns at once that the lifecycle took it (a signal cannot answer). */
export const abortUpdate = defineUpdate<OperatorAck, [OperatorAction]>('abortLifecycle');
/** Pause and resume as updates, so the caller learns whether the policy accepted them (the signals cannot answer). */
export const pauseUpdate = defineUpdate<OperatorAck, [OperatorAction]>('pauseLifecycle');
export const resumeUpdate = defineUpdate<OperatorAck, [OperatorAction]>('resumeLifecycle');
/**
 * Skip the remaining stages and promote: accepted only from an approver of the `promote-now` gate (never the
 * submitter, signed when its policy says so); the rollout jumps to 100% once the gate's quorum asked for it.
 */
export const promoteNowUpdate = defineUpdate<PromoteNowAck, [GateDecisionInput]>('promoteNow');

export interface ApprovalAck {
  gate: string;
  decision: 'approved' | 'rejected';
  at: string;
  /** Distinct approvals the gate has and needs; the gate is decided once `approvals >= quorum` or on a rejection. */
  approvals?: number;
  quorum?: number;
  outcome?: 'approved' | 'rejected' | null;
}

export interface OperatorAck {
  action: string;
  stage: string;
  at: string;
}

export interface PromoteNowAck {
  requestedBy: string[];
  quorum: number;
  granted: boolean;
  at: string;
}

// Quota pool entity. Reserve, renew and release are updates so the caller learns at once whether it holds the lease.
// A reservation that may wait is queued and answered at once; the caller then watches it with the reservation query
// (the server caps in-flight updates per workflow, so a wait must not be an open update).
export const reserveQuotaUpdate = defineUpdate<ReserveQuotaResult, [ReserveQuotaInput]>('reserveQuota');
/** Extends a lease's TTL; null when the lease is not held (released, or expired: its quota went back). */
export const renewQuotaUpdate = defineUpdate<QuotaLease | null, [RenewQuotaInput]>('renewQuota');
/** Releases a lease; null when it was not held (releasing twice is harmless). */
export const releaseQuotaUpdate = defineUpdate<QuotaLease | null, [ReleaseQuotaInput]>('releaseQuota');
/** Reserve, renew and release operations of many callers in one update, answered in order. */
export const quotaBatchUpdate = defineUpdate<QuotaBatchResult[], [QuotaBatchOp[]]>('quotaBatch');
/** Applies a new pool configuration (capacity, caps, TTL, alerts); leases held stay. */
export const configurePoolUpdate = defineUpdate<{ changed: boolean }, [QuotaPoolConfig]>('configurePool');
/** The pool's whole state, or with `{ summary: true }` its state without the lists that grow with its leases. */
export const poolStateQuery = defineQuery<QuotaPoolState, [PoolStateRead?]>('poolState');
/** Open alerts of a pool, from its monitor workflow. */
export const quotaMonitorQuery = defineQuery<QuotaMonitorState>('quotaMonitor');
/** A reservation's fate by lease id: granted, still queued (with its place), refused after waiting, or unknown. */
export const reservationQuery = defineQuery<ReservationState, [string]>('reservation');

// Model registry entity. Promotion is an update so the lifecycle knows the alias moved before it reports `promoted`.
export const recordPromotionUpdate = defineUpdate<PromotionRecord, [PromotionRecord]>('recordPromotion');
export const registryStateQuery = defineQuery<RegistryState>('registryState');
/** Takes the model's traffic lease (one writer of its weights at a time); refused naming the holder. */
export const acquireTrafficUpdate = defineUpdate<AcquireTrafficResult, [AcquireTrafficInput]>('acquireTraffic');
/** Gives the traffic lease back; false when this holder did not hold it (releasing twice is harmless). */
export const releaseTrafficUpdate = defineUpdate<{ released: boolean }, [ReleaseTrafficInput]>('releaseTraffic');
