import type { z } from 'zod';
import { clipped } from '../shared/text';

/**
 * Refusals of the gateway on one line: the first problem of a parse with its path and what was expected. Keys and
 * messages are clipped, so a hostile body cannot make an answer or a log line large.
 */

/** Longest key of a path, and message, quoted in a refusal. */
const MAX_QUOTED_KEY = 64;
const MAX_QUOTED_MESSAGE = 300;

/** `labels[3].requestId`, `weights["-bad"]` from an issue's path, each key clipped. */
function issuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$]*$/.test(key))
      out += `${out ? '.' : ''}${clipped(key, MAX_QUOTED_KEY)}`;
    else out += `[${JSON.stringify(clipped(String(key), MAX_QUOTED_KEY))}]`;
  }
  return out || 'body';
}

/**
 * The first problem of a parse, with its path and what was expected, and how many more there are: one line even for
 * 10,000 bad items. A bad record key reports what a key must be.
 */
export function firstProblem(error: z.ZodError): string {
  const [first] = error.issues;
  const more = error.issues.length - 1;
  const inner = first?.code === 'invalid_key' ? first.issues[0] : undefined;
  const text = first ? `${issuePath(first.path)}: ${clipped((inner ?? first).message, MAX_QUOTED_MESSAGE)}` : 'invalid';
  return more > 0 ? `${text} (and ${more} more problem${more === 1 ? '' : 's'})` : text;
}
