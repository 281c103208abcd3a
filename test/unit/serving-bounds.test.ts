import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DataSketcher, sketchRestarted, sketchWindow, trackedName } from '../../src/drift/sketch';
import {
  DataSketch,
  MAX_TRACKED_NAME_LENGTH,
  MAX_UNKNOWN_KEYS_TRACKED,
  MAX_UNSEEN_TRACKED,
  MAX_UNSEEN_TRACKED_TOTAL,
  maxSketchJsonBytes,
  type SketchPlan,
} from '../../src/shared/drift';
import { buildRoutingTable, route } from '../../src/serving/router';
import { RoutingStore, type JournalEntry } from '../../src/serving/routing-store';
import { TelemetryRegistry } from '../../src/serving/telemetry';
import {
  MAX_FEATURE_VALUE_LENGTH,
  MAX_OP_ID_LENGTH,
  MAX_REQUEST_FEATURES,
  MAX_WEIGHTS,
  OpId,
  PredictRequest,
  SetWeightsRequest,
} from '../../src/shared/gateway-api';
import { MAX_EPOCH_LENGTH, ModelTelemetry, VersionTelemetry, maxModelTelemetryBytes } from '../../src/shared/telemetry';

/** Names that plain objects answer through their prototype. */
const PROTOTYPE_NAMES = ['constructor', '__proto__', 'hasOwnProperty', 'toString', 'valueOf'];

const PLAN: SketchPlan = {
  features: [
    { name: 'age', type: 'numeric', edges: [20, 40, 60], min: 18, max: 90 },
    { name: 'plan', type: 'categorical', domain: ['basic', 'pro'], hasOther: false },
    { name: 'region', type: 'categorical', domain: ['north', 'south'], hasOther: false },
    { name: 'segment', type: 'categorical', domain: ['a', 'b'], hasOther: false },
  ],
};

const row = (extra: Record<string, unknown> = {}) => ({
  age: 30,
  plan: 'basic',
  region: 'north',
  segment: 'a',
  ...extra,
});

type Categorical = Extract<DataSketch['features'][string], { type: 'categorical' }>;
const categorical = (sketch: DataSketch, name: string) => sketch.features[name] as Categorical;
const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

/** The snapshot as the worker reads it: through JSON and the shared schema. */
function overJson(sketch: DataSketch): { text: string; parsed: DataSketch } {
  const text = JSON.stringify(sketch);
  return { text, parsed: DataSketch.parse(JSON.parse(text)) };
}

