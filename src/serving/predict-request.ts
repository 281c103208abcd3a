import {
  MAX_BATCH_ROWS,
  MAX_FEATURE_VALUE_LENGTH,
  MAX_REQUEST_FEATURES,
  type PredictRequest,
} from '../shared/gateway-api';
import { featureNameProblem } from '../shared/names';

/**
 * The prediction body when it is a valid {@link PredictRequest}, checked by hand in one pass; undefined when it is not,
 * or when this check is not sure. The gateway then parses it with zod, which words the refusal (its path, what was
 * expected) or accepts it. Only ever accepting what zod accepts, this spares every valid prediction zod's parse: its
 * context and result objects, a [key, value] array per feature and the pattern of every feature name, ≈ 3 µs of a
 * prediction's ≈ 100 µs of CPU (`bench/README.md`, router). A property test holds the two together
 * (test/unit/serving-predict-request.test.ts). What comes back is the body itself: its unknown keys, which zod would
 * strip, are never read.
 */
export function validPredictRequest(body: unknown): PredictRequest | undefined {
  if (!isRecord(body)) return undefined;
  const { userId, requestId, features, rows, requestIds } = body;
  if (typeof userId !== 'string' || userId.length === 0) return undefined;
  if (requestId !== undefined && (typeof requestId !== 'string' || requestId.length === 0)) return undefined;
  if (rows === undefined) {
    // One row: features and no request ids (those name a batch's rows).
    if (!validFeatures(features) || requestIds !== undefined) return undefined;
  } else {
    if (features !== undefined || !Array.isArray(rows) || rows.length === 0 || rows.length > MAX_BATCH_ROWS) {
      return undefined;
    }
    for (const row of rows) if (!validFeatures(row)) return undefined;
    if (requestIds !== undefined) {
      if (!Array.isArray(requestIds) || requestIds.length !== rows.length) return undefined;
      for (const id of requestIds) if (typeof id !== 'string' || id.length === 0) return undefined;
    }
  }
  return body as PredictRequest;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Feature names that passed `featureNameProblem`, so that its pattern runs once per name rather than once per name per
 * request. Callers choose the names: at most {@link MAX_KNOWN_NAMES} are kept, and any other is checked each time.
 */
const knownNames = new Set<string>();
const MAX_KNOWN_NAMES = 4096;

/** Whether `features` is what `RequestFeatures` accepts: an object of at most MAX_REQUEST_FEATURES valid entries. */
function validFeatures(features: unknown): boolean {
  if (!isRecord(features)) return false;
  // Own enumerable properties, as zod's Object.entries reads them; the count before any of them is looked at.
  const names = Object.keys(features);
  if (names.length > MAX_REQUEST_FEATURES) return false;
  const values = Object.values(features);
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const value = values[i];
    if (
      value !== null &&
      !(typeof value === 'number' && Number.isFinite(value)) &&
      !(typeof value === 'string' && value.length <= MAX_FEATURE_VALUE_LENGTH)
    ) {
      return false;
    }
    if (!knownNames.has(name)) {
      if (featureNameProblem(name) !== null) return false;
      if (knownNames.size < MAX_KNOWN_NAMES) knownNames.add(name);
    }
  }
  return true;
}
