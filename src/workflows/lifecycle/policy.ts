import { log } from '@temporalio/workflow';
import { ErrorType } from '../../shared/errors';
import { own } from '../../shared/own';
import type { OperationRequest, Authorization } from '../../shared/signed-operation';
import { OperationTarget, specDigest } from '../../shared/signed-operation';
import { describeIssues } from '../../shared/spec';
import type { MetricCheck } from '../../shared/analysis';
import { GateDecisionInput, OperatorAction, Stage } from '../../shared/status';
import type { ApprovalAck, OperatorAck, PromoteNowAck } from '../../shared/messages';
import { parseInput, refuse } from '../handlers';
import { control, type LifecycleContext } from './context';
import type { LifecycleState } from './state';

/** Marks lifecycles run under the platform policy (policy checked at start, privileged operations authorized). */
export const PLATFORM_POLICY = 'platform-policy';

type Granted = Extract<Authorization, { ok: true }>;

/** A metric check as the policy sees it: the URL it calls and the headers it sends. */
function policedMetric(field: string, m: Pick<MetricCheck, 'provider'>) {
  const [kind, url, headers] =
    'prometheus' in m.provider
      ? (['prometheus', m.provider.prometheus.address, m.provider.prometheus.headers] as const)
      : (['web', m.provider.web.url, m.provider.web.headers] as const);
  return {
    field: `${field}.provider.${kind}`,
    urlField: kind === 'prometheus' ? 'address' : 'url',
    url,
    ...(headers ? { headers } : {}),
  };
}

/**
 * Loads the platform policy's rules for the model and checks the spec against them. A spec that loosens the policy
 * ends the lifecycle here, `failed` with a PolicyViolation naming each field and rule, before anything is reserved.
 * True when the lifecycle may go on.
 */
export async function applyPolicy(ctx: LifecycleContext): Promise<boolean> {
  const { lc, spec, input } = ctx;
  lc.specDigest = specDigest(spec);
  const raw = (input.spec ?? {}) as { approval?: { signed?: unknown; gates?: Record<string, { signed?: unknown }> } };
  const rawApproval = raw.approval && typeof raw.approval === 'object' ? raw.approval : {};
  const rawGates = rawApproval.gates && typeof rawApproval.gates === 'object' ? rawApproval.gates : {};
  const explicitlyUnsigned = [
    ...(own(rawApproval as Record<string, unknown>, 'signed') === false ? ['approval.signed'] : []),
    ...Object.keys(rawGates)
      .filter((g) => (own(rawGates, g) as { signed?: unknown } | undefined)?.signed === false)
      .map((g) => `approval.gates.${g}.signed`),
  ];
  const resolved = await control.resolvePolicy({
    model: spec.model,
    program: spec.training.program,
    spec: {
      model: spec.model,
      submittedBy: spec.submittedBy,
      approval: spec.approval,
      explicitlyUnsigned,
      deployment: {
        ...(spec.deployment.target ? { target: spec.deployment.target } : {}),
        ...(spec.deployment.staging
          ? { staging: { ...(spec.deployment.staging.target ? { target: spec.deployment.staging.target } : {}) } }
          : {}),
      },
      metrics: [
        ...spec.rollout.analysis.metrics.map((m, i) => policedMetric(`rollout.analysis.metrics.${i}`, m)),
        ...spec.monitoring.metrics.map((m, i) => policedMetric(`monitoring.metrics.${i}`, m)),
      ],
      hooks: spec.rollout.hooks.preRollout.map((h, i) => ({
        field: `rollout.hooks.preRollout.${i}`,
        url: h.url,
        ...(h.headers ? { headers: h.headers } : {}),
      })),
    },
  });
  if (!resolved.ok) {
    const message = `the spec loosens the platform policy: ${resolved.problems.join('; ')}`;
    lc.fail(ErrorType.PolicyViolation, message);
    lc.enter(Stage.Failed, message);
    ctx.details(`refused: ${message}`);
    return false;
  }
  lc.policy = resolved.policy;
  lc.keyring = resolved.keyring;
  lc.event(`runs under platform policy rule ${resolved.policy.rule}`);
  return true;
}

