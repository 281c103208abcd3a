import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import {
  alertmanagerPayload,
  deliverAlert,
  deliverAlerts,
  sinkTakes,
  slackGroupPayload,
  slackPayload,
  webhookPayload,
  type AlertSinkConfig,
} from '../../src/alerts/sinks';
import { loadAlertConfig, loadAlertSinks, routeAlert } from '../../src/config/alert-sinks';
import { InvalidFileError } from '../../src/config/yaml-file';
import type { Alert } from '../../src/shared/alerts';
import { ErrorType } from '../../src/shared/errors';
import { tempDir } from '../helpers/temp';

const NOW = new Date('2025-03-01T12:00:00.000Z');

const rollback: Alert = {
  kind: 'rollback',
  severity: 'critical',
  model: 'churn',
  version: 'v7',
  lifecycleId: 'lc-churn-v7',
  summary: 'canary error rate 4.1% > 1%: rolled back to v6',
  details: { check: 'errorRate', value: 0.041, threshold: 0.01 },
  dedupKey: 'lc-churn-v7:rollback',
};

const quotaResolved: Alert = {
  kind: 'quota-usage-high',
  severity: 'info',
  pool: 'gpu-a100',
  summary: 'gpu:a100 usage back under 80%',
  dedupKey: 'usage:gpu:a100',
  resolved: true,
};

