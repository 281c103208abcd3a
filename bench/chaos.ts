/**
 * What a kill costs a rollout: for each kill point, the outcome and the time from restart to traffic consistent.
 *
 * Starts a whole stack of real processes (`ChaosStack`, src/dev/chaos.ts): a Temporal dev server persisting to SQLite,
 * the serving gateway and the worker, on free ports with their own temp data. For each case a fresh model gets `v1`
 * promoted under live traffic (50 predictions/s of examples/churn/data/test.csv), then `v2` (examples/churn/specs,
 * good or bad, with short bakes) is started and driven (gates approved as alice); at the kill point the process is
 * killed with SIGKILL, left down for `--down`, restarted on the same state, and the lifecycle is driven to its end.
 * `rolling-back` aborts the canary and kills right after the abort is acknowledged.
 *
 * Per case it prints: the stage seen at the kill, the end stage and reason, the four invariants (outcome for the right
 * reason; gateway weights = registry production at 100 %, nothing else loaded; pool leases = the production serving
 * lease only; no step applied twice, one deploy, one promotion record), `consistent` (restart → the lifecycle answers
 * and its traffic share of the candidate is the gateway's weight of it) and `ended` (restart → terminal stage), the
 * predictions that failed while the case ran, and the alerts the worker raised. Then `BENCH_JSON {...}`. Exits 1 if
 * an invariant failed.
 *
 * Run: `npm run bench:chaos` (builds, then `node dist/bench/chaos.js`). Options:
 *   --process P   worker, gateway or server; repeatable (all three)
 *   --at K        a kill point; repeatable (every one: provisioning … rolling-back)
 *   --bad         the candidate is the bad one (skewed predictions): it must roll back on its check
 *   --down D      seconds the killed process stays down (0)
 */
import { parseArgs } from 'node:util';
import {
  CHAOS_PROCESSES,
  ChaosStack,
  KILL_POINTS,
  runChaosCase,
  type ChaosCase,
  type ChaosOutcome,
  type ChaosProcess,
  type KillPoint,
} from '../src/dev/chaos';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      process: { type: 'string', multiple: true },
      at: { type: 'string', multiple: true },
      bad: { type: 'boolean', default: false },
      down: { type: 'string', default: '0' },
    },
  });
  const processes = (values.process ?? [...CHAOS_PROCESSES]) as ChaosProcess[];
  const points = (values.at ?? [...KILL_POINTS]) as KillPoint[];
  for (const p of processes)
    if (!CHAOS_PROCESSES.includes(p)) throw new Error(`--process: not one of ${CHAOS_PROCESSES.join(', ')}: ${p}`);
  for (const k of points)
    if (!KILL_POINTS.includes(k)) throw new Error(`--at: not one of ${KILL_POINTS.join(', ')}: ${k}`);
  const downMs = Number(values.down) * 1000;
  if (!Number.isFinite(downMs) || downMs < 0) throw new Error(`--down: seconds, at least 0: ${values.down}`);

  const stack = await ChaosStack.start();
  const outcomes: ChaosOutcome[] = [];
  let broken = 0;
  try {
    console.log(
      `${'process'.padEnd(8)} ${'kill at'.padEnd(18)} ${'seen'.padEnd(18)} ${'ended'.padEnd(12)} ${'invariants'.padEnd(24)} ${'consistent'.padStart(11)} ${'ended'.padStart(9)}  failed  alerts`,
    );
    for (const kill of processes) {
      for (const at of points) {
        const c: ChaosCase = { kill, at, candidate: values.bad ? 'bad' : 'good', ...(downMs ? { downMs } : {}) };
        const o = await runChaosCase(stack, c, `chaos-${kill}-${Date.now().toString(36)}`);
        outcomes.push(o);
        const bad = o.invariants.filter((i) => !i.ok);
        if (bad.length) broken++;
        console.log(
          `${kill.padEnd(8)} ${at.padEnd(18)} ${o.stageAtKill.padEnd(18)} ${o.stage.padEnd(12)} ${(bad.length ? `BROKEN ${bad.map((i) => i.name).join(',')}` : 'all 4 hold').padEnd(24)} ${`${o.consistentMs} ms`.padStart(11)} ${`${(o.endedMs / 1000).toFixed(1)} s`.padStart(9)}  ${String(o.failedRequests).padStart(6)}  ${o.alerts.join(', ')}`,
        );
        for (const i of bad) console.log(`    ${i.name}: ${i.detail}`);
        if (o.reason) console.log(`    reason: ${o.reason}`);
      }
    }
  } finally {
    await stack.close();
  }
  console.log(`BENCH_JSON ${JSON.stringify({ bench: 'chaos', outcomes })}`);
  if (broken) {
    console.error(`${broken} case(s) broke an invariant`);
    process.exit(1);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
