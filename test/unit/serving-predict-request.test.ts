import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { validPredictRequest } from '../../src/serving/predict-request';
import { newRequestId } from '../../src/serving/request-id';
import {
  MAX_BATCH_ROWS,
  MAX_FEATURE_VALUE_LENGTH,
  MAX_REQUEST_FEATURES,
  PredictRequest,
} from '../../src/shared/gateway-api';

const ROW = { tenure_months: 12, monthly_charges: 70.5, contract: 'month-to-month', region: null };

/** The fields of a parsed request that the gateway reads. */
function fieldsOf(request: PredictRequest) {
  const { userId, requestId, features, rows, requestIds } = request;
  return { userId, requestId, features, rows, requestIds };
}

/** Whether the hand check and zod agree on `body`: the hand check accepts only what zod accepts, as zod reads it. */
function agrees(body: unknown): boolean {
  const fast = validPredictRequest(body);
  const parsed = PredictRequest.safeParse(body);
  if (fast === undefined) return true;
  return parsed.success && JSON.stringify(fieldsOf(fast)) === JSON.stringify(fieldsOf(parsed.data));
}

/** Mostly what clients send, with every kind of mistake mixed in: the property needs both sides of each check. */
const featureName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('age', 'plan', 'Age [y]', 'price?', 'constructor', 'x'.repeat(128)) },
  fc.constantFrom('', ' lead', 'trail ', 'a\u0001b', 'x'.repeat(129), 'new\nline'),
  fc.string({ maxLength: 6 }),
);
const featureValue = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constant(null)),
  },
  { weight: 2, arbitrary: fc.string({ maxLength: 8 }) },
  fc.double(),
  fc.constantFrom('x'.repeat(MAX_FEATURE_VALUE_LENGTH), 'x'.repeat(MAX_FEATURE_VALUE_LENGTH + 1), true, [], {}),
);
const features = fc.oneof(
  { weight: 8, arbitrary: fc.dictionary(featureName, featureValue, { maxKeys: 4 }) },
  fc.constantFrom(null, [], 'age', 3, [ROW]),
);
const text = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('u-1', 'a/0', 'é') },
  fc.constantFrom('', null, 3),
  fc.string({ maxLength: 3 }),
);
const single = fc.record(
  { userId: text, requestId: text, features, requestIds: fc.array(text, { maxLength: 2 }), extra: fc.anything() },
  { requiredKeys: ['userId', 'features'] },
);
const batch = fc.record(
  {
    userId: text,
    requestId: text,
    rows: fc.oneof({ weight: 6, arbitrary: fc.array(features, { maxLength: 3 }) }, features),
    requestIds: fc.oneof({ weight: 4, arbitrary: fc.array(text, { maxLength: 3 }) }, text),
    features,
  },
  { requiredKeys: ['userId', 'rows'] },
);
const body = fc.oneof({ weight: 4, arbitrary: single }, { weight: 4, arbitrary: batch }, fc.anything());

describe('the hand check of prediction bodies', () => {
  it('accepts only bodies that the PredictRequest schema accepts, read the same way', () => {
    fc.assert(
      fc.property(body, (b) => agrees(b) && agrees(JSON.parse(JSON.stringify(b ?? null)) as unknown)),
      {
        numRuns: 5000,
      },
    );
  });

  it('accepts the bodies clients send, so that zod parses none of them', () => {
    const valid = [
      { userId: 'u-1', features: ROW },
      { userId: 'u-1', requestId: 'r-1', features: ROW, unknown: 1 },
      { userId: 'u-1', rows: [ROW, ROW] },
      { userId: 'u-1', rows: [ROW, ROW], requestIds: ['a', 'b'] },
      {
        userId: 'u-1',
        features: Object.fromEntries(Array.from({ length: MAX_REQUEST_FEATURES }, (_, i) => [`f${i}`, i])),
      },
      { userId: 'u-1', rows: Array.from({ length: MAX_BATCH_ROWS }, () => ROW) },
      { userId: 'u-1', features: { plan: 'x'.repeat(MAX_FEATURE_VALUE_LENGTH) } },
    ];
    for (const b of valid) {
      expect(PredictRequest.safeParse(b).success).toBe(true);
      expect(validPredictRequest(b)).toBe(b);
    }
  });

  it('leaves every invalid body to zod, at each bound', () => {
    const invalid = [
      null,
      [],
      'text',
      { features: ROW },
      { userId: '', features: ROW },
      { userId: 'u-1' },
      { userId: 'u-1', requestId: '', features: ROW },
      { userId: 'u-1', features: ROW, rows: [ROW] },
      { userId: 'u-1', features: ROW, requestIds: ['a'] },
      { userId: 'u-1', rows: [] },
      { userId: 'u-1', rows: [ROW], requestIds: ['a', 'b'] },
      { userId: 'u-1', rows: [ROW], requestIds: [''] },
      { userId: 'u-1', features: { ...ROW, age: Number.NaN } },
      { userId: 'u-1', features: { ...ROW, age: true } },
      { userId: 'u-1', features: { ' age': 1 } },
      { userId: 'u-1', features: { plan: 'x'.repeat(MAX_FEATURE_VALUE_LENGTH + 1) } },
      {
        userId: 'u-1',
        features: Object.fromEntries(Array.from({ length: MAX_REQUEST_FEATURES + 1 }, (_, i) => [`f${i}`, i])),
      },
      { userId: 'u-1', rows: Array.from({ length: MAX_BATCH_ROWS + 1 }, () => ROW) },
      JSON.parse('{"userId":"u-1","features":{"__proto__":1}}') as unknown,
    ];
    for (const b of invalid) {
      expect(validPredictRequest(b)).toBeUndefined();
      expect(PredictRequest.safeParse(b).success).toBe(false);
    }
  });
});

describe('generated request ids', () => {
  it('are distinct version 4 UUIDs in lower case', () => {
    const ids = Array.from({ length: 20_000 }, newRequestId);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
