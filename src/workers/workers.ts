import { Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import { z } from 'zod';
import type { Activities } from '../activities';
import { activityLogContext } from '../activities/log-context';
import { lifecycleMetricsSinks, type LifecycleMetrics } from '../metrics/lifecycle-metrics';
import { describeIssues } from '../shared/spec';
import { LIFECYCLE_TASK_QUEUE, trainingTaskQueue } from '../shared/task-queues';

/** A worker environment whose roles are invalid (WORKER_CONTROL_PLANE, TRAINING_CLASSES); the message names each. */
export class WorkerRolesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkerRolesError';
  }
}

const RolesEnv = z
  .object({
    /**
     * Whether this process runs the control-plane worker (lifecycle, registry and quota workflows and their
     * activities). `false` makes a training-only process, such as a GPU host that serves `train-gpu` and nothing else.
     */
    WORKER_CONTROL_PLANE: z
      .enum(['true', 'false', '1', '0'], { error: 'true or false' })
      .default('true')
      .transform((v) => v === 'true' || v === '1'),
    /** Hardware classes this process trains on, comma-separated; empty: none. */
    TRAINING_CLASSES: z
      .string()
      .default('cpu,gpu,tpu')
      .transform((v) =>
        v
          .split(',')
          .map((c) => c.trim())
          .filter(Boolean),
      )
      .pipe(
        z.array(
          z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, 'hardware class names such as cpu or gpu, comma-separated'),
        ),
      ),
  })
  .refine((env) => env.WORKER_CONTROL_PLANE || env.TRAINING_CLASSES.length > 0, {
    path: ['TRAINING_CLASSES'],
    message: 'a process with WORKER_CONTROL_PLANE=false must train on some class (e.g. TRAINING_CLASSES=gpu)',
  });

/** What a worker process serves, from WORKER_CONTROL_PLANE and TRAINING_CLASSES. Throws WorkerRolesError. */
export function workerRolesFromEnv(env: NodeJS.ProcessEnv = process.env): {
  controlPlane: boolean;
  trainingClasses: string[];
} {
  const parsed = RolesEnv.safeParse(env);
  if (!parsed.success) throw new WorkerRolesError(`invalid environment: ${describeIssues(parsed.error).join('; ')}`);
  return { controlPlane: parsed.data.WORKER_CONTROL_PLANE, trainingClasses: parsed.data.TRAINING_CLASSES };
}

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
  /** Whether to run the control-plane worker (default true); false: training workers only (a GPU host). */
  controlPlane?: boolean;
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
  const control =
    options.controlPlane === false
      ? []
      : [
          await Worker.create({
            ...common,
            taskQueue: LIFECYCLE_TASK_QUEUE,
            ...workflows,
            activities: controlActivities,
            sinks: lifecycleMetricsSinks(options.metrics),
          }),
        ];
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
  return [...control, ...training];
}
