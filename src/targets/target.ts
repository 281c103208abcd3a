import { ApplicationFailure } from '@temporalio/activity';
import { z } from 'zod';
import { ErrorType } from '../shared/errors';
import { AdminResult, ModelRouting } from '../shared/gateway-api';
import { cut } from '../shared/text';
import {
  LATENCY_BUCKETS_MS,
  MAX_TELEMETRY_BYTES,
  ModelTelemetry,
  PREDICTION_BINS,
  VersionTelemetry,
} from '../shared/telemetry';
import type { DeployRequestInput, DeploymentTarget, SetRoutesInput, SetWeightsInput, UndeployInput } from './contract';
import { ReplicatedGatewayTarget } from './replicas';
import { targetRequest } from './request';
import {
  DeploymentTargetSpec,
  fillPath,
  resolveHeaderValues,
  targetLabel,
  type DeploymentTargetSpecInput,
  type EndpointName,
  type HttpTargetSpec,
} from '../shared/deployment-target';

/** How the worker reaches a serving gateway's admin API. */
export interface GatewayAdminAccess {
  /** Base URL of the admin listener (GATEWAY_ADMIN_URL), without a trailing slash. */
  url: string;
  /**
   * The admin URLs of every replica when GATEWAY_ADMIN_URL lists several (`url` is the first): the worker's gateway is
   * then a {@link ReplicatedGatewayTarget}. Absent (or one entry) for a single gateway.
   */
  replicas?: readonly string[];
  /**
   * Bearer token of the admin API (GATEWAY_ADMIN_TOKEN): sent to the worker's gateway, and also to the admin URL a
   * spec names with `{ kind: gateway, url }` (gateways of one platform share it).
   */
  token: string;
}

export interface TargetDeps {
  /** The worker's gateway: the target when none is given. */
  gateway: GatewayAdminAccess;
  /** Where `{ fromEnv }` header values are read (default: process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * The nginx routers the worker declares (ML_NGINX_TARGETS), by name, built once at worker start: each serializes
   * its own config writes, so every activity must reach the same instance.
   */
  nginx?: ReadonlyMap<string, DeploymentTarget>;
}

const enc = encodeURIComponent;
const GATEWAY_TIMEOUT_MS = 30_000;

/** The project's serving gateway, through its admin API (src/serving): its admin listener, with its bearer token. */
export class GatewayTarget implements DeploymentTarget {
  readonly label = 'gateway';
  private readonly url: string;
  private readonly headers: Record<string, string>;

  constructor(access: GatewayAdminAccess) {
    this.url = access.url.replace(/\/+$/, '');
    this.headers = { authorization: `Bearer ${access.token}` };
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const req = {
      who: 'gateway',
      baseUrl: this.url,
      method,
      path,
      headers: this.headers,
      body,
      timeoutMs: GATEWAY_TIMEOUT_MS,
    };
    return (await targetRequest(req)).json as T;
  }

  deploy(input: DeployRequestInput): Promise<AdminResult> {
    return this.call('PUT', `/admin/models/${enc(input.model)}/versions/${enc(input.version)}`, {
      opId: input.opId,
      artifactDir: input.artifactDir,
      artifactDigest: input.artifactDigest,
      ...(input.artifactUri ? { artifactUri: input.artifactUri } : {}),
      ...(input.predictionEdges ? { predictionEdges: input.predictionEdges } : {}),
    });
  }

  setWeights(input: SetWeightsInput): Promise<AdminResult> {
    return this.call('PUT', `/admin/models/${enc(input.model)}/weights`, { opId: input.opId, weights: input.weights });
  }

  setRoutes(input: SetRoutesInput): Promise<AdminResult> {
    const { model, opId, pins, shadow } = input;
    return this.call('PUT', `/admin/models/${enc(model)}/routes`, { opId, pins, ...(shadow ? { shadow } : {}) });
  }

  undeploy(input: UndeployInput): Promise<AdminResult> {
    return this.call(
      'DELETE',
      `/admin/models/${enc(input.model)}/versions/${enc(input.version)}?opId=${enc(input.opId)}`,
    );
  }

  async readTelemetry(model: string): Promise<ModelTelemetry> {
    const path = `/admin/models/${enc(model)}/telemetry`;
    return checkTelemetry(this.label, `GET ${path}`, model, await this.call('GET', path));
  }

  async readWeights(model: string): Promise<Record<string, number>> {
    // The list answers for a model that is not deployed too (it is absent: no weights), where GET of it is a 404.
    const parsed = z.array(ModelRouting).safeParse(await this.call('GET', '/admin/models'));
    if (!parsed.success) {
      throw ApplicationFailure.create({
        type: ErrorType.GatewayRefused,
        message: `gateway GET /admin/models: not a list of model routings: ${cut(parsed.error.message, 500)}`,
        nonRetryable: true,
      });
    }
    return parsed.data.find((r) => r.model === model)?.weights ?? {};
  }
}

