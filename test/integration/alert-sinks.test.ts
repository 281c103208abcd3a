import { createServer, type AddressInfo } from 'node:net';
import { Client, Connection } from '@temporalio/client';
import { ApplicationFailure, type LogLevel, type LogMetadata, type Logger } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createControlPlaneActivities } from '../../src/activities/control-plane';
import type { AlertSinkConfig } from '../../src/alerts/sinks';
import type { Alert } from '../../src/shared/alerts';
import { temporalAddress } from '../helpers/harness';
import { ErrorType } from '../../src/shared/errors';
import { QuotaPoolsFile } from '../../src/shared/quota';

interface Received {
  route: string;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

/** Three receivers on one local server: a generic webhook, a Slack incoming webhook, an Alertmanager. */
class Receiver {
  readonly received: Received[] = [];
  /** Per route, the statuses of the next answers (then 200). */
  readonly script = new Map<string, number[]>();
  /** Per route, how long to wait before answering. */
  readonly delayMs = new Map<string, number>();
  // Closing must not wait out the keep-alive of connections the senders left open.
  readonly app: FastifyInstance = Fastify({ forceCloseConnections: true });
  url = '';

  constructor() {
    for (const route of ['/generic', '/slack', '/api/v2/alerts'])
      this.app.post(route, async (req, reply) => {
        this.received.push({ route, headers: req.headers, body: req.body });
        const delay = this.delayMs.get(route);
        if (delay) await new Promise((r) => setTimeout(r, delay));
        const status = this.script.get(route)?.shift() ?? 200;
        if (status === 200) return reply.code(200).send(route === '/slack' ? 'ok' : { status: 'success' });
        return reply.code(status).send(status === 400 ? 'invalid_payload' : { error: 'unavailable' });
      });
  }

  on(route: string): Received[] {
    return this.received.filter((r) => r.route === route);
  }

  reset(): void {
    this.received.length = 0;
    this.script.clear();
    this.delayMs.clear();
  }
}

/** The activity logger's entries, to see what a refusal leaves behind. */
class CapturingLogger implements Logger {
  readonly entries: { level: LogLevel; message: string; meta?: LogMetadata }[] = [];
  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    this.entries.push({ level, message, ...(meta ? { meta } : {}) });
  }
  trace = (m: string, meta?: LogMetadata) => this.log('TRACE', m, meta);
  debug = (m: string, meta?: LogMetadata) => this.log('DEBUG', m, meta);
  info = (m: string, meta?: LogMetadata) => this.log('INFO', m, meta);
  warn = (m: string, meta?: LogMetadata) => this.log('WARN', m, meta);
  error = (m: string, meta?: LogMetadata) => this.log('ERROR', m, meta);
}

/** The SDK's activity test environment, its log captured rather than printed. */
const quietEnv = (info?: { attempt: number }) => new MockActivityEnvironment(info, { logger: new CapturingLogger() });

