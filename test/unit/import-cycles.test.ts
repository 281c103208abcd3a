import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/config/paths';
import { tempDir } from '../helpers/temp';

const ROOT = projectRoot();

type ImportCycles = (dir: string) => string[][];
const load = async () =>
  ((await import(join(ROOT, 'scripts', 'import-cycles.mjs'))) as { importCycles: ImportCycles }).importCycles;

describe('the import-cycle check', () => {
  const scratch = tempDir('import-cycles-');
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  const tree = (name: string, files: Record<string, string>) => {
    const dir = join(scratch, name);
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    return dir;
  };

  it('finds no cycle in src, type-only imports included', async () => {
    expect((await load())(join(ROOT, 'src'))).toEqual([]);
  });

  it('reports a cycle closed by a type-only import and a re-export, naming each file in order', async () => {
    const dir = tree('cycle', {
      'workflows/rollback.ts': "import type { Activities } from '../activities';\nexport type Result = { ok: true };\n",
      'activities/index.ts': "export { alerting } from './alerting';\nexport type Activities = object;\n",
      'activities/alerting.ts':
        "import type { Result } from '../client/client';\nexport const alerting = (r: Result) => r;\n",
      'client/client.ts': "export type { Result } from '../workflows/rollback';\n",
      'shared/names.ts': 'export const name = 1;\n',
      'domain/uses-names.ts': "import { name } from '../shared/names';\nexport const twice = name * 2;\n",
    });
    expect((await load())(dir)).toEqual([
      [
        'activities/alerting.ts',
        'client/client.ts',
        'workflows/rollback.ts',
        'activities/index.ts',
        'activities/alerting.ts',
      ],
    ]);
  });

  it('reports a file that imports itself, and one cycle per tangle of files', async () => {
    const dir = tree('tangles', {
      'a.ts': "import { b } from './b';\nexport const a = () => b;\n",
      'b.ts': "import { a } from './a';\nexport const b = () => a;\n",
      'self.ts': "export const one = 1;\nexport const again = async () => (await import('./self')).one;\n",
    });
    expect((await load())(dir)).toEqual([
      ['a.ts', 'b.ts', 'a.ts'],
      ['self.ts', 'self.ts'],
    ]);
  });

  it('finds nothing in imports that form a DAG', async () => {
    const dir = tree('dag', {
      'top.ts': "import { x } from './mid';\nimport { y } from './base';\nexport const z = x + y;\n",
      'mid.ts': "import { y } from './base';\nexport const x = y;\n",
      'base.ts': 'export const y = 1;\n',
    });
    expect((await load())(dir)).toEqual([]);
  });
});
