import { ApplicationFailure } from '@temporalio/activity';
import { createHash } from 'node:crypto';
import { sumReplicaTelemetry, TelemetryMergeError } from '../domain/replica-telemetry';
import { ErrorType } from '../shared/errors';
import { own as ownOf } from '../shared/own';
import type { AdminResult } from '../shared/gateway-api';
import { cut } from '../shared/text';
import {
  MAX_EPOCH_LENGTH,
  MAX_TELEMETRY_BYTES,
  type ModelTelemetry,
  type ReplicaTelemetry,
  type VersionTelemetry,
} from '../shared/telemetry';
import type { DeployRequestInput, DeploymentTarget, SetRoutesInput, SetWeightsInput, UndeployInput } from './contract';

/** One replica of the worker's gateway: its admin URL (how messages and telemetry name it) and its client. */
export interface GatewayReplica {
  url: string;
  target: DeploymentTarget;
}

/** What an ApplicationFailure-like error says about retrying (a plain error: retryable, as the activity would be). */
function isRefusal(err: unknown): boolean {
  return err instanceof ApplicationFailure && err.nonRetryable === true;
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/**
 * The worker's gateway run as several replicas behind one load balancer (GATEWAY_ADMIN_URL lists their admin URLs),
 * kept consistent by sending every mutation to all of them:
 *
 * - deploy, setWeights, setRoutes and undeploy go to every replica at once, with the same opId (each replica applies
 *   an opId once, so the activity's retry re-applies nothing on the replicas that already did). The call succeeds only
 *   when every replica confirms; a replica that refuses makes it a non-retryable GatewayRefused naming the replica, one
 *   that does not answer a retryable GatewayUnavailable naming every replica that did not. A lifecycle therefore never
 *   moves past a weight table that some replica has not confirmed, and the retry brings a restarted replica (which
 *   comes back with its persisted routing) to the others' table.
 * - readWeights answers the table only when every replica routes by the same one; otherwise (or when one cannot be
 *   read) it fails retryably, so a rollback's hold check does not pass.
 * - readTelemetry reads every replica (one that cannot be read fails the read retryably: never a smaller sum) and
 *   answers their sum with each replica's own counters in `replicas` (src/domain/replica-telemetry.ts differences
 *   them replica by replica).
 */
export class ReplicatedGatewayTarget implements DeploymentTarget {
  readonly label = 'gateway';

  constructor(private readonly replicas: readonly GatewayReplica[]) {
    if (replicas.length === 0) throw new Error('a replicated gateway needs at least one replica');
  }

  /** Every replica's answer, or the one failure that says what to do: a refusal first, else who did not answer. */
  private async onAll<T>(what: string, call: (t: DeploymentTarget) => Promise<T>): Promise<T[]> {
    const settled = await Promise.allSettled(this.replicas.map((r) => call(r.target)));
    const failed = settled.flatMap((s, i) =>
      s.status === 'rejected' ? [{ url: this.replicas[i]!.url, err: s.reason }] : [],
    );
    if (failed.length === 0) return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
    const refused = failed.filter((f) => isRefusal(f.err));
    if (refused.length > 0) {
      const first = refused[0]!.err as ApplicationFailure;
      throw ApplicationFailure.create({
        type: first.type ?? ErrorType.GatewayRefused,
        message: cut(
          `gateway ${what}: refused by ${refused.map((f) => `replica ${f.url} (${messageOf(f.err)})`).join('; ')}`,
          4000,
        ),
        nonRetryable: true,
        details: first.details ? [...first.details] : undefined,
      });
    }
    const answered = this.replicas.length - failed.length;
    throw ApplicationFailure.create({
      type: ErrorType.GatewayUnavailable,
      message: cut(
        `gateway ${what}: replica${failed.length > 1 ? 's' : ''} ${failed.map((f) => f.url).join(', ')} did not ` +
          `answer (${answered} of ${this.replicas.length} did): ${failed.map((f) => messageOf(f.err)).join('; ')}`,
        4000,
      ),
    });
  }

  /** Applied when any replica applied it now (the others had it already: an earlier attempt of the same opId). */
  private static result(opId: string, results: readonly AdminResult[]): AdminResult {
    return { opId, applied: results.some((r) => r.applied) };
  }

  async deploy(input: DeployRequestInput): Promise<AdminResult> {
    const what = `deploy of ${input.model} ${input.version}`;
    return ReplicatedGatewayTarget.result(input.opId, await this.onAll(what, (t) => t.deploy(input)));
  }

  async setWeights(input: SetWeightsInput): Promise<AdminResult> {
    const what = `weights of ${input.model}`;
    return ReplicatedGatewayTarget.result(input.opId, await this.onAll(what, (t) => t.setWeights(input)));
  }

  async setRoutes(input: SetRoutesInput): Promise<AdminResult> {
    const what = `routes of ${input.model}`;
    return ReplicatedGatewayTarget.result(
      input.opId,
      await this.onAll(what, (t) => {
        if (!t.setRoutes) throw new Error('replica without routes');
        return t.setRoutes(input);
      }),
    );
  }

  async undeploy(input: UndeployInput): Promise<AdminResult> {
    const what = `undeploy of ${input.model} ${input.version}`;
    return ReplicatedGatewayTarget.result(input.opId, await this.onAll(what, (t) => t.undeploy(input)));
  }

  /** The table every replica routes by; replicas that disagree fail the read (retryable), naming each one's table. */
  async readWeights(model: string): Promise<Record<string, number>> {
    const tables = await this.onAll(`weights read of ${model}`, (t) => t.readWeights(model));
    const live = (w: Record<string, number> | null) =>
      JSON.stringify(
        Object.entries(w ?? {})
          .filter(([, p]) => p > 0)
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      );
    const first = tables[0] ?? null;
    if (first !== null && tables.every((t) => t !== null && live(t) === live(first))) return first;
    throw ApplicationFailure.create({
      type: ErrorType.GatewayUnavailable,
      message: cut(
        `gateway replicas disagree on the weights of ${model}: ` +
          this.replicas.map((r, i) => `${r.url} routes ${live(tables[i] ?? null)}`).join('; '),
        4000,
      ),
    });
  }

  /**
   * Every replica's counters and their sum. Each replica's answer is validated as one gateway's is; the sum of a
   * version gets an epoch made of the replicas' (it changes when any replica's counters restart). Counters that cannot
   * be added, or a whole larger than MAX_TELEMETRY_BYTES even without the sum's input sketches, are a non-retryable
   * GatewayRefused.
   */
  async readTelemetry(model: string): Promise<ModelTelemetry> {
    const answers = await this.onAll(`telemetry read of ${model}`, (t) => t.readTelemetry(model));
    const refuse = (problem: string) =>
      ApplicationFailure.create({
        type: ErrorType.GatewayRefused,
        message: cut(`gateway telemetry of ${model} from ${this.replicas.length} replicas: ${problem}`, 4000),
        nonRetryable: true,
      });
    const replicas = new Map<string, ReplicaTelemetry>();
    answers.forEach((a, i) => {
      const { at, versions, pinned, shadow } = a;
      replicas.set(this.replicas[i]!.url, {
        at,
        versions,
        ...(pinned ? { pinned } : {}),
        ...(shadow ? { shadow } : {}),
      });
    });
    let sum: ReplicaTelemetry;
    try {
      sum = sumReplicaTelemetry([...replicas.values()]);
    } catch (err) {
      if (err instanceof TelemetryMergeError) throw refuse(`the replicas' counters do not add up: ${err.message}`);
      throw err;
    }
    // Each replica's epoch of the counters ('-' where it has none, or not that version).
    const pick = (name: string, of: (r: ReplicaTelemetry) => VersionTelemetry | undefined) =>
      [...replicas].map(([url, r]) => [url, of(r)?.epoch ?? '-'] as const);
    const withEpochs = (
      record: Record<string, VersionTelemetry> | undefined,
      of: (r: ReplicaTelemetry, name: string) => VersionTelemetry | undefined,
    ) =>
      record &&
      Object.fromEntries(
        Object.entries(record).map(([name, v]) => [
          name,
          { ...v, epoch: replicatedEpoch(pick(name, (r) => of(r, name))) },
        ]),
      );
    const merged: ModelTelemetry = {
      model,
      at: sum.at,
      versions: withEpochs(sum.versions, (r, name) => ownOf(r.versions, name))!,
      ...(sum.pinned ? { pinned: withEpochs(sum.pinned, (r, name) => ownOf(r.pinned, name)) } : {}),
      ...(sum.shadow
        ? {
            shadow: Object.fromEntries(
              Object.entries(sum.shadow).map(([name, s]) => [
                name,
                {
                  ...s,
                  candidate: {
                    ...s.candidate,
                    epoch: replicatedEpoch(pick(name, (r) => ownOf(r.shadow, name)?.candidate)),
                  },
                  primary: { ...s.primary, epoch: replicatedEpoch(pick(name, (r) => ownOf(r.shadow, name)?.primary)) },
                },
              ]),
            ),
          }
        : {}),
      replicas: Object.fromEntries(replicas),
    };
    let bytes = Buffer.byteLength(JSON.stringify(merged));
    if (bytes <= MAX_TELEMETRY_BYTES) return merged;
    // The analysis reads input sketches replica by replica: the sum's copy is the first thing to go.
    const lean: ModelTelemetry = {
      ...merged,
      versions: Object.fromEntries(
        Object.entries(merged.versions).map(([name, v]) => {
          const { inputs: _inputs, ...rest } = v;
          return [name, rest];
        }),
      ),
    };
    bytes = Buffer.byteLength(JSON.stringify(lean));
    if (bytes <= MAX_TELEMETRY_BYTES) return lean;
    throw refuse(`${bytes} bytes of JSON, more than ${MAX_TELEMETRY_BYTES} can be carried through workflow history`);
  }
}

/**
 * The epoch of a sum: a digest of every replica's epoch of the counters (`-` where a replica has none or lacks the
 * version), so that it changes whenever any replica's counters start again. At most MAX_EPOCH_LENGTH characters.
 */
export function replicatedEpoch(epochs: readonly (readonly [string, string])[]): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([...epochs].sort()))
    .digest('hex');
  return `replicas-${epochs.length}-${digest.slice(0, 40)}`.slice(0, MAX_EPOCH_LENGTH);
}
