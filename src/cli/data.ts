import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Client } from '@temporalio/client';
import type { Command } from 'commander';
import {
  DataScheduleClient,
  DataScheduleExistsError,
  DataScheduleInputError,
  DataScheduleNotFoundError,
  type DataScheduleInfo,
  type DataScheduleTiming,
} from '../client/data-schedules';
import { loadYamlFile } from '../config/yaml-file';
import {
  buildProfile,
  checkData,
  checkDataWithDistributions,
  DriftOptions,
  loadReference,
  readData,
  saveProfile,
  type DriftReport,
  type FeatureDrift,
} from '../drift';
import { checkDuration, formatDurationMs } from '../shared/duration';
import { intArg, numberArg } from './options';
import type { DataCheckResult } from '../shared/data-check';
import { table } from './format';
import { dataCheckHtml } from '../reports/data-check';

export interface DataCommandDeps {
  print: (cmd: Command, json: unknown, text: string) => void;
  invalid: (message: string) => never;
  problemsFound: () => void;
  /** A Temporal client (`mlctl data schedule …`). */
  connect: () => Promise<Client>;
  refused: (message: string) => never;
  notFound: (message: string) => never;
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
    .option('--bins <n>', 'quantile bins per numeric column (2 to 1000)', intArg('--bins', 2, 1000), 10)
    .option('--no-values', 'do not store the sorted values (comparisons then work on the bins only)')
    .option('--json', 'machine-readable output')
    .action(async (file: string, o: ProfileFlags, cmd: Command) => {
      const bins = o.bins;
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
    .option(
      '--drift-share <share>',
      'share of drifted features that makes the data set drift',
      numberArg('--drift-share', 0, 1),
    )
    .option('--label <column>', 'the label column (when the reference is a data file)')
    .option('--identifier <columns>', 'identifier columns (when the reference is a data file)', list)
    .option('--html <file>', 'also write a self-contained HTML report: distributions, statistics, verdicts, problems')
    .option('--json', 'machine-readable output')
    .action(async (o: CheckFlags, cmd: Command) => {
      let options: DriftOptions = {};
      if (o.options) options = loadYamlFile(o.options, DriftOptions, 'drift options');
      if (o.driftShare !== undefined) {
        options = { ...options, driftShare: o.driftShare };
      }
      const reference = await loadReference(o.reference, {
        ...(o.label ? { label: o.label } : {}),
        ...(o.identifier ? { identifiers: o.identifier } : {}),
      });
      let report: DriftReport;
      try {
        if (o.html) {
          const checked = await checkDataWithDistributions(reference, o.current, options);
          report = checked.report;
          writeFileSync(o.html, dataCheckHtml(report, checked.distributions));
        } else {
          report = await checkData(reference, o.current, options);
        }
      } catch (err) {
        if (err instanceof RangeError) deps.invalid(`${o.options ?? 'options'}: ${err.message}`);
        throw err;
      }
      if (!report.ok) deps.problemsFound();
      deps.print(cmd, report, formatReport(report) + (o.html ? `\nHTML report: ${o.html}` : ''));
    });

  addScheduleCommands(data, deps);
}

/** The CLI flag a schedule input field comes from (`driftShare` → `--drift-share`). */
function flagOf(field: string): string {
  const top = field.split('.')[0]!;
  if (top === 'name') return '<name>';
  const flags = ['reference', 'current', 'model', 'pool', 'quotaHorizon', 'driftShare', 'options', 'every', 'cron'];
  return flags.includes(top) ? `--${top.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` : field;
}

const when = (iso: string | undefined) => (iso ? iso.replace(/\.\d{3}Z$/, 'Z') : '-');

export function formatSchedule(s: DataScheduleInfo): string {
  const i = s.input;
  return [
    `${s.scheduleId}: ${s.timing}${s.paused ? ' (paused)' : ''}`,
    `  checks    ${i.current}`,
    `  against   ${i.reference}`,
    ...(i.model ? [`  model     ${i.model}`] : []),
    ...(i.pool
      ? [`  pool      ${i.pool} (alert when a resource runs out within ${formatDurationMs(i.quotaHorizon)})`]
      : []),
    `  drift     data set drifts at a share of ${i.driftShare}; alerts data:${s.name}:<kind>`,
    `  next run  ${when(s.nextRuns[0])}`,
  ].join('\n');
}

export function formatCheckResult(r: DataCheckResult): string {
  return [
    `${r.name}: checked ${r.current} (${r.date})`,
    ...r.observations.map(
      (o) => `  ${o.firing === true ? 'BAD ' : o.firing === false ? 'ok  ' : '?   '} ${o.kind.padEnd(15)} ${o.summary}`,
    ),
    r.firing.length ? `firing: ${r.firing.join(', ')}` : 'nothing firing',
  ].join('\n');
}

/** `mlctl data schedule create|list|trigger|delete`: data pipeline checks on Temporal Schedules (R8). */
function addScheduleCommands(data: Command, deps: DataCommandDeps): void {
  const schedule = data
    .command('schedule')
    .description("check a data pipeline's batches on a Temporal Schedule; findings go to the alert router");
  const schedules = async () => new DataScheduleClient(await deps.connect());
  const mapped = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (err instanceof DataScheduleInputError) deps.invalid(`${flagOf(err.field)}: ${err.problem}`);
      if (err instanceof DataScheduleExistsError) deps.refused(err.message);
      if (err instanceof DataScheduleNotFoundError) deps.notFound(err.message);
      throw err;
    }
  };

