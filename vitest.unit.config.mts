import { defineConfig } from 'vitest/config';

/**
 * The inner loop (`npm run test:unit`): the pure tests of test/unit, which need no Temporal server, no bundle and no
 * gateway, in parallel files. `npm test` runs them too, with everything else.
 */
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/unit/**/*.test.ts'],
    testTimeout: 60_000,
    // Removes the temp folders a file made with tempDir (test/helpers/temp.ts) once it ends.
    setupFiles: ['test/setup.ts'],
  },
});
