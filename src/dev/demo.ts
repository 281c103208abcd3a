import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { Command } from 'commander';
import { LifecycleClient } from '../client/lifecycle-client';
import { loadSpecFile } from '../client/spec-file';
import { projectRoot } from '../config/paths';
import { registryStateQuery } from '../shared/messages';
import { registryWorkflowId } from '../shared/registry';
import type { LifecycleSpec } from '../shared/spec';
import { TERMINAL_STAGES, type LifecycleStatus } from '../shared/status';
import { startDevServer, type DevServer } from './dev-server';
import { LoadGenerator } from './load-generator';
import { portOpen, waitFor } from './ports';
import { startNode, type ManagedProcess } from './processes';

/**
 * The main job: a local Temporal dev server (persistent, with its Web UI), the worker, the serving gateway and live
 * traffic; then the demo lifecycles of the churn model: a good candidate promoted to 100% and a bad candidate caught
 * by its canary and rolled back. Runs until Ctrl-C, which stops every child.
 */
const options = new Command('demo')
  .option('--interactive', 'wait for `mlctl approve` instead of approving as the scripted approver')
  .option('--exit', 'stop everything once the demo lifecycles have ended')
  .option(
    '--data-dir <dir>',
    'persistent state (Temporal SQLite, gateway, artifacts, logs)',
    join(projectRoot(), 'data'),
  )
  .option('--temporal-port <port>', 'Temporal gRPC port', '7233')
  .option('--ui-port <port>', 'Temporal Web UI port', '8233')
  .option('--gateway-port <port>', 'serving gateway port', '8700')
  .option('--metrics-port <port>', "the worker's Prometheus endpoint (0: off)", '9464')
  .option('--rate <rps>', 'live predictions per second', '50')
  .parse()
  .opts<{
    interactive?: boolean;
    exit?: boolean;
    dataDir: string;
    temporalPort: string;
    uiPort: string;
    gatewayPort: string;
    metricsPort: string;
    rate: string;
  }>();

const root = projectRoot();
const MODEL = 'churn';
const APPROVER = 'alice';
const say = (text: string) => process.stdout.write(`${text}\n`);

const children: ManagedProcess[] = [];
let server: DevServer | null = null;
let load: LoadGenerator | null = null;
let stopping = false;

