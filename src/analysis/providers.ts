import { query as jsonPathQuery } from 'jsonpath-rfc9535';
import { Agent, request } from 'undici';
import {
  fillPlaceholders,
  type MetricCheck,
  type MetricVariables,
  type PrometheusProvider,
  type WebProvider,
} from '../shared/analysis';
import { own } from '../shared/own';
import { clipped } from '../shared/text';
import { resolveHeaderValues, type HeaderValue } from '../shared/deployment-target';

/** A provider that could not measure: unreachable, an error answer, an answer that is not one number. */
export class MeasurementError extends Error {
  override readonly name = 'MeasurementError';
}

/** One measurement: the number, or null when the provider had no data (no series, NaN, JSON null). */
export interface Measurement {
  value: number | null;
  /** What was asked, filled in (a query, a URL), and what came back when there was no number. */
  detail: string;
}

/** Largest answer read from a provider: enough for any one-number answer, and a runaway body cannot fill memory. */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
const agent = new Agent({ maxResponseSize: MAX_ANSWER_BYTES, connections: 16 });

type Env = Readonly<Record<string, string | undefined>>;

/** Measures `check` with its provider at `now`; throws MeasurementError when the provider cannot give a number. */
export function measure(
  check: Pick<MetricCheck, 'provider'>,
  vars: MetricVariables,
  env: Env,
  now: Date,
): Promise<Measurement> {
  return 'prometheus' in check.provider
    ? measurePrometheus(check.provider.prometheus, vars, env, now)
    : measureWeb(check.provider.web, vars, env);
}

function headersOf(values: Readonly<Record<string, HeaderValue>> | undefined, vars: MetricVariables, env: Env) {
  const { headers, missing } = resolveHeaderValues(values, env);
  if (missing.length > 0) {
    throw new MeasurementError(
      `header ${missing.map((m) => `${m.header} (variable ${m.variable})`).join(', ')}: not set on the worker`,
    );
  }
  // Placeholders only in literals: a secret's value is sent as it is.
  return Object.fromEntries(
    Object.entries(headers).map(([name, value]) => [
      name,
      typeof own(values ?? {}, name) === 'string' ? fillPlaceholders(value, vars) : value,
    ]),
  );
}

