import { defaultPayloadConverter, type Headers } from '@temporalio/common';
import { z } from 'zod';

/**
 * What a log line is about, besides the workflow id and run id the SDK adds: the model, version and stage of a
 * lifecycle, the model of a registry or rollback, the pool of a quota workflow. Absent fields are left out.
 */
export const LogContext = z.object({
  model: z.string().optional(),
  version: z.string().optional(),
  stage: z.string().optional(),
  pool: z.string().optional(),
});
export type LogContext = z.infer<typeof LogContext>;

/** Header that carries a workflow's log context to every activity it schedules. */
export const LOG_CONTEXT_HEADER = 'ml-log-context';

/** `headers` plus the log context (unchanged when the context is empty). */
export function withLogContextHeader(headers: Headers, context: LogContext): Headers {
  if (Object.keys(context).length === 0) return headers;
  return { ...headers, [LOG_CONTEXT_HEADER]: defaultPayloadConverter.toPayload(context) };
}

/** The log context a workflow sent with an activity; empty when absent or unreadable (a log field never fails work). */
export function logContextFromHeaders(headers: Headers): LogContext {
  const payload = headers[LOG_CONTEXT_HEADER];
  if (!payload) return {};
  try {
    const parsed = LogContext.safeParse(defaultPayloadConverter.fromPayload(payload));
    return parsed.success ? withoutUndefined(parsed.data) : {};
  } catch {
    return {};
  }
}

/** The context without absent fields, so merging it never blanks a field another layer set. */
export function withoutUndefined(context: LogContext): LogContext {
  return Object.fromEntries(Object.entries(context).filter(([, v]) => v !== undefined)) as LogContext;
}
