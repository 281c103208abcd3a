/**
 * The gateway's HTTP side: the public prediction and labels routes, the Open Inference Protocol, the admin API behind
 * its bearer token, metrics, and the error mapping; the state and operations are {@link GatewayCore}'s.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import pino, { type Logger } from 'pino';
import { z } from 'zod';
import { tokenProblem } from '../config/tokens';
import type { ArtifactStore } from '../artifacts/store-core';
import {
  DeployRequest,
  ModelName,
  OpId,
  SetFaultsRequest,
  SetRoutesRequest,
  SetWeightsRequest,
  VersionName,
} from '../shared/gateway-api';
import { firstProblem } from './issues';
import { HttpError } from './http-error';
import { openInference } from './oip';
import { PredictionMemory, type PredictionMemoryOptions } from './prediction-memory';
import { createGatewayMetrics, versionWeightsOf } from './prometheus-metrics';
import { RoutingStore } from './routing-store';
import { GatewayCore } from './gateway-core';

export { HttpError };

/** Options of {@link createGateway}. */
export interface GatewayOptions {
  /** Folder of the routing state file; created if missing. */
  dataDir: string;
  /**
   * Folder every deployed artifact must lie in once symbolic links are resolved (created if missing). A deploy naming
   * a folder elsewhere is refused, and so is a version whose folder left it when the gateway restarts.
   */
  artifactRoot: string;
  /** Bearer token every `/admin/...` route requires: at least 16 printable ASCII characters, no spaces. */
  adminToken: string;
  /**
   * Bearer token of `POST /v1/models/:model/labels`, which feeds the quality checks and through them automated
   * rollbacks. Without one the gateway takes no labels: every call is refused with 401.
   */
  labelsToken?: string;
  logger?: Logger;
  /** How many admin ops the idempotency journal keeps (default 1,000). */
  journalLimit?: number;
  /** How many bytes of JSON the idempotency journal keeps (default 1 MiB). */
  journalMaxBytes?: number;
  /**
   * Bounds of the memory of recent predictions that ground-truth labels join (default 100,000 predictions, 24 h);
   * a label for a prediction forgotten under them counts as unknown.
   */
  predictionMemory?: PredictionMemoryOptions;
  /**
   * At most one version per model (GATEWAY_SINGLE_VERSION): a deploy of another version of a model that has one is
   * refused with 409. For a gateway behind a router that splits traffic between gateways itself (the nginx target's
   * slots), where a second version would only be a version no split can reach.
   */
  singleVersion?: boolean;
  /**
   * The artifact store deploys name artifacts in (`artifactUri`): fetched into {@link artifactCacheDir}, checked against
   * their digest, and loaded from there. Absent: a deploy with an `artifactUri` is refused.
   */
  artifactStore?: ArtifactStore;
  /** Where fetched artifacts are kept (default `<dataDir>/artifact-cache`). */
  artifactCacheDir?: string;
}

/** Query of DELETE /admin/models/:model/versions/:version. */
const UndeployQuery = z.object({ opId: OpId });
const OpsQuery = z.object({ model: ModelName.optional() });
const ModelParams = z.object({ model: ModelName });
const VersionParams = z.object({ model: ModelName, version: VersionName });

/**
 * A prediction body can carry a batch of MAX_BATCH_ROWS rows (each up to MAX_REQUEST_FEATURES values): above fastify's
 * default of 1 MiB.
 */
const PREDICT_BODY_LIMIT = 8 * 1024 * 1024;

/** A labels body can be long (10,000 labels with their request ids): above fastify's default of 1 MiB. */
const LABELS_BODY_LIMIT = 8 * 1024 * 1024;

/** `value` parsed by `schema`, or a 400 `invalid <what>: <path>: <expected>` on one line. */
function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new HttpError(400, `invalid ${what}: ${firstProblem(parsed.error)}`);
  return parsed.data;
}

const INVALID_JSON_BODY =
  'invalid body: not JSON, or JSON with a "__proto__" key or a "constructor" key holding "prototype" (refused: ' +
  'such keys reach Object.prototype)';

function sendError(reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  return reply.code(statusCode).send({ error: message });
}

/** Where a listener binds. */
export interface ListenAddress {
  port: number;
  host: string;
}

/**
 * The serving gateway: one routing state and model set behind two listeners, so that the admin API can be bound where
 * only the control plane reaches it while predictions are served to everyone.
 */
