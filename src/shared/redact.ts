/*
 * Redaction of secrets in text that leaves a worker: a trainer's log tail goes into workflow history and into the
 * `training-failed` alert (Slack, webhooks). Workflow-safe: pure functions over strings, no Node built-ins.
 *
 * Best effort by design: it catches the shapes secrets usually have in logs (a secret-looking name with its value,
 * an Authorization header, credentials in a URL, well-known token formats, private keys) and the exact values the
 * caller knows to be secret. It cannot recognise a bare secret of no known shape that nobody named.
 */

/** What a secret is replaced with. */
export const REDACTED = '[redacted]';

/** Known secrets shorter than this are not searched for: short values match ordinary text. */
export const MIN_KNOWN_SECRET_LENGTH = 8;

/**
 * A name whose value is secret, by its last word(s) once normalised to snake case (`apiKey`, `API-KEY` and `api_key`
 * are all `api_key`): `DB_PASSWORD`, `client_secret`, `x-auth-token`, `AWS_SECRET_ACCESS_KEY`. Only the last word
 * counts, so `token_count`, `max_tokens`, `tokenizer`, `password_file` and `author` are ordinary names.
 */
const SECRET_NAME =
  /(?:^|_)(?:password|passwd|passphrase|secrets?|token|api_?key|access_?key|secret_?key|private_?key|credentials?|auth|authorization|cookie|dsn)$/;

function snakeCase(name: string): string {
  return name
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[-.]/g, '_')
    .toLowerCase();
}

/**
 * A name and its separator: `name=`, `name: `, `"name": `, `'name'=`, `--name=`, `--name ` (whitespace only after
 * `--`). Names are bounded (64 characters) and start at a boundary, which keeps the scan linear on any input.
 */
const PAIR = /(?<![\w.-])(--?)?(["']?)([A-Za-z_][\w.-]{0,63})\2([ \t]*[:=][ \t]*|[ \t]+)/g;
/** A value after a secret name: a quoted string (an unterminated one runs to the next space), or a bare word. */
const VALUE = /"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|["'][^\s]*|[^\s"',;&)}\]]+/y;
/** An authorization header's name; its value may start with a scheme (`Authorization: Token abc`). */
const AUTH_NAME = /(?:^|_)(?:auth|authorization)$/;
/** A value that starts with an authorization scheme: the scheme stays, the credentials go. */
const SCHEMED_VALUE = /((?:Bearer|Basic|Token|Digest|Negotiate|ApiKey|Key)[ \t]+)(\[redacted\]|[^\s"',;&)}\]]+)/iy;

function redactPairs(line: string): string {
  let out = '';
  let from = 0;
  PAIR.lastIndex = 0;
  for (let m = PAIR.exec(line); m !== null; m = PAIR.exec(line)) {
    const [, dashes, , name = '', separator = ''] = m;
    const at = PAIR.lastIndex;
    const flagWithSpace = !/[:=]/.test(separator);
    if (flagWithSpace && dashes !== '--') continue;
    const snake = snakeCase(name);
    if (!SECRET_NAME.test(snake) || line.startsWith(REDACTED, at)) continue;
    if (flagWithSpace && line[at] === '-') continue; // the next flag, not a value
    SCHEMED_VALUE.lastIndex = at;
    const schemed = AUTH_NAME.test(snake) ? SCHEMED_VALUE.exec(line) : null;
    if (schemed?.[2] === REDACTED) continue;
    if (schemed) {
      out += `${line.slice(from, at)}${schemed[1] ?? ''}${REDACTED}`;
      from = PAIR.lastIndex = SCHEMED_VALUE.lastIndex;
      continue;
    }
    VALUE.lastIndex = at;
    const value = VALUE.exec(line);
    if (!value) continue;
    const quote = value[0][0] === '"' || value[0][0] === "'" ? value[0][0] : '';
    const closed = quote !== '' && value[0].length > 1 && value[0].endsWith(quote);
    out += `${line.slice(from, at)}${quote}${REDACTED}${closed ? quote : ''}`;
    from = PAIR.lastIndex = VALUE.lastIndex;
  }
  return from === 0 ? line : out + line.slice(from);
}

/** `scheme://user:password@host` → `scheme://user:[redacted]@host`; a long user alone (a token) is redacted too. */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]{0,31}:\/\/)([^\s:@/?#]*)(?::([^\s@/?#]*))?@/gi;
const URL_TOKEN_USER_LENGTH = 20;

/** `Bearer <token>`; `Basic <base64>` when the word after it looks like base64 rather than English. */
const BEARER = /\b(Bearer)([ \t]+)[A-Za-z0-9._~+/-]{8,}=*/gi;
const BASIC = /\bBasic([ \t]+)([A-Za-z0-9+/]{8,}={0,2})(?![\w+/=])/g;

/** Token formats recognisable on their own. */
const TOKEN_PATTERNS: readonly RegExp[] = [
  /** AWS access key ids (long-term and temporary). */
  /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g,
  /** JSON Web Tokens: header and payload are base64url JSON objects. */
  /\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g,
  /** GitHub tokens. */
  /\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})\b/g,
  /** Slack tokens. */
  /\bxox[abposr]-[A-Za-z0-9-]{10,}/g,
];

