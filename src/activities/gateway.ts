import { ApplicationFailure, Context, sleep } from '@temporalio/activity';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { measureMetricChecks } from '../analysis/metric-checks';
import { evaluateStage, inputSkew, requiredSamples, shadowDecisions, type StageAnalysis } from '../domain/guardrails';
import { modelShadowWindowOf, modelWindowOf, type CountersOf } from '../domain/replica-telemetry';
import type { AnalysisRules } from '../domain/check-tolerance';
import { AccuracyCalibration } from '../domain/performance-estimation';
import { loadProfile, PROFILE_FILE } from '../drift/profile';
import type { LifecycleMetrics } from '../metrics/lifecycle-metrics';
import { ErrorType } from '../shared/errors';
import { PredictionEdges, type AdminResult } from '../shared/gateway-api';
import { own } from '../shared/own';
import { DEFAULT_TASK } from '../shared/task';
import {
  PREDICTION_BASELINE_FILE,
  type ModelTelemetry,
  type PredictionBaseline,
  type ReplicaTelemetry,
} from '../shared/telemetry';
import type { DeploymentTargetSpecInput } from '../shared/deployment-target';
import { artifactFailure, type ArtifactResolver } from '../artifacts/resolve';
import type { DeployRequestInput, SetRoutesInput, SetWeightsInput, UndeployInput } from '../targets/contract';
import { resolveTarget, type GatewayAdminAccess, type TargetDeps } from '../targets/target';

export interface GatewayDeps {
  /** The worker's gateway: its admin URL (GATEWAY_ADMIN_URL) and admin token (GATEWAY_ADMIN_TOKEN). */
  gateway: GatewayAdminAccess;
  /** Interval between telemetry reads while an analysis waits for its minimum sample. */
  pollIntervalMs?: number;
  /** Where `{ fromEnv }` header values of HTTP targets are read (default: process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Where each analysis's readouts and drift go (the worker's Prometheus metrics). */
  metrics?: Pick<LifecycleMetrics, 'stageAnalyzed'>;
  /** The worker's nginx routers by name (ML_NGINX_TARGETS): what `{ kind: nginx, name }` targets resolve to. */
  nginx?: TargetDeps['nginx'];
  /** The artifact's folder on this host (src/artifacts/resolve.ts); absent: the trainer's folder, as named. */
  resolveArtifact?: ArtifactResolver;
}

/** Every deployment activity takes an optional target; absent means the worker's gateway, as before targets. */
export interface TargetInput {
  target?: DeploymentTargetSpecInput;
}

/**
 * A deploy carries the artifact's digest recorded at training (required): the target loads the version only from
 * files that still have it.
 */
export type DeployVersionInput = DeployRequestInput & TargetInput;
export type SetTrafficWeightsInput = SetWeightsInput & TargetInput;
export type SetRoutesActivityInput = SetRoutesInput & TargetInput;
export type UndeployVersionInput = UndeployInput & TargetInput;
export interface ReadTelemetryInput extends TargetInput {
  model: string;
}

export interface AnalyzeStageInput extends TargetInput {
  model: string;
  candidate: string;
  stable: string | null;
  /**
   * Telemetry when the stage's traffic moved: the window is everything since (or since the version's counters last
   * restarted, when the gateway restarted in between: see `countersRestarted`).
   */
  before: ModelTelemetry;
  /**
   * Where the latest interval started, when it is later than `before` (a sample whose window kept growing): the
   * outage check judges only this most recent traffic.
   */
  recentSince?: ModelTelemetry;
  rules: AnalysisRules;
  stage: string;
  /**
   * The shadow stage: the candidate is judged on its shadow copies and stable on its answers to the same requests
   * (the telemetry's `shadow`), with the pairwise comparison of `rules.shadowCompare`.
   */
  shadow?: boolean;
  /** The candidate's artifact: its training profile is what the candidate's inputs are compared with. */
  candidateArtifactDir?: string;
  /** Where the artifact store has the candidate's artifact, and its digest: fetched when not this host's own folder. */
  candidateArtifactUri?: string;
  candidateArtifactDigest?: string;
  /** When the stage's bake started: metric checks in their `initialDelay` are not measured yet. */
  stageStartedAt?: string;
}

