import type { AuditEntry } from '../client/audit';
import type { LifecycleSummary } from '../client/lifecycle-client';
import { own } from '../shared/own';
import type { RegistryState } from '../shared/registry';
import { TASK_METRICS } from '../shared/task';
import { RECURRING_DECISIONS_KEPT, type LifecycleStatus } from '../shared/status';
import type { ServingMonitorState } from '../shared/monitoring';

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** Human-readable `mlctl status`. */
/** The metrics `status` shows: every task's offline metrics (src/shared/task.ts), whichever the model's task is. */
const SHOWN_METRICS = new Set(Object.values(TASK_METRICS).flatMap((metrics) => metrics.map((m) => m.name)));

export function formatStatus(s: LifecycleStatus): string {
  const lines = [
    `${s.id}  ${s.model} ${s.version}`,
    `stage:     ${s.stage}${s.paused ? ' (paused)' : ''}`,
    `traffic:   ${s.trafficPercent}% to ${s.version}${s.stableVersion ? `, rest to ${s.stableVersion}` : ''}`,
    `submitted: ${s.submittedBy} at ${s.startedAt}`,
  ];
  if (s.hardware) lines.push(`hardware:  train on ${s.hardware.training}, serve on ${s.hardware.serving}`);
  if (s.metrics) {
    lines.push(
      `metrics:   ${Object.entries(s.metrics)
        .filter(([k]) => SHOWN_METRICS.has(k))
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );
  }
  const g = s.pendingGate;
  if (g) {
    const quorum = g.quorum ?? 1;
    const who = quorum > 1 ? `${quorum} of` : 'one of';
    lines.push(
      `waiting:   gate "${g.gate}" for ${who} ${g.approvers.join(', ')}${g.signed ? ' (signed)' : ''} until ${g.deadline}` +
        (quorum > 1 ? `; approved so far: ${g.approvedBy?.length ? g.approvedBy.join(', ') : 'nobody'}` : '') +
        (g.escalated ? '; escalated' : g.escalatesAt ? `; escalates at ${g.escalatesAt}` : ''),
    );
  }
  if (s.promoteNow) {
    lines.push(
      `promote:   promote-now ${s.promoteNow.granted ? 'granted' : `asked by ${s.promoteNow.requestedBy.length} of ${s.promoteNow.quorum}`}` +
        ` (${s.promoteNow.requestedBy.join(', ')})`,
    );
  }
  if (s.error) lines.push(`outcome:   ${s.error.type}: ${s.error.message}`);
  if (s.approvals.length) {
    lines.push('', 'approvals:');
    lines.push(
      table(
        ['GATE', 'DECISION', 'BY', 'SIGNED', 'AT', 'REASON'],
        s.approvals.map((a) => [a.gate, a.decision, a.by, a.keyId ?? '', a.at, a.reason]),
      ),
    );
  }
  if (s.decisions.length) {
    lines.push('', 'decisions:');
    lines.push(
      table(
        ['STAGE', 'CHECK', 'VALUE', 'THRESHOLD', 'OUTCOME', 'N', 'RULE'],
        s.decisions.map((d) => [
          d.sample ? `${d.stage} #${d.sample}` : d.stage,
          d.check,
          String(d.value),
          String(d.threshold),
          outcomeOf(d),
          d.sampleSize === undefined ? '' : String(d.sampleSize),
          d.rule ?? '',
        ]),
      ),
    );
  }
  for (const o of s.omittedDecisions ?? []) {
    lines.push(
      `  (${o.stage} ${o.check}: ${o.count} more tolerated or dry-run failures after the first ` +
        `${RECURRING_DECISIONS_KEPT}; last ones below)`,
    );
  }
  const measured = Object.entries(s.measurements ?? {});
  if (measured.length) {
    // The last samples each check kept, passing and failing: what a check read over the rollout, not only its breaches.
    lines.push('', 'measurements (last samples of each check):');
    lines.push(
      table(
        ['CHECK', 'SOURCE', 'PASSED', 'FAILED', 'LAST VALUES (oldest first)'],
        measured.map(([check, m]) => {
          const all = [...m.passed, ...m.failed].sort((a, b) => a.at.localeCompare(b.at));
          const source = all[0]?.provider ?? 'gateway';
          return [
            check + (all.some((d) => d.dryRun) ? ' (dry run)' : ''),
            source,
            String(m.passed.length),
            String(m.failed.length),
            all
              .slice(-8)
              .map(
                (d) =>
                  `${d.outcome === 'pass' ? '' : `${d.outcome}:`}${d.value === null ? '-' : Number(d.value.toPrecision(4))}`,
              )
              .join(' '),
          ];
        }),
      ),
    );
  }
  return lines.join('\n');
}

