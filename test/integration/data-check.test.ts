import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DataScheduleClient,
  DataScheduleExistsError,
  DataScheduleInputError,
  DataScheduleNotFoundError,
} from '../../src/client/data-schedules';
import { QuotaClient } from '../../src/client/quota-client';
import { buildProfile, readData, saveProfile } from '../../src/drift';
import type { AlertRecord } from '../../src/shared/alerts';
import { dataScheduleId, type DataCheckInput, type DataCheckResult } from '../../src/shared/data-check';
import { ErrorType } from '../../src/shared/errors';
import { ALERT_ROUTER_WORKFLOW_ID, alertRouterQuery } from '../../src/shared/monitoring';
import { QuotaPoolsFile, type QuotaPoolConfigInput } from '../../src/shared/quota';
import { LIFECYCLE_TASK_QUEUE } from '../../src/shared/task-queues';
import { EXAMPLE, startStack, uniqueName, type Stack } from '../helpers/harness';
import { tempDir } from '../helpers/temp';

const TEST = join(EXAMPLE, 'data', 'test.csv');
const POOL: QuotaPoolConfigInput = { name: uniqueName('etl'), capacity: { cpu: 10, memoryGiB: 40 } };
/** Long enough that no check fires by itself during the test: every run here is a trigger. */
const NEVER_BY_ITSELF = { every: '100d' };

/** The example's test rows, changed: monthly charges raised 30% and some ages unreadable. */
function batch(file: string, change: { drift?: boolean; wrongType?: boolean } = {}): void {
  const [header, ...rows] = readFileSync(TEST, 'utf8').trim().split('\n');
  const cols = header!.split(',');
  const at = (name: string) => cols.indexOf(name);
  const out = rows.slice(0, 400).map((line, i) => {
    const cells = line.split(',');
    if (change.drift) cells[at('monthly_charges')] = (Number(cells[at('monthly_charges')]) * 1.3).toFixed(2);
    if (change.wrongType && i % 50 === 0) cells[at('age')] = 'unknown';
    return cells.join(',');
  });
  writeFileSync(file, `${header}\n${out.join('\n')}\n`);
}

/**
 * Data pipeline checks on real Temporal Schedules (R8): each trigger starts `dataCheckWorkflow` on the stack's
 * workers, which checks the day's batch against the training profile and reports to the alert router; the router
 * fires and resolves incidents per pipeline and condition, and delivers them to the stack's sink.
 */
