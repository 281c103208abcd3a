import { ApplicationFailure, type Logger } from '@temporalio/common';
import type { Alert } from '../shared/alerts';
import { ErrorType } from '../shared/errors';

export const AlertSinkKind = { webhook: 'webhook', slack: 'slack', alertmanager: 'alertmanager' } as const;
export type AlertSinkKind = (typeof AlertSinkKind)[keyof typeof AlertSinkKind];

export type Severity = Alert['severity'];
/** Severities from least to most urgent. */
export const SEVERITIES = ['info', 'warning', 'critical'] as const satisfies readonly Severity[];

/** One place alerts are posted to, secrets already read from the environment (see src/config/alert-sinks.ts). */
export interface AlertSinkConfig {
  /** How logs and errors name the sink. */
  name: string;
  kind: AlertSinkKind;
  /** The full endpoint the body is POSTed to. */
  url: string;
  headers?: Record<string, string>;
  /** The least severe alert this sink takes (default info: every alert). */
  minSeverity?: Severity;
  /** Per request (default 10000). */
  timeoutMs?: number;
  /**
   * Alertmanager only: how often the router re-sends open incidents (default 60000). Their `endsAt` is 3 intervals
   * ahead, so they stay firing while the router keeps re-sending and resolve on their own if it stops.
   */
  resendIntervalMs?: number;
}

export const DEFAULT_SINK_TIMEOUT_MS = 10_000;
/** How often open incidents are re-sent to an Alertmanager sink that does not say (Prometheus re-sends every 1m). */
export const DEFAULT_RESEND_INTERVAL_MS = 60_000;
/**
 * An open incident's `endsAt` is this many re-send intervals ahead: one or two lost re-sends do not resolve it, and if
 * the router stops re-sending, Alertmanager resolves it within that many intervals.
 */
export const RESEND_ENDS_AT_INTERVALS = 3;
/** Longest part of a refusing receiver's answer kept in the log. */
const MAX_QUOTED = 2000;
/** Longest part of a failing receiver's answer in the retryable failure's message (one per failing sink). */
const MAX_QUOTED_IN_FAILURE = 200;

/**
 * The generic webhook body. Field names are a contract with receivers: add fields, never rename them.
 * `schemaVersion` is this format's version (`version` is the model version, as in `Alert`); absent values are null.
 */
export interface WebhookPayload {
  schemaVersion: 1;
  status: 'firing' | 'resolved';
  kind: Alert['kind'];
  severity: Severity;
  summary: string;
  model: string | null;
  version: string | null;
  lifecycleId: string | null;
  pool: string | null;
  dedupKey: string;
  /** The team the alert was routed to (a route's `owner`), or null. */
  owner: string | null;
  /** The people it is addressed to (a gate's approvers), or null. */
  audience: string[] | null;
  details: Record<string, unknown>;
  /** When this delivery was made (ISO 8601); a retried delivery carries a later time. */
  at: string;
}

export function webhookPayload(alert: Alert, now: Date = new Date()): WebhookPayload {
  return {
    schemaVersion: 1,
    status: alert.resolved ? 'resolved' : 'firing',
    kind: alert.kind,
    severity: alert.severity,
    summary: alert.summary,
    model: alert.model ?? null,
    version: alert.version ?? null,
    lifecycleId: alert.lifecycleId ?? null,
    pool: alert.pool ?? null,
    dedupKey: alert.dedupKey,
    owner: alert.owner ?? null,
    audience: alert.audience ?? null,
    details: alert.details ?? {},
    at: now.toISOString(),
  };
}

export interface SlackText {
  type: 'plain_text' | 'mrkdwn';
  text: string;
}
export type SlackBlock =
  { type: 'header'; text: SlackText & { type: 'plain_text' } } | { type: 'section'; text: SlackText };
/** A Slack incoming-webhook message: `text` is the notification fallback, `blocks` what the channel shows. */
export interface SlackPayload {
  text: string;
  blocks: SlackBlock[];
}

// Block Kit limits: a header's text at most 150 characters, a section's at most 3000.
const SLACK_HEADER_MAX = 150;
const SLACK_SECTION_MAX = 3000;

