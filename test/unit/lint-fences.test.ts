import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ESLint, type Linter } from 'eslint';
import ts from 'typescript';
import tseslint from 'typescript-eslint';
import { beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/config/paths';

const ROOT = projectRoot();
const RULE = 'no-restricted-imports';

// The fences of eslint.config.mjs as they are, without the type-aware rules (the whole project takes seconds to load).
let eslint: ESLint;
beforeAll(async () => {
  const config = ((await import(join(ROOT, 'eslint.config.mjs'))) as { default: Linter.Config[] }).default;
  const fences = config.filter((c) => c.rules?.[RULE]);
  expect(fences.map((c) => c.files)).toEqual([
    ['src/workflows/**/*.ts'],
    ['src/shared/**/*.ts'],
    ['src/domain/**/*.ts'],
    ['columns', 'compare', 'kernels', 'sketch', 'sort', 'stats'].map((m) => `src/drift/${m}.ts`),
  ]);
  eslint = new ESLint({
    cwd: ROOT,
    overrideConfigFile: true,
    overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } }, ...fences],
  });
});

/** The fence's messages for `code` linted as if it were the file `path`, one per import line. */
async function fenced(path: string, code: string): Promise<(string | null)[]> {
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, path) });
  const byLine = new Map(result!.messages.filter((m) => m.ruleId === RULE).map((m) => [m.line, m.message]));
  return code
    .trimEnd()
    .split('\n')
    .map((_, i) => byLine.get(i + 1) ?? null);
}

const NODE = /Node built-ins are not available/;
const PACKAGES = /their packages are zod, @temporalio\/workflow\|common and @noble only/;

