import { z } from 'zod';
import { own } from './own';

/**
 * Where a lifecycle deploys its versions and reads their telemetry. Workflow-safe (zod only): a lifecycle spec carries
 * it, the workflow passes it to the deployment activities, the worker resolves it to a `DeploymentTarget` (src/targets/contract.ts).
 */

export const HttpUrl = z.url({ protocol: /^https?$/, error: 'an http:// or https:// URL' });

/** The serving gateway of this project: the worker's configured one, or another at `url`. */
export const GatewayTargetSpec = z
  .object({
    kind: z.literal('gateway'),
    /**
     * The admin URL (its admin listener, GATEWAY_ADMIN_PORT) of another gateway than the worker's
     * (`GATEWAY_ADMIN_URL`); the worker sends it its admin token.
     */
    url: HttpUrl.optional(),
  })
  .strict();
export type GatewayTargetSpec = z.infer<typeof GatewayTargetSpec>;

export const HttpMethod = z.enum(['GET', 'POST', 'PUT', 'DELETE', 'PATCH']);
export type HttpMethod = z.infer<typeof HttpMethod>;

/** One call of a target's HTTP API. `path` is appended to the target's `baseUrl`; placeholders are URL-encoded. */
export const TargetEndpoint = z
  .object({
    method: HttpMethod,
    path: z.string().startsWith('/', 'a path starting with /'),
  })
  .strict();
export type TargetEndpoint = z.infer<typeof TargetEndpoint>;

/** The four calls of a target, and the placeholders each one's path may use. */
export const ENDPOINT_PLACEHOLDERS = {
  deploy: ['model', 'version'],
  setWeights: ['model'],
  undeploy: ['model', 'version'],
  telemetry: ['model'],
} as const;
export type EndpointName = keyof typeof ENDPOINT_PLACEHOLDERS;

/**
 * A header's value: literal (written to workflow history like the rest of the spec: never a secret), or read from the
 * worker's environment when the request is made (`{ fromEnv: 'KSERVE_TOKEN' }`), which keeps secrets out of history.
 */
export const HeaderValue = z.union([
  z.string(),
  z
    .object({
      fromEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name'),
    })
    .strict(),
]);
export type HeaderValue = z.infer<typeof HeaderValue>;

/**
 * Header values as they are sent: literals as given, `{ fromEnv }` from `env`. A variable that is unset or empty is
 * listed in `missing` (its header left out), for the caller to report in its own terms.
 */
export function resolveHeaderValues(
  values: Readonly<Record<string, HeaderValue>> | undefined,
  env: Readonly<Record<string, string | undefined>>,
): { headers: Record<string, string>; missing: { header: string; variable: string }[] } {
  const headers = new Map<string, string>();
  const missing: { header: string; variable: string }[] = [];
  for (const [header, value] of Object.entries(values ?? {})) {
    if (typeof value === 'string') {
      headers.set(header, value);
      continue;
    }
    // Own variables only: `{ fromEnv: 'constructor' }` must not read a member of the environment object.
    const resolved = own(env, value.fromEnv);
    if (resolved) headers.set(header, resolved);
    else missing.push({ header, variable: value.fromEnv });
  }
  return { headers: Object.fromEntries(headers), missing };
}

// RFC 9110 token: the characters a header name may hold.
export const HeaderName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'a header name');

/**
 * Any platform behind four HTTP endpoints (an adapter in front of KServe, SageMaker, Istio, ...). Bodies are JSON:
 * deploy `{ model, version, artifactDir, artifactDigest, opId }`, setWeights `{ model, weights, opId }`, undeploy
 * `{ model, version, opId }`; telemetry answers `ModelTelemetry`.
 */
