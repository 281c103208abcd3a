import {
  CancellationScope,
  condition,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { ErrorType } from '../../shared/errors';
import { quotaDecidedSignal } from '../../shared/messages';
import type { HardwareSelection, TrainingOption } from '../../shared/hardware';
import type { LifecycleSpec } from '../../shared/spec';
import type { LifecycleStatus } from '../../shared/status';
import type {
  QuotaLease,
  ReleaseQuotaInput,
  ReserveQuotaInput,
  ReserveQuotaResult,
  RunProfile,
} from '../../shared/quota';
import { control, type LifecycleContext } from './context';

/**
 * TTL of the candidate's serving lease during the rollout. The lifecycle renews it from workflow timers, so the TTL
 * sets how many renewals a long bake writes to history (one per 40 minutes) and how soon a terminated lifecycle's
 * serving quota returns to the pool (within 2 hours). Training leases take the pool's TTL: their renewals ride on the
 * trainer's activity heartbeats and write nothing to history.
 */
export const SERVING_LEASE_TTL_MS = 2 * 3_600_000;

export interface PickedHardware {
  option: TrainingOption & { label: string };
  lease: QuotaLease;
}

const label = (o: TrainingOption) => `${o.count > 1 ? `${o.count}× ` : ''}${o.device}`;

/** A training option refused by its pool, and the refusal. */
export type Refusal = { option: TrainingOption; result: ReserveQuotaResult & { granted: false } };

/** What the lifecycle's status shows of a plan before any lease: its first training option, serving and rationale. */
export function plannedHardware(
  plan: HardwareSelection,
  first: TrainingOption,
): NonNullable<LifecycleStatus['hardware']> {
  return {
    training: label(first),
    serving: `${plan.serving.replicas}× ${plan.serving.count > 1 ? `${plan.serving.count}× ` : ''}${plan.serving.device}`,
    rationale: plan.rationale,
  };
}

/** The reservation of a training option: the lease the lifecycle trains under, with the run's profile for the pool. */
export function trainingLeaseRequest(
  spec: LifecycleSpec,
  holder: string,
  leaseId: string,
  option: TrainingOption,
): ReserveQuotaInput & { pool: string; profile: RunProfile; expectedDurationMs: number } {
  return {
    pool: option.pool,
    leaseId,
    holder,
    kind: 'training' as const,
    resources: option.quota,
    profile: {
      model: spec.model,
      family: spec.hardware.architecture,
      device: option.device,
      estimatedMs: Math.round(option.rawHours * 3_600_000),
    },
    expectedDurationMs: Math.min(Math.round(option.hours * 3_600_000), spec.training.timeout),
  };
}

/** Why no training hardware could be had: every option's refusal and shortfalls, in one line. */
export function refusalsMessage(refusals: readonly Refusal[]): string {
  return `no training hardware could be reserved: ${refusals
    .map(
      (r) =>
        `${label(r.option)} (${r.result.reason}: ${r.result.shortfalls.map((s) => `${s.resource} needs ${s.requested}, ${Math.round(s.available * 100) / 100} of ${Math.round(s.limit * 100) / 100}`).join(', ')})`,
    )
    .join('; ')}`;
}

/** The `quota-refused` alert's details: each refused option and what it lacked. */
export function refusalsDetails(refusals: readonly Refusal[]): Record<string, unknown> {
  return {
    refusals: refusals.map((r) => ({
      device: r.option.device,
      count: r.option.count,
      pool: r.option.pool,
      reason: r.result.reason,
      shortfalls: r.result.shortfalls,
      earliestRelease: r.result.earliestRelease,
    })),
  };
}

function formatHours(h: number): string {
  return h < 1 / 60 ? `${Math.round(h * 3600)} s` : h < 1 ? `${Math.round(h * 60)} min` : `${h.toFixed(1)} h`;
}

/**
 * Provisioning: the hardware planner's training options, tried in order; the first whose pool grants its lease is
 * used and its release pushed on the compensation stack. Each refusal is recorded, and the lifecycle fails naming them
 * all when none is granted (after waiting in the first option's queue, when the spec allows a wait).
 */
export async function provision(ctx: LifecycleContext, leaseId: string): Promise<PickedHardware | null> {
  const { spec, lc } = ctx;
  const plan = await control.planHardware({ spec, holder: lc.id });
  const first = plan.training[0];
  if (!first) {
    await ctx.endFailed(ErrorType.InvalidSpec, 'the hardware planner found no way to train this model');
    return null;
  }
  lc.hardware = plannedHardware(plan, first);
  lc.event(plan.rationale);
  if (plan.calibration)
    lc.event(`estimates calibrated by ${plan.calibration.runs} earlier run(s): ×${plan.calibration.factor.toFixed(3)}`);
  const refusals: Refusal[] = [];
  for (const [i, option] of plan.training.entries()) {
    const request = trainingLeaseRequest(spec, lc.id, leaseId, option);
    const last = i === plan.training.length - 1;
    // Waiting is for the preferred option, and only once every option was refused at once.
    const result = await control.reserveQuota(request);
    if (result.granted) return chosen(ctx, option, result.lease, leaseId);
    refusals.push({ option, result });
    lc.event(
      `${label(option)} refused by pool "${option.pool}": ${result.message}${last ? '' : '; trying the next option'}`,
    );
    if (last && spec.quota.wait > 0) {
      const preferred = plan.training[0]!;
      const waited = await reserveOrFail(ctx, leaseId, lc.id, 'training', preferred.quota, {
        profile: request.profile,
        expectedDurationMs: request.expectedDurationMs,
        pool: preferred.pool,
      });
      return waited ? chosen(ctx, preferred, waited, leaseId) : null;
    }
  }
  const message = refusalsMessage(refusals);
  await ctx.endFailed(ErrorType.QuotaRefused, message, {
    kind: 'quota-refused',
    severity: 'warning',
    details: refusalsDetails(refusals),
  });
  return null;
}

function chosen(ctx: LifecycleContext, option: TrainingOption, lease: QuotaLease, leaseId: string): PickedHardware {
  const { lc } = ctx;
  ctx.trainingPool = option.pool;
  ctx.comp.push('release training quota', () => releaseLease(ctx, leaseId, {}, option.pool));
  if (lc.hardware) lc.hardware = { ...lc.hardware, training: label(option) };
  lc.event(
    `training on ${label(option)}: about ${formatHours(option.hours)}, $${option.costUsd.toFixed(4)}; lease from pool "${option.pool}"`,
  );
  return { option: { ...option, label: label(option) }, lease };
}

/**
 * Reserves quota, waiting in the pool's queue for up to `quota.wait`; when the pool refuses, the lifecycle fails
 * naming what is short and when quota is expected back, and alerts. Returns the lease, or null when refused.
 */
export async function reserveOrFail(
  ctx: LifecycleContext,
  leaseId: string,
  holder: string,
  kind: 'training' | 'serving',
  resources: Record<string, number>,
  extra: Pick<ReserveQuotaInput, 'profile' | 'expectedDurationMs' | 'ttlMs'> & { pool?: string } = {},
): Promise<QuotaLease | null> {
  const { spec, lc } = ctx;
  const { pool = spec.quota.pool, ...rest } = extra;
  const waitMs = spec.quota.wait;
  if (waitMs > 0) lc.event(`reserving ${kind} quota; may wait up to ${waitMs} ms in pool "${pool}"`);
  const request = {
    pool,
    leaseId,
    holder,
    kind,
    resources,
    ...rest,
    ...(waitMs > 0 ? { wait: { timeoutMs: waitMs, priority: spec.quota.priority } } : {}),
  };
  let reserved: ReserveQuotaResult;
  if (waitMs > 0 && patched(QUOTA_WAIT_IN_WORKFLOW)) {
    if (patched(QUOTA_DECISION_SIGNALS)) {
      const told = await waitToBeTold(ctx, kind, pool, leaseId, {
        ...request,
        notify: { workflowId: workflowInfo().workflowId },
      });
      if (told === 'aborted') {
        await ctx.stopAborted();
        return null;
      }
      reserved = told;
    } else reserved = await waitInQueue(ctx, kind, pool, leaseId, await control.submitQuotaReservation(request));
  } else {
    const reserver =
      waitMs > 0
        ? proxyActivities<Activities>({
            startToCloseTimeout: waitMs + 60_000,
            heartbeatTimeout: '30 seconds',
            retry: { initialInterval: '1 second', maximumAttempts: 5 },
          })
        : control;
    reserved = await reserver.reserveQuota(request);
  }
  if (reserved.granted) {
    if (reserved.waitedMs > 0) lc.event(`${kind} quota granted after waiting ${reserved.waitedMs} ms`);
    return reserved.lease;
  }
  const when = reserved.earliestRelease ? `; quota expected back at ${reserved.earliestRelease}` : '';
  await ctx.endFailed(ErrorType.QuotaRefused, `${reserved.message}${when}`, {
    kind: 'quota-refused',
    severity: 'warning',
    summary: reserved.message,
    details: { reason: reserved.reason, shortfalls: reserved.shortfalls, earliestRelease: reserved.earliestRelease },
  });
  return null;
}

/**
 * Marks lifecycles that wait in a pool's queue on their own timers, asking the pool where they stand, instead of
 * inside one activity: hundreds of waiting lifecycles held the worker's activity slots, and the releases that would
 * have let them through could not run.
 */
export const QUOTA_WAIT_IN_WORKFLOW = 'quota-wait-in-workflow';
/** A queued reservation is looked at again after 1 s, then less and less often, at least every 15 s. */
const QUEUE_POLL_FIRST_MS = 1_000;
const QUEUE_POLL_MAX_MS = 15_000;

/**
 * Marks lifecycles that wait in a pool's queue until the pool tells them their reservation was decided (the
 * `quotaDecided` signal; they still ask now and then, in case a pool of an older run cannot tell), stop waiting on an
 * abort, and withdraw the reservation when aborted or cancelled while it waits.
 */
export const QUOTA_DECISION_SIGNALS = 'quota-decision-signals';
/**
 * How long a waiter waits for the pool's word before it asks anyway: a pool that said it will tell is asked only as a
 * safety net (hundreds of waiters asking every half minute were most of a crowded pool's work); a pool run from before
 * it told its waiters, every 30 s.
 */
const QUEUE_ASK_WHEN_TOLD_MS = 10 * 60_000;
const QUEUE_ASK_EVERY_MS = 30_000;

/**
 * Sends a reservation that may wait and, when the pool queues it, waits for the pool's word (or an abort). Returns the
 * pool's answer, or 'aborted' once the reservation was withdrawn for an abort. A cancellation withdraws it too.
 */
async function waitToBeTold(
  ctx: LifecycleContext,
  kind: string,
  pool: string,
  leaseId: string,
  request: ReserveQuotaInput & { pool: string },
): Promise<ReserveQuotaResult | 'aborted'> {
  const { lc } = ctx;
  let decided = false;
  setHandler(quotaDecidedSignal, (d) => {
    if (d?.leaseId === leaseId) decided = true;
  });
  let now = await control.submitQuotaReservation(request);
  try {
    while (!now.granted && now.queued) {
      ctx.details(`waiting for ${kind} quota in pool "${pool}": place ${now.queued.position}`);
      const askIn = now.queued.tells ? QUEUE_ASK_WHEN_TOLD_MS : QUEUE_ASK_EVERY_MS;
      await condition(() => decided || lc.abort !== null, askIn, {
        summary: `waiting for ${kind} quota in pool "${pool}" (place ${now.queued.position})`,
      });
      if (lc.abort) {
        await withdrawReservation(pool, leaseId);
        lc.event(`${kind} quota reservation withdrawn from pool "${pool}": ${ctx.abortMessage()}`);
        return 'aborted';
      }
      decided = false;
      now = await control.quotaReservationState({ pool, leaseId, last: now });
    }
  } catch (err) {
    if (isCancellation(err)) await CancellationScope.nonCancellable(() => withdrawReservation(pool, leaseId));
    throw err;
  }
  return now;
}

/** Takes a queued reservation back (the pool's release of one it has not granted); a granted one is released. */
async function withdrawReservation(pool: string, leaseId: string): Promise<void> {
  try {
    await control.releaseQuota({ pool, leaseId });
  } catch (err) {
    log.warn('withdrawing a queued reservation failed; the pool refuses it at its deadline', {
      leaseId,
      error: String(err),
    });
  }
}

/** Waits for a reservation the pool queued, until the pool grants or refuses it (it refuses at the wait's end). */
async function waitInQueue(
  ctx: LifecycleContext,
  kind: string,
  pool: string,
  leaseId: string,
  first: ReserveQuotaResult,
): Promise<ReserveQuotaResult> {
  let now = first;
  for (let poll = 0; !now.granted && now.queued; poll++) {
    ctx.details(`waiting for ${kind} quota in pool "${pool}": place ${now.queued.position}`);
    await sleep(Math.min(QUEUE_POLL_FIRST_MS * 2 ** poll, QUEUE_POLL_MAX_MS), {
      summary: `waiting for ${kind} quota in pool "${pool}" (place ${now.queued.position})`,
    });
    now = await control.quotaReservationState({ pool, leaseId, last: now });
  }
  return now;
}

export async function releaseLease(
  ctx: LifecycleContext,
  leaseId: string,
  extra: Omit<ReleaseQuotaInput, 'leaseId'> = {},
  pool = ctx.spec.quota.pool,
): Promise<void> {
  await control.releaseQuota({ pool, leaseId, ...extra });
}

/**
 * Reserves a serving lease for the candidate (production or staging), renews it from workflow timers while the
 * lifecycle holds it, and pushes its release (renewals stopped, quota returned) on the compensation stack under
 * `name`. False when the pool refused (the lifecycle has ended failed).
 */
export async function reserveServing(
  ctx: LifecycleContext,
  leaseId: string,
  holder: string,
  name: string,
): Promise<boolean> {
  const { spec } = ctx;
  const resources = { cpu: spec.quota.serving.cpu, memoryGiB: spec.quota.serving.memoryGiB };
  const grant = await reserveOrFail(ctx, leaseId, holder, 'serving', resources, {
    profile: { model: spec.model, family: spec.hardware.architecture },
    ttlMs: SERVING_LEASE_TTL_MS,
  });
  if (!grant) return false;
  const stopRenewing = grant.ttlMs !== null ? keepRenewing(ctx, leaseId, grant.ttlMs) : () => undefined;
  ctx.comp.push(name, async () => {
    stopRenewing();
    await releaseLease(ctx, leaseId);
  });
  ctx.stopRenewing.set(leaseId, stopRenewing);
  return true;
}

/**
 * Renews a lease at a third of its TTL while the lifecycle holds it; a workflow that is terminated stops renewing
 * and the pool takes the quota back when the TTL runs out. Returns the function that stops the renewals.
 */
export function keepRenewing(
  ctx: LifecycleContext,
  leaseId: string,
  ttlMs: number,
  pool = ctx.spec.quota.pool,
): () => void {
  const { lc } = ctx;
  const scope = new CancellationScope();
  let held = true;
  void scope
    .run(async () => {
      while (held) {
        await sleep(Math.max(Math.floor(ttlMs / 3), 1_000), { summary: `renew quota lease ${leaseId}` });
        if (!held) return;
        const r = await control.renewQuota({ pool, leaseId });
        if (!r.renewed) {
          lc.event(`quota lease ${leaseId} was no longer held by pool "${pool}" (expired)`);
          return;
        }
      }
    })
    .catch((err: unknown) => {
      if (!isCancellation(err)) log.warn('lease renewal stopped', { leaseId, error: String(err) });
    });
  return () => {
    if (!held) return;
    held = false;
    scope.cancel();
  };
}
