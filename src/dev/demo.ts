import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { Command } from 'commander';
import { generateApproverKey } from '../client/approval-signing';
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
 * traffic; then the demo lifecycles of an example model (`--model`: churn by default, demand, routing or all): a good
 * candidate promoted to 100% and a bad candidate caught by its canary and rolled back. Runs until Ctrl-C, which stops every child.
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
  .option('--gateway-port <port>', 'serving gateway port (predictions and labels)', '8700')
  .option('--gateway-admin-port <port>', "serving gateway's admin port (the worker's deploys and reads)", '8701')
  .option('--metrics-port <port>', "the worker's Prometheus endpoint (0: off)", '9464')
  .option('--rate <rps>', 'live predictions per second (per model)', '50')
  .option(
    '--model <name>',
    'which example to run: churn (binary), demand (regression), routing (multiclass), or all',
    'churn',
  )
  .parse()
  .opts<{
    interactive?: boolean;
    exit?: boolean;
    dataDir: string;
    temporalPort: string;
    uiPort: string;
    gatewayPort: string;
    gatewayAdminPort: string;
    metricsPort: string;
    rate: string;
    model: string;
  }>();

const root = projectRoot();

/** The example models the demo can run: each one's live traffic comes from its test set. */
const EXAMPLES = {
  churn: { labelColumn: 'churned', dropColumns: ['customer_id'], what: 'binary classifier, scikit-learn' },
  demand: { labelColumn: 'units_sold', dropColumns: ['record_id'], what: 'regression, LightGBM' },
  routing: { labelColumn: 'queue', dropColumns: ['ticket_id'], what: 'multiclass classifier, XGBoost' },
} as const;
type ExampleName = keyof typeof EXAMPLES;
const EXAMPLE_NAMES = Object.keys(EXAMPLES) as ExampleName[];

/** The examples `--model` names, or exit 2 naming the choices. */
function chosenModels(choice: string): ExampleName[] {
  if (choice === 'all') return EXAMPLE_NAMES;
  if ((EXAMPLE_NAMES as string[]).includes(choice)) return [choice as ExampleName];
  process.stderr.write(`demo: --model: "${choice}" is not one of ${EXAMPLE_NAMES.join(', ')}, all\n`);
  process.exit(2);
}
const MODELS = chosenModels(options.model);
const APPROVER = 'alice';
/** The people of the shipped policy (config/policy.yaml): approvers and the operator. */
const PEOPLE = ['alice', 'bob', 'ops'] as const;

/**
 * The demo's signing keys: one Ed25519 key per person of the shipped policy, kept in `<data>/keys/<name>.pem` (mode
 * 0600; made once, reused on later starts), and the keyring the worker trusts, written from their public keys.
 */
function demoKeys(dataDir: string): { dir: string; keyring: string; privateKey: (who: string) => string } {
  const dir = join(dataDir, 'keys');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lines: string[] = ['approvers:'];
  for (const who of PEOPLE) {
    const pemFile = join(dir, `${who}.pem`);
    const pubFile = join(dir, `${who}.pub`);
    if (!existsSync(pemFile) || !existsSync(pubFile)) {
      const key = generateApproverKey();
      writeFileSync(pemFile, key.privateKeyPem, { mode: 0o600 });
      chmodSync(pemFile, 0o600);
      writeFileSync(pubFile, `${key.publicKey}\n`);
    }
    lines.push(`  ${who}: { keys: ["${readFileSync(pubFile, 'utf8').trim()}"] }`);
  }
  const keyring = join(dir, 'keyring.yaml');
  writeFileSync(keyring, `${lines.join('\n')}\n`);
  return { dir, keyring, privateKey: (who) => readFileSync(join(dir, `${who}.pem`), 'utf8') };
}
const say = (text: string) => process.stdout.write(`${text}\n`);

const children: ManagedProcess[] = [];
let server: DevServer | null = null;
const loads: LoadGenerator[] = [];
let stopping = false;

let keys: ReturnType<typeof demoKeys> | undefined;