/**
 * A platform behind four configured HTTP endpoints. Same failure rules as the gateway, except that 408 and 429 are
 * retryable: they ask to come back later, which is what a retry does.
 */
export class HttpTarget implements DeploymentTarget {
  readonly label: string;
  private readonly baseUrl: string;

  constructor(
    private readonly spec: HttpTargetSpec,
    private readonly headers: Record<string, string>,
  ) {
    this.label = targetLabel(spec);
    this.baseUrl = spec.baseUrl.replace(/\/+$/, '');
  }

  /** Calls one endpoint; DELETE also carries the opId as a query parameter (proxies may drop DELETE bodies). */
  private async call(
    name: EndpointName,
    values: Record<string, string>,
    body?: { opId?: string; [key: string]: unknown },
  ): Promise<{ path: string; json: unknown }> {
    const { method, path: template } = this.spec.endpoints[name];
    let path = fillPath(template, values);
    if (method === 'DELETE' && body?.opId !== undefined) {
      path += `${path.includes('?') ? '&' : '?'}opId=${enc(body.opId)}`;
    }
    const answer = await targetRequest(
      {
        who: this.label,
        baseUrl: this.baseUrl,
        method,
        path,
        headers: { accept: 'application/json', ...this.headers },
        ...(method === 'GET' ? {} : { body }),
        timeoutMs: this.spec.timeoutMs,
      },
      [408, 429],
    );
    return { path, json: answer.json };
  }

  /** The target's own AdminResult when it answers one; otherwise the 2xx means applied. */
  private static result(json: unknown, opId: string): AdminResult {
    const parsed = AdminResult.safeParse(json);
    return parsed.success ? parsed.data : { opId, applied: true };
  }

  async deploy(input: DeployRequestInput): Promise<AdminResult> {
    const { model, version, artifactDir, artifactDigest, predictionEdges, opId } = input;
    const { json } = await this.call(
      'deploy',
      { model, version },
      { model, version, artifactDir, artifactDigest, ...(predictionEdges ? { predictionEdges } : {}), opId },
    );
    return HttpTarget.result(json, opId);
  }

  async setWeights(input: SetWeightsInput): Promise<AdminResult> {
    const { model, weights, opId } = input;
    const { json } = await this.call('setWeights', { model }, { model, weights, opId });
    return HttpTarget.result(json, opId);
  }

  async undeploy(input: UndeployInput): Promise<AdminResult> {
    const { model, version, opId } = input;
    const { json } = await this.call('undeploy', { model, version }, { model, version, opId });
    return HttpTarget.result(json, opId);
  }

  async readTelemetry(model: string): Promise<ModelTelemetry> {
    const { path, json } = await this.call('telemetry', { model }, { model });
    return checkTelemetry(this.label, `${this.spec.endpoints.telemetry.method} ${path}`, model, json);
  }

  /** The four endpoints have no read of the weight table: a rollback on this target trusts the acknowledged swap. */
  readWeights(): Promise<null> {
    return Promise.resolve(null);
  }
}

const LATENCY_BUCKETS = LATENCY_BUCKETS_MS.length + 1;

/** Problems of a malformed telemetry answer named in the failure. */
const MAX_PROBLEMS = 20;

/**
 * ModelTelemetry as the analysis reads it: histograms with the gateway's buckets and bins, every version under its own
 * name. Lengths are checked field by field so one answer reports every problem at once. Built by extending the shared
 * schema (never picking from it), so its optional fields (`inputs`, `quality`) are checked and passed through as they
 * are, and a target that does not report them stays valid.
 */
const TargetTelemetry = ModelTelemetry.extend({
  versions: z.record(
    z.string(),
    VersionTelemetry.extend({
      latencyBucketCounts: VersionTelemetry.shape.latencyBucketCounts.length(
        LATENCY_BUCKETS,
        `expected ${LATENCY_BUCKETS} latency buckets (upper bounds ${LATENCY_BUCKETS_MS.join(', ')} ms, then overflow)`,
      ),
      predictionBinCounts: VersionTelemetry.shape.predictionBinCounts.length(
        PREDICTION_BINS,
        `expected ${PREDICTION_BINS} equal-width probability bins over [0, 1]`,
      ),
    }),
  ),
}).superRefine((t, ctx) => {
  for (const [key, v] of Object.entries(t.versions)) {
    if (v.version !== key) {
      ctx.addIssue({
        code: 'custom',
        path: ['versions', key, 'version'],
        message: `is "${v.version}" under the key "${key}"`,
      });
    }
  }
});

