import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import {
  AlertSinkKind,
  DEFAULT_RESEND_INTERVAL_MS,
  DEFAULT_SINK_TIMEOUT_MS,
  SEVERITIES,
  type AlertSinkConfig,
} from '../alerts/sinks';
import { CONDITION_ALERT_KINDS, EVENT_ALERT_KINDS, SUBSCRIBED_ALERT_KINDS, type Alert } from '../shared/alerts';
import { HeaderValue, resolveHeaderValues } from '../shared/deployment-target';
import { projectRoot } from './paths';
import { InvalidFileError, loadYamlFile } from './yaml-file';
import { parseDurationMs, PositiveDuration } from '../shared/duration';
import { nameRecord } from '../shared/names';
import { sameIdentity } from '../shared/policy';

// RFC 9110 token: the characters a header name may hold.
const HeaderName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'a header name');

/** One sink as the file declares it; `{ fromEnv: NAME }` header values are read from the worker's environment. */
export const AlertSinkSpec = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a name of letters, digits, ".", "_" and "-"'),
    kind: z.enum(AlertSinkKind),
    /** The full endpoint: a webhook URL, a Slack incoming-webhook URL, or Alertmanager's `.../api/v2/alerts`. */
    url: z.url({ protocol: /^https?$/, error: 'an http:// or https:// URL' }),
    headers: nameRecord(HeaderName, HeaderValue).optional(),
    minSeverity: z.enum(SEVERITIES).default('info'),
    // At most 25 s: the quota monitor gives sendAlert 30 s (startToCloseTimeout), and sinks are called in parallel.
    timeoutMs: z.number().int().positive().max(25_000).default(DEFAULT_SINK_TIMEOUT_MS),
    /**
     * Alertmanager only: how often the router re-sends open incidents (`30s`, `1m`; default 1m, at least 1s). They
     * stay firing while open, and resolve within 3 intervals should the router stop.
     */
    resendInterval: PositiveDuration.refine((ms) => ms >= 1000, 'at least 1s').optional(),
  })
  .strict();
export type AlertSinkSpec = z.infer<typeof AlertSinkSpec>;

/**
 * A route: alerts matching every given field go to `sinks` (names of this file's sinks) and are owned by `owner`.
 * `model` and `pool` may end in `*` (a prefix). Routes are tried in order; the first match wins unless it says
 * `continue: true`; an alert no route matches goes to every sink.
 */
export const AlertRouteSpec = z
  .object({
    match: z
      .object({
        model: z.string().min(1).optional(),
        pool: z.string().min(1).optional(),
        kinds: z
          .array(z.enum([...EVENT_ALERT_KINDS, ...CONDITION_ALERT_KINDS]))
          .min(1)
          .optional(),
        severities: z.array(z.enum(SEVERITIES)).min(1).optional(),
        /** People: matches an alert addressed to any of them (`approval-requested` is addressed to its approvers). */
        audience: z.array(z.string().min(1).max(128)).min(1).max(100).optional(),
      })
      .strict()
      .default({}),
    owner: z.string().min(1).optional(),
    sinks: z.array(z.string()).min(1),
    continue: z.boolean().default(false),
  })
  .strict();
export type AlertRouteSpec = z.infer<typeof AlertRouteSpec>;

/**
 * The alert sinks file: `sinks: [{ name, kind, url, headers?, minSeverity?, timeoutMs?, resendInterval? }]`,
 * `routes: [...]`.
 */
export const AlertSinksFile = z
  .object({ sinks: z.array(AlertSinkSpec), routes: z.array(AlertRouteSpec).default([]) })
  .strict()
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    for (const [i, sink] of file.sinks.entries()) {
      if (seen.has(sink.name))
        ctx.addIssue({ code: 'custom', path: ['sinks', i, 'name'], message: `sink ${sink.name} is declared twice` });
      seen.add(sink.name);
      // Only Alertmanager takes re-sends: it resolves what is not re-sent, a webhook or Slack would show each again.
      if (sink.resendInterval !== undefined && sink.kind !== 'alertmanager')
        ctx.addIssue({
          code: 'custom',
          path: ['sinks', i, 'resendInterval'],
          message: `only alertmanager sinks are re-sent open incidents (this one is ${sink.kind})`,
        });
    }
    for (const [i, route] of file.routes.entries())
      for (const [j, name] of route.sinks.entries())
        if (!seen.has(name))
          ctx.addIssue({
            code: 'custom',
            path: ['routes', i, 'sinks', j],
            message: `no sink named "${name}" (sinks: ${[...seen].join(', ') || 'none'})`,
          });
  });
