import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { QuotaClient } from '../client/quota-client';
import { artifactFailure, type ArtifactResolver } from '../artifacts/resolve';
import { measureMetricChecks } from '../analysis/metric-checks';
import { evaluateStage, inputSkew, windowOf, type WindowTelemetry } from '../domain/guardrails';
import { durationP95 } from '../domain/quota';
import { loadProfile, PROFILE_FILE } from '../drift/profile';
import { countCsvRows } from '../drift/csv';
import type { Observation } from '../shared/alerts';
import { registryStateQuery } from '../shared/messages';
import type { CheckServingInput, CheckServingResult } from '../shared/monitoring';
import { own } from '../shared/own';
import { qualityOf } from '../shared/quality';
import { DEFAULT_TASK } from '../shared/task';
import { QUALITY_RULES } from '../shared/spec';
import { AccuracyCalibration, estimateAccuracy } from '../domain/performance-estimation';
import { comparePredictions, drifted } from '../domain/prediction-drift';
import { registryWorkflowId, type PromotionRecord } from '../shared/registry';
import { AnalysisSpec, type MonitoringSpec } from '../shared/spec';
import { PREDICTION_BASELINE_FILE, type ModelTelemetry, type PredictionBaseline } from '../shared/telemetry';
import { resolveTarget, type GatewayAdminAccess, type TargetDeps } from '../targets/target';

export interface MonitoringDeps {
  client: Client;
  /** Project root: relative data folders of specs are resolved from it. */
  root: string;
  /** The worker's gateway: its admin URL and admin token. */
  gateway: GatewayAdminAccess;
  quota: QuotaClient;
  env?: Readonly<Record<string, string | undefined>>;
  /** The worker's nginx routers by name (ML_NGINX_TARGETS), for a production version served by one. */
  nginx?: TargetDeps['nginx'];
  /**
   * Where the production version's files are on this host: fetched from the artifact store when trained elsewhere
   * (src/artifacts/resolve.ts); absent, the recorded folder is read as it is.
   */
  resolveArtifact?: ArtifactResolver;
  /** Told of each check's drift scores (the worker's metrics). */
  onDrift?: (model: string, version: string, scores: { feature: string; kind: string; value: number }[]) => void;
}

const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;