describe('alert payloads', () => {
  it('builds the generic webhook body with every field, null for absent ones', () => {
    expect(webhookPayload(rollback, NOW)).toEqual({
      schemaVersion: 1,
      status: 'firing',
      kind: 'rollback',
      severity: 'critical',
      summary: rollback.summary,
      model: 'churn',
      version: 'v7',
      lifecycleId: 'lc-churn-v7',
      pool: null,
      dedupKey: 'lc-churn-v7:rollback',
      owner: null,
      audience: null,
      details: rollback.details,
      at: '2025-03-01T12:00:00.000Z',
    });
    expect(webhookPayload({ ...rollback, owner: 'churn-team' }, NOW).owner).toBe('churn-team');
    expect(webhookPayload({ ...rollback, audience: ['alice', 'bob'] }, NOW).audience).toEqual(['alice', 'bob']);
    expect(webhookPayload(quotaResolved, NOW)).toMatchObject({
      status: 'resolved',
      model: null,
      version: null,
      lifecycleId: null,
      pool: 'gpu-a100',
      details: {},
    });
  });

  it('builds a Slack message of a header and mrkdwn sections within Block Kit limits', () => {
    const firing = slackPayload(rollback);
    expect(firing.text).toBe('[CRITICAL] rollback (churn v7): canary error rate 4.1% &gt; 1%: rolled back to v6');
    expect(firing.blocks[0]).toEqual({
      type: 'header',
      text: { type: 'plain_text', text: 'CRITICAL: rollback (churn v7)' },
    });
    expect(firing.blocks.slice(1).every((b) => b.type === 'section' && b.text.type === 'mrkdwn')).toBe(true);
    expect(firing.blocks[1]!.text.text).toBe('canary error rate 4.1% &gt; 1%: rolled back to v6');
    expect(firing.blocks[2]!.text.text).toContain('*Model:* churn v7');
    expect(firing.blocks[2]!.text.text).toContain('*Lifecycle:* `lc-churn-v7`');
    expect(firing.blocks[3]!.text.text).toMatch(/^```\{[\s\S]*"errorRate"[\s\S]*\}```$/);

    const resolved = slackPayload(quotaResolved);
    expect(resolved.text).toMatch(/^\[RESOLVED\] quota-usage-high \(gpu-a100\)/);
    expect(resolved.blocks[0]!.text.text).toBe('RESOLVED: quota-usage-high (gpu-a100)');
    expect(resolved.blocks[2]!.text.text).toContain('*Severity:* info (resolved)');
    expect(resolved.blocks).toHaveLength(3);

    const long = slackPayload({ ...rollback, model: 'm'.repeat(300), summary: 's'.repeat(5000) });
    expect(long.blocks[0]!.text.text.length).toBeLessThanOrEqual(150);
    for (const b of long.blocks) expect(b.text.text.length).toBeLessThanOrEqual(3000);
  });

  it('builds Alertmanager v2 postable alerts: labels identify the alert, a resolve ends every severity', () => {
    expect(alertmanagerPayload(rollback, NOW)).toEqual([
      {
        labels: {
          alertname: 'rollback',
          severity: 'critical',
          model: 'churn',
          version: 'v7',
          dedup_key: rollback.dedupKey,
        },
        annotations: {
          summary: rollback.summary,
          lifecycle_id: 'lc-churn-v7',
          details: JSON.stringify(rollback.details),
        },
        startsAt: '2025-03-01T12:00:00.000Z',
      },
    ]);
    const resolved = alertmanagerPayload(quotaResolved, NOW);
    expect(resolved.map((a) => a.labels.severity)).toEqual(['info', 'warning', 'critical']);
    for (const a of resolved) {
      expect(a.labels).toMatchObject({ alertname: 'quota-usage-high', pool: 'gpu-a100', dedup_key: 'usage:gpu:a100' });
      expect(a.labels).not.toHaveProperty('model');
      expect(a.endsAt).toBe('2025-03-01T12:00:00.000Z');
      expect(a.startsAt).toBeUndefined();
      expect(a.annotations).toEqual({ summary: quotaResolved.summary });
    }
  });

  it('gives an open incident endsAt three re-send intervals ahead, so Alertmanager keeps it firing while re-sent', () => {
    const drift: Alert = {
      kind: 'prediction-drift',
      severity: 'warning',
      model: 'churn',
      version: 'v7',
      summary: 'prediction drift PSI 0.31 > 0.2',
      dedupKey: 'serving:churn:prediction-drift#1',
      open: true,
    };
    const [firing] = alertmanagerPayload(drift, NOW, 2000);
    expect(firing).toMatchObject({ startsAt: '2025-03-01T12:00:00.000Z', endsAt: '2025-03-01T12:00:06.000Z' });
    expect(firing!.labels).toEqual({
      alertname: 'prediction-drift',
      severity: 'warning',
      model: 'churn',
      version: 'v7',
      dedup_key: drift.dedupKey,
    });
    // No interval given: the default minute, so 3 minutes ahead.
    expect(alertmanagerPayload(drift, NOW)[0]!.endsAt).toBe('2025-03-01T12:03:00.000Z');
    // Its resolve ends it now, whatever the interval.
    const resolved = alertmanagerPayload({ ...drift, resolved: true }, NOW, 2000);
    expect(resolved.map((a) => a.endsAt)).toEqual(Array(3).fill('2025-03-01T12:00:00.000Z'));
  });

  it('gives a one-off alert no endsAt, as before: Alertmanager resolves it after its resolve_timeout', () => {
    for (const payload of [alertmanagerPayload(rollback, NOW), alertmanagerPayload(rollback, NOW, 2000)]) {
      expect(payload).toHaveLength(1);
      expect(payload[0]).not.toHaveProperty('endsAt');
      expect(payload[0]!.startsAt).toBe('2025-03-01T12:00:00.000Z');
    }
    expect(alertmanagerPayload({ ...rollback, open: false }, NOW, 2000)[0]).not.toHaveProperty('endsAt');
  });

  it("posts an open incident to Alertmanager with endsAt after the sink's own re-send interval", async () => {
    const bodies: { url: string; body: { endsAt?: string; startsAt?: string }[] }[] = [];
    const fetchImpl = (async (url: string, init: { body: string }) => {
      bodies.push({ url, body: JSON.parse(init.body) });
      return new Response('{}', { status: 200 });
    }) as unknown as typeof fetch;
    const sinks: AlertSinkConfig[] = [
      { name: 'am-fast', kind: 'alertmanager', url: 'http://127.0.0.1:1/fast', resendIntervalMs: 5000 },
      { name: 'am-default', kind: 'alertmanager', url: 'http://127.0.0.1:1/default' },
    ];
    await deliverAlerts([{ ...rollback, kind: 'serving-latency', open: true }], sinks, fetchImpl);
    const ahead = (path: string) => {
      const [a] = bodies.find((b) => b.url.endsWith(path))!.body;
      return Date.parse(a!.endsAt!) - Date.parse(a!.startsAt!);
    };
    expect(ahead('/fast')).toBe(15_000);
    expect(ahead('/default')).toBe(180_000);
  });
});

