import { z } from 'zod';
import { Identity, nameRecord } from './names';
import { own } from './own';

/*
 * The platform policy: who may do what to which models, decided by the platform team in a worker-side file
 * (config/policy.yaml or ML_POLICY_FILE), never by the submitter's spec. A spec may tighten what the policy says
 * (fewer approvers, a higher quorum, signatures where the policy leaves them optional); a spec that loosens it is
 * refused at start, naming the rule. Workflow-safe: zod and plain data only (the file is read in src/config/policy.ts).
 */

/** Every privileged operation: each one is signed by default, unless the policy lists it under `signatures.unsigned`. */
export const OPERATIONS = [
  'approve',
  'reject',
  'promote-now',
  'abort',
  'pause',
  'resume',
  'rollback',
  'alert-override',
  'alert-silence',
  'quota-release',
  'quota-renew',
] as const;
export const Operation = z.enum(OPERATIONS);
export type Operation = z.infer<typeof Operation>;

/** Identities compare case-insensitively: `Alice` and `alice` are one person, in the policy, the spec and the CLI. */
export function normalizeIdentity(who: string): string {
  return who.trim().toLowerCase();
}

export function sameIdentity(a: string, b: string): boolean {
  return normalizeIdentity(a) === normalizeIdentity(b);
}

/** Whether `who` is in `list`, case-insensitively. */
export function listed(list: readonly string[], who: string): boolean {
  const me = normalizeIdentity(who);
  return list.some((x) => normalizeIdentity(x) === me);
}

/** A model glob: model-name characters, `*` (any run) and `?` (one character). */
const ModelGlob = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z0-9*?][a-z0-9*?-]*$/, 'a model name pattern: lowercase letters, digits, dashes, * and ?');

/** Whether model name `model` matches `glob` (`*` any run of characters, `?` one). */
export function globMatches(glob: string, model: string): boolean {
  // Iterative wildcard match: linear-ish, no regular expression built from input.
  let g = 0;
  let m = 0;
  let star = -1;
  let mark = 0;
  while (m < model.length) {
    if (g < glob.length && (glob[g] === '?' || glob[g] === model[m])) {
      g++;
      m++;
    } else if (g < glob.length && glob[g] === '*') {
      star = g++;
      mark = m;
    } else if (star >= 0) {
      g = star + 1;
      m = ++mark;
    } else return false;
  }
  while (g < glob.length && glob[g] === '*') g++;
  return g === glob.length;
}

const Identities = z.array(Identity).max(500);
const Quorum = z.number().int().min(1).max(100);
const GateName = z
  .string()
  .regex(
    /^(deploy|production|promote-now|ramp-\d+(\.\d+)?)$/,
    'a gate: deploy, production, promote-now or ramp-<percent>',
  );
const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'an environment variable name');
/**
 * An allowed target: an http(s) URL prefix; a target's base URL must have its origin and start with its path (at a
 * path boundary). `:*` as the port allows any port of that host (`http://127.0.0.1:*`).
 */
const UrlPrefix = z
  .string()
  .max(2048)
  .refine((p) => parsePrefix(p) !== null, 'an http:// or https:// URL (the port may be *)');

/** A URL prefix with its port wildcard taken apart; null when it is not an http(s) URL. */
function parsePrefix(prefix: string): { url: URL; anyPort: boolean } | null {
  const anyPort = /^https?:\/\/[^/]+:\*(\/|$)/.test(prefix);
  try {
    const url = new URL(anyPort ? prefix.replace(/:\*(?=\/|$)/, '') : prefix);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    if (url.username || url.password || url.search || url.hash) return null;
    return { url, anyPort };
  } catch {
    return null;
  }
}

const PolicyGate = z
  .object({
    approvers: Identities.min(1).optional(),
    quorum: Quorum.optional(),
  })
  .strict();

