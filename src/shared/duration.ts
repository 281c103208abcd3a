import { z } from 'zod';
import { clipped } from './text';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_RE = /^(\d{1,15}(?:\.\d{1,9})?)(ms|s|m|h|d)$/;

/**
 * The longest duration anything takes (a timeout, TTL, bake, silence, schedule interval): 365 days. Workflow timers
 * and `Date` arithmetic stay far inside their ranges, and a typo such as `100000000d` is refused at the edge instead
 * of failing a workflow task.
 */
export const MAX_DURATION_MS = 365 * 86_400_000;
export const MAX_DURATION_TEXT = '365d';

/** Parses `90s`, `2m`, `1.5h`, `7d` or `250ms` into milliseconds; undefined when malformed or not a finite number. */
export function parseDurationMs(text: string): number | undefined {
  const match = DURATION_RE.exec(text.trim());
  if (!match) return undefined;
  const ms = Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/**
 * A duration given on a command line or in a file, checked: milliseconds, or what is wrong with it (malformed, above
 * {@link MAX_DURATION_MS}, or 0 where `positive`), to follow `invalid duration "<text>": `.
 */
export function checkDuration(
  text: string,
  options: { positive?: boolean } = {},
): { ok: true; ms: number } | { ok: false; problem: string } {
  const ms = parseDurationMs(text);
  if (ms === undefined) return { ok: false, problem: 'use a number with ms, s, m, h or d (e.g. 90s)' };
  if (ms > MAX_DURATION_MS) return { ok: false, problem: `at most ${MAX_DURATION_TEXT}` };
  if (options.positive && ms === 0) return { ok: false, problem: 'must be above 0' };
  return { ok: true, ms };
}

/** Formats milliseconds the way specs write them (largest whole unit). */
export function formatDurationMs(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms >= UNIT_MS[unit] && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

function duration(positive: boolean) {
  const expected = `a duration${positive ? ' above 0' : ''}: a string such as 90s, 2m, 1h or a number of milliseconds, at most ${MAX_DURATION_TEXT}`;
  return z.union([z.number(), z.string()], { error: expected }).transform((value, ctx) => {
    if (typeof value === 'number') {
      if (!Number.isSafeInteger(value) || value < 0 || value > MAX_DURATION_MS || (positive && value === 0)) {
        ctx.addIssue({ code: 'custom', message: `invalid duration ${value}: ${expected}` });
        return z.NEVER;
      }
      return value;
    }
    const checked = checkDuration(value, { positive });
    if (!checked.ok) {
      ctx.addIssue({ code: 'custom', message: `invalid duration "${clipped(value, 40)}": ${checked.problem}` });
      return z.NEVER;
    }
    return checked.ms;
  });
}

/**
 * A duration in a spec: a string such as `2m` or a number of milliseconds, 0 to {@link MAX_DURATION_MS}. Parses to
 * milliseconds, and parsing the output again gives the same value, so a spec validated at the edge validates again
 * inside the workflow.
 */
export const Duration = duration(false);

/** A {@link Duration} above 0: a timeout, a bake, a TTL, an interval (where 0 means nothing sensible). */
export const PositiveDuration = duration(true);
