import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/config/paths';

const ROOT = projectRoot();

const FIXTURE = join(ROOT, 'test', 'fixtures', 'lint', 'prototype-keys.ts');

describe('the no-prototype-keys lint rule', () => {
  it('reports every write, read and `in` of a plain object by a caller-chosen key, and nothing safe', async () => {
    // The rule alone, with type information from a program of the fixture only (the whole project takes seconds).
    const plugin = ((await import(join(ROOT, 'scripts', 'eslint-prototype-keys.mjs'))) as { default: ESLint.Plugin })
      .default;
    const eslint = new ESLint({
      cwd: ROOT,
      overrideConfigFile: true,
      overrideConfig: [
        {
          files: ['**/*.ts'],
          languageOptions: {
            parser: tseslint.parser,
            parserOptions: { project: join(ROOT, 'test', 'fixtures', 'lint', 'tsconfig.json'), tsconfigRootDir: ROOT },
          },
          plugins: { local: plugin },
          rules: { 'local/no-prototype-keys': 'error' },
        },
      ],
    });
    const [result] = await eslint.lintFiles([FIXTURE]);
    const reported = result!.messages.map((m) => ({ line: m.line, rule: m.ruleId }));
    const expected = readFileSync(FIXTURE, 'utf8')
      .split('\n')
      .flatMap((text, i) => (/\/\/ flagged: /.test(text) ? [{ line: i + 1, rule: 'local/no-prototype-keys' }] : []));
    expect(expected.length).toBe(6);
    expect(reported).toEqual(expected);
  });
});