describe('serving sketch bounds', () => {
  it('counts prototype names like any other category or key, never NaN or null', () => {
    const sketcher = new DataSketcher(PLAN);
    for (const name of PROTOTYPE_NAMES) {
      sketcher.record(row({ plan: name }));
      sketcher.record(row({ plan: name }));
    }
    // JSON.parse makes `__proto__` an own key, as the gateway receives it.
    sketcher.record(JSON.parse('{"age":30,"plan":"pro","constructor":1,"valueOf":2,"toString":3,"__proto__":4}'));
    const { text, parsed } = overJson(sketcher.snapshot());
    expect(text).not.toContain('null');
    const plan = categorical(parsed, 'plan');
    expect(plan.unseen).toEqual({ constructor: 2, hasOwnProperty: 2, toString: 2, valueOf: 2 });
    // `__proto__` never becomes a JSON key (readers drop it): it is counted with the untracked names.
    expect(plan.unseenOther).toBe(2);
    expect(plan.counts).toEqual([0, 1, 0]);
    expect(parsed.unknownKeys).toEqual({ constructor: 1, valueOf: 1, toString: 1 });
    expect(parsed.unknownKeysOther).toBe(1);
    expect(parsed.rows).toBe(11);
  });

  it("reads a feature the request lacks as missing, never an inherited member of the request's object", () => {
    const sketcher = new DataSketcher({
      features: [
        { name: 'toString', type: 'categorical', domain: ['a'], hasOther: true },
        { name: 'constructor', type: 'numeric', edges: [1], min: 0, max: 2 },
      ],
    });
    sketcher.record({});
    const { features } = sketcher.snapshot();
    expect(features.toString).toMatchObject({ rows: 1, missing: 1, wrongType: 0 });
    expect(features.constructor).toMatchObject({ rows: 1, missing: 1, wrongType: 0 });
  });

  it('tracks 50 unknown keys, 50 unseen categories per feature and 100 in all by name; the rest together', () => {
    const sketcher = new DataSketcher(PLAN);
    // Names are tracked first come: all of plan's, then region's, then segment's.
    for (let i = 0; i < 200; i++) sketcher.record(row({ [`key_${i}`]: 1, plan: `p${i}` }));
    for (let i = 0; i < 200; i++) sketcher.record(row({ region: `r${i}` }));
    for (let i = 0; i < 200; i++) sketcher.record(row({ segment: `s${i}` }));
    // A name tracked early stays tracked: its later occurrences count under it.
    sketcher.record(row({ key_0: 1, plan: 'p0', segment: 's0' }));
    const s = sketcher.snapshot();
    expect(Object.keys(s.unknownKeys)).toHaveLength(MAX_UNKNOWN_KEYS_TRACKED);
    expect(s.unknownKeys.key_0).toBe(2);
    expect(sum(s.unknownKeys) + (s.unknownKeysOther ?? 0)).toBe(201);
    const [plan, region, segment] = ['plan', 'region', 'segment'].map((name) => categorical(s, name));
    expect(Object.keys(plan!.unseen)).toHaveLength(MAX_UNSEEN_TRACKED);
    expect(Object.keys(region!.unseen)).toHaveLength(MAX_UNSEEN_TRACKED_TOTAL - MAX_UNSEEN_TRACKED);
    expect(segment!.unseen).toEqual({});
    expect(plan!.unseen.p0).toBe(2);
    expect(sum(plan!.unseen) + plan!.unseenOther).toBe(201);
    expect(sum(region!.unseen) + region!.unseenOther).toBe(200);
    expect(segment!.unseenOther).toBe(201);
  });

  it('cuts long names to 64 characters and an ellipsis, without splitting a surrogate pair', () => {
    expect(trackedName('short')).toBe('short');
    expect(trackedName('x'.repeat(MAX_TRACKED_NAME_LENGTH))).toBe('x'.repeat(MAX_TRACKED_NAME_LENGTH));
    expect(trackedName('x'.repeat(1_000_000))).toBe(`${'x'.repeat(MAX_TRACKED_NAME_LENGTH)}…`);
    expect(trackedName(`${'a'.repeat(MAX_TRACKED_NAME_LENGTH - 1)}😀tail`)).toBe(
      `${'a'.repeat(MAX_TRACKED_NAME_LENGTH - 1)}…`,
    );
    expect(trackedName('__proto__')).toBeUndefined();

    const sketcher = new DataSketcher(PLAN);
    // Long values that share their first 64 characters are one name; a 1 MB value is never kept whole.
    sketcher.record(row({ plan: `${'v'.repeat(64)}${'1'.repeat(1_000_000)}` }));
    sketcher.record(row({ plan: `${'v'.repeat(64)}2` }));
    sketcher.record(row({ [`k${'y'.repeat(500)}`]: 1 }));
    const s = sketcher.snapshot();
    expect(categorical(s, 'plan').unseen).toEqual({ [`${'v'.repeat(64)}…`]: 2 });
    expect(s.unknownKeys).toEqual({ [`k${'y'.repeat(63)}…`]: 1 });
    expect(JSON.stringify(s).length).toBeLessThan(2_000);
  });

  it('keeps a window the difference of two snapshots, name by name, with names beyond the bounds', () => {
    const sketcher = new DataSketcher(PLAN);
    for (let i = 0; i < 30; i++) sketcher.record(row({ [`key_${i}`]: 1, plan: `p${i}` }));
    const before = sketcher.snapshot();
    let unseen = 0;
    let unknown = 0;
    for (let i = 0; i < 300; i++) {
      // Old names again, new names, long names cut to a shared one.
      sketcher.record(row({ [`key_${i % 120}`]: 1, plan: i % 3 === 0 ? `${'z'.repeat(70)}${i}` : `p${i % 90}` }));
      unseen++;
      unknown++;
    }
    const after = sketcher.snapshot();
    const window = sketchWindow(after, before);
    expect(window.rows).toBe(300);
    const plan = categorical(window, 'plan');
    expect(sum(plan.unseen) + plan.unseenOther).toBe(unseen);
    expect(sum(window.unknownKeys) + (window.unknownKeysOther ?? 0)).toBe(unknown);
    // Every tracked name's window count is its growth between the snapshots.
    for (const [name, count] of Object.entries(plan.unseen)) {
      expect(count).toBe(categorical(after, 'plan').unseen[name]! - (categorical(before, 'plan').unseen[name] ?? 0));
    }
    expect(plan.unseen[`${'z'.repeat(64)}…`]).toBe(100);
  });

  it('takes the later sketch whole when any of its counts went down or its features changed (a restart)', () => {
    const sketcher = new DataSketcher(PLAN);
    for (let i = 0; i < 10; i++) sketcher.record(row({ plan: 'gold', extra: 1 }));
    const before = sketcher.snapshot();
    sketcher.record(row());
    const after = sketcher.snapshot();
    expect(sketchRestarted(after, before)).toBe(false);
    expect(sketchWindow(after, before).rows).toBe(1);
    // A restarted gateway that already saw more requests than before, but fewer of the unseen category.
    const restarted = new DataSketcher(PLAN);
    for (let i = 0; i < 20; i++) restarted.record(row({ plan: i < 3 ? 'gold' : 'basic' }));
    const again = restarted.snapshot();
    expect(again.rows).toBeGreaterThan(before.rows);
    expect(sketchRestarted(again, before)).toBe(true);
    expect(sketchWindow(again, before)).toBe(again);
    // Another plan (a redeploy from another artifact): another sketch.
    const other = new DataSketcher({ features: PLAN.features.slice(1) });
    for (let i = 0; i < 20; i++) other.record(row({ plan: 'gold', extra: 1 }));
    expect(sketchWindow(other.snapshot(), before).rows).toBe(20);
  });

  it('keeps the sum of a numeric feature finite when values near the float limit add up', () => {
    const sketcher = new DataSketcher(PLAN);
    for (let i = 0; i < 3; i++) sketcher.record(row({ age: 1e308 }));
    sketcher.record(row({ age: -1e308 }));
    const { text, parsed } = overJson(sketcher.snapshot());
    expect(text).not.toContain('null');
    expect(Number.isFinite((parsed.features.age as { sum: number }).sum)).toBe(true);
  });

  it('stays within maxSketchJsonBytes for the worst names and counts, and the bound is close to them', () => {
    // Feature names of 128 three-byte letters, the longest a feature name can be in UTF-8.
    const long = (c: string, i: number) => `${c}${i}`.padEnd(128, '字');
    const plan: SketchPlan = {
      features: [
        ...Array.from({ length: 4 }, (_, i) => ({
          name: long('n', i),
          type: 'numeric' as const,
          edges: Array.from({ length: 9 }, (_, e) => e * 10),
          min: 0,
          max: 100,
        })),
        ...Array.from({ length: 3 }, (_, i) => ({
          name: long('c', i),
          type: 'categorical' as const,
          domain: Array.from({ length: 20 }, (_, d) => `d${d}`),
          hasOther: false,
        })),
      ],
    };
    const sketcher = new DataSketcher(plan);
    // Names of control characters, escaped as \u0001 (6 bytes each) in JSON, each longer than what is kept.
    const hostile = (i: number) => `${i}`.padEnd(100, '\u0001');
    for (let i = 0; i < 500; i++) {
      sketcher.record({
        [hostile(i)]: 1,
        ...Object.fromEntries(plan.features.map((f) => [f.name, f.type === 'numeric' ? i : hostile(i)])),
      });
    }
    // Every counter at its largest (2^53 - 1), and a sum that prints as long as a number can (24 characters).
    const worst = JSON.parse(JSON.stringify(sketcher.snapshot()), (key, value: unknown) =>
      typeof value === 'number' ? (key === 'sum' ? -(0.1 + 0.2) * 1e-300 : Number.MAX_SAFE_INTEGER) : value,
    ) as DataSketch;
    const bytes = Buffer.byteLength(JSON.stringify(worst));
    const bound = maxSketchJsonBytes(plan);
    expect(bytes).toBeLessThanOrEqual(bound);
    expect(bytes).toBeGreaterThan(0.9 * bound);
    expect(bound).toBeLessThan(70_000);
  });

  it('keeps a whole ModelTelemetry within maxModelTelemetryBytes at its worst', () => {
    const registry = new TelemetryRegistry();
    const model = 'm'.repeat(63);
    for (const version of ['a'.repeat(63), 'b'.repeat(63)]) {
      const counters = registry.counters(model, version);
      counters.sketchInputs(PLAN);
      for (let i = 0; i < 300; i++) {
        const name = `${i}`.padEnd(100, '\u0001');
        counters.recordInputs(row({ [name]: 1, plan: name, region: name }));
      }
      counters.recordSuccess(3.2, [{ label: 1, binned: 0.7 }]);
      counters.recordLabel({ task: 'binary-classification', label: 1, probability: 0.7, actual: 0 });
    }
    const float = -(0.1 + 0.2) * 1e-300;
    const worst = JSON.parse(JSON.stringify(registry.snapshot(model)), (key, value: unknown) =>
      typeof value === 'number'
        ? /Sum|^sum$/.test(key)
          ? float
          : Number.MAX_SAFE_INTEGER
        : key === 'epoch'
          ? '~'.repeat(MAX_EPOCH_LENGTH)
          : value,
    ) as ModelTelemetry;
    // The longest epoch the schema lets through, in one byte per character.
    const epoch = VersionTelemetry.shape.epoch;
    expect(epoch.safeParse('~'.repeat(MAX_EPOCH_LENGTH)).success).toBe(true);
    expect(epoch.safeParse('~'.repeat(MAX_EPOCH_LENGTH + 1)).success).toBe(false);
    expect(epoch.safeParse('é').success).toBe(false);
    const bytes = Buffer.byteLength(JSON.stringify(worst));
    expect(bytes).toBeLessThanOrEqual(maxModelTelemetryBytes([PLAN, PLAN]));
    expect(bytes).toBeGreaterThan(0.9 * maxModelTelemetryBytes([PLAN, PLAN]));
  });

  it('snapshots telemetry of prototype-named versions as own properties', () => {
    const registry = new TelemetryRegistry();
    registry.counters('churn', 'constructor').recordError();
    registry.counters('churn', 'toString').recordInvalid();
    const snapshot = ModelTelemetry.parse(JSON.parse(JSON.stringify(registry.snapshot('churn'))));
    expect(Object.keys(snapshot.versions)).toEqual(['constructor', 'toString']);
    expect(snapshot.versions.constructor).toMatchObject({ version: 'constructor', errors: 1 });
    expect(maxModelTelemetryBytes([PLAN, undefined])).toBe(200 + 1_500 * 2 + maxSketchJsonBytes(PLAN));
  });
});

