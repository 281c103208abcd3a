/**
 * What one check of a data pipeline's batch tells the alert router (R8): drift of the features, drift of the label,
 * data-type problems and the quota pool's burn, one observation each, keyed `data:<pipeline>:<kind>`. Pure and
 * workflow-safe: `dataCheckWorkflow` builds them from the `checkData` report and the pool's state.
 */
import type { DriftReport, FeatureDrift, ProblemKind } from '../drift/compare';
import type { Observation } from '../shared/alerts';
import { dataCheckKey, type DataCheckKind, type DataCheckSettings, type DataProblemKind } from '../shared/data-check';
import type { QuotaPoolState, ResourceUsage } from '../shared/quota';

// The shared list of problem kinds must be the drift engine's, both ways.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const _problemKindsMatch: Same<ProblemKind, DataProblemKind> = true;

export interface DataCheckFacts {
  settings: DataCheckSettings;
  /** The batch checked (placeholder replaced). */
  current: string;
  /** The comparison; null when the batch or the reference could not be read. */
  report: DriftReport | null;
  /** Why they could not be read. */
  readError?: string;
  /** The pool's state when `settings.pool` is set: null when the pool has no state yet (never used). */
  pool?: QuotaPoolState | null;
  /** Why the pool's state could not be read. */
  poolError?: string;
  /** ISO time of the check. */
  at: string;
}

/** Longest read error an observation carries, in characters. */
const MAX_ERROR_CHARS = 2000;

const num = (x: number | null | undefined): string =>
  x === null || x === undefined
    ? '-'
    : x !== 0 && Math.abs(x) < 1e-3
      ? x.toExponential(1)
      : String(Number(x.toPrecision(3)));
const pct = (x: number) => `${Math.round(x * 100)}%`;

/** `monthly_charges (ks 0.41, p 1.2e-30)` */
function driftText(f: FeatureDrift): string {
  const p = f.pValue === undefined ? '' : `, p ${num(f.pValue)}`;
  return `${f.name} (${f.method} ${num(f.statistic)}${p})`;
}

function driftDetails(f: FeatureDrift) {
  return {
    name: f.name,
    method: f.method,
    statistic: f.statistic,
    ...(f.pValue !== undefined ? { pValue: f.pValue } : {}),
    threshold: f.threshold,
    ...(f.direction ? { direction: f.direction } : {}),
    moved: f.moved.slice(0, 2),
  };
}

/** `in about 45 min` / `in about 6.5 h` */
function within(ms: number): string {
  return ms < 2 * 3_600_000
    ? `in about ${Math.max(0, Math.round(ms / 60_000))} min`
    : `in about ${num(ms / 3_600_000)} h`;
}

/** Why a resource of the pool burns too fast, or null when it does not. */
function quotaTrouble(r: ResourceUsage, nowMs: number, s: DataCheckSettings): string | null {
  const reasons: string[] = [];
  if (r.exhaustedAt !== null) {
    const left = Date.parse(r.exhaustedAt) - nowMs;
    if (left <= s.quotaHorizon)
      reasons.push(`runs out ${within(left)} at ${num(r.burnPerHour)}/h (limit soon reached)`);
  }
  if (r.share > s.quotaShare) reasons.push(`above ${pct(s.quotaShare)}`);
  return reasons.length ? `${r.resource} at ${pct(r.share)} of ${num(r.capacity)}, ${reasons.join(', ')}` : null;
}

