import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { GateDecisionInput, LifecycleStatus, OperatorAction } from './status';
import type { QuotaLease, QuotaPoolState, ReserveQuotaInput, ReserveQuotaResult } from './quota';
import type { RegistryState, PromotionRecord } from './registry';

// Lifecycle. Gate decisions are updates: the approver gets a synchronous ack, or the validator's reason for refusing
// (not an approver, self-approval, nothing pending), and nothing is written to history when it is refused.
export const approveGateUpdate = defineUpdate<ApprovalAck, [GateDecisionInput]>('approveGate');
export const rejectGateUpdate = defineUpdate<ApprovalAck, [GateDecisionInput]>('rejectGate');
// Operator nudges are signals: fire-and-forget, they take effect at the next safe point of the rollout.
export const pauseSignal = defineSignal<[OperatorAction]>('pause');
export const resumeSignal = defineSignal<[OperatorAction]>('resume');
export const abortSignal = defineSignal<[OperatorAction]>('abort');
export const statusQuery = defineQuery<LifecycleStatus>('status');

export interface ApprovalAck {
  gate: string;
  decision: 'approved' | 'rejected';
  at: string;
}

// Quota pool entity. Reserve and release are updates so the caller learns at once whether it got the lease.
export const reserveQuotaUpdate = defineUpdate<ReserveQuotaResult, [ReserveQuotaInput]>('reserveQuota');
export const releaseQuotaUpdate = defineUpdate<QuotaLease | null, [{ leaseId: string }]>('releaseQuota');
export const poolStateQuery = defineQuery<QuotaPoolState>('poolState');

// Model registry entity. Promotion is an update so the lifecycle knows the alias moved before it reports `promoted`.
export const recordPromotionUpdate = defineUpdate<PromotionRecord, [PromotionRecord]>('recordPromotion');
export const registryStateQuery = defineQuery<RegistryState>('registryState');
