import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { ALERT_ROUTER_WORKFLOW_ID, alertRouterQuery } from '../shared/monitoring';
import { ModelName } from '../shared/names';
import { registryStateQuery, statusQuery } from '../shared/messages';
import { registryWorkflowId } from '../shared/registry';
import type { LifecycleStatus } from '../shared/status';

/** One privileged action on a model, from wherever it is recorded. */
export interface AuditEntry {
  at: string;
  by: string;
  /** approve, reject, promote-now, abort, pause, resume, promotion, rollback, silence, unsilence, override. */
  action: string;
  /** What it acted on: a lifecycle and gate, a version, an incident. */
  target: string;
  /** The signing key, when the action was signed. */
  keyId: string | null;
  detail: string;
  /** Where it is recorded: a lifecycle, the registry, the alert router. */
  source: string;
}

/**
 * Who did what to a model and when, with the key each signed action carried: approvals, rejections, promote-now,
 * aborts, pauses and resumes from the model's lifecycles; promotions and rollbacks from its registry; silences and
 * overrides from the alert router. Oldest first. Sources that cannot answer now (a lifecycle whose worker is away,
 * no router yet) are listed in `unavailable` rather than failing the whole trail.
 */
export async function auditModel(
  client: Client,
  rawModel: string,
  options: { lifecycles?: number } = {},
): Promise<{ model: string; entries: AuditEntry[]; unavailable: string[] }> {
  const model = ModelName.parse(rawModel);
  const entries: AuditEntry[] = [];
  const unavailable: string[] = [];
  const limit = options.lifecycles ?? 200;

  let seen = 0;
  for await (const wf of client.workflow.list({
    query: `WorkflowType = 'modelLifecycleWorkflow' AND MlModel = '${model}'`,
  })) {
    if (seen++ >= limit) break;
    let status: LifecycleStatus;
    try {
      status = await client.workflow.getHandle(wf.workflowId, wf.runId).query(statusQuery);
    } catch {
      unavailable.push(`lifecycle ${wf.workflowId}`);
      continue;
    }
    entries.push(...lifecycleEntries(status));
  }

  try {
    const registry = await client.workflow.getHandle(registryWorkflowId(model)).query(registryStateQuery);
    for (const r of registry.history) {
      entries.push({
        at: r.at,
        by: r.by,
        action: r.kind ?? 'promotion',
        target: `${model} ${r.version}`,
        keyId: r.keyId ?? null,
        detail: `${r.kind === 'rollback' ? 'restored' : 'promoted'} by ${r.lifecycleId}${r.reason ? `: ${r.reason}` : ''}`,
        source: 'registry',
      });
    }
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) unavailable.push('registry');
  }

  try {
    const router = await client.workflow
      .getHandle(ALERT_ROUTER_WORKFLOW_ID)
      .query(alertRouterQuery, { model, limit: 1000 });
    for (const h of router.history) {
      if (!h.by || !['silenced', 'unsilenced', 'action-overridden'].includes(h.event)) continue;
      entries.push({
        at: h.at,
        by: h.by,
        action: h.event === 'action-overridden' ? 'override' : h.event === 'silenced' ? 'silence' : 'unsilence',
        target: h.incident ?? model,
        keyId: h.keyId ?? null,
        detail: h.summary,
        source: 'alert router',
      });
    }
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) unavailable.push('alert router');
  }

  entries.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  return { model, entries, unavailable };
}

/** The privileged actions one lifecycle recorded. */
function lifecycleEntries(status: LifecycleStatus): AuditEntry[] {
  const out: AuditEntry[] = [];
  for (const a of status.approvals) {
    if (a.by === 'system') continue;
    out.push({
      at: a.at,
      by: a.by,
      action: a.gate === 'promote-now' ? 'promote-now' : a.decision === 'approved' ? 'approve' : 'reject',
      target: `${status.id} gate ${a.opening ?? a.gate}`,
      keyId: a.keyId ?? null,
      detail: a.reason,
      source: status.id,
    });
  }
  if (status.operatorActions) {
    for (const o of status.operatorActions) {
      out.push({
        at: o.at,
        by: o.by,
        action: o.action,
        target: status.id,
        keyId: o.keyId ?? null,
        detail: o.reason,
        source: status.id,
      });
    }
  } else {
    // Lifecycles from before signed operations recorded their operator actions as events only.
    for (const e of status.events) {
      const m = /^(abort requested|paused|resumed) by (\S+)(?:: (.*))?$/.exec(e.message);
      if (!m) continue;
      const action = m[1] === 'abort requested' ? 'abort' : m[1] === 'paused' ? 'pause' : 'resume';
      out.push({ at: e.at, by: m[2]!, action, target: status.id, keyId: null, detail: m[3] ?? '', source: status.id });
    }
  }
  return out;
}