const truncate = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);
/** Slack's mrkdwn treats these three as control characters; everything else is shown as written. */
const escapeMrkdwn = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function subject(alert: Alert): string {
  const about = alert.model ? `${alert.model}${alert.version ? ` ${alert.version}` : ''}` : alert.pool;
  return `${alert.kind}${about ? ` (${about})` : ''}`;
}

export function slackPayload(alert: Alert): SlackPayload {
  const status = alert.resolved ? 'RESOLVED' : alert.severity.toUpperCase();
  const facts = [
    alert.model && `*Model:* ${escapeMrkdwn(alert.model)}${alert.version ? ` ${escapeMrkdwn(alert.version)}` : ''}`,
    alert.lifecycleId && `*Lifecycle:* \`${escapeMrkdwn(alert.lifecycleId)}\``,
    alert.pool && `*Pool:* ${escapeMrkdwn(alert.pool)}`,
    `*Severity:* ${alert.severity}${alert.resolved ? ' (resolved)' : ''}`,
    `*Dedup key:* \`${escapeMrkdwn(alert.dedupKey)}\``,
    alert.owner && `*Owner:* ${escapeMrkdwn(alert.owner)}`,
    alert.audience?.length && `*For:* ${escapeMrkdwn(alert.audience.join(', '))}`,
  ].filter((f): f is string => Boolean(f));
  const blocks: SlackBlock[] = [
    { type: 'header', text: { type: 'plain_text', text: truncate(`${status}: ${subject(alert)}`, SLACK_HEADER_MAX) } },
    { type: 'section', text: { type: 'mrkdwn', text: truncate(escapeMrkdwn(alert.summary), SLACK_SECTION_MAX) } },
    { type: 'section', text: { type: 'mrkdwn', text: truncate(facts.join('\n'), SLACK_SECTION_MAX) } },
  ];
  if (alert.details && Object.keys(alert.details).length > 0) {
    // Room for the code fence, so truncation never leaves it open.
    const json = truncate(escapeMrkdwn(JSON.stringify(alert.details, null, 2)), SLACK_SECTION_MAX - 6);
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `\`\`\`${json}\`\`\`` } });
  }
  return { text: escapeMrkdwn(`[${status}] ${subject(alert)}: ${alert.summary}`), blocks };
}

/** One Slack message for a group of alerts of one model (or pool): a header, then one section per alert. */
export function slackGroupPayload(alerts: readonly Alert[]): SlackPayload {
  const first = alerts[0]!;
  const about = first.model ?? first.pool ?? 'ml-lifecycle';
  const firing = alerts.filter((a) => !a.resolved).length;
  const title = `${alerts.length} alerts for ${about} (${firing} firing, ${alerts.length - firing} resolved)`;
  const line = (a: Alert) =>
    `*${a.resolved ? 'RESOLVED' : a.severity.toUpperCase()}* ${escapeMrkdwn(subject(a))}: ${escapeMrkdwn(a.summary)}\n\`${escapeMrkdwn(a.dedupKey)}\`${a.owner ? ` · owner ${escapeMrkdwn(a.owner)}` : ''}`;
  // Block Kit takes at most 50 blocks per message.
  const shown = alerts.slice(0, 48);
  const blocks: SlackBlock[] = [
    { type: 'header', text: { type: 'plain_text', text: truncate(title, SLACK_HEADER_MAX) } },
    ...shown.map((a): SlackBlock => ({
      type: 'section',
      text: { type: 'mrkdwn', text: truncate(line(a), SLACK_SECTION_MAX) },
    })),
  ];
  if (alerts.length > shown.length)
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `…and ${alerts.length - shown.length} more` } });
  return { text: escapeMrkdwn(title), blocks };
}

/** One alert of Alertmanager's v2 API (`POST /api/v2/alerts` takes an array of these); labels and annotations are strings. */
export interface AlertmanagerAlert {
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  startsAt?: string;
  endsAt?: string;
  generatorURL?: string;
}

/**
 * The Alertmanager v2 body. Alertmanager identifies an alert by its whole label set, and a resolve message may carry
 * another severity than the alert it closes (the quota monitor resolves with `info`), so a resolve is posted once per
 * severity, each with `endsAt` now: whichever of them is firing closes, the others are recorded as already resolved.
 *
 * Alertmanager expects its clients to re-send alerts that are still firing. A firing alert of an incident that stays
 * open until its resolve (`open`) carries `endsAt` {@link RESEND_ENDS_AT_INTERVALS} × `resendMs` ahead (default
 * {@link DEFAULT_RESEND_INTERVAL_MS}), and the router re-sends it every `resendMs` while the incident is open, so it
 * stays firing exactly that long. A one-off firing alert (a rollback, a failed training) carries no `endsAt`:
 * Alertmanager resolves it after its `resolve_timeout`.
 */
