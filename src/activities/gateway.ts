import { Context, sleep } from '@temporalio/activity';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { evaluateStage, inputSkew, windowOf, type StageAnalysis } from '../domain/guardrails';
import { loadProfile, PROFILE_FILE } from '../drift/profile';
import type { AdminResult } from '../shared/gateway-api';
import type { AnalysisSpec } from '../shared/spec';
import { ModelTelemetry } from '../shared/telemetry';
import { gatewayRequest } from './gateway-client';

export interface GatewayDeps {
  gatewayUrl: string;
  /** Interval between telemetry reads while an analysis waits for its minimum sample. */
  pollIntervalMs?: number;
}

export interface AnalyzeStageInput {
  model: string;
  candidate: string;
  stable: string | null;
  /** Telemetry when the stage's traffic moved: the window is everything since. */
  before: ModelTelemetry;
  rules: AnalysisSpec;
  stage: string;
  /** The candidate's artifact: its training profile is what the candidate's inputs are compared with. */
  candidateArtifactDir?: string;
}

const enc = encodeURIComponent;

/** Serving-gateway control: the deployment-target activities. Every mutation carries the workflow's opId. */
export function createGatewayActivities(deps: GatewayDeps) {
  const url = deps.gatewayUrl;
  const readTelemetry = async ({ model }: { model: string }): Promise<ModelTelemetry> =>
    ModelTelemetry.parse(await gatewayRequest(url, 'GET', `/admin/models/${enc(model)}/telemetry`));

  return {
    async deployVersion(input: {
      model: string;
      version: string;
      artifactDir: string;
      opId: string;
    }): Promise<AdminResult> {
      return gatewayRequest(url, 'PUT', `/admin/models/${enc(input.model)}/versions/${enc(input.version)}`, {
        opId: input.opId,
        artifactDir: input.artifactDir,
      });
    },

    async setTrafficWeights(input: {
      model: string;
      weights: Record<string, number>;
      opId: string;
    }): Promise<AdminResult> {
      return gatewayRequest(url, 'PUT', `/admin/models/${enc(input.model)}/weights`, {
        opId: input.opId,
        weights: input.weights,
      });
    },

    async undeployVersion(input: { model: string; version: string; opId: string }): Promise<AdminResult> {
      return gatewayRequest(
        url,
        'DELETE',
        `/admin/models/${enc(input.model)}/versions/${enc(input.version)}?opId=${enc(input.opId)}`,
      );
    },

    readTelemetry,

    /**
     * Judges a stage from the telemetry since it started. Waits (heartbeating) until the candidate, and the stable
     * version when there is one, have the minimum sample or `maxWaitForSamples` has passed; then the checks decide.
     */
    async analyzeStage(input: AnalyzeStageInput): Promise<StageAnalysis> {
      const ctx = Context.current();
      const deadline = Date.now() + input.rules.maxWaitForSamples;
      const profileFile = input.candidateArtifactDir ? join(input.candidateArtifactDir, PROFILE_FILE) : null;
      const profile =
        profileFile && existsSync(profileFile) ? (await loadProfile(profileFile, { values: false })).profile : null;
      for (;;) {
        const now = await readTelemetry({ model: input.model });
        const candidate = windowOf(now.versions[input.candidate], input.before.versions[input.candidate]);
        const stable =
          input.stable === null ? null : windowOf(now.versions[input.stable], input.before.versions[input.stable]);
        const enough =
          candidate.requests >= input.rules.minSamples &&
          (stable === null || stable.successes >= input.rules.minSamples);
        if (enough || Date.now() >= deadline) {
          const skew = profile && candidate.inputs ? inputSkew(profile, candidate.inputs, input.rules) : undefined;
          return evaluateStage({
            stage: input.stage,
            at: new Date().toISOString(),
            candidate,
            stable,
            rules: input.rules,
            ...(skew ? { inputSkew: skew } : {}),
          });
        }
        ctx.heartbeat({ candidateRequests: candidate.requests, stableSuccesses: stable?.successes ?? null });
        await sleep(deps.pollIntervalMs ?? 1000);
      }
    },
  };
}
