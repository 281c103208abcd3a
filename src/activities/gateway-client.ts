import { ApplicationFailure } from '@temporalio/activity';
import { ErrorType } from '../shared/errors';

/**
 * Calls the serving gateway's admin API. A 4xx is the gateway refusing the request: non-retryable, the message is the
 * gateway's. A 5xx or a connection failure is retryable: the gateway may be restarting.
 */
export async function gatewayRequest<T>(baseUrl: string, method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${baseUrl}${path}`, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw ApplicationFailure.create({
      type: ErrorType.GatewayUnavailable,
      message: `gateway ${baseUrl} unreachable for ${method} ${path}: ${(err as Error).cause ?? (err as Error).message}`,
    });
  }
  const text = await res.text();
  const payload = text ? (JSON.parse(text) as unknown) : undefined;
  if (res.ok) return payload as T;
  const message = (payload as { error?: string } | undefined)?.error ?? text;
  throw ApplicationFailure.create({
    type: res.status >= 500 ? ErrorType.GatewayUnavailable : ErrorType.GatewayRefused,
    message: `gateway ${method} ${path} → ${res.status}: ${message}`,
    nonRetryable: res.status < 500,
    details: [{ status: res.status }],
  });
}
