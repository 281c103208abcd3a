import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadGenerator } from '../../src/dev/load-generator';
import { readFileSync, writeFileSync } from 'node:fs';
import { SERVING_ALERT_KINDS, type AlertRecord } from '../../src/shared/alerts';
import {
  ALERT_ROUTER_WORKFLOW_ID,
  alertRouterQuery,
  servingMonitorQuery,
  servingMonitorWorkflowId,
} from '../../src/shared/monitoring';
import { approveAll, ROOT, startStack, testSpec, uniqueName, type Stack } from '../helpers/harness';
import { tempDir } from '../helpers/temp';

/**
 * The regression (demand, LightGBM) and multiclass (routing, XGBoost) examples through their whole lifecycles on a real
 * stack, under live traffic from their own test sets: a first version, a good candidate promoted through canary and
 * ramp, and the bad candidate (a feature trained in other units) rolled back by its canary for the right reason.
 */
const EXAMPLES = [
  {
    name: 'demand',
    labelColumn: 'units_sold',
    dropColumns: ['record_id'],
    task: 'regression',
    // Only promotion days: demand and so the predicted units move up.
    drifted: (row: Record<string, string>) => row.promo === '1',
  },
  {
    name: 'routing',
    labelColumn: 'queue',
    dropColumns: ['ticket_id'],
    task: 'multiclass-classification',
    // Only the tickets of one queue: the predicted class distribution moves.
    drifted: (row: Record<string, string>) => row.queue === '0',
  },
] as const;

/** The rows of an example's test set that `keep` keeps, as a CSV file. */
function subsetCsv(example: string, keep: (row: Record<string, string>) => boolean): string {
  const [header, ...lines] = readFileSync(join(ROOT, 'examples', example, 'data', 'test.csv'), 'utf8')
    .trim()
    .split('\n');
  const names = header!.split(',');
  const kept = lines.filter((line) => {
    const cells = line.split(',');
    return keep(Object.fromEntries(names.map((n, i) => [n, cells[i] ?? ''])));
  });
  const file = join(tempDir('mll-subset-'), 'drifted.csv');
  writeFileSync(file, `${header}\n${kept.join('\n')}\n`);
  return file;
}

const exampleSpec = (example: string, model: string, version: string, variant: 'good' | 'bad') =>
  testSpec(model, version, variant, undefined, join(ROOT, 'examples', example));