async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say('\nstopping: load generator, worker, gateway, Temporal server ...');
    await load?.stop().catch(() => undefined);
    for (const child of [...children].reverse()) await child.stop().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    say('stopped; state kept in ' + options.dataDir + ' (the next start resumes from it)');
  }
  process.exit(code);
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  const temporalPort = Number(options.temporalPort);
  const uiPort = Number(options.uiPort);
  const gatewayPort = Number(options.gatewayPort);
  const metricsPort = Number(options.metricsPort);
  const address = `127.0.0.1:${temporalPort}`;
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const logs = join(options.dataDir, 'logs');

  if (await portOpen(temporalPort)) {
    say(`Temporal: something already listens on ${address}; using it`);
  } else {
    say(`Temporal: starting the dev server on ${address} (SQLite in ${join(options.dataDir, 'temporal')}) ...`);
    server = await startDevServer({
      dbFile: join(options.dataDir, 'temporal', 'temporal.db'),
      port: temporalPort,
      uiPort,
    });
  }
  const uiUrl = `http://localhost:${uiPort}`;

  if (await portOpen(gatewayPort))
    throw new Error(`port ${gatewayPort} is taken: stop what listens there or pass --gateway-port`);
  const gateway = startNode(
    'gateway',
    join(root, 'dist', 'src', 'serving', 'main.js'),
    { GATEWAY_PORT: String(gatewayPort), GATEWAY_DATA_DIR: join(options.dataDir, 'gateway') },
    join(logs, 'gateway.log'),
  );
  children.push(gateway);
  await waitFor('serving gateway', async () => (await fetch(`${gatewayUrl}/healthz`)).ok, 30_000);
  say(`Gateway: ${gatewayUrl} (log ${join(logs, 'gateway.log')})`);

  const metricsOn = metricsPort > 0 && !(await portOpen(metricsPort));
  const worker = startNode(
    'worker',
    join(root, 'dist', 'src', 'workers', 'main.js'),
    {
      TEMPORAL_ADDRESS: address,
      TEMPORAL_NAMESPACE: 'default',
      GATEWAY_URL: gatewayUrl,
      ML_DATA_DIR: options.dataDir,
      ...(metricsOn ? { METRICS_PORT: String(metricsPort) } : {}),
    },
    join(logs, 'worker.log'),
  );
  children.push(worker);
  worker.child.once('exit', (code) => {
    if (!stopping) {
      say(`worker exited unexpectedly (code ${code}); see ${join(logs, 'worker.log')}`);
      void shutdown(1);
    }
  });
  say(`Worker: started (log ${join(logs, 'worker.log')})`);

  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const lifecycles = new LifecycleClient(client);

  load = new LoadGenerator({
    gatewayUrl,
    model: MODEL,
    rowsCsv: join(root, 'examples', MODEL, 'data', 'test.csv'),
    labelColumn: 'churned',
    dropColumns: ['customer_id'],
    ratePerSecond: Number(options.rate),
  });
  load.start();
  say(
    `Load: ${options.rate} predictions/s from 5,000 simulated users to POST ${gatewayUrl}/v1/models/${MODEL}/predict`,
  );

  const good = loadSpecFile(join(root, 'examples', MODEL, 'specs', 'good.yaml'));
  const bad = loadSpecFile(join(root, 'examples', MODEL, 'specs', 'bad.yaml'));
  let next = await nextVersionNumber(lifecycles);
  const ran: string[] = [];

  const production = await client.workflow
    .getHandle(registryWorkflowId(MODEL))
    .query(registryStateQuery)
    .then((s) => s.production)
    .catch(() => null);
  if (!production) {
    say(`\n== ${MODEL} has no production version yet: deploying a first one (v${next}) ==`);
    ran.push(
      await runOne(lifecycles, { ...good, version: `v${next++}`, description: 'First production version' }, uiUrl),
    );
  } else {
    say(`\n== production: ${MODEL} ${production.version} (from a previous run) ==`);
  }
  say(`\n== a good candidate: canary, ramp, promote ==`);
  ran.push(await runOne(lifecycles, { ...good, version: `v${next++}` }, uiUrl));
  say(`\n== a bad candidate (skewed feature pipeline): the canary must catch it ==`);
  ran.push(await runOne(lifecycles, { ...bad, version: `v${next++}` }, uiUrl));

  const { ok, failed, byVersion, failedBy } = load.stats;
  const answered = Object.entries(byVersion)
    .map(([v, n]) => `${v}: ${n}`)
    .join(', ');
  say(`\nlive traffic so far: ${ok} answered (${answered}), ${failed} failed`);
  if (failedBy['404']) say(`  ${failedBy['404']} of the failures are 404s from before ${MODEL} had a serving version`);
  say(`
Where to look
  Temporal UI:   ${uiUrl}/namespaces/default/workflows?query=${encodeURIComponent(`MlModel="${MODEL}"`)}
${ran.map((id) => `                 ${uiUrl}/namespaces/default/workflows/${id}`).join('\n')}
  Gateway:       ${gatewayUrl}/admin/models/${MODEL}   ${gatewayUrl}/admin/models/${MODEL}/telemetry
${metricsOn ? `  Metrics:       http://127.0.0.1:${metricsPort}/metrics (Grafana: deploy/grafana/ml-lifecycle-dashboard.json)\n` : ''}  Monitor:       ${uiUrl}/namespaces/default/workflows/serving-monitor-${MODEL} (checks production every minute)
  Logs:          ${logs}

Try (in another terminal, from ${root}):
  npx mlctl list
  npx mlctl status ${ran.at(-1)}
  npx mlctl status ${ran.at(-1)} --json
  npx mlctl run examples/churn/specs/good.yaml --model-version v${next}
  npx mlctl approve lifecycle-${MODEL}-v${next} --as bob --reason "looks good"
  npx mlctl alerts --model ${MODEL}
  npx mlctl quota show
  npx mlctl quota estimate examples/churn/specs/good.yaml --qps 200
  npx mlctl quota check default --spec examples/churn/specs/good.yaml
`);
  if (options.exit) await shutdown(0);
  say('Everything keeps running; Ctrl-C stops it all.');
}

async function nextVersionNumber(lifecycles: LifecycleClient): Promise<number> {
  const rows = await lifecycles.list({ model: MODEL, limit: 1000 });
  const numbers = rows.map((r) => /^v(\d+)$/.exec(r.version ?? '')?.[1]).filter((n): n is string => n !== undefined);
  return numbers.length ? Math.max(...numbers.map(Number)) + 1 : 1;
}

/** Starts one lifecycle, approves its gates as the scripted approver (or waits for a human), prints its progress. */
async function runOne(lifecycles: LifecycleClient, spec: LifecycleSpec, uiUrl: string): Promise<string> {
  const { id } = await lifecycles.start(spec);
  say(`started ${id}: ${uiUrl}/namespaces/default/workflows/${id}`);
  let seen = 0;
  let status: LifecycleStatus;
  const announced = new Set<string>();
  for (;;) {
    status = await lifecycles.status(id);
    for (const e of status.events.slice(seen)) say(`  ${e.at.slice(11, 19)}  ${e.stage.padEnd(17)} ${e.message}`);
    seen = status.events.length;
    if (TERMINAL_STAGES.includes(status.stage)) break;
    const gate = status.pendingGate;
    if (gate && !announced.has(gate.gate)) {
      announced.add(gate.gate);
      if (options.interactive) {
        say(`  >> waiting for you: npx mlctl approve ${id} --as ${APPROVER} --reason "..."   (or reject)`);
      } else {
        const ack = await lifecycles.approve(id, {
          by: APPROVER,
          gate: gate.gate,
          reason: 'scripted approver of the demo',
        });
        say(`  >> ${APPROVER} approved gate "${ack.gate}" (the same update \`mlctl approve\` sends)`);
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  const failed = status.decisions.filter((d) => d.outcome === 'fail');
  say(`result: ${id} ${status.stage} at ${status.trafficPercent}% traffic`);
  for (const d of failed) say(`  breached: ${d.stage} ${d.check} = ${d.value} (${d.rule}, n=${d.sampleSize ?? '?'})`);
  return id;
}

main().catch(async (err: unknown) => {
  process.stderr.write(`demo: ${err instanceof Error ? err.message : String(err)}\n`);
  await shutdown(1);
});
