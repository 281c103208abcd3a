import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..', '..');
const WORKFLOWS = join(ROOT, 'src', 'workflows');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'histories');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every patch id the workflows ask for (`patched(X)` or `deprecatePatch(X)`, X a string constant), with its file. */
function patchIds(): Map<string, string[]> {
  const ids = new Map<string, string[]>();
  const files = sources(WORKFLOWS).map((file) => ({ file, text: readFileSync(file, 'utf8') }));
  // Constants by name across the workflows (a patch id may be declared in one file and asked for in another).
  const constants = new Map(
    files.flatMap(({ text }) =>
      [...text.matchAll(/const ([A-Z_]+) = '([a-z0-9.-]+)';/g)].map((m) => [m[1]!, m[2]!] as const),
    ),
  );
  for (const { file, text } of files) {
    for (const m of text.matchAll(/\b(?:patched|deprecatePatch)\(\s*([A-Z_]+|'[a-z0-9.-]+')\s*\)/g)) {
      const arg = m[1]!;
      const id = arg.startsWith("'") ? arg.slice(1, -1) : constants.get(arg);
      expect(id, `${relative(ROOT, file)}: ${m[0]} names no string constant of the workflows`).toBeDefined();
      ids.set(id!, [...(ids.get(id!) ?? []), relative(ROOT, file)]);
    }
  }
  return ids;
}

/** `a-{b,c}-d` → `a-b-d`, `a-c-d`; `*` stands for any part of a name. */
function expand(pattern: string): RegExp[] {
  const brace = /\{([^{}]*)\}/.exec(pattern);
  if (brace) return brace[1]!.split(',').flatMap((alt) => expand(pattern.replace(brace[0], alt)));
  const escaped = pattern.replace(/[.+?^$()|[\]\\]/g, '\\$&').replace(/\*/g, '[a-z0-9.-]+');
  return [new RegExp(`^${escaped}$`)];
}

describe('the patch and fixture ledgers', () => {
  it('lists every patch id the workflows ask for in docs/versioning.md, with its status', () => {
    const ids = patchIds();
    expect(ids.size).toBeGreaterThan(20);
    const ledger = readFileSync(join(ROOT, 'docs', 'versioning.md'), 'utf8');
    const plan = ledger.slice(ledger.indexOf('## Retirement plan'));
    for (const [id, files] of ids) {
      expect(ledger, `patch id "${id}" (${files.join(', ')}) is not in docs/versioning.md`).toContain(`\`${id}\``);
      expect(plan, `patch id "${id}" has no row in the retirement plan of docs/versioning.md`).toContain(`\`${id}\``);
    }
  });

  it('names every recorded history in test/fixtures/histories/README.md', () => {
    const fixtures = readdirSync(FIXTURES)
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -'.json'.length));
    expect(fixtures.length).toBeGreaterThan(40);
    const readme = readFileSync(join(FIXTURES, 'README.md'), 'utf8');
    // The names in the first cell of each table row.
    const patterns = readme
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .flatMap((line) => [...line.split('|')[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!))
      .map((name) => name.replace(/ \(\d+\)$/, ''))
      .flatMap(expand);
    const unlisted = fixtures.filter((f) => !patterns.some((p) => p.test(f)));
    expect(unlisted, 'recorded histories the ledger does not name').toEqual([]);
  });
});
