import type { HardwareSpec } from '../shared/spec';

/** One hardware class of the catalog. */
export interface HardwareClass {
  name: string;
  kind: 'cpu' | 'gpu' | 'tpu';
  /** Memory available to the model on one device (GiB): RAM for CPU classes, device memory otherwise. */
  memoryGiB: number;
  vcpu: number;
  pricePerHourUsd: number;
  /** Task queue served by workers of this class (training activities are routed to it). */
  taskQueue: string;
  /** Quota resources one device of this class takes from the pool. */
  quota: Record<string, number>;
}

/** The built-in catalog; the hardware planner replaces it with a configurable one. */
export const DEFAULT_CATALOG: readonly HardwareClass[] = [
  {
    name: 'cpu-small',
    kind: 'cpu',
    memoryGiB: 16,
    vcpu: 4,
    pricePerHourUsd: 0.19,
    taskQueue: 'train-cpu',
    quota: { cpu: 4, memoryGiB: 16 },
  },
  {
    name: 'cpu-large',
    kind: 'cpu',
    memoryGiB: 64,
    vcpu: 16,
    pricePerHourUsd: 0.77,
    taskQueue: 'train-cpu',
    quota: { cpu: 16, memoryGiB: 64 },
  },
  {
    name: 'gpu-t4',
    kind: 'gpu',
    memoryGiB: 16,
    vcpu: 4,
    pricePerHourUsd: 0.53,
    taskQueue: 'train-gpu',
    quota: { cpu: 4, memoryGiB: 16, 'gpu:t4': 1 },
  },
  {
    name: 'gpu-a100-40',
    kind: 'gpu',
    memoryGiB: 40,
    vcpu: 12,
    pricePerHourUsd: 3.67,
    taskQueue: 'train-gpu',
    quota: { cpu: 12, memoryGiB: 85, 'gpu:a100': 1 },
  },
];

export interface HardwareChoice {
  training: HardwareClass;
  serving: HardwareClass;
  trainingMemoryGiB: number;
  servingMemoryGiB: number;
  rationale: string;
}

const GIB = 1024 ** 3;

/**
 * Memory a model needs, in GiB. Training keeps fp32 weights, gradients and two Adam moments (16 bytes per
 * parameter) plus activations (taken as the same again for dense networks); serving keeps the weights only. A fixed
 * 0.5 GiB covers the runtime.
 */
export function memoryNeedGiB(hw: HardwareSpec): { training: number; serving: number } {
  const dense = hw.architecture === 'cnn' || hw.architecture === 'transformer';
  const training = (hw.parameters * 16 * (dense ? 2 : 1)) / GIB + 0.5;
  const serving = (hw.parameters * 4) / GIB + 0.5;
  return { training, serving };
}

/**
 * First-fit hardware choice: linear and tree models gain nothing from accelerators, so they go to CPU classes;
 * other architectures take the cheapest class whose memory fits. Classes not allowed by the spec are skipped.
 */
export function chooseHardware(hw: HardwareSpec, catalog: readonly HardwareClass[] = DEFAULT_CATALOG): HardwareChoice {
  const need = memoryNeedGiB(hw);
  const cpuOnly = hw.architecture === 'linear' || hw.architecture === 'tree-ensemble';
  const pick = (allowed: readonly string[], memory: number, what: string) => {
    const candidates = catalog
      .filter((c) => allowed.length === 0 || allowed.includes(c.name))
      .filter((c) => !cpuOnly || c.kind === 'cpu')
      .filter((c) => c.memoryGiB >= memory)
      .sort((a, b) => a.pricePerHourUsd - b.pricePerHourUsd);
    const best = candidates[0];
    if (!best) {
      throw new Error(
        `no ${what} hardware class fits ${memory.toFixed(2)} GiB` +
          (allowed.length ? ` among ${allowed.join(', ')}` : '') +
          (cpuOnly ? ` (CPU classes only for ${hw.architecture} models)` : ''),
      );
    }
    return best;
  };
  const training = pick(hw.trainingClasses, need.training, 'training');
  const serving = pick(hw.servingClasses, need.serving, 'serving');
  const rationale =
    `${hw.architecture} model, ${hw.parameters.toLocaleString('en-US')} parameters: training needs ~${need.training.toFixed(2)} GiB ` +
    `→ ${training.name} ($${training.pricePerHourUsd}/h, cheapest that fits${cpuOnly ? ', CPU suits this architecture' : ''}); ` +
    `serving needs ~${need.serving.toFixed(2)} GiB → ${serving.name}`;
  return { training, serving, trainingMemoryGiB: need.training, servingMemoryGiB: need.serving, rationale };
}
