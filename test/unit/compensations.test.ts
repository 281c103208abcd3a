import { describe, expect, it } from 'vitest';
import { Compensations } from '../../src/workflows/lifecycle/compensations';
import { runTag } from '../../src/workflows/lifecycle/context';
import { sameWeights } from '../../src/workflows/lifecycle/rollback';

/** A stack whose undos record their names in `ran`, in the order they ran; the named ones fail. */
function stackOf(entries: (string | { name: string; fails?: boolean; mustHold?: boolean })[]) {
  const comp = new Compensations();
  const ran: string[] = [];
  for (const e of entries) {
    const { name, fails = false, mustHold = false } = typeof e === 'string' ? { name: e } : e;
    comp.push(
      name,
      () => {
        ran.push(name);
        return fails ? Promise.reject(new Error(`${name} broke`)) : Promise.resolve();
      },
      { mustHold },
    );
  }
  const reported: [string, string][] = [];
  const onFailure = (name: string, err: unknown) => reported.push([name, (err as Error).message]);
  return { comp, ran, reported, onFailure };
}

describe('Compensations', () => {
  it('unwinds newest first and leaves the stack empty', async () => {
    const { comp, ran, reported, onFailure } = stackOf(['release quota', 'undeploy', 'traffic back']);
    expect(comp.names()).toEqual(['traffic back', 'undeploy', 'release quota']);
    const result = await comp.unwind(onFailure);
    expect(ran).toEqual(['traffic back', 'undeploy', 'release quota']);
    expect(result).toEqual({ failed: [], stuck: null });
    expect(reported).toEqual([]);
    expect(comp.size).toBe(0);
  });

  it('reports a failed undo, passes over it and runs every undo below it', async () => {
    const { comp, ran, reported, onFailure } = stackOf([
      'release quota',
      { name: 'undeploy', fails: true },
      { name: 'alert', fails: true },
      'traffic back',
    ]);
    const result = await comp.unwind(onFailure);
    expect(ran).toEqual(['traffic back', 'alert', 'undeploy', 'release quota']);
    expect(reported).toEqual([
      ['alert', 'alert broke'],
      ['undeploy', 'undeploy broke'],
    ]);
    expect(result.stuck).toBeNull();
    expect(result.failed.map((f) => [f.name, (f.error as Error).message])).toEqual(reported);
    // A failed undo that is not mustHold is gone: unwinding again runs nothing.
    expect(comp.size).toBe(0);
  });

  it('stops at a failed mustHold undo, which stays on the stack with everything below it', async () => {
    const { comp, ran, reported, onFailure } = stackOf([
      'release the traffic lease',
      'release quota',
      'undeploy the candidate',
      { name: 'traffic back', fails: true, mustHold: true },
      'restore the registry',
    ]);
    const result = await comp.unwind(onFailure);
    // The undo above it ran; nothing below it did.
    expect(ran).toEqual(['restore the registry', 'traffic back']);
    expect(reported).toEqual([['traffic back', 'traffic back broke']]);
    expect(result.failed).toEqual([]);
    expect(result.stuck?.name).toBe('traffic back');
    expect((result.stuck?.error as Error).message).toBe('traffic back broke');
    expect(comp.names()).toEqual([
      'traffic back',
      'undeploy the candidate',
      'release quota',
      'release the traffic lease',
    ]);
  });

  it('passes over failures above a mustHold undo that then holds, and unwinds to the bottom', async () => {
    const { comp, ran, onFailure } = stackOf([
      'release quota',
      { name: 'traffic back', mustHold: true },
      { name: 'restore the registry', fails: true },
    ]);
    const result = await comp.unwind(onFailure);
    expect(ran).toEqual(['restore the registry', 'traffic back', 'release quota']);
    expect(result.failed.map((f) => f.name)).toEqual(['restore the registry']);
    expect(result.stuck).toBeNull();
    expect(comp.size).toBe(0);
  });

  it('unwinds a nested part down to its mark and leaves what was pushed before it', async () => {
    const { comp, ran, onFailure } = stackOf(['release training quota', 'release the traffic lease']);
    const mark = comp.mark();
    expect(mark).toBe(2);
    comp.push('release staging quota', () => Promise.resolve(ran.push('release staging quota')));
    comp.push('undeploy from staging', () => Promise.resolve(ran.push('undeploy from staging')));
    const result = await comp.unwind(onFailure, mark);
    expect(ran).toEqual(['undeploy from staging', 'release staging quota']);
    expect(result).toEqual({ failed: [], stuck: null });
    expect(comp.names()).toEqual(['release the traffic lease', 'release training quota']);
    // The rest unwinds later, as usual.
    await comp.unwind(onFailure);
    expect(ran.slice(2)).toEqual(['release the traffic lease', 'release training quota']);
  });

  it('stops a nested unwind at a failed mustHold undo above the mark', async () => {
    const { comp, ran, onFailure } = stackOf(['outer']);
    const mark = comp.mark();
    comp.push('inner quota', () => Promise.resolve(ran.push('inner quota')));
    comp.push('inner traffic', () => Promise.reject(new Error('no')), { mustHold: true });
    const result = await comp.unwind(onFailure, mark);
    expect(result.stuck?.name).toBe('inner traffic');
    expect(ran).toEqual([]);
    expect(comp.names()).toEqual(['inner traffic', 'inner quota', 'outer']);
  });

  it('drops only the newest undo of a name, and has() follows it', async () => {
    const { comp, ran, onFailure } = stackOf(['lease', 'deploy', 'lease', 'weights']);
    comp.drop('lease');
    expect(comp.names()).toEqual(['weights', 'deploy', 'lease']);
    expect(comp.has('lease')).toBe(true);
    comp.drop('lease');
    expect(comp.has('lease')).toBe(false);
    comp.drop('not on the stack');
    expect(comp.names()).toEqual(['weights', 'deploy']);
    await comp.unwind(onFailure);
    expect(ran).toEqual(['weights', 'deploy']);
  });

  it('keeps mustHold only where it was asked for', async () => {
    const { comp, onFailure } = stackOf(['plain']);
    comp.push('plain, failing', () => Promise.reject(new Error('x')), { mustHold: false });
    const result = await comp.unwind(onFailure);
    expect(result.stuck).toBeNull();
    expect(result.failed.map((f) => f.name)).toEqual(['plain, failing']);
    expect(comp.size).toBe(0);
  });
});