async function call(
  url: string,
  init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: string; timeoutMs: number },
): Promise<unknown> {
  let status: number;
  let text: string;
  try {
    const res = await request(url, {
      method: init.method,
      headers: init.body === undefined ? init.headers : { 'content-type': 'application/json', ...init.headers },
      ...(init.body === undefined ? {} : { body: init.body }),
      signal: AbortSignal.timeout(init.timeoutMs),
      dispatcher: agent,
    });
    status = res.statusCode;
    text = await res.body.text();
  } catch (err) {
    const e = err as Error & { code?: string; cause?: Error };
    const reason =
      e.name === 'TimeoutError' || e.name === 'AbortError'
        ? `no answer within ${init.timeoutMs} ms`
        : (e.cause?.message ?? e.code ?? e.message);
    throw new MeasurementError(`${init.method} ${redactUrl(url)}: ${reason}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch {
    json = undefined;
  }
  if (status < 200 || status >= 300) {
    const message =
      json && typeof json === 'object' && typeof (json as { error?: unknown }).error === 'string'
        ? (json as { error: string }).error
        : text;
    throw new MeasurementError(`${init.method} ${redactUrl(url)} → ${status}: ${clipped(message.trim(), 300)}`);
  }
  if (json === undefined)
    throw new MeasurementError(`${redactUrl(url)} answered ${status} with a body that is not JSON`);
  return json;
}

/** A URL for messages: without its query string's values or credentials. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

/** A Prometheus sample value ("1.5", "NaN", "+Inf") as a number; NaN means no data. */
function sampleValue(v: unknown): number {
  if (!Array.isArray(v) || typeof v[1] !== 'string') throw new MeasurementError('a sample is not [time, "value"]');
  return Number(v[1]);
}

async function measurePrometheus(
  p: PrometheusProvider,
  vars: MetricVariables,
  env: Env,
  now: Date,
): Promise<Measurement> {
  const promql = fillPlaceholders(p.query, vars);
  const base = p.address.replace(/\/+$/, '');
  const end = now.getTime() / 1000;
  const params = new URLSearchParams({ query: promql });
  let path = '/api/v1/query';
  if (p.range) {
    path = '/api/v1/query_range';
    params.set('start', String(end - p.range.lookback / 1000));
    params.set('end', String(end));
    params.set('step', `${p.range.step / 1000}s`);
  } else {
    params.set('time', String(end));
  }
  const answer = (await call(`${base}${path}?${params.toString()}`, {
    method: 'GET',
    headers: headersOf(p.headers, vars, env),
    timeoutMs: p.timeout,
  })) as { status?: unknown; error?: unknown; data?: { resultType?: unknown; result?: unknown } };
  if (answer?.status !== 'success' || !answer.data) {
    throw new MeasurementError(`Prometheus: ${clipped(String(answer?.error ?? 'not a success answer'), 300)}`);
  }
  const { resultType, result } = answer.data;
  const detail = clipped(promql.replace(/\s+/g, ' ').trim(), 500);
  let value: number;
  if (resultType === 'scalar') {
    value = sampleValue(result);
  } else if (resultType === 'vector' || resultType === 'matrix') {
    if (!Array.isArray(result)) throw new MeasurementError(`Prometheus: a ${resultType} result that is not a list`);
    if (result.length === 0) return { value: null, detail: `${detail} → no series` };
    if (result.length > 1) {
      throw new MeasurementError(
        `Prometheus: the query returned ${result.length} series, not one: aggregate it (sum, max, ...) — ${detail}`,
      );
    }
    const series = result[0] as { value?: unknown; values?: unknown };
    if (resultType === 'vector') value = sampleValue(series.value);
    else {
      const points = (Array.isArray(series.values) ? series.values : []).map(sampleValue).filter((x) => !isNaN(x));
      if (points.length === 0) return { value: null, detail: `${detail} → no points` };
      const reduce = p.range?.reduce ?? 'max';
      value =
        reduce === 'last'
          ? points[points.length - 1]!
          : reduce === 'mean'
            ? points.reduce((a, b) => a + b, 0) / points.length
            : reduce === 'min'
              ? Math.min(...points)
              : Math.max(...points);
    }
  } else {
    throw new MeasurementError(`Prometheus: result type ${clipped(String(resultType), 40)} is not a number`);
  }
  if (Number.isNaN(value)) return { value: null, detail: `${detail} → NaN` };
  return { value, detail };
}

async function measureWeb(w: WebProvider, vars: MetricVariables, env: Env): Promise<Measurement> {
  const url = fillPlaceholders(w.url, vars, encodeURIComponent);
  if (!/^https?:\/\//.test(url)) throw new MeasurementError('the web check URL is not http:// or https://');
  const body = w.body === undefined ? undefined : fillPlaceholders(w.body, vars, (v) => JSON.stringify(v).slice(1, -1));
  const answer = await call(url, {
    method: w.method,
    headers: headersOf(w.headers, vars, env),
    ...(body === undefined ? {} : { body }),
    timeoutMs: w.timeout,
  });
  let found: unknown[];
  try {
    found = jsonPathQuery(answer as never, w.jsonPath);
  } catch (err) {
    throw new MeasurementError(`jsonPath ${w.jsonPath}: ${(err as Error).message}`);
  }
  const detail = `${w.method} ${redactUrl(url)} ${w.jsonPath}`;
  if (found.length === 0) throw new MeasurementError(`${detail}: nothing in the answer at this path`);
  if (found.length > 1) throw new MeasurementError(`${detail}: ${found.length} values at this path, not one`);
  const v = found[0];
  if (v === null) return { value: null, detail: `${detail} → null` };
  const value =
    typeof v === 'number' ? v : typeof v === 'boolean' ? Number(v) : typeof v === 'string' ? Number(v) : NaN;
  if (typeof v === 'string' && (v.trim() === '' || Number.isNaN(value))) {
    throw new MeasurementError(`${detail}: "${clipped(v, 40)}" is not a number`);
  }
  if (Number.isNaN(value)) throw new MeasurementError(`${detail}: a ${typeof v}, not a number`);
  return { value, detail };
}
