/**
 * The undo of every step that changed the world, newest on top (the saga pattern). A lifecycle pushes an undo as it
 * makes each change (a lease granted, a version deployed, traffic moved, a promotion recorded) and drops it when the
 * change is settled the normal way (the lease released after training, the promotion finished). Cancellation,
 * failure, the end of staging and a rollback all unwind the stack in reverse, each undo caught on its own.
 *
 * An undo marked `mustHold` protects what comes after it: traffic back on the stable version must hold before the
 * candidate is unloaded and its quota returned. When such an undo fails, unwinding stops there and it stays on the
 * stack with everything below it, so nothing that still serves loses its version or its quota.
 */
export interface Compensation {
  /** What the undo does, in events and failures (`undeploy candidate`). */
  readonly name: string;
  readonly undo: () => Promise<unknown>;
  readonly mustHold?: boolean;
}

export interface UnwindResult {
  /** Undos that failed and were passed over, with why. */
  readonly failed: { name: string; error: unknown }[];
  /** The `mustHold` undo that failed: unwinding stopped there and the rest is still on the stack. */
  readonly stuck: { name: string; error: unknown } | null;
}

/** Where a nested part (staging) starts on the stack; unwinding to it undoes that part alone. */
export type StackMark = number;

export class Compensations {
  private readonly stack: Compensation[] = [];

  push(name: string, undo: () => Promise<unknown>, options: { mustHold?: boolean } = {}): void {
    this.stack.push({ name, undo, ...(options.mustHold ? { mustHold: true } : {}) });
  }

  /** True while an undo of this name is on the stack. */
  has(name: string): boolean {
    return this.stack.some((c) => c.name === name);
  }

  /** Removes an undo whose change was settled the normal way (it must not run any more). */
  drop(name: string): void {
    for (let i = this.stack.length - 1; i >= 0; i--) {
      if (this.stack[i]!.name === name) {
        this.stack.splice(i, 1);
        return;
      }
    }
  }

  get size(): number {
    return this.stack.length;
  }

  mark(): StackMark {
    return this.stack.length;
  }

  /** Names on the stack, newest first. */
  names(): string[] {
    return this.stack.map((c) => c.name).reverse();
  }

  /**
   * Runs the undos from the newest down to `mark` (default: all), each on its own: a failure is reported and passed
   * over, except a `mustHold` one, which stops the unwinding and stays on the stack.
   */
  async unwind(onFailure: (name: string, error: unknown) => void, mark: StackMark = 0): Promise<UnwindResult> {
    const failed: { name: string; error: unknown }[] = [];
    while (this.stack.length > mark) {
      const top = this.stack.pop()!;
      try {
        await top.undo();
      } catch (error) {
        onFailure(top.name, error);
        if (top.mustHold) {
          this.stack.push(top);
          return { failed, stuck: { name: top.name, error } };
        }
        failed.push({ name: top.name, error });
      }
    }
    return { failed, stuck: null };
  }
}
