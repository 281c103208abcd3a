import { describe, expect, it } from 'vitest';
import { IncidentBook } from '../../src/domain/incidents';
import type { Hysteresis } from '../../src/shared/alerts';

const H: Hysteresis = { fireAfter: 3, window: 5, resolveAfter: 3 };

/** Feeds a sequence of checks (1 bad, 0 good, null inconclusive) and answers the events, with the check's index. */
function run(book: IncidentBook, checks: (0 | 1 | null)[], key = 'serving:m:prediction-drift', h = H) {
  return checks.flatMap((c, i) => {
    const ev = book.observe({ key, firing: c === null ? null : c === 1, severity: 'warning', hysteresis: h });
    return ev ? [{ i, ...ev }] : [];
  });
}

describe('incident hysteresis (M of N to fire, K in a row to resolve)', () => {
  it('fires once when 3 of the last 5 checks are bad, and resolves after 3 good ones in a row', () => {
    const book = new IncidentBook();
    const events = run(book, [1, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0]);
    expect(events.map((e) => [e.i, e.type, e.incident])).toEqual([
      [3, 'fire', 'serving:m:prediction-drift#1'],
      [10, 'resolve', 'serving:m:prediction-drift#1'],
    ]);
  });

  it('does not fire on a signal flapping below the rule', () => {
    const book = new IncidentBook();
    // At most 2 bad checks in any 5 in a row.
    expect(run(book, [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1])).toEqual([]);
    // The same flapping fires under a looser rule (2 of 5): the rule, not luck, kept it quiet.
    expect(run(new IncidentBook(), [1, 0, 0, 1], 'k', { fireAfter: 2, window: 5, resolveAfter: 3 })).toHaveLength(1);
  });

  it('numbers each new incident of a condition and starts a fresh window after a resolve', () => {
    const book = new IncidentBook();
    const events = run(book, [1, 1, 1, 0, 0, 0, 1, 1, 0, 1]);
    expect(events.map((e) => [e.type, e.incident])).toEqual([
      ['fire', 'serving:m:prediction-drift#1'],
      ['resolve', 'serving:m:prediction-drift#1'],
      ['fire', 'serving:m:prediction-drift#2'],
    ]);
  });

  it('ignores inconclusive checks: they neither fire nor break a run of good ones', () => {
    const book = new IncidentBook();
    const events = run(book, [1, null, 1, null, 1, 0, null, 0, null, 0]);
    expect(events.map((e) => [e.i, e.type])).toEqual([
      [4, 'fire'],
      [9, 'resolve'],
    ]);
  });

  it('escalates an open incident when a check reports a higher severity, once', () => {
    const book = new IncidentBook();
    run(book, [1, 1, 1]);
    const up = book.observe({ key: 'serving:m:prediction-drift', firing: true, severity: 'critical', hysteresis: H });
    expect(up).toMatchObject({ type: 'escalate', severity: 'critical' });
    expect(
      book.observe({ key: 'serving:m:prediction-drift', firing: true, severity: 'critical', hysteresis: H }),
    ).toBeNull();
  });

  it('keeps its state across continue-as-new', () => {
    const book = new IncidentBook();
    run(book, [1, 1]);
    const carried = new IncidentBook(structuredClone(book.state()));
    expect(run(carried, [1]).map((e) => e.type)).toEqual(['fire']);
  });

  it('falls back to 3 of 5 when a monitor sends an impossible rule', () => {
    const book = new IncidentBook();
    const events = run(book, [1, 1, 1], 'k', { fireAfter: 6, window: 5, resolveAfter: 0 });
    expect(events.map((e) => [e.i, e.type])).toEqual([[2, 'fire']]);
  });

  it('deduplicates a raised alert raised again, escalates it, resolves it once, and lets its key open a new one', () => {
    const book = new IncidentBook();
    const alert = { dedupKey: 'quota:gpu:cpu:usage', severity: 'warning' as const };
    expect(book.raise(alert)).toMatchObject({ type: 'fire', incident: 'quota:gpu:cpu:usage' });
    expect(book.raise(alert)).toBeNull();
    expect(book.raise({ ...alert, severity: 'critical' })).toMatchObject({ type: 'escalate', severity: 'critical' });
    expect(book.raise({ ...alert, severity: 'warning' })).toBeNull();
    expect(book.raise({ ...alert, resolved: true })).toMatchObject({ type: 'resolve' });
    expect(book.raise({ ...alert, resolved: true })).toBeNull();
    const carried = new IncidentBook(structuredClone(book.state()));
    expect(carried.raise(alert)).toMatchObject({ type: 'fire' });
    // A one-off alert (never resolved) stays a duplicate.
    expect(carried.raise({ dedupKey: 'lifecycle-m-v1:rollback:1', severity: 'warning' })).toMatchObject({
      type: 'fire',
    });
    expect(carried.raise({ dedupKey: 'lifecycle-m-v1:rollback:1', severity: 'warning' })).toBeNull();
  });
});
