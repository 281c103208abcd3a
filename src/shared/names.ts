import { z } from 'zod';

/**
 * Names callers choose, checked at every edge (CLI, client, HTTP, update validators, workflow inputs). Each is a
 * pattern of a bounded length, and none may be `__proto__`: a name also becomes a key (of a Map inside the code, of
 * an object in JSON), and JSON tools treat that one specially. Names such as `constructor` or `toString` are
 * ordinary names: every map keyed by them is a `Map` or a null-prototype object.
 *
 * | name       | pattern                                                  | e.g.                          |
 * | ---------- | -------------------------------------------------------- | ----------------------------- |
 * | model      | `[a-z0-9][a-z0-9-]{0,62}`                                | `churn`, `fraud-v2`           |
 * | version    | `[A-Za-z0-9][A-Za-z0-9._-]{0,62}`                        | `v7`, `2026.12.03-1`          |
 * | identity   | `[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}`                    | `alice`, `ci@pipelines`       |
 * | pool       | `[a-z0-9][a-z0-9-]{0,62}`                                | `default`, `gpu-a100`         |
 * | resource   | `[a-z][a-zA-Z0-9]{0,31}(:[a-z0-9-]{1,31})?`              | `cpu`, `memoryGiB`, `gpu:t4`  |
 * | holder     | `[A-Za-z0-9][A-Za-z0-9._@:/+() -]{0,255}`                | `churn/v7 (staging)`          |
 * | lease id   | `[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,255}`                   | `serve:churn:v7`              |
 * | feature    | 1–128 characters, no control characters, no space at either end | `monthly_charges`, `Age [y]` |
 */

/** A name of `what` matching `re`, never `__proto__` (a JSON key that tools drop or turn into a prototype). */
function named(re: RegExp, what: string, expected: string) {
  return z
    .string({ error: `a ${what}: ${expected}` })
    .refine((s) => s !== '__proto__', { message: `"__proto__" is not a valid ${what}`, abort: true })
    .regex(re, `a ${what}: ${expected}`);
}

export const MODEL_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const ModelName = named(
  MODEL_NAME_RE,
  'model name',
  'lowercase letters, digits and dashes, starting with a letter or digit (at most 63)',
);

export const VERSION_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const VersionName = named(
  VERSION_NAME_RE,
  'version',
  'letters, digits, dot, dash and underscore, starting with a letter or digit (at most 63)',
);

/** An approver, submitter or operator identity: `alice`, `ci@pipelines`, `svc:nightly`. */
export const IDENTITY_RE = /^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$/;
export const Identity = z
  .string({ error: 'an identity: letters, digits and . _ @ : + - (at most 128)' })
  .regex(IDENTITY_RE, 'an identity: letters, digits and . _ @ : + - (at most 128)');

export const POOL_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const PoolName = named(POOL_NAME_RE, 'pool name', 'lowercase letters, digits and dashes (at most 63)');

/** A resource name: `cpu`, `memoryGiB`, `gpu:t4`, `tpu:v5e`. */
export const RESOURCE_NAME_RE = /^[a-z][a-zA-Z0-9]{0,31}(:[a-z0-9-]{1,31})?$/;
export const ResourceName = named(
  RESOURCE_NAME_RE,
  'resource name',
  'a resource name such as cpu, memoryGiB, gpu:t4 or tpu:v5e',
);

/** The pipeline holding a quota lease (a lifecycle id, a rollback, a serving deployment); caps apply per holder. */
export const HOLDER_RE = /^[A-Za-z0-9][A-Za-z0-9._@:/+() -]{0,255}$/;
export const HolderName = named(
  HOLDER_RE,
  'holder',
  'letters, digits, spaces and . _ @ : / + ( ) -, starting with a letter or digit (at most 256)',
);

/** A quota lease's id: the idempotency key of its reservation (`serve:churn:v7`, `lifecycle-churn-v7:train`). */
export const LEASE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,255}$/;
export const LeaseId = named(
  LEASE_ID_RE,
  'lease id',
  'letters, digits and . _ @ : / + -, starting with a letter or digit (at most 256)',
);

/**
 * A feature (column) name of a dataset, a profile or a model manifest. Datasets name their columns freely
 * (`Age [y]`, `price?`), so the pattern only bounds the length and refuses what cannot be told apart on a screen.
 */
export const FEATURE_NAME_RE = /^(?!\s)[^\p{Cc}]{1,128}(?<!\s)$/u;
const FEATURE_NAME_EXPECTED = '1 to 128 characters, no control characters, no space at either end';
export const FeatureName = named(FEATURE_NAME_RE, 'feature name', FEATURE_NAME_EXPECTED);

/** Why `name` is not a valid feature name, or null when it is (for readers that report a column by position). */
export function featureNameProblem(name: string): string | null {
  if (name === '__proto__') return '"__proto__" is not a valid feature name';
  if (!FEATURE_NAME_RE.test(name))
    return `"${name.length > 40 ? `${name.slice(0, 40)}…` : name}" is not a valid feature name: ${FEATURE_NAME_EXPECTED}`;
  return null;
}

/**
 * `z.record(key, value)` that refuses an own `__proto__` key with an issue at that key (zod skips such a key without a
 * word: it would replace the prototype of the object it builds), and with `max`, more than `max` entries, counted
 * before any entry is checked so a huge object is refused at once. A name that can never be valid is refused here
 * instead of vanishing from what the caller sent.
 */
export function nameRecord<K extends z.core.$ZodRecordKey, V extends z.ZodType>(
  key: K,
  value: V,
  bound?: { max: number; what: string },
) {
  const record = z.record(key, value);
  const guarded = z.preprocess((input, ctx) => {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) return input;
    const count = bound ? Object.keys(input).length : 0;
    if (bound && count > bound.max)
      ctx.issues.push({ code: 'custom', message: `at most ${bound.max} ${bound.what}, got ${count}`, input });
    else if (Object.hasOwn(input, '__proto__')) {
      const refused = z.safeParse(key, '__proto__');
      const message = refused.success ? '"__proto__" is not a valid name' : refused.error.issues[0]!.message;
      ctx.issues.push({ code: 'custom', message, input, path: ['__proto__'] });
    }
    return input;
  }, record);
  // The same record at compile time: the guard changes what is refused, not what is accepted or produced.
  return guarded as unknown as typeof record;
}
