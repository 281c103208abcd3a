import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prototypeKeys from './scripts/eslint-prototype-keys.mjs';

export default tseslint.config(
  { ignores: ['dist/**', '.tools/**', 'data/**', 'node_modules/**', 'bin/**', 'scripts/*.mjs', 'eslint.config.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Caller-chosen names (holders, resources, features, categories, incident keys) never index plain objects.
    files: ['src/**/*.ts'],
    plugins: { local: prototypeKeys },
    rules: { 'local/no-prototype-keys': 'error' },
  },
  {
    // Workflow code is replayed deterministically in a sandbox: no I/O, no Node built-ins, no logger or config
    // values, and activities only as types (proxyActivities).
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^node:', message: 'Node built-ins are not available in workflow code.' },
            {
              regex: '^(fs|path|os|crypto|child_process|http|https|net|url|util|events|stream|worker_threads)(/.*)?$',
              message: 'Node built-ins are not available in workflow code.',
            },
            {
              regex: '^(pino|pino-pretty|fastify|undici|onnxruntime-node|yaml)$',
              message: 'I/O libraries stay out of workflows.',
            },
            {
              regex: '^@temporalio/(client|worker|activity|testing|envconfig)$',
              message: 'Workflows import @temporalio/workflow only.',
            },
            { regex: '(^|/)config(/|$)', message: 'Workflows get configuration through their input.' },
            {
              regex: '(^|/)activities(/|$)',
              allowTypeImports: true,
              message: 'Import activity types only (import type), and call them through proxyActivities.',
            },
            { regex: '(^|/)(serving|workers|cli)(/|$)', message: 'Workflows import only shared and domain code.' },
          ],
        },
      ],
    },
  },
);
