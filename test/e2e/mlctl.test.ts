import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlctl } from '../helpers/mlctl';
import type { Observation } from '../../src/shared/alerts';
import { liveTraffic, observe, startStack, testSpec, uniqueName, waitForStatus, type Stack } from '../helpers/harness';
import { tempDir } from '../helpers/temp';

describe('mlctl against a real dev server', () => {
  let stack: Stack;
  const model = uniqueName('cli');
  const dir = tempDir('mll-cli-');

  /** The keyring the worker trusts; written by the signed-approval test before its gate opens. */
  const keyring = join(dir, 'approvers.yaml');

  beforeAll(async () => {
    stack = await startStack({ approverKeysFile: keyring });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('exits 2 naming every bad field of an invalid spec, and starts nothing', async () => {
    const file = join(dir, 'invalid.yaml');
    writeFileSync(
      file,
      [
        'apiVersion: ml-lifecycle/v1',
        'kind: Lifecycle',
        `model: ${model.toUpperCase()}`,
        'version: v1',
        'submittedBy: ci',
        'training: { program: train.py, dataDir: data, timeout: 10 minutes }',
        'approval: { approvers: [] }',
        'rollout:',
        '  canary: { percent: 150, bake: 1m }',
        '  steps: [{ percent: 50, bake: 1m }]',
        'colour: blue',
      ].join('\n'),
    );
    const run = await mlctl(stack.address, 'run', file);
    expect(run.code).toBe(2);
    for (const path of [
      'model',
      'training.timeout',
      'approval.approvers',
      'rollout.canary.percent',
      'rollout.steps.0.percent',
      'colour',
    ]) {
      expect(run.stderr).toContain(`${path}`);
    }
    expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace without --verbose
    expect(await stack.lifecycles.list({ model })).toEqual([]);
    // A model name that cannot be one is refused, never quoted into the visibility query.
    await expect(stack.lifecycles.list({ model: model.toUpperCase() })).rejects.toThrow(/a model name: lowercase/);
  });

  it('exits 2 naming a missing analysis template, an unknown argument and a bad condition, and starts nothing', async () => {
    const spec = testSpec(model, 'v0');
    const raw = structuredClone(spec) as unknown as { rollout: { analysis: Record<string, unknown> } };
    raw.rollout.analysis.metrics = [];
    raw.rollout.analysis.templates = [
      { name: 'no-such-template' },
      { name: 'gateway-error-rate', args: { maxRate: 0.02, colour: 'blue' } },
    ];
    const file = join(dir, 'templates.yaml');
    writeFileSync(file, stringify(raw));
    const run = await mlctl(stack.address, 'run', file);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain('rollout.analysis.templates.0.name: no analysis template "no-such-template"');
    expect(run.stderr).toContain(
      'rollout.analysis.templates.1.args.colour: template "gateway-error-rate" has no argument "colour"',
    );
    raw.rollout.analysis.templates = [{ name: 'gateway-error-rate', args: { maxRate: 'half' } }];
    writeFileSync(file, stringify(raw));
    const condition = await mlctl(stack.address, 'run', file);
    expect(condition.code, condition.stderr).toBe(2);
    expect(condition.stderr).toMatch(
      /rollout\.analysis\.metrics\.0\.successCondition: unknown name "half".*\(from template "gateway-error-rate"\)/,
    );
    expect(await stack.lifecycles.list({ model })).toEqual([]);
  });

  it('finds the search attributes already registered on the dev server', async () => {
    const run = await mlctl(stack.address, 'init', '--json');
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ namespace: 'default', added: [] });
  });

  it('exits 2 with the problems as JSON under --json', async () => {
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'apiVersion: ml-lifecycle/v1\nkind: Lifecycle\nmodel: [unclosed\n');
    const run = await mlctl(stack.address, 'run', file, '--json');
    expect(run.code).toBe(2);
    const body = JSON.parse(run.stderr) as { problems: string[] };
    expect(body.problems[0]).toMatch(/line \d+/);
  });

  it('runs a spec, reports its status, and refuses approvals that the policy forbids', async () => {
    const file = join(dir, 'good.yaml');
    const spec = testSpec(model, 'v1');
    writeFileSync(file, stringify(spec));
    const run = await mlctl(stack.address, 'run', file, '--json');
    expect(run.code, run.stderr).toBe(0);
    const { id } = JSON.parse(run.stdout) as { id: string };
    expect(id).toBe(`lifecycle-${model}-v1`);

    await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
    const status = await mlctl(stack.address, 'status', id, '--json');
    expect(status.code).toBe(0);
    const body = JSON.parse(status.stdout) as Record<string, unknown>;
    for (const field of ['id', 'model', 'version', 'stage', 'trafficPercent', 'approvals', 'decisions'])
      expect(body).toHaveProperty(field);
    expect(body).toMatchObject({
      id,
      model,
      version: 'v1',
      stage: 'awaiting-approval',
      trafficPercent: 0,
      approvals: [],
    });
    expect((body.decisions as { stage: string }[]).every((d) => d.stage === 'validating')).toBe(true);

    const stranger = await mlctl(stack.address, 'approve', id, '--as', 'mallory');
    expect(stranger.code).toBe(4);
    expect(stranger.stderr).toMatch(/mallory.*not an approver/);
    const self = await mlctl(stack.address, 'approve', id, '--as', 'ci@pipelines');
    expect(self.code).toBe(4);
    expect(self.stderr).toMatch(/submitted this lifecycle/);
    const missing = await mlctl(stack.address, 'approve', `lifecycle-${model}-nope`, '--as', 'alice');
    expect(missing.code).toBe(3);
    const badIdentity = await mlctl(stack.address, 'approve', id, '--as', 'has space');
    expect(badIdentity.code).toBe(2);

    const second = await mlctl(stack.address, 'run', file);
    expect(second.code).toBe(4);
    expect(second.stderr).toMatch(/already exists/);

    const text = await mlctl(stack.address, 'status', id);
    expect(text.stdout).toMatch(/stage:\s+awaiting-approval/);
    const list = await mlctl(stack.address, 'list', '--model', model, '--json');
    expect((JSON.parse(list.stdout) as { id: string }[]).map((r) => r.id)).toEqual([id]);

    const ok = await mlctl(stack.address, 'reject', id, '--as', 'bob', '--reason', 'not now', '--json');
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ id, gate: 'deploy', decision: 'rejected', by: 'bob' });
    const end = await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'rejected');
    expect(end.approvals).toEqual([expect.objectContaining({ by: 'bob', decision: 'rejected', reason: 'not now' })]);

    const late = await mlctl(stack.address, 'approve', id, '--as', 'alice');
    expect(late.code).toBe(4);
    const pause = await mlctl(stack.address, 'pause', id, '--as', 'alice');
    expect(pause.code).toBe(4);
    expect(pause.stderr).toMatch(/completed, not running/);
  });

  it("shows a model's registry after a promotion approved through mlctl, and exits 3 for a model never promoted", async () => {
    const load = liveTraffic(stack.gateway.url, model);
    try {
      const file = join(dir, 'promote.yaml');
      writeFileSync(file, stringify(testSpec(model, 'v2')));
      const run = await mlctl(stack.address, 'run', file, '--json');
      expect(run.code, run.stderr).toBe(0);
      const { id } = JSON.parse(run.stdout) as { id: string };
      await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);
      const approve = await mlctl(stack.address, 'approve', id, '--as', 'alice', '--reason', 'metrics look right');
      expect(approve.code, approve.stderr).toBe(0);
      await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'promoted');

      const history = await mlctl(stack.address, 'history', model, '--json');
      expect(history.code, history.stderr).toBe(0);
      const registry = JSON.parse(history.stdout) as {
        model: string;
        production: { version: string; lifecycleId: string; by: string } | null;
        previous: unknown;
        history: { version: string; lifecycleId: string }[];
      };
      expect(registry).toMatchObject({
        model,
        production: { version: 'v2', lifecycleId: id, by: 'alice' },
        previous: null,
      });
      expect(registry.history.map((h) => h.version)).toEqual(['v2']);
      const text = await mlctl(stack.address, 'history', model);
      expect(text.stdout).toMatch(/^production: v2 \(since /m);
      expect(text.stdout).toMatch(new RegExp(`v2\\s+production\\s+promotion\\s+alice\\s+${id}`));
    } finally {
      await load.stop();
    }
    const nothingBefore = await mlctl(stack.address, 'rollback', model, '--as', 'bob', '--reason', 'test');
    expect(nothingBefore.code).toBe(4);
    expect(nothingBefore.stderr).toMatch(/has no previous production version/);
    const noReason = await mlctl(stack.address, 'rollback', model, '--as', 'bob');
    expect(noReason.code).toBe(2);
    const none = await mlctl(stack.address, 'history', uniqueName('never'));
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/has no registry: no version of it was ever promoted/);
  });

  it('signs an approval and a promote-now with a key from mlctl keys generate', async () => {
    const key = join(dir, 'alice.key');
    const generated = await mlctl(stack.address, 'keys', 'generate', '--as', 'alice', '--out', key, '--json');
    expect(generated.code, generated.stderr).toBe(0);
    const { publicKey, keyId } = JSON.parse(generated.stdout) as { publicKey: string; keyId: string };
    writeFileSync(keyring, `approvers:\n  alice: { keys: ["${publicKey}"] }\n`);
    const load = liveTraffic(stack.gateway.url, model);
    try {
      const file = join(dir, 'signed.yaml');
      const spec = testSpec(model, 'v3', 'good', (s) => {
        s.approval.signed = true;
        s.rollout.canary.bake = 120_000;
      });
      writeFileSync(file, stringify(spec));
      const run = await mlctl(stack.address, 'run', file, '--json');
      expect(run.code, run.stderr).toBe(0);
      const { id } = JSON.parse(run.stdout) as { id: string };
      await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null);

      const unsigned = await mlctl(stack.address, 'approve', id, '--as', 'alice');
      expect(unsigned.code).toBe(4);
      expect(unsigned.stderr).toMatch(/requires a signed approval/);
      const noFile = await mlctl(stack.address, 'approve', id, '--as', 'alice', '--key', join(dir, 'nope.key'));
      expect(noFile.code).toBe(2);
      expect(noFile.stderr).toMatch(/nope\.key: no such private key file/);
      const wrongPerson = await mlctl(stack.address, 'approve', id, '--as', 'bob', '--key', key);
      expect(wrongPerson.code).toBe(4);
      expect(wrongPerson.stderr).toMatch(/is not a registered key of approver bob|bob has no registered signing key/);

      const signed = await mlctl(stack.address, 'approve', id, '--as', 'alice', '--key', key, '--json');
      expect(signed.code, signed.stderr).toBe(0);
      expect(JSON.parse(signed.stdout)).toMatchObject({ gate: 'deploy', decision: 'approved', signed: true });
      await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'canary');
      const status = await mlctl(stack.address, 'status', id);
      expect(status.stdout).toMatch(new RegExp(`deploy\\s+approved\\s+alice\\s+${keyId}`));

      const promote = await mlctl(
        stack.address,
        'promote-now',
        id,
        '--as',
        'alice',
        '--key',
        key,
        '--reason',
        'hotfix',
      );
      expect(promote.code, promote.stderr).toBe(0);
      expect(promote.stdout).toMatch(/promote-now granted \(alice\); skipping to 100%/);
      await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'promoted');
    } finally {
      await load.stop();
    }
    const badSteps = await mlctl(stack.address, 'rollback', model, '--as', 'bob', '--reason', 'x', '--steps', '50,40');
    expect(badSteps.code).toBe(2);
    expect(badSteps.stderr).toMatch(/--steps: "50,40" must be increasing percentages in \(0, 100\] ending at 100/);
  });

  it('shows alert history and open incidents, silences a model, and overrides a pending action', async () => {
    const watched = uniqueName('cli-alerts');
    const key = `serving:${watched}:prediction-drift`;
    const observation: Observation = {
      key,
      kind: 'prediction-drift',
      severity: 'warning',
      firing: true,
      summary: `${watched} v1: prediction drift PSI 0.8 against validation`,
      model: watched,
      version: 'v1',
      hysteresis: { fireAfter: 1, window: 1, resolveAfter: 1 },
      action: 'rollback',
      actionDelayMs: 600_000,
      silencedByRollout: false,
      at: new Date().toISOString(),
    };
    await observe(stack.client, [observation]);
    let open: { open: { incident: string; action?: { kind: string } }[] } = { open: [] };
    for (let i = 0; i < 50 && open.open.length === 0; i++) {
      const run = await mlctl(stack.address, 'alerts', '--model', watched, '--open', '--json');
      expect(run.code, run.stderr).toBe(0);
      open = JSON.parse(run.stdout) as typeof open;
      if (open.open.length === 0) await new Promise((r) => setTimeout(r, 200));
    }
    expect(open.open).toMatchObject([{ incident: `${key}#1`, action: { kind: 'rollback' } }]);

    const table = await mlctl(stack.address, 'alerts', '--model', watched);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('OPEN INCIDENTS');
    expect(table.stdout).toMatch(new RegExp(`fired +${key}#1 +${watched} v1: prediction drift PSI 0.8`));
    expect(table.stdout).toMatch(/action-scheduled .* rollback in 600 s unless overridden/);

    const override = await mlctl(
      stack.address,
      'alerts',
      'override',
      `${key}#1`,
      '--action',
      'notify',
      '--as',
      'olivia',
    );
    expect(override.code, override.stderr).toBe(0);
    expect(override.stdout.trim()).toBe(`${key}#1: rollback → notify`);
    const again = await mlctl(stack.address, 'alerts', 'override', `${key}#1`, '--action', 'notify', '--as', 'olivia');
    expect(again.code).toBe(4);
    expect(again.stderr).toMatch(/has no pending action/);

    const silence = await mlctl(
      stack.address,
      'alerts',
      'silence',
      watched,
      '--for',
      '30m',
      '--as',
      'olivia',
      '--reason',
      'backfill',
    );
    expect(silence.code, silence.stderr).toBe(0);
    expect(silence.stdout).toMatch(new RegExp(`alerts of ${watched} silenced until \\d{4}-`));
    const bad = await mlctl(stack.address, 'alerts', 'silence', watched, '--for', 'soon', '--as', 'olivia');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--for: "soon" is not a duration/);
    const lifted = await mlctl(stack.address, 'alerts', 'unsilence', watched, '--as', 'olivia');
    expect(lifted.stdout.trim()).toBe(`alerts of ${watched} unsilenced`);
  });
});
