import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadGenerator } from '../../src/dev/load-generator';
import { checkDataWithDistributions, loadReference } from '../../src/drift';
import { dataCheckHtml } from '../../src/reports/data-check';
import type { LifecyclePage } from '../../src/reports/lifecycle';
import {
  approveAll,
  liveTraffic,
  ROOT,
  startStack,
  testSpec,
  uniqueName,
  waitForStatus,
  type Stack,
} from '../helpers/harness';
import { mlctl } from '../helpers/mlctl';
import { inspectReport, launchChromium, type ReportPageFacts } from '../helpers/report-page';
import { tempDir } from '../helpers/temp';

/** A feature name and values that are markup: the reports must show them as text, never run or render them. */
const HOSTILE_FEATURE = '</script><img src=x onerror=alert(1)>';
const HOSTILE_CATEGORY = '<b onmouseover=alert(3)>gold</b>';
const HOSTILE_REASON = 'looks fine </td></tr><img src=x onerror=alert(2)><script>alert(4)</script> & ship it';

/**
 * The screenshots docs/reports.md shows: taken on every run, written to docs/ with `UPDATE_SCREENSHOTS=1` (or when
 * missing), to a temp folder otherwise, so that a test run leaves the tracked files as they were.
 */
const shotPath = (name: string, scratch: string): string => {
  const kept = join(ROOT, 'docs', name);
  return process.env.UPDATE_SCREENSHOTS === '1' || !existsSync(kept) ? kept : join(scratch, name);
};

/**
 * A reference set and a current batch (seeded, so the same every run): monthly charges shifted up with a few far out
 * of range, a plan the reference never had (markup), ages that are not numbers, tenures missing, and a numeric feature
 * whose name is markup.
 */
function writeBatches(dir: string): { reference: string; current: string } {
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const normal = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
  const header = ['age', 'monthly_charges', 'plan', HOSTILE_FEATURE, 'tenure'].join(',');
  const rows = (n: number, shifted: boolean) =>
    Array.from({ length: n }, (_, i) =>
      [
        shifted && i % 40 === 0 ? 'unknown' : (40 + 10 * normal()).toFixed(0),
        shifted && i % 50 === 0 ? '999' : (60 + 15 * normal() + (shifted ? 20 : 0)).toFixed(2),
        shifted && i % 25 === 0 ? HOSTILE_CATEGORY : (['basic', 'plus', 'premium'][Math.floor(rnd() * 3)] ?? 'basic'),
        (5 + normal()).toFixed(3),
        shifted && i % 8 === 0 ? '' : (24 + 12 * normal()).toFixed(0),
      ].join(','),
    );
  const reference = join(dir, 'reference.csv');
  const current = join(dir, 'current.csv');
  writeFileSync(reference, [header, ...rows(800, false)].join('\n') + '\n');
  writeFileSync(current, [header, ...rows(400, true)].join('\n') + '\n');
  return { reference, current };
}

/** Every chart present and drawn, nothing raised, no markup from the data interpreted. */
function expectRendered(page: ReportPageFacts, charts: number): void {
  expect(page.problems).toEqual([]);
  expect(page.canvases).toBe(charts);
  expect(page.charts).toBe(charts);
  expect(page.blankCanvases).toBe(0);
  expect(page.images).toBe(0);
}

