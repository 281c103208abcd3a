import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conditionProblem, judgeResult } from '../../src/analysis/conditions';
import { measureMetricChecks } from '../../src/analysis/metric-checks';
import { expandAnalysisTemplates, metricConditionProblems } from '../../src/analysis/templates';
import { foldSample, type CheckLedger } from '../../src/domain/check-tolerance';
import { fillPlaceholders, MetricCheck, promDuration } from '../../src/shared/analysis';
import { AnalysisSpec } from '../../src/shared/spec';
import type { Decision } from '../../src/shared/status';
import { tempDir } from '../helpers/temp';

const decision = (check: string, outcome: Decision['outcome'], extra: Partial<Decision> = {}): Decision => ({
  stage: 'canary',
  check,
  value: null,
  threshold: null,
  outcome,
  at: 'now',
  ...extra,
});

/** Folds samples one after another, as a bake does; the verdict of each. */
function fold(rules: AnalysisSpec, samples: Decision[][], final = false) {
  let ledger: CheckLedger = {};
  return samples.map((decisions) => {
    const v = foldSample(decisions, ledger, rules, final);
    ledger = v.ledger;
    return v;
  });
}

describe('check limits, as Argo Rollouts counts them', () => {
  const web = (over: object = {}) =>
    MetricCheck.parse({
      name: 'conversion',
      provider: { web: { url: 'http://127.0.0.1:1/x', jsonPath: '$.v' } },
      successCondition: 'result > 0',
      ...over,
    });

  it('counts failureLimit in all: a check alternating fail and pass stops on its third failure at failureLimit 2', () => {
    const rules = AnalysisSpec.parse({ metrics: [web({ failureLimit: 2 })] });
    const m = (o: Decision['outcome']) => [decision('conversion', o, { provider: 'web' })];
    const verdicts = fold(rules, [m('fail'), m('pass'), m('fail'), m('pass'), m('fail')]);
    expect(verdicts.map((v) => v.outcome)).toEqual(['pass', 'pass', 'pass', 'pass', 'fail']);
    expect(verdicts.map((v) => v.tolerated.length)).toEqual([1, 0, 1, 0, 0]);
    expect(verdicts[4]!.ledger.conversion).toEqual({
      failed: 3,
      consecutiveFailed: 1,
      inconclusive: 0,
      consecutiveErrors: 0,
    });
  });

  it('stops on consecutiveFailureLimit failures in a row even under a higher total limit', () => {
    const rules = AnalysisSpec.parse({ errorRate: { max: 0.01, failureLimit: 10, consecutiveFailureLimit: 1 } });
    const verdicts = fold(rules, [
      [decision('errorRate', 'fail')],
      [decision('errorRate', 'pass')],
      [decision('errorRate', 'fail')],
      [decision('errorRate', 'fail')],
    ]);
    expect(verdicts.map((v) => v.outcome)).toEqual(['pass', 'pass', 'pass', 'fail']);
  });

  it('counts provider errors apart from failures, and stops past consecutiveErrorLimit', () => {
    const rules = AnalysisSpec.parse({ metrics: [web({ consecutiveErrorLimit: 2 })] });
    const m = (o: Decision['outcome']) => [decision('conversion', o, { provider: 'web' })];
    const verdicts = fold(rules, [m('error'), m('error'), m('pass'), m('error'), m('error'), m('error')]);
    expect(verdicts.map((v) => v.outcome)).toEqual(['pass', 'pass', 'pass', 'pass', 'pass', 'fail']);
    expect(verdicts[5]!.ledger.conversion).toMatchObject({ failed: 0, consecutiveErrors: 3 });
    // In the readout at the end of a bake, an error within its limit asks for another measurement.
    expect(foldSample(m('error'), {}, rules, true).outcome).toBe('retry');
  });

  it('never stops on a dry-run check, and reports its failures and errors apart', () => {
    const rules = AnalysisSpec.parse({ metrics: [web({ dryRun: true })], latencyP99Ms: { max: 5, dryRun: true } });
    const v = foldSample(
      [
        decision('conversion', 'fail', { provider: 'web', dryRun: true }),
        decision('conversion', 'error', { provider: 'web', dryRun: true }),
        decision('latencyP99Ms', 'fail'),
      ],
      {},
      rules,
      true,
    );
    expect(v.outcome).toBe('pass');
    expect(v.dryRunFailed.map((d) => [d.check, d.outcome])).toEqual([
      ['conversion', 'fail'],
      ['conversion', 'error'],
      ['latencyP99Ms', 'fail'],
    ]);
  });

  it('holds a rollout once a metric check is inconclusive more often than inconclusiveLimit', () => {
    const rules = AnalysisSpec.parse({ metrics: [web({ inconclusiveLimit: 1 })] });
    const m = (o: Decision['outcome']) => [decision('conversion', o, { provider: 'web' })];
    expect(fold(rules, [m('inconclusive'), m('inconclusive')]).map((v) => v.outcome)).toEqual(['pass', 'inconclusive']);
    // A built-in check short of traffic is not counted in a sample: its window grows instead.
    expect(foldSample([decision('errorRate', 'inconclusive')], {}, rules, false).outcome).toBe('pass');
    expect(foldSample([decision('errorRate', 'inconclusive')], {}, rules, true).outcome).toBe('inconclusive');
  });
});