describe('prediction request bounds', () => {
  const request = (features: unknown) => ({ userId: 'u1', features });
  const problem = (body: unknown) => {
    const parsed = PredictRequest.safeParse(body);
    expect(parsed.success).toBe(false);
    return parsed.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('refuses a 10,000-key feature object at once, naming features and the limit', () => {
    const features = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`f${i}`, i]));
    expect(problem(request(features))).toEqual([`features: at most ${MAX_REQUEST_FEATURES} features, got 10000`]);
    const largest = Object.fromEntries(Array.from({ length: MAX_REQUEST_FEATURES }, (_, i) => [`f${i}`, i]));
    expect(PredictRequest.safeParse(request(largest)).success).toBe(true);
  });

  it('refuses a category longer than 1024 characters, naming the feature', () => {
    expect(problem(request({ plan: 'x'.repeat(1024 * 1024) }))).toEqual([
      `features.plan: a category of at most ${MAX_FEATURE_VALUE_LENGTH} characters`,
    ]);
    expect(PredictRequest.safeParse(request({ plan: 'x'.repeat(MAX_FEATURE_VALUE_LENGTH) })).success).toBe(true);
    expect(problem(request({ plan: true }))).toEqual(['features.plan: a number, a string (a category) or null']);
  });

  it('refuses __proto__ and keys that cannot be feature names; prototype names are ordinary names', () => {
    expect(problem(request(JSON.parse('{"age":1,"__proto__":2}')))).toEqual([
      'features: "__proto__" is not a valid feature name',
    ]);
    expect(problem(request({ 'bad\nkey': 1 }))[0]).toMatch(/^features: "bad\nkey" is not a valid feature name/);
    expect(problem(request({ ['k'.repeat(100_000)]: 1 }))[0]!.length).toBeLessThan(300);
    const parsed = PredictRequest.parse(request(JSON.parse('{"constructor":"toString","valueOf":"hasOwnProperty"}')));
    expect(parsed.features).toEqual({ constructor: 'toString', valueOf: 'hasOwnProperty' });
  });
});