describe('severity filter', () => {
  const sink = (minSeverity?: AlertSinkConfig['minSeverity']): AlertSinkConfig => ({
    name: 's',
    kind: 'webhook',
    url: 'http://127.0.0.1:1/',
    ...(minSeverity ? { minSeverity } : {}),
  });

  it('takes alerts at or above the sink minimum, every alert by default, and every resolve', () => {
    const warning: Alert = { ...rollback, severity: 'warning' };
    expect(sinkTakes(sink(), { ...rollback, severity: 'info' })).toBe(true);
    expect(sinkTakes(sink('warning'), { ...rollback, severity: 'info' })).toBe(false);
    expect(sinkTakes(sink('warning'), warning)).toBe(true);
    expect(sinkTakes(sink('critical'), warning)).toBe(false);
    expect(sinkTakes(sink('critical'), rollback)).toBe(true);
    expect(sinkTakes(sink('critical'), quotaResolved)).toBe(true);
  });

  it('does not post to a sink the alert is below', async () => {
    const calls: string[] = [];
    const fakeFetch = (async (url: string | URL | Request) => {
      calls.push(String(url));
      return new Response('ok', { status: 200 });
    }) as typeof fetch;
    const report = await deliverAlert(
      { ...rollback, severity: 'warning' },
      [
        { ...sink('critical'), name: 'pager', url: 'http://pager.invalid/' },
        { ...sink('warning'), name: 'chat', url: 'http://chat.invalid/' },
      ],
      fakeFetch,
    );
    expect(calls).toEqual(['http://chat.invalid/']);
    expect(report).toEqual({ delivered: ['chat'], refused: [], skipped: ['pager'] });
  });

  it('throws a retryable AlertDeliveryFailed naming the sink and status when a sink answers 503', async () => {
    const fakeFetch = (async () => new Response('busy', { status: 503 })) as typeof fetch;
    const err = await deliverAlert(rollback, [sink()], fakeFetch).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).type).toBe(ErrorType.AlertDeliveryFailed);
    expect((err as ApplicationFailure).nonRetryable).toBe(false);
    expect((err as ApplicationFailure).message).toContain('s (503 busy)');
  });
});

