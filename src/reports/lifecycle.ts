import type { LifecycleRecord, TrafficPoint } from '../client/lifecycle-record';
import { TERMINAL_STAGES, type Decision, type Stage } from '../shared/status';
import { LIFECYCLE_SCRIPT } from './client';
import { reportHtml } from './html';

/** What `mlctl report --html` writes: the lifecycle as the page reads it. */
export interface LifecyclePage {
  generatedAt: string;
  lifecycle: {
    id: string;
    model: string;
    version: string;
    stableVersion: string | null;
    submittedBy: string;
    stage: Stage;
    terminal: boolean;
    trafficPercent: number;
    startedAt: string;
    endedAt: string | null;
    error: { type: string; message: string } | null;
    policyRule: string | null;
  };
  traffic: { points: TrafficPoint[]; until: string; source: string };
  checks: {
    check: string;
    rule: string | null;
    samples: Pick<
      Decision,
      'stage' | 'value' | 'threshold' | 'outcome' | 'at' | 'sample' | 'sampleSize' | 'dryRun' | 'tolerated'
    >[];
    passed: number;
    failed: number;
    inconclusive: number;
    errors: number;
    note: string | null;
  }[];
  /** Which samples the checks show. */
  checksNote: string;
  approvals: {
    gate: string;
    opening: string | null;
    decision: string;
    by: string;
    at: string;
    reason: string;
    keyId: string | null;
  }[];
  operatorActions: { action: string; by: string; at: string; reason: string; keyId: string | null }[];
  events: { at: string; stage: string; message: string }[];
}

/**
 * Every sample of each check the lifecycle kept, oldest first: its decisions (failed samples and every readout,
 * whole) with its measurements (the last passing and failing samples of each check), each sample once.
 */
function checksOf(record: LifecycleRecord): LifecyclePage['checks'] {
  const s = record.status;
  const byCheck = new Map<string, Map<string, Decision>>();
  for (const d of [...s.decisions, ...Object.values(s.measurements ?? {}).flatMap((m) => [...m.passed, ...m.failed])]) {
    const samples = byCheck.get(d.check) ?? new Map<string, Decision>();
    byCheck.set(d.check, samples);
    samples.set(`${d.stage}|${d.sample ?? 'readout'}|${d.at}`, d);
  }
  return [...byCheck].map(([check, samples]) => {
    const all = [...samples.values()].sort((a, b) => a.at.localeCompare(b.at));
    const count = (outcome: Decision['outcome']) => all.filter((d) => d.outcome === outcome).length;
    return {
      check,
      rule: [...all].reverse().find((d) => d.rule)?.rule ?? null,
      samples: all.map((d) => ({
        stage: d.stage,
        value: d.value !== null && Number.isFinite(d.value) ? d.value : null,
        threshold: d.threshold !== null && Number.isFinite(d.threshold) ? d.threshold : null,
        outcome: d.outcome,
        at: d.at,
        ...(d.sample !== undefined ? { sample: d.sample } : {}),
        ...(d.sampleSize !== undefined ? { sampleSize: d.sampleSize } : {}),
        ...(d.dryRun ? { dryRun: true } : {}),
        ...(d.tolerated ? { tolerated: true } : {}),
      })),
      passed: count('pass'),
      failed: count('fail'),
      inconclusive: count('inconclusive'),
      errors: count('error'),
      note: all.some((d) => d.dryRun) ? 'Dry run: measured and recorded, never enforced.' : null,
    };
  });
}

/** The page's data: outcome, traffic over time, each check's samples, approvals, operator actions and events. */
export function lifecyclePage(record: LifecycleRecord, generatedAt: Date = new Date()): LifecyclePage {
  const s = record.status;
  const terminal = TERMINAL_STAGES.includes(s.stage);
  return {
    generatedAt: generatedAt.toISOString(),
    lifecycle: {
      id: s.id,
      model: s.model,
      version: s.version,
      stableVersion: s.stableVersion,
      submittedBy: s.submittedBy,
      stage: s.stage,
      terminal,
      trafficPercent: s.trafficPercent,
      startedAt: s.startedAt,
      endedAt: record.closedAt,
      error: s.error,
      policyRule: s.policyRule ?? null,
    },
    traffic: {
      points: record.traffic,
      until: record.closedAt ?? generatedAt.toISOString(),
      source:
        "Each change is a weight table the lifecycle applied to the model's target (its setTrafficWeights activities in the workflow history), at the time the target took it.",
    },
    checks: checksOf(record),
    checksNote:
      'Each point is a sample or a stage readout of the check, coloured by its outcome; the dashed line is its threshold. ' +
      "Failures and readouts are all recorded; of the passing samples, the lifecycle keeps each check's last few " +
      '(rollout.analysis.measurementRetention).',
    approvals: s.approvals.map((a) => ({
      gate: a.gate,
      opening: a.opening ?? null,
      decision: a.decision,
      by: a.by,
      at: a.at,
      reason: a.reason,
      keyId: a.keyId ?? null,
    })),
    operatorActions: (s.operatorActions ?? []).map((a) => ({
      action: a.action,
      by: a.by,
      at: a.at,
      reason: a.reason,
      keyId: a.keyId ?? null,
    })),
    events: s.events.map((e) => ({ at: e.at, stage: e.stage, message: e.message })),
  };
}

/** The self-contained HTML of a lifecycle. */
export function lifecycleHtml(
  record: LifecycleRecord,
  options: { generatedAt?: Date; withoutChartJs?: boolean } = {},
): string {
  return reportHtml({
    title: 'Lifecycle report',
    data: lifecyclePage(record, options.generatedAt),
    script: LIFECYCLE_SCRIPT,
    ...(options.withoutChartJs ? { withoutChartJs: true } : {}),
  });
}

/** `mlctl report` without --html: the outcome, the traffic changes and each check's tally, in a few lines. */
export function lifecycleSummary(record: LifecycleRecord): string {
  const page = lifecyclePage(record);
  const lc = page.lifecycle;
  return [
    `${lc.id}  ${lc.model} ${lc.version}: ${lc.stage}${lc.error ? ` (${lc.error.type}: ${lc.error.message})` : ''}`,
    `traffic:   ${page.traffic.points.map((p) => `${p.percent}%`).join(' → ') || 'never routed'}`,
    `checks:    ${page.checks.map((c) => `${c.check} ${c.passed}/${c.samples.length} passed`).join(', ') || 'none yet'}`,
    `approvals: ${page.approvals.map((a) => `${a.gate} ${a.decision} by ${a.by}`).join(', ') || 'none'}`,
  ].join('\n');
}