export function alertmanagerPayload(
  alert: Alert,
  now: Date = new Date(),
  resendMs: number = DEFAULT_RESEND_INTERVAL_MS,
): AlertmanagerAlert[] {
  const labels = (severity: Severity): Record<string, string> => ({
    alertname: alert.kind,
    severity,
    ...(alert.model ? { model: alert.model } : {}),
    ...(alert.version ? { version: alert.version } : {}),
    ...(alert.pool ? { pool: alert.pool } : {}),
    ...(alert.owner ? { owner: alert.owner } : {}),
    dedup_key: alert.dedupKey,
  });
  const annotations: Record<string, string> = {
    summary: alert.summary,
    ...(alert.lifecycleId ? { lifecycle_id: alert.lifecycleId } : {}),
    ...(alert.audience?.length ? { audience: alert.audience.join(', ') } : {}),
    ...(alert.details && Object.keys(alert.details).length > 0 ? { details: JSON.stringify(alert.details) } : {}),
  };
  const at = now.toISOString();
  if (!alert.resolved) {
    const endsAt = alert.open
      ? { endsAt: new Date(now.getTime() + RESEND_ENDS_AT_INTERVALS * resendMs).toISOString() }
      : {};
    return [{ labels: labels(alert.severity), annotations, startsAt: at, ...endsAt }];
  }
  return SEVERITIES.map((severity) => ({ labels: labels(severity), annotations, endsAt: at }));
}

/** The log level an alert is written at: a resolve is news, not trouble. */
export function alertLogLevel(alert: Pick<Alert, 'severity' | 'resolved'>): 'error' | 'warn' | 'info' {
  if (alert.resolved) return 'info';
  return alert.severity === 'critical' ? 'error' : alert.severity === 'warning' ? 'warn' : 'info';
}

/**
 * Whether a sink takes this alert: its severity is at least the sink's `minSeverity`. Resolve messages go to every sink,
 * since they carry their own severity (often `info`) rather than the incident's, and a sink that took the incident must
 * hear it close; a receiver that never saw the incident can drop the resolve by its dedup key.
 */
export function sinkTakes(sink: AlertSinkConfig, alert: Alert): boolean {
  if (alert.resolved) return true;
  return SEVERITIES.indexOf(alert.severity) >= SEVERITIES.indexOf(sink.minSeverity ?? 'info');
}

/** The `Idempotency-Key` of webhook deliveries: one incident's firing and its resolve are two different messages. */
export const idempotencyKey = (alert: Alert) => `${alert.dedupKey}:${alert.resolved ? 'resolved' : 'firing'}`;

type Outcome =
  | { sink: string; result: 'delivered'; status: number }
  | { sink: string; result: 'refused'; status: number; body: string }
  | { sink: string; result: 'failed'; reason: string };

export interface DeliveryReport {
  delivered: string[];
  /** Sinks that answered a 4xx (other than 408 and 429): logged, not retried. */
  refused: { sink: string; status: number; body: string }[];
  /** Sinks whose `minSeverity` the alert is below. */
  skipped: string[];
}

type DeliveryLog = Pick<Logger, 'debug' | 'error'>;
const consoleLog: DeliveryLog = {
  debug: () => undefined,
  error: (message, meta) => console.error(message, meta),
};

// 408 and 429 ask to come back later, which is what a retry does.
const retryableStatus = (status: number) => status >= 500 || status === 408 || status === 429;

