import {
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
  ApplicationFailure,
  isCancellation,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { Alert, MAX_OBSERVATIONS_PER_SIGNAL, Observation, type MonitorAction } from '../shared/alerts';
import { ErrorType } from '../shared/errors';
import {
  alertRouterQuery,
  observeSignal,
  overrideActionUpdate,
  raiseAlertSignal,
  SilenceInput,
  silenceModelUpdate,
  type OverrideAck,
  type OverrideInput,
} from '../shared/monitoring';
import { describeIssues } from '../shared/spec';
import { z } from 'zod';
import { cut } from '../shared/text';
import { failureMessage } from './failures';
import { guardedSignal, guardedUpdate, guardedValidator, parseInput, refuse } from './handlers';
import { rollbackWorkflowId, type ModelRollbackInput, type ModelRollbackResult } from '../shared/registry';
import { NonceLedger, OperationTarget } from '../shared/signed-operation';
import { AlertDesk, type CarriedRouterState, type Incident } from './alert-router-state';
import { backoff, FAIL_FAST_OPTIONS, QUICK_OPTIONS } from './activity-options';

export interface AlertRouterInput {
  /** How long the first alert of a group waits for others before one notification carries them all (default 10 s). */
  groupWaitMs?: number;
  /**
   * Events at which a run continues as new (at most, and by default, ROUTER_RUN_EVENTS; at least 100): a lower bound
   * for tests and for namespaces with small history limits.
   */
  runEvents?: number;
  carried?: CarriedRouterState;
}

const DEFAULT_GROUP_WAIT_MS = 10_000;
/** Inbox items handled per run before continuing as new. */
const ITEMS_PER_RUN = 2000;

/** Quick calls: visibility lookups, signals to lifecycles. */
const quick = proxyActivities<Activities>(QUICK_OPTIONS);
/**
 * Delivery to a sink keeps trying for hours: a receiver down for maintenance gets its alerts when it comes back, while
 * the other sinks of the group have theirs already (at-least-once; receivers deduplicate on the incident key).
 */
const delivery = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '6 hours',
  retry: backoff('2 seconds', '5 minutes'),
});
/**
 * A re-send of open incidents is retried briefly, not for hours: the next one follows an interval later, and the
 * incidents' `endsAt` (3 intervals ahead) outlasts two lost ones.
 */
const resendDelivery = proxyActivities<Activities>(FAIL_FAST_OPTIONS);

/** Marks routers that authorize silences and overrides with the platform policy before applying them. */
const AUTHORIZED_OPERATORS = 'authorized-operators';
/**
 * Marks routers that keep open incidents firing in Alertmanager: their alerts are sent as `open` (with `endsAt` ahead)
 * and re-sent every interval until they resolve. Earlier routers posted them once, and Alertmanager resolved them after
 * its `resolve_timeout`.
 */
const ALERTMANAGER_RESEND = 'alertmanager-resend';
/**
 * Marks routers whose runs also end at ROUTER_RUN_EVENTS events or ROUTER_RUN_BYTES of history, whichever comes first
 * (with the ITEMS_PER_RUN of before): a run of 2,000 items reached about 4,000 events and 2.3 MB, and a worker that had
 * to replay it took seconds per workflow task. Earlier runs ended at ITEMS_PER_RUN or the server's suggestion only.
 */
const BOUNDED_RUNS = 'router-bounded-runs';
const ROUTER_RUN_EVENTS = 2_000;
const ROUTER_RUN_BYTES = 1024 * 1024;