/** The observations of one check, in the order drift, label drift, data types, quota rate (when a pool is watched). */
export function dataCheckObservations(facts: DataCheckFacts): Observation[] {
  const s = facts.settings;
  const r = facts.report;
  const who = `pipeline "${s.name}"`;
  const observation = (
    kind: DataCheckKind,
    firing: boolean | null,
    summary: string,
    details: Record<string, unknown>,
  ): Observation => ({
    key: dataCheckKey(s.name, kind),
    kind,
    severity: s.severity[kind],
    firing,
    summary,
    ...(s.model ? { model: s.model } : {}),
    ...(kind === 'data-quota-rate' && s.pool ? { pool: s.pool } : {}),
    details: { pipeline: s.name, current: facts.current, ...details },
    hysteresis: s.hysteresis,
    // A batch drifts or breaks upstream of serving: a rollout of the model does not explain it away.
    silencedByRollout: false,
    at: facts.at,
  });
  const out: Observation[] = [];

  if (!r) {
    // The reader's message is bounded; this bound holds whatever reached here, as summaries go out in alerts.
    const raw = facts.readError ?? 'the data could not be read';
    const error = raw.length > MAX_ERROR_CHARS ? `${raw.slice(0, MAX_ERROR_CHARS - 1)}…` : raw;
    // A summary is one line; the details keep the message as the reader wrote it.
    const [first = '', ...more] = error.split('\n').map((l) => l.trim().replace(/^- /, ''));
    const line = more.length ? `${first} ${more.filter(Boolean).join('; ')}` : first;
    out.push(observation('data-drift', null, `${who}: drift not checked: ${line}`, { error }));
    out.push(observation('label-drift', null, `${who}: label drift not checked: ${line}`, { error }));
    out.push(observation('data-types', true, `${who}: cannot read the batch: ${line}`, { error }));
  } else {
    const drifted = r.features.filter((f) => f.role === 'feature' && f.drifted);
    const share = `share ${num(r.datasetDriftShare)}, data-set drift at ${num(r.driftShare)}`;
    const driftFiring = r.datasetDrift || drifted.length > 0;
    out.push(
      observation(
        'data-drift',
        driftFiring,
        driftFiring
          ? `${who}: ${r.datasetDrift ? 'data set drifted, ' : ''}${drifted.length} of ${r.comparedFeatures} features drifted (${share}): ${drifted.map(driftText).join(', ')}`
          : `${who}: no feature drifted (0 of ${r.comparedFeatures})`,
        {
          drifted: drifted.map(driftDetails),
          comparedFeatures: r.comparedFeatures,
          driftShare: r.datasetDriftShare,
          threshold: r.driftShare,
          datasetDrift: r.datasetDrift,
          rows: r.current.rows,
        },
      ),
    );

    const label = r.features.find((f) => f.role === 'label');
    out.push(
      !label
        ? observation('label-drift', null, `${who}: no label column in the reference`, {})
        : label.skipped
          ? observation('label-drift', null, `${who}: label ${label.name} not compared: ${label.skipped}`, {
              label: label.name,
            })
          : observation(
              'label-drift',
              label.drifted,
              label.drifted ? `${who}: label drifted: ${driftText(label)}` : `${who}: label ${label.name} steady`,
              { label: driftDetails(label), drifted: label.drifted },
            ),
    );

    const counted = r.problems.filter((p) => (s.typeProblems as readonly string[]).includes(p.kind));
    const byKind = new Map<string, typeof counted>();
    for (const p of counted) byKind.set(p.kind, [...(byKind.get(p.kind) ?? []), p]);
    const listed = [...byKind].map(
      ([kind, ps]) =>
        `${kind} ×${ps.length} (${ps
          .slice(0, 3)
          .map((p) => p.message)
          .join('; ')}${ps.length > 3 ? '; …' : ''})`,
    );
    out.push(
      observation(
        'data-types',
        counted.length > 0,
        counted.length > 0
          ? `${who}: ${counted.length} data-type problem(s): ${listed.join(', ')}`
          : `${who}: no data-type problems in ${r.current.rows} rows`,
        {
          counts: Object.fromEntries([...byKind].map(([kind, ps]) => [kind, ps.length])),
          problems: counted.map((p) => ({
            kind: p.kind,
            ...(p.feature ? { feature: p.feature } : {}),
            message: p.message,
            ...(p.count !== undefined ? { count: p.count } : {}),
          })),
          other: r.problems.filter((p) => !counted.includes(p)).map((p) => ({ kind: p.kind, message: p.message })),
          rows: r.current.rows,
        },
      ),
    );
  }

  if (s.pool) {
    const about = `pool "${s.pool}" of ${who}`;
    if (facts.poolError !== undefined) {
      out.push(
        observation('data-quota-rate', null, `${about}: usage not read: ${facts.poolError}`, {
          error: facts.poolError,
        }),
      );
    } else if (!facts.pool) {
      out.push(observation('data-quota-rate', null, `${about}: the pool has not been used yet`, {}));
    } else {
      const nowMs = Date.parse(facts.pool.at);
      const trouble = facts.pool.resources.flatMap((res) => {
        const why = quotaTrouble(res, nowMs, s);
        return why ? [why] : [];
      });
      out.push(
        observation(
          'data-quota-rate',
          trouble.length > 0,
          trouble.length > 0
            ? `${about}: ${trouble.join('; ')}`
            : `${about}: usage steady (${facts.pool.resources.map((res) => `${res.resource} ${pct(res.share)}`).join(', ')})`,
          {
            horizonMs: s.quotaHorizon,
            maxShare: s.quotaShare,
            resources: facts.pool.resources.map((res) => ({
              resource: res.resource,
              used: res.used,
              capacity: res.capacity,
              share: res.share,
              burnPerHour: res.burnPerHour,
              exhaustedAt: res.exhaustedAt,
            })),
          },
        ),
      );
    }
  }
  return out;
}