/** The rules of one model pattern (or the defaults); every section and field is optional and overrides the defaults. */
const ModelRules = z
  .object({
    approval: z
      .object({
        approvers: Identities.min(1).optional(),
        quorum: Quorum.optional(),
        gates: nameRecord(GateName, PolicyGate).optional(),
      })
      .strict()
      .optional(),
    /** Who may do each operator action; absent: the model's approvers. */
    operators: z
      .object({
        abort: Identities.optional(),
        /** Pause and resume. */
        pause: Identities.optional(),
        /** Roll production back (`mlctl rollback`). */
        rollback: Identities.optional(),
        /** Override an incident's automated action or silence the model's alerts. */
        alerts: Identities.optional(),
      })
      .strict()
      .optional(),
    signatures: z
      .object({
        /** Signatures are required unless this is false (default true). */
        required: z.boolean().optional(),
        /** Operations that may be sent unsigned even where signatures are required. */
        unsigned: z.array(Operation).max(OPERATIONS.length).optional(),
      })
      .strict()
      .optional(),
    targets: z
      .object({
        /** Deployment target base URLs a spec may name (prefixes); none: only the worker's own gateway. */
        baseUrls: z.array(UrlPrefix).max(200).optional(),
        /** Environment variables a target's `{ fromEnv }` header may read. */
        headerEnv: z.array(EnvName).max(200).optional(),
      })
      .strict()
      .optional(),
    analysis: z
      .object({
        /** Metric provider URLs a spec's checks may call (prefixes: Prometheus addresses, web checks' URLs). */
        urls: z.array(UrlPrefix).max(200).optional(),
        /** Environment variables a metric check's `{ fromEnv }` header may read. */
        headerEnv: z.array(EnvName).max(200).optional(),
      })
      .strict()
      .optional(),
    hooks: z
      .object({
        /** Rollout hook URLs a spec may call (prefixes: the CI system's smoke and load test endpoints). */
        urls: z.array(UrlPrefix).max(200).optional(),
        /** Environment variables a hook's `{ fromEnv }` header may read. */
        headerEnv: z.array(EnvName).max(200).optional(),
      })
      .strict()
      .optional(),
    training: z
      .object({
        /** Folders a training program must live under (relative paths from the project root). */
        roots: z.array(z.string().min(1).max(4096)).min(1).max(100).optional(),
        /**
         * Environment variables passed to the trainer besides the few a Python process needs (PATH, HOME, locale,
         * thread counts: DEFAULT_TRAINER_ENV); nothing else of the worker's environment reaches it.
         */
        env: z.array(EnvName).max(200).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type ModelRules = z.infer<typeof ModelRules>;

export const PolicyFile = z
  .object({
    version: z.literal(1),
    defaults: ModelRules.optional(),
    /** Rules per model pattern; the first that matches a model applies over the defaults. */
    models: z
      .array(ModelRules.extend({ match: ModelGlob }))
      .max(1000)
      .default([]),
    quota: z
      .object({
        /** Who may release or renew quota leases they do not hold. */
        operators: Identities,
      })
      .strict()
      .optional(),
  })
  .strict();
export type PolicyFile = z.infer<typeof PolicyFile>;

/** What the policy says for one model, resolved: the defaults with the first matching rule applied. */
export interface ModelPolicy {
  model: string;
  /** Which rule applied, for refusals: `models[2] (churn*)`, `defaults` or `built-in defaults`. */
  rule: string;
  approval: {
    approvers: string[];
    quorum: number;
    gates: Record<string, { approvers: string[]; quorum: number }>;
  };
  operators: { abort: string[]; pause: string[]; rollback: string[]; alerts: string[] };
  signatures: { required: boolean; unsigned: Operation[] };
  targets: { baseUrls: string[]; headerEnv: string[] };
  analysis: { urls: string[]; headerEnv: string[] };
  hooks: { urls: string[]; headerEnv: string[] };
  training: { roots: string[]; env: string[] | null };
  quota: { operators: string[] };
}

/** The rules of `model` (see {@link ModelPolicy}). */
export function modelPolicy(file: PolicyFile, model: string): ModelPolicy {
  const index = file.models.findIndex((r) => globMatches(r.match, model));
  const rule = index >= 0 ? file.models[index] : undefined;
  const d = file.defaults ?? {};
  const pick = <K extends keyof ModelRules, F extends keyof NonNullable<ModelRules[K]>>(section: K, field: F) =>
    (rule?.[section] as NonNullable<ModelRules[K]> | undefined)?.[field] ??
    (d[section] as NonNullable<ModelRules[K]> | undefined)?.[field];
  const approvers = (pick('approval', 'approvers') as string[] | undefined) ?? [];
  const quorum = (pick('approval', 'quorum') as number | undefined) ?? 1;
  const gates = new Map<string, { approvers: string[]; quorum: number }>();
  for (const source of [d.approval?.gates, rule?.approval?.gates]) {
    for (const [gate, g] of Object.entries(source ?? {})) {
      const before = gates.get(gate);
      gates.set(gate, {
        approvers: g.approvers ?? before?.approvers ?? approvers,
        quorum: g.quorum ?? before?.quorum ?? quorum,
      });
    }
  }
  const operator = (name: 'abort' | 'pause' | 'rollback' | 'alerts') =>
    (pick('operators', name) as string[] | undefined) ?? approvers;
  return {
    model,
    rule: rule ? `models[${index}] (${rule.match})` : file.defaults ? 'defaults' : 'built-in defaults',
    approval: { approvers, quorum, gates: Object.fromEntries(gates) },
    operators: {
      abort: operator('abort'),
      pause: operator('pause'),
      rollback: operator('rollback'),
      alerts: operator('alerts'),
    },
    signatures: {
      required: (pick('signatures', 'required') as boolean | undefined) ?? true,
      unsigned: (pick('signatures', 'unsigned') as Operation[] | undefined) ?? [],
    },
    targets: {
      baseUrls: (pick('targets', 'baseUrls') as string[] | undefined) ?? [],
      headerEnv: (pick('targets', 'headerEnv') as string[] | undefined) ?? [],
    },
    analysis: {
      urls: (pick('analysis', 'urls') as string[] | undefined) ?? [],
      headerEnv: (pick('analysis', 'headerEnv') as string[] | undefined) ?? [],
    },
    hooks: {
      urls: (pick('hooks', 'urls') as string[] | undefined) ?? [],
      headerEnv: (pick('hooks', 'headerEnv') as string[] | undefined) ?? [],
    },
    training: {
      roots: (pick('training', 'roots') as string[] | undefined) ?? [],
      env: (pick('training', 'env') as string[] | undefined) ?? null,
    },
    quota: { operators: file.quota?.operators ?? [] },
  };
}

/** The approvers and quorum the policy sets for `gate`. */
export function policyGate(policy: ModelPolicy, gate: string): { approvers: string[]; quorum: number } {
  return own(policy.approval.gates, gate) ?? { approvers: policy.approval.approvers, quorum: policy.approval.quorum };
}

/** Whether `op` must carry a signature under `policy`. */
export function signatureRequired(policy: ModelPolicy, op: Operation): boolean {
  return policy.signatures.required && !policy.signatures.unsigned.includes(op);
}

/** Who may perform `op` on the model (approve/reject/promote-now: the gate's approvers; quota: the quota operators). */
export function allowedFor(policy: ModelPolicy, op: Operation, gate?: string): string[] {
  switch (op) {
    case 'approve':
    case 'reject':
      return policyGate(policy, gate ?? 'deploy').approvers;
    case 'promote-now':
      return policyGate(policy, 'promote-now').approvers;
    case 'abort':
      return policy.operators.abort;
    case 'pause':
    case 'resume':
      return policy.operators.pause;
    case 'rollback':
      return policy.operators.rollback;
    case 'alert-override':
    case 'alert-silence':
      return policy.operators.alerts;
    case 'quota-release':
    case 'quota-renew':
      return policy.quota.operators;
  }
}

/** Whether base URL `url` is under one of the allowed prefixes (same origin, and a path boundary). */
export function urlAllowed(prefixes: readonly string[], url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.username || u.password) return false;
  return prefixes.some((p) => {
    const parsed = parsePrefix(p);
    if (!parsed) return false;
    const a = parsed.url;
    if (parsed.anyPort ? a.protocol !== u.protocol || a.hostname !== u.hostname : a.origin !== u.origin) return false;
    const base = a.pathname.replace(/\/+$/, '');
    return u.pathname === base || u.pathname.startsWith(`${base}/`) || base === '';
  });
}

/** The parts of a lifecycle spec the policy governs (a structural subset of LifecycleSpec, to keep this file light). */
export interface PolicedSpec {
  model: string;
  submittedBy: string;
  approval: {
    approvers: string[];
    quorum?: number;
    signed?: boolean;
    gates: Readonly<Record<string, { approvers?: string[]; quorum?: number; signed?: boolean }>>;
  };
  /** Spec fields that say `signed: false` in so many words (`approval.signed`, `approval.gates.<gate>.signed`). */
  explicitlyUnsigned: readonly string[];
  deployment: {
    target?: PolicedTarget;
    staging?: { target?: PolicedTarget };
  };
  /**
   * The metric checks' providers: the spec field of the provider (`rollout.analysis.metrics.0.provider.web`), the
   * name of its URL field (`url`, `address`), the URL it calls (unfilled) and its headers.
   */
  metrics?: readonly {
    field: string;
    urlField: string;
    url: string;
    headers?: Readonly<Record<string, string | { fromEnv: string }>>;
  }[];
  /** The rollout hooks: the spec field of each (`rollout.hooks.preRollout.0`), its URL and headers. */
  hooks?: readonly { field: string; url: string; headers?: Readonly<Record<string, string | { fromEnv: string }>> }[];
}
// An nginx router is named, never addressed: the worker's ML_NGINX_TARGETS declares it, so the policy has no URL to check.
type PolicedTarget =
  | { kind: 'gateway'; url?: string }
  | { kind: 'http'; baseUrl: string; headers?: Readonly<Record<string, string | { fromEnv: string }>> }
  | { kind: 'nginx'; name: string };

/** Gates a lifecycle may open, so that a spec's approvers are checked against each gate's rule in the policy. */
const CHECKED_GATES = ['deploy', 'production', 'promote-now'];

/**
 * Where `spec` loosens `policy`; each problem names the spec field and the policy rule. Empty: the spec may run.
 * Training programs are checked by the worker (they need the file system), see src/config/policy.ts.
 */
export function policyViolations(spec: PolicedSpec, policy: ModelPolicy): string[] {
  const problems: string[] = [];
  const rule = `policy rule ${policy.rule}`;
  if (listed(policy.approval.approvers, spec.submittedBy) && policy.approval.approvers.length === 1) {
    problems.push(
      `submittedBy: "${spec.submittedBy}" is the only approver ${rule} allows, and cannot approve its own lifecycle`,
    );
  }
  const gates = new Set([...CHECKED_GATES, ...Object.keys(spec.approval.gates), ...Object.keys(policy.approval.gates)]);
  for (const gate of gates) {
    const mine = own(spec.approval.gates, gate);
    const approvers = mine?.approvers ?? spec.approval.approvers;
    const signed = mine?.signed ?? spec.approval.signed;
    const field = mine?.approvers ? `approval.gates.${gate}.approvers` : 'approval.approvers';
    const allowed = policyGate(policy, gate);
    if (allowed.approvers.length === 0) {
      problems.push(`${field}: ${rule} names no approvers for gate "${gate}" of ${spec.model}`);
    } else {
      const strangers = approvers.filter((a) => !listed(allowed.approvers, a));
      if (strangers.length > 0)
        problems.push(
          `${field}: ${strangers.join(', ')} may not approve gate "${gate}" of ${spec.model} (${rule} allows ${allowed.approvers.join(', ')})`,
        );
    }
    // A quorum the spec sets lower than the policy's is refused; where the spec says nothing for a gate, the
    // lifecycle takes the policy's quorum (the higher of the two).
    const explicitQuorum = mine?.quorum ?? spec.approval.quorum;
    if (explicitQuorum !== undefined && explicitQuorum < allowed.quorum) {
      const qField = mine?.quorum !== undefined ? `approval.gates.${gate}.quorum` : 'approval.quorum';
      problems.push(
        `${qField}: ${explicitQuorum} is below the quorum of ${allowed.quorum} that ${rule} sets for gate "${gate}"`,
      );
    }
    const needed = Math.max(mine?.quorum ?? spec.approval.quorum ?? 1, allowed.quorum);
    if (approvers.length < needed)
      problems.push(
        `${field}: ${approvers.length} approver(s) cannot meet the quorum of ${needed} gate "${gate}" needs under ${rule}`,
      );
    const op: Operation = gate === 'promote-now' ? 'promote-now' : 'approve';
    const unsignedField = mine?.signed === false ? `approval.gates.${gate}.signed` : 'approval.signed';
    if (signed === false && spec.explicitlyUnsigned.includes(unsignedField) && signatureRequired(policy, op)) {
      problems.push(`${unsignedField}: false, but ${rule} requires signed approvals of gate "${gate}"`);
    }
  }
  const targets: [string, PolicedTarget | undefined][] = [
    ['deployment.target', spec.deployment.target],
    ['deployment.staging.target', spec.deployment.staging?.target],
  ];
  for (const [field, target] of targets) {
    if (!target) continue;
    const url = target.kind === 'http' ? target.baseUrl : target.kind === 'gateway' ? target.url : undefined;
    const urlField = target.kind === 'http' ? `${field}.baseUrl` : `${field}.url`;
    if (url !== undefined && !urlAllowed(policy.targets.baseUrls, url)) {
      problems.push(
        `${urlField}: ${url} is not a deployment target ${rule} allows` +
          (policy.targets.baseUrls.length
            ? ` (${policy.targets.baseUrls.join(', ')})`
            : " (only the worker's own gateway)"),
      );
    }
    if (target.kind === 'http') {
      for (const [header, value] of Object.entries(target.headers ?? {})) {
        if (typeof value !== 'string' && !policy.targets.headerEnv.includes(value.fromEnv)) {
          problems.push(
            `${field}.headers.${header}: variable ${value.fromEnv} is not one ${rule} lets a target read` +
              (policy.targets.headerEnv.length ? ` (${policy.targets.headerEnv.join(', ')})` : ' (none)'),
          );
        }
      }
    }
  }
  for (const h of spec.hooks ?? []) {
    if (!urlAllowed(policy.hooks.urls, h.url)) {
      problems.push(
        `${h.field}.url: ${h.url} is not a hook ${rule} allows` +
          (policy.hooks.urls.length ? ` (${policy.hooks.urls.join(', ')})` : ' (none)'),
      );
    }
    for (const [header, value] of Object.entries(h.headers ?? {})) {
      if (typeof value !== 'string' && !policy.hooks.headerEnv.includes(value.fromEnv)) {
        problems.push(
          `${h.field}.headers.${header}: variable ${value.fromEnv} is not one ${rule} lets a hook read` +
            (policy.hooks.headerEnv.length ? ` (${policy.hooks.headerEnv.join(', ')})` : ' (none)'),
        );
      }
    }
  }
  for (const m of spec.metrics ?? []) {
    const urlField = `${m.field}.${m.urlField}`;
    if (/^[^/]*\/\/[^/]*\{\{/.test(m.url)) {
      problems.push(`${urlField}: the host of a metric check's URL cannot come from a placeholder`);
    } else if (!urlAllowed(policy.analysis.urls, m.url)) {
      problems.push(
        `${urlField}: ${m.url} is not a metric provider ${rule} allows` +
          (policy.analysis.urls.length ? ` (${policy.analysis.urls.join(', ')})` : ' (none)'),
      );
    }
    for (const [header, value] of Object.entries(m.headers ?? {})) {
      if (typeof value !== 'string' && !policy.analysis.headerEnv.includes(value.fromEnv)) {
        problems.push(
          `${m.field}.headers.${header}: variable ${value.fromEnv} is not one ${rule} lets a metric check read` +
            (policy.analysis.headerEnv.length ? ` (${policy.analysis.headerEnv.join(', ')})` : ' (none)'),
        );
      }
    }
  }
  return [...new Set(problems)];
}
