import { workflowInfo } from '@temporalio/workflow';
import { withoutUndefined, type LogContext } from '../shared/log-context';

/**
 * Log contexts by run id. The reusable V8 context of SDK 1.24 gives each workflow execution its own instance of this
 * module, so the map holds one entry; keying by run id still keeps executions apart if the module were ever shared
 * (a preloaded module, or a bundler that loses the per-execution module cache, as sdk-typescript#2166 did), and the
 * interceptors delete the entry when the execution leaves the worker.
 */
const contexts = new Map<string, LogContext>();

/**
 * Declares what this workflow's log lines are about (merged into what was declared before). Every `log.*` line of
 * the workflow and of the activities it schedules from then on carries these fields.
 */
export function setLogContext(patch: LogContext): void {
  const { runId } = workflowInfo();
  contexts.set(runId, { ...contexts.get(runId), ...withoutUndefined(patch) });
}

/** The current workflow's log context (empty until it declares one). */
export function currentLogContext(): LogContext {
  return contexts.get(workflowInfo().runId) ?? {};
}

/** Forgets the current workflow's log context (the execution is done or evicted from the worker's cache). */
export function clearLogContext(): void {
  contexts.delete(workflowInfo().runId);
}