describe('admin request bounds', () => {
  it('takes opIds of at most 200 letters, digits and . _ : @ / + = -', () => {
    for (const opId of ['lifecycle-churn-v7:weights:2', 'rollback-churn-m3x9:deploy', 'a', 'x'.repeat(200)]) {
      expect(OpId.safeParse(opId).success, opId).toBe(true);
    }
    const refused = (opId: unknown) => OpId.safeParse(opId).error?.issues[0]?.message;
    expect(refused('x'.repeat(MAX_OP_ID_LENGTH + 1))).toBe(`an opId of at most ${MAX_OP_ID_LENGTH} characters`);
    expect(refused('x'.repeat(1024 * 1024))).toBe(`an opId of at most ${MAX_OP_ID_LENGTH} characters`);
    for (const opId of ['', '-lead', 'has space', 'new\nline', 'quote"'])
      expect(refused(opId), opId).toMatch(/^an opId/);
  });

  it('takes weights keyed by version names, at most 64 of them, never __proto__', () => {
    const weights = (w: unknown) => SetWeightsRequest.safeParse({ opId: 'op-1', weights: w });
    expect(weights({ v1: 90, 'v2.0-rc_1': 10 }).success).toBe(true);
    expect(weights({ '-bad': 100 }).error?.issues[0]).toMatchObject({ code: 'invalid_key', path: ['weights', '-bad'] });
    expect(weights(JSON.parse('{"v1":100,"__proto__":0}')).error?.issues[0]).toMatchObject({
      path: ['weights', '__proto__'],
      message: '"__proto__" is not a valid version',
    });
    const many = Object.fromEntries(Array.from({ length: MAX_WEIGHTS + 1 }, (_, i) => [`v${i}`, 0]));
    expect(weights(many).error?.issues[0]?.message).toBe(`at most ${MAX_WEIGHTS} versions, got ${MAX_WEIGHTS + 1}`);
  });

  it('routes versions named like prototype members by their own weights', () => {
    // `toString` is deployed without a weight: it owns no bucket (an inherited member must not read as a weight).
    const table = buildRoutingTable({ v1: 60, constructor: 40 }, ['toString', 'v1', 'constructor']);
    expect(table.ranges.map((r) => [r.version, r.weight])).toEqual([
      ['constructor', 40],
      ['v1', 60],
    ]);
    const seen = new Set(Array.from({ length: 2000 }, (_, i) => route(table, `user-${i}`)));
    expect(seen).toEqual(new Set(['v1', 'constructor']));
  });
});