/**
 * Asks the worker whether a privileged operation may happen, with the policy and keyring as they are now (so a
 * revoked key or a removed operator stops working at once); a refusal fails the update with Unauthorized and
 * nothing is written.
 */
async function authorize(
  lc: LifecycleState,
  request: Omit<OperationRequest, 'specDigest' | 'artifactDigest'>,
): Promise<Granted> {
  const verdict = await control.authorizeOperation({ model: lc.spec.model, request: { ...request, ...lc.digests() } });
  if (!verdict.ok) throw refuse(verdict.reason, ErrorType.Unauthorized);
  return verdict;
}

function useNonce(lc: LifecycleState, auth: Granted): void {
  if (!lc.useNonce(auth))
    throw refuse(`the claim's nonce ${auth.nonce} was already used: replayed`, ErrorType.Unauthorized);
}

/** Approve or reject under the policy: authorized by the worker, then checked again against the state and recorded. */
export async function decideAuthorized(
  lc: LifecycleState,
  raw: unknown,
  decision: 'approved' | 'rejected',
): Promise<ApprovalAck> {
  const input = parseInput(GateDecisionInput, raw, 'gate decision');
  const gate = lc.pendingGate;
  if (!gate?.opening) throw refuse('no gate is awaiting a decision', ErrorType.ApprovalRefused);
  const auth = await authorize(lc, {
    op: decision === 'approved' ? 'approve' : 'reject',
    by: input.by,
    ...(input.signed !== undefined ? { signed: input.signed } : {}),
    target: OperationTarget.gate(lc.id, lc.runId, gate.opening),
    gate: gate.gate,
  });
  // The gate may have closed, or this person decided it, while the worker was asked.
  if (lc.pendingGate?.opening !== gate.opening)
    throw refuse(`gate "${gate.gate}" closed meanwhile`, ErrorType.ApprovalRefused);
  lc.validateGate(raw, decision);
  useNonce(lc, auth);
  return lc.decideGate(raw, decision, auth);
}

export async function promoteNowAuthorized(lc: LifecycleState, raw: unknown): Promise<PromoteNowAck> {
  const input = parseInput(GateDecisionInput, raw, 'promote-now request');
  const auth = await authorize(lc, {
    op: 'promote-now',
    by: input.by,
    ...(input.signed !== undefined ? { signed: input.signed } : {}),
    target: OperationTarget.promoteNow(lc.id, lc.runId),
  });
  lc.validatePromoteNow(raw);
  useNonce(lc, auth);
  return lc.requestPromoteNow(raw, auth);
}

/** Abort, pause or resume under the policy. */
export async function operatorAuthorized(
  lc: LifecycleState,
  raw: unknown,
  action: 'abort' | 'pause' | 'resume',
): Promise<OperatorAck> {
  const input = parseInput(OperatorAction, raw, action);
  const auth = await authorize(lc, {
    op: action,
    by: input.by,
    ...(input.signed !== undefined ? { signed: input.signed } : {}),
    target: OperationTarget.lifecycle(lc.id, lc.runId),
  });
  lc.validateOperator(raw, action);
  if (action === 'abort') lc.validateAbort(raw);
  useNonce(lc, auth);
  lc.applyOperator(raw, action, auth);
  return { action, stage: lc.stage, at: new Date().toISOString() };
}

/**
 * The pause, resume and abort signals under the policy: authorized like the updates; a refused one is recorded as an
 * event and dropped (a signal has no caller to answer). Never throws: a signal handler that throws fails the task.
 */
export function operatorSignal(lc: LifecycleState, action: 'abort' | 'pause' | 'resume') {
  return (raw: unknown): Promise<void> =>
    (async () => {
      const parsed = OperatorAction.safeParse(raw);
      if (!parsed.success) {
        log.warn('ignored malformed signal', { signal: action, problems: describeIssues(parsed.error).slice(0, 10) });
        return;
      }
      try {
        lc.validateOperator(raw, action);
        await operatorAuthorized(lc, raw, action);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        lc.event(`${action} signal from ${parsed.data.by} refused: ${message}`);
        log.warn('operator signal refused', { action, reason: message });
      }
    })();
}
