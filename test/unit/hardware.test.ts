import { describe, expect, it } from 'vitest';
import { chooseHardware, DEFAULT_CATALOG, memoryNeedGiB, type HardwareClass } from '../../src/domain/hardware';
import { HardwareSpec } from '../../src/shared/spec';

const GIB = 1024 ** 3;
const hw = (input: Partial<HardwareSpec>) => HardwareSpec.parse(input);

describe('memoryNeedGiB', () => {
  it('needs 16 bytes per parameter to train and 4 to serve, plus 0.5 GiB of runtime', () => {
    const need = memoryNeedGiB(hw({ architecture: 'tree-ensemble', parameters: 64 * 1024 ** 2 }));
    expect(need.training).toBeCloseTo(1 + 0.5, 12);
    expect(need.serving).toBeCloseTo(0.25 + 0.5, 12);
  });

  it('doubles the training need of dense networks for activations, not their serving need', () => {
    const parameters = 300_000_000;
    const dense = memoryNeedGiB(hw({ architecture: 'transformer', parameters }));
    const sparse = memoryNeedGiB(hw({ architecture: 'other', parameters }));
    expect(dense.training).toBeCloseTo((parameters * 32) / GIB + 0.5, 9);
    expect(sparse.training).toBeCloseTo((parameters * 16) / GIB + 0.5, 9);
    expect(dense.serving).toBe(sparse.serving);
    expect(memoryNeedGiB(hw({ architecture: 'cnn', parameters })).training).toBe(dense.training);
  });

  it('always needs less to serve than to train', () => {
    for (const architecture of ['linear', 'tree-ensemble', 'cnn', 'transformer', 'other'] as const) {
      for (const parameters of [1, 20_000, 10_000_000, 2_000_000_000]) {
        const need = memoryNeedGiB(hw({ architecture, parameters }));
        expect(need.serving).toBeLessThan(need.training);
      }
    }
  });
});

describe('chooseHardware', () => {
  it('puts tree ensembles and linear models on the cheapest CPU class', () => {
    for (const architecture of ['tree-ensemble', 'linear'] as const) {
      const choice = chooseHardware(hw({ architecture, parameters: 20_000 }));
      expect(choice.training.name).toBe('cpu-small');
      expect(choice.serving.name).toBe('cpu-small');
      expect(choice.rationale).toContain('CPU suits this architecture');
    }
  });

  it('keeps tree ensembles on CPU even when only a GPU is cheaper than the fitting CPU class', () => {
    // 1.5e9 parameters: ~22.85 GiB to train, more than cpu-small and gpu-t4 hold; cpu-large ($0.77) is the only CPU.
    const catalog: HardwareClass[] = [
      ...DEFAULT_CATALOG,
      { ...DEFAULT_CATALOG[2]!, name: 'gpu-cheap-48', memoryGiB: 48, pricePerHourUsd: 0.1 },
    ];
    const choice = chooseHardware(hw({ architecture: 'tree-ensemble', parameters: 1_500_000_000 }), catalog);
    expect(choice.training.name).toBe('cpu-large');
    expect(chooseHardware(hw({ architecture: 'other', parameters: 1_500_000_000 }), catalog).training.name).toBe(
      'gpu-cheap-48',
    );
  });

  it('picks the cheapest class whose memory fits for other architectures', () => {
    // 2e8 parameters, dense: ~6.46 GiB to train, ~1.25 GiB to serve; cpu-small ($0.19, 16 GiB) fits both.
    const small = chooseHardware(hw({ architecture: 'transformer', parameters: 200_000_000 }));
    expect([small.training.name, small.serving.name]).toEqual(['cpu-small', 'cpu-small']);
    // 1e9 parameters, dense: ~30.3 GiB to train: cpu-large ($0.77, 64 GiB) is the cheapest that fits.
    const big = chooseHardware(hw({ architecture: 'transformer', parameters: 1_000_000_000 }));
    expect(big.training.name).toBe('cpu-large');
    expect(big.trainingMemoryGiB).toBeCloseTo(32e9 / GIB + 0.5, 9);
    expect(big.serving.name).toBe('cpu-small');
  });

  it('chooses only among the classes the spec allows, separately for training and serving', () => {
    const spec = hw({
      architecture: 'transformer',
      parameters: 1_000_000_000,
      trainingClasses: ['gpu-t4', 'gpu-a100-40'],
      servingClasses: ['gpu-t4'],
    });
    const choice = chooseHardware(spec);
    expect(choice.training.name).toBe('gpu-a100-40'); // ~30.3 GiB does not fit the T4's 16
    expect(choice.serving.name).toBe('gpu-t4');
    expect(chooseHardware({ ...spec, parameters: 300_000_000 }).training.name).toBe('gpu-t4'); // ~9.44 GiB
  });

  it('explains the choice with the memory needs and the classes picked', () => {
    const choice = chooseHardware(hw({ architecture: 'tree-ensemble', parameters: 20_000 }));
    expect(choice.rationale).toBe(
      'tree-ensemble model, 20,000 parameters: training needs ~0.50 GiB → cpu-small ($0.19/h, cheapest that fits, ' +
        'CPU suits this architecture); serving needs ~0.50 GiB → cpu-small',
    );
  });

  it('throws a clear error when no class has enough memory', () => {
    expect(() => chooseHardware(hw({ architecture: 'transformer', parameters: 3_000_000_000 }))).toThrow(
      'no training hardware class fits 89.91 GiB',
    );
  });

  it('names the allowed classes and the CPU restriction when nothing fits', () => {
    expect(() =>
      chooseHardware(hw({ architecture: 'tree-ensemble', parameters: 20_000, trainingClasses: ['gpu-t4'] })),
    ).toThrow('no training hardware class fits 0.50 GiB among gpu-t4 (CPU classes only for tree-ensemble models)');
    expect(() => chooseHardware(hw({ architecture: 'cnn', parameters: 20_000, servingClasses: ['tpu-v5'] }))).toThrow(
      /^no serving hardware class fits 0\.50 GiB among tpu-v5$/,
    );
  });
});
