import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { z } from 'zod';
import { canonicalJson } from '../shared/signed-operation';
import type { LifecycleStatus } from '../shared/status';
import { LifecycleClient } from './lifecycle-client';

/**
 * What `mlctl report` shows of a lifecycle: its status (decisions, measurements, approvals, events, outcome) and, from
 * its workflow history, every traffic change it applied with the time the target took it. The status records the
 * candidate's share as the lifecycle meant it, but not when it changed; the history holds every `setTrafficWeights`
 * activity the lifecycle ran, with its input (the weight table) and the time it completed.
 */

/** One traffic change: from `at` on, the target routed `percent` of the model's traffic to the candidate. */
export interface TrafficPoint {
  at: string;
  percent: number;
  /** The whole weight table applied, e.g. `v3 10%, v2 90%`. */
  weights: string;
}

export interface LifecycleRecord {
  status: LifecycleStatus;
  traffic: TrafficPoint[];
  /** When the workflow closed; null while it runs. */
  closedAt: string | null;
  /** The workflow's execution status (RUNNING, COMPLETED, FAILED, …). */
  execution: string;
}

const SET_WEIGHTS = 'setTrafficWeights';

/** The part of a `setTrafficWeights` input a traffic change is read from (src/activities/gateway.ts). */
const WeightsInput = z.object({
  model: z.string(),
  target: z.unknown().optional(),
  weights: z.record(z.string(), z.number()),
});

/** The production target of the lifecycle, from its start input (`{ spec }`): absent on the gateway. */
const StartInput = z.object({ spec: z.object({ deployment: z.object({ target: z.unknown().optional() }) }) });

type History = temporal.api.history.v1.IHistory;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** An event's time in epoch ms (its seconds are a Long from the server, a number in a history read from JSON). */
function eventMs(event: HistoryEvent): number {
  const t = event.eventTime;
  return Number(t?.seconds?.toString() ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);
}

const firstArg = (payloads: { payloads?: temporal.api.common.v1.IPayload[] | null } | null | undefined): unknown => {
  const payload = payloads?.payloads?.[0];
  return payload ? defaultPayloadConverter.fromPayload(payload) : undefined;
};

/**
 * The candidate's traffic changes in a lifecycle's history, oldest first: each completed `setTrafficWeights` activity
 * on `model` at the production target (not staging, a route or target of its own), at the time it completed. A failed
 * attempt that never completed changed nothing the lifecycle relied on, and is left out.
 */
export function trafficFromHistory(history: History, model: string, version: string): TrafficPoint[] {
  const scheduled = new Map<string, z.infer<typeof WeightsInput>>();
  const out: TrafficPoint[] = [];
  let production = canonicalJson(null);
  for (const event of history.events ?? []) {
    const started = event.workflowExecutionStartedEventAttributes;
    if (started) {
      const input = StartInput.safeParse(firstArg(started.input));
      if (input.success) production = canonicalJson(input.data.spec.deployment.target ?? null);
      continue;
    }
    const s = event.activityTaskScheduledEventAttributes;
    if (s && s.activityType?.name === SET_WEIGHTS) {
      const input = WeightsInput.safeParse(firstArg(s.input));
      if (input.success && input.data.model === model && canonicalJson(input.data.target ?? null) === production) {
        scheduled.set(String(event.eventId), input.data);
      }
      continue;
    }
    const c = event.activityTaskCompletedEventAttributes;
    if (!c) continue;
    const input = scheduled.get(String(c.scheduledEventId));
    if (!input) continue;
    const weights = new Map(Object.entries(input.weights));
    out.push({
      at: new Date(eventMs(event)).toISOString(),
      percent: weights.get(version) ?? 0,
      weights:
        weights.size === 0
          ? 'no version'
          : [...weights]
              .sort((a, b) => b[1] - a[1])
              .map(([v, p]) => `${v} ${p}%`)
              .join(', '),
    });
  }
  return out;
}

/** A lifecycle's status and traffic record; NotFoundError when there is no such lifecycle. */
export async function readLifecycleRecord(client: Client, id: string): Promise<LifecycleRecord> {
  const status = await new LifecycleClient(client).status(id);
  const handle = client.workflow.getHandle(id);
  const [description, history] = await Promise.all([handle.describe(), handle.fetchHistory()]);
  return {
    status,
    traffic: trafficFromHistory(history, status.model, status.version),
    closedAt: description.closeTime?.toISOString() ?? null,
    execution: description.status.name,
  };
}
