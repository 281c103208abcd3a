import type { LifecycleSummary } from '../client/lifecycle-client';
import type { RegistryState } from '../shared/registry';
import type { LifecycleStatus } from '../shared/status';

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
        .filter(([k]) => ['accuracy', 'auc', 'logLoss', 'f1'].includes(k))
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );
  }
  if (s.pendingGate) {
    lines.push(
      `waiting:   gate "${s.pendingGate.gate}" for one of ${s.pendingGate.approvers.join(', ')} until ${s.pendingGate.deadline}`,
    );
  }
  if (s.error) lines.push(`outcome:   ${s.error.type}: ${s.error.message}`);
  if (s.approvals.length) {
    lines.push('', 'approvals:');
    lines.push(
      table(
        ['GATE', 'DECISION', 'BY', 'AT', 'REASON'],
        s.approvals.map((a) => [a.gate, a.decision, a.by, a.at, a.reason]),
      ),
    );
  }
  if (s.decisions.length) {
    lines.push('', 'decisions:');
    lines.push(
      table(
        ['STAGE', 'CHECK', 'VALUE', 'THRESHOLD', 'OUTCOME', 'SAMPLES'],
        s.decisions.map((d) => [
          d.stage,
          d.check,
          String(d.value),
          String(d.threshold),
          d.outcome,
          d.sampleSize === undefined ? '' : String(d.sampleSize),
        ]),
      ),
    );
  }
  return lines.join('\n');
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
  const metric = (m: Record<string, number>) =>
    ['auc', 'accuracy']
      .filter((k) => m[k] !== undefined)
      .map((k) => `${k}=${m[k]}`)
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