export interface Gateway {
  /** `POST /v1/models/:model/predict`, `POST /v1/models/:model/labels` (labels token), `GET /metrics`, `GET /healthz`. */
  readonly public: FastifyInstance;
  /** Every `/admin/...` route, each behind the admin bearer token, and `GET /healthz` (without one). */
  readonly admin: FastifyInstance;
  /**
   * Starts both listeners; resolves with their addresses (`http://127.0.0.1:8700`). When the admin one cannot bind,
   * the public one may already listen: `close()` stops it.
   */
  listen(addresses: { public: ListenAddress; admin: ListenAddress }): Promise<{ public: string; admin: string }>;
  /** Stops both listeners, waits for the admin op in progress, then releases every model session; idempotent. */
  close(): Promise<void>;
}

/** The answer to an admin call without the right token: the same whether the header is missing, malformed or wrong. */
const ADMIN_UNAUTHORIZED =
  'admin API: missing or wrong bearer token (send Authorization: Bearer <the token the gateway was given in ' +
  'GATEWAY_ADMIN_TOKEN or GATEWAY_ADMIN_TOKEN_FILE>)';
const LABELS_UNAUTHORIZED =
  'labels: missing or wrong bearer token (send Authorization: Bearer <the token the gateway was given in ' +
  'GATEWAY_LABELS_TOKEN or GATEWAY_LABELS_TOKEN_FILE>)';
const LABELS_UNCONFIGURED =
  'labels need a token configured on the gateway (GATEWAY_LABELS_TOKEN or GATEWAY_LABELS_TOKEN_FILE); ' +
  'this gateway has none, so it takes no labels';

/**
 * A token's SHA-256. Tokens are compared by their digests: `timingSafeEqual` needs inputs of one length, and comparing
 * digests takes the same time whatever the caller sent, so the time of a refusal says nothing about the token.
 */
function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Whether the Authorization header is `Bearer <token>` for the token whose digest is `expected`. */
function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const given = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '')?.[1] ?? '';
  return timingSafeEqual(tokenDigest(given), expected);
}

function unauthorized(reply: FastifyReply, message: string): FastifyReply {
  return reply.code(401).header('www-authenticate', 'Bearer').send({ error: message });
}

/** The digest of a configured token, refusing one that is too weak to guard anything. */
function configuredToken(name: string, token: string): Buffer {
  const problem = tokenProblem(token);
  if (problem) throw new RangeError(`${name}: ${problem}`);
  return tokenDigest(token);
}

/** A fastify instance with the gateway's error answers (`{ error }`, one line) and `GET /healthz`. */
function listener(logger: Logger): FastifyInstance {
  const baseLogger: FastifyBaseLogger = logger;
  const app = Fastify({
    loggerInstance: baseLogger,
    // Per-request log lines would cost more than a prediction; admin ops and failures are logged explicitly.
    logController: new LogController({ disableRequestLogging: true }),
  });
  app.setErrorHandler((err: unknown, request, reply) => {
    // HttpErrors are expected outcomes, logged (if at all) where they are raised.
    if (err instanceof HttpError) return sendError(reply, err.statusCode, err.message);
    const statusCode = (err as { statusCode?: unknown }).statusCode;
    if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
      // Fastify's parser also refuses JSON that would reach a prototype, with the message of malformed JSON.
      if ((err as { code?: unknown }).code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
        return sendError(reply, statusCode, INVALID_JSON_BODY);
      }
      // Fastify's own client errors: wrong content type, body too large.
      return sendError(reply, statusCode, (err as Error).message);
    }
    request.log.error({ err, url: request.url }, 'unexpected error');
    return sendError(reply, 500, `internal error: ${(err as Error).message}`);
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, 404, `no route ${request.method} ${request.url}`));
  app.get('/healthz', async () => ({ ok: true }));
  return app;
}

/**
 * Creates the serving gateway: restores routing from `dataDir`, reloads every deployed model version (checking each
 * against its recorded digest), and returns its two listeners, not listening yet.
 * Telemetry is in memory only and starts from zero on every start; so are injected faults, which start cleared, and
 * the predictions remembered for ground-truth labels (labels of predictions made before a restart count as unknown).
 */
export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const logger = options.logger ?? pino({ level: 'silent' });
  const adminToken = configuredToken('adminToken', options.adminToken);
  const labelsToken =
    options.labelsToken === undefined ? undefined : configuredToken('labelsToken', options.labelsToken);
  const requestedRoot = path.resolve(options.artifactRoot);
  await mkdir(requestedRoot, { recursive: true });
  // Compared with real paths of artifact folders, so the root is one too (/tmp may be a link, as on macOS).
  const artifactRoot = await realpath(requestedRoot);
  const core = new GatewayCore(
    new RoutingStore(options.dataDir, options.journalLimit, options.journalMaxBytes),
    logger,
    new PredictionMemory(options.predictionMemory),
    artifactRoot,
    options.singleVersion ?? false,
    options.artifactStore
      ? {
          store: options.artifactStore,
          cacheDir: path.resolve(options.artifactCacheDir ?? path.join(options.dataDir, 'artifact-cache')),
        }
      : null,
  );
  await core.restore();

  const publicApp = listener(logger);
  publicApp.post<{ Params: { model: string } }>(
    '/v1/models/:model/predict',
    { bodyLimit: PREDICT_BODY_LIMIT },
    (request) => core.predict(request.params.model, request.body, request.headers),
  );
  // The Open Inference Protocol (KServe v2) beside /v1: the same routing, telemetry and labels.
  await publicApp.register(openInference(core, PREDICT_BODY_LIMIT));
  publicApp.post(
    '/v1/models/:model/labels',
    {
      bodyLimit: LABELS_BODY_LIMIT,
      // Before the body is read (up to 8 MiB): a caller without the token costs no parsing and counts nothing.
      onRequest: async (request, reply) => {
        if (!labelsToken) return unauthorized(reply, LABELS_UNCONFIGURED);
        if (!bearerMatches(request.headers.authorization, labelsToken)) return unauthorized(reply, LABELS_UNAUTHORIZED);
      },
    },
    async (request) => core.labels(parse(ModelParams, request.params, 'path').model, request.body),
  );
  // Without a token, so that Prometheus scrapes it: model and version names and counts only, read at scrape time.
  const metrics = createGatewayMetrics(core.telemetry, () => versionWeightsOf(core.listRouting()));
  publicApp.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.metrics()));

  const admin = listener(logger);
  // Every request but the health check, known route or not, before its body is read: a caller without the token
  // changes nothing, has nothing parsed and learns nothing, not even which routes exist.
  admin.addHook('onRequest', async (request, reply) => {
    if (request.routeOptions.url === '/healthz') return;
    if (!bearerMatches(request.headers.authorization, adminToken)) return unauthorized(reply, ADMIN_UNAUTHORIZED);
  });

  admin.put('/admin/models/:model/versions/:version', async (request) => {
    const { model, version } = parse(VersionParams, request.params, 'path');
    return core.deploy(model, version, parse(DeployRequest, request.body, 'deploy request'));
  });

  admin.delete('/admin/models/:model/versions/:version', async (request) => {
    const { model, version } = parse(VersionParams, request.params, 'path');
    return core.undeploy(model, version, parse(UndeployQuery, request.query, 'query').opId);
  });

  admin.put('/admin/models/:model/weights', async (request) => {
    const { model } = parse(ModelParams, request.params, 'path');
    return core.setWeights(model, parse(SetWeightsRequest, request.body, 'weights request'));
  });

  admin.put('/admin/models/:model/routes', async (request) => {
    const { model } = parse(ModelParams, request.params, 'path');
    return core.setRoutes(model, parse(SetRoutesRequest, request.body, 'routes request'));
  });

  const faultsPath = '/admin/models/:model/versions/:version/faults';
  admin.put(faultsPath, async (request) => {
    const { model, version } = parse(VersionParams, request.params, 'path');
    return core.setFaults(model, version, parse(SetFaultsRequest, request.body, 'faults request'));
  });
  admin.get(faultsPath, async (request) => {
    const { model, version } = parse(VersionParams, request.params, 'path');
    return core.faults(model, version);
  });
  admin.delete(faultsPath, async (request) => {
    const { model, version } = parse(VersionParams, request.params, 'path');
    return core.clearFaults(model, version);
  });

  admin.get('/admin/models', async () => core.listRouting());
  admin.get('/admin/models/:model', async (request) => core.routing(parse(ModelParams, request.params, 'path').model));
  admin.get('/admin/models/:model/telemetry', async (request) =>
    core.modelTelemetry(parse(ModelParams, request.params, 'path').model),
  );
  admin.get('/admin/ops', async (request) => core.ops(parse(OpsQuery, request.query, 'query').model));

  let closing: Promise<void> | undefined;
  return {
    public: publicApp,
    admin,
    async listen(addresses) {
      const publicAddress = await publicApp.listen(addresses.public);
      const adminAddress = await admin.listen(addresses.admin);
      return { public: publicAddress, admin: adminAddress };
    },
    close() {
      closing ??= (async () => {
        // Listeners first, so that no new request reaches the models while their sessions are released.
        await Promise.all([publicApp.close(), admin.close()]);
        await core.close();
      })();
      return closing;
    },
  };
}