export type AlertSinksFile = z.infer<typeof AlertSinksFile>;

/** The sinks file from ALERT_SINKS_FILE (relative paths from the project root); undefined when it is not set. */
export function alertSinksPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = env.ALERT_SINKS_FILE;
  if (!file) return undefined;
  return isAbsolute(file) ? file : join(projectRoot(), file);
}

/**
 * Reads and validates a sinks file and reads its `fromEnv` secrets, once, at worker start. A bad field or a variable
 * that is not set throws InvalidFileError naming the file, the field, its line and the variable.
 */
export function loadAlertSinks(
  file: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): AlertSinkConfig[] {
  return loadAlertConfig(file, env).sinks;
}

/** The sinks and routes of an alert sinks file; see loadAlertSinks. */
export function loadAlertConfig(
  file: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): AlertConfig {
  const withSecrets = AlertSinksFile.superRefine((parsed, ctx) => {
    for (const [i, sink] of parsed.sinks.entries())
      for (const { header, variable } of resolveHeaderValues(sink.headers, env).missing)
        ctx.addIssue({
          code: 'custom',
          path: ['sinks', i, 'headers', header],
          message: `environment variable ${variable} is not set on the worker`,
        });
  });
  const parsed = loadYamlFile(file, withSecrets, 'alert sinks');
  return {
    sinks: parsed.sinks.map(({ resendInterval, ...sink }) => ({
      ...sink,
      headers: resolveHeaderValues(sink.headers, env).headers,
      ...(sink.kind === 'alertmanager' ? { resendIntervalMs: resendInterval ?? DEFAULT_RESEND_INTERVAL_MS } : {}),
    })),
    routes: parsed.routes,
  };
}

export interface AlertConfig {
  sinks: AlertSinkConfig[];
  routes: AlertRouteSpec[];
}

/** The worker's sinks and routes: ALERT_SINKS_FILE's, or none. */
export function loadAlertConfigFromEnv(env: NodeJS.ProcessEnv = process.env): AlertConfig {
  const file = alertSinksPath(env);
  return file ? loadAlertConfig(file, env) : { sinks: [], routes: [] };
}

const matches = (pattern: string | undefined, value: string | undefined) =>
  pattern === undefined ||
  (value !== undefined && (pattern.endsWith('*') ? value.startsWith(pattern.slice(0, -1)) : value === pattern));

/**
 * Where an alert goes: the sinks of the routes it matches (in order, until one without `continue`) and the first
 * matching route's owner; no route matches (or none are declared): every sink, no owner. A subscribed kind
 * (`stage-changed`) matches only routes that name it in `match.kinds`, and goes nowhere when none does.
 */
export function routeAlert(
  alert: Pick<Alert, 'kind' | 'severity' | 'model' | 'pool' | 'audience'>,
  config: AlertConfig,
): { owner?: string; sinks: AlertSinkConfig[] } {
  const names = new Set<string>();
  let owner: string | undefined;
  let matched = false;
  const subscribed = SUBSCRIBED_ALERT_KINDS.includes(alert.kind);
  for (const route of config.routes) {
    const m = route.match;
    if (!matches(m.model, alert.model) || !matches(m.pool, alert.pool)) continue;
    if (m.kinds ? !m.kinds.includes(alert.kind) : subscribed) continue;
    if (m.severities && !m.severities.includes(alert.severity)) continue;
    if (m.audience && !m.audience.some((who) => (alert.audience ?? []).some((a) => sameIdentity(a, who)))) continue;
    matched = true;
    owner ??= route.owner;
    for (const name of route.sinks) names.add(name);
    if (!route.continue) break;
  }
  return {
    ...(owner ? { owner } : {}),
    sinks: matched ? config.sinks.filter((s) => names.has(s.name)) : subscribed ? [] : config.sinks,
  };
}

/** ALERT_GROUP_WAIT (`10s`, `500ms`, milliseconds): how long the router gathers a model's alerts; undefined if unset. */
export function alertGroupWaitFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.ALERT_GROUP_WAIT;
  if (raw === undefined || raw === '') return undefined;
  const ms = /^\d+$/.test(raw) ? Number(raw) : parseDurationMs(raw);
  if (ms === undefined || ms > 3_600_000)
    throw new InvalidFileError('ALERT_GROUP_WAIT', 'environment variable', [
      `"${raw}" is not a duration of at most 1h (e.g. 10s, 500ms)`,
    ]);
  return ms;
}
