import type { WorkflowInterceptors } from '@temporalio/workflow';
import { withLogContextHeader } from '../shared/log-context';
import { clearLogContext, currentLogContext } from './log-context';

/**
 * Workflow interceptors of every worker (`interceptors.workflowModules`, or `workflowInterceptorModules` when a bundle
 * is built ahead): the log context a workflow declared goes on each of its log lines and, as a header, to each
 * activity it schedules. A header is not part of replay's determinism checks (activity id and type are), so
 * histories recorded without it still replay.
 */
export const interceptors = (): WorkflowInterceptors => ({
  outbound: [
    {
      getLogAttributes: (input, next) => next({ ...input, ...currentLogContext() }),
      scheduleActivity: (input, next) =>
        next({ ...input, headers: withLogContextHeader(input.headers, currentLogContext()) }),
      scheduleLocalActivity: (input, next) =>
        next({ ...input, headers: withLogContextHeader(input.headers, currentLogContext()) }),
    },
  ],
  internals: [
    {
      dispose: (input, next) => {
        clearLogContext();
        next(input);
      },
    },
  ],
});
