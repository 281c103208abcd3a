import { ApplicationFailure } from '@temporalio/common';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Alert, Observation } from '../../src/shared/alerts';
import { ErrorType } from '../../src/shared/errors';
import { AlertDesk, HISTORY_CARRIED, type AlertDeskDeps } from '../../src/workflows/alert-router-state';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const GROUP_WAIT_MS = 10_000;

function check(firing: boolean, extra: Partial<Observation> = {}): Observation {
  return {
    key: 'serving:churn:prediction-drift',
    kind: 'prediction-drift',
    severity: 'warning',
    firing,
    summary: firing ? 'PSI 0.4 > 0.2' : 'PSI 0.05',
    model: 'churn',
    version: 'v2',
    hysteresis: { fireAfter: 1, window: 1, resolveAfter: 1 },
    at: new Date().toISOString(),
    ...extra,
  };
}

function deskWith(acting: Awaited<ReturnType<AlertDeskDeps['rolloutActing']>> = null) {
  const rolloutActing = vi.fn(async (_model: string) => acting);
  return { desk: new AlertDesk(undefined, GROUP_WAIT_MS, { rolloutActing }), rolloutActing };
}

function refusalOf(f: () => unknown): ApplicationFailure {
  try {
    f();
  } catch (err) {
    if (err instanceof ApplicationFailure) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

const INCIDENT = 'serving:churn:prediction-drift#1';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(T0);
});
afterEach(() => vi.useRealTimers());

describe('AlertDesk observations', () => {
  it('fires an incident, notifies its group after the group wait and schedules the action after its delay', async () => {
    const { desk, rolloutActing } = deskWith(null);
    await desk.observe(check(true, { action: 'rollback', actionDelayMs: 60_000 }));

    expect(rolloutActing).toHaveBeenCalledWith('churn');
    expect([...desk.incidents.keys()]).toEqual([INCIDENT]);
    expect(desk.incidents.get(INCIDENT)!.info.state).toBe('firing');
    expect(desk.history.map((h) => h.event)).toEqual(['fired', 'action-scheduled']);
    expect(desk.deadlines().sort()).toEqual([T0 + GROUP_WAIT_MS, T0 + 60_000]);
    expect(desk.dueGroups(T0 + GROUP_WAIT_MS - 1)).toEqual([]);
    const [group] = desk.dueGroups(T0 + GROUP_WAIT_MS);
    expect(group!.map((a) => a.dedupKey)).toEqual([INCIDENT]);
    expect(desk.groups.size).toBe(0);
    expect(desk.dueActions(T0 + 60_000)).toEqual([[INCIDENT, { kind: 'rollback', dueAt: T0 + 60_000 }]]);
    expect(desk.actions.size).toBe(0);
  });

  it('keeps an incident of a silenced model quiet without asking whether a rollout acts on it', async () => {
    const { desk, rolloutActing } = deskWith({ lifecycleId: 'lc-1', stage: 'canary' });
    desk.silence({ model: 'churn', forMs: 3_600_000, by: 'alice', reason: 'maintenance' }, null);
    await desk.observe(check(true, { action: 'hold' }));

    expect(rolloutActing).not.toHaveBeenCalled();
    expect(desk.incidents.get(INCIDENT)!.info.state).toBe('suppressed');
    expect(desk.history.at(-1)).toMatchObject({ event: 'suppressed', incident: INCIDENT });
    expect(desk.history.at(-1)!.summary).toContain('silenced by alice');
    expect(desk.groups.size).toBe(0);
    expect(desk.actions.size).toBe(0);
  });

  it('asks again whether the rollout still acts only after the recheck interval, then fires', async () => {
    const { desk, rolloutActing } = deskWith({ lifecycleId: 'lc-1', stage: 'canary' });
    await desk.observe(check(true));
    expect(desk.incidents.get(INCIDENT)!.info.state).toBe('suppressed');

    rolloutActing.mockResolvedValue(null);
    vi.setSystemTime(T0 + 5_000);
    await desk.observe(check(true));
    expect(rolloutActing).toHaveBeenCalledTimes(1);
    expect(desk.incidents.get(INCIDENT)!.info.state).toBe('suppressed');

    vi.setSystemTime(T0 + 15_000);
    await desk.observe(check(true));
    expect(rolloutActing).toHaveBeenCalledTimes(2);
    expect(desk.incidents.get(INCIDENT)!.info.state).toBe('firing');
    expect(desk.history.at(-1)!.summary).toBe('PSI 0.4 > 0.2 (no longer suppressed)');
  });

  it('resolves a notified incident with a resolve message and drops its pending action', async () => {
    const { desk } = deskWith(null);
    await desk.observe(check(true, { action: 'hold', actionDelayMs: 60_000 }));
    await desk.observe(check(false));

    expect(desk.incidents.size).toBe(0);
    expect(desk.actions.size).toBe(0);
    expect(desk.history.at(-1)).toMatchObject({ event: 'resolved', summary: 'resolved: PSI 0.05' });
    const [group] = desk.dueGroups(T0 + GROUP_WAIT_MS);
    expect(group!.map((a) => [a.dedupKey, a.resolved ?? false])).toEqual([
      [INCIDENT, false],
      [INCIDENT, true],
    ]);
  });
});

