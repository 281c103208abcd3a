import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { LifecycleSpec } from '../shared/spec';

/** A spec that cannot be used; `problems` lists every one with its path (and line, when known). */
export class SpecError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: invalid lifecycle spec:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
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
 * Reads and validates a lifecycle spec file. Relative `training.program` and `training.dataDir` are resolved
 * against the spec file's folder, so a spec works from wherever `mlctl` runs.
 */
export function loadSpecFile(file: string, overrides: { version?: string } = {}): LifecycleSpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SpecError(file, [
      `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    ]);
  }
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new SpecError(
      file,
      doc.errors.map((e) => `line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`),
    );
  }
  const raw = doc.toJS() as unknown;
  if (overrides.version !== undefined && raw && typeof raw === 'object')
    (raw as { version: string }).version = overrides.version;
  const parsed = LifecycleSpec.safeParse(raw);
  if (!parsed.success) {
    throw new SpecError(
      file,
      parsed.error.issues.map((issue) => {
        const path = issue.path.length ? issue.path.map(String).join('.') : '(root)';
        const line = lineOf(doc, counter, issue.path);
        return `${path}${line ? ` (line ${line})` : ''}: ${issue.message}`;
      }),
    );
  }
  const spec = parsed.data;
  const base = dirname(resolve(file));
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  return {
    ...spec,
    training: { ...spec.training, program: abs(spec.training.program), dataDir: abs(spec.training.dataDir) },
  };
}
