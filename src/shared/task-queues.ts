/** Task queue of lifecycle, registry and quota-pool workflows and their control-plane activities. */
export const LIFECYCLE_TASK_QUEUE = 'ml-lifecycle';

/** Training activities go to the task queue of their hardware class, served by workers on that hardware. */
export function trainingTaskQueue(hardwareClass: string): string {
  return `train-${hardwareClass}`;
}