describe('scheduled data checks', () => {
  let stack: Stack;
  let schedules: DataScheduleClient;
  const dir = tempDir('mll-data-check-');
  const profile = join(dir, 'profile.json');
  const created: string[] = [];

  beforeAll(async () => {
    stack = await startStack({ pools: [POOL] });
    schedules = new DataScheduleClient(stack.client);
    const train = await readData(join(EXAMPLE, 'data', 'train.csv'));
    await saveProfile(await buildProfile(train, { label: 'churned' }), profile);
  });
  afterAll(async () => {
    for (const name of created) await schedules.delete(name).catch(() => undefined);
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const history = async (name: string, event?: AlertRecord['event'], kind?: string) =>
    (await stack.client.workflow.getHandle(ALERT_ROUTER_WORKFLOW_ID).query(alertRouterQuery, { limit: 1000 })).history
      .filter((h) => h.incident?.startsWith(`data:${name}:`))
      .filter((h) => (event === undefined || h.event === event) && (kind === undefined || h.kind === kind));
  const delivered = (name: string, kind: string, resolved = false) =>
    stack.alerts.filter(
      (a) => a.dedupKey.startsWith(`data:${name}:${kind}#`) && a.kind === kind && Boolean(a.resolved) === resolved,
    );
  const create = async (input: DataCheckInput) => {
    created.push(input.name);
    return schedules.create(input, NEVER_BY_ITSELF);
  };
  /** The batch of the day a run triggered now checks (and of the days around it, in case the date turns meanwhile). */
  const dayBatches = (template: string) => {
    const day = 86_400_000;
    return [-day, 0, day].map((d) => template.replace('{date}', new Date(Date.now() + d).toISOString().slice(0, 10)));
  };

  it('fires data-drift and data-types once for a bad batch, resolves both on a clean one, and alerts each', async () => {
    const name = uniqueName('churn-batches');
    const template = join(dir, `${name}-{date}.csv`);
    const write = (change: Parameters<typeof batch>[1]) => dayBatches(template).forEach((f) => batch(f, change));
    write({ drift: true, wrongType: true });
    const model = uniqueName('churn');
    const info = await create({ name, reference: profile, current: template, model });
    expect(info).toMatchObject({ scheduleId: dataScheduleId(name), timing: 'every 100d' });
    expect(info.input).toMatchObject({ current: template, driftShare: 0.5, hysteresis: { fireAfter: 1 } });
    await expect(create({ name, reference: profile, current: template })).rejects.toBeInstanceOf(
      DataScheduleExistsError,
    );

    const started = Date.now();
    const bad = await schedules.trigger(name, { wait: true });
    const checkedInMs = Date.now() - started;
    expect(bad!.workflowId.startsWith(dataScheduleId(name))).toBe(true);
    const today = new Date().toISOString().slice(0, 10);
    // `{date}` is the run's scheduled date (the trigger's, UTC).
    expect([today, new Date(started).toISOString().slice(0, 10)]).toContain(bad!.result!.date);
    expect(bad!.result!.current).toBe(template.replace('{date}', bad!.result!.date));
    expect(bad!.result).toMatchObject({
      firing: ['data-drift', 'data-types'],
      driftedFeatures: expect.arrayContaining(['monthly_charges']) as string[],
    });
    expect(bad!.result!.observations.find((o) => o.kind === 'label-drift')!.firing).toBe(false);
    await expect.poll(() => delivered(name, 'data-drift').length, { timeout: 15_000, interval: 100 }).toBe(1);
    await expect.poll(() => delivered(name, 'data-types').length, { timeout: 15_000, interval: 100 }).toBe(1);
    const firedInMs = Date.now() - started;
    const drift = delivered(name, 'data-drift')[0]!;
    expect(drift).toMatchObject({ severity: 'warning', model, dedupKey: `data:${name}:data-drift#1` });
    expect(drift.summary).toMatch(/monthly_charges \(ks [\d.]+, p [\d.e-]+\)/);
    expect(delivered(name, 'data-types')[0]!.summary).toMatch(
      /1 data-type problem\(s\): wrong-type ×1 \(age: 8 value\(s\) that are not numbers, e\.g\. "unknown"/,
    );
    expect((await history(name, 'fired')).map((h) => h.incident).sort()).toEqual([
      `data:${name}:data-drift#1`,
      `data:${name}:data-types#1`,
    ]);
    console.log(`data check: trigger → run done in ${checkedInMs} ms, both alerts delivered in ${firedInMs} ms`);

    // The same bad batch again: still one incident each.
    await schedules.trigger(name, { wait: true });
    write({});
    const cleanStarted = Date.now();
    const good = await schedules.trigger(name, { wait: true });
    expect(good!.result).toMatchObject({ firing: [], driftShare: 0, problems: [] });
    await expect.poll(() => delivered(name, 'data-drift', true).length, { timeout: 15_000, interval: 100 }).toBe(1);
    await expect.poll(() => delivered(name, 'data-types', true).length, { timeout: 15_000, interval: 100 }).toBe(1);
    console.log(`data check: clean batch → both resolves delivered in ${Date.now() - cleanStarted} ms`);
    expect(await history(name, 'fired')).toHaveLength(2);
    expect((await history(name, 'resolved')).map((h) => h.incident).sort()).toEqual([
      `data:${name}:data-drift#1`,
      `data:${name}:data-types#1`,
    ]);
    expect(delivered(name, 'data-drift')).toHaveLength(1);
    expect(stack.alerts.filter((a) => a.dedupKey.startsWith(`data:${name}:label-drift`))).toEqual([]);

    // The day's batch missing: an observation (data-types fires with the error), not a failed run.
    dayBatches(template).forEach((f) => rmSync(f));
    const missing = await schedules.trigger(name, { wait: true });
    expect(missing!.result).toMatchObject({ firing: ['data-types'], driftShare: null });
    expect(missing!.result!.error).toMatch(/cannot read the file: ENOENT/);
    await expect.poll(() => delivered(name, 'data-types').length, { timeout: 15_000, interval: 100 }).toBe(2);
    expect(delivered(name, 'data-types')[1]).toMatchObject({
      dedupKey: `data:${name}:data-types#2`,
      summary: expect.stringMatching(/cannot read the batch: .*ENOENT/) as string,
    });

    await expect
      .poll(async () => (await schedules.list()).some((s) => s.name === name), { timeout: 10_000 })
      .toBe(true);
    await schedules.delete(name);
    await expect(schedules.trigger(name)).rejects.toBeInstanceOf(DataScheduleNotFoundError);
    await expect(schedules.delete(name)).rejects.toBeInstanceOf(DataScheduleNotFoundError);
  });

  it("fires data-quota-rate when the pool's burn says it runs out within the horizon", async () => {
    const name = uniqueName('etl-batches');
    const file = join(dir, `${name}.csv`);
    batch(file);
    await create({ name, reference: profile, current: file, pool: POOL.name, quotaHorizon: '1h' });
    const quota = new QuotaClient(stack.client, QuotaPoolsFile.parse({ pools: [POOL] }));

    // Nothing held: usage steady.
    const idle = await schedules.trigger(name, { wait: true });
    expect(idle!.result!.observations.find((o) => o.kind === 'data-quota-rate')).toMatchObject({
      firing: false,
      summary: expect.stringMatching(/usage steady \(cpu 0%, memoryGiB 0%\)$/) as string,
    });

    // 8 of 10 cpu taken within the burn window: at that rate the rest goes in minutes.
    await quota.reserve(POOL.name, { leaseId: `${name}-a`, holder: name, kind: 'data', resources: { cpu: 8 } });
    const burning = await schedules.trigger(name, { wait: true });
    expect(burning!.result!.firing).toEqual(['data-quota-rate']);
    await expect.poll(() => delivered(name, 'data-quota-rate').length, { timeout: 15_000, interval: 100 }).toBe(1);
    expect(delivered(name, 'data-quota-rate')[0]).toMatchObject({
      pool: POOL.name,
      summary: expect.stringMatching(/cpu at 80% of 10, runs out in about \d+ min at 32\/h \(limit soon reached\)/),
    });
    await quota.release(POOL.name, { leaseId: `${name}-a` });
    expect(await history(name, 'fired', 'data-quota-rate')).toHaveLength(1);
  });

  it('checks the batch of the day a run was scheduled for, also when it runs later (a backfill)', async () => {
    const name = uniqueName('backfilled');
    await create({ name, reference: profile, current: join(dir, `${name}-{date}.csv`) });
    // The interval's times are multiples of 100 days since the epoch: take the latest one past.
    const every = 100 * 86_400_000;
    const scheduled = new Date(Math.floor(Date.now() / every) * every);
    const day = scheduled.toISOString().slice(0, 10);
    batch(join(dir, `${name}-${day}.csv`), { drift: true });
    await stack.client.schedule
      .getHandle(dataScheduleId(name))
      .backfill({ start: new Date(scheduled.getTime() - 1000), end: new Date(scheduled.getTime() + 1000) });
    const action = await expect
      .poll(
        async () => (await schedules.describe(name)).recentRuns.find((r) => r.scheduledAt === scheduled.toISOString()),
        {
          timeout: 10_000,
        },
      )
      .toBeDefined()
      .then(async () =>
        (await schedules.describe(name)).recentRuns.find((r) => r.scheduledAt === scheduled.toISOString())!,
      );
    const result = (await stack.client.workflow.getHandle(action.workflowId, action.runId).result()) as DataCheckResult;
    expect(result).toMatchObject({ date: day, current: join(dir, `${name}-${day}.csv`), firing: ['data-drift'] });
  });

  it('fails a run without retries, naming the field, on invalid input or options that do not fit the data', async () => {
    const run = (input: unknown) =>
      stack.client.workflow
        .execute('dataCheckWorkflow', {
          taskQueue: LIFECYCLE_TASK_QUEUE,
          workflowId: uniqueName('data-check-invalid'),
          args: [input],
        })
        .catch((err: unknown) => err);
    const bad = await run({ name: 'x', reference: profile, current: TEST, driftShare: 3 });
    expect(bad).toBeInstanceOf(WorkflowFailedError);
    const cause = (bad as WorkflowFailedError).cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect(cause).toMatchObject({ type: ErrorType.InvalidSpec, nonRetryable: true });
    expect(cause!.message).toMatch(/^invalid data check input: driftShare: /);

    const options = await run({
      name: 'y',
      reference: profile,
      current: TEST,
      options: { features: { plan: { direction: 'increase' } } },
    });
    expect((options as WorkflowFailedError).cause).toMatchObject({
      type: ErrorType.InvalidSpec,
      message:
        'invalid data check input: options.features.plan.direction: a direction applies to numeric features only',
    });

    await expect(schedules.create({ name: 'z', reference: profile, current: TEST }, { cron: 'often' })).rejects.toThrow(
      DataScheduleInputError,
    );
    await expect(
      schedules.create({ name: 'z', reference: profile, current: TEST, driftShare: 2 }, NEVER_BY_ITSELF),
    ).rejects.toMatchObject({ field: 'driftShare' });
  });
});
