import { describe, expect, it } from 'vitest';
import {
  countsAsSlow,
  describeSlowTrainingLimit,
  NO_SLOW_ALERT_MARGIN,
  slowTrainingLimit,
} from '../../src/domain/training-watch';
import { TrainingSpec } from '../../src/shared/spec';

const DEFAULT_MARGIN = TrainingSpec.parse({ program: 'train.py', dataDir: 'data' }).slowAlert;

describe('slow-training limit', () => {
  it('defaults to a 25 % margin and a 30 s minimum excess over the p95', () => {
    expect(DEFAULT_MARGIN).toEqual({ marginOverP95: 0.25, minExcess: 30_000 });
    expect(
      TrainingSpec.parse({ program: 'train.py', dataDir: 'data', slowAlert: { minExcess: '5s' } }).slowAlert,
    ).toEqual({ marginOverP95: 0.25, minExcess: 5_000 });
  });

  it('does not count ordinary jitter as slow (4.7 s against a p95 of 4.3 s)', () => {
    const limit = slowTrainingLimit(4300, DEFAULT_MARGIN);
    expect(limit.limitMs).toBe(34_300);
    expect(countsAsSlow(4700, limit)).toBe(false);
    // Even a margin of 10 % alone keeps this jitter quiet.
    expect(countsAsSlow(4700, slowTrainingLimit(4300, { marginOverP95: 0.1, minExcess: 0 }))).toBe(false);
  });

  it('counts a genuinely slow run as slow', () => {
    expect(countsAsSlow(60_000, slowTrainingLimit(4300, DEFAULT_MARGIN))).toBe(true);
    expect(countsAsSlow(6000, slowTrainingLimit(4300, { marginOverP95: 0.25, minExcess: 1000 }))).toBe(true);
  });

  it('takes the larger of the relative margin and the minimum excess', () => {
    // Long runs: 25 % of 10 min (150 s) is more than 30 s.
    expect(slowTrainingLimit(600_000, DEFAULT_MARGIN).limitMs).toBe(750_000);
    expect(countsAsSlow(700_000, slowTrainingLimit(600_000, DEFAULT_MARGIN))).toBe(false);
    // Short runs: 30 s is more than 25 % of 4.3 s.
    expect(slowTrainingLimit(4300, DEFAULT_MARGIN).limitMs).toBe(4300 + 30_000);
  });

  it('never counts a run as slow before 1 s, and without a margin is the bare p95 (the limit before the margin)', () => {
    expect(slowTrainingLimit(50, NO_SLOW_ALERT_MARGIN)).toMatchObject({ limitMs: 1000, atMinimum: true });
    expect(slowTrainingLimit(4300.4, NO_SLOW_ALERT_MARGIN)).toMatchObject({ limitMs: 4300, atMinimum: false });
    expect(slowTrainingLimit(100, { marginOverP95: 1, minExcess: 500 })).toMatchObject({ limitMs: 1000 });
  });

  it('says the limit and how it was derived', () => {
    expect(describeSlowTrainingLimit(slowTrainingLimit(4300, DEFAULT_MARGIN), 3)).toBe(
      'training counts as slow after 34300 ms (the p95 of 3 similar runs, 4300 ms, plus the larger of 25 % (1075 ms) ' +
        'and the minimum excess of 30000 ms)',
    );
    expect(describeSlowTrainingLimit(slowTrainingLimit(50, NO_SLOW_ALERT_MARGIN), 3)).toBe(
      'training counts as slow after 1000 ms (the p95 of 3 similar runs, 50 ms, plus the larger of 0 % (0 ms) ' +
        'and the minimum excess of 0 ms; never sooner than 1000 ms)',
    );
  });
});
