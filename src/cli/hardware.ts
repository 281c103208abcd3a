import type { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { calibrationFromRuns, planForSpec, type SpecHardwarePlan } from '../client/hardware-planning';
import { QuotaClient } from '../client/quota-client';
import { loadQuotaPools, quotaPoolsPath } from '../config/env';
import type { Calibration } from '../domain/hardware-plan';
import { loadSpecFile } from '../client/spec-file';
import { table } from './format';

const money = (x: number) => (x < 0.01 ? `$${x.toFixed(4)}` : x < 100 ? `$${x.toFixed(2)}` : `$${Math.round(x)}`);
const hours = (h: number) =>
  h < 1 / 60 ? `${Math.round(h * 3600)}s` : h < 1 ? `${Math.round(h * 60)}m` : `${h.toFixed(1)}h`;
const gib = (x: number) => `${x < 10 ? x.toFixed(2) : Math.round(x)} GiB`;

export function formatPlan(p: SpecHardwarePlan): string {
  const t = p.training;
  const mark = (c: object, tags: [object, string][]) =>
    tags
      .filter(([x]) => x === c)
      .map(([, s]) => s)
      .join(', ');
  const lines = [
    `${p.model} ${p.version}: ${p.profile.architecture}, ${p.profile.parameters.toLocaleString('en-US')} parameters, ${p.profile.precision}; ` +
      `training ${(p.profile.training.tokens ?? p.profile.training.rows ?? 0).toLocaleString('en-US')} ${p.profile.training.tokens ? 'tokens' : 'rows'} × ${p.profile.training.epochs} epoch(s), ` +
      `${p.trainingFlops.toExponential(2)} FLOPs; memory: train ${gib(p.memory.trainingGiB)}, serve ${gib(p.memory.servingGiB)}`,
    ...p.notes.map((n) => `note: ${n}`),
    '',
    'training candidates (cheapest first)',
    table(
      ['DEVICE', 'COUNT', 'TIME', 'COST', 'MEM/DEVICE', 'UTIL', 'QUEUE', ''],
      t.candidates.slice(0, 15).map((c) => [
        c.device,
        String(c.count),
        hours(c.hours),
        money(c.costUsd),
        gib(c.memoryPerDeviceGiB),
        `${Math.round(c.utilisation * 100)}%`,
        c.taskQueue,
        mark(c, [
          [t.choice, 'CHOICE'],
          [t.fastest, 'FASTEST'],
        ]),
      ]),
    ),
    '',
    `serving candidates at ${p.profile.serving.qps} QPS, p99 ≤ ${p.profile.serving.latencyP99Ms} ms (cheapest first)`,
    table(
      ['DEVICE', 'COUNT', 'REPLICAS', 'LATENCY', 'REQ/S/REPLICA', 'COST/H', 'PER 1K', 'P99 OK', ''],
      p.serving.candidates
        .slice(0, 15)
        .map((c) => [
          c.device,
          String(c.count),
          String(c.replicas),
          `${c.latencyMs.toFixed(2)} ms`,
          String(Math.round(c.throughputPerReplica)),
          money(c.costUsd),
          money(c.costPer1kPredictions),
          c.meetsLatency ? 'yes' : 'no',
          c === p.serving.choice ? 'CHOICE' : '',
        ]),
    ),
    '',
    `cheaper?       ${p.answers.cheaper}`,
    `faster?        ${p.answers.faster}`,
    `fits?          ${p.answers.fits}`,
    `architecture?  ${p.answers.architecture}`,
  ];
  return lines.join('\n');
}

/** `mlctl hardware plan <spec>`. */
export function addHardwareCommands(
  program: Command,
  print: (cmd: Command, json: unknown, text: string) => void,
  connect: () => Promise<Client>,
): void {
  const hardware = program.command('hardware').description('hardware for training and serving, with numbers');
  hardware
    .command('plan <spec>')
    .description('candidates for training and serving a spec, the choices and why (R3)')
    .option('--json', 'machine-readable output')
    .option('--catalog <file>', 'hardware catalog (default: HARDWARE_CATALOG_FILE or config/hardware-catalog.yaml)')
    .option(
      '--calibrated',
      "correct the estimates by the measured trainings in the spec's quota pool (reads it from the Temporal server)",
    )
    .option(
      '--pools <file>',
      'quota pools file, with --calibrated (default: QUOTA_POOLS_FILE or config/quota-pools.yaml)',
    )
    .action(async (file: string, o: { catalog?: string; calibrated?: boolean; pools?: string }, cmd: Command) => {
      const spec = loadSpecFile(file);
      let calibration: Calibration = {};
      const notes: string[] = [];
      if (o.calibrated) {
        const quota = new QuotaClient(await connect(), loadQuotaPools(o.pools ?? quotaPoolsPath()));
        const state = await quota.state(spec.quota.pool, {
          summary: true,
          runsOf: { kind: 'training', family: spec.hardware.architecture },
        });
        calibration = calibrationFromRuns(state?.runs ?? [], spec.hardware.architecture);
        const c = calibration[spec.hardware.architecture];
        notes.push(
          c
            ? `estimates calibrated by ${c.runs} measured ${spec.hardware.architecture} training(s) in pool "${spec.quota.pool}": ×${c.factor.toFixed(3)}`
            : `no measured ${spec.hardware.architecture} training in pool "${spec.quota.pool}" yet: estimates uncalibrated`,
        );
      }
      const plan = await planForSpec(spec, { ...(o.catalog ? { catalogFile: o.catalog } : {}), calibration });
      const out = {
        ...plan,
        notes: [...plan.notes, ...notes],
        calibration: calibration[spec.hardware.architecture] ?? null,
      };
      print(cmd, out, formatPlan(out));
    });
}
