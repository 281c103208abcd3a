import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHAOS_PROCESSES,
  ChaosStack,
  KILL_POINTS,
  runChaosCase,
  type ChaosCase,
  type ChaosOutcome,
} from '../../src/dev/chaos';
import { chaosSpec } from '../../src/dev/chaos';
import { installQuietRuntime, uniqueName } from '../helpers/harness';

/**
 * Kills each process with SIGKILL at each stage of a lifecycle under live traffic and checks, once it is restarted,
 * that the lifecycle ends as its candidate deserves, traffic is where the registry says, quota is exactly what should
 * be held, and no step ran twice. `npm test` runs the most dangerous kill of each process; `npm run test:chaos`
 * (CHAOS=full) runs the whole matrix.
 */
const FULL = process.env.CHAOS === 'full';

const OUTAGE_MS = FULL ? 10 * 60_000 : 40_000;
const cases: ChaosCase[] = FULL
  ? [
      ...CHAOS_PROCESSES.flatMap((kill) => KILL_POINTS.map((at): ChaosCase => ({ kill, at, candidate: 'good' }))),
      ...CHAOS_PROCESSES.map((kill): ChaosCase => ({ kill, at: 'canary', candidate: 'bad' })),
      { kill: 'gateway', at: 'canary', candidate: 'good', downMs: OUTAGE_MS },
    ]
  : [
      { kill: 'worker', at: 'ramping:50', candidate: 'good' },
      { kill: 'gateway', at: 'ramping:50', candidate: 'good' },
      { kill: 'server', at: 'rolling-back', candidate: 'good' },
      { kill: 'gateway', at: 'canary', candidate: 'good', downMs: OUTAGE_MS, stuckAfterMs: 10_000 },
    ];

const CASE_TIMEOUT_MS = FULL ? 30 * 60_000 : 6 * 60_000;

const label = (c: ChaosCase) =>
  `${c.kill} killed at ${c.at} (${c.candidate} candidate${c.downMs ? `, down ${c.downMs / 1000} s` : ''})`;

