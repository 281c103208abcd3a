/**
 * Hardware planning with numbers (pure): training compute, memory and time per device type and count, serving
 * latency, throughput and replicas, the decision, and the four R3 answers. Estimates are deliberately simple and
 * documented; calibration from measured runs corrects them per architecture family.
 */
import type { Architecture, DeviceSpec, ModelProfile, Precision } from '../shared/hardware';

const GIB = 1024 ** 3;

/**
 * Fraction of peak a device type reaches on an architecture (model FLOPs utilisation). Dense networks keep tensor
 * cores busy (30-50%); linear models are memory-bound everywhere; tree ensembles branch and gather, which accelerators
 * do badly (a few % of peak) and TPUs not at all.
 */
export const UTILISATION: Record<Architecture, Record<DeviceSpec['kind'], number>> = {
  transformer: { gpu: 0.4, tpu: 0.5, cpu: 0.3 },
  cnn: { gpu: 0.35, tpu: 0.4, cpu: 0.25 },
  other: { gpu: 0.3, tpu: 0.3, cpu: 0.25 },
  linear: { gpu: 0.05, tpu: 0.02, cpu: 0.3 },
  'tree-ensemble': { gpu: 0.03, tpu: 0, cpu: 0.15 },
};

/**
 * Training FLOPs per parameter per example (or token), per epoch. Dense networks: 6 (forward 2, backward 4, the
 * usual 6·N·D). Convolutions reuse each weight across the image: ResNet-50 does 4.1 GFLOPs forward per 224² image
 * for 25.6 M parameters, 160 per parameter, so 480 with the backward pass. Tree ensembles: a rough 20 (histogram
 * building over every example for every split); calibration corrects it.
 */
export const FLOPS_PER_PARAM_EXAMPLE: Record<Architecture, number> = {
  transformer: 6,
  cnn: 480,
  other: 6,
  linear: 6,
  'tree-ensemble': 20,
};

/** Bytes per parameter of weights at a precision (int8 models train in bf16). */
const WEIGHT_BYTES: Record<Precision, number> = { fp32: 4, bf16: 2, fp16: 2, int8: 1 };

/** Peak TFLOPS of a device at a precision; a precision it lacks runs at its slowest listed rate. */
export function peakAt(device: DeviceSpec, precision: Precision): number {
  const listed = device.peakTflops[precision];
  if (listed !== undefined) return listed;
  return Math.min(...Object.values(device.peakTflops));
}

export interface MemoryNeed {
  /** Total bytes to train, in GiB: weights, gradients, optimizer state, activations and runtime. */
  trainingGiB: number;
  /** Total to serve one replica: weights at the serving precision, working memory and runtime. */
  servingGiB: number;
  breakdown: { weightsGiB: number; gradientsGiB: number; optimizerGiB: number; activationsGiB: number };
}

/**
 * Memory to train with Adam: weights and gradients at the training precision, and the optimizer state (two fp32
 * moments, plus an fp32 master copy under mixed precision), i.e. 16 bytes per parameter either way; activations a
 * quarter of that for dense networks (checkpointed, moderate batch), the data itself for trees and linear models;
 * 1 GiB of runtime. Serving keeps the weights at the serving precision plus 20% working memory and 0.5 GiB runtime.
 */
export function memoryNeed(profile: ModelProfile): MemoryNeed {
  const n = profile.parameters;
  const trainPrecision: Precision = profile.precision === 'int8' ? 'bf16' : profile.precision;
  const w = WEIGHT_BYTES[trainPrecision];
  const weights = n * w;
  const gradients = n * w;
  const optimizer = n * (trainPrecision === 'fp32' ? 8 : 12);
  const dense = ['transformer', 'cnn', 'other'].includes(profile.architecture);
  const examples = profile.training.rows ?? profile.training.tokens ?? 0;
  // Trees and linear models hold their data set in memory (about 16 fp32 features a row).
  const activations = dense ? 0.25 * (weights + gradients + optimizer) : examples * 64;
  const trainingGiB = (weights + gradients + optimizer + activations) / GIB + 1;
  const servingGiB = (n * WEIGHT_BYTES[profile.precision] * 1.2) / GIB + 0.5;
  return {
    trainingGiB,
    servingGiB,
    breakdown: {
      weightsGiB: weights / GIB,
      gradientsGiB: gradients / GIB,
      optimizerGiB: optimizer / GIB,
      activationsGiB: activations / GIB,
    },
  };
}

