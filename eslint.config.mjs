import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prototypeKeys from './scripts/eslint-prototype-keys.mjs';

/** The half of src/drift that judges and counts (no files, no worker threads): domain code and workflows build on it. */
const PURE_DRIFT = ['columns', 'compare', 'kernels', 'sketch', 'sort', 'stats'];
const PURE_DRIFT_RE = `(${PURE_DRIFT.join('|')})`;

/** Packages code that runs in workflows may use: schemas, the workflow API and pure-JS hashing and signatures. */
const WORKFLOW_SAFE_PACKAGES = [
  {
    regex: '^node:',
    message: 'Shared, domain and pure drift code run in workflows, where Node built-ins are not available.',
  },
  {
    regex: '^(?!\\.|node:|zod$|@temporalio/(workflow|common)$|@noble/(hashes|curves)/)',
    message:
      'Shared, domain and pure drift code run in workflows: their packages are zod, @temporalio/workflow|common and ' +
      '@noble only (no Node built-ins, no I/O libraries such as pino, fastify, undici, yaml or onnxruntime-node).',
  },
];

/** A fence of code that runs in workflows: the packages above, and `local` for imports of the project's own files. */
const workflowSafe = (local) => ({
  'no-restricted-imports': ['error', { patterns: [...WORKFLOW_SAFE_PACKAGES, ...local] }],
});

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
            {
              regex: '^(\\.\\./)+(client|metrics|targets|analysis|artifacts|alerts|dev)(/|$)',
              allowTypeImports: true,
              message: 'Workflows import only shared and domain code (other layers as types).',
            },
            {
              regex: `^(\\.\\./)+drift(/(?!${PURE_DRIFT_RE}$).*)?$`,
              allowTypeImports: true,
              message: `Of src/drift, workflows import only the pure modules (${PURE_DRIFT.join(', ')}); the rest reads files and starts worker threads.`,
            },
          ],
        },
      ],
    },
  },
  // The layers below workflows hold by these fences: each imports only fenced, workflow-safe code, so what no import
  // may reach directly is not reached through another file either.
  {
    // Shared contracts are imported by every side, workflows included: they import only shared.
    files: ['src/shared/**/*.ts'],
    rules: workflowSafe([
      {
        regex: '^\\.\\./',
        message: 'Shared code imports only shared code: every side (workflows included) imports it.',
      },
    ]),
  },
  {
    // Domain code is pure logic that workflows run: it imports shared and the pure drift modules; other layers' types
    // (a profile's schema from drift/profile, say) only with `import type`.
    files: ['src/domain/**/*.ts'],
    rules: workflowSafe([
      {
        regex: `^\\.\\./(?!shared/|drift/${PURE_DRIFT_RE}$)`,
        allowTypeImports: true,
        message: `Domain code runs in workflows: it imports shared and the pure drift modules (${PURE_DRIFT.join(', ')}) only, other layers as types.`,
      },
    ]),
  },
  {
    // The pure drift modules import each other and shared; the Node-only ones (parallel, worker, csv, jsonl, profile,
    // engine, index) and other layers only as types.
    files: PURE_DRIFT.map((m) => `src/drift/${m}.ts`),
    rules: workflowSafe([
      {
        regex: `^(\\.\\./(?!shared/)|\\./(?!${PURE_DRIFT_RE}$))`,
        allowTypeImports: true,
        message: `Pure drift modules run in workflows: they import each other (${PURE_DRIFT.join(', ')}) and shared only, the rest as types.`,
      },
    ]),
  },
);