describe('the import fences of shared, domain and pure drift code', () => {
  it('keep Node built-ins and I/O libraries out of shared and domain code', async () => {
    for (const path of ['src/shared/x.ts', 'src/domain/x.ts', 'src/drift/compare.ts']) {
      const reported = await fenced(
        path,
        [
          "import { readFileSync } from 'node:fs';",
          "import type { Worker } from 'node:worker_threads';",
          "import { join } from 'path';",
          "import pino from 'pino';",
          "import { parseDocument } from 'yaml';",
          "import { Client } from '@temporalio/client';",
          "import { z } from 'zod';",
          "import { defineSignal } from '@temporalio/workflow';",
          "import { sha256 } from '@noble/hashes/sha2';",
        ].join('\n'),
      );
      expect(reported.slice(0, 2), path).toEqual([expect.stringMatching(NODE), expect.stringMatching(NODE)]);
      expect(reported.slice(2, 6), path).toEqual(Array(4).fill(expect.stringMatching(PACKAGES)));
      expect(reported.slice(6), path).toEqual([null, null, null]);
    }
  });

  it('let shared code import shared code only, types included', async () => {
    const reported = await fenced(
      'src/shared/x.ts',
      [
        "import { LifecycleClient } from '../client/lifecycle-client';",
        "import { runKernels } from '../drift/parallel';",
        "import { judge } from '../drift/compare';",
        "import type { Activities } from '../activities';",
        "export * from '../config/yaml-file';",
        "import { ModelName } from './names';",
        "import type { Stage } from './status';",
      ].join('\n'),
    );
    const upward = expect.stringMatching(/Shared code imports only shared code/);
    expect(reported).toEqual([upward, upward, upward, upward, upward, null, null]);
  });

  it('let domain code import shared and the pure drift modules, and other layers only as types', async () => {
    const reported = await fenced(
      'src/domain/x.ts',
      [
        "import { LifecycleClient } from '../client/lifecycle-client';",
        "import { runKernels } from '../drift/parallel';",
        "import { compareData } from '../drift/engine';",
        "import { checkData } from '../drift';",
        "import { readCsvColumns } from '../drift/csv';",
        "import { InvalidFileError } from '../config/yaml-file';",
        "import { createActivities } from '../activities';",
        "export { loadProfile } from '../drift/profile';",
        "import { judge } from '../drift/compare';",
        "import { compareSketch } from '../drift/sketch';",
        "import type { DataProfile } from '../drift/profile';",
        "import { type Activities } from '../activities';",
        "import { own } from '../shared/own';",
        "import { planRamp } from './ramp-plan';",
      ].join('\n'),
    );
    const upward = expect.stringMatching(/Domain code runs in workflows: it imports shared and the pure drift modules/);
    expect(reported).toEqual([...Array(8).fill(upward), ...Array(6).fill(null)]);
  });

  it('let pure drift modules import each other and shared, and the Node-only ones only as types', async () => {
    const reported = await fenced(
      'src/drift/sketch.ts',
      [
        "import { runKernels } from './parallel';",
        "import { readCsvColumns } from './csv';",
        "import { compareData } from './engine';",
        "import { loadProfile } from './profile';",
        "import { InvalidFileError } from '../config/yaml-file';",
        "import { judge } from './compare';",
        "import type { DataProfile } from './profile';",
        "import { own } from '../shared/own';",
      ].join('\n'),
    );
    const upward = expect.stringMatching(/Pure drift modules run in workflows/);
    expect(reported).toEqual([...Array(5).fill(upward), null, null, null]);
  });

  it('keep the Node-only drift modules and the client out of workflows', async () => {
    const reported = await fenced(
      'src/workflows/x.ts',
      [
        "import { compareData } from '../drift/engine';",
        "import { loadProfile } from '../drift';",
        "import { LifecycleClient } from '../client/lifecycle-client';",
        "import { judge } from '../drift/compare';",
        "import type { DriftReport } from '../drift';",
        "import { ModelName } from '../shared/names';",
      ].join('\n'),
    );
    expect(reported).toEqual([
      expect.stringMatching(/Of src\/drift, workflows import only the pure modules/),
      expect.stringMatching(/Of src\/drift, workflows import only the pure modules/),
      expect.stringMatching(/Workflows import only shared and domain code/),
      null,
      null,
      null,
    ]);
  });

  it('find nothing to report in src/shared, src/domain, src/workflows and the pure drift modules', async () => {
    const results = await eslint.lintFiles(['src/shared', 'src/domain', 'src/workflows', 'src/drift']);
    expect(results.length).toBeGreaterThan(60);
    expect(results.flatMap((r) => r.messages.filter((m) => m.fatal || m.ruleId === RULE))).toEqual([]);
  });

  it('hold through every file shared and domain code imports: no Node built-in or I/O package is reached', () => {
    const src = join(ROOT, 'src');
    const reached = new Map<string, string[]>();
    const outside: string[] = [];
    const visit = (file: string, path: string[]) => {
      if (reached.has(file)) return;
      reached.set(file, path);
      const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
      for (const st of source.statements) {
        if (!(ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) || !st.moduleSpecifier) continue;
        if (ts.isImportDeclaration(st) ? isTypeOnlyImport(st) : st.isTypeOnly) continue;
        const spec = (st.moduleSpecifier as ts.StringLiteral).text;
        const resolved = ts.resolveModuleName(spec, file, OPTIONS, ts.sys).resolvedModule;
        if (resolved && !resolved.isExternalLibraryImport) {
          visit(resolved.resolvedFileName, [...path, relative(src, resolved.resolvedFileName)]);
        } else if (!/^(zod|@temporalio\/(workflow|common)|@noble\/(hashes|curves)\/.*)$/.test(spec)) {
          outside.push(`${[...path, spec].join(' → ')}`);
        }
      }
    };
    for (const dir of ['shared', 'domain']) {
      for (const name of readdirSync(join(src, dir)).filter((n) => n.endsWith('.ts'))) {
        visit(join(src, dir, name), [`${dir}/${name}`]);
      }
    }
    expect(outside).toEqual([]);
    const below = [...reached.keys()].map((f) => relative(src, f)).filter((f) => !/^(shared|domain)\//.test(f));
    expect(below.sort()).toEqual(
      ['columns', 'compare', 'kernels', 'sketch', 'sort', 'stats'].map((m) => `drift/${m}.ts`),
    );
  });
});

const OPTIONS: ts.CompilerOptions = {
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
};

/** `import type {…}`, or `import { type A, type B }`: erased from the JavaScript. */
function isTypeOnlyImport(st: ts.ImportDeclaration): boolean {
  const clause = st.importClause;
  if (!clause) return false;
  if (clause.isTypeOnly) return true;
  const named = clause.namedBindings;
  return (
    !clause.name &&
    named !== undefined &&
    ts.isNamedImports(named) &&
    named.elements.length > 0 &&
    named.elements.every((e) => e.isTypeOnly)
  );
}
