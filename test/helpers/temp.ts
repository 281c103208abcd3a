import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Folders made by {@link tempDir} in this test file's process. */
const made: string[] = [];

/**
 * A new folder under the OS temp dir (`<prefix>XXXXXX`), removed when the test file ends: `test/setup.ts` runs
 * {@link removeTempDirs} after the file's own `afterAll` hooks, once the processes that used it are stopped.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Removes every folder {@link tempDir} made in this process. */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}
