import type { DataProblem, DriftReport, FeatureDistribution, FeatureDrift } from '../drift';
import { TESTS, type DriftMethod } from '../shared/drift';
import { DATA_CHECK_SCRIPT } from './client';
import { reportHtml } from './html';

/** What `mlctl data check --html` writes: the report as the page reads it (shares, not counts; rows of text). */
export interface DataCheckPage {
  generatedAt: string;
  reference: { source?: string; rows: number };
  current: { source?: string; rows: number };
  verdict: {
    ok: boolean;
    text: string;
    comparedFeatures: number;
    driftedFeatures: number;
    datasetDriftShare: number;
    driftShare: number;
    problems: number;
  };
  /** Problems of the data set as a whole (no rows, malformed rows, new columns…). */
  dataProblems: { kind: string; message: string }[];
  features: {
    name: string;
    type: string;
    role: string;
    drifted: boolean;
    skipped?: string;
    /** Label/value rows of the statistics table. */
    stats: [string, string][];
    /** Percent of the reference's and of the current data's values per bin or category. */
    distribution?: { labels: string[]; reference: number[]; current: number[]; note: string };
    problems: { kind: string; message: string }[];
  }[];
}

const num = (x: number | null | undefined): string =>
  x === null || x === undefined
    ? '–'
    : x !== 0 && Math.abs(x) < 1e-4
      ? x.toExponential(2)
      : String(Number(x.toPrecision(4)));

const METHOD_NAMES: Record<DriftMethod, string> = {
  ks: 'Kolmogorov–Smirnov test',
  chisquare: 'chi-squared test',
  wasserstein: 'Wasserstein distance (in reference std)',
  psi: 'population stability index',
  jensenshannon: 'Jensen–Shannon distance',
  linf: 'L-infinity distance',
};

/** `drifted when p < 0.05` / `drifted when statistic >= 0.1`. */
function ruleOf(f: FeatureDrift): string {
  if (f.method === 'none' || f.threshold === null) return 'not compared';
  return TESTS.has(f.method) ? `p-value < ${num(f.threshold)}` : `statistic ≥ ${num(f.threshold)}`;
}

const percents = (counts: readonly number[]) => {
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((c) => (total > 0 ? Math.round((c / total) * 1e6) / 1e4 : 0));
};

/** Drifted first, then features with data problems, then the others, then those not compared; in column order within. */
function rank(f: DataCheckPage['features'][number]): number {
  if (f.drifted) return 0;
  if (f.problems.length > 0) return 1;
  if (!f.skipped) return 2;
  return 3;
}

/** The page's data: the report with each feature's distribution, statistics, verdict and data problems. */
export function dataCheckPage(
  report: DriftReport,
  distributions: readonly FeatureDistribution[],
  generatedAt: Date = new Date(),
): DataCheckPage {
  const byFeature = new Map<string, DataProblem[]>();
  const dataProblems: DataProblem[] = [];
  const names = new Set(report.features.map((f) => f.name));
  for (const p of report.problems) {
    if (p.feature !== undefined && names.has(p.feature))
      byFeature.set(p.feature, [...(byFeature.get(p.feature) ?? []), p]);
    else dataProblems.push(p);
  }
  const plotted = new Map(distributions.map((d) => [d.name, d]));
  const features = report.features.map((f) => {
    const d = plotted.get(f.name);
    const stats: [string, string][] = [
      ['Method', f.method === 'none' ? '–' : `${METHOD_NAMES[f.method]}${f.basis === 'binned' ? ' (on bins)' : ''}`],
      ['Statistic', num(f.statistic)],
      ...(f.pValue !== undefined ? [['p-value', num(f.pValue)] as [string, string]] : []),
      ['Drifted when', ruleOf(f) + (f.direction ? ` (${f.direction} only)` : '')],
      ['Verdict', f.skipped ? `not compared: ${f.skipped}` : f.drifted ? 'drifted' : 'no drift'],
      ['Values (reference / current)', `${f.referenceSize} / ${f.currentSize}`],
      ...(f.moved.length > 0
        ? [
            [
              'Moved most',
              f.moved
                .map((m) => `${m.what} ${(m.reference * 100).toFixed(1)}% → ${(m.current * 100).toFixed(1)}%`)
                .join('; '),
            ] as [string, string],
          ]
        : []),
      ...(f.unseen && f.unseen.length > 0
        ? [['New categories', f.unseen.map((u) => `${u.value} ×${u.count}`).join(', ')] as [string, string]]
        : []),
    ];
    return {
      name: f.name,
      type: f.type,
      role: f.role,
      drifted: f.drifted,
      ...(f.skipped ? { skipped: f.skipped } : {}),
      stats,
      ...(d
        ? {
            distribution: {
              labels: d.labels,
              reference: percents(d.reference),
              current: percents(d.current),
              note:
                d.type === 'numeric'
                  ? `Share of finite values per bin of the reference's quantiles (${d.labels.length} bins).`
                  : 'Share of values per category; (unseen) marks categories the reference never had.',
            },
          }
        : {}),
      problems: (byFeature.get(f.name) ?? []).map((p) => ({ kind: p.kind, message: p.message })),
    };
  });
  features.sort((a, b) => rank(a) - rank(b));
  return {
    generatedAt: generatedAt.toISOString(),
    reference: report.reference,
    current: report.current,
    verdict: {
      ok: report.ok,
      text: report.ok
        ? 'no drift, no data problems'
        : `${report.datasetDrift ? 'the data set drifted' : 'no data-set drift'}; ${report.driftedFeatures} of ${report.comparedFeatures} features drifted; ${report.problems.length} data problem(s)`,
      comparedFeatures: report.comparedFeatures,
      driftedFeatures: report.driftedFeatures,
      datasetDriftShare: report.datasetDriftShare,
      driftShare: report.driftShare,
      problems: report.problems.length,
    },
    dataProblems: dataProblems.map((p) => ({ kind: p.kind, message: p.message })),
    features,
  };
}

/** The self-contained HTML of a data check. */
export function dataCheckHtml(
  report: DriftReport,
  distributions: readonly FeatureDistribution[],
  options: { generatedAt?: Date; withoutChartJs?: boolean } = {},
): string {
  return reportHtml({
    title: 'Data check report',
    data: dataCheckPage(report, distributions, options.generatedAt),
    script: DATA_CHECK_SCRIPT,
    ...(options.withoutChartJs ? { withoutChartJs: true } : {}),
  });
}
