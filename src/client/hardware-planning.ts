import { join } from 'node:path';
import { countCsvRows } from '../activities/process-usage';
import { loadHardwareCatalog } from '../config/env';
import { planHardware, type Calibration, type HardwarePlan } from '../domain/hardware-plan';
import type { DeviceSpec, ModelProfile } from '../shared/hardware';
import type { LifecycleSpec } from '../shared/spec';

/** A spec the planner cannot plan for: a device it names is not in the catalog, or nothing can train or serve it. */
export class PlanInputError extends Error {}

/** Queries per second assumed when a spec does not predict its traffic. */
export const DEFAULT_QPS = 10;

/** The planner's view of a lifecycle spec; the training rows are counted from train.csv when the spec omits them. */
export async function profileOf(spec: LifecycleSpec): Promise<{ profile: ModelProfile; notes: string[] }> {
  const notes: string[] = [];
  let rows = spec.training.dataset?.rows;
  const tokens = spec.training.dataset?.tokens;
  if (rows === undefined && tokens === undefined) {
    rows = await countCsvRows(join(spec.training.dataDir, 'train.csv'));
    if (rows === undefined) throw new Error(`cannot count the rows of ${join(spec.training.dataDir, 'train.csv')}`);
    notes.push(`${rows} training rows counted in ${join(spec.training.dataDir, 'train.csv')}`);
  }
  const qps = spec.serving.qps ?? spec.quota.serving.qps;
  if (qps === undefined) notes.push(`no serving.qps in the spec: sized for ${DEFAULT_QPS} QPS`);
  return {
    notes,
    profile: {
      architecture: spec.hardware.architecture,
      parameters: spec.hardware.parameters,
      precision: spec.hardware.precision,
      training: {
        ...(rows !== undefined ? { rows } : {}),
        ...(tokens !== undefined ? { tokens } : {}),
        epochs: spec.training.epochs,
        ...(spec.training.deadline !== undefined ? { deadlineHours: spec.training.deadline / 3_600_000 } : {}),
        ...(spec.training.budgetUsd !== undefined ? { budgetUsd: spec.training.budgetUsd } : {}),
      },
      serving: { qps: qps ?? DEFAULT_QPS, latencyP99Ms: spec.serving.latencyP99Ms },
    },
  };
}

/** Devices a spec allows (its `trainingClasses` / `servingClasses`; all when empty). */
function allowed(catalog: readonly DeviceSpec[], names: readonly string[]): DeviceSpec[] {
  if (names.length === 0) return [...catalog];
  const unknown = names.filter((n) => !catalog.some((d) => d.name === n));
  if (unknown.length > 0)
    throw new PlanInputError(
      `hardware: unknown device(s) ${unknown.join(', ')} (catalog: ${catalog.map((d) => d.name).join(', ')})`,
    );
  return catalog.filter((d) => names.includes(d.name));
}

export interface SpecHardwarePlan extends HardwarePlan {
  model: string;
  version: string;
  profile: ModelProfile;
  notes: string[];
}

/** Plans training and serving hardware for a spec (training and serving each among the devices the spec allows). */
export async function planForSpec(
  spec: LifecycleSpec,
  options: { catalogFile?: string; calibration?: Calibration } = {},
): Promise<SpecHardwarePlan> {
  const catalog = loadHardwareCatalog(options.catalogFile).devices;
  const { profile, notes } = await profileOf(spec);
  const plan = (devices: DeviceSpec[]) => {
    try {
      return planHardware(profile, devices, options.calibration);
    } catch (err) {
      throw new PlanInputError((err as Error).message);
    }
  };
  const training = plan(allowed(catalog, spec.hardware.trainingClasses));
  const serving =
    spec.hardware.servingClasses.length > 0
      ? plan(allowed(catalog, spec.hardware.servingClasses)).serving
      : training.serving;
  return { ...training, serving, model: spec.model, version: spec.version, profile, notes };
}