/** A decision's outcome as status shows it: dry runs and tolerated failures marked. */
function outcomeOf(d: LifecycleStatus['decisions'][number]): string {
  const marks = [d.tolerated ? 'tolerated' : '', d.dryRun ? 'dry run' : ''].filter(Boolean);
  return marks.length ? `${d.outcome} (${marks.join(', ')})` : d.outcome;
}

/** Human-readable `mlctl list`. */
export function formatList(rows: LifecycleSummary[]): string {
  if (rows.length === 0) return 'no lifecycles';
  return table(
    ['ID', 'MODEL', 'VERSION', 'STAGE', 'STATUS', 'STARTED'],
    rows.map((r) => [r.id, r.model ?? '', r.version ?? '', r.stage ?? '', r.status.toLowerCase(), r.startTime]),
  );
}

/** Human-readable `mlctl history`: production, previous, then every promotion, newest first. */
export function formatHistory(r: RegistryState): string {
  const mark = (lifecycleId: string) =>
    r.production?.lifecycleId === lifecycleId
      ? 'production'
      : r.previous?.lifecycleId === lifecycleId
        ? 'previous'
        : '';
  const metric = (m: Record<string, number | null>) =>
    ['auc', 'accuracy']
      .filter((k) => own(m, k) !== undefined)
      .map((k) => `${k}=${own(m, k)}`)
      .join(' ');
  return [
    `${r.model}`,
    `production: ${r.production ? `${r.production.version} (since ${r.production.at})` : 'none'}`,
    `previous:   ${r.previous ? r.previous.version : 'none'}`,
    '',
    table(
      ['AT', 'VERSION', 'ALIAS', 'HOW', 'BY', 'LIFECYCLE / ROLLBACK', 'REASON / METRICS'],
      [...r.history]
        .reverse()
        .map((h) => [
          h.at,
          h.version,
          mark(h.lifecycleId),
          h.kind ?? 'promotion',
          h.by,
          h.lifecycleId,
          h.kind === 'rollback' ? (h.reason ?? '') : metric(h.metrics),
        ]),
    ),
  ].join('\n');
}

/** `mlctl audit`: one line per privileged action, oldest first. */
export function formatAudit(trail: { model: string; entries: AuditEntry[]; unavailable: string[] }): string {
  const rows = trail.entries.map((e) => [e.at, e.by, e.action, e.target, e.keyId ?? 'unsigned', e.detail]);
  const lines = [
    trail.entries.length
      ? table(['AT', 'WHO', 'ACTION', 'TARGET', 'KEY', 'DETAIL'], rows)
      : `no recorded actions on ${trail.model}`,
  ];
  if (trail.unavailable.length) lines.push(`not readable now: ${trail.unavailable.join(', ')}`);
  return lines.join('\n');
}

/** A serving monitor's state: what it watches and its last observation of each condition. */
export function formatMonitor(m: ServingMonitorState): string {
  const lines = [
    `${m.model}  production ${m.version ?? '(none)'}${m.enabled ? '' : '  (monitoring disabled)'}`,
    `checks:    ${m.checks}${m.lastCheckAt ? `, last at ${m.lastCheckAt} on ${m.lastRequests} requests` : ''}`,
  ];
  if (m.latest.length) {
    lines.push('');
    lines.push(
      table(
        ['CONDITION', 'STATE', 'AT', 'SUMMARY'],
        m.latest.map((o) => [o.kind, o.firing === null ? 'cannot tell' : o.firing ? 'BAD' : 'ok', o.at, o.summary]),
      ),
    );
  }
  return lines.join('\n');
}
