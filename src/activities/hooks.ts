import { Context, sleep } from '@temporalio/activity';
import type { HookSpec } from '../shared/spec';
import { parseJson, readText, refusalMessage } from '../targets/request';
import { resolveHeaderValues } from '../shared/deployment-target';

export interface HooksDeps {
  /** Where `{ fromEnv }` header values are read (default: process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Wait before the second attempt; doubled for each one after (default 1 s). */
  retryDelayMs?: number;
}

/** What a rollout hook is told: the lifecycle, the candidate and how to reach it (its pinned routes). */
export interface HookPayload {
  hook: string;
  stage: string;
  lifecycleId: string;
  runId: string;
  model: string;
  version: string;
  stableVersion: string | null;
  pins: { header: string; values: string[]; version: string }[];
}

/** A hook's verdict: passed (2xx), or failed with why, after how many attempts. */
export interface HookResult {
  passed: boolean;
  /** The last answer's HTTP status; null when no answer came. */
  status: number | null;
  message: string;
  attempts: number;
  durationMs: number;
}

/** Statuses that say "not now" rather than "no": tried again like an unreachable endpoint. */
const RETRYABLE = new Set([502, 503, 504]);

/** The rollout hooks: one HTTP call per hook, its answer the verdict (never an activity failure). */
export function createHookActivities(deps: HooksDeps = {}) {
  return {
    /**
     * Calls a hook: POSTs the payload and waits `timeout` for a 2xx. A refusal (any other status) fails the hook at
     * once with the hook's own message; no answer, a timeout or a 502/503/504 is tried again, up to `maxAttempts`.
     * A header whose environment variable is unset fails it without a call.
     */
    async runHook({ hook, payload }: { hook: HookSpec; payload: HookPayload }): Promise<HookResult> {
      const started = Date.now();
      const result = (passed: boolean, status: number | null, message: string, attempts: number): HookResult => ({
        passed,
        status,
        message,
        attempts,
        durationMs: Date.now() - started,
      });
      const resolved = resolveHeaderValues(hook.headers, deps.env ?? process.env);
      if (resolved.missing.length > 0) {
        const names = resolved.missing.map((m) => `${m.variable} (header ${m.header})`).join(', ');
        return result(false, null, `environment variable ${names} not set on the worker`, 0);
      }
      let last = '';
      for (let attempt = 1; attempt <= hook.maxAttempts; attempt++) {
        Context.current().heartbeat({ attempt });
        try {
          const res = await fetch(hook.url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', accept: 'application/json', ...resolved.headers },
            body: JSON.stringify(payload),
            signal: AbortSignal.timeout(hook.timeout),
          });
          const text = (await readText(res)) ?? '';
          const said = refusalMessage(parseJson(text), text);
          if (res.ok) return result(true, res.status, said || `answered ${res.status}`, attempt);
          if (!RETRYABLE.has(res.status)) return result(false, res.status, said || `answered ${res.status}`, attempt);
          last = `answered ${res.status}${said ? `: ${said}` : ''}`;
        } catch (err) {
          last =
            (err as Error).name === 'TimeoutError'
              ? `no answer within ${hook.timeout} ms`
              : `unreachable: ${String((err as Error).cause ?? (err as Error).message)}`;
        }
        if (attempt < hook.maxAttempts) await sleep((deps.retryDelayMs ?? 1000) * 2 ** (attempt - 1));
      }
      return result(
        false,
        null,
        `${last} (${hook.maxAttempts} attempt${hook.maxAttempts > 1 ? 's' : ''})`,
        hook.maxAttempts,
      );
    },
  };
}