/** What validation recorded beside an artifact (validation-predictions.json), or null: none, or unreadable. */
async function baselineOf(artifactDir: string): Promise<PredictionBaseline | null> {
  try {
    return JSON.parse(await readFile(join(artifactDir, PREDICTION_BASELINE_FILE), 'utf8')) as PredictionBaseline;
  } catch {
    return null;
  }
}

/** The bin edges validation recorded for a regression's predictions, if any (else a regression's deploy says so). */
async function predictionEdgesOf(artifactDir: string): Promise<number[] | undefined> {
  const edges = PredictionEdges.safeParse((await baselineOf(artifactDir))?.edges);
  return edges.success ? edges.data : undefined;
}

/** A classifier's accuracy calibration from validation, if its test set had labels. */
async function calibrationOf(artifactDir: string): Promise<AccuracyCalibration | undefined> {
  const calibration = AccuracyCalibration.safeParse((await baselineOf(artifactDir))?.calibration);
  return calibration.success ? calibration.data : undefined;
}

/** One version's counters in a snapshot (an own property: version names such as `constructor` are valid). */
const versionOf = (t: ReplicaTelemetry, version: string) => own(t.versions, version);
/** One version's shadow counters in a snapshot. */
const shadowOf = (t: ReplicaTelemetry, version: string) => (t.shadow ? own(t.shadow, version) : undefined);

/**
 * The deployment activities: deploy, weigh, undeploy and read telemetry on the input's target (the worker's serving
 * gateway by default). Every mutation carries the workflow's opId.
 */
