import { appendFileSync, chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WithStartWorkflowOperation } from '@temporalio/client';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generateApproverKey,
  operationClaim,
  signOperation,
  type ApproverKey,
} from '../../src/client/approval-signing';
import type { Observation } from '../../src/shared/alerts';
import {
  approveGateUpdate,
  poolStateQuery,
  recordPromotionUpdate,
  registryStateQuery,
} from '../../src/shared/messages';
import { quotaPoolWorkflowId } from '../../src/shared/quota';
import { registryWorkflowId, type PromotionRecord } from '../../src/shared/registry';
import { OperationTarget } from '../../src/shared/signed-operation';
import { LIFECYCLE_TASK_QUEUE } from '../../src/shared/task-queues';
import { liveTraffic, observe, startStack, testSpec, uniqueName, waitForStatus, type Stack } from '../helpers/harness';
import { mlctl } from '../helpers/mlctl';
import { tempDir } from '../helpers/temp';

/**
 * The attacks of the security review (C1, C2, H6, H7, H8, M3, M4, M6, M9) against a real stack under a strict
 * platform policy: signatures required, approvers and operators named by the platform. Each is refused with a clear
 * reason, and nothing changes.
 */
describe('trust: the platform policy holds against hostile callers', () => {
  let stack: Stack;
  const model = uniqueName('sec');
  const dir = tempDir('mll-sec-');
  const policyFile = join(dir, 'policy.yaml');
  const keyringFile = join(dir, 'keyring.yaml');
  const people = ['alice', 'bob', 'ops', 'mallory'] as const;
  const keys = Object.fromEntries(people.map((p) => [p, generateApproverKey()])) as Record<
    (typeof people)[number],
    ApproverKey
  >;
  const keyFile = (who: (typeof people)[number]) => join(dir, `${who}.pem`);
  const writeKeyring = (who: readonly (typeof people)[number][]) =>
    writeFileSync(
      keyringFile,
      `approvers:\n${who.map((p) => `  ${p}: { keys: ["${keys[p].publicKey}"] }`).join('\n')}\n`,
    );
  const specFile = (name: string, spec: unknown) => {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, stringify(spec));
    return file;
  };
  const idOf = (version: string) => `lifecycle-${model}-${version}`;
  /** The innermost message of a refused update, or a mark that it was not refused. */
  const reason = (err: unknown): string => {
    let e = err as { message?: string; cause?: unknown } | undefined;
    while (e?.cause) e = e.cause as typeof e;
    return e?.message ?? 'accepted';
  };

  beforeAll(async () => {
    writeFileSync(
      policyFile,
      [
        'version: 1',
        'defaults:',
        '  approval: { approvers: [alice, bob] }',
        '  operators: { abort: [ops], pause: [ops], rollback: [ops], alerts: [ops] }',
        '  training: { roots: [examples] }',
        'quota: { operators: [ops] }',
      ].join('\n'),
    );
    for (const p of people) {
      writeFileSync(keyFile(p), keys[p].privateKeyPem);
      chmodSync(keyFile(p), 0o600);
    }
    writeKeyring(people);
    stack = await startStack({ policyFile, approverKeysFile: keyringFile });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('refuses at start a spec that names its own approver, drops signatures or reads a worker secret (C1, H6)', async () => {
    const file = specFile(
      'loose',
      testSpec(model, 'v0', 'good', (s) => {
        s.approval.approvers = ['ci-2'];
        s.approval.signed = false;
        s.deployment.target = {
          kind: 'http',
          baseUrl: 'http://127.0.0.1:9/collect',
          headers: { authorization: { fromEnv: 'TEMPORAL_API_KEY' } },
          timeoutMs: 1000,
          endpoints: {
            deploy: { method: 'PUT', path: '/deploy' },
            setWeights: { method: 'PUT', path: '/weights' },
            undeploy: { method: 'DELETE', path: '/deploy' },
            telemetry: { method: 'GET', path: '/telemetry' },
          },
        };
      }),
    );
    const run = await mlctl(stack.address, 'run', file);
    expect(run.code, run.stderr).toBe(4);
    expect(run.stderr).toContain('approval.approvers: ci-2 may not approve gate "deploy"');
    expect(run.stderr).toContain('approval.signed: false, but policy rule defaults requires signed approvals');
    expect(run.stderr).toContain('deployment.target.baseUrl: http://127.0.0.1:9/collect is not a deployment target');
    expect(run.stderr).toContain('deployment.target.headers.authorization: variable TEMPORAL_API_KEY is not one');
    const status = await stack.lifecycles.status(idOf('v0'));
    expect(status).toMatchObject({ stage: 'failed', error: { type: 'PolicyViolation' } });
    // Refused before anything was reserved.
    const pool = await stack.client.workflow.getHandle(quotaPoolWorkflowId('default')).query(poolStateQuery);
    expect(pool.leases.filter((l) => l.holder.includes(idOf('v0')))).toEqual([]);
  });

  let savedClaim: unknown;

  it('refuses unsigned, stranger, borrowed-key and promote-now-over-the-gate decisions at the deploy gate (C1, M3, M4)', async () => {
    const file = specFile('good', testSpec(model, 'v1'));
    const run = await mlctl(stack.address, 'run', file, '--json');
    expect(run.code, run.stderr).toBe(0);
    const id = idOf('v1');
    const atGate = await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
    expect(atGate.pendingGate).toMatchObject({ gate: 'deploy', signed: true });
    expect(atGate.policyRule).toBe('defaults');

    const unsigned = await mlctl(stack.address, 'approve', id, '--as', 'alice');
    expect(unsigned.code).toBe(4);
    expect(unsigned.stderr).toMatch(/gate "deploy" requires a signed approval/);
    const stranger = await mlctl(stack.address, 'approve', id, '--as', 'mallory', '--key', keyFile('mallory'));
    expect(stranger.code).toBe(4);
    expect(stranger.stderr).toMatch(/"mallory" is not an approver of gate "deploy"/);
    const borrowed = await mlctl(stack.address, 'approve', id, '--as', 'alice', '--key', keyFile('bob'));
    expect(borrowed.code).toBe(4);
    expect(borrowed.stderr).toMatch(/is not a registered key of alice/);
    const overGate = await mlctl(stack.address, 'promote-now', id, '--as', 'bob', '--key', keyFile('bob'));
    expect(overGate.code).toBe(4);
    // Nothing is deployed yet, so nothing to promote; at a ramp gate the same request is refused while the gate is
    // open (rollout-controls), so a promote-now never closes a gate under weaker rules.
    expect(overGate.stderr).toMatch(/nothing to promote|is open: approve it/);
    const abortByApprover = await mlctl(stack.address, 'abort', id, '--as', 'alice', '--key', keyFile('alice'));
    expect(abortByApprover.code).toBe(4);
    expect(abortByApprover.stderr).toMatch(/alice may not abort lifecycles of .*allows ops/);
    const unsignedPause = await mlctl(stack.address, 'pause', id, '--as', 'ops');
    expect(unsignedPause.code).toBe(4);
    expect(unsignedPause.stderr).toMatch(/requires a signed pause/);

    // Revocation takes effect at once: alice's key leaves the keyring, her signed approval is refused.
    writeKeyring(['bob', 'ops', 'mallory']);
    const revoked = await mlctl(stack.address, 'approve', id, '--as', 'alice', '--key', keyFile('alice'));
    expect(revoked.code).toBe(4);
    expect(revoked.stderr).toMatch(/alice has no registered signing key \(or it was revoked\)/);
    writeKeyring(people);

    const status = await stack.lifecycles.status(id);
    expect(status.approvals).toEqual([]);
    expect(status.stage).toBe('awaiting-approval');
    expect(status.operatorActions).toEqual([]);

    // A valid claim for this run, kept to replay into the next run.
    savedClaim = signOperation(
      operationClaim({
        op: 'approve',
        target: OperationTarget.gate(id, status.runId!, status.pendingGate!.opening!),
        by: 'alice',
        ...{ specDigest: status.specDigest!, artifactDigest: status.artifactDigest ?? '' },
      }),
      keys.alice.privateKeyPem,
    );
    const handle = stack.client.workflow.getHandle(id);
    await handle.cancel();
    await handle.result().catch(() => undefined); // cancelled: the version may be run again
  });

  it('refuses a claim replayed into a re-run, and never serves an artifact changed after training (M3, H7)', async () => {
    const id = idOf('v1');
    const rerun = await mlctl(stack.address, 'run', join(dir, 'good.yaml'), '--json');
    expect(rerun.code, rerun.stderr).toBe(0);
    const atGate = await waitForStatus(
      stack.lifecycles,
      id,
      (s) => s.pendingGate !== null && s.runId !== undefined,
      120_000,
    );
    await expect(
      stack.client.workflow
        .getHandle(id)
        .executeUpdate(approveGateUpdate, { args: [{ by: 'alice', reason: '', signed: savedClaim }] }),
    ).rejects.toThrow();
    expect((await stack.lifecycles.status(id)).approvals).toEqual([]);

    // Someone rewrites the validated model before it is deployed: the gateway refuses it, nothing serves it.
    appendFileSync(join(atGate.artifactDir!, 'model.onnx'), Buffer.from([0]));
    const approve = await mlctl(stack.address, 'approve', id, '--as', 'alice', '--key', keyFile('alice'));
    expect(approve.code, approve.stderr).toBe(0);
    const ended = await waitForStatus(
      stack.lifecycles,
      id,
      (s) => ['rolled-back', 'failed'].includes(s.stage),
      120_000,
    );
    expect(ended.error?.message).toMatch(/digest/);
    const routing = (await (await stack.gateway.admin(`/admin/models`)).json()) as { model: string }[];
    expect(routing.find((r) => r.model === model)).toBeUndefined();
  });

  it(
    'promotes with signed operations, then refuses a forged registry record, a stranger rollback and override (H8, C1)',
    { timeout: 300_000 },
    async () => {
      const load = liveTraffic(stack.gateway.url, model);
      const id = idOf('v2');
      try {
        const run = await mlctl(stack.address, 'run', specFile('v2', testSpec(model, 'v2')), '--json');
        expect(run.code, run.stderr).toBe(0);
        await waitForStatus(stack.lifecycles, id, (s) => s.pendingGate !== null, 120_000);
        const pause = await mlctl(
          stack.address,
          'pause',
          id,
          '--as',
          'ops',
          '--key',
          keyFile('ops'),
          '--reason',
          'look',
        );
        expect(pause.code, pause.stderr).toBe(0);
        const resume = await mlctl(stack.address, 'resume', id, '--as', 'OPS', '--key', keyFile('ops'));
        expect(resume.code, resume.stderr).toBe(0);
        const approve = await mlctl(stack.address, 'approve', id, '--as', 'Alice', '--key', keyFile('alice'));
        expect(approve.code, approve.stderr).toBe(0);
        await waitForStatus(stack.lifecycles, id, (s) => s.stage === 'promoted', 180_000);
      } finally {
        await load.stop();
      }
      const registry = stack.client.workflow.getHandle(registryWorkflowId(model));
      const before = await registry.query(registryStateQuery);
      expect(before.production).toMatchObject({ version: 'v2', by: 'Alice', keyId: keys.alice.keyId });
      expect(before.production?.artifactDigest).toMatch(/^sha256:/);

      const forged: PromotionRecord = {
        ...before.production!,
        version: 'evil',
        artifactDir: dir,
        lifecycleId: 'lifecycle-forged',
        runId: 'forged-run',
        at: new Date().toISOString(),
      };
      await expect(
        stack.client.workflow
          .executeUpdateWithStart(recordPromotionUpdate, {
            args: [forged],
            startWorkflowOperation: new WithStartWorkflowOperation('modelRegistryWorkflow', {
              workflowId: registryWorkflowId(model),
              taskQueue: LIFECYCLE_TASK_QUEUE,
              args: [{ model }],
              workflowIdConflictPolicy: 'USE_EXISTING',
            }),
          })
          .catch(reason),
      ).resolves.toMatch(/forged or stale registry record: "forged-run" is not a run id/);
      // Named after the real (finished) lifecycle, as a rollback to a version that never served.
      const asRunning = { ...forged, lifecycleId: id, runId: before.production!.runId!, kind: 'rollback' as const };
      await expect(registry.executeUpdate(recordPromotionUpdate, { args: [asRunning] }).catch(reason)).resolves.toMatch(
        /evil from .* was never production: a rollback restores an earlier production version/,
      );
      expect((await registry.query(registryStateQuery)).production?.version).toBe('v2');

      const strangerRollback = await mlctl(
        stack.address,
        'rollback',
        model,
        '--as',
        'mallory',
        '--reason',
        'x',
        '--key',
        keyFile('mallory'),
      );
      expect(strangerRollback.code).toBe(4);
      expect(strangerRollback.stderr).toMatch(/mallory may not rollback .*allows ops/);
      const unsignedRollback = await mlctl(stack.address, 'rollback', model, '--as', 'ops', '--reason', 'x');
      expect(unsignedRollback.code).toBe(4);
      expect(unsignedRollback.stderr).toMatch(/requires a signed rollback/);
      expect((await registry.query(registryStateQuery)).production?.version).toBe('v2');

      // An incident with a pending automated rollback: a stranger may not override it or silence the model.
      const key = `serving:${model}:prediction-drift`;
      const observation: Observation = {
        key,
        kind: 'prediction-drift',
        severity: 'warning',
        firing: true,
        summary: `${model} v2: prediction drift`,
        model,
        version: 'v2',
        hysteresis: { fireAfter: 1, window: 1, resolveAfter: 1 },
        action: 'rollback',
        actionDelayMs: 600_000,
        silencedByRollout: false,
        at: new Date().toISOString(),
      };
      await observe(stack.client, [observation]);
      for (let i = 0; i < 50; i++) {
        const open = await mlctl(stack.address, 'alerts', '--model', model, '--open', '--json');
        if ((JSON.parse(open.stdout) as { open: unknown[] }).open.length > 0) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      const override = await mlctl(
        stack.address,
        'alerts',
        'override',
        `${key}#1`,
        '--action',
        'notify',
        '--as',
        'mallory',
      );
      expect(override.code).toBe(4);
      expect(override.stderr).toMatch(/mallory may not alert-override/);
      const silence = await mlctl(
        stack.address,
        'alerts',
        'silence',
        model,
        '--for',
        '1h',
        '--as',
        'alice',
        '--key',
        keyFile('alice'),
      );
      expect(silence.code).toBe(4);
      const signedOverride = await mlctl(
        stack.address,
        'alerts',
        'override',
        `${key}#1`,
        '--action',
        'notify',
        '--as',
        'ops',
        '--key',
        keyFile('ops'),
        '--reason',
        'known backfill',
      );
      expect(signedOverride.code, signedOverride.stderr).toBe(0);

      // The audit trail: every accepted privileged action with its key; none of the refused ones.
      const audit = await mlctl(stack.address, 'audit', model, '--json');
      expect(audit.code, audit.stderr).toBe(0);
      const trail = JSON.parse(audit.stdout) as { entries: { by: string; action: string; keyId: string | null }[] };
      const seen = trail.entries.map((e) => `${e.action}:${e.by.toLowerCase()}:${e.keyId ?? '-'}`);
      expect(seen).toEqual(
        expect.arrayContaining([
          `pause:ops:${keys.ops.keyId}`,
          `resume:ops:${keys.ops.keyId}`,
          `approve:alice:${keys.alice.keyId}`,
          `promotion:alice:${keys.alice.keyId}`,
          `override:ops:${keys.ops.keyId}`,
        ]),
      );
      expect(trail.entries.some((e) => e.by === 'mallory')).toBe(false);
      const table = await mlctl(stack.address, 'audit', model);
      expect(table.stdout).toMatch(new RegExp(`approve\\s+lifecycle-${model}-v2 gate deploy#1\\s+${keys.alice.keyId}`));
    },
  );

  it('answers 401 to admin and label calls without the right token, and changes nothing (C2, M9)', async () => {
    const before = await (await stack.gateway.admin('/admin/models')).json();
    for (const authorization of [undefined, 'Bearer wrong-token-wrong-token', `Bearer ${stack.gateway.labelsToken}`]) {
      const res = await fetch(`${stack.gateway.adminUrl}/admin/models/${model}/weights`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        body: JSON.stringify({ opId: 'attack-1', weights: { v2: 0 } }),
      });
      expect(res.status).toBe(401);
    }
    const onPublic = await fetch(`${stack.gateway.url}/admin/models`);
    expect(onPublic.status).toBe(404);
    const labels = await fetch(`${stack.gateway.url}/v1/models/${model}/labels`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ labels: [{ requestId: 'r1', label: 1 }] }),
    });
    expect(labels.status).toBe(401);
    expect(await (await stack.gateway.admin('/admin/models')).json()).toEqual(before);
  });
});
