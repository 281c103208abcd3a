import type { AdminResult, PinRule, ShadowRule } from '../shared/gateway-api';
import type { ModelTelemetry } from '../shared/telemetry';

/*
 * What every deployment target implements (the gateway, a replicated gateway, HTTP, nginx), apart from the
 * implementations, which build on each other.
 */

export interface DeployRequestInput {
  model: string;
  version: string;
  /** Folder holding model.onnx and model.json as written by the trainer. */
  artifactDir: string;
  /** The artifact's digest recorded at training (src/artifacts/digest.ts): the target loads only files that have it. */
  artifactDigest: string;
  /**
   * Where the artifact store has the artifact (`file:///…` or `s3://…`, ending in `sha256-<hex>`): a gateway on another
   * host fetches it from there into its cache instead of reading `artifactDir`. Absent before the store was wired in.
   */
  artifactUri?: string;
  /**
   * A regression's prediction bin edges, from its validation (the deploy activity reads them from
   * validation-predictions.json beside the artifact): the target bins live predictions on them.
   */
  predictionEdges?: number[];
  opId: string;
}

export interface SetWeightsInput {
  model: string;
  /** The whole table: percentages summing to 100; empty takes the model out of service. */
  weights: Record<string, number>;
  opId: string;
}

/** A model's pinned routes and shadow traffic, replaced as a whole (`pins: []` and no shadow clears them). */
export interface SetRoutesInput {
  model: string;
  pins: PinRule[];
  shadow?: ShadowRule;
  opId: string;
}

export interface UndeployInput {
  model: string;
  version: string;
  opId: string;
}

/**
 * Where model versions are served. Every mutation carries the workflow's `opId`: the target must apply an opId once,
 * so a retried activity changes nothing twice. Failures are `ApplicationFailure`s: GatewayRefused (non-retryable) when
 * the target refuses, GatewayUnavailable (retryable) when it cannot answer now.
 */
export interface DeploymentTarget {
  /** How messages name the target. */
  readonly label: string;
  deploy(input: DeployRequestInput): Promise<AdminResult>;
  setWeights(input: SetWeightsInput): Promise<AdminResult>;
  undeploy(input: UndeployInput): Promise<AdminResult>;
  /**
   * Pinned routes and shadow traffic (src/shared/gateway-api.ts `SetRoutesRequest`); a target without them cannot
   * take a spec that uses them.
   */
  setRoutes?(input: SetRoutesInput): Promise<AdminResult>;
  /** Cumulative per-version counters of the model; callers diff two snapshots. */
  readTelemetry(model: string): Promise<ModelTelemetry>;
  /**
   * The model's weight table as the target routes by it now ({} when the model is not routed at all), so that a
   * rollback can check that it holds; null when the target cannot report it.
   */
  readWeights(model: string): Promise<Record<string, number> | null>;
}
