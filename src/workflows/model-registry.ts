import { allHandlersFinished, condition, continueAsNew, setHandler, workflowInfo } from '@temporalio/workflow';
import { recordPromotionUpdate, registryStateQuery } from '../shared/messages';
import { ModelName } from '../shared/names';
import { PromotionRecord, type RegistryState } from '../shared/registry';
import { guardedUpdate, guardedValidator, parseInput, refuse } from './handlers';
import { setLogContext } from './log-context';

export interface ModelRegistryInput {
  model: string;
  state?: RegistryState;
}

const HISTORY_LIMIT = 500;

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
  setHandler(
    recordPromotionUpdate,
    guardedUpdate('recordPromotion', (raw: PromotionRecord) => {
      const record = checkRecord(raw);
      // Idempotent by lifecycle and kind: a lifecycle may promote its version and then, from its post-promotion
      // guard, put the previous one back.
      const kind = (r: PromotionRecord) => r.kind ?? 'promotion';
      const done = state.history.find((h) => h.lifecycleId === record.lifecycleId && kind(h) === kind(record));
      if (done) return done;
      if (state.production) state.previous = state.production;
      state.production = record;
      state.history.push(record);
      if (state.history.length > HISTORY_LIMIT) state.history.splice(0, state.history.length - HISTORY_LIMIT);
      return record;
    }),
    { validator: guardedValidator('recordPromotion', (raw) => void checkRecord(raw)) },
  );
  setHandler(registryStateQuery, () => state);

  await condition(() => workflowInfo().continueAsNewSuggested);
  await condition(allHandlersFinished);
  await continueAsNew<typeof modelRegistryWorkflow>({ model: state.model, state });
}