describe('chaos: a process killed at each stage of a rollout', () => {
  let stack: ChaosStack;
  const outcomes: ChaosOutcome[] = [];

  beforeAll(async () => {
    installQuietRuntime();
    stack = await ChaosStack.start();
  });
  afterAll(async () => {
    for (const o of outcomes) {
      console.log(
        `${label(o.case).padEnd(62)} → ${o.stage.padEnd(11)} consistent ${o.consistentMs} ms, ended ${o.endedMs} ms after restart`,
      );
    }
    await stack?.close();
  });

  it.each(cases.map((c) => [label(c), c] as const))(
    '%s',
    async (_, c) => {
      // The case gives up (naming its phase) before the test's own timeout would, with nothing said.
      const outcome = await runChaosCase(stack, c, uniqueName(`chaos-${c.kill}`), CASE_TIMEOUT_MS - 20_000);
      outcomes.push(outcome);
      const detail = JSON.stringify(outcome, null, 1);
      for (const inv of outcome.invariants) expect(inv.ok, `${inv.name}: ${inv.detail}\n${detail}`).toBe(true);
      if (c.downMs) {
        // Traffic went back to stable for the outage, not for a check; the stuck rollback paged before it held.
        expect(outcome.stage).toBe('rolled-back');
        expect(outcome.reason).toMatch(/could not go on/);
        if (c.stuckAfterMs !== undefined || c.downMs > 120_000)
          expect(outcome.alerts).toContain('rollback-stuck critical');
      } else if (c.kill !== 'gateway') {
        // The gateway never went down: not one prediction failed.
        expect(outcome.failedRequests, detail).toBe(0);
      }
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'gives up a rollback that cannot hold: ends rollback-stuck, pages, and keeps what still serves',
    async () => {
      const model = uniqueName('chaos-stuck');
      const load = stack.traffic(model);
      try {
        const v1 = await stack.lifecycles.start(chaosSpec(model, 'v1', { at: 'provisioning', candidate: 'good' }));
        await expect
          .poll(() => stack.lifecycles.status(v1.id).then((s) => s.pendingGate), { timeout: 60_000 })
          .not.toBeNull();
        await stack.lifecycles.approve(v1.id, { by: 'alice', gate: 'deploy', reason: 'chaos' });
        await expect
          .poll(() => stack.lifecycles.status(v1.id).then((s) => s.stage), { timeout: 60_000 })
          .toBe('promoted');

        const spec = chaosSpec(model, 'v2', {
          at: 'canary',
          candidate: 'good',
          stuckAfterMs: 3000,
          giveUpAfterMs: 12_000,
        });
        spec.rollout.canary.bake = 60_000;
        const { id } = await stack.lifecycles.start(spec);
        await expect
          .poll(() => stack.lifecycles.status(id).then((s) => s.pendingGate), { timeout: 60_000 })
          .not.toBeNull();
        await stack.lifecycles.approve(id, { by: 'alice', gate: 'deploy', reason: 'chaos' });
        await expect.poll(() => stack.lifecycles.status(id).then((s) => s.stage), { timeout: 60_000 }).toBe('canary');
        // Down for good (as far as this lifecycle can tell): the canary cannot go on, and traffic cannot be put back.
        await stack.kill('gateway');
        await expect
          .poll(() => stack.lifecycles.status(id).then((s) => s.stage), { timeout: 90_000, interval: 250 })
          .toBe('rollback-stuck');
        const stuck = await stack.lifecycles.status(id);
        expect(stuck.trafficPercent).toBe(10);
        const end = await stack.client.workflow.getHandle(id).result();
        expect(end.stage).toBe('rollback-stuck');
        expect(end.error?.type).toBe('RollbackStuck');
        expect(end.error?.message).toMatch(/could not go on: .*rollback stuck: traffic could not be put back on v1/);

        await stack.restart('gateway');
        // Nothing that may still serve was taken away: the candidate is loaded at its canary weight, both versions keep
        // their serving quota (the candidate's no longer expires), and the model's traffic lease stays with the lifecycle.
        const routing = await stack.routing(model);
        expect(routing?.weights).toEqual({ v1: 90, v2: 10 });
        const leases = (await stack.pool()).leases.filter((l) => l.leaseId.includes(model));
        expect(leases.map((l) => l.leaseId).sort()).toEqual([`serve:${model}:v1`, `serve:${model}:v2`]);
        expect(leases.find((l) => l.leaseId.endsWith(':v2'))?.expiresAt ?? null).toBeNull();
        expect((await stack.registry(model)).traffic?.workflowId).toBe(id);
        expect((await stack.registry(model)).production?.version).toBe('v1');
      } finally {
        await load.stop();
      }
    },
    4 * 60_000,
  );
});

/**
 * Two of each: two full workers on the same task queues and two gateway replicas that the workers keep consistent
 * (GATEWAY_ADMIN_URL names both; the load spreads every user's requests over both). One of them is killed at
 * `ramping:50`:
 * - a gateway replica, restarted after a few seconds: the live one keeps serving (not one prediction through it
 *   fails), the ramp does not move while a replica cannot confirm it, and the retried weight swap brings the restarted
 *   replica (back on its persisted routing) to the other's table;
 * - a worker, restarted only once the lifecycle has ended: the other worker finishes the rollout alone (restarting it
 *   at once would let it pick its own work back up and prove less), and then it comes back so the stack is whole.
 * Besides the four invariants: both replicas end with the same routing and steps, and route probe users alike, at the
 * kill (mid-ramp, both versions) and at the end.
 */
const REPLICA_CASES: ChaosCase[] = [
  { kill: 'gateway', at: 'ramping:50', candidate: 'good', replica: 0, downMs: 5000 },
  { kill: 'worker', at: 'ramping:50', candidate: 'good', replica: 0, restartAfterEnd: true },
];

describe('chaos: one of two workers or gateway replicas killed mid-ramp', () => {
  let stack: ChaosStack;
  const outcomes: ChaosOutcome[] = [];

  beforeAll(async () => {
    installQuietRuntime();
    stack = await ChaosStack.start({ workers: 2, gateways: 2 });
  });
  afterAll(async () => {
    for (const o of outcomes) {
      console.log(
        `${`one of two: ${label(o.case)}`.padEnd(62)} → ${o.stage.padEnd(11)} consistent ${o.consistentMs} ms, ended ${o.endedMs} ms after restart`,
      );
    }
    await stack?.close();
  });

  it.each(REPLICA_CASES.map((c) => [label(c), c] as const))(
    '%s',
    async (_, c) => {
      const outcome = await runChaosCase(stack, c, uniqueName(`chaos2-${c.kill}`), CASE_TIMEOUT_MS - 20_000);
      outcomes.push(outcome);
      const detail = JSON.stringify(outcome, null, 1);
      for (const inv of outcome.invariants) expect(inv.ok, `${inv.name}: ${inv.detail}\n${detail}`).toBe(true);
      expect(outcome.invariants.map((i) => i.name)).toEqual(
        expect.arrayContaining(['replicas', 'sticky at kill', 'sticky at end']),
      );
      expect(outcome.stage).toBe('promoted');
      if (c.kill === 'gateway') {
        expect(outcome.invariants.map((i) => i.name)).toContain('held while down');
        // Only the killed replica failed predictions; the live one answered every request sent to it.
        const live = stack.gatewayUrls.filter((_, i) => i !== (c.replica ?? 0));
        for (const url of live) expect(outcome.failedByGateway[url] ?? 0, detail).toBe(0);
      } else {
        expect(outcome.failedRequests, detail).toBe(0);
      }
    },
    CASE_TIMEOUT_MS,
  );
});
