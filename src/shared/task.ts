import { z } from 'zod';

/**
 * What a model predicts. Declared in the spec (`task:`) and in the artifact's manifest (`model.json`), checked against
 * each other and against the ONNX graph at validation; telemetry, drift, validation and quality follow it.
 */
export const TASKS = ['binary-classification', 'multiclass-classification', 'regression'] as const;
export const Task = z.enum(TASKS, { error: `a task: ${TASKS.join(', ')}` });
export type Task = z.infer<typeof Task>;

/** The task of a spec or manifest that names none: every model before tasks existed was a binary classifier. */
export const DEFAULT_TASK: Task = 'binary-classification';

/** Most classes a multiclass model may have: its probabilities travel in every answer and telemetry snapshot. */
export const MAX_CLASSES = 64;

export const isClassifier = (task: Task): boolean => task !== 'regression';

/**
 * The offline metrics each task's example trainers report and validation documents, with the direction in which each
 * is better. A spec may name other metrics its trainer reports; those follow the name rule of `lowerIsBetter`.
 */
export const TASK_METRICS: Readonly<Record<Task, readonly { name: string; lowerIsBetter: boolean }[]>> = {
  'binary-classification': [
    { name: 'accuracy', lowerIsBetter: false },
    { name: 'auc', lowerIsBetter: false },
    { name: 'f1', lowerIsBetter: false },
    { name: 'logLoss', lowerIsBetter: true },
  ],
  'multiclass-classification': [
    { name: 'accuracy', lowerIsBetter: false },
    { name: 'macroF1', lowerIsBetter: false },
    { name: 'logLoss', lowerIsBetter: true },
  ],
  regression: [
    { name: 'mae', lowerIsBetter: true },
    { name: 'rmse', lowerIsBetter: true },
    { name: 'r2', lowerIsBetter: false },
  ],
};

/** Error metrics named by their abbreviation: smaller is better, as for names ending in `Loss` or `Error`. */
const ERROR_ABBREVIATIONS = new Set(['mae', 'mse', 'rmse', 'mape', 'smape', 'rmsle', 'brier']);

/** Metrics where a smaller value is better: a regression is a rise. */
export function lowerIsBetter(metric: string): boolean {
  return /(loss|error)$/i.test(metric) || ERROR_ABBREVIATIONS.has(metric.toLowerCase());
}

/** The manifest's outputs a task needs: the graph must have each, with the shape the task serves. */
export function outputsOf(task: Task): readonly ('label' | 'probabilities' | 'value')[] {
  return isClassifier(task) ? ['label', 'probabilities'] : ['value'];
}
