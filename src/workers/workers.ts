import { Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import type { Activities } from '../activities';
import { activityLogContext } from '../activities/log-context';
import { lifecycleMetricsSinks, type LifecycleMetrics } from '../metrics/lifecycle-metrics';
import { LIFECYCLE_TASK_QUEUE, trainingTaskQueue } from '../shared/task-queues';

export interface WorkerSetOptions {
  connection: NativeConnection;
  namespace?: string;
  activities: Activities;
  /** Pre-built bundle (tests build it once); otherwise the workers bundle `src/workflows/index`. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /**
   * Hardware classes this process trains on (one worker per class task queue: train-cpu, train-gpu, train-tpu). The
   * development default serves all three in one process; on a real fleet each machine serves its own.
   */
  trainingClasses?: string[];
  identity?: string;
  /** Prometheus metrics that lifecycle workflows report stage durations and failures to (through a sink). */
  metrics?: LifecycleMetrics;
}

/**
 * The workers of one process: the control-plane worker (lifecycle, registry and quota workflows and their
 * activities) and one training worker per hardware class this machine offers.
 */
export async function createWorkers(options: WorkerSetOptions): Promise<Worker[]> {
  const { trainModel, ...controlActivities } = options.activities;
  const workflows = options.workflowBundle
    ? { workflowBundle: options.workflowBundle }
    : { workflowsPath: require.resolve('../workflows') };
  // Unset options must be absent, not undefined: the native worker rejects an explicit undefined.
  const common = {
    connection: options.connection,
    ...(options.namespace ? { namespace: options.namespace } : {}),
    ...(options.identity ? { identity: options.identity } : {}),
    // Model, version and stage (or pool) on every workflow and activity log line. A prebuilt bundle is built with
    // the workflow interceptors (test/global-setup.ts); the SDK ignores workflowModules then, with a warning.
    interceptors: {
      activity: [activityLogContext],
      ...(options.workflowBundle ? {} : { workflowModules: [require.resolve('../workflows/interceptors')] }),
    },
  };
  const control = await Worker.create({
    ...common,
    taskQueue: LIFECYCLE_TASK_QUEUE,
    ...workflows,
    activities: controlActivities,
    sinks: lifecycleMetricsSinks(options.metrics),
  });
  const training = await Promise.all(
    (options.trainingClasses ?? ['cpu', 'gpu', 'tpu']).map((hwClass) =>
      Worker.create({
        ...common,
        taskQueue: trainingTaskQueue(hwClass),
        activities: { trainModel },
        // Training is CPU-heavy: one at a time per worker process on this class.
        maxConcurrentActivityTaskExecutions: 1,
      }),
    ),
  );
  return [control, ...training];
}
