import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { AlertSinkKind, DEFAULT_SINK_TIMEOUT_MS, SEVERITIES, type AlertSinkConfig } from '../alerts/sinks';
import { HeaderValue, resolveHeaderValues } from '../targets/spec';
import { projectRoot } from './paths';
import { loadYamlFile } from './yaml-file';

// RFC 9110 token: the characters a header name may hold.
const HeaderName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'a header name');

/** One sink as the file declares it; `{ fromEnv: NAME }` header values are read from the worker's environment. */
export const AlertSinkSpec = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a name of letters, digits, ".", "_" and "-"'),
    kind: z.enum(AlertSinkKind),
    /** The full endpoint: a webhook URL, a Slack incoming-webhook URL, or Alertmanager's `.../api/v2/alerts`. */
    url: z.url({ protocol: /^https?$/, error: 'an http:// or https:// URL' }),
    headers: z.record(HeaderName, HeaderValue).optional(),
    minSeverity: z.enum(SEVERITIES).default('info'),
    // At most 25 s: the quota monitor gives sendAlert 30 s (startToCloseTimeout), and sinks are called in parallel.
    timeoutMs: z.number().int().positive().max(25_000).default(DEFAULT_SINK_TIMEOUT_MS),
  })
  .strict();
export type AlertSinkSpec = z.infer<typeof AlertSinkSpec>;

/** The alert sinks file: `sinks: [{ name, kind, url, headers?, minSeverity?, timeoutMs? }]`. */
export const AlertSinksFile = z
  .object({ sinks: z.array(AlertSinkSpec) })
  .strict()
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    for (const [i, sink] of file.sinks.entries()) {
      if (seen.has(sink.name))
        ctx.addIssue({ code: 'custom', path: ['sinks', i, 'name'], message: `sink ${sink.name} is declared twice` });
      seen.add(sink.name);
    }
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
  return parsed.sinks.map((sink) => ({ ...sink, headers: resolveHeaderValues(sink.headers, env).headers }));
}

/** The worker's sinks: ALERT_SINKS_FILE's, or none (alerts go to the log only). */
export function loadAlertSinksFromEnv(env: NodeJS.ProcessEnv = process.env): AlertSinkConfig[] {
  const file = alertSinksPath(env);
  return file ? loadAlertSinks(file, env) : [];
}