async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say('\nstopping: load generator, worker, gateway, Temporal server ...');
    await Promise.all(loads.map((l) => l.stop().catch(() => undefined)));
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
  const gatewayAdminPort = Number(options.gatewayAdminPort);
  const metricsPort = Number(options.metricsPort);
  const address = `127.0.0.1:${temporalPort}`;
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const gatewayAdminUrl = `http://127.0.0.1:${gatewayAdminPort}`;
  const logs = join(options.dataDir, 'logs');
  // Fresh tokens for every run, known only to the demo's own processes (through their environment). The admin token
  // is also written to a file only the user can read, for trying the admin API by hand.
  const adminToken = randomBytes(32).toString('base64url');
  const labelsToken = randomBytes(32).toString('base64url');
  const adminTokenFile = join(options.dataDir, 'gateway-admin.token');
  mkdirSync(options.dataDir, { recursive: true });
  keys = demoKeys(options.dataDir);
  writeFileSync(adminTokenFile, `${adminToken}\n`, { mode: 0o600 });
  chmodSync(adminTokenFile, 0o600);

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
  if (await portOpen(gatewayAdminPort))
    throw new Error(`port ${gatewayAdminPort} is taken: stop what listens there or pass --gateway-admin-port`);
  const gateway = startNode(
    'gateway',
    join(root, 'dist', 'src', 'serving', 'main.js'),
    {
      GATEWAY_PORT: String(gatewayPort),
      GATEWAY_ADMIN_PORT: String(gatewayAdminPort),
      GATEWAY_DATA_DIR: join(options.dataDir, 'gateway'),
      // Where the worker writes what it trains (ML_DATA_DIR/artifacts): the only folder the gateway loads from.
      GATEWAY_ARTIFACT_ROOT: join(options.dataDir, 'artifacts'),
      GATEWAY_ADMIN_TOKEN: adminToken,
      GATEWAY_LABELS_TOKEN: labelsToken,
    },
    join(logs, 'gateway.log'),
  );
  children.push(gateway);
  await waitFor(
    'serving gateway',
    async () => (await fetch(`${gatewayUrl}/healthz`)).ok && (await fetch(`${gatewayAdminUrl}/healthz`)).ok,
    30_000,
  );
  say(`Gateway: ${gatewayUrl}, admin API ${gatewayAdminUrl} (log ${join(logs, 'gateway.log')})`);

  const metricsOn = metricsPort > 0 && !(await portOpen(metricsPort));
  const worker = startNode(
    'worker',
    join(root, 'dist', 'src', 'workers', 'main.js'),
    {
      TEMPORAL_ADDRESS: address,
      TEMPORAL_NAMESPACE: 'default',
      GATEWAY_ADMIN_URL: gatewayAdminUrl,
      GATEWAY_ADMIN_TOKEN: adminToken,
      ML_DATA_DIR: options.dataDir,
      // The shipped platform policy (config/policy.yaml: signatures required) and the demo's keyring.
      ML_APPROVER_KEYS: keys.keyring,
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

  const ran: string[] = [];
  const nextOf = new Map<ExampleName, number>();
  for (const model of MODELS) {
    const example = EXAMPLES[model];
    const load = new LoadGenerator({
      gatewayUrl,
      model,
      rowsCsv: join(root, 'examples', model, 'data', 'test.csv'),
      labelColumn: example.labelColumn,
      dropColumns: [...example.dropColumns],
      ratePerSecond: Number(options.rate),
      // Ground truth follows each answer a second later, as a labelling pipeline would send it, with its own token.
      labelDelayMs: 1000,
      labelsToken,
    });
    loads.push(load);
    load.start();
    say(
      `\nLoad: ${options.rate} predictions/s from 5,000 simulated users to POST ${gatewayUrl}/v1/models/${model}/predict`,
    );

    const good = loadSpecFile(join(root, 'examples', model, 'specs', 'good.yaml'));
    const bad = loadSpecFile(join(root, 'examples', model, 'specs', 'bad.yaml'));
    let next = await nextVersionNumber(lifecycles, model);

    const production = await client.workflow
      .getHandle(registryWorkflowId(model))
      .query(registryStateQuery)
      .then((s) => s.production)
      .catch(() => null);
    if (!production) {
      say(`\n== ${model} (${example.what}) has no production version yet: deploying a first one (v${next}) ==`);
      ran.push(
        await runOne(lifecycles, { ...good, version: `v${next++}`, description: 'First production version' }, uiUrl),
      );
    } else {
      say(`\n== production: ${model} ${production.version} (from a previous run) ==`);
    }
    say(`\n== ${model}: a good candidate: canary, ramp, promote ==`);
    ran.push(await runOne(lifecycles, { ...good, version: `v${next++}` }, uiUrl));
    say(`\n== ${model}: a bad candidate (a feature trained in other units): the canary must catch it ==`);
    ran.push(await runOne(lifecycles, { ...bad, version: `v${next++}` }, uiUrl));
    nextOf.set(model, next);

    const { ok, failed, byVersion, failedBy } = load.stats;
    const answered = Object.entries(byVersion)
      .map(([v, n]) => `${v}: ${n}`)
      .join(', ');
    say(`\n${model}: live traffic so far: ${ok} answered (${answered}), ${failed} failed`);
    if (failedBy['404'])
      say(`  ${failedBy['404']} of the failures are 404s from before ${model} had a serving version`);
  }
  // Where to look and what to try next, for the first model of the run.
  const shown = MODELS[0]!;
  const next = nextOf.get(shown) ?? 1;
  say(`
Where to look
  Temporal UI:   ${uiUrl}/namespaces/default/workflows?query=${encodeURIComponent(`MlModel="${shown}"`)}
${ran.map((id) => `                 ${uiUrl}/namespaces/default/workflows/${id}`).join('\n')}
  Gateway admin: curl -H "authorization: Bearer $(cat ${adminTokenFile})" ${gatewayAdminUrl}/admin/models/${shown}
                 (and ${gatewayAdminUrl}/admin/models/${shown}/telemetry; the token is new on every demo start)
${metricsOn ? `  Metrics:       http://127.0.0.1:${metricsPort}/metrics (Grafana: deploy/grafana/ml-lifecycle-dashboard.json)\n` : ''}  Monitor:       ${uiUrl}/namespaces/default/workflows/serving-monitor-${shown} (checks production every minute)
  Logs:          ${logs}

Try (in another terminal, from ${root}):
  npx mlctl list
  npx mlctl status ${ran.at(-1)}
  npx mlctl status ${ran.at(-1)} --json
  npx mlctl run examples/${shown}/specs/good.yaml --model-version v${next}
  npx mlctl approve lifecycle-${shown}-v${next} --as bob --key ${join(keys!.dir, 'bob.pem')} --reason "looks good"
  npx mlctl audit ${shown}
  npx mlctl alerts --model ${shown}
  npx mlctl quota show
  GATEWAY_ADMIN_TOKEN_FILE=${adminTokenFile} npx mlctl quota estimate examples/${shown}/specs/good.yaml --qps 200 --gateway ${gatewayAdminUrl}
  npx mlctl quota check default --spec examples/${shown}/specs/good.yaml
  curl -s ${gatewayUrl}/v2/models/${shown}   # the Open Inference Protocol (KServe v2) metadata of the model
`);
  if (options.exit) await shutdown(0);
  say('Everything keeps running; Ctrl-C stops it all.');
}

async function nextVersionNumber(lifecycles: LifecycleClient, model: string): Promise<number> {
  const rows = await lifecycles.list({ model, limit: 1000 });
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
        say(
          `  >> waiting for you: npx mlctl approve ${id} --as ${APPROVER} --key ${join(keys!.dir, `${APPROVER}.pem`)} --reason "..."   (or reject)`,
        );
      } else {
        const ack = await lifecycles.approve(
          id,
          { by: APPROVER, gate: gate.gate, reason: 'scripted approver of the demo' },
          keys!.privateKey(APPROVER),
        );
        say(
          `  >> ${APPROVER} approved gate "${ack.gate}", signed with her key (the same update \`mlctl approve --key\` sends)`,
        );
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
