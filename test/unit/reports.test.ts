import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { trafficFromHistory } from '../../src/client/lifecycle-record';
import { buildProfile, columnsFromArrays, distributionsOf, judge, observeData } from '../../src/drift';
import { dataCheckPage } from '../../src/reports/data-check';
import { embedJson, reportHtml } from '../../src/reports/html';

describe('report pages', () => {
  it('embeds data as JSON no markup can break out of, and reads it back unchanged', () => {
    const data = { name: '</script><img src=x onerror=alert(1)>', reason: '<!-- & -->', line: 'a\u2028b' };
    const json = embedJson(data);
    expect(json).not.toMatch(/[<>&\u2028]/);
    expect(JSON.parse(json)).toEqual(data);
    const html = reportHtml({ title: 'T', data, script: 'void 0;', withoutChartJs: true });
    // One data element, ended where the page ends it; the CSP allows the page's own script by hash, nothing else.
    expect(html.match(/<\/script>/g)).toHaveLength(2);
    expect(html).toMatch(/script-src 'sha256-[A-Za-z0-9+/]+=*'; /);
    expect(html).toContain("default-src 'none'");
  });

  it('plots each compared feature on the reference bins and lists the drifted ones first', async () => {
    const n = 400;
    const ref = columnsFromArrays({
      steady: Array.from({ length: n }, (_, i) => i % 50),
      moved: Array.from({ length: n }, (_, i) => i % 50),
      plan: Array.from({ length: n }, (_, i) => (i % 2 ? 'a' : 'b')),
    });
    const cur = columnsFromArrays({
      steady: Array.from({ length: n }, (_, i) => (i * 7) % 50),
      moved: Array.from({ length: n }, (_, i) => 40 + (i % 50)),
      plan: Array.from({ length: n }, (_, i) => (i % 10 === 0 ? '<b>new</b>' : i % 2 ? 'a' : 'b')),
    });
    const reference = await buildProfile(ref, { workers: 0 });
    const seen = await observeData(reference, cur, { workers: 0 });
    const distributions = distributionsOf(reference.profile, seen.observations);
    const plan = distributions.find((d) => d.name === 'plan')!;
    expect(plan.labels).toEqual(['a', 'b', '(unseen) <b>new</b>']);
    expect(plan.current.reduce((a, b) => a + b, 0)).toBe(n);
    const moved = distributions.find((d) => d.name === 'moved')!;
    expect(moved.labels).toHaveLength(moved.reference.length);
    expect(moved.labels[0]).toMatch(/^\(-inf, /);

    const report = judge(reference.profile, seen.observations, seen.current, {});
    const page = dataCheckPage(report, distributions);
    expect(page.features.map((f) => [f.name, f.drifted])).toEqual([
      ['moved', true],
      ['plan', true],
      ['steady', false],
    ]);
    // Shares in percent, per side.
    expect(page.features[0]!.distribution!.reference.reduce((a, b) => a + b, 0)).toBeCloseTo(100, 3);
    expect(page.features[1]!.problems.map((p) => p.kind)).toEqual(['out-of-domain']);
  });
});

describe('traffic from a lifecycle history', () => {
  type Event = temporal.api.history.v1.IHistoryEvent;
  const at = (s: number) => ({ seconds: s, nanos: 500_000_000 }) as unknown as Event['eventTime'];
  const scheduled = (eventId: number, input: unknown, name = 'setTrafficWeights'): Event => ({
    eventId: eventId as unknown as Event['eventId'],
    eventTime: at(eventId),
    activityTaskScheduledEventAttributes: {
      activityType: { name },
      input: { payloads: [defaultPayloadConverter.toPayload(input)] },
    },
  });
  const completed = (eventId: number, scheduledEventId: number): Event => ({
    eventId: eventId as unknown as Event['eventId'],
    eventTime: at(eventId),
    activityTaskCompletedEventAttributes: {
      scheduledEventId: scheduledEventId as unknown as Event['eventId'],
    },
  });

  it("reads the candidate's share of each completed weight change of the model, at its completion", () => {
    const nginx = { kind: 'nginx', name: 'edge' };
    const events: Event[] = [
      {
        eventId: 0 as unknown as Event['eventId'],
        workflowExecutionStartedEventAttributes: {
          input: { payloads: [defaultPayloadConverter.toPayload({ spec: { deployment: { target: nginx } } })] },
        },
      },
      scheduled(1, { model: 'churn', target: nginx, weights: { v2: 10, v1: 90 }, opId: 'a' }),
      completed(2, 1),
      // Staging: a route of its own, or the same model name on a target of its own.
      scheduled(3, { model: 'churn-staging', target: nginx, weights: { v2: 100 }, opId: 'b' }),
      completed(4, 3),
      scheduled(5, { model: 'churn', weights: { v2: 100 }, opId: 'b2' }),
      completed(6, 5),
      scheduled(10, { model: 'churn', target: nginx }, 'readTelemetry'),
      completed(11, 10),
      // Never completed: it changed nothing the lifecycle relied on.
      scheduled(7, { model: 'churn', target: nginx, weights: { v2: 50, v1: 50 }, opId: 'c' }),
      scheduled(8, { model: 'churn', target: nginx, weights: { v1: 100 }, opId: 'd' }),
      completed(9, 8),
    ];
    expect(trafficFromHistory({ events }, 'churn', 'v2')).toEqual([
      { at: new Date(2_500).toISOString(), percent: 10, weights: 'v1 90%, v2 10%' },
      { at: new Date(9_500).toISOString(), percent: 0, weights: 'v1 100%' },
    ]);
  });
});
