import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/config/paths';
import { loadYamlFile } from '../../src/config/yaml-file';
import {
  calibrate,
  devicesToFit,
  memoryNeed,
  planHardware,
  trainingCandidates,
  type Calibration,
} from '../../src/domain/hardware-plan';
import { HardwareCatalog, type Architecture, type ModelProfile, type Precision } from '../../src/shared/hardware';

const CATALOG = loadYamlFile(
  join(projectRoot(), 'config', 'hardware-catalog.yaml'),
  HardwareCatalog,
  'catalog',
).devices;
const device = (name: string) => CATALOG.find((d) => d.name === name)!;

function profile(patch: Partial<ModelProfile> & { training?: Partial<ModelProfile['training']> } = {}): ModelProfile {
  return {
    architecture: 'transformer',
    parameters: 125e6,
    precision: 'bf16',
    ...patch,
    training: { tokens: 2e9, epochs: 1, ...patch.training },
    serving: { qps: 50, latencyP99Ms: 200, ...patch.serving },
  };
}

const ARCHITECTURES: Architecture[] = ['linear', 'tree-ensemble', 'cnn', 'transformer', 'other'];
const PRECISIONS: Precision[] = ['fp32', 'bf16', 'fp16', 'int8'];

describe('the shipped catalog', () => {
  it('validates and has CPUs, T4, L4, A10G, A100 40/80, H100 and TPU v5e/v5p', () => {
    expect(CATALOG.map((d) => d.name)).toEqual(
      expect.arrayContaining([
        'cpu-4',
        'gpu-t4',
        'gpu-l4',
        'gpu-a10g',
        'gpu-a100-40',
        'gpu-a100-80',
        'gpu-h100-80',
        'tpu-v5e',
        'tpu-v5p',
      ]),
    );
  });
});

describe('estimates: properties', () => {
  it('estimated time grows with parameters and with data, on every candidate', () => {
    for (const architecture of ARCHITECTURES) {
      const base = profile({ architecture, parameters: 1e6, training: { rows: 1e5, tokens: undefined, epochs: 1 } });
      const hours = (p: ModelProfile) =>
        new Map(trainingCandidates(p, CATALOG).map((c) => [`${c.device}×${c.count}`, c.hours]));
      const small = hours(base);
      const moreParams = hours({ ...base, parameters: 4e6 });
      const moreData = hours({ ...base, training: { ...base.training, rows: 4e5 } });
      for (const [key, h] of small) {
        if (moreParams.has(key)) expect(moreParams.get(key)!, `${architecture} ${key}`).toBeGreaterThan(h);
        if (moreData.has(key)) expect(moreData.get(key)!, `${architecture} ${key}`).toBeGreaterThan(h);
      }
    }
  });

  it('never puts a model on one device whose memory it exceeds', () => {
    for (const parameters of [1e6, 1e8, 1e9, 3e9, 7e9, 13e9, 70e9])
      for (const architecture of ARCHITECTURES) {
        const p = profile({ architecture, parameters });
        const need = memoryNeed(p);
        for (const c of trainingCandidates(p, CATALOG))
          if (c.count === 1)
            expect(device(c.device).memoryGiB, `${c.device} for ${parameters}`).toBeGreaterThanOrEqual(
              need.trainingGiB,
            );
        const plan = (() => {
          try {
            return planHardware(p, CATALOG);
          } catch {
            return null;
          }
        })();
        if (plan && plan.training.choice.count === 1)
          expect(device(plan.training.choice.device).memoryGiB).toBeGreaterThanOrEqual(need.trainingGiB);
      }
  });

  it('never needs more memory to serve than to train the same model', () => {
    for (const architecture of ARCHITECTURES)
      for (const precision of PRECISIONS)
        for (const parameters of [1e4, 1e7, 1e9, 7e9]) {
          const m = memoryNeed(profile({ architecture, precision, parameters }));
          expect(m.servingGiB).toBeLessThanOrEqual(m.trainingGiB);
        }
  });
});