describe('sameWeights', () => {
  it('ignores versions at zero weight and the order of the keys', () => {
    expect(sameWeights({ v2: 100, v1: 0 }, { v2: 100 })).toBe(true);
    expect(sameWeights({ v1: 90, v2: 10 }, { v2: 10, v1: 90 })).toBe(true);
    expect(sameWeights({ v3: 0 }, {})).toBe(true);
    expect(sameWeights({}, {})).toBe(true);
  });

  it('tells different shares and different versions apart', () => {
    expect(sameWeights({ v1: 90, v2: 10 }, { v1: 80, v2: 20 })).toBe(false);
    expect(sameWeights({ v1: 100 }, { v2: 100 })).toBe(false);
    expect(sameWeights({ v1: 100 }, { v1: 90, v2: 10 })).toBe(false);
    expect(sameWeights({ v1: 100 }, {})).toBe(false);
    expect(sameWeights({}, { v1: 100 })).toBe(false);
  });
});

describe('runTag', () => {
  it('tells apart two runs of one lifecycle started in the same minute (UUIDv7 run ids)', () => {
    // Two run ids the dev server issued 2 s apart: a UUIDv7 starts with the millisecond clock.
    const first = '01a23e38-5e8c-7d41-9f2a-3c4b5d6e7f80';
    const second = '01a23e38-65b1-7a02-8e13-a1b2c3d4e5f6';
    expect(runTag(first)).not.toBe(runTag(second));
    expect(runTag(first)).toMatch(/^[0-9a-f]{8}$/);
  });
});
