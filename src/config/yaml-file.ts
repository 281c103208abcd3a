import { readFileSync } from 'node:fs';
import { isMap, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';

/** A file that cannot be used; `problems` lists every one with its path (and line, when known). */
export class InvalidFileError extends Error {
  constructor(
    readonly file: string,
    readonly what: string,
    readonly problems: string[],
  ) {
    super(`${file}: invalid ${what}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Line of the YAML node at `path`, for pointing at the offending line. */
function lineOf(doc: ReturnType<typeof parseDocument>, counter: LineCounter, path: PropertyKey[]): number | undefined {
  let node: unknown = doc.contents;
  let found: YamlNode | undefined;
  for (const key of path) {
    if (isMap(node)) node = node.get(String(key), true);
    else if (isSeq(node)) node = node.get(Number(key), true);
    else break;
    if (node && typeof node === 'object' && 'range' in node) found = node as YamlNode;
  }
  const start = found?.range?.[0];
  return start === undefined ? undefined : counter.linePos(start).line;
}

/**
 * Reads a YAML file and validates it with `schema`; every problem is reported at once, each with its path and line.
 * `prepare` may adjust the raw document before validation (a command-line override, say).
 */
export function loadYamlFile<S extends z.ZodType>(
  file: string,
  schema: S,
  what: string,
  prepare?: (raw: unknown) => void,
  ErrorClass: new (file: string, problems: string[]) => InvalidFileError = class extends InvalidFileError {
    constructor(f: string, problems: string[]) {
      super(f, what, problems);
    }
  },
): z.output<S> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ErrorClass(file, [
      `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    ]);
  }
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ErrorClass(
      file,
      doc.errors.map((e) => `line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`),
    );
  }
  const raw = doc.toJS() as unknown;
  prepare?.(raw);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new ErrorClass(
      file,
      parsed.error.issues.map((issue) => {
        const path = issue.path.length ? issue.path.map(String).join('.') : '(root)';
        const line = lineOf(doc, counter, issue.path);
        return `${path}${line ? ` (line ${line})` : ''}: ${issue.message}`;
      }),
    );
  }
  return parsed.data;
}