describe('estimates: known cases', () => {
  it('a 7-billion-parameter transformer fine-tuned in bf16 with Adam does not fit one 16 or 24 GB GPU', () => {
    const p = profile({ parameters: 7e9, precision: 'bf16' });
    const need = memoryNeed(p);
    // 16 bytes per parameter before activations: 104 GiB.
    expect(need.breakdown.weightsGiB + need.breakdown.gradientsGiB + need.breakdown.optimizerGiB).toBeCloseTo(
      (7e9 * 16) / 1024 ** 3,
      5,
    );
    for (const gpu of ['gpu-t4', 'gpu-l4', 'gpu-a10g'])
      expect(devicesToFit(device(gpu), need.trainingGiB, 'transformer')).not.toBe(1);
    const plan = planHardware(p, CATALOG);
    expect(
      plan.training.candidates.filter((c) => ['gpu-t4', 'gpu-l4', 'gpu-a10g'].includes(c.device) && c.count === 1),
    ).toEqual([]);
    expect(plan.answers.fits).toMatch(/fits no single GPU or TPU; smallest split: \d+× /);
  });

  it('a small tree ensemble trains and serves on CPU', () => {
    const plan = planHardware(
      profile({
        architecture: 'tree-ensemble',
        parameters: 20_000,
        precision: 'fp32',
        training: { rows: 4800, tokens: undefined, epochs: 1 },
      }),
      CATALOG,
    );
    expect(plan.training.choice.kind).toBe('cpu');
    expect(plan.serving.choice.kind).toBe('cpu');
    expect(plan.answers.architecture).toMatch(/^trees: CPU is the best fit/);
  });

  it('a bigger budget never yields a slower choice', () => {
    const p = profile({ parameters: 1.3e9, training: { tokens: 26e9, epochs: 1 } });
    let previous = Infinity;
    for (const budgetUsd of [50, 100, 200, 400, 800, 1600, 3200, 6400]) {
      const fastest = planHardware({ ...p, training: { ...p.training, budgetUsd } }, CATALOG).training.fastest;
      expect(fastest.hours, `budget ${budgetUsd}`).toBeLessThanOrEqual(previous);
      previous = fastest.hours;
    }
  });

  it('chooses the cheapest candidate that meets the deadline, and says what a cheaper or faster one would do', () => {
    const p = profile({ parameters: 350e6, training: { tokens: 7e9, epochs: 1 } });
    const free = planHardware(p, CATALOG);
    const tight = planHardware(
      { ...p, training: { ...p.training, deadlineHours: free.training.choice.hours / 4 } },
      CATALOG,
    );
    expect(tight.training.choice.hours).toBeLessThanOrEqual(free.training.choice.hours / 4);
    expect(tight.training.choice.costUsd).toBeGreaterThanOrEqual(free.training.choice.costUsd);
    expect(free.answers.cheaper).toMatch(
      /^training on .+ instead of .+ is [\d.]+× cheaper \(\$[\d.]+ vs \$[\d.]+\) and [\d.]+× slower/,
    );
    expect(free.answers.faster).toMatch(/would finish in .+ instead of/);
  });
});

describe('calibration', () => {
  it('converges on the measured speed of a family over repeated runs', () => {
    const p = profile({
      architecture: 'cnn',
      parameters: 25e6,
      training: { rows: 1.2e6, epochs: 5, tokens: undefined },
    });
    const raw = trainingCandidates(p, CATALOG).find((c) => c.device === 'gpu-a10g' && c.count === 1)!.hours;
    // The real runs take 2.5× the uncorrected estimate, give or take 10%.
    const noise = [1.1, 0.9, 1.05, 0.95, 1.02, 0.98, 1.0, 1.01];
    let calibration: Calibration = {};
    const errors: number[] = [];
    for (const n of noise) {
      const measured = raw * 2.5 * n;
      const predicted = trainingCandidates(p, CATALOG, calibration).find(
        (c) => c.device === 'gpu-a10g' && c.count === 1,
      )!.hours;
      errors.push(Math.abs(predicted - measured) / measured);
      calibration = calibrate(calibration, 'cnn', raw, measured);
    }
    expect(errors[0]).toBeGreaterThan(0.5); // uncalibrated: off by 60%
    expect(Math.max(...errors.slice(-4))).toBeLessThan(0.1); // after a few runs: within 10%
    expect(calibration.cnn!.factor).toBeGreaterThan(2.3);
    expect(calibration.cnn!.factor).toBeLessThan(2.7);
    expect(calibration.cnn!.runs).toBe(8);
  });
});