describe('conditions', () => {
  it('judges as Argo Rollouts does with one or both conditions', () => {
    expect(judgeResult(0.005, { successCondition: 'result <= 0.01' })).toBe('pass');
    expect(judgeResult(0.5, { successCondition: 'result <= 0.01' })).toBe('fail');
    expect(judgeResult(0.5, { failureCondition: 'result > 0.1' })).toBe('fail');
    expect(judgeResult(0.05, { failureCondition: 'result > 0.1' })).toBe('pass');
    expect(judgeResult(0.05, { successCondition: 'result <= 0.01', failureCondition: 'result > 0.1' })).toBe(
      'inconclusive',
    );
    expect(judgeResult(1.05, { successCondition: 'abs(result - 1) < 0.1 and not (result > 2)' })).toBe('pass');
  });

  it('refuses names other than result, property tricks and syntax errors, saying what is wrong', () => {
    expect(conditionProblem('reslt > 1')).toMatch(/unknown name "reslt"/);
    expect(conditionProblem('constructor')).toMatch(/unknown name "constructor"/);
    expect(conditionProblem("'__proto__' == 1")).toMatch(/unknown name "__proto__"/);
    expect(conditionProblem('result <')).toMatch(/Parse error/);
    expect(conditionProblem('result >= 0.9')).toBeNull();
  });
});

describe('placeholders', () => {
  it('fills known names, encodes them for where they go, and leaves unknown ones', () => {
    const vars = { model: 'churn', version: 'v 2', stableVersion: '', stage: 'canary', interval: '10s', window: '3s' };
    expect(fillPlaceholders('{{model}}/{{ version }}/{{other}}', vars, encodeURIComponent)).toBe(
      'churn/v%202/{{other}}',
    );
    expect(fillPlaceholders('x{{constructor}}', vars)).toBe('x{{constructor}}');
    expect(promDuration(2500)).toBe('3s');
    expect(promDuration(0)).toBe('1s');
  });

  it('refuses unknown placeholders where a metric check sends them, naming the field', () => {
    const r = MetricCheck.safeParse({
      name: 'q',
      provider: { prometheus: { address: 'http://127.0.0.1:9090', query: 'up{job="{{jobb}}"}' } },
      successCondition: 'result == 1',
    });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]).toMatchObject({ path: ['provider', 'prometheus', 'query'] });
    expect(r.error!.issues[0]!.message).toMatch(/unknown placeholder \{\{jobb\}\}/);
    expect(
      MetricCheck.safeParse({
        name: 'outage',
        provider: { web: { url: 'http://h', jsonPath: '$.a' } },
      }).error!.issues.map((i) => i.message),
    ).toEqual(['the name of a built-in check', 'give successCondition, failureCondition or both']);
  });
});