describe('AlertDesk raised alerts', () => {
  const alert: Alert = {
    kind: 'lifecycle-failed',
    severity: 'warning',
    model: 'churn',
    summary: 'training failed',
    dedupKey: 'lifecycle:churn:v2:failed',
  };

  it('sends an approval request alone and at once, and groups other alerts per model', async () => {
    const { desk } = deskWith();
    await desk.raise(alert);
    expect(desk.wake).toBe(false);
    await desk.raise({ ...alert, kind: 'approval-requested', dedupKey: 'gate:churn:v2:deploy' });
    expect(desk.wake).toBe(true);
    expect([...desk.groups.keys()]).toEqual(['model:churn', 'now:gate:churn:v2:deploy']);
    expect(desk.dueGroups(T0).map((g) => g.map((a) => a.kind))).toEqual([['approval-requested']]);
  });

  it('records a duplicate once and an escalation as fired again', async () => {
    const { desk } = deskWith();
    await desk.raise(alert);
    await desk.raise(alert);
    await desk.raise({ ...alert, severity: 'critical' });
    expect(desk.history.map((h) => h.summary)).toEqual(['training failed', 'escalated to critical: training failed']);
  });
});

describe('AlertDesk overrides', () => {
  async function withPending(options: Partial<Observation> = {}) {
    const { desk } = deskWith(null);
    await desk.observe(check(true, { action: 'hold', actionDelayMs: 60_000, ...options }));
    return desk;
  }

  it('refuses an override of an unknown incident, of one without a pending action, and a retrain without a spec', async () => {
    const desk = await withPending();
    const unknown = refusalOf(() => desk.checkOverride({ incident: 'nope#1', action: 'notify', by: 'alice' }));
    expect(unknown.type).toBe(ErrorType.Refused);
    expect(unknown.message).toBe('override: no open incident "nope#1"');
    const retrain = refusalOf(() => desk.checkOverride({ incident: INCIDENT, action: 'retrain', by: 'alice' }));
    expect(retrain.message).toBe(`override: incident "${INCIDENT}" has no spec to retrain from`);
    desk.override(desk.checkOverride({ incident: INCIDENT, action: 'notify', by: 'alice' }), null);
    const none = refusalOf(() => desk.checkOverride({ incident: INCIDENT, action: 'hold', by: 'alice' }));
    expect(none.message).toContain('has no pending action');
    const bad = refusalOf(() => desk.checkOverride({ incident: INCIDENT, action: 'explode', by: 'alice' }));
    expect(bad.type).toBe(ErrorType.InvalidInput);
  });

  it('cancels the pending action with notify, and runs another action now', async () => {
    const desk = await withPending();
    vi.setSystemTime(T0 + 1_000);
    const ack = desk.override(desk.checkOverride({ incident: INCIDENT, action: 'rollback', by: 'bob' }), 'k1');
    expect(ack).toEqual({ incident: INCIDENT, was: 'hold', now: 'rollback', at: new Date(T0 + 1_000).toISOString() });
    expect(desk.wake).toBe(true);
    expect(desk.dueActions(T0 + 1_000)).toEqual([[INCIDENT, { kind: 'rollback', dueAt: T0 + 1_000, by: 'bob' }]]);
    expect(desk.history.at(-1)).toMatchObject({ event: 'action-overridden', summary: 'hold → rollback', keyId: 'k1' });

    const other = await withPending();
    other.override(other.checkOverride({ incident: INCIDENT, action: 'notify', by: 'bob', reason: 'known' }), null);
    expect(other.actions.size).toBe(0);
    expect(other.history.at(-1)!.summary).toBe('hold → notify: known');
  });
});

