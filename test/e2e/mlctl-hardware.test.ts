import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { EXAMPLE, testSpec } from '../helpers/harness';
import { mlctl } from '../helpers/mlctl';
import { tempDir } from '../helpers/temp';

// `mlctl hardware plan` needs no server: it reads the spec, the catalog and the training data.
const run = (...args: string[]) => mlctl('127.0.0.1:1', 'hardware', 'plan', ...args);

interface Plan {
  training: {
    choice: { device: string; kind: string; count: number; hours: number; costUsd: number };
    fastest: { device: string; hours: number; costUsd: number };
    candidates: { device: string; count: number; memoryPerDeviceGiB: number }[];
  };
  serving: {
    choice: { device: string; kind: string; count: number; replicas: number; costUsd: number };
    candidates: unknown[];
  };
  answers: { cheaper: string; faster: string; fits: string; architecture: string };
  memory: { trainingGiB: number; servingGiB: number };
}

describe('mlctl hardware plan', () => {
  const dir = tempDir('mll-hw-');
  const write = (name: string, patch: (s: ReturnType<typeof testSpec>) => void) => {
    const spec = testSpec('hw', 'v1');
    patch(spec);
    const file = join(dir, name);
    writeFileSync(file, stringify(spec));
    return file;
  };

  it('plans the example tree ensemble on CPU for training and serving, with the four answers', async () => {
    const r = await run(join(EXAMPLE, 'specs', 'good.yaml'), '--json');
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout) as Plan;
    expect(plan.training.choice).toMatchObject({
      device: expect.stringMatching(/^cpu-/) as string,
      kind: 'cpu',
      count: 1,
    });
    expect(plan.training.choice.hours).toBeGreaterThan(0);
    expect(plan.training.choice.costUsd).toBeGreaterThan(0);
    expect(plan.serving.choice).toMatchObject({ kind: 'cpu', count: 1, replicas: 1 });
    expect(plan.training.candidates.length).toBeGreaterThan(5);
    expect(plan.serving.candidates.length).toBeGreaterThan(5);
    expect(plan.answers.architecture).toMatch(/^trees: CPU is the best fit/);
    const text = await run(join(EXAMPLE, 'specs', 'good.yaml'));
    expect(text.stdout).toMatch(/training candidates \(cheapest first\)/);
    expect(text.stdout).toMatch(/cheaper\? +training on cpu-4/);
  });

  it('splits a 7-billion-parameter bf16 transformer across accelerators and keeps to deadline and budget', async () => {
    const file = write('llm.yaml', (s) => {
      s.hardware = { ...s.hardware, architecture: 'transformer', parameters: 7e9, precision: 'bf16' };
      s.training.dataset = { tokens: 2e9 };
      s.training.deadline = 24 * 3_600_000;
      s.training.budgetUsd = 2000;
      s.serving = { qps: 20, latencyP99Ms: 200 };
    });
    const plan = JSON.parse((await run(file, '--json')).stdout) as Plan;
    expect(plan.memory.trainingGiB).toBeGreaterThan(100);
    expect(plan.training.choice.count).toBeGreaterThan(1);
    expect(plan.training.choice.hours).toBeLessThanOrEqual(24);
    expect(plan.training.fastest.costUsd).toBeLessThanOrEqual(2000);
    for (const c of plan.training.candidates.filter((c) => ['gpu-t4', 'gpu-l4', 'gpu-a10g'].includes(c.device)))
      expect(c.count).toBeGreaterThan(1);
    expect(plan.answers.fits).toMatch(/fits no single GPU or TPU/);
  });

  it('exits 2 naming a device the spec allows that the catalog lacks, and a bad catalog', async () => {
    const file = write('unknown.yaml', (s) => (s.hardware.trainingClasses = ['gpu-b200']));
    const r = await run(file);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/hardware: unknown device\(s\) gpu-b200 \(catalog: cpu-4, /);
    const catalog = join(dir, 'catalog.yaml');
    writeFileSync(catalog, 'devices:\n  - name: GPU X\n    kind: fpga\n');
    const bad = await run(file, '--catalog', catalog);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/invalid hardware catalog/);
    expect(bad.stderr).toMatch(/devices\.0\.name \(line 2\)/);
    expect(bad.stderr).toMatch(/devices\.0\.kind \(line 3\)/);
  });
});