describe('analysis templates', () => {
  const dir = tempDir('mll-templates-');
  writeFileSync(
    join(dir, 'conversion.yaml'),
    [
      'apiVersion: ml-lifecycle/v1',
      'kind: AnalysisTemplate',
      'name: conversion',
      'args:',
      '  - name: url',
      '  - name: min',
      '    default: 0.1',
      '  - name: limit',
      '    default: 1',
      'metrics:',
      '  - name: conversion',
      '    provider: { web: { url: "{{args.url}}?m={{model}}", jsonPath: "$.v" } }',
      '    successCondition: "result >= {{args.min}}"',
      '    failureLimit: "{{args.limit}}"',
    ].join('\n'),
  );
  const spec = (templates: unknown) => ({ rollout: { analysis: { templates } } });

  it('adds the template checks with arguments filled in, a whole-value argument keeping its type', () => {
    const raw = spec([{ name: 'conversion', args: { url: 'http://127.0.0.1:9/c', limit: 3 } }]);
    expect(expandAnalysisTemplates(raw, dir)).toEqual([]);
    expect((raw.rollout.analysis as { metrics?: unknown }).metrics).toEqual([
      {
        name: 'conversion',
        provider: { web: { url: 'http://127.0.0.1:9/c?m={{model}}', jsonPath: '$.v' } },
        successCondition: 'result >= 0.1',
        failureLimit: 3,
        template: 'conversion',
      },
    ]);
  });

  it('names a missing template, a missing argument and an unknown one', () => {
    expect(expandAnalysisTemplates(spec([{ name: 'nope' }]), dir)).toEqual([
      `rollout.analysis.templates.0.name: no analysis template "nope" (looked for ${join(dir, 'nope.yaml')})`,
    ]);
    expect(expandAnalysisTemplates(spec([{ name: 'conversion', args: { uri: 'x' } }]), dir)).toEqual([
      'rollout.analysis.templates.0.args.uri: template "conversion" has no argument "uri" (it takes: url, min, limit)',
      'rollout.analysis.templates.0.args: missing argument "url" of template "conversion"',
    ]);
    expect(expandAnalysisTemplates(spec([{ name: '../etc/passwd' }]), dir)[0]).toMatch(/templates\.0\.name/);
  });

  it('refuses a web check whose JSONPath does not parse, when the spec is loaded', () => {
    const checks = [
      MetricCheck.parse({
        name: 'conversion',
        provider: { web: { url: 'http://127.0.0.1:9/c', jsonPath: 'data.rate' } },
        successCondition: 'result > 0',
      }),
    ];
    expect(
      metricConditionProblems({ rollout: { analysis: { metrics: [] } }, monitoring: { metrics: checks } }),
    ).toEqual([
      expect.stringMatching(/^monitoring\.metrics\.0\.provider\.web\.jsonPath: not a JSONPath \(RFC 9535\): /),
    ]);
  });

  it('compiles the conditions of the expanded checks', () => {
    const checks = [{ successCondition: 'result >= ' }, { failureCondition: 'rate > 1', template: 't' }];
    expect(metricConditionProblems({ rollout: { analysis: { metrics: checks } } })).toEqual([
      expect.stringMatching(/^rollout\.analysis\.metrics\.0\.successCondition: Parse error/),
      'rollout.analysis.metrics.1.failureCondition: unknown name "rate": a condition can use only `result` (from template "t")',
    ]);
  });
});

describe('the web provider', () => {
  let server: Server;
  let url: string;
  const bodies: string[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        bodies.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''} ${body}`);
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        const answer: Record<string, [number, string]> = {
          '/ok': [200, '{"data":{"rate":0.25}}'],
          '/many': [200, '{"data":[{"rate":1},{"rate":2}]}'],
          '/text': [200, '{"data":{"rate":"lots"}}'],
          '/null': [200, '{"data":{"rate":null}}'],
          '/html': [200, '<html>'],
          '/down': [503, '{"error":"maintenance"}'],
        };
        const [status, text] = answer[path] ?? [404, '{}'];
        res.writeHead(status, { 'content-type': 'application/json' }).end(text);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((r) => server.close(r)));

  const measure = (path: string, over: object = {}) =>
    measureMetricChecks(
      [
        MetricCheck.parse({
          name: 'rate',
          provider: { web: { url: `${url}${path}?model={{model}}`, jsonPath: '$.data.rate', ...over } },
          successCondition: 'result >= 0.2',
        }),
      ],
      {
        model: 'churn',
        candidate: 'v2',
        stable: 'v1',
        stage: 'canary',
        intervalMs: 10_000,
        windowMs: 12_000,
        elapsedMs: 20_000,
        env: { METRIC_TOKEN: 's3cret' },
        now: new Date('2026-01-01T00:00:00Z'),
      },
    ).then((d) => d[0]!);

  it('reads the number at the JSON path and judges it, sending secrets from the environment', async () => {
    const d = await measure('/ok', {
      method: 'POST',
      body: '{"model":"{{model}}","window":"{{window}}"}',
      headers: { authorization: { fromEnv: 'METRIC_TOKEN' } },
    });
    expect(d).toMatchObject({ check: 'rate', provider: 'web', value: 0.25, outcome: 'pass' });
    expect(bodies.at(-1)).toBe('POST /ok?model=churn s3cret {"model":"churn","window":"12s"}');
  });

  it('makes every provider problem an error decision that says what went wrong', async () => {
    expect(await measure('/many', { jsonPath: '$.data[*].rate' })).toMatchObject({
      outcome: 'error',
      detail: expect.stringMatching(/2 values/),
    });
    expect(await measure('/text')).toMatchObject({ outcome: 'error', detail: expect.stringMatching(/not a number/) });
    expect(await measure('/many')).toMatchObject({ outcome: 'error', detail: expect.stringMatching(/nothing in/) });
    expect(await measure('/html')).toMatchObject({ outcome: 'error', detail: expect.stringMatching(/not JSON/) });
    expect(await measure('/down')).toMatchObject({
      outcome: 'error',
      detail: expect.stringMatching(/503: maintenance/),
    });
    expect(await measure('/ok', { headers: { authorization: { fromEnv: 'UNSET_TOKEN' } } })).toMatchObject({
      outcome: 'error',
      detail: expect.stringMatching(/UNSET_TOKEN.*not set/),
    });
    expect(await measure('/null')).toMatchObject({ outcome: 'inconclusive', value: null });
  });
});
