import { readFileSync } from 'node:fs';
import { own } from '../shared/own';

/** Shortest bearer token accepted: shorter ones can be guessed. */
export const MIN_TOKEN_LENGTH = 16;
/** Longest bearer token accepted (an Authorization header must stay far below Node's 16 KiB header limit). */
export const MAX_TOKEN_LENGTH = 4096;
/** Printable ASCII without spaces: what an `Authorization: Bearer` header can carry unchanged. */
const TOKEN_RE = /^[\x21-\x7e]+$/;

/** Why `token` cannot be a bearer token, or null when it can; never quotes the token. */
export function tokenProblem(token: string): string | null {
  if (token.length < MIN_TOKEN_LENGTH)
    return `the token must be at least ${MIN_TOKEN_LENGTH} characters, got ${token.length}`;
  if (token.length > MAX_TOKEN_LENGTH)
    return `the token must be at most ${MAX_TOKEN_LENGTH} characters, got ${token.length}`;
  if (!TOKEN_RE.test(token)) return 'the token must be printable ASCII without spaces (it goes in a Bearer header)';
  return null;
}

/** A bearer token that is set badly (both ways, an unreadable file, too short): the process refuses to start. */
export class TokenConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenConfigError';
  }
}

/**
 * The bearer token of the variable `name`: its value, or the contents of the file named by `${name}_FILE` (for secrets
 * mounted as files), trimmed. Undefined when neither is set (or both are empty). Throws {@link TokenConfigError} when
 * both are set, the file cannot be read, or the token is shorter than {@link MIN_TOKEN_LENGTH}, longer than
 * {@link MAX_TOKEN_LENGTH} or holds a space or control character. Messages name the variables, never the token.
 */
export function readToken(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const fileVar = `${name}_FILE`;
  const direct = own(env, name)?.trim() || undefined;
  const file = own(env, fileVar)?.trim() || undefined;
  if (direct !== undefined && file !== undefined) {
    throw new TokenConfigError(`${name} and ${fileVar} are both set: set one of them`);
  }
  let token = direct;
  if (file !== undefined) {
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new TokenConfigError(
        `${fileVar}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
    }
  }
  if (token === undefined) return undefined;
  const problem = tokenProblem(token);
  if (problem) {
    throw new TokenConfigError(`${file !== undefined ? `the file ${file} named by ${fileVar}` : name}: ${problem}`);
  }
  return token;
}

/** {@link readToken}, required: a missing token is a {@link TokenConfigError} saying what needs it. */
export function requireToken(env: NodeJS.ProcessEnv, name: string, neededFor: string): string {
  const token = readToken(env, name);
  if (token === undefined) throw new TokenConfigError(`${neededFor}: set ${name} or ${name}_FILE`);
  return token;
}
