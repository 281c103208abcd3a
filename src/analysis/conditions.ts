import { compileExpression } from 'filtrex';

/**
 * A metric check's `successCondition` / `failureCondition`: a filtrex expression over `result` (the measured number),
 * e.g. `result <= 0.01`, `result > 0.5 and result < 2`, `abs(result - 1) < 0.1`. filtrex evaluates a small language
 * of its own (arithmetic, comparison, `and`/`or`/`not`, `if … then … else`, a few math functions): no member access,
 * no calls into JavaScript, so a spec cannot run code on the worker.
 */
export type Condition = (result: number) => boolean;

const NAMES = new Set(['result']);

/** Compiles `text`, or throws an Error that says what is wrong with it. */
export function compileCondition(text: string): Condition {
  const fn = compileExpression(text, {
    customProp: (name: string, get: (name: string) => unknown) => {
      if (!NAMES.has(name)) throw new Error(`unknown name "${name}": a condition can use only \`result\``);
      return get(name);
    },
  });
  // Evaluate once on a sample: an unknown name is only noticed when it is read.
  const probe = fn({ result: 0 }) as unknown;
  if (probe instanceof Error) throw probe;
  return (result: number) => {
    const value = fn({ result }) as unknown;
    if (value instanceof Error) throw value;
    return value === true || (typeof value === 'number' && value !== 0);
  };
}

/** What is wrong with a condition, or null when it compiles. */
export function conditionProblem(text: string): string | null {
  try {
    compileCondition(text);
    return null;
  } catch (err) {
    return (err as Error).message.replace(/\s+/g, ' ').trim();
  }
}

/**
 * A measured number judged as Argo Rollouts judges one: with both conditions, a failure when `failureCondition`
 * holds, else a pass when `successCondition` holds, else inconclusive; with only one, the other outcome when it does
 * not hold.
 */
export function judgeResult(
  result: number,
  conditions: { successCondition?: string; failureCondition?: string },
): 'pass' | 'fail' | 'inconclusive' {
  const failed = conditions.failureCondition ? compileCondition(conditions.failureCondition)(result) : undefined;
  const passed = conditions.successCondition ? compileCondition(conditions.successCondition)(result) : undefined;
  if (failed === true) return 'fail';
  if (passed === true) return 'pass';
  if (failed === false && passed === undefined) return 'pass';
  if (passed === false && failed === undefined) return 'fail';
  return 'inconclusive';
}