/** The serving monitor's checks of a model's production version. */
export function createMonitoringActivities(deps: MonitoringDeps) {
  const production = async (model: string): Promise<PromotionRecord | null> => {
    try {
      return (await deps.client.workflow.getHandle(registryWorkflowId(model)).query(registryStateQuery)).production;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return null;
      throw err;
    }
  };

  return {
    /**
     * How long training may take before it is slow: the p95 of similar completed training runs in the pool's history
     * (same model family, dataset within ×2, durations scaled to this dataset), or null with fewer than 3 of them.
     */
    async trainingBaseline(input: {
      pool: string;
      family: string;
      dataDir: string;
    }): Promise<{ p95Ms: number | null; similarRuns: number; datasetRows: number | null }> {
      const dir = isAbsolute(input.dataDir) ? input.dataDir : join(deps.root, input.dataDir);
      const datasetRows = (await countCsvRows(join(dir, 'train.csv'))) ?? null;
      const state = await deps.quota
        .state(input.pool, { summary: true, runsOf: { kind: 'training', family: input.family } })
        .catch(() => null);
      const baseline = durationP95(state?.runs ?? [], {
        kind: 'training',
        family: input.family,
        ...(datasetRows !== null ? { datasetRows } : {}),
      });
      return { ...baseline, datasetRows };
    },

    /**
     * One check of the production version: its traffic since the last check against the training profile (skew),
     * the validation-time predictions (drift), missing or corrupt inputs, latency p99, outage (traffic but no
     * success, or the endpoint not answering), quality from labels, and the serving pool's usage. Answers one
     * observation per condition (firing, clear, or null when the window is too small to tell) for the router.
     */
    async checkServing(input: CheckServingInput): Promise<CheckServingResult> {
      const { model, monitoring: m } = input;
      const prod = await production(model);
      if (!prod) return { version: null, since: null, observations: [], requests: 0 };
      const version = prod.version;
      const at = new Date().toISOString();
      const policy = (kind: Observation['kind']): Pick<Observation, 'action' | 'actionDelayMs' | 'actionContext'> => {
        const action = (m.actions as Record<string, Observation['action']>)[kind] ?? 'notify';
        return {
          action,
          actionDelayMs: m.actionDelay,
          ...(action === 'retrain' && input.retrainSpec !== undefined
            ? { actionContext: { retrainSpec: input.retrainSpec } }
            : {}),
        };
      };
      const observation = (
        kind: Observation['kind'],
        severity: Observation['severity'],
        firing: boolean | null,
        summary: string,
        details: Record<string, unknown>,
      ): Observation => ({
        key: `serving:${model}:${kind}`,
        kind,
        severity,
        firing,
        summary,
        model,
        version,
        details,
        hysteresis: m.hysteresis,
        ...policy(kind),
        at,
      });

      let snapshot: ModelTelemetry;
      try {
        snapshot = await resolveTarget(prod.target, {
          gateway: deps.gateway,
          ...(deps.env ? { env: deps.env } : {}),
          ...(deps.nginx ? { nginx: deps.nginx } : {}),
        }).readTelemetry(model);
      } catch (err) {
        // The serving endpoint does not answer: an outage of every version it serves.
        return {
          version,
          since: input.since,
          requests: 0,
          observations: [
            observation(
              'serving-outage',
              m.outage.severity,
              true,
              `${model} ${version}: serving endpoint not answering`,
              {
                error: (err as Error).message,
              },
            ),
          ],
        };
      }
      const now = own(snapshot.versions, version);
      const since = input.since?.version === version ? input.since.telemetry : null;
      const next = now ? { version, telemetry: now } : null;
      if (!now || !since) {
        // The first look at this version (or it lost its counters): it only sets where the next window starts.
        const outage = now
          ? []
          : [
              observation(
                'serving-outage',
                m.outage.severity,
                true,
                `${model} ${version} is not loaded where it serves`,
                {
                  loaded: Object.keys(snapshot.versions),
                },
              ),
            ];
        return { version, since: next, requests: 0, observations: outage };
      }
      // Counters that restarted since (gateway restart, redeploy) make the window the traffic since the restart.
      const window = windowOf(now, since);
      const observations: Observation[] = [];

      // Outage, latency, missing/corrupt inputs and skew, judged as a stage of a rollout with no stable version.
      const rules = AnalysisSpec.parse({
        minSamples: m.minSamples,
        latencyP99Ms: { max: m.latencyP99Ms.max },
        featureSkew: { maxPsi: m.featureSkew.maxPsi, alpha: m.featureSkew.alpha },
        inputQuality: { maxRate: m.inputQuality.maxRate },
      });
      // The production version's artifact on this host (validation wrote its baseline beside it).
      const artifactDir = deps.resolveArtifact
        ? await deps.resolveArtifact(prod).catch((err: unknown) => {
            throw artifactFailure(err);
          })
        : prod.artifactDir;
      const profileFile = join(artifactDir, PROFILE_FILE);
      const profile = existsSync(profileFile) ? (await loadProfile(profileFile, { values: false })).profile : null;
      const skew = profile && window.inputs ? inputSkew(profile, window.inputs, rules) : undefined;
      const analysis = evaluateStage({
        stage: 'production',
        at,
        candidate: window,
        stable: null,
        rules,
        ...(skew ? { inputSkew: skew } : {}),
        ...(profile ? { profile } : {}),
      });
      const decision = (check: string) => analysis.decisions.find((d) => d.check === check);
      const firing = (check: string) => {
        const d = decision(check);
        return !d || d.outcome === 'inconclusive' ? null : d.outcome === 'fail';
      };
      const describe = (check: string, label: string) => {
        const d = decision(check);
        return d
          ? `${model} ${version}: ${label} ${d.value ?? 'n/a'} (${d.rule}; ${d.sampleSize} samples)${d.detail ? ` — ${d.detail}` : ''}`
          : `${model} ${version}: ${label}`;
      };
      const facts = (check: string) => {
        const d = decision(check);
        return d ? { value: d.value, threshold: d.threshold, rule: d.rule, sampleSize: d.sampleSize } : {};
      };
      observations.push(
        observation(
          'serving-outage',
          m.outage.severity,
          firing('outage'),
          describe('outage', 'successful predictions'),
          facts('outage'),
        ),
        observation(
          'serving-latency',
          m.latencyP99Ms.severity,
          firing('latencyP99Ms'),
          describe('latencyP99Ms', 'p99 latency ms'),
          facts('latencyP99Ms'),
        ),
        observation(
          'input-quality',
          m.inputQuality.severity,
          firing('inputQuality'),
          describe('inputQuality', 'missing or corrupt input share'),
          facts('inputQuality'),
        ),
      );
      if (skew)
        observations.push(
          observation(
            'serving-skew',
            m.featureSkew.severity,
            firing('featureSkew'),
            describe('featureSkew', 'feature skew PSI'),
            facts('featureSkew'),
          ),
        );

      // Predictions against the validation-time predictions of the same version.
      observations.push(await predictionDrift(prod, artifactDir, window, m, observation));

      // Quality from ground-truth labels that arrived in the window, and estimated from the predictions without them.
      const quality = qualityObservations(prod, window, m, await readBaseline(artifactDir));
      observations.push(...quality.map((o) => observation(o.kind, m.quality.severity, o.firing, o.summary, o.details)));

      // The serving pool: the share of each resource in use.
      if (prod.serving) {
        const pool = prod.serving.pool;
        const state = await deps.quota.state(pool, { summary: true }).catch(() => null);
        if (state) {
          const shares = state.resources.map((r) => ({ resource: r.resource, share: r.share }));
          const worst = shares.reduce((a, b) => (b.share > a.share ? b : a), { resource: '', share: 0 });
          observations.push(
            observation(
              'serving-quota',
              m.quota.severity,
              worst.share > m.quota.maxShare,
              `${model} ${version}: serving pool "${pool}" ${worst.resource || 'usage'} at ${round(worst.share * 100, 1)}% (max ${m.quota.maxShare * 100}%)`,
              { pool, shares },
            ),
          );
        }
      }
      // Metric checks (Prometheus, web) over the time since the previous check.
      if (m.metrics?.length) {
        const checkedAt = new Date(at);
        const measured = await measureMetricChecks(m.metrics, {
          model,
          candidate: version,
          stable: null,
          stage: 'production',
          intervalMs: m.interval,
          windowMs: m.interval,
          elapsedMs: Infinity,
          env: deps.env ?? process.env,
          now: checkedAt,
        });
        for (const d of measured) {
          const check = m.metrics.find((c) => c.name === d.check)!;
          observations.push({
            ...observation(
              'serving-metric',
              check.severity,
              d.outcome === 'fail' ? true : d.outcome === 'pass' ? false : null,
              `${model} ${version}: ${d.check} ${d.outcome === 'error' ? 'could not be measured' : `= ${d.value ?? 'no data'}`} (${d.rule})${d.detail ? ` — ${d.detail}` : ''}`,
              { check: d.check, value: d.value, outcome: d.outcome, rule: d.rule, detail: d.detail },
            ),
            key: `serving:${model}:serving-metric:${d.check}`,
          });
        }
      }
      const scores = [
        ...(skew
          ? skew.features.flatMap((f) =>
              f.statistic === null ? [] : [{ feature: f.name, kind: 'skew', value: f.statistic }],
            )
          : []),
      ];
      if (scores.length) deps.onDrift?.(model, version, scores);
      return { version, since: next, requests: window.requests, observations };
    },
  };
}

