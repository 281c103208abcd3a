/**
 * The gateway's state and operations, without HTTP: deployed versions and their ONNX sessions, weights, routes and
 * faults, predictions and labels, telemetry, the idempotency journal of admin operations, and the artifact cache.
 * `server.ts` puts it behind Fastify (routes, bodies, tokens); its errors are {@link HttpError}s carrying the status
 * a caller gets.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { ArtifactStoreError, artifactPathOf, type ArtifactStore } from '../artifacts/store-core';
import {
  type DeployRequest,
  PredictRequest,
  type SetFaultsRequest,
  type SetRoutesRequest,
  type SetWeightsRequest,
  MAX_BATCH_ROWS,
  PREDICTION_EDGES,
  type AdminOp,
  type AdminResult,
  type BatchPredictResponse,
  type ModelManifest,
  type ModelRoutes,
  type ModelRouting,
  type PinRule,
  type PredictResponse,
  type RowPrediction,
  type VersionFaults,
} from '../shared/gateway-api';
import { LabelsRequest, type LabelsResponse } from '../shared/quality';
import { PREDICTION_BASELINE_FILE, type ModelTelemetry } from '../shared/telemetry';
import { InjectedFaultError, ShareCounter, VersionFaultState } from './faults';
import { firstProblem } from './issues';
import { HttpError } from './http-error';

import {
  ARTIFACT_UNAVAILABLE,
  ArtifactError,
  InvalidInputError,
  ModelHost,
  type Features,
  type Prediction,
} from './model-host';
import { validPredictRequest } from './predict-request';
import { type PredictionMemory, type RememberedPrediction } from './prediction-memory';
import { buildRoutingTable, InvalidWeightsError, route, type RoutingTable } from './router';
import {
  type RoutingStore,
  type DeployedVersionRecord,
  type JournalEntry,
  type ModelState,
  type RoutingState,
} from './routing-store';
import { newRequestId } from './request-id';
import { TelemetryRegistry, type PredictionBinning, type ShadowCounters, type VersionCounters } from './telemetry';
import { own } from '../shared/own';

interface LiveVersion {
  /** Replaced when a deploy repairs a version that failed to load (it may add the digest of an older record). */
  record: DeployedVersionRecord;
  /**
   * Undefined when the artifact could not be loaded on restore (the log says why); predictions routed here fail
   * (counted as errors).
   */
  host: ModelHost | undefined;
  readonly counters: VersionCounters;
  /**
   * Faults an operator injected for a rollback rehearsal. In memory only on purpose (not journaled, not restored
   * after a restart): a rehearsal must never outlive the gateway process that an operator is watching. Dropped with
   * the version on undeploy.
   */
  faults: VersionFaultState | undefined;
  /** Counters of the requests pinned to this version (created on the first one). */
  pinned?: VersionCounters;
  /** Counters of the shadow copies this version predicted (created on the first one). */
  shadow?: ShadowCounters;
}

/** A model's routes as predictions read them: replaced as a whole by each set-routes op. */
interface LiveRoutes {
  readonly pins: readonly PinRule[];
  readonly shadow: { readonly version: string; readonly share: ShareCounter } | undefined;
}

interface LiveModel {
  readonly versions: Map<string, LiveVersion>;
  /** Replaced as a whole on every weight change: a prediction sees the old or the new table, never a mix. */
  table: RoutingTable | undefined;
  routes: LiveRoutes | undefined;
}

/** Request headers as Node gives them (names in lower case). */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

/**
 * Shadow copies in flight at most, across models. Beyond it a copy is dropped (counted): the shadow must never queue
 * work behind the users it copies.
 */
const MAX_SHADOW_IN_FLIGHT = 32;

function liveRoutesOf(routes: ModelRoutes | undefined): LiveRoutes | undefined {
  if (!routes || (routes.pins.length === 0 && !routes.shadow)) return undefined;
  return {
    pins: routes.pins,
    shadow: routes.shadow
      ? { version: routes.shadow.version, share: new ShareCounter(routes.shadow.percent / 100) }
      : undefined,
  };
}

/** The first pinned route whose header holds one of its values; a header given twice matches on either value. */
function pinOf(routes: LiveRoutes, headers: RequestHeaders): PinRule | undefined {
  for (const rule of routes.pins) {
    const given = own(headers, rule.header);
    if (given === undefined) continue;
    const values = Array.isArray(given) ? given : [given];
    if (values.some((v) => rule.values.includes(v.trim()))) return rule;
  }
  return undefined;
}

/** Routes without the rules that name `version` (it is being undeployed); undefined when none are left. */
function routesWithout(routes: ModelRoutes | undefined, version: string): ModelRoutes | undefined {
  if (!routes) return undefined;
  const pins = routes.pins.filter((p) => p.version !== version);
  const shadow = routes.shadow?.version === version ? undefined : routes.shadow;
  return pins.length === 0 && !shadow ? undefined : { pins, ...(shadow ? { shadow } : {}) };
}

/** The class of `classes` that a ground-truth label names (`1` or `"1"`), undefined when it names none. */
function classOf(label: number | string, classes: readonly number[]): number | undefined {
  return classes.find((c) => (typeof label === 'number' ? c === label : String(c) === label.trim()));
}

/** A regression's true value from a label (`12.5` or `"12.5"`), undefined when it is not a finite number. */
function valueOf(label: number | string): number | undefined {
  const value = typeof label === 'number' ? label : label.trim() === '' ? Number.NaN : Number(label);
  return Number.isFinite(value) ? value : undefined;
}