/** One POST of one body to one sink; `alerts` are the alerts the body carries (for the idempotency key). */
async function post(sink: AlertSinkConfig, body: unknown, idemKey: string, fetchImpl: typeof fetch): Promise<Outcome> {
  const timeoutMs = sink.timeoutMs ?? DEFAULT_SINK_TIMEOUT_MS;
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    ...(sink.kind === 'webhook' ? { 'idempotency-key': idemKey } : {}),
    ...sink.headers,
  };
  let res: Response;
  let answer: string;
  try {
    res = await fetchImpl(sink.url, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    answer = await res.text();
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const reason =
      e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
    return { sink: sink.name, result: 'failed', reason };
  }
  if (res.ok) return { sink: sink.name, result: 'delivered', status: res.status };
  if (retryableStatus(res.status)) {
    const quoted = truncate(answer.trim(), MAX_QUOTED_IN_FAILURE);
    return { sink: sink.name, result: 'failed', reason: `${res.status}${quoted ? ` ${quoted}` : ''}` };
  }
  return { sink: sink.name, result: 'refused', status: res.status, body: truncate(answer, MAX_QUOTED) };
}

/**
 * Posts `alert` to every sink that takes it, in parallel. A 2xx is delivered. A 4xx is the sink refusing this message
 * (a wrong URL or token, a malformed body): logged with the sink and its answer, and not retried, so one misconfigured
 * sink cannot keep the alert retrying forever. A 5xx, 408, 429, a timeout or a connection failure throws a retryable
 * `AlertDeliveryFailed` naming every such sink once all requests have ended.
 *
 * Delivery is at-least-once: the retry posts to every sink again, including those that took the alert the first time.
 * Webhook sinks get an `Idempotency-Key` header to drop the repeat by; Alertmanager merges repeats by labels; Slack
 * shows them twice.
 */
export async function deliverAlert(
  alert: Alert,
  sinks: readonly AlertSinkConfig[],
  fetchImpl: typeof fetch = fetch,
  log: DeliveryLog = consoleLog,
): Promise<DeliveryReport> {
  return deliverAlerts([alert], sinks, fetchImpl, log);
}

/**
 * Delivers a group of alerts (one model's, gathered by the router) as `deliverAlert` does one: a Slack sink gets one
 * message listing them all, Alertmanager one POST with all of them, a webhook one POST per alert (its body is one
 * alert, and each has its own idempotency key).
 */
export async function deliverAlerts(
  alerts: readonly Alert[],
  sinks: readonly AlertSinkConfig[],
  fetchImpl: typeof fetch = fetch,
  log: DeliveryLog = consoleLog,
): Promise<DeliveryReport> {
  const now = new Date();
  const posts: Promise<Outcome>[] = [];
  const skipped: string[] = [];
  for (const sink of sinks) {
    const taken = alerts.filter((a) => sinkTakes(sink, a));
    if (taken.length === 0) {
      skipped.push(sink.name);
      continue;
    }
    const key = taken.map(idempotencyKey).join(',');
    if (sink.kind === 'webhook')
      for (const a of taken) posts.push(post(sink, webhookPayload(a, now), idempotencyKey(a), fetchImpl));
    else if (sink.kind === 'slack')
      posts.push(post(sink, taken.length === 1 ? slackPayload(taken[0]!) : slackGroupPayload(taken), key, fetchImpl));
    else
      posts.push(
        post(
          sink,
          taken.flatMap((a) => alertmanagerPayload(a, now, sink.resendIntervalMs)),
          key,
          fetchImpl,
        ),
      );
  }
  const outcomes = await Promise.all(posts);
  const report: DeliveryReport = { delivered: [], refused: [], skipped };
  const failed: { sink: string; reason: string }[] = [];
  for (const o of outcomes) {
    if (o.result === 'delivered') {
      if (!report.delivered.includes(o.sink)) report.delivered.push(o.sink);
    } else if (o.result === 'refused') report.refused.push({ sink: o.sink, status: o.status, body: o.body });
    else failed.push({ sink: o.sink, reason: o.reason });
  }
  const keys = alerts.map((a) => a.dedupKey).join(', ');
  for (const r of report.refused)
    log.error(`alert sink ${r.sink} refused the alert (${r.status}); not retried`, {
      sink: r.sink,
      status: r.status,
      body: r.body,
      dedupKey: keys,
    });
  if (report.delivered.length > 0) log.debug('alert delivered', { sinks: report.delivered, dedupKey: keys });
  if (failed.length > 0)
    throw ApplicationFailure.create({
      type: ErrorType.AlertDeliveryFailed,
      message: `alert ${keys} not delivered to ${failed.map((f) => `${f.sink} (${f.reason})`).join(', ')}`,
      details: [{ failed, delivered: report.delivered }],
    });
  return report;
}
