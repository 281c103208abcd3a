import { join } from 'node:path';
import { countCsvRows } from '../drift/csv';
import { loadHardwareCatalog } from '../config/env';
import { calibrate, planHardware, type Calibration, type HardwarePlan } from '../domain/hardware-plan';
import { assess, summaryUsage } from '../domain/quota';
import type { Architecture, DeviceSpec, HardwareSelection, ModelProfile, TrainingOption } from '../shared/hardware';
import type { PoolStateRead, QuotaPoolState, QuotaRun } from '../shared/quota';
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

/**
 * The calibration the pool's history implies: for each finished training run of the family that recorded the
 * planner's estimate, measured/estimated folded in order (a geometric moving average).
 */
export function calibrationFromRuns(runs: readonly QuotaRun[], architecture: Architecture): Calibration {
  let calibration: Calibration = {};
  for (const run of runs) {
    const measured = run.usage?.durationMs;
    const estimated = run.profile?.estimatedMs;
    if (run.kind !== 'training' || run.profile?.family !== architecture || !measured || !estimated) continue;
    // Runs record the planner's estimate before calibration, so each ratio is against the raw model.
    calibration = calibrate(calibration, architecture, estimated / 3_600_000, measured / 3_600_000);
  }
  return calibration;
}

/**
 * The lifecycle's hardware selection: the planner's training candidates in the order to try them — meeting the
 * deadline before not, available in their pool now before not, cheapest first within each — each with the lease it
 * needs, plus the serving choice and the rationale (the R3 answers).
 */
export async function selectHardware(
  spec: LifecycleSpec,
  options: {
    catalogFile?: string;
    /**
     * A pool's summary with the training runs of `family` and what `holder` holds (`poolStateQuery` with `summary`,
     * `runsOf` and `holder`; the whole state answers the same), for availability and calibration; null when the pool
     * has not been used.
     */
    poolState: (pool: string, read: PoolStateRead) => Promise<QuotaPoolState | null>;
    holder: string;
    maxOptions?: number;
  },
): Promise<HardwareSelection> {
  // A summary, not the whole state: 500 lifecycles planning at once each read the pool, whose leases and queue then
  // grow with them (the whole state is hundreds of KiB by then; this read stays a few KiB, its runs of one family).
  const read: PoolStateRead = {
    summary: true,
    runsOf: { kind: 'training', family: spec.hardware.architecture },
    holder: options.holder,
  };
  const home = await options.poolState(spec.quota.pool, read);
  const calibration = calibrationFromRuns(home?.runs ?? [], spec.hardware.architecture);
  const plan = await planForSpec(spec, {
    ...(options.catalogFile ? { catalogFile: options.catalogFile } : {}),
    calibration,
  });
  const states = new Map<string, QuotaPoolState | null>([[spec.quota.pool, home]]);
  const deadline = plan.profile.training.deadlineHours;
  const options_: TrainingOption[] = [];
  for (const c of plan.training.candidates) {
    const pool = c.pool ?? spec.quota.pool;
    if (!states.has(pool)) states.set(pool, await options.poolState(pool, read));
    const state = states.get(pool) ?? null;
    const available = state
      ? assess(state.config, summaryUsage(state), { holder: options.holder, kind: 'training', resources: c.quota }).fits
      : true;
    options_.push({
      device: c.device,
      kind: c.kind,
      count: c.count,
      hours: c.hours,
      rawHours: c.hours / (calibration[spec.hardware.architecture]?.factor ?? 1),
      costUsd: c.costUsd,
      taskQueue: c.taskQueue,
      pool,
      quota: c.quota,
      meetsDeadline: deadline === undefined || c.hours <= deadline,
      available,
    });
  }
  // Candidates come cheapest first; a stable sort keeps that order within each group.
  options_.sort(
    (a, b) => Number(b.meetsDeadline) - Number(a.meetsDeadline) || Number(b.available) - Number(a.available),
  );
  const s = plan.serving.choice;
  const factor = calibration[spec.hardware.architecture];
  return {
    training: options_.slice(0, options.maxOptions ?? 6),
    serving: { device: s.device, count: s.count, replicas: s.replicas, costUsd: s.costUsd, latencyMs: s.latencyMs },
    rationale: `cheaper? ${plan.answers.cheaper}. faster? ${plan.answers.faster}. fits? ${plan.answers.fits}. ${plan.answers.architecture}`,
    calibration: factor ?? null,
  };
}