/** Usable share of a device's memory (the rest goes to fragmentation and the framework). */
const USABLE = 0.9;

/** Devices of a type needed to hold `gib` (sharded across devices for dense networks; one device otherwise). */
export function devicesToFit(device: DeviceSpec, gib: number, architecture: Architecture): number | null {
  const perDevice = device.memoryGiB * USABLE;
  if (gib <= perDevice) return 1;
  if (!['transformer', 'cnn', 'other'].includes(architecture)) return null;
  const count = Math.ceil(gib / perDevice);
  return count <= device.maxDevices ? count : null;
}

export interface TrainingCandidate {
  device: string;
  kind: DeviceSpec['kind'];
  count: number;
  hours: number;
  costUsd: number;
  /** Memory per device the job uses. */
  memoryPerDeviceGiB: number;
  utilisation: number;
  pool?: string;
  taskQueue: string;
  quota: Record<string, number>;
}

export interface ServingCandidate {
  device: string;
  kind: DeviceSpec['kind'];
  /** Devices one replica needs (more than one when the model does not fit one). */
  count: number;
  replicas: number;
  latencyMs: number;
  throughputPerReplica: number;
  /** USD per hour of serving the QPS (all replicas). */
  costUsd: number;
  costPer1kPredictions: number;
  meetsLatency: boolean;
  pool?: string;
  quota: Record<string, number>;
}

/** Per architecture family, measured/estimated duration ratio from completed trainings (1 = no correction). */
export type Calibration = Partial<Record<Architecture, { factor: number; runs: number }>>;

/** Training FLOPs of the whole job. */
export function trainingFlops(profile: ModelProfile): number {
  const examples = profile.training.tokens ?? profile.training.rows ?? 0;
  return FLOPS_PER_PARAM_EXAMPLE[profile.architecture] * profile.parameters * examples * profile.training.epochs;
}

/**
 * Fixed time of a training job on a device kind, billed like the rest: getting the machine, loading the data, and on
 * accelerators the runtime and the copy to device memory (CPU 1 min, GPU 5 min, TPU 10 min). It is what makes small
 * jobs cheapest on CPU.
 */
export const SETUP_HOURS: Record<DeviceSpec['kind'], number> = { cpu: 1 / 60, gpu: 5 / 60, tpu: 10 / 60 };

/** Scaling efficiency of data-parallel training over `count` devices: 90% per doubling. */
const scaling = (count: number) => 0.9 ** Math.log2(count);

/**
 * Every feasible training candidate: each device type at the fewest devices that hold the job and at each doubling
 * up to its maximum (more devices: faster, at a scaling loss). Time = FLOPs / (devices × peak × utilisation ×
 * scaling) × calibration.
 */
export function trainingCandidates(
  profile: ModelProfile,
  catalog: readonly DeviceSpec[],
  calibration: Calibration = {},
): TrainingCandidate[] {
  const flops = trainingFlops(profile);
  const need = memoryNeed(profile).trainingGiB;
  const factor = calibration[profile.architecture]?.factor ?? 1;
  const trainPrecision: Precision = profile.precision === 'int8' ? 'bf16' : profile.precision;
  const out: TrainingCandidate[] = [];
  for (const device of catalog) {
    const util = UTILISATION[profile.architecture][device.kind];
    if (util <= 0) continue;
    const fewest = devicesToFit(device, need, profile.architecture);
    if (fewest === null) continue;
    const dense = ['transformer', 'cnn', 'other'].includes(profile.architecture);
    for (let count = fewest; count <= device.maxDevices; count *= 2) {
      const seconds = flops / (count * peakAt(device, trainPrecision) * 1e12 * util * scaling(count));
      const hours = (seconds / 3600 + SETUP_HOURS[device.kind]) * factor;
      out.push({
        device: device.name,
        kind: device.kind,
        count,
        hours,
        costUsd: hours * count * device.pricePerHourUsd,
        memoryPerDeviceGiB: need / count,
        utilisation: util,
        ...(device.pool ? { pool: device.pool } : {}),
        taskQueue: device.taskQueue,
        quota: Object.fromEntries(Object.entries(device.quota).map(([k, v]) => [k, v * count])),
      });
      // Trees and linear models do not split across devices.
      if (!dense) break;
    }
  }
  return out.sort((a, b) => a.costUsd - b.costUsd || a.hours - b.hours);
}

