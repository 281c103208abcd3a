import { KeyFileError, readPrivateKey } from '../client/approval-signing';
import { checkDuration } from '../shared/duration';
import { Identity } from '../shared/names';
import { clipped } from '../shared/text';

/**
 * Parsers of numeric and duration options for commander's `argParser`. A value that does not parse fails the command
 * with exit 2 and one line naming the option, the value and what it expects (`mlctl: --limit: "abc" is not an
 * integer from 1 to 10000`), instead of becoming NaN further down.
 */

/** An option value that does not parse (mlctl exits 2 with its message). */
export class OptionError extends Error {}

const shown = (value: string) => clipped(value, 40);

/** An integer in [min, max]. */
export function intArg(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const text = value.trim();
    const n = /^[+-]?\d{1,16}$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new OptionError(`${flag}: "${shown(value)}" is not an integer from ${min} to ${max}`);
    return n;
  };
}

/** A finite number in [min, max] (`exclusiveMin`: above min). */
export function numberArg(
  flag: string,
  min: number,
  max: number,
  options: { exclusiveMin?: boolean } = {},
): (value: string) => number {
  return (value) => {
    const text = value.trim();
    const n = /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i.test(text) ? Number(text) : NaN;
    const low = options.exclusiveMin ? n > min : n >= min;
    if (!Number.isFinite(n) || !low || n > max)
      throw new OptionError(
        options.exclusiveMin
          ? `${flag}: "${shown(value)}" is not a number above ${min} and at most ${max}`
          : `${flag}: "${shown(value)}" is not a number in ${min}..${max}`,
      );
    return n;
  };
}

/** A duration such as 30s, 10m, 2h, 7d, at most 365d (`positive`: above 0); milliseconds. */
export function durationArg(flag: string, options: { positive?: boolean } = {}): (value: string) => number {
  return (value) => {
    const checked = checkDuration(value, options);
    if (!checked.ok)
      throw new OptionError(
        `${flag}: "${shown(value)}" is not a duration such as 30s, 10m, 2h or 7d (${checked.problem})`,
      );
    return checked.ms;
  };
}

/** The identity an operator acts as (`--as alice`); a value that is none fails the command with exit 2. */
export function parseIdentity(value: string, flag = '--as'): string {
  const parsed = Identity.safeParse(value);
  if (!parsed.success)
    throw new OptionError(`${flag}: "${value}" is not a valid identity (${parsed.error.issues[0]?.message})`);
  return parsed.data;
}

/** The signer's private key: `--key <file>`, else MLCTL_SIGNING_KEY; undefined (unsigned) when neither is set. */
export function signingKeyArg(file: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const path = file ?? env.MLCTL_SIGNING_KEY;
  if (!path) return undefined;
  try {
    return readPrivateKey(path);
  } catch (err) {
    if (err instanceof KeyFileError) throw new OptionError(`--key: ${err.message}`);
    throw err;
  }
}
