/**
 * Three "hosts" as real processes that share nothing but the Temporal server and an artifact store folder (standing for
 * a shared mount): a control-plane worker that trains nothing, a training-only worker serving `train-gpu` (the GPU
 * host), and a gateway, each with a data dir of its own. Needs `npm run build`.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LifecycleClient } from '../../src/client/lifecycle-client';
import { runningMembers } from '../../src/activities/process-group';
import { startNode, type ManagedProcess } from '../../src/dev/processes';
import type { LoadGenerator } from '../../src/dev/load-generator';
import type { ModelRouting } from '../../src/shared/gateway-api';
import type { LifecycleStatus } from '../../src/shared/status';
import { startGatewayProcess } from '../helpers/gateway-process';
import {
  approveAll,
  liveTraffic,
  newToken,
  OPEN_POLICY,
  ROOT,
  temporalAddress,
  testSpec,
  uniqueName,
  waitForStatus,
  WORKER_SECRET,
} from '../helpers/harness';
import { tempDir } from '../helpers/temp';

const WORKER_MAIN = join(ROOT, 'dist', 'src', 'workers', 'main.js');
const HOLD_TRAINER = join(ROOT, 'test', 'fixtures', 'trainers', 'hold-first-attempt-trainer.py');

const work = tempDir('mll-multi-host-');
const storeDir = join(work, 'shared-store');
const controlData = join(work, 'control-host');
const gpuData = join(work, 'gpu-host');
const gatewayHome = join(work, 'gateway-host');
// The GPU host's temp dir, where its trainers get their working folders.
const gpuTmp = join(work, 'gpu-host-tmp');
const pool = uniqueName('mh-pool');
const model = uniqueName('mh');
const adminToken = newToken();

let client: Client;
let lifecycles: LifecycleClient;
let control: ManagedProcess;
let gpu: ManagedProcess;
let gpuRestarts = 0;
let gateway: { process: ManagedProcess; publicUrl: string; adminUrl: string };
let load: LoadGenerator | undefined;

/** What every worker process shares: the Temporal server, the store, the deployment's secret, pools and policy. */
function workerEnv(): Record<string, string> {
  const pools = join(work, 'quota-pools.yaml');
  writeFileSync(
    pools,
    `pools:\n  - name: ${pool}\n    capacity: { cpu: 64, memoryGiB: 256, "gpu:t4": 2 }\n    leaseTtl: 10m\n`,
  );
  return {
    TEMPORAL_ADDRESS: temporalAddress(),
    ML_ARTIFACT_STORE: pathToFileURL(storeDir).href,
    ML_WORKER_SECRET: WORKER_SECRET,
    QUOTA_POOLS_FILE: pools,
    ML_POLICY_FILE: OPEN_POLICY,
    ALERT_GROUP_WAIT: '300ms',
    LOG_LEVEL: 'info',
  };
}

