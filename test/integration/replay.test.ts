import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { describe, expect, inject, it } from 'vitest';
import { installQuietRuntime, ROOT } from '../helpers/harness';

const DIR = join(ROOT, 'test', 'fixtures', 'histories');
const fixtures = readdirSync(DIR).filter((f) => f.endsWith('.json'));

/**
 * Recorded histories of real lifecycles replay against today's workflow code: a change that would break running
 * lifecycles (a reordered activity, a new timer without `patched()`) fails here.
 */
describe('replay of recorded lifecycle histories', () => {
  it('has recorded histories to replay', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(2);
  });

  it.each(fixtures)('replays %s without nondeterminism', async (file) => {
    installQuietRuntime();
    const history = historyFromJSON(JSON.parse(readFileSync(join(DIR, file), 'utf8')));
    // The workflow's own id where it was recorded (signed approvals bind it); older fixtures replay under any id.
    const idFile = join(DIR, file.replace(/\.json$/, '.workflow-id'));
    const workflowId = existsSync(idFile) ? readFileSync(idFile, 'utf8').trim() : undefined;
    await Worker.runReplayHistory(
      { workflowBundle: { codePath: inject('workflowBundlePath') } },
      history,
      ...(workflowId ? [workflowId] : []),
    );
  });
});