/**
 * Adds a row's prediction as answered to `answer`: the task's fields only, in this order (the answer's JSON keeps
 * it). Added one by one rather than spread from a merged object: this runs for every prediction, and each spread
 * copied an object.
 */
function putAnswer<T extends RowPrediction>(answer: T, p: Prediction): T {
  if (p.label !== undefined) answer.label = p.label;
  if (p.probability !== undefined) answer.probability = p.probability;
  if (p.probabilities !== undefined) answer.probabilities = p.probabilities;
  if (p.value !== undefined) answer.value = p.value;
  return answer;
}

/** How many rows a request that failed the schema says it carries (for counting its refusal); 1 unless a batch. */
function rowsClaimed(body: unknown): number {
  const rows = (body as { rows?: unknown } | null)?.rows;
  return Array.isArray(rows) ? Math.min(Math.max(rows.length, 1), MAX_BATCH_ROWS) : 1;
}

/** Whether the real path `dir` is `root` or inside it (both absolute, symbolic links resolved). */
function isInside(root: string, dir: string): boolean {
  const relative = path.relative(root, dir);
  return relative === '' || (relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
}

/** Deploy order (oldest first) of a model's versions. */
function deployOrder(record: ModelState): string[] {
  return [...record.versions].sort((a, b) => a.seq - b.seq).map((v) => v.version);
}

/**
 * The gateway's state and operations. Admin mutations run one at a time (a promise chain), each
 * persisted before it takes effect in memory and before it is acknowledged.
 */
export class GatewayCore {
  readonly telemetry = new TelemetryRegistry();
  private state!: RoutingState;
  private readonly models = new Map<string, LiveModel>();
  private readonly journal = new Map<string, JournalEntry>();
  private adminChain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly store: RoutingStore,
    private readonly log: Logger,
    /** Recent successful predictions, for the ground-truth labels that arrive later. */
    private readonly memory: PredictionMemory,
    /** Real path of the artifact root: every artifact is loaded from inside it. */
    private readonly artifactRoot: string,
    /** See GatewayOptions.singleVersion. */
    private readonly singleVersion = false,
    /** See GatewayOptions.artifactStore. */
    private readonly artifacts: { store: ArtifactStore; cacheDir: string } | null = null,
  ) {}

  /** Restores routing from the data dir and reloads every deployed version's model. */
  async restore(): Promise<void> {
    this.state = await this.store.load();
    for (const entry of this.state.ops) this.journal.set(entry.opId, entry);
    const pending: [string, LiveVersion][] = [];
    for (const [model, record] of this.state.models) {
      // Tables first: a state whose weights do not fit its versions fails the start before any model is loaded.
      const table = record.weights.size > 0 ? buildRoutingTable(record.weights, deployOrder(record)) : undefined;
      const live: LiveModel = { versions: new Map(), table, routes: liveRoutesOf(record.routes) };
      this.models.set(model, live);
      for (const versionRecord of record.versions) {
        const version: LiveVersion = {
          record: versionRecord,
          host: undefined,
          counters: this.telemetry.counters(model, versionRecord.version),
          faults: undefined,
        };
        live.versions.set(versionRecord.version, version);
        pending.push([model, version]);
      }
    }
    await Promise.all(
      pending.map(async ([model, version]) => {
        const { artifactDir, artifactDigest, artifactUri } = version.record;
        try {
          if (artifactDigest === undefined) {
            throw new ArtifactError('invalid', 'no artifact digest is recorded (deployed before digests were)');
          }
          // The same checks as a deploy: the root may have changed since, and the files must still be the trained ones.
          // A version fetched from the store is fetched again (a cache hit, re-hashed, unless the cache was lost).
          const folder =
            artifactUri === undefined
              ? await this.artifactFolder(artifactDir)
              : await this.fetchStored(artifactUri, artifactDigest);
          const host = await ModelHost.load(folder, { digest: artifactDigest });
          const binning = binningOf(host, version.record.predictionEdges);
          if (typeof binning === 'string') {
            await host.release().catch(() => undefined);
            throw new ArtifactError('invalid', binning);
          }
          version.host = host;
          version.counters.binPredictions(binning);
          if (host.sketchPlan) version.counters.sketchInputs(host.sketchPlan);
        } catch (err) {
          // Keep routing as it was: the version's traffic fails visibly (errors) instead of moving silently. A deploy
          // of the same folder and digest retries the load.
          this.log.error(
            { model, version: version.record.version, artifactDir, artifactUri, err, ...artifactDetail(err) },
            'cannot reload deployed model version',
          );
        }
      }),
    );
    this.log.info({ models: this.models.size, ops: this.journal.size }, 'gateway routing restored');
  }

  async predict(
    model: string,
    body: unknown,
    headers: RequestHeaders = {},
  ): Promise<PredictResponse | BatchPredictResponse> {
    // The hand check accepts the valid bodies; zod words the refusal of the others (and accepts any it was unsure of).
    const request = validPredictRequest(body) ?? this.parsePredictRequest(model, body, headers);
    const batch = request.rows !== undefined;
    const served = await this.serveRows(model, {
      userId: request.userId,
      rows: request.rows ?? [request.features!],
      batch,
      requestId: request.requestId,
      requestIds: request.requestIds,
      headers,
    });
    const { version, host, predictions, latencyMs, requestId, ids } = served;
    if (!batch) {
      const answer = putAnswer({ requestId, model, version, task: host.task } as PredictResponse, predictions[0]!);
      answer.latencyMs = latencyMs;
      return answer;
    }
    return {
      requestId,
      model,
      version,
      task: host.task,
      predictions: predictions.map((p, i) =>
        putAnswer<RowPrediction & { requestId: string }>({ requestId: ids[i]! }, p),
      ),
      latencyMs,
    };
  }

  /**
   * A prediction body parsed by {@link PredictRequest}; a refusal (400, the first problem) is counted against the
   * version the user is routed to when the body says who the user is.
   */
  private parsePredictRequest(model: string, body: unknown, headers: RequestHeaders): PredictRequest {
    const parsed = PredictRequest.safeParse(body);
    if (parsed.success) return parsed.data;
    const userId = (body as { userId?: unknown } | null)?.userId;
    const where = typeof userId === 'string' && userId.length > 0 ? this.routed(model, userId, headers) : undefined;
    if (where) this.countersOf(model, where).counters?.recordInvalid(rowsClaimed(body));
    else this.routed(model, '', headers);
    throw new HttpError(400, `invalid request: ${firstProblem(parsed.error)}`);
  }

  /**
   * Routes a request's rows (by `userId`: sticky), predicts them on the version, counts them and remembers each row's
   * prediction under its request id for labels: one row under `requestId` (generated when absent), a batch's rows
   * under `requestIds` or `<requestId>/<i>`. What `/v1` and the Open Inference Protocol's `/v2` both serve.
   */
  async serveRows(
    model: string,
    request: {
      userId: string;
      rows: readonly Features[];
      batch: boolean;
      requestId?: string;
      requestIds?: string[];
      /** Serve only if the user is routed to this version (409 otherwise, before anything is counted). */
      version?: string;
      /** The request's headers: pinned routes match on them. */
      headers?: RequestHeaders;
    },
  ): Promise<{
    version: string;
    host: ModelHost;
    predictions: Prediction[];
    latencyMs: number;
    requestId: string;
    ids: string[];
  }> {
    const where = this.routed(model, request.userId, request.headers);
    const { live, version } = where;
    if (request.version !== undefined && request.version !== version) {
      throw new HttpError(
        409,
        `this caller is routed to version '${version}' of model '${model}', not '${request.version}'; ` +
          'predict without a version to be routed',
      );
    }
    const { counters } = this.countersOf(model, where);
    const { predictions, latencyMs, host } = await this.inferRows(
      model,
      live,
      version,
      request.rows,
      request.batch,
      counters,
    );
    const requestId = request.requestId ?? newRequestId();
    const ids = request.batch ? (request.requestIds ?? request.rows.map((_, i) => `${requestId}/${i}`)) : [requestId];
    this.remember(model, version, host, ids, predictions, counters);
    const shadow = live.routes?.shadow;
    if (shadow && !where.pinned && shadow.version !== version && shadow.share.next()) {
      this.mirror(model, live, shadow.version, request.rows, request.batch, predictions, latencyMs);
    }
    return { version, host, predictions, latencyMs, requestId, ids };
  }

  /**
   * The counters a routed request counts in: the version's own, or its pinned ones for a pinned route that is not
   * `counted` (created, binned like the version's, on first use). Undefined when the version is gone.
   */
  private countersOf(model: string, where: { live: LiveModel; version: string; pinned: boolean }) {
    const version = where.live.versions.get(where.version);
    if (!version) return { counters: undefined };
    if (!where.pinned) return { counters: version.counters };
    if (!version.pinned) {
      version.pinned = this.telemetry.pinnedCounters(model, where.version);
      version.pinned.binPredictions(version.counters.binning);
    }
    return { counters: version.pinned };
  }

  private shadowInFlight = 0;

  /**
   * Predicts a copy of a request on the shadow version once the answer has gone (the next turn of the event loop,
   * after the reply was written), and counts both versions' predictions of the rows and their comparison. A copy
   * beyond {@link MAX_SHADOW_IN_FLIGHT} is dropped and counted.
   */
  private mirror(
    model: string,
    live: LiveModel,
    versionName: string,
    rows: readonly Features[],
    batch: boolean,
    primary: readonly Prediction[],
    primaryLatencyMs: number,
  ): void {
    const target = live.versions.get(versionName);
    if (!target) return;
    if (!target.shadow) {
      target.shadow = this.telemetry.shadowCounters(model, versionName);
      target.shadow.binPredictions(target.counters.binning);
    }
    const counters = target.shadow;
    if (this.shadowInFlight >= MAX_SHADOW_IN_FLIGHT) {
      counters.dropped++;
      return;
    }
    this.shadowInFlight++;
    setImmediate(() => {
      void this.runShadow(target, counters, rows, batch, primary, primaryLatencyMs).finally(() => {
        this.shadowInFlight--;
      });
    });
  }

  private async runShadow(
    target: LiveVersion,
    counters: ShadowCounters,
    rows: readonly Features[],
    batch: boolean,
    primary: readonly Prediction[],
    primaryLatencyMs: number,
  ): Promise<void> {
    counters.primary.recordSuccess(primaryLatencyMs, primary);
    const host = target.host;
    const faults = target.faults;
    if (!host || faults?.down) {
      counters.candidate.recordError(rows.length);
      return;
    }
    let feeds;
    try {
      feeds = host.prepare(rows, batch);
    } catch (err) {
      if (err instanceof InvalidInputError) counters.candidate.recordInvalid(rows.length);
      else counters.candidate.recordError(rows.length);
      return;
    }
    const started = performance.now();
    let predictions: Prediction[];
    try {
      predictions = await host.run(feeds, rows.length, faults?.beforeInference());
    } catch {
      // An injected fault or an inference error: the shadow's own failure, seen by no caller.
      counters.candidate.recordError(rows.length);
      return;
    }
    counters.candidate.recordSuccess(performance.now() - started, predictions);
    counters.compare(primary, predictions);
  }

  /**
   * What the Open Inference Protocol's metadata and readiness answer about a model: its deployed versions (routing
   * order) and, for `version` or else the newest version with traffic, its manifest and whether it is loaded. 404 when
   * the model (or that version) is not deployed.
   */
  modelInfo(
    model: string,
    version?: string,
  ): { versions: string[]; version: string; manifest: ModelManifest | undefined; ready: boolean } {
    const live = this.models.get(model);
    const record = this.state.models.get(model);
    if (!live || !record) throw new HttpError(404, `model '${model}' is not deployed`);
    const order = [...record.versions].sort((a, b) => b.seq - a.seq).map((v) => v.version);
    const serving = order.find((v) => (record.weights.get(v) ?? 0) > 0);
    const chosen = version ?? serving ?? order[0];
    const found = chosen === undefined ? undefined : live.versions.get(chosen);
    if (!found || chosen === undefined) {
      throw new HttpError(404, `version '${version}' of model '${model}' is not deployed`);
    }
    const ready = found.host !== undefined && (version === undefined ? live.table !== undefined : true);
    return { versions: order, version: chosen, manifest: found.host?.manifest, ready };
  }

  /**
   * Predicts `rows` on a version (routed already), counting everything in its telemetry: the rows' inputs, then
   * either a refusal (invalid input, 400), a failure (down, not loaded, inference: 5xx) or a success with its latency
   * and each row's prediction. Shared by `/v1` and the Open Inference Protocol's `/v2`.
   */
  async inferRows(
    model: string,
    live: LiveModel,
    versionName: string,
    rows: readonly Features[],
    batch: boolean,
    /** Where the request is counted: the version's own counters unless given (a pinned route's). */
    counted?: VersionCounters,
  ): Promise<{ predictions: Prediction[]; latencyMs: number; host: ModelHost }> {
    const version = live.versions.get(versionName);
    if (!version) throw new Error(`routing table of '${model}' names undeployed version '${versionName}'`);
    const counters = counted ?? version.counters;
    for (const row of rows) counters.recordInputs(row);
    const faults = version.faults;
    if (faults?.down) {
      // An unreachable version answers nothing, not even input checks (those are the version's own).
      counters.recordError(rows.length);
      const outage = faults.outage();
      throw new HttpError(outage.statusCode, outage.message);
    }
    const host = version.host;
    if (!host) {
      counters.recordError(rows.length);
      // Public callers learn nothing about artifacts: the reason is in the gateway's log.
      throw new HttpError(
        500,
        `version '${versionName}' of model '${model}' is not loaded: its artifact failed to load when the gateway ` +
          "started (see the gateway's log)",
      );
    }
    let feeds;
    try {
      feeds = host.prepare(rows, batch);
    } catch (err) {
      if (err instanceof InvalidInputError) {
        counters.recordInvalid(rows.length);
        throw new HttpError(400, `invalid input: ${err.message}`);
      }
      counters.recordError(rows.length);
      throw err;
    }
    const started = performance.now();
    let predictions: Prediction[];
    try {
      predictions = await host.run(feeds, rows.length, faults?.beforeInference());
    } catch (err) {
      counters.recordError(rows.length);
      // Injected on purpose by an operator (logged when the faults were set): an expected outcome.
      if (err instanceof InjectedFaultError) throw new HttpError(err.statusCode, err.message);
      this.log.error({ model, version: versionName, err }, 'inference failed');
      throw new HttpError(
        500,
        `inference failed on version '${versionName}' of model '${model}': ${(err as Error).message}`,
      );
    }
    const latencyMs = performance.now() - started;
    counters.recordSuccess(latencyMs, predictions);
    return { predictions, latencyMs, host };
  }

  /**
   * Remembers each row's prediction under its request id for the labels that arrive later. A caller-chosen request id
   * still waiting for its label keeps its first prediction: a later one is answered, not remembered (see
   * PredictionMemory.remember), so nobody can swap another caller's prediction under its label.
   */
  remember(
    model: string,
    versionName: string,
    host: ModelHost,
    ids: readonly string[],
    predictions: Prediction[],
    /** The counters the predictions were counted in (a pinned route's, or the version's own). */
    counted?: VersionCounters,
  ): void {
    const counters = counted ?? this.models.get(model)?.versions.get(versionName)?.counters;
    if (!counters) return;
    const { task, classes } = host.manifest;
    for (let i = 0; i < predictions.length; i++) {
      const p = predictions[i]!;
      const multiclass = p.probabilities !== undefined;
      this.memory.remember(model, ids[i]!, {
        version: versionName,
        counters,
        task,
        classes,
        label: p.label,
        probability: task === 'binary-classification' ? p.probability : undefined,
        probabilities: multiclass ? Float32Array.from(p.probabilities!) : undefined,
        classIndex: multiclass ? (p.classIndex ?? 0) : undefined,
        value: p.value,
      });
    }
  }

  /**
   * The live model of `model` and the version a request is served by: a pinned route's when its header matches
   * (`pinned` unless the route is counted with the version's traffic), else the user's by the weights; 404 when the
   * model has no routing.
   */
  routed(
    model: string,
    userId: string,
    headers?: RequestHeaders,
  ): { live: LiveModel; version: string; pinned: boolean } {
    const live = this.models.get(model);
    const pin = live?.routes && headers ? pinOf(live.routes, headers) : undefined;
    if (live && pin) return { live, version: pin.version, pinned: !pin.counted };
    const table = live?.table;
    if (!live || !table) throw new HttpError(404, `model '${model}' has no routing (no version has traffic)`);
    return { live, version: route(table, userId), pinned: false };
  }

  /**
   * Joins ground-truth labels to remembered predictions and counts them in their versions' quality counters. Checked
   * as a whole first: a label that is not a class of the version that answered refuses the call (400) and counts none.
   */
  labels(model: string, body: unknown): LabelsResponse {
    const live = this.models.get(model);
    if (!live) throw new HttpError(404, `model '${model}' is not deployed`);
    const parsed = LabelsRequest.safeParse(body);
    if (!parsed.success) throw new HttpError(400, `invalid labels request: ${firstProblem(parsed.error)}`);

    const joins: ({ entry: RememberedPrediction; actual: number } | undefined)[] = [];
    parsed.data.labels.forEach(({ requestId, label }, i) => {
      const entry = this.memory.find(model, requestId);
      // A prediction of a version undeployed since (or redeployed from zero) is unknown: its counters are gone. A
      // pinned prediction's label counts in the pinned counters it was counted in.
      const version = entry ? live.versions.get(entry.version) : undefined;
      if (!entry || (version?.counters !== entry.counters && version?.pinned !== entry.counters)) {
        joins.push(undefined);
        return;
      }
      const regression = entry.task === 'regression';
      const actual = regression ? valueOf(label) : classOf(label, entry.classes);
      if (actual === undefined) {
        const why = regression
          ? `not a number, and version '${entry.version}' of model '${model}' is a regression`
          : `not a class of version '${entry.version}' of model '${model}' (classes ${entry.classes.join(', ')})`;
        throw new HttpError(
          400,
          `invalid labels request: labels[${i}].label: ${JSON.stringify(label)} is ${why}; no label of this call was counted`,
        );
      }
      joins.push({ entry, actual });
    });
    const result: LabelsResponse = { accepted: 0, unknown: 0, duplicate: 0 };
    for (const join of joins) {
      if (join) result[this.memory.label(join.entry, join.actual)]++;
      else result.unknown++;
    }
    return result;
  }

  deploy(model: string, versionName: string, request: DeployRequest): Promise<AdminResult> {
    return this.serial(async () => {
      const op: AdminOp = { opId: request.opId, kind: 'deploy', model, version: versionName, at: '' };
      const replay = this.replay(op);
      if (replay) return replay;
      if (this.singleVersion) {
        const other = [...(this.models.get(model)?.versions.keys() ?? [])].find((v) => v !== versionName);
        if (other !== undefined) {
          throw new HttpError(
            409,
            `this gateway serves one version per model (GATEWAY_SINGLE_VERSION): model '${model}' already has ` +
              `version '${other}'; undeploy it before deploying '${versionName}'`,
          );
        }
      }

      const { artifactDigest, artifactUri } = request;
      const artifactDir =
        artifactUri === undefined
          ? await this.refusingArtifact(model, versionName, () => this.artifactFolder(request.artifactDir))
          : await this.refusingStored(model, versionName, artifactUri, artifactDigest);
      const fromStore = artifactUri === undefined ? {} : { artifactUri };
      const live = this.models.get(model);
      const existing = live?.versions.get(versionName);
      const previous = this.state.models.get(model) ?? { versions: [], weights: new Map<string, number>() };
      if (existing) {
        const recorded = existing.record;
        if (recorded.artifactDir !== artifactDir) {
          throw new HttpError(
            409,
            `version '${versionName}' of model '${model}' is already deployed from ${recorded.artifactDir}; ` +
              'undeploy it first or deploy under a new version name',
          );
        }
        if (recorded.artifactDigest !== undefined && recorded.artifactDigest !== artifactDigest) {
          throw new HttpError(
            409,
            `version '${versionName}' of model '${model}' is already deployed with artifact digest ` +
              `${recorded.artifactDigest}; undeploy it first or deploy under a new version name`,
          );
        }
        if (existing.host) return this.recordNoop(op);
        // Its artifact failed to load on restore: a deploy of the same folder retries the load, and records the
        // digest of a version deployed before digests were.
        const { host, binning } = await this.loadArtifact(model, versionName, artifactDir, request);
        const record: DeployedVersionRecord = { ...recorded, artifactDigest, ...fromStore, ...edgesOf(binning) };
        try {
          await this.commit(
            op,
            new Map(this.state.models).set(model, {
              ...previous,
              versions: previous.versions.map((v) => (v.version === versionName ? record : v)),
            }),
          );
        } catch (err) {
          await host.release().catch(() => undefined);
          throw err;
        }
        existing.record = record;
        existing.host = host;
        existing.counters.binPredictions(binning);
        if (host.sketchPlan) existing.counters.sketchInputs(host.sketchPlan);
        this.log.info({ model, version: versionName, artifactDir, opId: op.opId }, 'model version reloaded');
        return { opId: op.opId, applied: true };
      }

      const { host, binning } = await this.loadArtifact(model, versionName, artifactDir, request);
      const record: DeployedVersionRecord = {
        version: versionName,
        artifactDir,
        artifactDigest,
        ...fromStore,
        ...edgesOf(binning),
        deployedAt: new Date().toISOString(),
        seq: this.state.nextSeq,
      };
      try {
        await this.commit(
          op,
          new Map(this.state.models).set(model, { ...previous, versions: [...previous.versions, record] }),
          this.state.nextSeq + 1,
        );
      } catch (err) {
        await host.release().catch(() => undefined);
        throw err;
      }
      let target = live;
      if (!target) {
        target = { versions: new Map(), table: undefined, routes: undefined };
        this.models.set(model, target);
      }
      this.telemetry.drop(model, versionName);
      const counters = this.telemetry.counters(model, versionName);
      counters.binPredictions(binning);
      if (host.sketchPlan) counters.sketchInputs(host.sketchPlan);
      target.versions.set(versionName, { record, host, counters, faults: undefined });
      this.log.info(
        { model, version: versionName, artifactDir, artifactDigest, ...fromStore, opId: op.opId },
        'model version deployed',
      );
      return { opId: op.opId, applied: true };
    });
  }

  undeploy(model: string, versionName: string, opId: string): Promise<AdminResult> {
    return this.serial(async () => {
      const op: AdminOp = { opId, kind: 'undeploy', model, version: versionName, at: '' };
      const replay = this.replay(op);
      if (replay) return replay;

      const live = this.models.get(model);
      const version = live?.versions.get(versionName);
      const record = this.state.models.get(model);
      if (!live || !version || !record) return this.recordNoop(op);
      const weight = record.weights.get(versionName) ?? 0;
      if (weight > 0) {
        throw new HttpError(
          409,
          `version '${versionName}' of model '${model}' has weight ${weight}; move its traffic away before undeploying it`,
        );
      }
      const versions = record.versions.filter((v) => v.version !== versionName);
      const weights = new Map(record.weights);
      weights.delete(versionName);
      const routes = routesWithout(record.routes, versionName);
      const models = new Map(this.state.models);
      if (versions.length === 0 && weights.size === 0) models.delete(model);
      else models.set(model, { versions, weights, ...(routes ? { routes } : {}) });
      await this.commit(op, models);
      if (routes !== record.routes) live.routes = liveRoutesOf(routes);

      // The removed weight was zero, so the rebuilt table routes every user exactly as before.
      const next = models.get(model);
      if (live.table && next && next.weights.size > 0) live.table = buildRoutingTable(next.weights, deployOrder(next));
      live.versions.delete(versionName);
      if (!next) this.models.delete(model);
      this.telemetry.drop(model, versionName);
      this.log.info({ model, version: versionName, opId }, 'model version undeployed');
      // Waits for predictions already routed to this version, then frees the session.
      await version.host?.release();
      return { opId, applied: true };
    });
  }

  setWeights(model: string, request: SetWeightsRequest): Promise<AdminResult> {
    return this.serial(async () => {
      const op: AdminOp = { opId: request.opId, kind: 'set-weights', model, weights: request.weights, at: '' };
      const replay = this.replay(op);
      if (replay) return replay;

      const live = this.models.get(model);
      const record = this.state.models.get(model);
      if (!live || !record) {
        throw new HttpError(404, `model '${model}' has no deployed version; deploy versions before setting weights`);
      }
      // An empty table takes the model out of service (a first deployment rolled back has no stable to return to).
      let table: RoutingTable | undefined;
      try {
        table =
          Object.keys(request.weights).length === 0
            ? undefined
            : buildRoutingTable(request.weights, deployOrder(record));
      } catch (err) {
        if (err instanceof InvalidWeightsError) {
          throw new HttpError(400, `invalid weights request: weights: ${err.problems.join('; ')}`);
        }
        throw err;
      }
      await this.commit(op, new Map(this.state.models).set(model, { ...record, weights: table?.weights ?? new Map() }));
      live.table = table;
      this.log.info({ model, weights: request.weights, opId: op.opId }, 'model weights set');
      return { opId: op.opId, applied: true };
    });
  }

  /**
   * Replaces a model's pinned routes and shadow traffic as a whole. Every version they name must be deployed (409
   * otherwise). A shadow version may also have weight: copies are taken only of requests another version answers.
   */
  setRoutes(model: string, request: SetRoutesRequest): Promise<AdminResult> {
    return this.serial(async () => {
      const op: AdminOp = { opId: request.opId, kind: 'set-routes', model, at: '' };
      const replay = this.replay(op);
      if (replay) return replay;
      const live = this.models.get(model);
      const record = this.state.models.get(model);
      if (!live || !record) {
        throw new HttpError(404, `model '${model}' has no deployed version; deploy versions before setting routes`);
      }
      const named = [...request.pins.map((p) => p.version), ...(request.shadow ? [request.shadow.version] : [])];
      const missing = [...new Set(named)].filter((v) => !live.versions.has(v));
      if (missing.length > 0) {
        throw new HttpError(
          409,
          `invalid routes request: version(s) ${missing.map((v) => `'${v}'`).join(', ')} of model '${model}' ` +
            'not deployed; deploy them before routing to them',
        );
      }
      const routes: ModelRoutes | undefined =
        request.pins.length === 0 && !request.shadow
          ? undefined
          : { pins: request.pins, ...(request.shadow ? { shadow: request.shadow } : {}) };
      const next = { versions: record.versions, weights: record.weights, ...(routes ? { routes } : {}) };
      await this.commit(op, new Map(this.state.models).set(model, next));
      live.routes = liveRoutesOf(routes);
      this.log.info({ model, routes: routes ?? null, opId: op.opId }, 'model routes set');
      return { opId: op.opId, applied: true };
    });
  }

  /** Replaces the faults of a deployed version (404 if it is not deployed); in memory only, never journaled. */
  setFaults(model: string, versionName: string, request: SetFaultsRequest): Promise<VersionFaults> {
    // Through the admin chain so that it cannot interleave with an undeploy: it lands before (and is cleared with the
    // version) or after (404).
    return this.serial(async () => {
      const version = this.deployedVersion(model, versionName);
      version.faults = new VersionFaultState(request, `version '${versionName}' of model '${model}'`);
      this.log.warn({ model, version: versionName, faults: request }, 'faults injected into model version');
      return { model, version: versionName, faults: request };
    });
  }

  /** Clears the faults of a deployed version (404 if it is not deployed). */
  clearFaults(model: string, versionName: string): Promise<VersionFaults> {
    return this.serial(async () => {
      const version = this.deployedVersion(model, versionName);
      if (version.faults) {
        version.faults = undefined;
        this.log.warn({ model, version: versionName }, 'faults of model version cleared');
      }
      return { model, version: versionName, faults: {} };
    });
  }

  faults(model: string, versionName: string): VersionFaults {
    const version = this.deployedVersion(model, versionName);
    return { model, version: versionName, faults: version.faults?.settings ?? {} };
  }

  routing(model: string): ModelRouting {
    const record = this.state.models.get(model);
    if (!record) throw new HttpError(404, `model '${model}' is not deployed`);
    return toRouting(model, record);
  }

  listRouting(): ModelRouting[] {
    return [...this.state.models]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([model, record]) => toRouting(model, record));
  }

  modelTelemetry(model: string): ModelTelemetry {
    if (!this.models.has(model)) throw new HttpError(404, `model '${model}' is not deployed`);
    return this.telemetry.snapshot(model);
  }

  ops(model: string | undefined): readonly JournalEntry[] {
    return model === undefined ? this.state.ops : this.state.ops.filter((op) => op.model === model);
  }

  /** Waits for the admin op in progress, then releases every model session. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.adminChain;
    const hosts = [...this.models.values()].flatMap((m) => [...m.versions.values()].map((v) => v.host));
    this.models.clear();
    await Promise.all(hosts.map((host) => host?.release().catch(() => undefined)));
  }

  private deployedVersion(model: string, versionName: string): LiveVersion {
    const version = this.models.get(model)?.versions.get(versionName);
    if (!version) throw new HttpError(404, `version '${versionName}' of model '${model}' is not deployed`);
    return version;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new HttpError(503, 'the gateway is closing'));
    const run = this.adminChain.then(fn);
    this.adminChain = run.catch(() => undefined);
    return run;
  }

  /** The reply to an opId seen before (applied: false), 409 if it was used for a different op; undefined if new. */
  private replay(op: AdminOp): AdminResult | undefined {
    const seen = this.journal.get(op.opId);
    if (!seen) return undefined;
    if (seen.kind !== op.kind || seen.model !== op.model || seen.version !== op.version) {
      const target = seen.version ? `${seen.model}@${seen.version}` : seen.model;
      throw new HttpError(409, `opId '${op.opId}' was already used for ${seen.kind} of ${target}`);
    }
    return { opId: op.opId, applied: false };
  }

  /** Journals an op that changed nothing, so that its opId stays consumed. */
  private async recordNoop(op: AdminOp): Promise<AdminResult> {
    await this.commit(op, this.state.models, this.state.nextSeq, false);
    return { opId: op.opId, applied: false };
  }

  /** Persists the next state with `op` journaled, then makes it current. Throws (state unchanged) if the save fails. */
  private async commit(
    op: AdminOp,
    models: RoutingState['models'],
    nextSeq = this.state.nextSeq,
    applied = true,
  ): Promise<void> {
    const entry: JournalEntry = { ...op, at: new Date().toISOString(), applied };
    const next: RoutingState = {
      nextSeq,
      models,
      ops: this.store.appendOp(this.state.ops, entry),
    };
    await this.store.save(next);
    const dropped = this.state.ops.length + 1 - next.ops.length;
    for (let i = 0; i < dropped; i++) this.journal.delete((this.state.ops[i] as JournalEntry).opId);
    this.journal.set(entry.opId, entry);
    this.state = next;
  }

  /**
   * The real folder of `requested` (a relative path from the gateway's working directory), which must lie inside the
   * artifact root once symbolic links are resolved. A folder that does not exist and one outside the root are the
   * same {@link ArtifactError} (`unavailable`): an answer must not tell which paths exist on the gateway's host.
   */
  private async artifactFolder(requested: string): Promise<string> {
    const resolved = path.resolve(requested);
    let real: string;
    try {
      real = await realpath(resolved);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new ArtifactError('unavailable', ARTIFACT_UNAVAILABLE, `${resolved}: ${code}`, { cause: err });
    }
    if (!isInside(this.artifactRoot, real)) {
      throw new ArtifactError(
        'unavailable',
        ARTIFACT_UNAVAILABLE,
        `${resolved} resolves to ${real}, outside the artifact root ${this.artifactRoot}`,
      );
    }
    // The files are read below this folder, not through `requested` again. A folder swapped for a link after this
    // check could still send the reads elsewhere, but only bytes with the recorded digest are ever loaded.
    return real;
  }

  /**
   * The cache folder of the stored artifact at `uri`, fetched unless the cache has it, its bytes checked against
   * `digest`. Throws ArtifactStoreError: a URI outside the configured store (or no store) is `invalid`.
   */
  private async fetchStored(uri: string, digest: string): Promise<string> {
    if (!this.artifacts) {
      throw new ArtifactStoreError('invalid', 'this gateway has no artifact store configured (ML_ARTIFACT_STORE)');
    }
    // Checked before any I/O: the store reads only below its own location, and only the digest the caller names.
    artifactPathOf(this.artifacts.store.location, uri, digest);
    return (await this.artifacts.store.fetch(uri, digest, this.artifacts.cacheDir)).dir;
  }

  /**
   * {@link fetchStored} for a deploy: a URI that can never name an artifact of this gateway's store is a 400 naming the
   * field; stored bytes that are missing or not the recorded ones are a 422 (nothing is loaded); a store that cannot
   * be reached is a 503 (the caller retries). The detail goes to the log.
   */
  private async refusingStored(model: string, version: string, uri: string, digest: string): Promise<string> {
    const refused = `artifact for model '${model}' version '${version}' cannot be loaded: artifactUri`;
    const refuse = (err: ArtifactStoreError, status: number, why: string): never => {
      this.log.warn({ model, version, artifactUri: uri, problem: err.kind, detail: err.message }, 'deploy refused');
      throw new HttpError(status, why);
    };
    if (!this.artifacts) {
      throw new HttpError(422, `${refused}: this gateway has no artifact store configured (ML_ARTIFACT_STORE)`);
    }
    const { store, cacheDir } = this.artifacts;
    try {
      artifactPathOf(store.location, uri, digest);
    } catch (err) {
      if (!(err instanceof ArtifactStoreError)) throw err;
      if (err.kind === 'digest-mismatch') refuse(err, 422, `${refused}: it names another digest than artifactDigest`);
      refuse(
        err,
        400,
        `invalid deploy request: artifactUri: not an artifact of this gateway's artifact store ` +
          `(${store.location}/<key>/sha256-<hex>)`,
      );
    }
    try {
      return (await store.fetch(uri, digest, cacheDir)).dir;
    } catch (err) {
      if (!(err instanceof ArtifactStoreError)) throw err;
      if (err.kind === 'unavailable') return refuse(err, 503, `${refused}: the artifact store is unavailable now`);
      if (err.kind === 'not-found') return refuse(err, 422, `${refused}: no complete artifact is stored there`);
      if (err.kind === 'digest-mismatch') {
        return refuse(err, 422, `${refused}: the stored files do not have artifactDigest; nothing was loaded`);
      }
      return refuse(err, 422, `${refused}: the stored artifact is invalid`);
    }
  }

  /** Loads the artifact of a deploy from `artifactDir` (a real path inside the root) if its bytes have `digest`. */
  /** Loads a deploy's artifact and checks that the deploy gives what its task needs (a regression's bin edges). */
  private async loadArtifact(model: string, version: string, artifactDir: string, request: DeployRequest) {
    const host = await this.refusingArtifact(model, version, () =>
      ModelHost.load(artifactDir, { digest: request.artifactDigest }),
    );
    const binning = binningOf(host, request.predictionEdges);
    if (typeof binning === 'string') {
      await host.release().catch(() => undefined);
      throw new HttpError(422, `invalid deploy request: ${binning}`);
    }
    return { host, binning };
  }

  /**
   * Runs `fn`; an {@link ArtifactError} becomes a 422 that carries its answerable message only, and its detail (which
   * paths, which file, which bytes) goes to the log at warn level: the admin API is no file oracle.
   */
  private async refusingArtifact<T>(model: string, version: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ArtifactError)) throw err;
      this.log.warn({ model, version, ...artifactDetail(err) }, 'deploy refused: artifact cannot be loaded');
      throw new HttpError(422, `artifact for model '${model}' version '${version}' cannot be loaded: ${err.message}`);
    }
  }
}

