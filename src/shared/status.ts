import { z } from 'zod';
import { Identity } from './names';

/** Stages of a model lifecycle (DESIGN.md §4). */
export const Stage = {
  Provisioning: 'provisioning',
  Training: 'training',
  Validating: 'validating',
  AwaitingApproval: 'awaiting-approval',
  /** Serving a staging route or target of its own before production. */
  Staging: 'staging',
  /** A copy of production requests is predicted by the candidate and compared; users are answered by stable only. */
  Shadow: 'shadow',
  Canary: 'canary',
  Ramping: 'ramping',
  /** At 100% with the previous version still loaded, under the same checks, until the guard window ends. */
  Guarding: 'guarding',
  Promoted: 'promoted',
  RollingBack: 'rolling-back',
  /**
   * A rollback whose weight swap did not hold (read back from the target): the candidate keeps its quota and the
   * rollback keeps retrying; a critical alert pages. Terminal only when it gives up.
   */
  RollbackStuck: 'rollback-stuck',
  RolledBack: 'rolled-back',
  Rejected: 'rejected',
  Failed: 'failed',
} as const;
export type Stage = (typeof Stage)[keyof typeof Stage];
/** A stage name as a caller gives it (`mlctl list --stage`). */
export const StageName = z.enum(Object.values(Stage) as [Stage, ...Stage[]], {
  error: `a stage: ${Object.values(Stage).join(', ')}`,
});

export const TERMINAL_STAGES: readonly Stage[] = [Stage.Promoted, Stage.RolledBack, Stage.Rejected, Stage.Failed];

/** One decision a check took, with the evidence it took it on. */
export interface Decision {
  /** Stage the check ran in: `validating`, `canary`, `ramping:25`, ... */
  stage: string;
  check: string;
  value: number | null;
  threshold: number | null;
  /** `error`: a metric provider could not measure (counted against `consecutiveErrorLimit`, not as a failure). */
  outcome: 'pass' | 'fail' | 'inconclusive' | 'error';
  at: string;
  /** Where the value came from: the target's telemetry (absent) or a metric provider. */
  provider?: 'prometheus' | 'web';
  /** A dry-run check: measured and recorded, never enforced. */
  dryRun?: boolean;
  /** Human-readable rule, e.g. `errorRate <= 0.01`. */
  rule?: string;
  sampleSize?: number;
  detail?: string;
  /** The sample of the bake it was taken in (1, 2, ...); absent on the readout at the end of the bake. */
  sample?: number;
  /** Failed (or errored), but within the check's limits. */
  tolerated?: boolean;
}

/** The last samples of one check a lifecycle keeps (`analysis.measurementRetention` of each kind). */
export interface CheckMeasurements {
  passed: Decision[];
  /** Failed or errored. */
  failed: Decision[];
}

/** A compact drift report (test set vs training, serving window vs training), as lifecycles record it. */
export interface DriftSummary {
  datasetDrift: boolean;
  driftShare: number;
  datasetDriftShare: number;
  comparedFeatures: number;
  referenceRows: number;
  currentRows: number;
  features: {
    name: string;
    role: string;
    method: string;
    statistic: number | null;
    pValue?: number;
    threshold: number | null;
    drifted: boolean;
    /** The bin or category that moved most, e.g. `(95, inf] 10.0%→28.5%`. */
    moved?: string;
  }[];
  /** One line per data problem. */
  problems: string[];
}
export type TestDataDrift = DriftSummary;

/** One recorded gate decision. */
export interface ApprovalRecord {
  gate: string;
  /** Which opening of the gate it decided (`deploy#1`); absent in lifecycles recorded before quorums. */
  opening?: string;
  stage: string;
  by: string;
  decision: 'approved' | 'rejected';
  reason: string;
  at: string;
  /** Fingerprint of the key that signed the approval, when it was signed. */
  keyId?: string;
  /** The signed claim's nonce: a second approval with it is a replay. */
  nonce?: string;
}

