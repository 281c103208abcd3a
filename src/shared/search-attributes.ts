import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Search attributes that make lifecycles findable in the Temporal UI (`MlModel = "churn" AND MlStage = "canary"`). */
export const MlModel = defineSearchAttributeKey('MlModel', SearchAttributeType.KEYWORD);
export const MlVersion = defineSearchAttributeKey('MlVersion', SearchAttributeType.KEYWORD);
export const MlStage = defineSearchAttributeKey('MlStage', SearchAttributeType.KEYWORD);

/** Name → type, for registering them on a server (`temporal server start-dev --search-attribute Name=Keyword`). */
export const SEARCH_ATTRIBUTES = { MlModel: 'Keyword', MlVersion: 'Keyword', MlStage: 'Keyword' } as const;