describe('HTML reports in headless Chromium', () => {
  let browser: Browser;
  const dir = tempDir('mll-reports-');
  const DATA_SHOT = shotPath('report-data-check.png', dir);
  const LIFECYCLE_SHOT = shotPath('report-lifecycle.png', dir);

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('mlctl data check --html', () => {
    const { reference, current } = writeBatches(dir);

    it('shows every feature with its distributions, verdict and problems, drifted first, and markup as text', async () => {
      const file = join(dir, 'data-check.html');
      // `mlctl data` reads files only: no server.
      const run = await mlctl(
        '127.0.0.1:1',
        'data',
        'check',
        '--reference',
        reference,
        '--current',
        current,
        '--html',
        file,
      );
      expect(run.stderr).toBe('');
      expect(run.code).toBe(5);
      expect(run.stdout).toContain(`HTML report: ${file}`);
      const html = readFileSync(file, 'utf8');
      // Self-contained (nothing loaded from elsewhere: the page's requests are watched too), the data escaped.
      expect(/<script[^>]+src=|<link[^>]+href=/i.test(html)).toBe(false);
      expect(html.includes(HOSTILE_FEATURE) || html.includes(HOSTILE_CATEGORY)).toBe(false);

      const page = await inspectReport(browser, file, DATA_SHOT);
      expectRendered(page, 5);
      expect(page.text).toContain(HOSTILE_FEATURE);
      expect(page.text).toContain(HOSTILE_CATEGORY);
      // Drifted first: the two drifted features head the list, then those with problems.
      const order = ['monthly_charges', 'plan', 'age', 'tenure'].map((name) => page.text.indexOf(`\n${name}\n`));
      expect(order.every((at) => at > 0)).toBe(true);
      expect(order).toEqual([...order].sort((a, b) => a - b));
      for (const kind of ['out-of-range', 'out-of-domain', 'wrong-type', 'missing-values']) {
        expect(page.text).toContain(kind);
      }
      expect(page.text).toContain('Kolmogorov–Smirnov test');
      expect(page.text).toContain('p-value < 0.05');
    });

    it('is caught as broken when its chart script is left out', async () => {
      // The checks above fail on a page that cannot draw: the same report without Chart.js.
      const checked = await checkDataWithDistributions(await loadReference(reference), current);
      const file = join(dir, 'broken.html');
      writeFileSync(file, dataCheckHtml(checked.report, checked.distributions, { withoutChartJs: true }));
      const page = await inspectReport(browser, file);
      expect(page.problems.join('\n')).toMatch(/Chart is not defined/);
      expect(page.charts).toBe(-1);
      expect(page.canvases).toBe(0);
    });
  });

  describe('mlctl report --html', () => {
    let stack: Stack;
    let load: LoadGenerator;
    const model = uniqueName('report');

    beforeAll(async () => {
      stack = await startStack();
      load = liveTraffic(stack.gateway.url, model);
    });
    afterAll(async () => {
      await load?.stop();
      await stack?.close();
    });

    it('charts the traffic, every check against its threshold, the approvals and the rollback of a bad candidate', async () => {
      // A production version first, so the bad candidate is canaried against it and rolled back to it.
      const first = await stack.lifecycles.start(testSpec(model, 'v1'));
      expect((await approveAll(stack.lifecycles, first.id)).stage).toBe('promoted');

      // A canary long enough for a few samples a second apart, which tolerates two failed prediction-drift samples
      // and stops at the third: every check's chart shows a series, and the traffic goes back to v1.
      const bad = testSpec(model, 'v2', 'bad', (s) => {
        s.rollout.canary = { percent: 25, bake: 8000 };
        s.rollout.analysis.interval = 1000;
        s.rollout.analysis.minSamples = 30;
        s.rollout.analysis.predictionDrift.failureLimit = 2;
      });
      const { id } = await stack.lifecycles.start(bad);
      const gate = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
      await stack.lifecycles.approve(id, { by: 'bob', gate: gate.pendingGate!.gate, reason: HOSTILE_REASON });
      const end = await approveAll(stack.lifecycles, id);
      expect(end.stage).toBe('rolled-back');

      const file = join(dir, 'lifecycle.html');
      const run = await mlctl(stack.address, 'report', id, '--html', file, '--json');
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const data = JSON.parse(run.stdout) as LifecyclePage;
      // The canary's 25%, then all traffic back on v1, at the times the gateway took them.
      expect(data.traffic.points.map((p) => p.percent)).toEqual([25, 0]);
      expect(data.lifecycle).toMatchObject({ stage: 'rolled-back', error: { type: expect.any(String) } });
      const failed = data.checks.filter((c) => c.failed > 0).map((c) => c.check);
      expect(failed).toContain('predictionDrift');

      expect(readFileSync(file, 'utf8').includes(HOSTILE_REASON)).toBe(false);
      const page = await inspectReport(browser, file, LIFECYCLE_SHOT);
      // The traffic chart and one chart per check.
      expectRendered(page, 1 + data.checks.length);
      expect(page.text).toContain(HOSTILE_REASON);
      expect(page.text).toContain('bob');
      expect(page.text).toContain(end.error!.message);

      const text = await mlctl(stack.address, 'report', id);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(`${model} v2: rolled-back`);
      expect(text.stdout).toContain('traffic:   25% → 0%');
      expect(text.stdout).toContain('--html');
      expect((await mlctl(stack.address, 'report', `${id}-none`, '--html', file)).code).toBe(3);
    });
  });
});