describe('alert sinks file', () => {
  const dir = tempDir('alert-sinks-');
  const write = (name: string, text: string) => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  const problems = (fn: () => unknown): string[] => {
    try {
      fn();
    } catch (err) {
      if (err instanceof InvalidFileError) return err.problems;
      throw err;
    }
    throw new Error('expected an InvalidFileError');
  };

  it('applies defaults and reads fromEnv secrets', () => {
    const file = write(
      'ok.yaml',
      [
        'sinks:',
        '  - name: ops-hook',
        '    kind: webhook',
        '    url: https://hooks.example.com/ml',
        '    headers:',
        '      authorization: { fromEnv: OPS_HOOK_TOKEN }',
        '      x-team: ml',
        '  - name: pager',
        '    kind: alertmanager',
        '    url: http://alertmanager:9093/api/v2/alerts',
        '    minSeverity: critical',
        '    timeoutMs: 5000',
      ].join('\n'),
    );
    expect(loadAlertSinks(file, { OPS_HOOK_TOKEN: 'Bearer s3cret' })).toEqual([
      {
        name: 'ops-hook',
        kind: 'webhook',
        url: 'https://hooks.example.com/ml',
        headers: { authorization: 'Bearer s3cret', 'x-team': 'ml' },
        minSeverity: 'info',
        timeoutMs: 10_000,
      },
      {
        name: 'pager',
        kind: 'alertmanager',
        url: 'http://alertmanager:9093/api/v2/alerts',
        headers: {},
        minSeverity: 'critical',
        timeoutMs: 5000,
        resendIntervalMs: 60_000,
      },
    ]);
  });

  it("reads an Alertmanager sink's re-send interval as a duration of at least 1s, on Alertmanager sinks only", () => {
    const file = write(
      'resend.yaml',
      [
        'sinks:',
        '  - { name: am, kind: alertmanager, url: "http://am:9093/api/v2/alerts", resendInterval: 2s }',
        '  - { name: am-ms, kind: alertmanager, url: "http://am:9093/api/v2/alerts", resendInterval: 1500 }',
        '  - { name: hook, kind: webhook, url: "http://x/" }',
      ].join('\n'),
    );
    expect(loadAlertSinks(file, {}).map((s) => [s.name, s.resendIntervalMs])).toEqual([
      ['am', 2000],
      ['am-ms', 1500],
      ['hook', undefined],
    ]);
    const bad = write(
      'resend-bad.yaml',
      [
        'sinks:',
        '  - { name: am, kind: alertmanager, url: "http://am:9093/api/v2/alerts", resendInterval: 500ms }',
        '  - { name: am2, kind: alertmanager, url: "http://am:9093/api/v2/alerts", resendInterval: often }',
      ].join('\n'),
    );
    const found = problems(() => loadAlertSinks(bad, {}));
    expect(found).toHaveLength(2);
    expect(found[0]).toMatch(/^sinks\.0\.resendInterval \(line 2\): at least 1s/);
    expect(found[1]).toMatch(/^sinks\.1\.resendInterval \(line 3\): invalid duration "often"/);
    const webhook = write(
      'resend-hook.yaml',
      'sinks:\n  - { name: hook, kind: webhook, url: "http://x/", resendInterval: 1m }\n',
    );
    expect(problems(() => loadAlertSinks(webhook, {}))).toEqual([
      'sinks.0.resendInterval (line 2): only alertmanager sinks are re-sent open incidents (this one is webhook)',
    ]);
  });

  it('names the file, every bad field and its line', () => {
    const file = write(
      'bad.yaml',
      [
        'sinks:',
        '  - name: chat',
        '    kind: teams',
        '    url: ftp://example.com',
        '    minSeverity: urgent',
        '    timeoutMs: 60000',
        '    retries: 3',
      ].join('\n'),
    );
    const err = (() => {
      try {
        loadAlertSinks(file, {});
      } catch (e) {
        return e as InvalidFileError;
      }
    })();
    expect(err).toBeInstanceOf(InvalidFileError);
    expect(err!.message).toContain(file);
    expect(err!.message).toContain('invalid alert sinks');
    const found = err!.problems.join('\n');
    expect(found).toMatch(/sinks\.0\.kind \(line 3\)/);
    expect(found).toMatch(/sinks\.0\.url \(line 4\): an http:\/\/ or https:\/\/ URL/);
    expect(found).toMatch(/sinks\.0\.minSeverity \(line 5\)/);
    expect(found).toMatch(/sinks\.0\.timeoutMs \(line 6\)/);
    expect(found).toMatch(/retries/);
  });

  it('names a missing secret variable and the header that needs it', () => {
    const file = write(
      'secret.yaml',
      [
        'sinks:',
        '  - name: slack-ml',
        '    kind: slack',
        '    url: https://hooks.slack.com/services/T000/B000/XXX',
        '    headers:',
        '      authorization: { fromEnv: SLACK_ALERT_TOKEN }',
      ].join('\n'),
    );
    expect(problems(() => loadAlertSinks(file, {}))).toEqual([
      'sinks.0.headers.authorization (line 6): environment variable SLACK_ALERT_TOKEN is not set on the worker',
    ]);
  });

  it('refuses two sinks with one name and a file without sinks', () => {
    const twice = write(
      'twice.yaml',
      [
        'sinks:',
        '  - { name: a, kind: webhook, url: "http://x/" }',
        '  - { name: a, kind: slack, url: "http://y/" }',
      ].join('\n'),
    );
    expect(problems(() => loadAlertSinks(twice, {}))).toEqual(['sinks.1.name (line 3): sink a is declared twice']);
    expect(problems(() => loadAlertSinks(write('empty.yaml', 'other: 1\n'), {})).join('\n')).toMatch(/sinks/);
  });
});

