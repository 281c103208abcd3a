import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { logContextFromHeaders, type LogContext } from '../shared/log-context';

/**
 * Activity interceptors (`interceptors.activity` of a worker): the log context the scheduling workflow sent in its
 * header (model, version, stage or pool) goes on every `log.*` line of the activity, beside the workflow id the SDK
 * adds, and the run id goes under `runId` as on the workflow's own lines (the SDK names it `workflowRunId` here). The
 * SDK's own "Activity started" line comes before any interceptor sees the header, so it has the ids only.
 */
export const activityLogContext: ActivityInterceptorsFactory = (ctx) => {
  const runId = ctx.info.workflowExecution?.runId;
  let context: LogContext = {};
  return {
    inbound: {
      execute: (input, next) => {
        context = logContextFromHeaders(input.headers);
        return next(input);
      },
    },
    outbound: {
      getLogAttributes: (input, next) => next({ ...input, ...(runId ? { runId } : {}), ...context }),
    },
  };
};
