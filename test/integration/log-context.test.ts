import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { LoadGenerator } from '../../src/dev/load-generator';
import { pauseSignal } from '../../src/shared/messages';
import type { OperatorAction } from '../../src/shared/status';
import { PinoTemporalLogger } from '../../src/workers/logger';
import {
  approveAll,
  installQuietRuntime,
  liveTraffic,
  startStack,
  testSpec,
  uniqueName,
  waitForStatus,
  type Stack,
} from '../helpers/harness';

type Line = Record<string, unknown> & { level: number; msg: string };

/** Every line of the Runtime logger, as the worker writes it: pino JSON through the Temporal adapter. */
const lines: Line[] = [];

/** The SDK logs these before any interceptor runs (before the workflow's code, before the activity's header is read). */
const beforeInterceptors = (l: Line) => l.msg === 'Workflow started' || l.msg === 'Activity started';

/**
 * Log lines of lifecycles name what they are about: the workflow and run ids from the SDK, and the model, version
 * and stage the workflow declares (docs/operations.md: Logs), on its own lines and on those of the activities it schedules.
 */
describe('log context of lifecycles on a real Temporal dev server', () => {
  let stack: Stack;
  const loads: LoadGenerator[] = [];
  const models = [uniqueName('churn-a'), uniqueName('churn-b')];

  beforeAll(async () => {
    const capture = pino({ level: 'trace' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
    installQuietRuntime(new PinoTemporalLogger(capture));
    stack = await startStack();
    for (const model of models) loads.push(liveTraffic(stack.gateway.url, model));
  });
  afterAll(async () => {
    for (const load of loads) await load.stop();
    await stack?.close();
  });

  it('puts workflow id, run id, model, version and stage on every line of two concurrent lifecycles', async () => {
    // Two at once on one worker: a context kept in the shared V8 context would show on the other's lines.
    const runs = await Promise.all(
      models.map(async (model, i) => {
        const version = `v${i + 1}`;
        const { id, runId } = await stack.lifecycles.start(testSpec(model, version));
        await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 180_000);
        // A malformed operator signal makes the workflow's own code log (a warning) while it waits at the gate.
        await stack.client.workflow.getHandle(id).signal(pauseSignal, {} as OperatorAction);
        const end = await approveAll(stack.lifecycles, id);
        expect(end.stage).toBe('promoted');
        await stack.client.workflow.getHandle(id).result();
        return { id, runId, model, version };
      }),
    );

    for (const { id, runId, model, version } of runs) {
      const of = (msg: string) => lines.find((l) => l.workflowId === id && l.msg === msg);
      await vi.waitFor(() => expect(of('Workflow completed')).toBeDefined());
      // Trace lines are the worker's internals (activations, task polling), logged outside any workflow or activity.
      const mine = lines.filter((l) => l.workflowId === id && l.level >= pino.levels.values.debug!);
      const checked = mine.filter((l) => !beforeInterceptors(l));
      expect(new Set(checked.map((l) => l.sdkComponent))).toEqual(new Set(['workflow', 'activity', 'worker']));
      for (const line of checked) {
        expect(line, line.msg).toMatchObject({ workflowId: id, runId, model, version, stage: expect.any(String) });
      }
      expect(mine.filter(beforeInterceptors).every((l) => l.workflowId === id && l.runId === runId)).toBe(true);

      // The stage is the one the lifecycle was in when the line was written (or the activity scheduled).
      expect(of('starting training')).toMatchObject({ sdkComponent: 'activity', stage: 'training' });
      expect(of('training finished')).toMatchObject({ sdkComponent: 'activity', stage: 'training' });
      expect(of('ignored malformed signal')).toMatchObject({
        sdkComponent: 'workflow',
        stage: 'awaiting-approval',
      });
      expect(of('Workflow completed')).toMatchObject({ stage: 'promoted' });
    }
  }, 300_000);
});
