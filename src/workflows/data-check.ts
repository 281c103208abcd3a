import {
  ApplicationFailure,
  log,
  proxyActivities,
  workflowInfo,
  type SearchAttributeValue,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { activityFailure } from './failures';
import { dataCheckObservations } from '../domain/data-check';
import type { DriftReport } from '../drift/compare';
import {
  batchPath,
  DataCheckInput,
  inputProblems,
  type DataCheckKind,
  type DataCheckResult,
} from '../shared/data-check';
import { ErrorType } from '../shared/errors';
import type { QuotaPoolState } from '../shared/quota';
import { setLogContext } from './log-context';
import { backoff, QUICK_OPTIONS } from './activity-options';

/** Reading and comparing a batch: a large file takes a while; bad data fails at once (non-retryable DataInvalid). */
const data = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  retry: backoff('2 seconds', '1 minute', 3),
});
/** The pool's state (a query) and the hand-over to the router (a signal-with-start): quick, retried a while. */
const control = proxyActivities<Activities>(QUICK_OPTIONS);

const invalid = (message: string) =>
  ApplicationFailure.create({
    type: ErrorType.InvalidSpec,
    message: `invalid data check input: ${message}`,
    nonRetryable: true,
  });

/**
 * The date a run checks (YYYY-MM-DD, UTC): the time its schedule meant it for (`TemporalScheduledStartTime`, set by
 * the Schedule — so a run buffered behind a slow one, or a backfill, checks its own day's batch), else its start.
 */
function runDate(): string {
  const info = workflowInfo();
  // The untyped map: the server sets this system attribute without the type metadata typed attributes decode by.
  const scheduled = (info.searchAttributes as Record<string, SearchAttributeValue | undefined> | undefined)?.[
    'TemporalScheduledStartTime'
  ]?.[0];
  const at = scheduled instanceof Date ? scheduled : typeof scheduled === 'string' ? new Date(scheduled) : null;
  return (at && !Number.isNaN(at.getTime()) ? at : info.startTime).toISOString().slice(0, 10);
}

/**
 * One check of a data pipeline's batch (R8), started by the pipeline's Schedule (`mlctl data schedule`): compares the
 * batch with the reference (`checkData`), reads the quota pool's burn when a pool is named (`readPoolState`), and
 * reports four conditions to the alert router — feature drift, label drift, data-type problems, quota burn — which
 * fires and resolves incidents with the check's hysteresis (default: each batch decides). A batch that cannot be read
 * is itself a bad `data-types` check, not a failure; an invalid input, drift options that do not fit the reference,
 * or an unknown pool fail the run without retries, naming the field.
 */
export async function dataCheckWorkflow(input: DataCheckInput): Promise<DataCheckResult> {
  const parsed = DataCheckInput.safeParse(input);
  if (!parsed.success) throw invalid(inputProblems(parsed.error));
  const settings = parsed.data;
  setLogContext({
    ...(settings.model ? { model: settings.model } : {}),
    ...(settings.pool ? { pool: settings.pool } : {}),
  });
  const date = settings.date ?? runDate();
  const current = batchPath(settings.current, date);

  let report: DriftReport | null = null;
  let readError: string | undefined;
  try {
    report = await data.checkData({
      reference: settings.reference,
      current,
      options: { ...settings.options, driftShare: settings.driftShare },
    });
  } catch (err) {
    const bad = activityFailure(err, ErrorType.DataInvalid);
    if (!bad) throw err;
    // The drift engine names option problems by their path (`features.age.method: …`); anything else is the data.
    if (/^features\./.test(bad.message)) throw invalid(`options.${bad.message}`);
    readError = bad.message;
  }

  let pool: QuotaPoolState | null | undefined;
  let poolError: string | undefined;
  if (settings.pool) {
    try {
      // A summary: the check reads the pool's usage and burn only, not its leases.
      pool = await control.readPoolState({ pool: settings.pool, summary: true });
    } catch (err) {
      const refused = activityFailure(err, ErrorType.QuotaRefused);
      if (!refused) throw err;
      // An unknown pool (the only refusal of a read).
      poolError = refused.message;
    }
  }

  const at = new Date().toISOString();
  const observations = dataCheckObservations({
    settings,
    current,
    report,
    ...(readError !== undefined ? { readError } : {}),
    ...(pool !== undefined ? { pool } : {}),
    ...(poolError !== undefined ? { poolError } : {}),
    at,
  });
  await control.reportObservations(observations);
  const firing = observations.filter((o) => o.firing === true).map((o) => o.kind as DataCheckKind);
  log.info('data check done', { pipeline: settings.name, current, firing });
  // The data's observations are reported either way; a pool the workers do not know is the schedule's mistake.
  if (poolError !== undefined) throw invalid(`pool: ${poolError}`);

  return {
    name: settings.name,
    current,
    date,
    firing,
    observations: observations.map((o) => ({
      key: o.key,
      kind: o.kind,
      firing: o.firing,
      severity: o.severity,
      summary: o.summary,
    })),
    driftShare: report ? report.datasetDriftShare : null,
    datasetDrift: report ? report.datasetDrift : null,
    driftedFeatures: report ? report.features.filter((f) => f.role === 'feature' && f.drifted).map((f) => f.name) : [],
    problems: report
      ? report.problems.map((p) => ({ kind: p.kind, ...(p.feature ? { feature: p.feature } : {}), message: p.message }))
      : [],
    ...(readError !== undefined ? { error: readError } : {}),
  };
}