describe('routing journal bounds', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });
  const entry = (i: number, opIdLength = 20): JournalEntry => ({
    opId: `op-${i}-`.padEnd(opIdLength, 'x'),
    kind: 'set-weights',
    model: 'churn',
    weights: { v1: 100 },
    at: '2026-12-03T00:00:00.000Z',
    applied: true,
  });

  it("keeps the newest ops within the journal's count and byte limits", () => {
    const store = new RoutingStore('/nowhere', 100, 20_000);
    let ops: JournalEntry[] = [];
    for (let i = 0; i < 300; i++) ops = store.appendOp(ops, entry(i));
    expect(ops).toHaveLength(100);
    expect(ops.at(-1)?.opId).toMatch(/^op-299-/);
    // Longer entries: the byte limit binds first.
    for (let i = 300; i < 600; i++) ops = store.appendOp(ops, entry(i, 200));
    const bytes = ops.reduce((n, op) => n + JSON.stringify(op).length + 1, 0);
    expect(bytes).toBeLessThanOrEqual(20_000);
    expect(ops.length).toBeGreaterThan(50);
    expect(ops.length).toBeLessThan(100);
    expect(ops.at(-1)?.opId).toMatch(/^op-599-/);
    expect(() => new RoutingStore('/nowhere', 0)).toThrow(RangeError);
  });

  it('cuts a journal written under larger limits when it loads, and saves models and weights as JSON', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'routing-store-'));
    dirs.push(dir);
    const file = {
      format: 1,
      nextSeq: 1,
      models: {
        churn: {
          versions: [{ version: 'constructor', artifactDir: '/a', deployedAt: '2026-12-03T00:00:00.000Z', seq: 0 }],
          weights: { constructor: 100 },
        },
      },
      ops: Array.from({ length: 5000 }, (_, i) => entry(i)),
    };
    await writeFile(path.join(dir, 'routing.json'), JSON.stringify(file));
    const store = new RoutingStore(dir, 1000);
    const state = await store.load();
    expect(state.ops).toHaveLength(1000);
    expect(state.ops[0]?.opId).toMatch(/^op-4000-/);
    expect(state.models.get('churn')?.weights.get('constructor')).toBe(100);
    await store.save(state);
    const saved = JSON.parse(await readFile(path.join(dir, 'routing.json'), 'utf8')) as typeof file;
    expect(saved.models).toEqual(file.models);
    expect(saved.ops).toHaveLength(1000);
  });
});
