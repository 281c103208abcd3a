import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The Temporal native bridge crashes under worker threads; one Runtime per forked process.
    pool: 'forks',
    // Test files share one dev server and the lifecycle task queues: one file at a time keeps every lifecycle on
    // the workers (and gateway) of the file that started it. Two cores gain little from parallel files anyway.
    fileParallelism: false,
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    globalSetup: ['test/global-setup.ts'],
    // Polls wait on real workflows and deliveries of a loaded 2-core machine: seconds, not the default 1 s.
    expect: { poll: { timeout: 15_000, interval: 100 } },
  },
});
