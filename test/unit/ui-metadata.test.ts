import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lifecycleStartMetadata } from '../../src/client/lifecycle-client';
import { loadSpecFile } from '../../src/client/spec-file';
import { cutBytes, STATIC_DETAILS_MAX_BYTES, STATIC_SUMMARY_MAX_BYTES } from '../../src/shared/text';
import { NOT_PROMOTED_QUERY, uiSettings } from '../../src/dev/ui-screenshots';

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
const bad = () => loadSpecFile(resolve(__dirname, '../../examples/churn/specs/bad.yaml'));

describe('what the Temporal UI shows of a lifecycle', () => {
  it('summarises model, version, rollout, pool and submitter on one line', () => {
    const { staticSummary, staticDetails } = lifecycleStartMetadata(bad());
    expect(staticSummary).toBe('churn v3: train, validate, canary 10% → 50% → 100% on pool default, by ci@pipelines');
    expect(staticSummary).not.toContain('\n');
    expect(staticDetails.split('\n')[0]).toBe(bad().description);
    expect(staticDetails).toContain('- **Rollout**: canary 10% for 20s, then 50% for 10s, then 100% for 5s');
    expect(staticDetails).toContain('`mlctl status lifecycle-churn-v3`');
  });

  it('keeps the summary within 200 bytes and the details within 20 KB whatever the spec holds', () => {
    const spec = bad();
    const long = {
      ...spec,
      model: 'm'.repeat(63),
      version: 'v'.repeat(63),
      submittedBy: 's'.repeat(128),
      description: 'é'.repeat(2000),
      quota: { ...spec.quota, pool: '池'.repeat(10_000) },
    };
    const { staticSummary, staticDetails } = lifecycleStartMetadata(long);
    expect(bytes(staticSummary)).toBeLessThanOrEqual(STATIC_SUMMARY_MAX_BYTES);
    expect(staticSummary.endsWith('…')).toBe(true);
    expect(bytes(staticDetails)).toBeLessThanOrEqual(STATIC_DETAILS_MAX_BYTES);
  });

  it('cuts by UTF-8 bytes without splitting a character', () => {
    expect(cutBytes('short', 200)).toBe('short');
    const cut = cutBytes('😀'.repeat(100), 50);
    expect(bytes(cut)).toBeLessThanOrEqual(50);
    expect(cut).toBe(`${'😀'.repeat(11)}…`);
  });

  it('stores the list columns and saved views under the keys the bundled UI reads', () => {
    const settings = uiSettings('default', 'churn');
    expect(JSON.parse(settings['namespace-workflow-table-columns']!)).toEqual({
      default: ['Status', 'Workflow ID', 'MlStage', 'MlVersion', 'Start', 'End'].map((label) => ({ label })),
    });
    expect(JSON.parse(settings['saved-workflow-queries']!)).toEqual({
      default: [
        { id: 'ml-lifecycle-churn', name: 'churn lifecycles', query: 'MlModel="churn"', type: 'user' },
        { id: 'ml-lifecycle-not-promoted', name: 'Not promoted', query: NOT_PROMOTED_QUERY, type: 'user' },
      ],
    });
    expect(NOT_PROMOTED_QUERY).toBe('MlStage IN ("rolled-back","rejected","failed","rollback-stuck")');
  });
});
