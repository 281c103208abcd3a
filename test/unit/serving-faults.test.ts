import { describe, expect, it } from 'vitest';
import { InjectedFaultError, ShareCounter, VersionFaultState } from '../../src/serving/faults';

function picks(share: number, n: number): number[] {
  const counter = new ShareCounter(share);
  const picked: number[] = [];
  for (let i = 1; i <= n; i++) if (counter.next()) picked.push(i);
  return picked;
}

describe('serving fault injection', () => {
  it('picks exactly floor(n * share) of n events, spread evenly', () => {
    expect(picks(0.3, 10)).toEqual([4, 7, 10]);
    expect(picks(0.5, 6)).toEqual([2, 4, 6]);
    expect(picks(0, 1000)).toEqual([]);
    expect(picks(1, 5)).toEqual([1, 2, 3, 4, 5]);
    // Shares that binary floating point cannot hold still give exact counts.
    for (const [num, den] of [
      [1, 10],
      [29, 100],
      [3, 10],
      [7, 10],
      [1, 3],
      [1, 100],
    ] as const) {
      for (const n of [1, 7, 10, 100, 1000, 12_345]) {
        expect(picks(num / den, n), `${num}/${den} of ${n}`).toHaveLength(Math.floor((n * num) / den));
      }
    }
  });

  it('refuses shares outside [0, 1]', () => {
    for (const share of [-0.1, 1.01, Number.NaN]) expect(() => new ShareCounter(share)).toThrow(RangeError);
  });

  it('adds nothing to a prediction when no delay or failure applies', () => {
    const faults = new VersionFaultState({ errorRate: 0.5 }, "version 'v2' of model 'churn'");
    expect(faults.down).toBe(false);
    expect(faults.beforeInference()).toBeUndefined();
    expect(faults.beforeInference()).toBeDefined();
    expect(new VersionFaultState({ down: false }, 'x').beforeInference()).toBeUndefined();
  });

  it('fails the picked predictions with a 500 after the delay', async () => {
    const faults = new VersionFaultState({ errorRate: 1, delayMs: 30 }, "version 'v2' of model 'churn'");
    const hook = faults.beforeInference();
    const started = performance.now();
    const error = await hook?.().catch((err: unknown) => err);
    expect(performance.now() - started).toBeGreaterThanOrEqual(29);
    expect(error).toBeInstanceOf(InjectedFaultError);
    expect(error).toMatchObject({
      statusCode: 500,
      message: "injected fault: version 'v2' of model 'churn' failed (errorRate 1)",
    });
  });

  it('delays without failing when only a delay is set', async () => {
    const hook = new VersionFaultState({ delayMs: 20 }, 'x').beforeInference();
    const started = performance.now();
    await expect(hook?.()).resolves.toBeUndefined();
    expect(performance.now() - started).toBeGreaterThanOrEqual(19);
  });

  it('answers a down version with a 503 outage', () => {
    const faults = new VersionFaultState({ down: true }, "version 'v2' of model 'churn'");
    expect(faults.down).toBe(true);
    expect(faults.outage()).toMatchObject({
      statusCode: 503,
      message: "injected fault: version 'v2' of model 'churn' is down",
    });
  });
});