describe('explanations when options tie', () => {
  // A small tree ensemble, calibrated to seconds as the demo's runs are: the fixed setup time dominates on every CPU.
  const small = profile({
    architecture: 'tree-ensemble',
    parameters: 20_000,
    precision: 'fp32',
    training: { rows: 1000, tokens: undefined, epochs: 1 },
  });
  const seconds: Calibration = { 'tree-ensemble': { factor: 0.078, runs: 3 } };

  it('says the fastest option finishes about as fast, not "1.0× faster", when durations tie', () => {
    const plan = planHardware(small, CATALOG, seconds);
    const { choice, fastest } = plan.training;
    expect(fastest).not.toBe(choice);
    expect(choice.hours / fastest.hours).toBeLessThan(1.05);
    expect(plan.answers.faster).toMatch(
      new RegExp(
        `^${fastest.device} would finish about as fast \\(\\d\\.\\d s\\) for \\$[\\d.]+; ` +
          `${choice.device} is chosen as the cheaper \\(\\$[\\d.]+\\)$`,
      ),
    );
    expect(plan.answers.faster).not.toMatch(/× faster|instead of/);
    expect(plan.answers.cheaper).toMatch(
      new RegExp(
        `^training on ${choice.device} instead of ${fastest.device} is [\\d.]+× cheaper \\(\\$[\\d.]+ vs \\$[\\d.]+\\) ` +
          `and as fast \\(\\d\\.\\d s vs \\d\\.\\d s\\)$`,
      ),
    );
  });

  it('prints sub-minute durations in seconds, so a real difference shows', () => {
    const plan = planHardware({ ...small, training: { ...small.training, rows: 1e7 } }, CATALOG, {
      'tree-ensemble': { factor: 0.2, runs: 3 },
    });
    const { choice, fastest } = plan.training;
    expect(choice.hours * 3600).toBeLessThan(60);
    expect(choice.hours / fastest.hours).toBeGreaterThan(1.05);
    expect(plan.answers.faster).toMatch(
      / would finish in \d+(\.\d)? s instead of \d+(\.\d)? s \([\d.]+× faster\) for /,
    );
    expect(plan.answers.faster).not.toMatch(/\(1\.0× faster\)/);
  });

  it('calls costs within 5% about as cheap, not "1.0× cheaper"', () => {
    // A CPU twice as fast as cpu-4 for a little under twice the price: a big job costs about the same on either.
    const cpu4 = device('cpu-4');
    const cpu8 = { ...cpu4, name: 'cpu-8', vcpu: 8, memoryBandwidthGBs: 40, peakTflops: { fp32: 0.6 } };
    const plan = planHardware({ ...small, training: { ...small.training, rows: 1e8 } }, [
      cpu4,
      { ...cpu8, pricePerHourUsd: 0.37 },
    ]);
    const { choice, fastest } = plan.training;
    expect([choice.device, fastest.device]).toEqual(['cpu-4', 'cpu-8']);
    expect(fastest.costUsd / choice.costUsd).toBeLessThan(1.05);
    expect(plan.answers.cheaper).toMatch(
      /^training on cpu-4 instead of cpu-8 is about as cheap \(\$0\.050 vs \$0\.052\) and 1\.9× slower \(16 min vs 8\.4 min\)$/,
    );
    expect(plan.answers.faster).toBe('cpu-8 would finish in 8.4 min instead of 16 min (1.9× faster) for $0.052');
  });
});
