import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleDescription,
  type ScheduleSummary,
} from '@temporalio/client';
import { checkDuration, formatDurationMs, MAX_DURATION_MS } from '../shared/duration';
import {
  DataCheckInput,
  DataPipelineName,
  dataScheduleId,
  type DataCheckResult,
  type DataCheckSettings,
} from '../shared/data-check';
import { LIFECYCLE_TASK_QUEUE } from '../shared/task-queues';
import { cutBytes, STATIC_DETAILS_MAX_BYTES, STATIC_SUMMARY_MAX_BYTES } from '../shared/text';

/** A bad schedule request; `field` names what is wrong (`every`, `cron`, `driftShare`, …). */
export class DataScheduleInputError extends Error {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}
/** A schedule of that name exists already. */
export class DataScheduleExistsError extends Error {}
/** No schedule of that name. */
export class DataScheduleNotFoundError extends Error {}

/** When checks run: every `every` (a duration such as `1h`, or ms), or at the times of a cron expression (UTC). */
export type DataScheduleTiming = { every: string | number } | { cron: string };

export interface DataScheduleInfo {
  name: string;
  scheduleId: string;
  /** `every 1h` or `cron 0 6 * * *`. */
  timing: string;
  paused: boolean;
  /** The check each run performs (defaults applied). */
  input: DataCheckSettings;
  nextRuns: string[];
  recentRuns: { scheduledAt: string; takenAt: string; workflowId: string; runId: string }[];
}

export interface TriggeredRun {
  workflowId: string;
  runId: string;
  /** The run's result, when waited for. */
  result?: DataCheckResult;
}

const PREFIX = dataScheduleId('');
const SHORTEST_INTERVAL_MS = 1_000;
/** A cron expression of 5 to 7 fields, or a predefined one (`@daily`, `@every 1h`). */
const CRON = /^(@\w+( \S+)?|\S+( \S+){4,6})$/;

interface Memo {
  dataCheck?: { input: DataCheckSettings; timing: string };
}

/**
 * Data pipeline checks on Temporal Schedules (R8): one schedule per pipeline (`data-check-<name>`) starting
 * `dataCheckWorkflow` on the lifecycle task queue.
 *
 * Overlap policy BUFFER_ONE: a check still running when the next is due (a large batch, a slow disk) delays the next
 * one instead of dropping it — SKIP would leave a day's batch unchecked — while at most one waits, so a stuck check
 * never piles up a backlog. A buffered run still checks its own day's batch: `{date}` comes from the time it was
 * scheduled for. Manual triggers use the same policy (the SDK's default for a trigger is ALLOW_ALL), so two checks of
 * one pipeline never report to the router out of order.
 */
export class DataScheduleClient {
  constructor(private readonly client: Client) {}

  /** Creates the pipeline's schedule; the input is validated here, every problem named by its field. */
  async create(input: DataCheckInput, timing: DataScheduleTiming): Promise<DataScheduleInfo> {
    const parsed = DataCheckInput.safeParse(input);
    if (!parsed.success) {
      const first = parsed.error.issues[0]!;
      throw new DataScheduleInputError(
        first.path.length ? first.path.join('.') : 'input',
        parsed.error.issues.map((i) => (i === first ? i.message : `${i.path.join('.')}: ${i.message}`)).join('; '),
      );
    }
    const spec = scheduleSpec(timing);
    const settings = parsed.data;
    const scheduleId = dataScheduleId(settings.name);
    const memo: Memo = { dataCheck: { input: settings, timing: spec.text } };
    try {
      await this.client.schedule.create({
        scheduleId,
        spec: spec.spec,
        action: {
          type: 'startWorkflow',
          workflowType: 'dataCheckWorkflow',
          // The server appends each run's scheduled time to this id.
          workflowId: scheduleId,
          taskQueue: LIFECYCLE_TASK_QUEUE,
          args: [settings],
          staticSummary: cutBytes(
            `data check of ${settings.name}${settings.model ? ` (feeds ${settings.model})` : ''}: ${settings.current}`,
            STATIC_SUMMARY_MAX_BYTES,
          ),
          staticDetails: cutBytes(
            [
              `- **Batch**: \`${settings.current}\` (\`{date}\` is the run's scheduled date)`,
              `- **Reference**: \`${settings.reference}\``,
              ...(settings.pool ? [`- **Quota pool watched**: ${settings.pool}`] : []),
              `- **Schedule**: ${spec.text}; findings go to the alert router (\`mlctl alerts\`)`,
            ].join('\n'),
            STATIC_DETAILS_MAX_BYTES,
          ),
        },
        policies: { overlap: ScheduleOverlapPolicy.BUFFER_ONE },
        memo: memo as Record<string, unknown>,
        state: { note: `data check of ${settings.name} (${spec.text})` },
      });
    } catch (err) {
      if (err instanceof ScheduleAlreadyRunning)
        throw new DataScheduleExistsError(`a data check schedule "${settings.name}" exists already (${scheduleId})`);
      // The server's own check of the spec (a cron expression it cannot parse).
      if (err instanceof TypeError && 'cron' in timing) throw new DataScheduleInputError('cron', err.message);
      throw err;
    }
    return this.describe(settings.name);
  }