/** A gate waiting for a human. */
export interface PendingGate {
  gate: string;
  /** This opening of the gate, e.g. `deploy#1`: signed approvals name it, so one cannot be replayed into another. */
  opening?: string;
  approvers: string[];
  /** Approvals from distinct approvers it needs, and who approved so far. */
  quorum?: number;
  approvedBy?: string[];
  /** Approvals must be signed by the approver's registered key. */
  signed?: boolean;
  openedAt: string;
  /** When it escalates (an alert to `escalateTo`), if the policy escalates. */
  escalatesAt?: string;
  escalated?: boolean;
  deadline: string;
}

export interface LifecycleEvent {
  at: string;
  stage: Stage;
  message: string;
}

/**
 * Sample decisions a lifecycle keeps per stage and check of the kinds that recur without ending the rollout: tolerated
 * failures and errors, and dry-run failures. A dry-run check failing on every sample of a 24 h bake would otherwise add
 * 1,440 decisions to every status read. The rest are counted in `omittedDecisions`; the check's last samples stay in
 * `measurements`, and a decision that stops the rollout is always kept.
 */
export const RECURRING_DECISIONS_KEPT = 20;

/** What `statusQuery` returns and `mlctl status --json` prints. */
export interface LifecycleStatus {
  id: string;
  model: string;
  version: string;
  submittedBy: string;
  stage: Stage;
  paused: boolean;
  /** Candidate's share of live traffic, in percent. */
  trafficPercent: number;
  /** Production version the candidate is compared against and rolls back to, if any. */
  stableVersion: string | null;
  hardware: { training: string; serving: string; rationale: string } | null;
  artifactDir: string | null;
  metrics: Record<string, number> | null;
  pendingGate: PendingGate | null;
  approvals: ApprovalRecord[];
  decisions: Decision[];
  /**
   * Tolerated and dry-run sample decisions left out of `decisions` past the first RECURRING_DECISIONS_KEPT of a stage's
   * check, counted (absent: none left out). The check's last samples are in `measurements`.
   */
  omittedDecisions?: { stage: string; check: string; count: number }[];
  /** Per check, its last passing and failing samples (absent: started before measurements were kept). */
  measurements?: Record<string, CheckMeasurements>;
  events: LifecycleEvent[];
  error: { type: string; message: string } | null;
  /** A promote-now request: who asked, how many approvals it needs, whether it was granted. */
  promoteNow?: { requestedBy: string[]; quorum: number; granted: boolean } | null;
  startedAt: string;
  updatedAt: string;
  /** The run: signed operations name it, so a claim never carries over to a re-run. */
  runId?: string;
  /** Digest of the spec as validated, and of the candidate artifact once trained: signed claims bind both. */
  specDigest?: string;
  artifactDigest?: string | null;
  /** The platform policy rule the lifecycle runs under (absent: started before platform policies). */
  policyRule?: string;
  /** Abort, pause and resume as they were accepted: who, when, with which key. */
  operatorActions?: OperatorRecord[];
}

/** One accepted operator action, for the audit trail. */
export interface OperatorRecord {
  action: 'abort' | 'pause' | 'resume';
  by: string;
  at: string;
  reason: string;
  keyId?: string;
}

/** Argument of the approve and reject updates. */
export const GateDecisionInput = z
  .object({
    /** Which gate; optional when exactly one is pending. */
    gate: z.string().min(1).optional(),
    by: Identity,
    reason: z.string().max(2000).default(''),
    /** The approver's signed claim, for gates whose policy requires signatures (`mlctl approve --key`). */
    signed: z.unknown().optional(),
  })
  .strict();
export type GateDecisionInput = z.input<typeof GateDecisionInput>;

/** Argument of the pause, resume and abort signals and updates. */
export const OperatorAction = z
  .object({
    by: Identity,
    reason: z.string().max(2000).default(''),
    /** The operator's signed claim, where the platform policy requires one (`mlctl abort --key`). */
    signed: z.unknown().optional(),
  })
  .strict();
export type OperatorAction = z.input<typeof OperatorAction>;

/** The value a lifecycle workflow returns. */
export interface LifecycleResult {
  stage: Stage;
  version: string;
  trafficPercent: number;
  error: { type: string; message: string } | null;
}
