import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { TestProject } from 'vitest/node';
import { projectRoot } from '../src/config/paths';
import { startDevServer, type DevServer } from '../src/dev/dev-server';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    workflowBundlePath: string;
  }
}

let server: DevServer | undefined;

/** One real Temporal dev server (in memory) and one workflow bundle for the whole run. */
export async function setup(project: TestProject): Promise<void> {
  server = await startDevServer();
  const { code } = await bundleWorkflowCode({
    // src/workflows plus a probe of the shared sandbox (test/fixtures/workflows).
    workflowsPath: join(projectRoot(), 'test', 'fixtures', 'workflows', 'index.ts'),
    // As the workers' workflowModules (src/workers/workers.ts): replay and every test run with them.
    workflowInterceptorModules: [join(projectRoot(), 'src', 'workflows', 'interceptors.ts')],
    logger: quiet,
  });
  const dir = mkdtempSync(join(tmpdir(), 'mll-bundle-'));
  const codePath = join(dir, 'workflows.js');
  writeFileSync(codePath, code);
  project.provide('temporalAddress', server.address);
  project.provide('workflowBundlePath', codePath);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}

const noop = () => undefined;
const quiet = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };
