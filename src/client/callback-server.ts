import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import { Identity, ModelName, VersionName } from '../shared/names';
import { SignedOperation } from '../shared/signed-operation';
import { InvalidInputError, NotFoundError, RefusedError, type LifecycleClient } from './lifecycle-client';

/**
 * The confirm callback: an external system (CI, a change-management tool) decides a gate it was asked about (the
 * `approval-requested` alert routed to it, whose `details.signing` says what to sign) by POSTing its signed decision:
 *
 *   POST /v1/lifecycles/:id/gates/:gate/decision
 *   { "decision": "approved" | "rejected", "by": "ci-bot", "reason": "...", "signed": { claim, keyId, signature } }
 *
 * The server holds no secret and trusts nobody: the decision must carry an Ed25519-signed claim (unsigned ones are
 * refused with 400), which the lifecycle itself verifies against the approver keyring and the gate's approvers before
 * it counts; it answers the lifecycle's acknowledgement (200), or 400 (malformed), 403 (refused: wrong key, not an
 * approver, not pending, replayed), 404 (no such lifecycle) or 503 (Temporal unreachable).
 */

/** Lifecycle workflow ids: `lifecycle-<model>-<version>`. */
const LifecycleId = z
  .string()
  .max(300)
  .refine((id) => {
    const rest = /^lifecycle-(.+)$/.exec(id)?.[1];
    if (!rest) return false;
    // A model name may hold dashes: some split of the rest must give a valid model and version.
    return [...rest.matchAll(/-/g)].some(
      (m) =>
        ModelName.safeParse(rest.slice(0, m.index)).success && VersionName.safeParse(rest.slice(m.index + 1)).success,
    );
  }, 'a lifecycle id: lifecycle-<model>-<version>');

const Params = z
  .object({
    id: LifecycleId,
    gate: z.string().regex(/^(deploy|production|ramp-\d+(\.\d+)?)$/, 'a gate: deploy, production or ramp-<percent>'),
  })
  .strict();

const DecisionBody = z
  .object({
    decision: z.enum(['approved', 'rejected']),
    by: Identity,
    reason: z.string().max(2000).default(''),
    signed: SignedOperation,
  })
  .strict();

/** Most bytes of a decision: a signed claim is well under 4 KiB. */
const BODY_LIMIT = 64 * 1024;

export interface CallbackServerOptions {
  lifecycles: LifecycleClient;
  logger?: Logger;
}

function firstProblem(error: z.ZodError): string {
  const issue = error.issues[0]!;
  return `${issue.path.join('.') || '(root)'}: ${issue.message}`;
}

/** The callback server (not listening yet): `listen({ port, host })` starts it. */
export function createCallbackServer(options: CallbackServerOptions): FastifyInstance {
  const logger: FastifyBaseLogger | undefined = options.logger;
  const app = Fastify({
    bodyLimit: BODY_LIMIT,
    ...(logger ? { loggerInstance: logger } : {}),
    logController: new LogController({ disableRequestLogging: true }),
  });
  app.setErrorHandler((err: { statusCode?: number; message: string }, _request, reply) => {
    const status = typeof err.statusCode === 'number' && err.statusCode < 500 ? err.statusCode : 500;
    return reply.code(status).send({ error: err.message });
  });
  app.get('/healthz', async () => ({ ok: true }));
  app.post('/v1/lifecycles/:id/gates/:gate/decision', async (request, reply) => {
    const params = Params.safeParse(request.params);
    if (!params.success) return reply.code(400).send({ error: `invalid path: ${firstProblem(params.error)}` });
    const body = DecisionBody.safeParse(request.body);
    if (!body.success) {
      const unsigned = body.error.issues.some((i) => i.path[0] === 'signed' && i.code === 'invalid_type');
      return reply.code(400).send({
        error: unsigned
          ? 'invalid decision: signed: a callback decision must carry a signed claim (see the approval-requested alert)'
          : `invalid decision: ${firstProblem(body.error)}`,
      });
    }
    const { id, gate } = params.data;
    const { decision, by, reason, signed } = body.data;
    try {
      const input = { gate, by, reason, signed };
      const ack =
        decision === 'approved'
          ? await options.lifecycles.approve(id, input)
          : await options.lifecycles.reject(id, input);
      options.logger?.info({ lifecycleId: id, gate, by, decision }, 'gate decided through the callback');
      return ack;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (err instanceof NotFoundError) return reply.code(404).send({ error: message });
      if (err instanceof InvalidInputError) return reply.code(400).send({ error: message });
      if (err instanceof RefusedError) {
        options.logger?.warn({ lifecycleId: id, gate, by, reason: message }, 'callback decision refused');
        return reply.code(403).send({ error: message });
      }
      options.logger?.error({ err, lifecycleId: id, gate }, 'callback decision could not be delivered');
      return reply.code(503).send({ error: `the decision could not reach the lifecycle now: ${message}` });
    }
  });
  return app;
}

/** `ML_CALLBACK_PORT` (and `ML_CALLBACK_HOST`, default 127.0.0.1): where the worker serves the callback; none: off. */
export function callbackAddressFromEnv(env: NodeJS.ProcessEnv = process.env): { port: number; host: string } | null {
  const parsed = z
    .object({
      ML_CALLBACK_PORT: z.coerce.number().int().min(0).max(65535).optional(),
      ML_CALLBACK_HOST: z.string().min(1).default('127.0.0.1'),
    })
    .safeParse({
      ML_CALLBACK_PORT: env.ML_CALLBACK_PORT || undefined,
      ML_CALLBACK_HOST: env.ML_CALLBACK_HOST || undefined,
    });
  if (!parsed.success) throw new RangeError(`ML_CALLBACK_PORT: ${firstProblem(parsed.error)}`);
  const { ML_CALLBACK_PORT: port, ML_CALLBACK_HOST: host } = parsed.data;
  return port === undefined ? null : { port, host };
}