/**
 * How a loaded version's predictions are binned, or why they cannot be: a regression needs the bin edges its
 * validation computed (the deploy's `predictionEdges`); a classifier's bins are fixed.
 */
function binningOf(host: ModelHost, edges: readonly number[] | undefined): PredictionBinning | string {
  const { task, classes } = host.manifest;
  if (task !== 'regression') return { task, classes: classes.length };
  if (!edges || edges.length !== PREDICTION_EDGES) {
    return (
      `predictionEdges: a regression model is deployed with the ${PREDICTION_EDGES} bin edges of its validation ` +
      `predictions (${PREDICTION_BASELINE_FILE} beside the artifact)`
    );
  }
  return { task, edges };
}

const edgesOf = (binning: PredictionBinning) => (binning.edges ? { predictionEdges: [...binning.edges] } : {});

/** What the log says about an artifact failure: the kind and the real cause. */
function artifactDetail(err: unknown): { problem?: string; detail?: string } {
  return err instanceof ArtifactError ? { problem: err.problem, detail: err.detail } : {};
}

function toRouting(model: string, record: ModelState): ModelRouting {
  return {
    model,
    // Routing order: newest deploy first, the order in which versions own buckets.
    versions: [...record.versions]
      .sort((a, b) => b.seq - a.seq)
      .map(({ version, artifactDir, artifactUri, artifactDigest, deployedAt }) => ({
        version,
        artifactDir,
        ...(artifactUri === undefined ? {} : { artifactUri }),
        ...(artifactDigest === undefined ? {} : { artifactDigest }),
        deployedAt,
      })),
    weights: Object.fromEntries(record.weights),
    ...(record.routes ? { routes: record.routes } : {}),
  };
}