  schedule
    .command('create <name>')
    .description('create the schedule data-check-<name>: check the batch against the reference on a timer')
    .requiredOption(
      '--reference <file>',
      'a profile (`mlctl data profile`; --label there for label drift) or data file',
    )
    .requiredOption('--current <file>', "the batch (CSV/JSONL); {date} stands for the run's date: batches/{date}.csv")
    .option('--every <duration>', 'run at this interval (e.g. 1h, 1d; default 1d)')
    .option('--cron <expression>', 'run at the times of a cron expression, UTC (e.g. "0 6 * * *")')
    .option('--model <model>', 'the model the pipeline feeds (carried on its alerts)')
    .option('--pool <pool>', "watch this quota pool's burn rate (data-quota-rate)")
    .option('--quota-horizon <duration>', "alert when a pool's resource runs out within this (default 24h)")
    .option(
      '--drift-share <share>',
      'share of drifted features that makes the data set drift (default 0.5)',
      numberArg('--drift-share', 0, 1),
    )
    .option('--options <yaml>', 'drift options: per-feature method/threshold/direction/skip, problem limits')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o: ScheduleFlags, cmd: Command) => {
      if (o.every !== undefined && o.cron !== undefined) deps.invalid('--every, --cron: give one of them, not both');
      let timing: DataScheduleTiming = { every: o.every ?? '1d' };
      if (o.cron !== undefined) timing = { cron: o.cron };
      else {
        const every = checkDuration(timing.every as string, { positive: true });
        if (!every.ok) deps.invalid(`--every: "${o.every}" is not a duration (e.g. 30m, 1h, 1d): ${every.problem}`);
      }
      let driftShare = o.driftShare;
      let options: Record<string, unknown> | undefined;
      if (o.options) {
        const { driftShare: fromFile, ...rest } = loadYamlFile(o.options, DriftOptions, 'drift options');
        options = rest;
        driftShare ??= fromFile;
      }
      const info = await mapped(async () =>
        (await schedules()).create(
          {
            name,
            // The worker reads them: absolute, so they do not depend on where the worker was started.
            reference: resolve(o.reference),
            current: resolve(o.current),
            ...(o.model !== undefined ? { model: o.model } : {}),
            ...(o.pool !== undefined ? { pool: o.pool } : {}),
            ...(o.quotaHorizon !== undefined ? { quotaHorizon: o.quotaHorizon } : {}),
            ...(driftShare !== undefined ? { driftShare } : {}),
            ...(options ? { options } : {}),
          },
          timing,
        ),
      );
      deps.print(cmd, info, `created ${formatSchedule(info)}`);
    });

  schedule
    .command('list')
    .description('the data check schedules: what each checks, when, and its next run')
    .option('--json', 'machine-readable output')
    .action(async (_o: unknown, cmd: Command) => {
      const all = await mapped(async () => (await schedules()).list());
      deps.print(
        cmd,
        all,
        all.length === 0
          ? 'no data check schedules'
          : table(
              ['NAME', 'TIMING', 'CURRENT', 'REFERENCE', 'MODEL', 'POOL', 'NEXT RUN', 'LAST RUN'],
              all.map((s) => [
                s.name,
                s.timing,
                s.input?.current ?? '',
                s.input?.reference ?? '',
                s.input?.model ?? '-',
                s.input?.pool ?? '-',
                when(s.nextRuns[0]),
                when(s.recentRuns.at(-1)?.takenAt),
              ]),
            ),
      );
    });

  schedule
    .command('trigger <name>')
    .description('run the check now (with --wait: print what it found; exit 5 when a condition is bad)')
    .option('--wait', 'wait for the check and print its findings')
    .option('--json', 'machine-readable output')
    .action(async (name: string, o: { wait?: boolean }, cmd: Command) => {
      const run = await mapped(async () => (await schedules()).trigger(name, { wait: o.wait === true }));
      if (!run) {
        deps.print(cmd, { name, started: false }, `${name}: triggered; it starts when the running check ends`);
        return;
      }
      if (run.result && run.result.firing.length > 0) deps.problemsFound();
      deps.print(
        cmd,
        { name, started: true, ...run },
        run.result ? formatCheckResult(run.result) : `${name}: triggered, run ${run.workflowId}`,
      );
    });

  schedule
    .command('delete <name>')
    .description('delete the schedule (a check already running finishes; open incidents stay in the router)')
    .option('--json', 'machine-readable output')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await mapped(async () => (await schedules()).delete(name));
      deps.print(cmd, { name, deleted: true }, `deleted data-check-${name}`);
    });
}

interface ProfileFlags {
  out: string;
  label?: string;
  identifier?: string[];
  feature?: string[];
  bins: number;
  values: boolean;
}

interface CheckFlags {
  html?: string;
  reference: string;
  current: string;
  options?: string;
  driftShare?: number;
  label?: string;
  identifier?: string[];
}

interface ScheduleFlags {
  reference: string;
  current: string;
  every?: string;
  cron?: string;
  model?: string;
  pool?: string;
  quotaHorizon?: string;
  driftShare?: number;
  options?: string;
}
