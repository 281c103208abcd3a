import { ApplicationFailure } from '@temporalio/activity';
import { ErrorType } from '../shared/errors';

export interface TargetRequest {
  /** How messages name the other side: `gateway`, `http target kserve-adapter`. */
  who: string;
  baseUrl: string;
  method: string;
  /** Path and query, already encoded, appended to `baseUrl`. */
  path: string;
  headers?: Record<string, string>;
  body?: unknown;
  timeoutMs: number;
}

export interface TargetAnswer {
  status: number;
  text: string;
  /** The body parsed as JSON; undefined when empty or not JSON. */
  json: unknown;
}

/** Longest part of a refusal's body quoted in a failure message. */
const MAX_QUOTED = 2000;

/**
 * Largest answer body read from a target. Telemetry, the largest answer, is refused above 512 KiB anyway
 * (MAX_TELEMETRY_BYTES); this only keeps a runaway target from filling the worker's memory.
 */
export const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

/**
 * One HTTP call to a deployment target. A 4xx is the target refusing the request: non-retryable, the message is the
 * target's. A 5xx, a timeout or a connection failure is retryable: the target may be restarting. `retryable4xx` lists
 * client statuses that mean "later" rather than "no" (an HTTP target's 408 and 429).
 */
export async function targetRequest(req: TargetRequest, retryable4xx: readonly number[] = []): Promise<TargetAnswer> {
  const { who, method, path } = req;
  const headers: Record<string, string> = {
    ...(req.body === undefined ? {} : { 'content-type': 'application/json' }),
    ...req.headers,
  };
  let res: Response;
  try {
    res = await fetch(`${req.baseUrl}${path}`, {
      method,
      headers,
      body: req.body === undefined ? undefined : JSON.stringify(req.body),
      signal: AbortSignal.timeout(req.timeoutMs),
    });
  } catch (err) {
    const reason =
      (err as Error).name === 'TimeoutError'
        ? `no answer within ${req.timeoutMs} ms`
        : ((err as Error).cause ?? (err as Error).message);
    throw ApplicationFailure.create({
      type: ErrorType.GatewayUnavailable,
      message: `${who} ${req.baseUrl} unreachable for ${method} ${path}: ${reason}`,
    });
  }
  const text = await readText(res);
  if (text === undefined) {
    throw ApplicationFailure.create({
      type: ErrorType.GatewayRefused,
      message: `${who} ${method} ${path} → ${res.status}: the answer is larger than ${MAX_ANSWER_BYTES} bytes`,
      nonRetryable: true,
      details: [{ status: res.status }],
    });
  }
  const json = parseJson(text);
  if (res.ok) return { status: res.status, text, json };
  const retryable = res.status >= 500 || retryable4xx.includes(res.status);
  throw ApplicationFailure.create({
    type: retryable ? ErrorType.GatewayUnavailable : ErrorType.GatewayRefused,
    message: `${who} ${method} ${path} → ${res.status}: ${refusalMessage(json, text)}`,
    nonRetryable: !retryable,
    details: [{ status: res.status }],
  });
}

/** The body as text, or undefined when it is larger than MAX_ANSWER_BYTES (then left unread). */
export async function readText(res: Response): Promise<string | undefined> {
  if (Number(res.headers.get('content-length') ?? 0) > MAX_ANSWER_BYTES) {
    await res.body?.cancel().catch(() => undefined);
    return undefined;
  }
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  // Leaving the loop early cancels the stream.
  for await (const chunk of res.body) {
    bytes += chunk.byteLength;
    if (bytes > MAX_ANSWER_BYTES) return undefined;
    chunks.push(chunk);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

export function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The receiver's own words: `{ error }` (our gateway), `{ error, message }` (fastify, many APIs), or the raw body. */
export function refusalMessage(json: unknown, text: string): string {
  if (json && typeof json === 'object') {
    const { error, message } = json as { error?: unknown; message?: unknown };
    const parts = [error, message].filter((p): p is string => typeof p === 'string' && p.length > 0);
    if (parts.length > 0) return clip([...new Set(parts)].join(': '));
  }
  return clip(text);
}

function clip(text: string): string {
  return text.length > MAX_QUOTED ? `${text.slice(0, MAX_QUOTED)}…` : text;
}