/** The version's validation-time predictions (src/shared/telemetry.ts), or null when it has none or it is unreadable. */
async function readBaseline(artifactDir: string): Promise<PredictionBaseline | null> {
  try {
    return JSON.parse(await readFile(join(artifactDir, PREDICTION_BASELINE_FILE), 'utf8')) as PredictionBaseline;
  } catch {
    return null;
  }
}

/**
 * The quality observations of a window: `model-quality` from the labels that arrived in it against the spec's rules
 * of the task (accuracy, log loss, macro-F1; MAE, RMSE, R²), and `estimated-quality`, a classifier's accuracy
 * estimated from its prediction bins (CBPE, src/domain/performance-estimation.ts) against `minEstimatedAccuracy`,
 * with the realised accuracy beside it when labels arrived. Regressions get no estimate: without labels, a
 * regression's error cannot be read from its outputs alone (its output drift is the prediction-drift check).
 */
export function qualityObservations(
  prod: Pick<PromotionRecord, 'model' | 'version'>,
  window: WindowTelemetry,
  m: MonitoringSpec,
  baseline: PredictionBaseline | null,
): {
  kind: 'model-quality' | 'estimated-quality';
  firing: boolean | null;
  summary: string;
  details: Record<string, unknown>;
}[] {
  const label = `${prod.model} ${prod.version}`;
  const out: ReturnType<typeof qualityObservations> = [];
  const q = qualityOf(window.quality);
  const rules = QUALITY_RULES.filter((r) => r.field !== 'minEstimatedAccuracy' && m.quality[r.field] !== undefined);
  if (rules.length > 0) {
    const enough = q.labeled >= m.quality.minLabels;
    const parts = rules.map((r) => {
      const bound = m.quality[r.field] as number;
      const value = q[r.metric as keyof typeof q] as number | null;
      const bad = value !== null && (r.min ? value < bound : value > bound);
      return { bad, text: `${r.metric} ${value === null ? 'n/a' : round(value)} (${r.min ? 'min' : 'max'} ${bound})` };
    });
    out.push({
      kind: 'model-quality',
      firing: enough ? parts.some((p) => p.bad) : null,
      summary: `${label}: ${parts.map((p) => p.text).join(', ')} on ${q.labeled} labels`,
      details: {
        ...q,
        ...Object.fromEntries(rules.map((r) => [r.field, m.quality[r.field]])),
        minLabels: m.quality.minLabels,
      },
    });
  }
  const minEstimated = m.quality.minEstimatedAccuracy;
  const calibration = baseline?.calibration ? AccuracyCalibration.safeParse(baseline.calibration) : null;
  if (minEstimated !== undefined) {
    if (!calibration?.success) {
      out.push({
        kind: 'estimated-quality',
        firing: null,
        summary: `${label}: no calibration from validation to estimate accuracy with (a test set without labels?)`,
        details: { minEstimatedAccuracy: minEstimated },
      });
    } else {
      const estimate = estimateAccuracy(calibration.data, window.predictionBinCounts);
      const enough = estimate.rows >= m.minSamples && estimate.estimate !== null;
      const realised = q.labeled > 0 ? ` (realised ${round(q.accuracy ?? 0)} on ${q.labeled} labels)` : '';
      out.push({
        kind: 'estimated-quality',
        firing: enough ? (estimate.estimate as number) < minEstimated : null,
        summary:
          `${label}: estimated accuracy ${estimate.estimate === null ? 'n/a' : round(estimate.estimate)} ` +
          `(min ${minEstimated}) on ${estimate.rows} predictions${realised}`,
        details: {
          estimatedAccuracy: estimate.estimate,
          standardError: estimate.standardError,
          calibrationError: estimate.calibrationError,
          rows: estimate.rows,
          minEstimatedAccuracy: minEstimated,
          realisedAccuracy: q.labeled > 0 ? q.accuracy : null,
          labels: q.labeled,
        },
      });
    }
  }
  return out;
}