/** Fixed per-request overhead of a device (framework, transfer): CPU 0.5 ms, GPU 1.5 ms, TPU 2 ms. */
const OVERHEAD_MS: Record<DeviceSpec['kind'], number> = { cpu: 0.5, gpu: 1.5, tpu: 2 };
/** Requests one replica serves at once: batched on accelerators, one per two vCPUs on CPU. */
const concurrency = (d: DeviceSpec) => (d.kind === 'cpu' ? Math.max(1, Math.floor(d.vcpu / 2)) : 8);
/** Serving target utilisation (headroom for bursts). */
const TARGET_UTILISATION = 0.7;

/**
 * Serving per device type: latency of one request = max(compute: 2·N FLOPs at the serving precision, memory: every
 * weight read once) + overhead; p99 taken as twice that; throughput = concurrency / latency; replicas for the QPS at
 * 70% utilisation; cost per 1,000 predictions.
 */
export function servingCandidates(profile: ModelProfile, catalog: readonly DeviceSpec[]): ServingCandidate[] {
  const need = memoryNeed(profile).servingGiB;
  const out: ServingCandidate[] = [];
  for (const device of catalog) {
    const util = UTILISATION[profile.architecture][device.kind];
    if (util <= 0) continue;
    const count = devicesToFit(device, need, profile.architecture);
    if (count === null) continue;
    const flops = 2 * profile.parameters * (profile.architecture === 'cnn' ? 160 : 1);
    const computeMs = (flops / (count * peakAt(device, profile.precision) * 1e12 * util)) * 1000;
    const bytes = profile.parameters * WEIGHT_BYTES[profile.precision];
    const memoryMs = (bytes / (count * device.memoryBandwidthGBs * 1e9)) * 1000;
    const latencyMs = Math.max(computeMs, memoryMs) + OVERHEAD_MS[device.kind];
    const throughputPerReplica = (concurrency(device) * 1000) / latencyMs;
    const replicas = Math.max(1, Math.ceil(profile.serving.qps / (throughputPerReplica * TARGET_UTILISATION)));
    const costUsd = replicas * count * device.pricePerHourUsd;
    out.push({
      device: device.name,
      kind: device.kind,
      count,
      replicas,
      latencyMs,
      throughputPerReplica,
      costUsd,
      costPer1kPredictions: costUsd / (profile.serving.qps * 3.6),
      meetsLatency: latencyMs * 2 <= profile.serving.latencyP99Ms,
      ...(device.pool ? { pool: device.pool } : {}),
      quota: Object.fromEntries(Object.entries(device.quota).map(([k, v]) => [k, v * count * replicas])),
    });
  }
  return out.sort((a, b) => a.costUsd - b.costUsd || a.latencyMs - b.latencyMs);
}

export interface HardwarePlan {
  memory: MemoryNeed;
  trainingFlops: number;
  training: {
    /** Cheapest candidate meeting the deadline (cheapest overall without one). */
    choice: TrainingCandidate;
    /** Fastest candidate within the budget (fastest overall without one). */
    fastest: TrainingCandidate;
    candidates: TrainingCandidate[];
  };
  serving: { choice: ServingCandidate; candidates: ServingCandidate[] };
  answers: { cheaper: string; faster: string; fits: string; architecture: string };
}

const r1 = (x: number) => (x >= 10 ? Math.round(x).toString() : x.toFixed(1));
const label = (c: { device: string; count: number }) => `${c.count > 1 ? `${c.count}× ` : ''}${c.device}`;
/** Hours as ms or s below a minute (so short runs differ in print), else as min, h or days. */
const duration = (h: number) => {
  const seconds = h * 3600;
  if (seconds < 1) return `${r1(seconds * 1000)} ms`;
  if (seconds < 60) return `${r1(seconds)} s`;
  return h < 1 ? `${r1(h * 60)} min` : h < 48 ? `${r1(h)} h` : `${r1(h / 24)} days`;
};
/** Dollars to two significant figures at least below $1 ("$0.0036", "$0.055"), to the cent above. */
const usd = (x: number) => `$${x.toFixed(x < 0.01 ? 4 : x < 1 ? 3 : 2)}`;
/** Within 5% (or the same in print), two options count as equally fast or equally cheap. */
const TIE = 1.05;
/** Whether two amounts are a tie: within {@link TIE} of each other, or printed the same. */
const tie = (a: number, b: number, print: (x: number) => string) =>
  print(a) === print(b) || Math.max(a, b) < TIE * Math.min(a, b);
