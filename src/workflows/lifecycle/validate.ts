import { evaluateOffline } from '../../domain/validation';
import { ErrorType } from '../../shared/errors';
import { Stage } from '../../shared/status';
import { control, type LifecycleContext } from './context';
import type { Promotable } from './promote';

/**
 * Validates the artifact on the held-out test set in the serving runtime, against the spec's thresholds and the
 * metrics of the version in production now. The evidence to promote with, or null when a check failed (the lifecycle
 * has ended failed).
 */
export async function validate(ctx: LifecycleContext, artifactDir: string): Promise<Promotable | null> {
  const { spec, lc } = ctx;
  lc.enter(Stage.Validating);
  ctx.details('validating against thresholds and production');
  const production = await control.getProductionVersion({ model: spec.model });
  // Compared with at validation; the rollout's stable version is read again once the lifecycle holds the traffic.
  lc.stableVersion = production?.version ?? null;
  const evaluated = await control.evaluateModel({
    artifactDir,
    ...(lc.artifactUri && lc.artifactDigest ? { artifactUri: lc.artifactUri, artifactDigest: lc.artifactDigest } : {}),
    dataDir: spec.training.dataDir,
    ...(spec.validation.testData ? { testData: spec.validation.testData } : {}),
    task: spec.task,
    ...(production?.artifactDir ? { referenceArtifactDir: production.artifactDir } : {}),
    ...(production?.artifactUri && production.artifactDigest
      ? { referenceArtifactUri: production.artifactUri, referenceArtifactDigest: production.artifactDigest }
      : {}),
  });
  lc.metrics = evaluated.metrics;
  lc.event(
    `artifact answers ${evaluated.smokeRows} raw test rows with valid ` +
      `${spec.task === 'regression' ? 'values' : 'probabilities'} in the serving runtime`,
  );
  const offline = evaluateOffline(
    spec.validation,
    evaluated.metrics,
    // A metric that could not be computed reached the registry as null (JSON has no NaN), as it always has.
    (production?.metrics as Record<string, number> | undefined) ?? null,
    new Date().toISOString(),
    evaluated.testData,
    spec.task,
  );
  lc.addDecisions(offline);
  const failed = offline.filter((d) => d.outcome === 'fail');
  if (failed.length > 0) {
    const message = `validation failed: ${failed.map((d) => `${d.check}=${d.value} (${d.rule})`).join('; ')}`;
    await ctx.endFailed(ErrorType.ValidationFailed, message, { kind: 'validation-failed', severity: 'info' });
    return null;
  }
  return { artifactDir, metrics: evaluated.metrics };
}
