import { condition, isCancellation, patched } from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { formatDurationMs } from '../../shared/duration';
import { own } from '../../shared/own';
import { OperationTarget } from '../../shared/signed-operation';
import { Stage, type PendingGate } from '../../shared/status';
import type { Alert } from '../../shared/alerts';
import type { LifecycleSpec } from '../../shared/spec';
import type { GatePolicy } from '../../domain/approval-policy';
import { control, type LifecycleContext } from './context';
import { failureMessage } from '../failures';
import { LifecycleEndReason } from '../../shared/errors';

/** Marks lifecycles that raise `approval-requested`, addressed to the approvers, when a gate opens. */
export const APPROVAL_REQUESTED = 'approval-requested';

/**
 * Waits for a gate decision: the policy's quorum of distinct approvers, or one rejection. A gate still open after
 * `escalateAfter` raises an escalation alert; at the timeout it expires. True when approved (or overtaken by a
 * granted promote-now); false when rejected, expired or aborted, with the lifecycle's error saying which. The caller
 * decides what a refusal ends in (rejected before traffic moved, a rollback after).
 */
export async function gate(ctx: LifecycleContext, name: string): Promise<boolean> {
  const { spec, lc } = ctx;
  const rules = lc.rulesOf(name);
  if (rules.signed) await loadKeyring(ctx, rules.approvers);
  const { timeout, escalateAfter } = spec.approval;
  lc.openGate(name, timeout, escalateAfter);
  lc.enter(Stage.AwaitingApproval, `awaiting approval of gate "${name}"`);
  ctx.details(
    `awaiting approval "${name}" from ${rules.quorum > 1 ? `${rules.quorum} of ` : ''}${rules.approvers.join(', ')}`,
  );
  if (patched(APPROVAL_REQUESTED)) {
    // Approvers hear of the gate the moment it opens (the router delivers this kind without its group wait).
    const pending = lc.pendingGate;
    await ctx.alert({
      kind: 'approval-requested',
      severity: 'info',
      summary:
        `gate "${name}" of ${spec.model} ${spec.version} waits for ${rules.quorum > 1 ? `${rules.quorum} of ` : 'one of '}` +
        `${rules.approvers.join(', ')}${rules.signed ? ' (signed)' : ''} until ${pending?.deadline ?? 'its timeout'}`,
      details: {
        gate: name,
        approvers: rules.approvers,
        quorum: rules.quorum,
        signed: rules.signed,
        deadline: pending?.deadline,
        approve: `mlctl approve ${lc.id} --gate ${name} --as <you>${rules.signed ? ' --key <your key>' : ''} --reason "…"`,
        // What a system that confirms the gate signs (op `approve` or `reject`, its identity, a reason, the time and a
        // nonce beside these), then sends to the worker's callback endpoint or as the approveGate update.
        ...(lc.enforced && pending?.opening
          ? {
              signing: {
                target: OperationTarget.gate(lc.id, lc.runId, pending.opening),
                ...lc.digests(),
                callback: `/v1/lifecycles/${encodeURIComponent(lc.id)}/gates/${encodeURIComponent(name)}/decision`,
              },
            }
          : {}),
      },
      audience: rules.approvers,
    });
  }
  const done = () => lc.gateOutcome !== null || lc.abort !== null || lc.promoteNow?.granted === true;
  const waiting = `approval ${name}: waiting for ${rules.quorum > 1 ? `${rules.quorum} of ` : ''}${rules.approvers.join(', ')}`;
  let decided: boolean;
  if (escalateAfter !== undefined) {
    decided = await condition(done, escalateAfter, {
      summary: `${waiting}, escalates in ${formatDurationMs(escalateAfter)}`,
    });
    if (!decided) {
      lc.markEscalated();
      await ctx.alert(escalationAlert(spec, name, rules, lc.pendingGate, escalateAfter));
      decided = await condition(done, Math.max(0, timeout - escalateAfter), {
        summary: `${waiting} (escalated), expires in ${formatDurationMs(Math.max(0, timeout - escalateAfter))}`,
      });
    }
  } else {
    decided = await condition(done, timeout, { summary: `${waiting}, expires in ${formatDurationMs(timeout)}` });
  }
  const outcome = lc.gateOutcome;
  if (!decided && outcome === null) lc.recordGateTimeout(name);
  lc.closeGate();
  if (outcome === 'approved') return true;
  if (lc.promoteNow?.granted && outcome === null && !lc.abort) {
    lc.event(`gate "${name}" overtaken by promote-now`);
    return true;
  }
  if (!decided) {
    lc.fail(LifecycleEndReason.ApprovalTimeout, `gate "${name}" was not decided within ${timeout} ms`);
    await ctx.alert({
      kind: 'approval-timeout',
      severity: 'warning',
      summary: `gate "${name}" of ${spec.model} ${spec.version} expired unapproved`,
    });
  } else if (outcome === 'rejected') {
    const last = [...lc.approvals].reverse().find((a) => a.gate === name && a.decision === 'rejected');
    lc.fail(
      LifecycleEndReason.Rejected,
      `gate "${name}" rejected by ${last?.by}${last?.reason ? `: ${last.reason}` : ''}`,
    );
  } else {
    lc.fail(LifecycleEndReason.Aborted, ctx.abortMessage());
  }
  return false;
}

/** The alert of a gate still open after `escalateAfter`: to the approvers and whoever the spec escalates to. */
export function escalationAlert(
  spec: LifecycleSpec,
  name: string,
  rules: GatePolicy,
  pending: PendingGate | null,
  escalateAfter: number,
): Omit<Alert, 'model' | 'version' | 'lifecycleId' | 'dedupKey'> {
  return {
    kind: 'approval-escalation',
    severity: 'warning',
    summary:
      `gate "${name}" of ${spec.model} ${spec.version} is still waiting after ${escalateAfter} ms` +
      `${spec.approval.escalateTo.length ? `; escalated to ${spec.approval.escalateTo.join(', ')}` : ''}`,
    details: {
      gate: name,
      approvers: rules.approvers,
      approvedBy: pending?.approvedBy ?? [],
      quorum: rules.quorum,
      escalateTo: spec.approval.escalateTo,
      deadline: pending?.deadline,
    },
  };
}

/** The approvers' public keys from the worker's keyring (ML_APPROVER_KEYS), for gates that need signatures. */
async function loadKeyring(ctx: LifecycleContext, approvers: string[]): Promise<void> {
  const { lc } = ctx;
  let keyring: Awaited<ReturnType<Activities['approverKeys']>> = {};
  try {
    keyring = await control.approverKeys({ approvers });
  } catch (err) {
    if (isCancellation(err)) throw err;
    lc.event(`approver keyring unreadable: ${failureMessage(err)}`);
  }
  // Under the platform policy the keyring is replaced, never merged, so a key removed from the file is gone here too.
  lc.keyring = lc.enforced ? keyring : { ...lc.keyring, ...keyring };
  const missing = approvers.filter((a) => !own(keyring, a));
  if (missing.length > 0) lc.event(`no signing key registered for ${missing.join(', ')}: they cannot approve`);
}
