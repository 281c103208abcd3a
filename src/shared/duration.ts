import { z } from 'zod';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Parses `90s`, `2m`, `1.5h`, `7d` or `250ms` into milliseconds; undefined when malformed. */
export function parseDurationMs(text: string): number | undefined {
  const match = DURATION_RE.exec(text.trim());
  if (!match) return undefined;
  return Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]);
}

/** Formats milliseconds the way specs write them (largest whole unit). */
export function formatDurationMs(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms >= UNIT_MS[unit] && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}

/**
 * A duration in a spec: a string such as `2m` or a number of milliseconds. Parses to milliseconds, and parsing the
 * output again gives the same value, so a spec validated at the edge validates again inside the workflow.
 */
export const Duration = z
  .union([z.number().int().nonnegative(), z.string()], {
    error: 'a duration: a string such as 90s, 2m, 1h or a number of milliseconds',
  })
  .transform((value, ctx) => {
    if (typeof value === 'number') return value;
    const ms = parseDurationMs(value);
    if (ms === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `invalid duration "${value}": use a number with ms, s, m, h or d (e.g. 90s)`,
      });
      return z.NEVER;
    }
    return ms;
  });