async function predictionDrift(
  prod: PromotionRecord,
  /** The version's artifact folder on this host. */
  artifactDir: string,
  window: WindowTelemetry,
  m: MonitoringSpec,
  observation: (
    kind: Observation['kind'],
    severity: Observation['severity'],
    firing: boolean | null,
    summary: string,
    details: Record<string, unknown>,
  ) => Observation,
): Promise<Observation> {
  const label = `${prod.model} ${prod.version}`;
  const file = join(artifactDir, PREDICTION_BASELINE_FILE);
  const baseline = await readBaseline(artifactDir);
  if (!baseline)
    return observation(
      'prediction-drift',
      m.predictionDrift.severity,
      null,
      `${label}: no validation-time predictions to compare with`,
      {
        file,
      },
    );
  const { maxPsi, alpha, severity } = m.predictionDrift;
  const drift = comparePredictions(baseline.task ?? DEFAULT_TASK, baseline, window);
  const enough = window.predictedRows >= m.minSamples;
  const test =
    drift.test === 'ks' ? `KS p=${drift.pValue.toPrecision(3)}` : `chi-squared p=${drift.pValue.toPrecision(3)}`;
  return observation(
    'prediction-drift',
    severity,
    enough ? drifted(drift, { maxPsi, alpha }) : null,
    `${label}: prediction drift PSI ${round(drift.psi)} against validation (max ${maxPsi}; ${test}) on ${window.predictedRows} predictions`,
    {
      psi: round(drift.psi),
      test: drift.test,
      statistic: round(drift.statistic),
      pValue: drift.pValue,
      maxPsi,
      alpha,
      compared: drift.what,
      live: [...drift.current],
      validation: [...drift.reference],
    },
  );
}