/** Resolves once the process's log (JSON lines) has a record with `msg`; fails when the process exits first. */
async function logged(proc: ManagedProcess, logFile: string, msg: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`${proc.name} exited before logging "${msg}"; see ${logFile}`);
    }
    const text = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
    if (text.split('\n').some((line) => line.includes(`"msg":"${msg}"`))) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${proc.name} did not log "${msg}" within ${timeoutMs} ms; see ${logFile}`);
}

async function startGpuHost(): Promise<ManagedProcess> {
  const logFile = join(work, `gpu-host-${++gpuRestarts}.log`);
  const proc = startNode(
    `gpu-host-${gpuRestarts}`,
    WORKER_MAIN,
    { ...workerEnv(), ML_DATA_DIR: gpuData, WORKER_CONTROL_PLANE: 'false', TRAINING_CLASSES: 'gpu', TMPDIR: gpuTmp },
    logFile,
  );
  await logged(proc, logFile, 'worker running');
  return proc;
}

/** A spec that trains on the GPU class only (the shipped catalog's gpu-t4, which draws `gpu:t4` from the pool). */
function gpuSpec(version: string, patch: (s: ReturnType<typeof testSpec>) => void = () => undefined) {
  return testSpec(model, version, 'good', (s) => {
    s.hardware.trainingClasses = ['gpu-t4'];
    // Not a CPU-only family, so that a GPU may train it.
    s.hardware.architecture = 'other';
    s.quota.pool = pool;
    patch(s);
  });
}

/** The artifacts of `version` in the shared store: `<store>/<model>/<version>/<lifecycle run>/sha256-<hex>`. */
function storedArtifacts(version: string): string[] {
  const dir = join(storeDir, model, version);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((run) => readdirSync(join(dir, run)).map((entry) => `${run}/${entry}`));
}

async function routing(): Promise<ModelRouting | undefined> {
  const res = await fetch(`${gateway.adminUrl}/admin/models`, { headers: { authorization: `Bearer ${adminToken}` } });
  return ((await res.json()) as ModelRouting[]).find((r) => r.model === model);
}

/** Who ran each trainModel (its last attempt: Temporal records the start of the attempt that ended it). */
async function trainingRuns(id: string): Promise<{ identity: string; attempt: number }[]> {
  const history = await client.workflow.getHandle(id).fetchHistory();
  const scheduled = new Map<string, string>();
  const runs: { identity: string; attempt: number }[] = [];
  for (const event of history.events ?? []) {
    const s = event.activityTaskScheduledEventAttributes;
    if (s?.activityType?.name) scheduled.set(String(event.eventId), s.activityType.name);
    const started = event.activityTaskStartedEventAttributes;
    if (started && scheduled.get(String(started.scheduledEventId)) === 'trainModel') {
      runs.push({ identity: started.identity ?? '', attempt: started.attempt ?? 0 });
    }
  }
  return runs;
}

describe('a control plane, a GPU training host and a gateway on separate hosts', () => {
  beforeAll(async () => {
    if (!existsSync(WORKER_MAIN)) throw new Error(`${WORKER_MAIN} is missing: run npm run build first`);
    mkdirSync(storeDir, { recursive: true });
    mkdirSync(gpuTmp, { recursive: true });
    gateway = await startGatewayProcess(
      'gateway',
      {
        GATEWAY_DATA_DIR: join(gatewayHome, 'data'),
        // A folder of its own: the trainer's is not there to load from.
        GATEWAY_ARTIFACT_ROOT: join(gatewayHome, 'artifacts'),
        GATEWAY_ADMIN_TOKEN: adminToken,
        ML_ARTIFACT_STORE: pathToFileURL(storeDir).href,
      },
      join(work, 'gateway.log'),
    );
    const controlLog = join(work, 'control.log');
    control = startNode(
      'control',
      WORKER_MAIN,
      {
        ...workerEnv(),
        ML_DATA_DIR: controlData,
        TRAINING_CLASSES: '',
        GATEWAY_ADMIN_URL: gateway.adminUrl,
        GATEWAY_ADMIN_TOKEN: adminToken,
      },
      controlLog,
    );
    [gpu] = await Promise.all([startGpuHost(), logged(control, controlLog, 'worker running')]);
    client = new Client({ connection: await Connection.connect({ address: temporalAddress() }) });
    lifecycles = new LifecycleClient(client);
  }, 120_000);

  afterAll(async () => {
    await load?.stop();
    await Promise.all([control, gpu, gateway?.process].filter(Boolean).map((p) => p!.stop()));
    await client?.connection.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('trains on the GPU host, and the gateway serves the artifact it fetched from the store', async () => {
    const { id } = await lifecycles.start(gpuSpec('v1'));
    load = liveTraffic(gateway.publicUrl, model, 60);
    const trained = await waitForStatus(lifecycles, id, (s) => !['provisioning', 'training'].includes(s.stage));
    expect(trained.stage).not.toBe('failed');
    // From here on the trainer's folder is gone: whoever still reads it by path fails.
    const gpuArtifacts = join(gpuData, 'artifacts');
    renameSync(gpuArtifacts, `${gpuArtifacts}.gone`);

    const end: LifecycleStatus = await approveAll(lifecycles, id);
    expect(end.stage, JSON.stringify(end.error)).toBe('promoted');

    expect(await trainingRuns(id)).toEqual([
      { identity: expect.stringMatching(new RegExp(`^${gpu.child.pid}@`)), attempt: 1 },
    ]);
    const [artifact] = storedArtifacts('v1');
    expect(storedArtifacts('v1')).toHaveLength(1);
    const hex = artifact!.split('sha256-')[1]!;

    // The gateway loaded its own cache's copy, fetched by URI and digest.
    const deployed = (await routing())?.versions.find((v) => v.version === 'v1');
    expect(deployed?.artifactUri).toBe(`${pathToFileURL(storeDir).href}/${model}/v1/${artifact}`);
    expect(deployed?.artifactDir).toBe(join(gatewayHome, 'data', 'artifact-cache', hex));
    expect(deployed?.artifactDigest).toBe(`sha256:${hex}`);
    const predicted = await fetch(`${gateway.publicUrl}/v1/models/${model}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        userId: 'u1',
        features: {
          age: 46,
          tenure_months: 21,
          monthly_charges: 90,
          support_calls: 4,
          plan: 'premium',
          region: 'south',
        },
      }),
    });
    expect(predicted.status, await predicted.clone().text()).toBe(200);
    expect(((await predicted.json()) as { version?: string }).version).toBe('v1');

    // Each host kept to its own folders: the control plane validated from its cache and trained nothing.
    expect(readdirSync(join(controlData, 'artifact-cache'))).toContain(hex);
    expect(existsSync(join(controlData, 'artifacts', model))).toBe(false);
    expect(existsSync(join(gatewayHome, 'artifacts', model))).toBe(false);
    expect(existsSync(join(gpuData, 'artifact-cache'))).toBe(false);
    expect(readdirSync(join(gpuArtifacts + '.gone', model, 'v1'))).toHaveLength(1);
  }, 120_000);

  it('finishes training on a new GPU host after the first is killed mid-training, storing the artifact once', async () => {
    const marker = join(work, 'hold-marker');
    const { id } = await lifecycles.start(
      gpuSpec('v2', (s) => {
        s.training.program = HOLD_TRAINER;
        s.training.params = { ...s.training.params, holdMarker: marker };
      }),
    );
    // The trainer of the first attempt is running (it wrote its pid to the marker): the GPU host dies under it.
    const pidIn = () => (existsSync(marker) ? Number(readFileSync(marker, 'utf8')) : 0);
    await expect.poll(pidIn, { timeout: 60_000, interval: 200 }).toBeGreaterThan(0);
    const trainer = pidIn();
    const deadHost = gpu.child.pid!;
    const workDirsOf = (pid: number) => readdirSync(gpuTmp).filter((n) => n.startsWith(`ml-train-${pid}-`));
    expect(await runningMembers(trainer)).toEqual([trainer]);
    const gone = new Promise((r) => gpu.child.once('exit', r));
    gpu.child.kill('SIGKILL');
    await gone;
    // The trainer (silent for two minutes, so no write to its closed stdout would end it) went with its worker: the
    // parent-death signal. Only its working folder is left.
    await expect.poll(() => runningMembers(trainer), { timeout: 5_000, interval: 100 }).toEqual([]);
    expect(workDirsOf(deadHost)).toHaveLength(1);
    gpu = await startGpuHost();
    // The new host removed it when it started.
    expect(workDirsOf(deadHost)).toEqual([]);

    // The attempt is lost with its worker; Temporal retries it on the new host once its heartbeat times out.
    const after = await waitForStatus(lifecycles, id, (s) => !['provisioning', 'training'].includes(s.stage), 90_000);
    expect(after.stage, JSON.stringify(after.error)).not.toBe('failed');
    // One trainModel, finished by the new host on a later attempt than the killed one's.
    expect(await trainingRuns(id)).toEqual([
      { identity: expect.stringMatching(new RegExp(`^${gpu.child.pid}@`)), attempt: 2 },
    ]);
    // Exactly one artifact, complete (no temp folder left beside it).
    const stored = storedArtifacts('v2');
    expect(stored).toEqual([expect.stringMatching(/^[^/]+\/sha256-[0-9a-f]{64}$/)]);
    expect(
      readdirSync(join(storeDir, model, 'v2', stored[0]!.split('/')[0]!, stored[0]!.split('/')[1]!)).sort(),
    ).toEqual(['files', 'manifest.json']);
    await client.workflow.getHandle(id).terminate('test done: training was what it was about');
  }, 120_000);
});
