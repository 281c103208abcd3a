import { join } from 'node:path';
import { countCsvRows } from '../drift/csv';
import { readToken } from '../config/tokens';
import {
  checkCapacity,
  ResourceSums,
  usedResources,
  estimateFromRuns,
  estimateServing,
  type CapacityCheck,
  type RunEstimate,
  type ServingEstimate,
} from '../domain/quota';
import { quantileFromBuckets } from '../domain/guardrails';
import { own } from '../shared/own';
import type { PipelineKind, QuotaPoolConfig, QuotaPoolState, Resources } from '../shared/quota';
import type { LifecycleSpec } from '../shared/spec';
import { ModelTelemetry } from '../shared/telemetry';
import { LATENCY_BUCKETS_MS } from '../shared/telemetry';
import type { QuotaClient } from './quota-client';

export interface LifecycleEstimate {
  model: string;
  version: string;
  pool: string;
  training: RunEstimate & { datasetRows?: number };
  serving: ServingEstimate | { unavailable: string };
}

/**
 * Latency of a model's busiest version on the gateway, from its cumulative telemetry: `gatewayUrl` is the gateway's
 * admin URL (GATEWAY_ADMIN_URL), `adminToken` its admin bearer token.
 */
export async function measuredLatency(
  gatewayUrl: string,
  model: string,
  adminToken?: string,
): Promise<{ version: string; samples: number; mean: number; p50: number; p99: number } | string> {
  let res: Response;
  try {
    res = await fetch(`${gatewayUrl}/admin/models/${encodeURIComponent(model)}/telemetry`, {
      headers: adminToken === undefined ? {} : { authorization: `Bearer ${adminToken}` },
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    return `gateway ${gatewayUrl} unreachable: ${(err as Error).message}`;
  }
  if (res.status === 401) {
    return `gateway ${gatewayUrl} refused the admin call (401): set GATEWAY_ADMIN_TOKEN or GATEWAY_ADMIN_TOKEN_FILE`;
  }
  if (res.status === 404) {
    return (
      `model "${model}" is not on the gateway at ${gatewayUrl}, or that is not its admin URL ` +
      '(GATEWAY_ADMIN_URL, port 8701 by default): no measured service time'
    );
  }
  if (!res.ok) return `gateway answered ${res.status} for the telemetry of "${model}"`;
  const telemetry = ModelTelemetry.parse(await res.json());
  const busiest = Object.values(telemetry.versions).sort((a, b) => b.requests - a.requests)[0];
  const ok = busiest ? busiest.requests - busiest.errors : 0;
  if (!busiest || ok < 20) return `too few predictions of "${model}" on the gateway to measure its service time`;
  const q = (p: number) => quantileFromBuckets(busiest.latencyBucketCounts, p) ?? LATENCY_BUCKETS_MS.at(-1)!;
  return { version: busiest.version, samples: ok, mean: busiest.latencySumMs / ok, p50: q(0.5), p99: q(0.99) };
}

/**
 * Estimates what a lifecycle needs: training from similar completed runs in its pool's history (same model family,
 * dataset within `factor`), serving from its predicted QPS and the service time measured on the gateway.
 */
export async function estimateLifecycle(
  quota: QuotaClient,
  spec: LifecycleSpec,
  options: {
    /** The gateway's admin URL (GATEWAY_ADMIN_URL). */
    gatewayUrl: string;
    /** Its admin bearer token; default: GATEWAY_ADMIN_TOKEN or GATEWAY_ADMIN_TOKEN_FILE, read when needed. */
    adminToken?: string;
    factor?: number;
    qps?: number;
  },
): Promise<LifecycleEstimate> {
  const pool = spec.quota.pool;
  const state = await quota.state(pool, {
    summary: true,
    runsOf: { kind: 'training', family: spec.hardware.architecture },
  });
  const datasetRows = await countCsvRows(join(spec.training.dataDir, 'train.csv'));
  const training = {
    ...estimateFromRuns(
      state?.runs ?? [],
      {
        kind: 'training',
        family: spec.hardware.architecture,
        ...(datasetRows !== undefined ? { datasetRows } : {}),
        declared: { cpu: spec.training.resources.cpu, memoryGiB: spec.training.resources.memoryGiB },
      },
      { factor: options.factor },
    ),
    ...(datasetRows !== undefined ? { datasetRows } : {}),
  };
  const qps = options.qps ?? spec.serving.qps ?? spec.quota.serving.qps;
  let serving: LifecycleEstimate['serving'];
  if (qps === undefined) serving = { unavailable: 'no predicted QPS: set serving.qps in the spec or pass --qps' };
  else {
    const latency = await measuredLatency(
      options.gatewayUrl,
      spec.model,
      options.adminToken ?? readToken(process.env, 'GATEWAY_ADMIN_TOKEN'),
    );
    serving =
      typeof latency === 'string'
        ? { unavailable: latency }
        : estimateServing({
            qps,
            latencyMs: latency,
            // The gateway runs one inference at a time per version (one ONNX session).
            concurrencyPerReplica: 1,
            perReplica: { cpu: spec.quota.serving.cpu, memoryGiB: spec.quota.serving.memoryGiB },
            basis: `service time of ${spec.model} ${latency.version} over ${latency.samples} predictions on the gateway`,
          });
  }
  return { model: spec.model, version: spec.version, pool, training, serving };
}

/** Estimate for a pipeline that is not a lifecycle (a data pipeline, an experiment) from the pool's history. */
export async function estimateRun(
  quota: QuotaClient,
  pool: string,
  target: { kind: PipelineKind; family?: string; datasetRows?: number; declared: Resources },
  factor?: number,
): Promise<RunEstimate> {
  const state = await quota.state(pool, {
    summary: true,
    runsOf: { kind: target.kind, ...(target.family !== undefined ? { family: target.family } : {}) },
  });
  return estimateFromRuns(state?.runs ?? [], target, { factor });
}

export interface PoolCheck extends CapacityCheck {
  pool: string;
  pipelines: { name: string; kind: PipelineKind; resources: Resources; source: string }[];
}

/**
 * Whether a pool can run every pipeline registered in its configuration, plus the experiments running now, plus the
 * given lifecycles (training at their estimate, serving at theirs), all at once.
 */
export function checkPool(
  config: QuotaPoolConfig,
  state: QuotaPoolState | null,
  lifecycles: readonly LifecycleEstimate[],
): PoolCheck {
  const listed = (state?.leases ?? []).filter((l) => l.kind === 'experiment');
  const experiments: PoolCheck['pipelines'] = listed.map((l) => ({
    name: l.holder,
    kind: l.kind,
    resources: l.resources,
    source: `running (${l.leaseId})`,
  }));
  // A summary lists at most its limit: the experiments it left out count with what they hold together.
  const more = (state?.counts?.matching ?? listed.length) - listed.length;
  if (more > 0) {
    experiments.push({
      name: `${more} more running experiments`,
      kind: 'experiment',
      resources: new ResourceSums()
        .add(own(state?.byKind ?? {}, 'experiment') ?? {})
        .add(usedResources(listed), -1)
        .toJSON(),
      source: 'running (not listed)',
    });
  }
  const pipelines: PoolCheck['pipelines'] = [
    ...config.pipelines.map((p) => ({ name: p.name, kind: p.kind, resources: p.resources, source: 'registered' })),
    ...experiments,
  ];
  for (const e of lifecycles) {
    pipelines.push({
      name: `${e.model} ${e.version} training`,
      kind: 'training',
      resources: e.training.recommended,
      source: `estimate (${e.training.basis})`,
    });
    if ('resources' in e.serving)
      pipelines.push({
        name: `${e.model} ${e.version} serving`,
        kind: 'serving',
        resources: e.serving.resources,
        source: `estimate (${e.serving.replicas.mid} replicas)`,
      });
  }
  return { pool: config.name, pipelines, ...checkCapacity(config, pipelines) };
}
