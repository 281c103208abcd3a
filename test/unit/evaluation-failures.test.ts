import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { afterEach, describe, expect, it } from 'vitest';
import { createEvaluationActivities } from '../../src/activities/evaluation';
import { ErrorType } from '../../src/shared/errors';
import { tempDir } from '../helpers/temp';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** An artifact folder whose metrics.json holds `metrics`, beside a test set (nothing else: the check comes first). */
function artifactWithMetrics(metrics: string): string {
  const dir = tempDir('evaluation-failures-');
  dirs.push(dir);
  writeFileSync(join(dir, 'metrics.json'), metrics);
  writeFileSync(join(dir, 'test.csv'), 'age,churned\n30,1\n');
  return dir;
}

async function failureOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected evaluateModel to fail');
}

describe('evaluateModel on an artifact whose metrics cannot be used', () => {
  it.each(['null', '[0.91, 0.88]', '0.91'])(
    'fails with a non-retryable ArtifactInvalid when metrics.json is %s, not an object',
    async (metrics) => {
      const dir = artifactWithMetrics(metrics);
      const { evaluateModel } = createEvaluationActivities({ root: dir });
      const err = await failureOf(evaluateModel({ artifactDir: dir, dataDir: dir }));
      expect(err).toBeInstanceOf(ApplicationFailure);
      expect(err).toMatchObject({ type: ErrorType.ArtifactInvalid, nonRetryable: true });
      expect((err as Error).message).toContain('is not a JSON object of metric names and values');
    },
  );
});
