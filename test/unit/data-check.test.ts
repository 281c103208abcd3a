import { describe, expect, it } from 'vitest';
import { dataCheckObservations, type DataCheckFacts } from '../../src/domain/data-check';
import type { DataProblem, DriftReport, FeatureDrift } from '../../src/drift/compare';
import { batchPath, DataCheckInput, inputProblems, type DataCheckSettings } from '../../src/shared/data-check';
import type { Observation } from '../../src/shared/alerts';
import type { QuotaPoolState, ResourceUsage } from '../../src/shared/quota';

const AT = '2025-03-04T06:00:00.000Z';
const settings = (patch: Partial<DataCheckInput> = {}): DataCheckSettings =>
  DataCheckInput.parse({ name: 'churn-daily', reference: '/ref/profile.json', current: '/b/{date}.csv', ...patch });

function feature(name: string, patch: Partial<FeatureDrift> = {}): FeatureDrift {
  return {
    name,
    type: 'numeric',
    role: 'feature',
    method: 'ks',
    statistic: 0.02,
    pValue: 0.8,
    threshold: 0.05,
    drifted: false,
    basis: 'exact',
    referenceSize: 4800,
    currentSize: 400,
    statistics: {},
    moved: [],
    ...patch,
  };
}

function report(features: FeatureDrift[], problems: DataProblem[] = [], driftShare = 0.5): DriftReport {
  const compared = features.filter((f) => f.role === 'feature' && !f.skipped);
  const drifted = compared.filter((f) => f.drifted).length;
  const share = compared.length ? drifted / compared.length : 0;
  return {
    reference: { rows: 4800 },
    current: { rows: 400 },
    features,
    comparedFeatures: compared.length,
    driftedFeatures: drifted,
    driftShare,
    datasetDriftShare: share,
    datasetDrift: drifted > 0 && share >= driftShare,
    problems,
    ok: problems.length === 0 && !features.some((f) => f.drifted),
  };
}

const clean = () =>
  report([
    feature('age'),
    feature('monthly_charges'),
    feature('plan', { type: 'categorical', method: 'chisquare' }),
    feature('churned', { role: 'label', method: 'chisquare' }),
  ]);

function resource(patch: Partial<ResourceUsage> & { resource: string }): ResourceUsage {
  return { capacity: 10, used: 2, share: 0.2, burnPerHour: 0, exhaustedAt: null, ...patch };
}
const poolState = (resources: ResourceUsage[]) => ({ name: 'etl', at: AT, resources }) as unknown as QuotaPoolState;

const observe = (facts: Partial<DataCheckFacts>) =>
  dataCheckObservations({ settings: settings(), current: '/b/2025-03-04.csv', report: clean(), at: AT, ...facts });
const byKind = (obs: Observation[]) => Object.fromEntries(obs.map((o) => [o.kind, o]));