/**
 * The alert path of the namespace. Monitors report checks (`observe`); workflows raise one-off alerts (`raiseAlert`).
 * The router turns checks into incidents with M-of-N hysteresis, numbers them, suppresses those of a model under a
 * silence or while the model's own rollout is acting on it, groups notifications per model (or pool) for `groupWaitMs`,
 * delivers them through a retried activity (log, routes, webhook/Slack/Alertmanager sinks), sends a resolve message
 * when an incident clears, runs the action a monitor's policy names (hold the rollout, roll back, retrain) after a
 * delay a human can override in, and keeps a queryable history. It is the only writer of alert state, so nothing
 * races; deliveries and actions run beside the loop so a slow receiver holds up nobody.
 *
 * What each message means for the router's state is the {@link AlertDesk}'s (alert-router-state.ts); this function
 * wires the handlers to it, does the I/O (authorization, routing, delivery, actions) and runs the loop.
 */
export async function alertRouterWorkflow(input: AlertRouterInput = {}): Promise<void> {
  const groupWaitMs = input.groupWaitMs ?? DEFAULT_GROUP_WAIT_MS;
  const carried = input.carried;
  // Passed on as is (not an async wrapper): the desk awaits the activity itself.
  const desk = new AlertDesk(carried, groupWaitMs, { rolloutActing: (model) => quick.rolloutActing({ model }) });
  let actionsRunning = 0;

  // Each observation of a batch is checked on its own: one malformed check does not drop its monitor's others.
  setHandler(
    observeSignal,
    guardedSignal('observe', z.array(z.unknown()).min(1).max(MAX_OBSERVATIONS_PER_SIGNAL), (batch) => {
      const good: Observation[] = [];
      for (const [i, raw] of batch.entries()) {
        const obs = Observation.safeParse(raw);
        if (obs.success) good.push(obs.data);
        else log.warn('ignored malformed observation', { index: i, problems: describeIssues(obs.error).slice(0, 10) });
      }
      if (good.length > 0) desk.inbox.push({ observations: good });
    }),
  );
  setHandler(
    raiseAlertSignal,
    guardedSignal('raiseAlert', Alert, (alert) => void desk.inbox.push({ alert })),
  );
  setHandler(alertRouterQuery, (raw) => desk.view(raw));
  // Silences and overrides are privileged: the worker checks them with the platform policy and keyring as they are
  // now. Routers started before this check (their histories) apply them as they did then.
  const enforced = patched(AUTHORIZED_OPERATORS);
  const resending = patched(ALERTMANAGER_RESEND);
  desk.keepResends(resending);
  /** When open incidents are next re-sent; unset while there is nothing to re-send. */
  let nextResendAt: number | undefined;
  let resendInFlight = false;
  const usedNonces = new NonceLedger();
  /** The signing key id when the operation may happen (null: unsigned and allowed); a refusal otherwise. */
  const authorize = async (op: {
    op: 'alert-silence' | 'alert-override';
    model: string | undefined;
    by: string;
    signed: unknown;
    target: string;
  }): Promise<string | null> => {
    if (!enforced) return null;
    if (op.model === undefined) throw refuse(`${op.op}: the incident names no model, so no policy rule covers it`);
    const verdict = await quick.authorizeOperation({
      model: op.model,
      request: {
        op: op.op,
        by: op.by,
        ...(op.signed !== undefined ? { signed: op.signed } : {}),
        target: op.target,
        specDigest: '',
        artifactDigest: '',
      },
    });
    if (!verdict.ok) throw refuse(verdict.reason, ErrorType.Unauthorized);
    if (verdict.nonce !== null && !usedNonces.take(verdict.nonce))
      throw refuse(`the claim's nonce ${verdict.nonce} was already used: replayed`, ErrorType.Unauthorized);
    return verdict.keyId;
  };
  setHandler(
    silenceModelUpdate,
    guardedUpdate('silenceModel', async (raw: SilenceInput) => {
      const s = parseInput(SilenceInput, raw, 'silence');
      const keyId = await authorize({
        op: 'alert-silence',
        model: s.model,
        by: s.by,
        signed: s.signed,
        target: OperationTarget.silence(s.model, s.forMs),
      });
      return desk.silence(s, keyId);
    }),
    { validator: guardedValidator('silenceModel', (raw) => void parseInput(SilenceInput, raw, 'silence')) },
  );
  setHandler(
    overrideActionUpdate,
    guardedUpdate('overrideAction', async (raw: OverrideInput): Promise<OverrideAck> => {
      const o = desk.checkOverride(raw);
      const keyId = await authorize({
        op: 'alert-override',
        model: desk.incidents.get(o.incident)!.alert.model,
        by: o.by,
        signed: o.signed,
        target: OperationTarget.incident(o.incident, o.action),
      });
      // Checked again: the incident may have resolved or acted while the worker was asked.
      return desk.override(desk.checkOverride(raw), keyId);
    }),
    { validator: guardedValidator('overrideAction', (raw) => void desk.checkOverride(raw)) },
  );

  /**
   * Logs and routes a group (one quick activity), then delivers to each sink on its own: a receiver that is down is
   * retried for hours while the others have their alerts already. A re-send (`resend`) goes to Alertmanager sinks only,
   * is retried briefly, and leaves no history but its failures.
   */
  const deliver = (group: Alert[], resend = false) => {
    const alerts = resending && !resend ? group.map((a) => desk.marked(a)) : group;
    const { deliveries } = desk;
    deliveries.pending++;
    const failed = (a: Alert, sink: string, err: unknown) => desk.deliveryFailed(a, sink, failureMessage(err), resend);
    const run = async () => {
      // A re-send still posting could land after a resolve and open its incident again for 3 intervals: it goes first.
      if (resending && !resend && alerts.some((a) => a.resolved)) await condition(() => !resendInFlight);
      const routed = await quick.routeAlerts(resend ? { alerts, resend } : { alerts });
      if (resending) desk.learnResendMs(routed.routes, resend);
      // Logged (and handed to the in-process sink) by the routing step: with no sink configured that is delivery.
      if (routed.routes.length === 0 && !resend) for (const a of alerts) desk.delivered(a, [], routed.owner);
      let ok = true;
      await Promise.all(
        routed.routes.map(async (r) => {
          try {
            await (resend ? resendDelivery : delivery).deliverToSink(r);
            if (!resend) for (const a of r.alerts) desk.delivered(a, [r.sink], routed.owner);
          } catch (err) {
            ok = false;
            for (const a of r.alerts) failed(a, r.sink, err);
          }
        }),
      );
      // Re-sends are upkeep, not deliveries: the counts stay those of notifications.
      if (resend) return;
      if (ok) deliveries.done++;
      else deliveries.failed++;
    };
    run()
      .catch((err: unknown) => {
        if (!resend) deliveries.failed++;
        for (const a of alerts) failed(a, 'routing', err);
      })
      .finally(() => {
        deliveries.pending--;
        if (resend) resendInFlight = false;
      });
  };

  const act = async (incidentId: string, pending: { kind: MonitorAction; by?: string }) => {
    const incident: Incident | undefined = desk.incidents.get(incidentId);
    if (!incident?.alert.model) return;
    const model = incident.alert.model;
    // Within the 2000 characters a rollback or a pause takes as its reason.
    const reason = cut(`${incidentId}: ${incident.alert.summary}`, 2000);
    actionsRunning++;
    try {
      let done: string;
      if (pending.kind === 'rollback') {
        const child = await startChild<(i: ModelRollbackInput) => Promise<ModelRollbackResult>>(
          'modelRollbackWorkflow',
          {
            workflowId: rollbackWorkflowId(model, Date.now()),
            args: [{ model, by: pending.by ?? 'monitor', reason }],
            parentClosePolicy: ParentClosePolicy.ABANDON,
          },
        );
        const result = await child.result();
        done = `rolled ${model} back from ${result.from} to ${result.to} (${child.workflowId})`;
      } else if (pending.kind === 'hold') {
        const { held } = await quick.holdRollouts({ model, by: pending.by ?? 'monitor', reason });
        done = held.length ? `held the rollouts of ${model}: ${held.join(', ')}` : `no rollout of ${model} to hold`;
      } else {
        if (incident.retrainSpec === undefined)
          throw ApplicationFailure.create({
            type: ErrorType.InvalidSpec,
            message: 'no spec to retrain from',
            nonRetryable: true,
          });
        const started = await quick.startRetraining({ spec: incident.retrainSpec, incident: incidentId });
        done = `started retraining ${model} as ${started.version} (${started.lifecycleId})`;
      }
      desk.actionTaken(incidentId, incident, pending, done);
    } catch (err) {
      const message = failureMessage(err);
      log.warn('monitor action failed', { incident: incidentId, action: pending.kind, error: message });
      desk.actionFailed(incidentId, incident, pending, message);
    } finally {
      actionsRunning--;
      desk.wake = true;
    }
  };

  const bounded = patched(BOUNDED_RUNS);
  const runEvents =
    Number.isInteger(input.runEvents) && input.runEvents! >= 100
      ? Math.min(input.runEvents!, ROUTER_RUN_EVENTS)
      : ROUTER_RUN_EVENTS;
  const runIsLong = () => {
    const { historyLength, historySize } = workflowInfo();
    return bounded && (historyLength >= runEvents || historySize >= ROUTER_RUN_BYTES);
  };
  const { inbox } = desk;
  let handled = 0;
  while (handled < ITEMS_PER_RUN && !workflowInfo().continueAsNewSuggested && !runIsLong()) {
    if (resending) {
      // A resolved incident has left the desk's incidents: once none is left to keep firing, the re-sends stop.
      if (desk.resendMs === undefined || desk.toResend().length === 0) nextResendAt = undefined;
      else nextResendAt = Math.min(nextResendAt ?? Infinity, Date.now() + desk.resendMs);
    }
    const deadlines = [...desk.deadlines(), ...(nextResendAt !== undefined ? [nextResendAt] : [])];
    const next = deadlines.length ? Math.min(...deadlines) : null;
    if (inbox.length === 0 && !desk.wake) {
      if (next === null) await condition(() => inbox.length > 0 || desk.wake);
      else if (next > Date.now()) await condition(() => inbox.length > 0 || desk.wake, next - Date.now());
    }
    desk.wake = false;
    while (inbox.length > 0) {
      const item = inbox.shift()!;
      handled++;
      // Inputs were checked when they arrived; should handling one still throw, it is logged and dropped rather than
      // failing the task on every replay (which would stop all alerting of the namespace).
      try {
        if ('alert' in item) await desk.raise(item.alert);
        else for (const obs of item.observations) await desk.observe(obs);
      } catch (err) {
        if (isCancellation(err)) throw err;
        log.error('alert router dropped an item it could not handle', {
          item: 'alert' in item ? item.alert.dedupKey : item.observations.map((o) => o.key),
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    const now = Date.now();
    for (const alerts of desk.dueGroups(now)) deliver(alerts);
    for (const [incident, pending] of desk.dueActions(now)) void act(incident, pending);
    const resendMs = desk.resendMs;
    if (nextResendAt !== undefined && resendMs !== undefined && nextResendAt <= now) {
      nextResendAt = now + resendMs;
      const open = desk.toResend();
      // One re-send at a time: one still retrying is overtaken by the next interval's, not doubled.
      if (open.length > 0 && !resendInFlight) {
        resendInFlight = true;
        deliver(
          open.map((i) => ({ ...i.alert, open: true })),
          true,
        );
      }
    }
  }
  // Everything in flight finishes in this run; what is still waiting in a group or for its delay is carried.
  await condition(() => desk.deliveries.pending === 0 && actionsRunning === 0 && allHandlersFinished());
  for (const group of desk.groups.values()) deliver(group.alerts);
  await condition(() => desk.deliveries.pending === 0);
  await continueAsNew<typeof alertRouterWorkflow>({
    groupWaitMs,
    ...(input.runEvents !== undefined ? { runEvents: input.runEvents } : {}),
    carried: desk.carried(),
  });
}
