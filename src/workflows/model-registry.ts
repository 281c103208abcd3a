import {
  allHandlersFinished,
  condition,
  continueAsNew,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { ErrorType } from '../shared/errors';
import {
  acquireTrafficUpdate,
  recordPromotionUpdate,
  registryStateQuery,
  releaseTrafficUpdate,
} from '../shared/messages';
import { ModelName } from '../shared/names';
import {
  AcquireTrafficInput,
  PromotionRecord,
  ReleaseTrafficInput,
  type AcquireTrafficResult,
  type RegistryState,
} from '../shared/registry';
import { guardedUpdate, guardedValidator, parseInput, refuse } from './handlers';
import { setLogContext } from './log-context';
import { backoff } from './activity-options';

export interface ModelRegistryInput {
  model: string;
  state?: RegistryState;
}

const HISTORY_LIMIT = 500;

/** Marks registries that check each record with the workflow it names before writing it (forged records refused). */
const VERIFIED_RECORDS = 'verified-records';

const control = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: backoff('1 second', '20 seconds', 10),
});

/**
 * One entity workflow per model: which version serves production, which served before it, and the history of
 * promotions and rollbacks (who, when, from which lifecycle or rollback, why).
 */
export async function modelRegistryWorkflow(input: ModelRegistryInput): Promise<void> {
  const state: RegistryState = input.state ?? {
    model: parseInput(ModelName, input?.model, 'registry model'),
    production: null,
    previous: null,
    history: [],
  };
  setLogContext({ model: state.model });

  /** A record of this model, checked with the schema every writer uses; a typed refusal otherwise. */
  const checkRecord = (raw: unknown): PromotionRecord => {
    const record = parseInput(PromotionRecord, raw, 'promotion record');
    if (record.model !== state.model) throw refuse(`registry of "${state.model}" cannot record "${record.model}"`);
    return record;
  };
  /** The earlier record of the same lifecycle run and kind: a retried record is answered with it. */
  const recorded = (record: PromotionRecord) => {
    // Idempotent by lifecycle, run and kind: a lifecycle may promote its version and then, from its post-promotion
    // guard, put the previous one back.
    const kind = (r: PromotionRecord) => r.kind ?? 'promotion';
    return state.history.find(
      (h) => h.lifecycleId === record.lifecycleId && h.runId === record.runId && kind(h) === kind(record),
    );
  };
  const write = (record: PromotionRecord) => {
    if (state.production) state.previous = state.production;
    state.production = record;
    state.history.push(record);
    if (state.history.length > HISTORY_LIMIT) state.history.splice(0, state.history.length - HISTORY_LIMIT);
    return record;
  };
  /** A rollback puts back a version that was production before, from the same artifact. */
  const wasProduction = (record: PromotionRecord) =>
    state.history.some(
      (h) =>
        h.version === record.version &&
        h.artifactDir === record.artifactDir &&
        (h.artifactDigest ?? null) === (record.artifactDigest ?? null),
    );
  setHandler(
    recordPromotionUpdate,
    guardedUpdate('recordPromotion', async (raw: PromotionRecord) => {
      const record = checkRecord(raw);
      const done = recorded(record);
      if (done) return done;
      if (patched(VERIFIED_RECORDS)) {
        if (record.kind === 'rollback' && !wasProduction(record))
          throw refuse(
            `${record.model} ${record.version} from ${record.artifactDir} was never production: a rollback restores an earlier production version`,
            ErrorType.Unauthorized,
          );
        const verdict = await control.verifyRegistryRecord({ record });
        if (!verdict.ok) throw refuse(verdict.reason, ErrorType.Unauthorized);
        const meanwhile = recorded(record);
        if (meanwhile) return meanwhile;
      }
      return write(record);
    }),
    { validator: guardedValidator('recordPromotion', (raw) => void checkRecord(raw)) },
  );
  setHandler(registryStateQuery, () => state);

  // The traffic lease: one writer of the model's weights at a time. Granting is idempotent for the holder's run; a
  // holder whose workflow ended without releasing is replaced by a caller that names it (checked outside).
  setHandler(
    acquireTrafficUpdate,
    guardedUpdate('acquireTraffic', (raw: AcquireTrafficInput): AcquireTrafficResult => {
      const { holder, replacing } = parseInput(AcquireTrafficInput, raw, 'traffic lease request');
      const held = state.traffic ?? null;
      const same = (a: { workflowId: string; runId: string } | null | undefined) =>
        !!a && !!held && a.workflowId === held.workflowId && a.runId === held.runId;
      if (held && !same(holder) && !same(replacing)) return { granted: false, heldBy: held };
      if (held && same(holder)) return { granted: true, lease: held };
      state.traffic = { ...holder, since: new Date().toISOString() };
      return { granted: true, lease: state.traffic };
    }),
    { validator: guardedValidator('acquireTraffic', (raw) => void parseInput(AcquireTrafficInput, raw, 'request')) },
  );
  setHandler(
    releaseTrafficUpdate,
    guardedUpdate('releaseTraffic', (raw: ReleaseTrafficInput) => {
      const { workflowId, runId } = parseInput(ReleaseTrafficInput, raw, 'traffic lease release');
      const held = state.traffic;
      if (!held || held.workflowId !== workflowId || held.runId !== runId) return { released: false };
      state.traffic = null;
      return { released: true };
    }),
    { validator: guardedValidator('releaseTraffic', (raw) => void parseInput(ReleaseTrafficInput, raw, 'release')) },
  );

  await condition(() => workflowInfo().continueAsNewSuggested);
  await condition(allHandlersFinished);
  await continueAsNew<typeof modelRegistryWorkflow>({ model: state.model, state });
}