export function createGatewayActivities(deps: GatewayDeps) {
  const target = (spec: DeploymentTargetSpecInput | undefined) =>
    resolveTarget(spec, {
      gateway: deps.gateway,
      ...(deps.env ? { env: deps.env } : {}),
      ...(deps.nginx ? { nginx: deps.nginx } : {}),
    });
  const artifactFolder = (ref: { artifactDir: string; artifactUri?: string; artifactDigest?: string }) =>
    (deps.resolveArtifact ? deps.resolveArtifact(ref) : Promise.resolve(ref.artifactDir)).catch((err: unknown) => {
      throw artifactFailure(err);
    });

  return {
    async deployVersion({ target: spec, ...input }: DeployVersionInput): Promise<AdminResult> {
      // A regression's live predictions are binned on its validation predictions' ventiles: validation wrote them
      // beside the artifact (the worker's own file; classifiers and older artifacts have none).
      const edges = input.predictionEdges ?? (await predictionEdgesOf(await artifactFolder(input)));
      return target(spec).deploy({ ...input, ...(edges ? { predictionEdges: edges } : {}) });
    },

    async setTrafficWeights({ target: spec, ...input }: SetTrafficWeightsInput): Promise<AdminResult> {
      return target(spec).setWeights(input);
    },

    /**
     * Pinned routes and shadow traffic. A target that has none refuses them (non-retryable, naming the target), and
     * takes clearing them as a no-op: there is nothing to clear.
     */
    async setRoutes({ target: spec, ...input }: SetRoutesActivityInput): Promise<AdminResult> {
      const t = target(spec);
      if (t.setRoutes) return t.setRoutes(input);
      if (input.pins.length === 0 && !input.shadow) return { opId: input.opId, applied: false };
      throw ApplicationFailure.create({
        type: ErrorType.GatewayRefused,
        message:
          `${t.label} has no pinned routes or shadow traffic: rollout.pins and rollout.shadow need the gateway ` +
          'target',
        nonRetryable: true,
      });
    },

    async undeployVersion({ target: spec, ...input }: UndeployVersionInput): Promise<AdminResult> {
      return target(spec).undeploy(input);
    },

    async readTelemetry({ model, target: spec }: ReadTelemetryInput): Promise<ModelTelemetry> {
      return target(spec).readTelemetry(model);
    },

    /** The weight table the target routes the model by now; null when the target cannot report it. */
    async readTrafficWeights({ model, target: spec }: ReadTelemetryInput): Promise<Record<string, number> | null> {
      return target(spec).readWeights(model);
    },

    /**
     * Judges a stage from the telemetry since it started. Waits (heartbeating) until the candidate, and the stable
     * version when there is one, have the minimum sample or `maxWaitForSamples` has passed; then the checks decide.
     */
    async analyzeStage(input: AnalyzeStageInput): Promise<StageAnalysis> {
      const ctx = Context.current();
      const source = target(input.target);
      const deadline = Date.now() + input.rules.maxWaitForSamples;
      const candidateDir = input.candidateArtifactDir
        ? await artifactFolder({
            artifactDir: input.candidateArtifactDir,
            ...(input.candidateArtifactUri ? { artifactUri: input.candidateArtifactUri } : {}),
            ...(input.candidateArtifactDigest ? { artifactDigest: input.candidateArtifactDigest } : {}),
          })
        : undefined;
      const profileFile = candidateDir ? join(candidateDir, PROFILE_FILE) : null;
      const profile =
        profileFile && existsSync(profileFile) ? (await loadProfile(profileFile, { values: false })).profile : null;
      const calibration = candidateDir ? await calibrationOf(candidateDir) : undefined;
      for (;;) {
        const now = await source.readTelemetry(input.model);
        // A replicated gateway's snapshots are differenced replica by replica (each restarts on its own), then summed.
        const candidateOf: CountersOf = input.shadow
          ? (t) => shadowOf(t, input.candidate)?.candidate
          : (t) => versionOf(t, input.candidate);
        const candidate = modelWindowOf(now, input.before, candidateOf);
        const stableVersion = input.stable;
        const stable = input.shadow
          ? modelWindowOf(now, input.before, (t) => shadowOf(t, input.candidate)?.primary)
          : stableVersion === null
            ? null
            : modelWindowOf(now, input.before, (t) => versionOf(t, stableVersion));
        const needed = requiredSamples(input.rules);
        const enough = candidate.requests >= needed && (stable === null || stable.successes >= needed);
        if (enough || Date.now() >= deadline) {
          const skew = profile && candidate.inputs ? inputSkew(profile, candidate.inputs, input.rules) : undefined;
          // The gateway says what the version predicts (targets that do not are binary classifiers).
          const task = versionOf(now, input.candidate)?.task;
          const recentCandidate = modelWindowOf(now, input.recentSince, candidateOf);
          const analysis = evaluateStage({
            ...(task ? { task } : {}),
            ...(calibration ? { calibration } : {}),
            stage: input.stage,
            at: new Date().toISOString(),
            candidate,
            ...(input.recentSince ? { recent: recentCandidate } : {}),
            stable,
            rules: input.rules,
            ...(skew ? { inputSkew: skew } : {}),
            ...(profile ? { profile } : {}),
          });
          if (input.shadow && input.rules.shadowCompare) {
            analysis.decisions.push(
              ...shadowDecisions({
                stage: input.stage,
                at: new Date().toISOString(),
                task: task ?? DEFAULT_TASK,
                window: modelShadowWindowOf(now, input.before, input.candidate),
                compare: input.rules.shadowCompare,
                rules: input.rules,
              }),
            );
          }
          if (input.rules.metrics?.length) {
            const at = new Date();
            analysis.decisions.push(
              ...(await measureMetricChecks(input.rules.metrics, {
                model: input.model,
                candidate: input.candidate,
                stable: input.stable,
                stage: input.stage,
                intervalMs: input.rules.interval,
                windowMs: at.getTime() - Date.parse(input.before.at),
                elapsedMs: input.stageStartedAt ? at.getTime() - Date.parse(input.stageStartedAt) : Infinity,
                env: deps.env ?? process.env,
                now: at,
              })),
            );
          }
          deps.metrics?.stageAnalyzed({
            model: input.model,
            version: input.candidate,
            decisions: analysis.decisions,
            ...(skew ? { inputSkew: skew } : {}),
          });
          return { ...analysis, telemetry: now };
        }
        ctx.heartbeat({ candidateRequests: candidate.requests, stableSuccesses: stable?.successes ?? null });
        await sleep(deps.pollIntervalMs ?? 1000);
      }
    },
  };
}
