/** Helpers the benchmarks share for their figures. */
import { cpus } from 'node:os';

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

/** Prints an aligned table: the first column left-aligned, the others right-aligned, a rule under the header. */
export function printAligned(header: string[], body: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] as string).length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of body) console.log(line(row));
}

/** Prints the line every benchmark ends with: the 1-minute load average before and after it ran. */
export function printLoad(before: number[], after: number[]): void {
  console.log(
    `load average (1 min) before ${(before[0] ?? 0).toFixed(2)}, after ${(after[0] ?? 0).toFixed(2)}: ` +
      'other processes on the machine skew the figures',
  );
}

/** The fields every `BENCH_JSON` line starts with: what ran, when, on what, under which load. */
export function benchFacts(benchmark: string, before: number[], after: number[]) {
  return {
    benchmark,
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    loadAverageBefore: before[0] ?? null,
    loadAverageAfter: after[0] ?? null,
  };
}

/**
 * Runs a benchmark program: `main`'s result is the exit code (1 when it throws, with the stack); `cleanup` runs after
 * it, and on SIGINT/SIGTERM before exiting 130/143.
 */
export function runBenchmark(what: string, main: () => Promise<number>, cleanup: () => Promise<void> | void): void {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      void Promise.resolve(cleanup()).finally(() => process.exit(code));
    });
  }
  main().then(
    async (code) => {
      await cleanup();
      process.exitCode = code;
    },
    async (err: unknown) => {
      process.stderr.write(`${what} failed: ${(err as Error).stack ?? String(err)}\n`);
      await cleanup();
      process.exitCode = 1;
    },
  );
}