/** A private key in PEM, on one line (`\n` escaped in JSON) or its header line (the body follows on later lines). */
const PEM_PRIVATE_KEY = /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(?:-----END \1PRIVATE KEY-----|$)/g;
const PEM_END = /-----END [A-Z0-9 ]*PRIVATE KEY-----/;
/** A line that is only base64, long and mixed (a PEM body line, a raw key): an English word or a hex digest is not. */
const BASE64_LINE = /^[A-Za-z0-9+/]{40,}={0,2}$/;

function base64Blob(line: string): boolean {
  const t = line.trim();
  return BASE64_LINE.test(t) && /[A-Z]/.test(t) && /[a-z]/.test(t) && /[0-9]/.test(t);
}

/**
 * The known secrets worth searching for: long enough, deduplicated, longest first (one may contain another). A
 * secret of several lines (a PEM key in a variable) is searched for line by line, as the log is.
 */
function searchable(knownSecrets: readonly string[]): string[] {
  const parts = knownSecrets.flatMap((s) => [s, ...s.split(/\r?\n/)].map((p) => p.trim()));
  return [...new Set(parts.filter((s) => s.length >= MIN_KNOWN_SECRET_LENGTH))].sort((a, b) => b.length - a.length);
}

function redactWith(line: string, known: readonly string[]): string {
  let out = line;
  // The exact values first: a pattern applied before could cut one so that it is no longer found.
  for (const secret of known) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  out = out.replace(PEM_PRIVATE_KEY, `-----BEGIN $1PRIVATE KEY-----${REDACTED}`);
  out = out.replace(URL_CREDENTIALS, (all, scheme: string, user: string, password: string | undefined) => {
    if (password !== undefined) return `${scheme}${user}:${REDACTED}@`;
    return user.length >= URL_TOKEN_USER_LENGTH ? `${scheme}${REDACTED}@` : all;
  });
  out = out.replace(BEARER, `$1$2${REDACTED}`);
  out = out.replace(BASIC, (all, space: string, token: string) =>
    /^[A-Za-z]?[a-z]+$/.test(token) ? all : `Basic${space}${REDACTED}`,
  );
  for (const pattern of TOKEN_PATTERNS) out = out.replace(pattern, REDACTED);
  out = redactPairs(out);
  return base64Blob(out) ? REDACTED : out;
}

/**
 * `line` with the secrets in it replaced by `[redacted]`: values of secret-looking names (`password=…`,
 * `"api_key": "…"`, `--token …`, `Authorization: Bearer …`), credentials in URLs, AWS access key ids, JWTs, GitHub
 * and Slack tokens, private keys and long base64 blobs, and every occurrence of a `knownSecrets` value of at least
 * {@link MIN_KNOWN_SECRET_LENGTH} characters.
 */
export function redactSecrets(line: string, knownSecrets: readonly string[] = []): string {
  return redactWith(line, searchable(knownSecrets));
}

/**
 * A redactor for the successive lines of one stream: {@link redactSecrets} on each, and every line of a PEM private
 * key block is redacted whole from its `BEGIN` line to its `END` line (a stateless look at one line cannot tell a
 * key's body from other text). One per stream: interleaved streams would mix up where a block ends.
 */
export function lineRedactor(knownSecrets: readonly string[] = []): (line: string) => string {
  const known = searchable(knownSecrets);
  let inKey = false;
  return (line) => {
    if (inKey) {
      if (!PEM_END.test(line)) return REDACTED;
      inKey = false;
      return redactWith(line.replace(/^[\s\S]*?(-----END )/, `${REDACTED}$1`), known);
    }
    const begin = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.exec(line);
    if (begin && !PEM_END.test(line.slice(begin.index))) inKey = true;
    return redactWith(line, known);
  };
}