/** How the choice's training time compares to another's: "2.8× slower", "as fast" (a tie) or "1.5× faster". */
const slower = (choiceHours: number, otherHours: number) =>
  tie(choiceHours, otherHours, duration)
    ? 'as fast'
    : choiceHours > otherHours
      ? `${r1(choiceHours / otherHours)}× slower`
      : `${r1(otherHours / choiceHours)}× faster`;
/** How the choice's cost compares to another's: "2.0× cheaper", "about as cheap" (a tie) or "1.5× more costly". */
const cheaperThan = (choiceUsd: number, otherUsd: number) =>
  tie(choiceUsd, otherUsd, usd)
    ? 'about as cheap'
    : choiceUsd < otherUsd
      ? `${r1(otherUsd / Math.max(choiceUsd, 1e-9))}× cheaper`
      : `${r1(choiceUsd / Math.max(otherUsd, 1e-9))}× more costly`;

/** The plan: candidates, the choices, and the four R3 answers in numbers. Throws when nothing can train or serve. */
export function planHardware(
  profile: ModelProfile,
  catalog: readonly DeviceSpec[],
  calibration: Calibration = {},
): HardwarePlan {
  const memory = memoryNeed(profile);
  const candidates = trainingCandidates(profile, catalog, calibration);
  if (candidates.length === 0)
    throw new Error(
      `no device in the catalog can train this ${profile.architecture} model: it needs ${memory.trainingGiB.toFixed(1)} GiB`,
    );
  const { deadlineHours, budgetUsd } = profile.training;
  const inTime = candidates.filter((c) => deadlineHours === undefined || c.hours <= deadlineHours);
  const choice = (inTime.length > 0 ? inTime : candidates).reduce((a, b) =>
    b.costUsd < a.costUsd || (b.costUsd === a.costUsd && b.hours < a.hours) ? b : a,
  );
  const affordable = candidates.filter((c) => budgetUsd === undefined || c.costUsd <= budgetUsd);
  // Nothing within the budget: the closest to it is the cheapest candidate.
  const fastest =
    affordable.length === 0
      ? candidates[0]!
      : affordable.reduce((a, b) => (b.hours < a.hours || (b.hours === a.hours && b.costUsd < a.costUsd) ? b : a));
  const serving = servingCandidates(profile, catalog);
  if (serving.length === 0)
    throw new Error(`no device in the catalog can serve this model: it needs ${memory.servingGiB.toFixed(1)} GiB`);
  const servingChoice =
    serving.find((s) => s.meetsLatency) ?? [...serving].sort((a, b) => a.latencyMs - b.latencyMs)[0]!;

  // R3, in numbers. Cheaper: the choice against the fastest candidate.
  const cheaper =
    choice === fastest
      ? `the cheapest way to train it, ${label(choice)} (${usd(choice.costUsd)}, ${duration(choice.hours)}), is also the fastest`
      : `training on ${label(choice)} instead of ${label(fastest)} is ${cheaperThan(choice.costUsd, fastest.costUsd)} ` +
        `(${usd(choice.costUsd)} vs ${usd(fastest.costUsd)}) and ${slower(choice.hours, fastest.hours)} ` +
        `(${duration(choice.hours)} vs ${duration(fastest.hours)})` +
        (deadlineHours !== undefined
          ? `; meets the ${duration(deadlineHours)} deadline: ${choice.hours <= deadlineHours ? 'yes' : 'no'}`
          : '');
  // A fastest option no meaningfully faster than the choice is a tie, not "1.0× faster". It is slower than the choice
  // when the choice goes over the budget to meet the deadline.
  const fastestCost = `for ${usd(fastest.costUsd)}${budgetUsd !== undefined ? ` (budget $${budgetUsd})` : ''}`;
  const faster =
    fastest === choice
      ? `nothing ${budgetUsd !== undefined ? 'within the budget ' : ''}is faster than ${label(choice)} (${duration(choice.hours)})`
      : tie(fastest.hours, choice.hours, duration)
        ? `${label(fastest)} would finish about as fast (${duration(fastest.hours)}` +
          `${duration(fastest.hours) !== duration(choice.hours) ? ` vs ${duration(choice.hours)}` : ''}) ${fastestCost}` +
          (choice.costUsd < fastest.costUsd
            ? `; ${label(choice)} is chosen as the cheaper (${usd(choice.costUsd)})`
            : '')
        : fastest.hours < choice.hours
          ? `${label(fastest)} would finish in ${duration(fastest.hours)} instead of ${duration(choice.hours)} ` +
            `(${r1(choice.hours / fastest.hours)}× faster) ${fastestCost}`
          : `${label(fastest)} would take ${duration(fastest.hours)} instead of ${duration(choice.hours)} ` +
            `(${r1(fastest.hours / choice.hours)}× slower) ${fastestCost}`;
  const oneAccelerator = catalog.filter(
    (d) => d.kind !== 'cpu' && devicesToFit(d, memory.trainingGiB, profile.architecture) === 1,
  );
  const oneCpu = catalog.filter(
    (d) => d.kind === 'cpu' && devicesToFit(d, memory.trainingGiB, profile.architecture) === 1,
  );
  const smallestSplit = candidates
    .filter((c) => c.kind !== 'cpu')
    .reduce<TrainingCandidate | null>(
      (a, b) => (!a || b.count < a.count || (b.count === a.count && b.costUsd < a.costUsd) ? b : a),
      null,
    );
  const fits =
    `training needs ${memory.trainingGiB.toFixed(1)} GiB (weights ${memory.breakdown.weightsGiB.toFixed(1)}, gradients ` +
    `${memory.breakdown.gradientsGiB.toFixed(1)}, optimizer ${memory.breakdown.optimizerGiB.toFixed(1)}, activations/data ` +
    `${memory.breakdown.activationsGiB.toFixed(1)}): ` +
    (oneAccelerator.length + oneCpu.length === catalog.length
      ? 'fits one device of every type in the catalog'
      : oneAccelerator.length > 0
        ? `fits one ${oneAccelerator
            .map((d) => d.name)
            .slice(0, 4)
            .join(', ')}${oneAccelerator.length > 4 ? ', …' : ''}`
        : `fits no single GPU or TPU${smallestSplit ? `; smallest split: ${label(smallestSplit)}` : ''}`) +
    (oneCpu.length > 0 && oneAccelerator.length + oneCpu.length < catalog.length
      ? `; in RAM on one ${oneCpu[0]!.name}`
      : '') +
    `; serving needs ${memory.servingGiB.toFixed(1)} GiB at ${profile.precision} (${label(servingChoice)})`;
  const suits: Record<Architecture, string> = {
    'tree-ensemble': 'trees: CPU is the best fit (accelerators reach about 3% of peak on tree ensembles, TPUs none)',
    linear: 'linear: CPU is the best fit (memory-bound; accelerators idle at a few % of peak)',
    transformer: `transformer: tensor-core accelerators at ${profile.precision} (GPUs about 40%, TPUs about 50% of peak)`,
    cnn: `cnn: GPUs or TPUs (convolutions reuse weights: about 35-40% of peak)`,
    other: 'dense network: GPUs or TPUs at about 30% of peak',
  };
  return {
    memory,
    trainingFlops: trainingFlops(profile),
    training: { choice, fastest, candidates },
    serving: { choice: servingChoice, candidates: serving },
    answers: { cheaper, faster, fits, architecture: `${suits[profile.architecture]}; chosen: ${label(choice)}` },
  };
}

/**
 * Folds a measured training duration into the family's correction factor: a geometric moving average of
 * measured/estimated (half weight to the newest run), so repeated runs converge on the real speed.
 */
export function calibrate(
  calibration: Calibration,
  architecture: Architecture,
  estimatedHoursUncorrected: number,
  measuredHours: number,
): Calibration {
  const ratio = measuredHours / Math.max(estimatedHoursUncorrected, 1e-12);
  const previous = calibration[architecture];
  const factor = previous ? Math.sqrt(previous.factor * ratio) : ratio;
  return { ...calibration, [architecture]: { factor, runs: (previous?.runs ?? 0) + 1 } };
}
