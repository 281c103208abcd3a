/**
 * Import cycles among the project's own modules: every `import`, `import type`, `export … from` and `import()` of
 * `src/**` resolved as TypeScript resolves it, type-only edges included (a cycle through types still ties the layers
 * together: a client's public types declared in a workflow, a workflow's result declared in an activity).
 *
 * `node scripts/import-cycles.mjs [dir]` prints each cycle as `a.ts → b.ts → a.ts` and exits 1 when there is one;
 * `npm run lint` runs it over `src`. `test/unit/import-cycles.test.ts` calls {@link importCycles} directly.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const OPTIONS = { module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler, allowJs: false };

function tsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(path);
    return e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Each `.ts` file under `dir` with the files under `dir` it imports, in source order. */
export function importGraph(dir) {
  const root = resolve(dir);
  const files = tsFiles(root);
  const known = new Set(files);
  const graph = new Map();
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = [];
    for (const { fileName } of importedFiles) {
      const resolved = ts.resolveModuleName(fileName, file, OPTIONS, ts.sys).resolvedModule?.resolvedFileName;
      const target = resolved && resolve(resolved);
      if (target && known.has(target) && !targets.includes(target)) targets.push(target);
    }
    graph.set(file, targets);
  }
  return graph;
}

/** The strongly connected components of more than one file, or of one file importing itself (Tarjan). */
function components(graph) {
  let next = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const found = [];
  const visit = (v) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc);
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

/** The shortest path from `start` back to itself inside `members` (breadth first). */
function shortestCycle(graph, start, members) {
  const from = new Map([[start, undefined]]);
  const queue = [start];
  while (queue.length) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = from.get(u)) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!from.has(w)) {
        from.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/**
 * One cycle per tangle of files that import each other, as paths relative to `dir` (`['a.ts', 'b.ts', 'a.ts']`),
 * starting from the tangle's first file in name order; empty when the imports form a DAG.
 */
export function importCycles(dir) {
  const root = resolve(dir);
  const graph = importGraph(root);
  return components(graph)
    .map((scc) => {
      const first = [...scc].sort()[0];
      return shortestCycle(graph, first, new Set(scc)).map((f) => relative(root, f).split('\\').join('/'));
    })
    .sort((a, b) => a[0].localeCompare(b[0]));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2] ?? join(fileURLToPath(new URL('..', import.meta.url)), 'src');
  const cycles = importCycles(dir);
  for (const cycle of cycles) console.error(`import cycle: ${cycle.join(' → ')}`);
  if (cycles.length) {
    console.error(
      `${cycles.length} import cycle(s) in ${relative(process.cwd(), dir) || '.'}: move the shared types down`,
    );
    process.exit(1);
  }
}