describe('data check observations', () => {
  it('reports every condition good for a clean batch, keyed per pipeline, deciding on each batch', () => {
    const obs = observe({ settings: settings({ model: 'churn' }) });
    expect(obs.map((o) => [o.key, o.firing])).toEqual([
      ['data:churn-daily:data-drift', false],
      ['data:churn-daily:label-drift', false],
      ['data:churn-daily:data-types', false],
    ]);
    for (const o of obs) {
      expect(o).toMatchObject({
        model: 'churn',
        hysteresis: { fireAfter: 1, window: 1, resolveAfter: 1 },
        silencedByRollout: false,
        at: AT,
        details: { pipeline: 'churn-daily', current: '/b/2025-03-04.csv' },
      });
    }
    expect(byKind(obs)['data-drift']!.summary).toBe('pipeline "churn-daily": no feature drifted (0 of 3)');
  });

  it('fires data-drift when any feature drifted, naming the features and their statistics', () => {
    const r = report([
      feature('age'),
      feature('monthly_charges', { drifted: true, statistic: 0.412, pValue: 1.23e-30 }),
      feature('plan', { type: 'categorical', method: 'jensenshannon', statistic: 0.02, pValue: undefined }),
      feature('churned', { role: 'label' }),
    ]);
    const drift = byKind(observe({ report: r }))['data-drift']!;
    expect(drift).toMatchObject({ firing: true, severity: 'warning' });
    expect(drift.summary).toBe(
      'pipeline "churn-daily": 1 of 3 features drifted (share 0.333, data-set drift at 0.5): monthly_charges (ks 0.412, p 1.2e-30)',
    );
    expect(drift.details).toMatchObject({
      drifted: [{ name: 'monthly_charges', method: 'ks', statistic: 0.412, pValue: 1.23e-30, threshold: 0.05 }],
      driftShare: 1 / 3,
      datasetDrift: false,
    });

    const most = report([
      feature('age', { drifted: true, method: 'wasserstein', statistic: 0.25, pValue: undefined }),
      feature('monthly_charges', { drifted: true, statistic: 0.3, pValue: 0.001 }),
      feature('plan'),
    ]);
    expect(byKind(observe({ report: most }))['data-drift']!.summary).toMatch(
      /^pipeline "churn-daily": data set drifted, 2 of 3 features drifted \(share 0\.667.*age \(wasserstein 0\.25\), monthly_charges \(ks 0\.3, p 0\.001\)$/,
    );
  });

  it('fires label-drift on the label alone, and cannot tell without a compared label', () => {
    const labelled = report([feature('age'), feature('churned', { role: 'label', drifted: true, statistic: 9.1 })]);
    const obs = byKind(observe({ report: labelled }));
    expect(obs['data-drift']!.firing).toBe(false);
    expect(obs['label-drift']).toMatchObject({
      firing: true,
      summary: expect.stringMatching(/label drifted: churned/),
    });

    expect(byKind(observe({ report: report([feature('age')]) }))['label-drift']).toMatchObject({
      firing: null,
      summary: 'pipeline "churn-daily": no label column in the reference',
    });
    const skipped = report([feature('age'), feature('churned', { role: 'label', skipped: 'skipped by the options' })]);
    expect(byKind(observe({ report: skipped }))['label-drift']!.firing).toBeNull();
  });

  it('fires data-types on schema and cell problems with counts, not on range problems unless asked', () => {
    const problems: DataProblem[] = [
      { kind: 'wrong-type', feature: 'age', count: 8, message: 'age: 8 value(s) that are not numbers, e.g. "unknown"' },
      { kind: 'wrong-type', feature: 'tenure', count: 2, message: 'tenure: 2 value(s) that are not numbers' },
      { kind: 'missing-column', feature: 'region', message: 'region: the column is missing' },
      { kind: 'out-of-range', feature: 'monthly_charges', count: 40, message: 'monthly_charges: 40 value(s) outside' },
    ];
    const types = byKind(observe({ report: report([feature('age')], problems) }))['data-types']!;
    expect(types).toMatchObject({ firing: true, severity: 'critical' });
    expect(types.summary).toBe(
      'pipeline "churn-daily": 3 data-type problem(s): wrong-type ×2 (age: 8 value(s) that are not numbers, e.g. "unknown"; ' +
        'tenure: 2 value(s) that are not numbers), missing-column ×1 (region: the column is missing)',
    );
    expect(types.details).toMatchObject({
      counts: { 'wrong-type': 2, 'missing-column': 1 },
      other: [{ kind: 'out-of-range' }],
    });

    const rangeOnly = report([feature('age')], [problems[3]!]);
    expect(byKind(observe({ report: rangeOnly }))['data-types']!.firing).toBe(false);
    const strict = settings({ typeProblems: ['out-of-range'] });
    expect(byKind(observe({ settings: strict, report: rangeOnly }))['data-types']!.firing).toBe(true);
  });

  it('turns an unreadable batch into a firing data-types check, drift unknown', () => {
    const error = '/b/2025-03-04.csv: invalid CSV data:\n  - cannot read the file: ENOENT';
    const obs = byKind(observe({ report: null, readError: error }));
    expect(obs['data-types']).toMatchObject({
      firing: true,
      summary:
        'pipeline "churn-daily": cannot read the batch: /b/2025-03-04.csv: invalid CSV data: cannot read the file: ENOENT',
      details: { error },
    });
    expect(obs['data-drift']!.firing).toBeNull();
    expect(obs['label-drift']!.firing).toBeNull();
  });

  it('cuts a read error of any length in the observations it reports', () => {
    const readError = `/b/x.csv: invalid CSV data:\n  - ${'e'.repeat(1_000_000)}`;
    const out = dataCheckObservations({ settings: settings(), current: '/b/x.csv', report: null, readError, at: AT });
    for (const o of out) {
      expect(o.summary.length).toBeLessThan(2200);
      expect(JSON.stringify(o.details).length).toBeLessThan(2200);
    }
    expect(out[2]!.summary).toMatch(/cannot read the batch: \/b\/x\.csv: invalid CSV data: e+…$/);
  });

  it("fires data-quota-rate when a pool's resource runs out within the horizon or is above 90%", () => {
    const withPool = settings({ pool: 'etl', quotaHorizon: '6h' });
    const quota = (resources: ResourceUsage[]) =>
      byKind(observe({ settings: withPool, pool: poolState(resources) }))['data-quota-rate']!;

    const soon = quota([
      resource({ resource: 'cpu', used: 8, share: 0.8, burnPerHour: 32, exhaustedAt: '2025-03-04T06:03:45.000Z' }),
      resource({ resource: 'memoryGiB', used: 10, capacity: 100, share: 0.1 }),
    ]);
    expect(soon).toMatchObject({ key: 'data:churn-daily:data-quota-rate', pool: 'etl', firing: true });
    expect(soon.summary).toBe(
      'pool "etl" of pipeline "churn-daily": cpu at 80% of 10, runs out in about 4 min at 32/h (limit soon reached)',
    );
    // Filling up, but not within the horizon.
    expect(
      quota([resource({ resource: 'cpu', share: 0.5, burnPerHour: 0.5, exhaustedAt: '2025-03-04T16:00:00.000Z' })])
        .firing,
    ).toBe(false);
    expect(quota([resource({ resource: 'gpu:t4', used: 3.8, capacity: 4, share: 0.95 })]).summary).toBe(
      'pool "etl" of pipeline "churn-daily": gpu:t4 at 95% of 4, above 90%',
    );
    expect(quota([resource({ resource: 'cpu' })]).summary).toBe(
      'pool "etl" of pipeline "churn-daily": usage steady (cpu 20%)',
    );

    expect(byKind(observe({ settings: withPool, pool: null }))['data-quota-rate']!.firing).toBeNull();
    expect(byKind(observe({ settings: withPool, poolError: 'unknown quota pool' }))['data-quota-rate']!.firing).toBe(
      null,
    );
    // No pool named: no quota condition at all.
    expect(observe({}).some((o) => o.kind === 'data-quota-rate')).toBe(false);
  });
});

describe('data check input', () => {
  it('applies the defaults: 24h quota horizon, drift share 0.5, one batch decides', () => {
    expect(settings()).toMatchObject({
      quotaHorizon: 86_400_000,
      quotaShare: 0.9,
      driftShare: 0.5,
      hysteresis: { fireAfter: 1, window: 1, resolveAfter: 1 },
      severity: { 'data-drift': 'warning', 'label-drift': 'warning', 'data-types': 'critical' },
    });
    // The settings parse again to themselves: the schedule stores them, the workflow validates them.
    expect(DataCheckInput.parse(settings({ quotaHorizon: '2h' }))).toEqual(settings({ quotaHorizon: '2h' }));
  });

  it('names every bad field on one line', () => {
    const r = DataCheckInput.safeParse({
      name: 'Bad Name',
      reference: '/r',
      current: '/c',
      driftShare: 2,
      quotaHorizon: 'soon',
      options: { features: { age: { method: 'nonsense' } } },
    });
    expect(r.success).toBe(false);
    const text = inputProblems(r.error!);
    for (const path of [
      'name: ',
      'driftShare: ',
      'quotaHorizon: invalid duration "soon"',
      'options.features.age.method: ',
    ])
      expect(text).toContain(path);
    expect(text).not.toContain('\n');
  });

  it('names a refused feature key of the options by its path and what a feature name is', () => {
    const parsed = DataCheckInput.safeParse({
      name: 'etl',
      reference: 'r.json',
      current: 'b.csv',
      options: { features: { 'age ': { skip: true } } },
    });
    expect(parsed.success).toBe(false);
    expect(inputProblems(parsed.error!)).toBe(
      'options.features.age : a feature name: 1 to 128 characters, no control characters, no space at either end',
    );
  });

  it("names a day's batch by the run's date", () => {
    expect(batchPath('/data/batches/{date}/part-{date}.csv', '2025-03-04')).toBe(
      '/data/batches/2025-03-04/part-2025-03-04.csv',
    );
    expect(batchPath('/data/batch.csv', '2025-03-04')).toBe('/data/batch.csv');
  });
});
