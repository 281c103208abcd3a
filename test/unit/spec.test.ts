import { rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSpecFile, SpecError } from '../../src/client/spec-file';
import { Duration } from '../../src/shared/duration';
import { describeIssues, LifecycleSpec } from '../../src/shared/spec';
import { tempDir } from '../helpers/temp';

const EXAMPLE_DIR = resolve(__dirname, '../../examples/churn');
const dir = tempDir('ml-lifecycle-spec-test-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
function writeSpec(text: string): string {
  const file = join(dir, `spec-${++counter}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** The problems a spec file is refused with; fails the test if it loads. */
function problemsOf(file: string): string[] {
  try {
    loadSpecFile(file);
  } catch (err) {
    expect(err).toBeInstanceOf(SpecError);
    return (err as SpecError).problems;
  }
  throw new Error(`${file} loaded, but it should have been refused`);
}

const pathOf = (problem: string) => /^[^\s:]+/.exec(problem)![0];

const VALID = `
apiVersion: ml-lifecycle/v1
kind: Lifecycle
model: churn
version: v7
submittedBy: ci@pipelines
training:
  program: ../train.py
  dataDir: data
  timeout: 1.5h
approval:
  approvers: [alice, bob]
  timeout: 90s
rollout:
  canary: { percent: 5, bake: 2m }
  steps:
    - { percent: 50, bake: 1500 }
    - { percent: 100, bake: 250ms, approval: true }
`;

describe('loadSpecFile with the example specs', () => {
  it('loads the good churn spec, resolving program and data paths against the spec folder', () => {
    const spec = loadSpecFile(join(EXAMPLE_DIR, 'specs/good.yaml'));
    expect(spec).toMatchObject({ model: 'churn', version: 'v2', submittedBy: 'ci@pipelines' });
    expect(spec.training.program).toBe(join(EXAMPLE_DIR, 'train.py'));
    expect(spec.training.dataDir).toBe(join(EXAMPLE_DIR, 'data'));
    expect(spec.training.timeout).toBe(600_000);
    expect(spec.approval).toMatchObject({ approvers: ['alice', 'bob'], timeout: 3_600_000 });
    expect(spec.rollout.canary).toEqual({ percent: 10, bake: 20_000 });
    expect(spec.rollout.steps).toEqual([
      { percent: 50, bake: 10_000, approval: false },
      { percent: 100, bake: 5_000, approval: false },
    ]);
    expect(spec.rollout.analysis).toEqual({
      minSamples: 60,
      maxWaitForSamples: 60_000,
      interval: 60_000,
      initialDelay: 0,
      measurementRetention: 10,
      metrics: [],
      templates: [],
      outage: { failureLimit: 0, dryRun: false },
      errorRate: { max: 0.01, vsStable: { alpha: 0.01, minDifference: 0.005 }, failureLimit: 0, dryRun: false },
      latencyP99Ms: { max: 250, maxRatioToStable: 4, ratioFloorMs: 5, failureLimit: 0, dryRun: false },
      predictionDrift: { maxPsi: 0.25, alpha: 0.01, failureLimit: 0, dryRun: false },
      featureSkew: { maxPsi: 0.5, alpha: 0.001, failureLimit: 0, dryRun: false },
      inputQuality: { maxRate: 0.05, failureLimit: 0, dryRun: false },
    });
    expect(spec.validation.testData).toEqual({ failOn: 'dataset-drift', driftShare: 0.5, features: {} });
  });

  it('loads the bad churn spec, whose problem only live traffic shows', () => {
    const spec = loadSpecFile(join(EXAMPLE_DIR, 'specs/bad.yaml'));
    expect(spec.version).toBe('v3');
    expect(spec.training.params).toMatchObject({ featureScale: { monthly_charges: 100 } });
    expect(spec.training.program).toBe(join(EXAMPLE_DIR, 'train.py'));
  });

  it('resolves relative paths against the spec file even when given a relative spec path', () => {
    const file = writeSpec(VALID);
    const spec = loadSpecFile(relative(process.cwd(), file));
    expect(spec.training.program).toBe(resolve(dir, '../train.py'));
    expect(spec.training.dataDir).toBe(join(dir, 'data'));
  });

  it('keeps absolute program and data paths as they are', () => {
    const file = writeSpec(VALID.replace('../train.py', '/opt/train.py').replace('dataDir: data', 'dataDir: /srv/d'));
    const spec = loadSpecFile(file);
    expect(spec.training.program).toBe('/opt/train.py');
    expect(spec.training.dataDir).toBe('/srv/d');
  });
});

describe('spec validation', () => {
  it('parses durations written as 90s, 2m, 1.5h, 250ms or a number of milliseconds', () => {
    const spec = loadSpecFile(writeSpec(VALID));
    expect(spec.training.timeout).toBe(5_400_000);
    expect(spec.approval.timeout).toBe(90_000);
    expect(spec.rollout.canary.bake).toBe(120_000);
    expect(spec.rollout.steps.map((s) => s.bake)).toEqual([1500, 250]);
    expect(['7d', ' 3s ', 0].map((d) => Duration.parse(d))).toEqual([604_800_000, 3000, 0]);
  });

  it('refuses durations beyond 365 days, beyond any number, and 0 where it means nothing', () => {
    const problems = problemsOf(
      writeSpec(
        VALID.replace('timeout: 1.5h', 'timeout: 0s')
          .replace('timeout: 90s', 'timeout: 100000000d')
          .replace('bake: 2m', `bake: ${'9'.repeat(400)}d`),
      ),
    );
    expect(problems).toEqual([
      'training.timeout (line 10): invalid duration "0s": must be above 0',
      'approval.timeout (line 13): invalid duration "100000000d": at most 365d',
      expect.stringMatching(
        /^rollout\.canary\.bake \(line 15\): invalid duration "9{39}… \(401 chars\)": use a number/,
      ),
    ]);
    expect(Duration.safeParse(365 * 86_400_000 + 1).success).toBe(false);
    expect(Duration.safeParse(1e300).success).toBe(false);
    expect(Duration.parse('365d')).toBe(365 * 86_400_000);
    // Where 0 means "none" it stays allowed: no wait in the quota queue, no post-promotion guard.
    const spec = loadSpecFile(writeSpec(`${VALID}quota: { wait: 0s }\n`));
    expect(spec.quota.wait).toBe(0);
  });

  it('fills in the defaults of the optional sections', () => {
    const spec = loadSpecFile(writeSpec(VALID));
    expect(spec.hardware).toEqual({
      architecture: 'other',
      parameters: 100_000,
      precision: 'fp32',
      trainingClasses: [],
      servingClasses: [],
    });
    expect(spec.serving).toEqual({ latencyP99Ms: 100 });
    expect(spec.quota).toEqual({ pool: 'default', serving: { cpu: 1, memoryGiB: 1 }, wait: 0, priority: 0 });
    expect(spec.training).toMatchObject({ params: {}, resources: { cpu: 1, memoryGiB: 2 }, maxAttempts: 3, epochs: 1 });
    expect(spec.training.deadline).toBeUndefined();
    expect(spec.rollout.analysis.minSamples).toBe(100);
  });

  it('gives the same spec when the parsed spec is validated again, as the workflow does', () => {
    for (const file of [writeSpec(VALID), join(EXAMPLE_DIR, 'specs/good.yaml'), join(EXAMPLE_DIR, 'specs/bad.yaml')]) {
      const spec = loadSpecFile(file);
      expect(LifecycleSpec.parse(spec)).toEqual(spec);
      // The workflow receives it as JSON.
      expect(LifecycleSpec.parse(JSON.parse(JSON.stringify(spec)))).toEqual(spec);
    }
  });

  it('overrides the version from the command line', () => {
    const spec = loadSpecFile(join(EXAMPLE_DIR, 'specs/good.yaml'), { version: 'v2-hotfix.1' });
    expect(spec.version).toBe('v2-hotfix.1');
    expect(spec.model).toBe('churn');
  });

  it('validates an overridden version like one written in the file', () => {
    try {
      loadSpecFile(join(EXAMPLE_DIR, 'specs/good.yaml'), { version: 'not a version' });
      expect.unreachable('the override should have been refused');
    } catch (err) {
      expect(err).toBeInstanceOf(SpecError);
      expect((err as SpecError).problems.map(pathOf)).toEqual(['version']);
    }
  });

  it('reports every problem of a spec with many, each with its path', () => {
    const file = writeSpec(`
apiVersion: ml-lifecycle/v1
kind: Lifecycle
model: Churn_Model
version: v2
submittedBy: ci@pipelines
colour: blue
training:
  program: ../train.py
  dataDir: ../data
  timeout: 5x
  gpus: 2
approval:
  timeout: 1h
rollout:
  canary: { percent: 10, bake: 20s }
  steps:
    - { percent: 50, bake: 10s }
    - { percent: 40, bake: 10s }
    - { percent: 90, bake: 5s }
`);
    const problems = problemsOf(file);
    expect(problems.map(pathOf).sort()).toEqual(
      [
        '(root)',
        'model',
        'training',
        'training.timeout',
        'approval.approvers',
        'rollout.steps.1.percent',
        'rollout.steps.2.percent',
      ].sort(),
    );
    expect(problems).toContain(
      'training.timeout (line 11): invalid duration "5x": use a number with ms, s, m, h or d (e.g. 90s)',
    );
    expect(problems).toContain("rollout.steps.1.percent (line 19): must be greater than the previous stage's 50%");
    expect(problems).toContain('rollout.steps.2.percent (line 20): the last step must be 100');
    expect(problems.find((p) => p.startsWith('model'))).toMatch(/^model \(line 4\): a model name: lowercase letters/);
    expect(problems.find((p) => p.startsWith('(root)'))).toContain('"colour"');
    expect(problems.find((p) => p.startsWith('training ('))).toContain('"gpus"');
  });

  it('lists the problems in the error message too, one per line', () => {
    const file = writeSpec(VALID.replace('model: churn', 'model: Churn').replace('bake: 2m', 'bake: 2 minutes'));
    expect(() => loadSpecFile(file)).toThrow(`${file}: invalid lifecycle spec:\n  - model (line 4): `);
    expect(() => loadSpecFile(file)).toThrow('\n  - rollout.canary.bake (line 15): invalid duration "2 minutes"');
  });

  it('refuses a submitter who is also an approver', () => {
    const file = writeSpec(VALID.replace('submittedBy: ci@pipelines', 'submittedBy: alice'));
    expect(problemsOf(file)).toEqual([
      'approval.approvers (line 12): the submitter "alice" cannot be an approver of its own lifecycle',
    ]);
  });

  it('refuses a canary step that is not below the first ramp step', () => {
    const file = writeSpec(VALID.replace('canary: { percent: 5', 'canary: { percent: 60'));
    expect(problemsOf(file).map(pathOf)).toEqual(['rollout.steps.0.percent']);
  });

  it('reports a submitter among the approvers alongside problems in other fields', () => {
    const file = writeSpec(
      VALID.replace('submittedBy: ci@pipelines', 'submittedBy: alice').replace('model: churn', 'model: Churn'),
    );
    expect(problemsOf(file).map(pathOf).sort()).toEqual(['approval.approvers', 'model']);
  });

  // The cross-field rules are superRefine checks. A malformed duration ends its transform with z.NEVER, which aborts
  // the parse of every enclosing object, and zod 4 then skips their superRefine checks: the user fixes the duration
  // only to be shown another batch of problems.
  it('reports a submitter among the approvers even when a duration is malformed', () => {
    const file = writeSpec(
      VALID.replace('submittedBy: ci@pipelines', 'submittedBy: alice').replace('timeout: 1.5h', 'timeout: 5x'),
    );
    expect(problemsOf(file).map(pathOf).sort()).toEqual(['approval.approvers', 'training.timeout']);
  });

  it('reports rollout step problems even when the canary bake is malformed', () => {
    const file = writeSpec(
      VALID.replace('bake: 2m', 'bake: 5x').replace('percent: 100, bake: 250ms', 'percent: 90, bake: 250ms'),
    );
    expect(problemsOf(file).map(pathOf).sort()).toEqual(['rollout.canary.bake', 'rollout.steps.1.percent']);
  });

  it('takes a shadow stage, pinned routes (headers in lower case) and pre-rollout hooks', () => {
    const file = writeSpec(
      VALID.replace(
        'rollout:\n',
        `rollout:
  shadow: { percent: 20, bake: 10m, compare: { minAgreement: 0.95, maxScoreDiff: 0.05, failureLimit: 1 } }
  pins:
    - { header: X-ML-QA, values: ['1'], to: candidate }
    - { header: x-tenant, values: [bank-a, bank-b], to: stable, counted: true }
  hooks:
    preRollout:
      - { name: smoke, url: 'https://ci.example/smoke', headers: { authorization: { fromEnv: CI_TOKEN } }, timeout: 2m }
`,
      ),
    );
    const spec = loadSpecFile(file);
    expect(spec.rollout.shadow).toEqual({
      percent: 20,
      bake: 600_000,
      compare: { minAgreement: 0.95, maxScoreDiff: 0.05, failureLimit: 1, dryRun: false },
    });
    expect(spec.rollout.pins).toEqual([
      { header: 'x-ml-qa', values: ['1'], to: 'candidate', counted: false },
      { header: 'x-tenant', values: ['bank-a', 'bank-b'], to: 'stable', counted: true },
    ]);
    expect(spec.rollout.hooks.preRollout).toEqual([
      {
        name: 'smoke',
        url: 'https://ci.example/smoke',
        headers: { authorization: { fromEnv: 'CI_TOKEN' } },
        timeout: 120_000,
        maxAttempts: 3,
      },
    ]);
    expect(loadSpecFile(writeSpec(VALID)).rollout).toMatchObject({ pins: [], hooks: { preRollout: [] } });
  });

  it('refuses shadow and pins on a target other than the gateway, bad headers and hooks, naming each field', () => {
    const file = writeSpec(
      VALID.replace(
        'rollout:\n',
        `deployment:
  target:
    kind: http
    baseUrl: http://adapter.internal
    endpoints:
      deploy: { method: POST, path: /deploy }
      setWeights: { method: PUT, path: /weights }
      undeploy: { method: DELETE, path: /undeploy }
      telemetry: { method: GET, path: /telemetry }
rollout:
  shadow: { percent: 0, bake: 1m }
  pins:
    - { header: 'x tenant', values: [], to: everyone }
  hooks:
    preRollout:
      - { name: Smoke, url: 'ftp://ci.example/smoke', timeout: 1h }
      - { name: load, url: 'https://ci.example/load' }
      - { name: load, url: 'https://ci.example/load-again' }
`,
      ),
    );
    expect(problemsOf(file).map(pathOf).sort()).toEqual([
      'rollout.hooks.preRollout.0.name',
      'rollout.hooks.preRollout.0.timeout',
      'rollout.hooks.preRollout.0.url',
      'rollout.hooks.preRollout.2.name',
      'rollout.pins',
      'rollout.pins.0.header',
      'rollout.pins.0.to',
      'rollout.pins.0.values',
      'rollout.shadow',
      'rollout.shadow.percent',
    ]);
  });

  it('reports a YAML syntax error with its line', () => {
    // An unclosed flow map on line 15: the parser notices when the next key starts on line 16.
    const file = writeSpec(VALID.replace('canary: { percent: 5, bake: 2m }', 'canary: { percent: 5, bake: 2m'));
    const problems = problemsOf(file);
    expect(problems[0]).toMatch(
      /^line 16: Flow map in block collection must be sufficiently indented and end with a }/,
    );
  });

  it('reports a YAML syntax error before validating anything', () => {
    const file = writeSpec('model: Churn\nversion: [v1\n');
    expect(problemsOf(file).every((p) => p.startsWith('line '))).toBe(true);
  });

  it('reports a file that cannot be read', () => {
    expect(problemsOf(join(dir, 'missing.yaml'))).toEqual(['cannot read the file: ENOENT']);
  });

  it('formats zod problems with their paths for messages', () => {
    const result = LifecycleSpec.safeParse({ apiVersion: 'ml-lifecycle/v1', kind: 'Lifecycle' });
    expect(result.success).toBe(false);
    const lines = describeIssues(result.error!);
    expect(lines.map(pathOf).sort()).toEqual(['approval', 'model', 'rollout', 'submittedBy', 'training', 'version']);
    expect(describeIssues(LifecycleSpec.safeParse('not an object').error!)).toEqual([
      expect.stringMatching(/^\(root\): /),
    ]);
  });
});

describe('approval, analysis and deployment policy in the spec', () => {
  const withApproval = (approval: string, extra = '') =>
    VALID.replace('approval:\n  approvers: [alice, bob]\n  timeout: 90s\n', `approval:\n${approval}\n`) + extra;

  it('reads quorum, escalation, signatures and per-gate overrides', () => {
    const spec = loadSpecFile(
      writeSpec(
        withApproval(
          '  approvers: [alice, bob, carol]\n  quorum: 2\n  timeout: 1h\n  escalateAfter: 20m\n  escalateTo: [lead]\n' +
            '  gates:\n    ramp-100: { quorum: 3, signed: true }\n    promote-now: { approvers: [carol], quorum: 1 }',
        ),
      ),
    );
    expect(spec.approval).toMatchObject({ quorum: 2, escalateAfter: 1_200_000, escalateTo: ['lead'] });
    expect(spec.approval.signed).toBeUndefined(); // absent: as the platform policy says;
    expect(spec.approval.gates['ramp-100']).toEqual({ quorum: 3, signed: true });
  });

  it('refuses a quorum nobody can meet, an escalation after the timeout and the submitter in a gate', () => {
    const problems = problemsOf(
      writeSpec(
        withApproval(
          '  approvers: [alice, bob]\n  quorum: 3\n  timeout: 1h\n  escalateAfter: 2h\n' +
            '  gates:\n    deploy: { approvers: [ci@pipelines, alice] }\n    ramp-50: { quorum: 1 }\n    canary: {}',
        ),
      ),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^approval\.quorum \(line \d+\): a quorum of 3 cannot be met by 2 approver\(s\)$/),
        expect.stringMatching(/^approval\.escalateAfter \(line \d+\): must be shorter than the timeout$/),
        expect.stringMatching(
          /^approval\.gates\.deploy\.approvers .*the submitter "ci@pipelines" cannot be an approver/,
        ),
        expect.stringMatching(
          /^approval\.gates\.ramp-50 .*no rollout step has this gate \(steps with approval: ramp-100\)/,
        ),
        expect.stringMatching(
          /^approval\.gates\.canary .*not a gate: deploy, production, promote-now or ramp-<percent>/,
        ),
      ]),
    );
  });

  it('reads per-check tolerance, the sampling interval, the guard window and a staging environment', () => {
    const spec = loadSpecFile(
      writeSpec(
        VALID.replace(
          '    - { percent: 100, bake: 250ms, approval: true }\n',
          '    - { percent: 100, bake: 250ms, approval: true }\n  analysis:\n    interval: 30s\n' +
            '    errorRate: { max: 0.02, failureLimit: 2, minSamples: 500 }\n    inputQuality: { maxRate: 0.1 }\n' +
            '  postPromotion: { window: 30m }\n',
        ) + 'deployment:\n  staging: { bake: 10m }\n',
      ),
    );
    expect(spec.rollout.analysis).toMatchObject({
      interval: 30_000,
      errorRate: { max: 0.02, failureLimit: 2, minSamples: 500 },
      inputQuality: { maxRate: 0.1, failureLimit: 0 },
      outage: { failureLimit: 0 },
    });
    expect(spec.rollout.postPromotion.window).toBe(1_800_000);
    expect(spec.deployment.staging).toEqual({ bake: 600_000, gate: true });
    const problems = problemsOf(
      writeSpec(
        VALID.replace(
          '    - { percent: 100, bake: 250ms, approval: true }\n',
          '    - { percent: 100, bake: 250ms, approval: true }\n  analysis:\n    interval: 10ms\n' +
            '    errorRate: { max: 0.02, failureLimit: -1 }\n',
        ),
      ),
    );
    expect(problems.map(pathOf)).toEqual(['rollout.analysis.interval', 'rollout.analysis.errorRate.failureLimit']);
  });
});