describe('AlertDesk silences, query and carried state', () => {
  it('lifts a silence with forMs 0 and answers the silence it lifted', () => {
    const { desk } = deskWith();
    const set = desk.silence({ model: 'churn', forMs: 60_000, by: 'alice' }, null);
    expect(set).toEqual({ model: 'churn', until: new Date(T0 + 60_000).toISOString(), by: 'alice', reason: '' });
    expect(desk.silence({ model: 'churn', forMs: 0, by: 'alice' }, 'k2')).toEqual(set);
    expect(desk.silences.size).toBe(0);
    expect(desk.history.map((h) => [h.event, h.keyId])).toEqual([
      ['silenced', undefined],
      ['unsilenced', 'k2'],
    ]);
  });

  it("shows one model's incidents with their pending action, and refuses a malformed query", async () => {
    const { desk } = deskWith(null);
    await desk.observe(check(true, { action: 'hold', actionDelayMs: 60_000 }));
    await desk.observe(check(true, { key: 'serving:fraud:latency', kind: 'serving-latency', model: 'fraud' }));
    const view = desk.view({ model: 'churn' });
    expect(view.open.map((o) => [o.incident, o.action])).toEqual([
      [INCIDENT, { kind: 'hold', dueAt: new Date(T0 + 60_000).toISOString() }],
    ]);
    expect(view.history.every((h) => h.model === 'churn')).toBe(true);
    expect(desk.view({ limit: 1 }).history).toHaveLength(1);
    expect(refusalOf(() => desk.view({ limit: 0 })).type).toBe(ErrorType.InvalidInput);
  });

  it('carries plain JSON across continue-as-new, with the newest history entries only', async () => {
    const { desk } = deskWith(null);
    await desk.observe(check(true, { action: 'hold', actionDelayMs: 60_000 }));
    desk.silence({ model: 'fraud', forMs: 60_000, by: 'alice' }, null);
    for (let i = 0; i < HISTORY_CARRIED; i++) desk.record({ event: 'delivered', summary: `entry ${i}` });
    desk.inbox.push({ observations: [check(false)] });
    desk.learnResendMs([{ resendMs: 30_000 }], false);

    const carried = desk.carried();
    expect(JSON.parse(JSON.stringify(carried))).toEqual(carried);
    expect(carried.history).toHaveLength(HISTORY_CARRIED);
    expect(carried.history.at(-1)!.seq).toBe(desk.seq);

    const next = new AlertDesk(carried, GROUP_WAIT_MS, { rolloutActing: async () => null });
    expect(next.view(undefined).open.map((o) => o.incident)).toEqual([INCIDENT]);
    expect(next.resendMs).toBe(30_000);
    next.keepResends(false);
    expect(next.resendMs).toBeUndefined();
    next.record({ event: 'delivered', summary: 'after' });
    expect(next.history.at(-1)!.seq).toBe(desk.seq + 1);
    // The same condition keeps counting in the carried book: a good check resolves the carried incident.
    const item = next.inbox.shift()!;
    expect('observations' in item).toBe(true);
    if ('observations' in item) await next.observe(item.observations[0]!);
    expect(next.incidents.size).toBe(0);
  });

  it('shrinks the re-send interval on notifications and takes a re-send routing as the whole answer', () => {
    const { desk } = deskWith();
    desk.learnResendMs([{ resendMs: 60_000 }], false);
    desk.learnResendMs([{ resendMs: 120_000 }, {}], false);
    expect(desk.resendMs).toBe(60_000);
    desk.learnResendMs([{ resendMs: 120_000 }], true);
    expect(desk.resendMs).toBe(120_000);
    desk.learnResendMs([], true);
    expect(desk.resendMs).toBeUndefined();
  });
});