describe('the regression and multiclass examples through their lifecycles', () => {
  let stack: Stack;
  const loads: LoadGenerator[] = [];

  beforeAll(async () => {
    stack = await startStack();
  });
  const monitored: string[] = [];
  afterAll(async () => {
    await Promise.all(loads.map((l) => l.stop()));
    for (const model of monitored) {
      await stack.client.workflow
        .getHandle(servingMonitorWorkflowId(model))
        .terminate('test over')
        .catch(() => undefined);
    }
    await stack?.close();
  });

  for (const example of EXAMPLES) {
    it(`${example.name} (${example.task}): first version, good candidate promoted, bad candidate rolled back, then the serving monitor fires and resolves on drifted traffic and wrong labels`, async () => {
      const model = uniqueName(example.name);
      const testCsv = join(ROOT, 'examples', example.name, 'data', 'test.csv');
      const traffic = (rowsCsv: string) => {
        const load = new LoadGenerator({
          gatewayUrl: stack.gateway.url,
          model,
          rowsCsv,
          labelColumn: example.labelColumn,
          dropColumns: [...example.dropColumns],
          ratePerSecond: 100,
          labelDelayMs: 200,
          labelsToken: stack.gateway.labelsToken,
        });
        loads.push(load);
        load.start();
        return load;
      };
      let load = traffic(testCsv);

      const first = await approveAll(
        stack.lifecycles,
        (await stack.lifecycles.start(exampleSpec(example.name, model, 'v1', 'good'))).id,
      );
      expect(first.stage, first.error?.message).toBe('promoted');
      // Validation measured the task's metrics on the test set through the served runtime.
      const metrics = example.task === 'regression' ? ['mae', 'rmse', 'r2'] : ['accuracy', 'macroF1', 'logLoss'];
      for (const m of metrics) expect(first.metrics, m).toHaveProperty(m);
      // Requests before the first version served were 404s; from here on, none may fail.
      const failedBefore = load.stats.failed;

      // The good candidate goes to production with its serving monitor on.
      const goodSpec = exampleSpec(example.name, model, 'v2', 'good');
      goodSpec.monitoring.enabled = true;
      goodSpec.monitoring.interval = 1000;
      goodSpec.monitoring.minSamples = 20;
      goodSpec.monitoring.latencyP99Ms.max = 1000;
      goodSpec.monitoring.quality =
        example.task === 'regression'
          ? { maxMae: 20, minLabels: 20, severity: 'warning' }
          : { minAccuracy: 0.5, minEstimatedAccuracy: 0.5, minLabels: 20, severity: 'warning' };
      const good = await approveAll(stack.lifecycles, (await stack.lifecycles.start(goodSpec)).id);
      expect(good.stage, JSON.stringify(good.decisions.filter((d) => d.outcome !== 'pass'))).toBe('promoted');
      monitored.push(model);
      const drift = good.decisions.filter((d) => d.check === 'predictionDrift');
      expect(drift.length).toBeGreaterThan(0);
      expect(drift.at(-1)?.rule).toContain(example.task === 'regression' ? 'KS p-value' : 'chi-squared p-value');

      const bad = await approveAll(
        stack.lifecycles,
        (await stack.lifecycles.start(exampleSpec(example.name, model, 'v3', 'bad'))).id,
      );
      const failed = bad.decisions.filter((d) => d.outcome === 'fail');
      expect(bad.stage, JSON.stringify(bad.decisions.filter((d) => d.stage !== 'validating').slice(-4))).toBe(
        'rolled-back',
      );
      // Offline it looked as good as the good one; live, its inputs and its answers are not what stable's are.
      expect(bad.decisions.filter((d) => d.stage === 'validating' && d.outcome === 'fail')).toEqual([]);
      const canaryDrift = bad.decisions.filter(
        (d) => d.stage === 'canary' && (d.check === 'predictionDrift' || d.check === 'featureSkew'),
      );
      console.log(
        `${example.name} bad candidate at canary: ${canaryDrift.map((d) => `${d.check} ${d.outcome} ${d.value} n=${d.sampleSize} ${d.detail ?? ''}`).join('; ')}`,
      );
      expect(
        failed.map((d) => d.stage),
        JSON.stringify(canaryDrift),
      ).toContain('canary');
      expect(failed.map((d) => d.check)).toEqual(
        expect.arrayContaining([expect.stringMatching(/^(featureSkew|predictionDrift)$/)]),
      );
      expect(bad.error?.message).toMatch(/canary failed: .*(featureSkew|predictionDrift)/);
      const routing = (await (await stack.gateway.admin(`/admin/models/${model}`)).json()) as {
        weights: Record<string, number>;
      };
      expect(routing.weights).toEqual({ v2: 100 });
      expect(load.stats.failed - failedBefore).toBe(0);

      // The serving monitor of v2, on the same live traffic.
      const router = stack.client.workflow.getHandle(ALERT_ROUTER_WORKFLOW_ID);
      const serving = new Set<string>(SERVING_ALERT_KINDS);
      const history = async () =>
        (await router.query(alertRouterQuery, { model, limit: 1000 })).history.filter(
          (h) => h.kind !== undefined && serving.has(h.kind),
        );
      const count = async (event: AlertRecord['event'], kind: string) =>
        (await history()).filter((h) => h.event === event && h.kind === kind).length;
      const cycle = async (kind: string, inject: () => Promise<void>, clear: () => Promise<void>) => {
        const fired = await count('fired', kind);
        const resolved = await count('resolved', kind);
        await inject();
        await expect.poll(() => count('fired', kind), { timeout: 40_000, interval: 250 }).toBe(fired + 1);
        await clear();
        await expect.poll(() => count('resolved', kind), { timeout: 40_000, interval: 250 }).toBe(resolved + 1);
      };
      // Healthy traffic: nothing of the model's serving fired, and a classifier's estimated accuracy is reported.
      expect(await history()).toEqual([]);
      await cycle(
        'prediction-drift',
        async () => {
          await load.stop();
          load = traffic(subsetCsv(example.name, example.drifted));
        },
        async () => {
          await load.stop();
          load = traffic(testCsv);
        },
      );
      await cycle(
        'model-quality',
        async () => load.setLabelFlipShare(1),
        async () => load.setLabelFlipShare(0),
      );
      // An estimate stays put when only the labels go wrong (concept shift is for labels to see): never fired; the
      // monitor shows it beside the realised accuracy.
      expect(await count('fired', 'estimated-quality')).toBe(0);
      if (example.task !== 'regression') {
        const state = await stack.client.workflow.getHandle(servingMonitorWorkflowId(model)).query(servingMonitorQuery);
        const estimate = state.latest.find((o) => o.kind === 'estimated-quality');
        expect(estimate?.firing).toBe(false);
        expect(estimate?.summary).toMatch(
          /estimated accuracy 0\.\d+ \(min 0\.5\) on \d+ predictions \(realised 0\.\d+ on \d+ labels\)/,
        );
      }
      await load.stop();
    }, 360_000);
  }
});
