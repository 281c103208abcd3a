import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { TestProject } from 'vitest/node';
import { projectRoot } from '../src/config/paths';
import { startDevServer, type DevServer } from '../src/dev/dev-server';

declare module 'vitest' {
  export interface ProvidedContext {
    /** One dev server per file running at once: the file in fork `VITEST_POOL_ID` n uses the n-th. */
    temporalAddresses: string[];
    workflowBundlePath: string;
  }
}

let servers: DevServer[] = [];
let bundleDir: string | undefined;

/**
 * Real Temporal dev servers (in memory), one for each test file that runs at once, and one workflow bundle for the
 * whole run. Files running side by side never share a server, so the lifecycle task queues, the quota pools and the
 * registries of one file's stack are never polled or read by another's.
 */
export async function setup(project: TestProject): Promise<void> {
  const count = Math.max(1, project.config.maxWorkers);
  servers = await Promise.all(Array.from({ length: count }, () => startDevServer()));
  const { code } = await bundleWorkflowCode({
    // src/workflows plus a probe of the shared sandbox (test/fixtures/workflows).
    workflowsPath: join(projectRoot(), 'test', 'fixtures', 'workflows', 'index.ts'),
    // As the workers' workflowModules (src/workers/workers.ts): replay and every test run with them.
    workflowInterceptorModules: [join(projectRoot(), 'src', 'workflows', 'interceptors.ts')],
    logger: quiet,
  });
  bundleDir = mkdtempSync(join(tmpdir(), 'mll-bundle-'));
  const codePath = join(bundleDir, 'workflows.js');
  writeFileSync(codePath, code);
  project.provide(
    'temporalAddresses',
    servers.map((s) => s.address),
  );
  project.provide('workflowBundlePath', codePath);
}

export async function teardown(): Promise<void> {
  await Promise.all(servers.map((s) => s.stop()));
  if (bundleDir) rmSync(bundleDir, { recursive: true, force: true });
}

const noop = () => undefined;
const quiet = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };
