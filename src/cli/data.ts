import type { Command } from 'commander';
import { loadYamlFile } from '../config/yaml-file';
import {
  buildProfile,
  checkData,
  DriftOptions,
  loadReference,
  readData,
  saveProfile,
  type DriftReport,
  type FeatureDrift,
} from '../drift';
import { table } from './format';

export interface DataCommandDeps {
  print: (cmd: Command, json: unknown, text: string) => void;
  invalid: (message: string) => never;
  problemsFound: () => void;
}

const num = (x: number | null | undefined) =>
  x === null || x === undefined
    ? '-'
    : x !== 0 && Math.abs(x) < 1e-4
      ? x.toExponential(2)
      : String(Number(x.toPrecision(4)));

function movedText(f: FeatureDrift): string {
  if (f.skipped) return f.skipped;
  return f.moved
    .slice(0, 2)
    .map((m) => `${m.what} ${(m.reference * 100).toFixed(1)}%→${(m.current * 100).toFixed(1)}%`)
    .join('; ');
}

export function formatReport(r: DriftReport): string {
  const lines = [
    `reference: ${r.reference.source ?? 'profile'} (${r.reference.rows} rows)   current: ${r.current.source ?? 'data'} (${r.current.rows} rows)`,
    '',
    table(
      ['FEATURE', 'TYPE', 'METHOD', 'STATISTIC', 'P-VALUE', 'THRESHOLD', 'DRIFT', 'N REF', 'N CUR', 'MOVED MOST'],
      r.features.map((f) => [
        f.role === 'feature' ? f.name : `${f.name} (${f.role})`,
        f.type,
        f.method + (f.direction ? ` (${f.direction})` : '') + (f.basis === 'binned' ? ' [binned]' : ''),
        num(f.statistic),
        f.pValue === undefined ? '' : num(f.pValue),
        num(f.threshold),
        f.skipped ? '' : f.drifted ? 'DRIFT' : 'ok',
        String(f.referenceSize),
        String(f.currentSize),
        movedText(f),
      ]),
    ),
  ];
  if (r.problems.length > 0) {
    lines.push('', `data problems (${r.problems.length}):`, ...r.problems.map((p) => `  - ${p.message}`));
  }
  lines.push(
    '',
    `dataset drift: ${r.datasetDrift ? 'YES' : 'no'} (${r.driftedFeatures} of ${r.comparedFeatures} features drifted, ` +
      `share ${r.datasetDriftShare.toFixed(2)}, threshold ${r.driftShare})`,
    `verdict: ${r.ok ? 'no drift, no data problems' : 'drift or data problems found'}`,
  );
  return lines.join('\n');
}

const list = (v: string, prev: string[] = []) => [
  ...prev,
  ...v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
];

/** `mlctl data profile` and `mlctl data check`. */
export function addDataCommands(program: Command, deps: DataCommandDeps): void {
  const data = program.command('data').description('profile data sets and check new data for drift and data problems');

  data
    .command('profile <file>')
    .description('profile a training set (CSV or JSONL): types, presence, ranges, quantiles, bins, domains')
    .requiredOption('-o, --out <profile.json>', 'where to write the profile (sorted values go beside it)')
    .option('--label <column>', 'the label column')
    .option('--identifier <columns>', 'columns that identify rows, never compared (comma-separated)', list)
    .option('--feature <columns>', 'columns that are features even if they look like identifiers', list)
    .option('--bins <n>', 'quantile bins per numeric column', '10')
    .option('--no-values', 'do not store the sorted values (comparisons then work on the bins only)')
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: ProfileFlags, cmd: Command) => {
      const bins = Number(o.bins);
      if (!Number.isInteger(bins) || bins < 2 || bins > 1000)
        deps.invalid(`--bins: "${o.bins}" is not an integer in 2..1000`);
      const started = performance.now();
      const columns = await readData(file);
      const reference = await buildProfile(columns, {
        bins,
        ...(o.label ? { label: o.label } : {}),
        ...(o.identifier ? { identifiers: o.identifier } : {}),
        ...(o.feature ? { features: o.feature } : {}),
      });
      if (o.label && !reference.profile.features.some((f) => f.name === o.label)) {
        deps.invalid(`--label: ${file} has no column "${o.label}"`);
      }
      await saveProfile(reference, o.out, { values: o.values });
      const p = reference.profile;
      deps.print(
        cmd,
        p,
        [
          `${file}: ${p.rows} rows, ${p.features.length} columns → ${o.out} (${Math.round(performance.now() - started)} ms)`,
          '',
          table(
            ['COLUMN', 'TYPE', 'ROLE', 'PRESENT', 'MISSING', 'SUMMARY'],
            p.features.map((f) => [
              f.name,
              f.type,
              f.role,
              String(f.count),
              String(f.missing),
              f.type === 'numeric'
                ? `min ${num(f.min)}  p50 ${num(f.quantiles.p50)}  max ${num(f.max)}  mean ${num(f.mean)}  std ${num(f.std)}`
                : f.role === 'identifier'
                  ? `${f.distinct} distinct`
                  : `${f.distinct} categories: ${f.domain
                      .slice(0, 4)
                      .map((d) => `${d.value} ${((d.count / Math.max(f.count, 1)) * 100).toFixed(0)}%`)
                      .join(', ')}${f.domain.length > 4 ? ', …' : ''}`,
            ]),
          ),
        ].join('\n'),
      );
    });

  data
    .command('check')
    .description('compare current data with a reference: drift per feature and data problems (exit 5 when found)')
    .requiredOption('--reference <file>', 'training data (CSV/JSONL) or a profile written by `mlctl data profile`')
    .requiredOption('--current <file>', 'the data to check (CSV or JSONL)')
    .option('--options <yaml>', 'drift options: per-feature method/threshold/direction/skip, driftShare, limits')
    .option('--drift-share <share>', 'share of drifted features that makes the data set drift')
    .option('--label <column>', 'the label column (when the reference is a data file)')
    .option('--identifier <columns>', 'identifier columns (when the reference is a data file)', list)
    .option('--json', 'machine-readable output')
    .action(async (o: CheckFlags, cmd: Command) => {
      let options: DriftOptions = {};
      if (o.options) options = loadYamlFile(o.options, DriftOptions, 'drift options');
      if (o.driftShare !== undefined) {
        const share = Number(o.driftShare);
        if (!(share >= 0 && share <= 1)) deps.invalid(`--drift-share: "${o.driftShare}" is not a number in 0..1`);
        options = { ...options, driftShare: share };
      }
      const reference = await loadReference(o.reference, {
        ...(o.label ? { label: o.label } : {}),
        ...(o.identifier ? { identifiers: o.identifier } : {}),
      });
      let report: DriftReport;
      try {
        report = await checkData(reference, o.current, options);
      } catch (err) {
        if (err instanceof RangeError) deps.invalid(`${o.options ?? 'options'}: ${err.message}`);
        throw err;
      }
      if (!report.ok) deps.problemsFound();
      deps.print(cmd, report, formatReport(report));
    });
}

interface ProfileFlags {
  out: string;
  label?: string;
  identifier?: string[];
  feature?: string[];
  bins: string;
  values: boolean;
}

interface CheckFlags {
  reference: string;
  current: string;
  options?: string;
  driftShare?: string;
  label?: string;
  identifier?: string[];
}