export const HttpTargetSpec = z
  .object({
    kind: z.literal('http'),
    /** How errors and logs name the target (default: its base URL). */
    name: z.string().min(1).max(63).optional(),
    baseUrl: HttpUrl,
    headers: z.record(HeaderName, HeaderValue).optional(),
    /** Per request. The deployment activities have one minute each, so a longer wait could never be used. */
    timeoutMs: z.number().int().positive().max(60_000).default(30_000),
    endpoints: z
      .object({
        deploy: TargetEndpoint,
        setWeights: TargetEndpoint,
        undeploy: TargetEndpoint,
        telemetry: TargetEndpoint,
      })
      .strict(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    for (const name of Object.keys(ENDPOINT_PLACEHOLDERS) as EndpointName[]) {
      const endpoint = spec.endpoints[name];
      const problem = pathProblem(endpoint.path, ENDPOINT_PLACEHOLDERS[name]);
      if (problem) ctx.addIssue({ code: 'custom', path: ['endpoints', name, 'path'], message: problem });
      // fetch cannot send a body with GET, and the mutations are defined by their bodies.
      if (name !== 'telemetry' && endpoint.method === 'GET') {
        ctx.addIssue({
          code: 'custom',
          path: ['endpoints', name, 'method'],
          message: `${name} sends a JSON body: use POST, PUT, PATCH or DELETE, not GET`,
        });
      }
    }
  });
export type HttpTargetSpec = z.infer<typeof HttpTargetSpec>;

/** A router's name in the worker's ML_NGINX_TARGETS file (src/config/nginx-targets.ts). */
export const NGINX_ROUTER_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const NginxRouterName = z
  .string()
  .regex(NGINX_ROUTER_NAME_RE, 'a router name: lowercase letters, digits and dashes, starting with a letter or digit');

/**
 * An nginx router the worker declares (ML_NGINX_TARGETS). The spec only names it: where nginx keeps its config, which
 * binary runs and which gateways serve the versions are the worker's configuration, never a spec's.
 */
export const NginxTargetSpec = z.object({ kind: z.literal('nginx'), name: NginxRouterName }).strict();
export type NginxTargetSpec = z.infer<typeof NginxTargetSpec>;

export const DeploymentTargetSpec = z.discriminatedUnion('kind', [GatewayTargetSpec, HttpTargetSpec, NginxTargetSpec]);
/** A validated target (defaults applied). */
export type DeploymentTargetSpec = z.infer<typeof DeploymentTargetSpec>;
/** A target as written in a spec or passed to an activity (defaults not yet applied). */
export type DeploymentTargetSpecInput = z.input<typeof DeploymentTargetSpec>;

/** No target given: the worker's own gateway, exactly as before targets existed. */
export const DEFAULT_TARGET = { kind: 'gateway' } as const satisfies DeploymentTargetSpec;

/**
 * A short name for events and messages: `gateway`, `gateway http://...`, `http target kserve-adapter`,
 * `nginx target edge`.
 */
export function targetLabel(spec: DeploymentTargetSpecInput | undefined): string {
  if (!spec || spec.kind === 'gateway') return spec?.url ? `gateway ${spec.url}` : 'gateway';
  if (spec.kind === 'nginx') return `nginx target ${spec.name}`;
  return `http target ${spec.name ?? spec.baseUrl}`;
}

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** Why `path` is not a valid endpoint path with these placeholders, or null when it is. */
function pathProblem(path: string, allowed: readonly string[]): string | null {
  const unknown = [...path.matchAll(PLACEHOLDER)].map((m) => m[1]!).filter((p) => !allowed.includes(p));
  const fills = allowed.map((p) => `{${p}}`).join(', ');
  if (unknown.length > 0) {
    const names = [...new Set(unknown)].map((p) => `{${p}}`).join(', ');
    return `unknown placeholder ${names} in path "${path}": this endpoint fills ${fills}`;
  }
  if (/[{}]/.test(path.replace(PLACEHOLDER, ''))) return `unbalanced brace in path "${path}"`;
  return null;
}

/** The path with its placeholders filled, each value URL-encoded as one path segment or query value. */
export function fillPath(path: string, values: Readonly<Record<string, string>>): string {
  return path.replace(PLACEHOLDER, (whole, name: string) => {
    const value = own(values, name);
    return value === undefined ? whole : encodeURIComponent(value);
  });
}