  /** The pipeline's schedule: its check, timing, next and recent runs. */
  async describe(name: string): Promise<DataScheduleInfo> {
    return infoOf(await this.found(name, (h) => h.describe()));
  }

  /** Every data check schedule, by name. Listing is eventually consistent: a schedule just created may lag. */
  async list(): Promise<DataScheduleInfo[]> {
    const out: DataScheduleInfo[] = [];
    for await (const s of this.client.schedule.list()) {
      if (s.scheduleId.startsWith(PREFIX) && (s.memo as Memo | undefined)?.dataCheck) out.push(infoOf(s));
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Runs the check now (as the schedule would; a run already going delays it). Answers the run once it started
   * (null when it did not start within `startTimeoutMs`), and with `wait` its result.
   */
  async trigger(name: string, options: { wait?: boolean; startTimeoutMs?: number } = {}): Promise<TriggeredRun | null> {
    const before = await this.found(name, (h) => h.describe());
    const seen = new Set(before.info.recentActions.map((a) => a.action.workflow.firstExecutionRunId));
    await this.found(name, (h) => h.trigger(ScheduleOverlapPolicy.BUFFER_ONE));
    const deadline = Date.now() + (options.startTimeoutMs ?? (options.wait ? 600_000 : 10_000));
    for (;;) {
      const now = await this.found(name, (h) => h.describe());
      const started = now.info.recentActions.find((a) => !seen.has(a.action.workflow.firstExecutionRunId));
      if (started) {
        const { workflowId, firstExecutionRunId: runId } = started.action.workflow;
        if (!options.wait) return { workflowId, runId };
        const result = await this.client.workflow.getHandle(workflowId, runId).result();
        return { workflowId, runId, result: result as DataCheckResult };
      }
      if (Date.now() > deadline) return null;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Deletes the pipeline's schedule (a check already running finishes). */
  async delete(name: string): Promise<void> {
    await this.found(name, (h) => h.delete());
  }

  private async found<T>(
    name: string,
    call: (h: ReturnType<Client['schedule']['getHandle']>) => Promise<T>,
  ): Promise<T> {
    const valid = DataPipelineName.safeParse(name);
    if (!valid.success) throw new DataScheduleInputError('name', `"${name}": ${valid.error.issues[0]?.message}`);
    try {
      return await call(this.client.schedule.getHandle(dataScheduleId(name)));
    } catch (err) {
      if (err instanceof ScheduleNotFoundError)
        throw new DataScheduleNotFoundError(`no data check schedule "${name}" (${dataScheduleId(name)})`);
      throw err;
    }
  }
}

/** The schedule spec of a timing, checked before the server sees it. */
export function scheduleSpec(timing: DataScheduleTiming): {
  spec: { intervals: { every: number }[] } | { cronExpressions: string[] };
  text: string;
} {
  if ('every' in timing) {
    const checked = typeof timing.every === 'number' ? null : checkDuration(timing.every, { positive: true });
    const ms = typeof timing.every === 'number' ? timing.every : checked?.ok ? checked.ms : undefined;
    if (ms === undefined || !Number.isInteger(ms) || ms < SHORTEST_INTERVAL_MS || ms > MAX_DURATION_MS)
      throw new DataScheduleInputError(
        'every',
        `"${timing.every}" is not a duration of at least 1s and at most 365d (e.g. 30m, 1h, 1d)`,
      );
    return { spec: { intervals: [{ every: ms }] }, text: `every ${formatDurationMs(ms)}` };
  }
  const cron = timing.cron.trim().replace(/\s+/g, ' ');
  if (!CRON.test(cron))
    throw new DataScheduleInputError(
      'cron',
      `"${timing.cron}" is not a cron expression (5 fields: minute hour day-of-month month day-of-week, e.g. "0 6 * * *")`,
    );
  return { spec: { cronExpressions: [cron] }, text: `cron ${cron}` };
}

function infoOf(s: ScheduleDescription | ScheduleSummary): DataScheduleInfo {
  const memo = (s.memo as Memo | undefined)?.dataCheck;
  // A description carries the action's arguments; a listing only the memo.
  const args = (s.action as { args?: unknown[] } | undefined)?.args;
  const input = (args?.[0] ?? memo?.input) as DataCheckSettings;
  return {
    name: s.scheduleId.slice(PREFIX.length),
    scheduleId: s.scheduleId,
    timing: memo?.timing ?? '',
    paused: s.state.paused,
    input,
    nextRuns: s.info.nextActionTimes.map((d) => d.toISOString()),
    recentRuns: s.info.recentActions.map((a) => ({
      scheduledAt: a.scheduledAt.toISOString(),
      takenAt: a.takenAt.toISOString(),
      workflowId: a.action.workflow.workflowId,
      runId: a.action.workflow.firstExecutionRunId,
    })),
  };
}
