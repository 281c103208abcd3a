import { z } from 'zod';
import { nameRecord, ResourceName } from './names';

export const Precision = z.enum(['fp32', 'bf16', 'fp16', 'int8']);
export type Precision = z.infer<typeof Precision>;

export const Architecture = z.enum(['linear', 'tree-ensemble', 'cnn', 'transformer', 'other']);
export type Architecture = z.infer<typeof Architecture>;

/** One device type of the hardware catalog (config/hardware-catalog.yaml). */
export const DeviceSpec = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lower-case letters, digits and dashes'),
    kind: z.enum(['cpu', 'gpu', 'tpu']),
    vcpu: z.number().int().positive(),
    /** Memory the model can use on one device: RAM for a CPU machine, device memory for an accelerator. */
    memoryGiB: z.number().positive(),
    memoryBandwidthGBs: z.number().positive(),
    /** Dense peak TFLOPS per precision; a precision not listed runs at the slowest listed rate. */
    peakTflops: z
      .partialRecord(z.enum(['fp32', 'bf16', 'fp16', 'int8']), z.number().positive())
      .refine((p) => Object.keys(p).length > 0, 'give the peak of at least one precision'),
    pricePerHourUsd: z.number().nonnegative(),
    /** Most devices of this type one job may use. */
    maxDevices: z.number().int().positive(),
    /** Quota pool the device's reservation comes from (default: the lifecycle's `quota.pool`), and what one device takes. */
    pool: z.string().min(1).optional(),
    quota: nameRecord(ResourceName, z.number().nonnegative()),
    /** Task queue served by workers on this hardware (training activities are routed to it). */
    taskQueue: z.string().min(1),
  })
  .strict();
export type DeviceSpec = z.infer<typeof DeviceSpec>;

export const HardwareCatalog = z
  .object({ devices: z.array(DeviceSpec).min(1) })
  .strict()
  .superRefine(
    (c, ctx) => {
      const seen = new Set<string>();
      (Array.isArray(c?.devices) ? c.devices : []).forEach((d, i) => {
        const name = (d as { name?: unknown } | undefined)?.name;
        if (typeof name !== 'string') return;
        if (seen.has(name))
          ctx.addIssue({ code: 'custom', path: ['devices', i, 'name'], message: `device "${name}" twice` });
        seen.add(name);
      });
    },
    { when: () => true },
  );
export type HardwareCatalog = z.infer<typeof HardwareCatalog>;

/** What the planner needs to know about a model and its jobs. */
export interface ModelProfile {
  architecture: Architecture;
  parameters: number;
  precision: Precision;
  training: {
    /** Training examples (rows) or, for language models, tokens. */
    rows?: number;
    tokens?: number;
    epochs: number;
    deadlineHours?: number;
    budgetUsd?: number;
  };
  serving: { qps: number; latencyP99Ms: number };
}

/** One training option the lifecycle may try, in order: a device type and count, its lease and where it runs. */
export interface TrainingOption {
  device: string;
  kind: 'cpu' | 'gpu' | 'tpu';
  count: number;
  /** Estimated duration, calibrated by earlier runs of the family; `rawHours` before calibration. */
  hours: number;
  rawHours: number;
  costUsd: number;
  taskQueue: string;
  pool: string;
  /** What the lease takes from the pool: the device's quota × count. */
  quota: Record<string, number>;
  meetsDeadline: boolean;
  /** Whether the pool could grant it when the plan was made. */
  available: boolean;
}

/** What the lifecycle's hardware selection returns. */
export interface HardwareSelection {
  training: TrainingOption[];
  serving: { device: string; count: number; replicas: number; costUsd: number; latencyMs: number };
  rationale: string;
  /** Calibration applied: measured/estimated duration of earlier runs of the family, and how many. */
  calibration: { factor: number; runs: number } | null;
}