/** A loopback port nothing listens on: one the system just handed out and took back. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const rollback: Alert = {
  kind: 'rollback',
  severity: 'critical',
  model: 'churn',
  version: 'v7',
  lifecycleId: 'lc-churn-v7',
  summary: 'canary error rate 4.1% > 1%: rolled back to v6',
  details: { check: 'errorRate', value: 0.041 },
  dedupKey: 'lc-churn-v7:rollback',
};

/** The real sendAlert activity as a worker builds it, run in the SDK's activity test environment. */
describe('alert sinks', () => {
  const receiver = new Receiver();
  let client: Client;
  let sinks: AlertSinkConfig[];
  const collected: Alert[] = [];

  const activities = (list: AlertSinkConfig[] = sinks) =>
    createControlPlaneActivities({
      client,
      quotaPools: QuotaPoolsFile.parse({ pools: [{ name: 'default', capacity: { cpu: 1, memoryGiB: 1 } }] }),
      alertSink: (a) => void collected.push(a),
      alertSinks: list,
    });

  beforeAll(async () => {
    receiver.url = await receiver.app.listen({ port: 0, host: '127.0.0.1' });
    // sendAlert never talks to Temporal; a lazy connection is never opened.
    client = new Client({ connection: Connection.lazy({ address: temporalAddress() }) });
    sinks = [
      {
        name: 'ops-hook',
        kind: 'webhook',
        url: `${receiver.url}/generic`,
        headers: { authorization: 'Bearer tok-1' },
        timeoutMs: 2000,
      },
      { name: 'slack-ml', kind: 'slack', url: `${receiver.url}/slack`, timeoutMs: 2000 },
      { name: 'pager', kind: 'alertmanager', url: `${receiver.url}/api/v2/alerts`, timeoutMs: 2000 },
    ];
  });
  afterAll(async () => {
    await receiver.app.close();
    await client.connection.close();
  });
  beforeEach(() => {
    receiver.reset();
    collected.length = 0;
  });

  it('posts each sink its own body: generic JSON, a Slack message, Alertmanager v2 alerts', async () => {
    await quietEnv().run(activities().sendAlert, rollback);

    expect(collected).toEqual([rollback]);
    const [generic] = receiver.on('/generic');
    expect(generic?.headers['idempotency-key']).toBe('lc-churn-v7:rollback:firing');
    expect(generic?.headers.authorization).toBe('Bearer tok-1');
    expect(generic?.headers['content-type']).toBe('application/json');
    expect(generic?.body).toMatchObject({
      schemaVersion: 1,
      status: 'firing',
      kind: 'rollback',
      severity: 'critical',
      model: 'churn',
      version: 'v7',
      lifecycleId: 'lc-churn-v7',
      pool: null,
      dedupKey: 'lc-churn-v7:rollback',
      details: { check: 'errorRate', value: 0.041 },
    });

    const [slack] = receiver.on('/slack');
    expect(slack?.headers['idempotency-key']).toBeUndefined();
    expect(slack?.body).toMatchObject({
      text: expect.stringContaining('[CRITICAL] rollback (churn v7)'),
      blocks: expect.arrayContaining([
        { type: 'header', text: { type: 'plain_text', text: 'CRITICAL: rollback (churn v7)' } },
      ]),
    });

    const [am] = receiver.on('/api/v2/alerts');
    expect(am?.body).toEqual([
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
        startsAt: expect.any(String),
      },
    ]);
  });

  it('posts a resolve with its own idempotency key and an Alertmanager end time', async () => {
    const resolved: Alert = {
      kind: 'quota-usage-high',
      severity: 'info',
      pool: 'gpu-a100',
      summary: 'usage back under 80%',
      dedupKey: 'usage:gpu',
      resolved: true,
    };
    // A resolve reaches even a sink that only takes critical alerts: it must hear its incidents close.
    await quietEnv().run(activities(sinks.map((s) => ({ ...s, minSeverity: 'critical' }))).sendAlert, resolved);
    expect(receiver.on('/generic')[0]?.headers['idempotency-key']).toBe('usage:gpu:resolved');
    expect(receiver.on('/generic')[0]?.body).toMatchObject({ status: 'resolved', pool: 'gpu-a100', model: null });
    expect(receiver.on('/slack')[0]?.body).toMatchObject({ text: expect.stringMatching(/^\[RESOLVED\]/) });
    const am = receiver.on('/api/v2/alerts')[0]?.body as { labels: Record<string, string>; endsAt?: string }[];
    expect(am.map((a) => a.labels.severity)).toEqual(['info', 'warning', 'critical']);
    expect(am.every((a) => typeof a.endsAt === 'string')).toBe(true);
  });

  it('fails retryably while a sink answers 503 and delivers once it recovers, as Temporal retries it', async () => {
    receiver.script.set('/generic', [503, 503]);
    const sendAlert = activities().sendAlert;
    const failures: ApplicationFailure[] = [];
    // What Temporal does with the caller's retry policy: run the activity again until it succeeds.
    for (let attempt = 1; attempt <= 5; attempt++) {
      try {
        await quietEnv({ attempt }).run(sendAlert, rollback);
        break;
      } catch (err) {
        expect(err).toBeInstanceOf(ApplicationFailure);
        failures.push(err as ApplicationFailure);
      }
    }
    expect(failures).toHaveLength(2);
    for (const f of failures) {
      expect(f.type).toBe(ErrorType.AlertDeliveryFailed);
      expect(f.nonRetryable).toBe(false);
      expect(f.message).toContain('ops-hook (503');
      expect(f.message).not.toContain('slack-ml');
    }
    // At-least-once: every attempt posts to every sink; the webhook's key lets it drop the repeats.
    expect(receiver.on('/generic')).toHaveLength(3);
    expect(new Set(receiver.on('/generic').map((r) => r.headers['idempotency-key']))).toEqual(
      new Set(['lc-churn-v7:rollback:firing']),
    );
    expect(receiver.on('/slack')).toHaveLength(3);
    expect(receiver.on('/api/v2/alerts')).toHaveLength(3);
  });

  it('names every sink that timed out, was unreachable or asked to come back later', async () => {
    receiver.delayMs.set('/generic', 1000);
    receiver.script.set('/api/v2/alerts', [429]);
    const list: AlertSinkConfig[] = [
      { ...sinks[0]!, timeoutMs: 200 },
      sinks[1]!,
      sinks[2]!,
      { name: 'nowhere', kind: 'webhook', url: `http://127.0.0.1:${await closedPort()}/hook`, timeoutMs: 2000 },
    ];
    const err = (await quietEnv()
      .run(activities(list).sendAlert, rollback)
      .then(
        () => undefined,
        (e: unknown) => e,
      )) as ApplicationFailure;
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err.type).toBe(ErrorType.AlertDeliveryFailed);
    expect(err.nonRetryable).toBe(false);
    expect(err.message).toContain('ops-hook (no answer within 200 ms)');
    expect(err.message).toContain('pager (429');
    expect(err.message).toMatch(/nowhere \(ECONNREFUSED\)/);
    expect(err.message).not.toContain('slack-ml');
  });

  it('logs a 4xx refusal with the sink and its answer and does not fail the activity', async () => {
    receiver.script.set('/slack', [400]);
    const logger = new CapturingLogger();
    await new MockActivityEnvironment(undefined, { logger }).run(activities().sendAlert, rollback);

    expect(receiver.on('/slack')).toHaveLength(1);
    expect(receiver.on('/generic')).toHaveLength(1);
    expect(receiver.on('/api/v2/alerts')).toHaveLength(1);
    const refusal = logger.entries.find((e) => e.level === 'ERROR' && e.message.includes('slack-ml'));
    expect(refusal?.meta).toMatchObject({ sink: 'slack-ml', status: 400, body: 'invalid_payload' });
  });

  it('posts only to sinks whose minimum severity the alert meets', async () => {
    const list: AlertSinkConfig[] = sinks.map((s) => ({
      ...s,
      minSeverity: s.kind === 'alertmanager' ? 'critical' : 'info',
    }));
    const warning: Alert = { ...rollback, severity: 'warning' };
    await quietEnv().run(activities(list).sendAlert, warning);
    expect(receiver.on('/generic')).toHaveLength(1);
    expect(receiver.on('/slack')).toHaveLength(1);
    expect(receiver.on('/api/v2/alerts')).toHaveLength(0);
  });
});
