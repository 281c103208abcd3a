import { parentPort } from 'node:worker_threads';
import { KernelBuffers, runKernel, type KernelTask } from './parallel';

const buffers = new KernelBuffers();

/** Worker thread of the drift engine: runs one kernel task per message on shared memory. */
parentPort?.on('message', (m: { index: number; task: KernelTask }) => {
  try {
    parentPort!.postMessage({ index: m.index, result: runKernel(m.task, true, buffers) });
  } catch (err) {
    parentPort!.postMessage({ index: m.index, error: (err as Error).stack ?? String(err) });
  }
});
