import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The Temporal native bridge crashes under worker threads; one Runtime per forked process.
    pool: 'forks',
    // Three files at a time, each on a dev server of its own (test/global-setup.ts gives one per fork), so every
    // lifecycle stays on the workers and gateway of the file that started it. Most of a file's time is spent
    // waiting on real timers, bakes and processes: with two files at a time the two cores stood idle 28 % of the run
    // (vmstat), with three 9-13 %, and vitest took 729-817 s instead of 962 s.
    maxWorkers: 3,
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    globalSetup: ['test/global-setup.ts'],
    // Removes the temp folders a file made with tempDir (test/helpers/temp.ts) once it ends.
    setupFiles: ['test/setup.ts'],
    // Polls wait on real workflows and deliveries of a loaded 2-core machine: seconds, not the default 1 s.
    expect: { poll: { timeout: 15_000, interval: 100 } },
  },
});