describe('alert routes and groups', () => {
  const sinks: AlertSinkConfig[] = [
    { name: 'churn-slack', kind: 'slack', url: 'http://127.0.0.1:1/slack' },
    { name: 'ops-hook', kind: 'webhook', url: 'http://127.0.0.1:1/ops' },
    { name: 'pager', kind: 'alertmanager', url: 'http://127.0.0.1:1/am' },
  ];
  const config = {
    sinks,
    routes: [
      {
        match: { model: 'churn*', kinds: ['prediction-drift' as const] },
        owner: 'churn-team',
        sinks: ['churn-slack'],
        continue: true,
      },
      { match: { severities: ['critical' as const] }, owner: 'sre', sinks: ['pager'], continue: false },
    ],
  };
  const drift: Alert = {
    ...rollback,
    kind: 'prediction-drift',
    severity: 'critical',
    dedupKey: 'serving:churn-eu:prediction-drift#1',
  };

  it('routes to the sinks of every matching route up to one without continue, owned by the first', () => {
    const r = routeAlert({ ...drift, model: 'churn-eu' }, config);
    expect(r.owner).toBe('churn-team');
    expect(r.sinks.map((s) => s.name)).toEqual(['churn-slack', 'pager']);
    expect(routeAlert({ ...drift, model: 'fraud' }, config)).toMatchObject({ owner: 'sre' });
    expect(routeAlert({ ...drift, model: 'fraud', severity: 'warning' }, config).sinks.map((s) => s.name)).toEqual([
      'churn-slack',
      'ops-hook',
      'pager',
    ]);
  });

  it('routes an alert addressed to people by its audience, identities compared as the policy compares them', () => {
    const byPerson = {
      sinks,
      routes: [{ match: { audience: ['Alice'] }, owner: 'alice', sinks: ['ops-hook'], continue: false }],
    };
    const asked: Alert = { ...rollback, kind: 'approval-requested', severity: 'info', audience: ['alice', 'bob'] };
    expect(routeAlert(asked, byPerson)).toMatchObject({ owner: 'alice', sinks: [{ name: 'ops-hook' }] });
    // Not addressed to alice: no route matches, every sink takes it.
    expect(routeAlert({ ...asked, audience: ['bob'] }, byPerson).sinks).toHaveLength(3);
    expect(routeAlert({ ...asked, audience: undefined }, byPerson).sinks).toHaveLength(3);
  });

  it('sends stage events only to routes that name their kind, never to every sink', () => {
    const event: Alert = {
      ...rollback,
      kind: 'stage-changed',
      severity: 'info',
      dedupKey: 'lifecycle-churn-v7@1a2b3c4d:stage:3',
    };
    // No route names it: nobody gets it (an ordinary alert would go to every sink).
    expect(routeAlert(event, { sinks, routes: [] }).sinks).toEqual([]);
    expect(routeAlert(event, config).sinks).toEqual([]);
    const subscribed = {
      sinks,
      routes: [
        { match: {}, sinks: ['churn-slack'], continue: false },
        { match: { model: 'churn*', kinds: ['stage-changed' as const] }, sinks: ['ops-hook'], continue: false },
      ],
    };
    // A catch-all route does not take it; the route naming the kind does.
    expect(routeAlert(event, subscribed).sinks.map((s) => s.name)).toEqual(['ops-hook']);
    expect(routeAlert({ ...event, model: 'fraud' }, subscribed).sinks).toEqual([]);
    expect(routeAlert({ ...rollback }, subscribed).sinks.map((s) => s.name)).toEqual(['churn-slack']);
  });

  it('refuses a route naming a sink the file does not declare, naming the route', () => {
    const dir = tempDir('alert-routes-');
    const file = join(dir, 'sinks.yaml');
    writeFileSync(
      file,
      'sinks:\n  - { name: ops-hook, kind: webhook, url: "http://x/y" }\nroutes:\n  - { match: { model: churn }, sinks: [slack] }\n',
    );
    try {
      loadAlertConfig(file, {});
      expect.unreachable();
    } catch (err) {
      expect((err as InvalidFileError).problems.join('\n')).toMatch(
        /routes\.0\.sinks\.0.*no sink named "slack" \(sinks: ops-hook\)/,
      );
    }
  });

  it('gives Slack one message for a group, Alertmanager one POST of all, a webhook one POST per alert', async () => {
    const posts: { url: string; body: unknown }[] = [];
    const fetchImpl = (async (url: string, init: { body: string }) => {
      posts.push({ url, body: JSON.parse(init.body) });
      return new Response('{}', { status: 200 });
    }) as unknown as typeof fetch;
    const group: Alert[] = [
      drift,
      { ...drift, kind: 'serving-skew', dedupKey: 'serving:churn-eu:serving-skew#1', resolved: true },
    ];
    const report = await deliverAlerts(group, sinks, fetchImpl);
    expect(report.delivered.sort()).toEqual(['churn-slack', 'ops-hook', 'pager']);
    expect(posts.filter((p) => p.url.endsWith('/ops'))).toHaveLength(2);
    expect(posts.filter((p) => p.url.endsWith('/slack'))).toHaveLength(1);
    const am = posts.find((p) => p.url.endsWith('/am'))!.body as unknown[];
    expect(am).toHaveLength(1 + 3); // the firing alert, and the resolve once per severity
    const slack = slackGroupPayload(group);
    expect(slack.blocks[0]!.text.text).toBe('2 alerts for churn (1 firing, 1 resolved)');
    expect(slack.blocks).toHaveLength(3);
  });
});
