import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderSpecDocs, specFields } from '../../src/dev/spec-docs';

const root = join(__dirname, '../..');

/** The cells of the table row of one field of docs/spec.md, trimmed, by column name. */
function rowOf(markdown: string, path: string): Record<string, string> {
  const line = markdown.split('\n').find((l) => l.startsWith(`| \`${path}\` `));
  if (!line) throw new Error(`docs/spec.md has no row for ${path}`);
  const cells = line
    .slice(1, -1)
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());
  const [field, type, required, dflt, bounds, description] = cells;
  return {
    field: field!,
    type: type!,
    required: required!,
    default: dflt!,
    bounds: bounds!,
    description: description!,
  };
}

describe('docs/spec.md', () => {
  it('is what npm run docs:spec generates from the schema', async () => {
    const written = readFileSync(join(root, 'docs/spec.md'), 'utf8');
    const generated = await renderSpecDocs(root);
    if (written !== generated) {
      expect.fail('docs/spec.md is stale: run npm run docs:spec');
    }
  });

  it('lists known fields with their types, defaults, bounds and descriptions', async () => {
    const doc = await renderSpecDocs(root);
    expect(rowOf(doc, 'rollout.analysis.featureSkew.maxPsi')).toMatchObject({
      type: 'number',
      required: 'in `rollout.analysis.featureSkew`',
      default: '`0.5` (without `rollout.analysis.featureSkew`)',
      bounds: '> 0',
    });
    expect(rowOf(doc, 'rollout.analysis.interval')).toMatchObject({
      type: 'duration',
      required: 'no',
      default: '`1m`',
    });
    expect(rowOf(doc, 'rollout.analysis.interval').bounds).toContain('at least 1s');
    expect(rowOf(doc, 'training.maxAttempts')).toMatchObject({ type: 'integer', default: '`3`', bounds: '≥ 1; ≤ 10' });
    expect(rowOf(doc, 'training.maxAttempts').description).toBe(
      'A crashed or killed training process is retried this many times in all.',
    );
    expect(rowOf(doc, 'approval.timeout')).toMatchObject({ type: 'duration', default: '`1d`' });
    expect(rowOf(doc, 'approval.approvers')).toMatchObject({ required: 'yes', default: '' });
    expect(rowOf(doc, 'hardware.precision').bounds).toBe('`fp32`, `bf16`, `fp16`, `int8`');
    expect(rowOf(doc, 'rollout.steps[].percent')).toMatchObject({ required: 'yes', bounds: '> 0; ≤ 100' });
    // A description found through a spread (CheckLimits in src/shared/analysis.ts).
    expect(rowOf(doc, 'rollout.analysis.errorRate.inconclusiveLimit').description).toMatch(/^More inconclusive/);
    // A field without a comment has no description.
    expect(rowOf(doc, 'rollout.canary.percent').description).toBe('');
  });

  it('covers every field the schema accepts, once per union option', () => {
    const fields = specFields(root);
    const keys = fields.map((f) => `${f.path} ${f.type}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const path of ['apiVersion', 'monitoring.actions', 'deployment.staging.target.baseUrl', 'quota.wait']) {
      expect(fields.map((f) => f.path)).toContain(path);
    }
  });
});