/**
 * The target's telemetry answer, validated. A wrong shape is a contract bug of the receiver that a retry will not fix:
 * non-retryable, naming every field that is wrong. So is an answer larger than {@link MAX_TELEMETRY_BYTES}: it would
 * not fit in workflow history (the gateway's own answers are bounded far below it, see src/shared/telemetry.ts).
 */
function checkTelemetry(who: string, call: string, model: string, json: unknown): ModelTelemetry {
  const fail = (problem: string) =>
    ApplicationFailure.create({
      type: ErrorType.GatewayRefused,
      message: `${who} ${call}: the telemetry answer ${cut(problem, 4000)}`,
      nonRetryable: true,
    });
  if (json === undefined) throw fail('is empty or not JSON (expected ModelTelemetry, see src/shared/telemetry.ts)');
  const parsed = TargetTelemetry.safeParse(json);
  if (!parsed.success) {
    // The failure goes into workflow history: name the first problems only, however many the answer has.
    const { issues } = parsed.error;
    const more = issues.length > MAX_PROBLEMS ? `\n(and ${issues.length - MAX_PROBLEMS} more problems)` : '';
    throw fail(`is not ModelTelemetry:\n${z.prettifyError(new z.ZodError(issues.slice(0, MAX_PROBLEMS)))}${more}`);
  }
  if (parsed.data.model !== model) throw fail(`is for model "${parsed.data.model}", not "${model}"`);
  // Per-replica snapshots are what the replicated target adds from the replicas it read itself: never a target's say.
  const { replicas: _replicas, ...telemetry } = parsed.data;
  const bytes = Buffer.byteLength(JSON.stringify(telemetry));
  if (bytes > MAX_TELEMETRY_BYTES) {
    throw fail(`is ${bytes} bytes of JSON, more than ${MAX_TELEMETRY_BYTES} can be carried through workflow history`);
  }
  return telemetry;
}

/**
 * The target a deployment activity acts on: the worker's gateway when `spec` is absent. A spec that does not validate
 * or a header whose environment variable is unset is a non-retryable InvalidSpec naming the problem.
 */
export function resolveTarget(spec: DeploymentTargetSpecInput | undefined, deps: TargetDeps): DeploymentTarget {
  if (spec === undefined) return workerGateway(deps.gateway);
  const parsed = DeploymentTargetSpec.safeParse(spec);
  if (!parsed.success) {
    throw ApplicationFailure.create({
      type: ErrorType.InvalidSpec,
      message: `invalid deployment target:\n${z.prettifyError(parsed.error)}`,
      nonRetryable: true,
    });
  }
  const target = parsed.data;
  if (target.kind === 'gateway') {
    // Another gateway's admin URL: the platform's gateways share the admin token, so the worker's goes there too.
    return target.url ? new GatewayTarget({ url: target.url, token: deps.gateway.token }) : workerGateway(deps.gateway);
  }
  if (target.kind === 'nginx') return nginxRouter(target.name, deps.nginx);
  return new HttpTarget(target, resolveHeaders(target, deps.env ?? process.env));
}

/** The worker's gateway: one admin API, or all its replicas when GATEWAY_ADMIN_URL lists several. */
function workerGateway(access: GatewayAdminAccess): DeploymentTarget {
  const urls = access.replicas ?? [];
  if (urls.length < 2) return new GatewayTarget(access);
  return new ReplicatedGatewayTarget(
    urls.map((url) => ({ url, target: new GatewayTarget({ url, token: access.token }) })),
  );
}

/** The worker's router of that name; a name it does not declare is an InvalidSpec that names those it does. */
function nginxRouter(name: string, routers: ReadonlyMap<string, DeploymentTarget> | undefined): DeploymentTarget {
  const router = routers?.get(name);
  if (router) return router;
  const known = [...(routers?.keys() ?? [])];
  throw ApplicationFailure.create({
    type: ErrorType.InvalidSpec,
    message:
      `nginx target ${name}: the worker declares no router of that name ` +
      (known.length > 0 ? `(ML_NGINX_TARGETS declares ${known.join(', ')})` : '(ML_NGINX_TARGETS declares none)'),
    nonRetryable: true,
  });
}

/** Literal header values as given; `{ fromEnv }` ones from the worker's environment, never from history. */
function resolveHeaders(
  spec: HttpTargetSpec,
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string> {
  const resolved = resolveHeaderValues(spec.headers, env);
  const missing = resolved.missing.map((m) => `${m.variable} (header ${m.header})`);
  if (missing.length > 0) {
    const which = missing.length === 1 ? `variable ${missing[0]} is` : `variables ${missing.join(', ')} are`;
    throw ApplicationFailure.create({
      type: ErrorType.InvalidSpec,
      message: `${targetLabel(spec)}: environment ${which} not set on the worker`,
      nonRetryable: true,
    });
  }
  return resolved.headers;
}
