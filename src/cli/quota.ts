import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { type Command, Option } from 'commander';
import { operationClaim, signOperation } from '../client/approval-signing';
import { updateRefusal } from '../client/lifecycle-client';
import { QuotaClient } from '../client/quota-client';
import { checkPool, estimateLifecycle, estimateRun, type LifecycleEstimate } from '../client/quota-planning';
import { loadSpecFile } from '../client/spec-file';
import { loadQuotaPools, quotaPoolsPath } from '../config/env';
import type { RunEstimate } from '../domain/quota';
import { durationArg, intArg, numberArg, parseIdentity, signingKeyArg } from './options';
import { OperationTarget } from '../shared/signed-operation';
import {
  PipelineKind,
  ReserveQuotaInput,
  ResourceName,
  type QuotaAlertState,
  type QuotaPoolState,
  type Resources,
} from '../shared/quota';
import { own } from '../shared/own';
import { table } from './format';

/** What the quota commands need from mlctl. */
export interface QuotaCommandContext {
  connect(): Promise<Client>;
  print(cmd: Command, json: unknown, text: string): void;
  /** Throws mlctl's invalid-input error (exit 2). */
  invalid(message: string): never;
  /** Throws mlctl's refused error (exit 4). */
  refused(message: string): never;
  /** Sets the exit code for a check that found a problem (5). */
  problemsFound(): void;
}

const n = (x: number) => String(Math.round(x * 100) / 100);
const res = (r: Resources) =>
  Object.entries(r)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k}=${n(v)}`)
    .join(' ') || '-';
const minutes = (ms: number) => (ms < 120_000 ? `${Math.round(ms / 1000)}s` : `${Math.round(ms / 60_000)}m`);
const until = (iso: string | null, now: number) => (iso === null ? 'never' : `in ${minutes(Date.parse(iso) - now)}`);

function parseResources(text: string, ctx: QuotaCommandContext): Resources {
  const out = new Map<string, number>();
  for (const part of text.split(',').filter(Boolean)) {
    const [k, v, ...rest] = part.split('=');
    const name = k?.trim() ?? '';
    const amount = v !== undefined && /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(v) ? Number(v) : NaN;
    if (!name || rest.length > 0 || !Number.isFinite(amount))
      ctx.invalid(`--resources: "${part}" is not resource=amount (e.g. cpu=2,memoryGiB=4)`);
    const named = ResourceName.safeParse(name);
    if (!named.success) ctx.invalid(`--resources: ${named.error.issues[0]?.message} ("${name}")`);
    if (out.has(name)) ctx.invalid(`--resources: "${name}" is given twice`);
    out.set(name, amount);
  }
  return Object.fromEntries(out);
}

export function formatPool(s: QuotaPoolState, alerts: readonly QuotaAlertState[] = []): string {
  const now = Date.parse(s.at);
  const held = s.counts?.leases ?? s.leases.length;
  const waiting = s.counts?.waiting ?? s.waiting.length;
  const lines = [
    `pool ${s.name}   leases ${held}   waiting ${waiting}   ` +
      `grants ${s.stats.grants}  refusals ${s.stats.refusals}  expired ${s.stats.expirations}`,
    '',
    table(
      [
        'RESOURCE',
        'USED',
        'CAPACITY',
        'USE%',
        'BURN/H',
        'RUNS OUT',
        ...Object.keys(s.byKind).map((k) => k.toUpperCase()),
      ],
      s.resources.map((r) => [
        r.resource,
        n(r.used),
        n(r.capacity),
        `${Math.round(r.share * 100)}%`,
        n(r.burnPerHour),
        r.exhaustedAt ? until(r.exhaustedAt, now) : '-',
        ...Object.values(s.byKind).map((k) => n(own(k, r.resource) ?? 0)),
      ]),
    ),
  ];
  if (s.leases.length > 0) {
    lines.push(
      '',
      table(
        ['LEASE', 'HOLDER', 'KIND', 'RESOURCES', 'EXPIRES'],
        s.leases.map((l) => [l.leaseId, l.holder, l.kind, res(l.resources), until(l.expiresAt, now)]),
      ),
    );
  }
  if (held > s.leases.length) {
    lines.push(
      `… ${held - s.leases.length} more leases (the ${s.leases.length} soonest to expire shown: --limit, --all)`,
    );
  }
  if (s.waiting.length > 0) {
    lines.push(
      '',
      table(
        ['WAITING', 'HOLDER', 'KIND', 'RESOURCES', 'PRIORITY', 'SINCE', 'GIVES UP'],
        s.waiting.map((w) => [
          w.leaseId,
          w.holder,
          w.kind,
          res(w.resources),
          String(w.priority),
          w.enqueuedAt,
          until(w.deadline, now),
        ]),
      ),
    );
  }
  if (waiting > s.waiting.length) {
    lines.push(
      `… ${waiting - s.waiting.length} more waiting (the first ${s.waiting.length} in line shown: --limit, --all)`,
    );
  }
  for (const a of alerts) lines.push(`ALERT [${a.severity}] ${a.summary} (since ${a.since})`);
  for (const f of s.faulty)
    lines.push(`FAULTY ${f.holder}: refused by its cap ${f.capRefusals} times since ${f.since}`);
  return lines.join('\n');
}

function formatRunEstimate(title: string, e: RunEstimate): string[] {
  const r = (x: { low: number; mid: number; high: number } | null, f: (v: number) => string) =>
    x ? `${f(x.mid)} (${f(x.low)}–${f(x.high)})` : 'unknown';
  return [
    `${title}: ${e.basis === 'history' ? `${e.similarRuns} similar runs (${e.criteria})` : `no similar runs (${e.criteria}); the declared request stands`}`,
    `  duration      ${r(e.durationMs, (v) => minutes(v))}`,
    `  peak memory   ${r(e.peakMemoryGiB, (v) => `${n(v)} GiB`)}`,
    `  cpu cores     ${r(e.cpuCores, n)}`,
    `  reserve       ${res(e.recommended)}`,
  ];
}

function formatLifecycleEstimate(e: LifecycleEstimate): string {
  const lines = [
    `${e.model} ${e.version} in pool ${e.pool}${e.training.datasetRows !== undefined ? `, ${e.training.datasetRows} training rows` : ''}`,
    ...formatRunEstimate('training', e.training),
  ];
  if ('unavailable' in e.serving) lines.push(`serving: no estimate: ${e.serving.unavailable}`);
  else {
    const s = e.serving;
    lines.push(
      `serving: ${n(s.qps)} QPS at ${Math.round(s.targetUtilization * 100)}% target utilisation (${s.basis})`,
      `  per replica   ${n(s.perReplicaRps.mid)} req/s (${n(s.perReplicaRps.low)}–${n(s.perReplicaRps.high)})`,
      `  replicas      ${s.replicas.mid} (${s.replicas.low}–${s.replicas.high})`,
      `  reserve       ${res(s.resources)}`,
    );
  }
  return lines.join('\n');
}

/** `mlctl quota show|estimate|check|reserve|renew|release`. */
export function addQuotaCommands(program: Command, ctx: QuotaCommandContext): void {
  const quota = program
    .command('quota')
    .description('shared compute quota: pools, leases, usage, alerts and estimates');
  const withJson = (cmd: Command) =>
    cmd
      .option('--json', 'machine-readable output')
      .option('--pools <file>', 'quota pools file (default: QUOTA_POOLS_FILE or config/quota-pools.yaml)');
  // The pools file is read (and validated: a bad one exits 2 naming every problem) before connecting.
  const connect = async (cmd: Command) => {
    const file = loadQuotaPools(cmd.opts<{ pools?: string }>().pools ?? quotaPoolsPath());
    return new QuotaClient(await ctx.connect(), file);
  };

  withJson(quota.command('show [pool]'))
    .description('usage per resource and kind, burn rate, leases, queue, alerts (every pool by default)')
    .addOption(
      new Option('--limit <n>', 'leases (the soonest to expire), waiting reservations and journal entries listed')
        .default(50)
        .argParser(intArg('--limit', 1, 1000)),
    )
    .option(
      '--all',
      "the pool's whole state: every lease, reservation and journal entry, and usage per pipeline " +
        '(past about 8,000 leases it is more than the server answers)',
    )
    .action(async (pool: string | undefined, o: { limit: number; all?: boolean }, cmd: Command) => {
      const client = await connect(cmd);
      const names = pool ? [pool] : client.poolNames;
      const states = [];
      for (const name of names) {
        client.config(name);
        // A summary with bounded lists: its size does not grow with the pool's leases.
        const state = o.all
          ? await client.state(name)
          : await client.state(name, { summary: true, list: { limit: o.limit } });
        const alerts = state ? ((await client.monitor(name))?.alerts ?? []) : [];
        states.push({ name, state, alerts });
      }
      const json = states.map((s) => (s.state ? { ...s.state, alerts: s.alerts } : { name: s.name, used: null }));
      ctx.print(
        cmd,
        pool ? json[0] : json,
        states
          .map((s) =>
            s.state ? formatPool(s.state, s.alerts) : `pool ${s.name}: not used yet (no reservation so far)`,
          )
          .join('\n\n'),
      );
    });

  withJson(quota.command('estimate [spec]'))
    .description(
      'estimate what a lifecycle spec needs (training from similar runs, serving from QPS), ' +
        'or with --kind a data pipeline or experiment',
    )
    .option('--factor <x>', 'similar runs have a dataset within this factor', numberArg('--factor', 1, 1000), 2)
    .option(
      '--qps <n>',
      'predicted queries per second (overrides serving.qps)',
      numberArg('--qps', 0, 1e9, { exclusiveMin: true }),
    )
    .option(
      '--gateway <url>',
      "the serving gateway's admin API, whose measured service time sizes serving (default: $GATEWAY_ADMIN_URL's first replica)",
      firstGatewayReplica(),
    )
    .addOption(new Option('--kind <kind>', 'estimate a pipeline that is not a lifecycle').choices(PipelineKind.options))
    .option('--pool <pool>', 'pool whose history to use (with --kind)', 'default')
    .option('--family <family>', 'model family or pipeline type (with --kind)')
    .option('--rows <n>', 'dataset rows (with --kind)', intArg('--rows', 0, Number.MAX_SAFE_INTEGER))
    .action(
      async (
        file: string | undefined,
        o: {
          factor: number;
          qps?: number;
          gateway?: string;
          kind?: PipelineKind;
          pool: string;
          family?: string;
          rows?: number;
        },
        cmd: Command,
      ) => {
        if ((file === undefined) === (o.kind === undefined)) ctx.invalid('give a lifecycle spec, or --kind (not both)');
        const client = await connect(cmd);
        if (o.kind) {
          client.config(o.pool);
          const e = await estimateRun(
            client,
            o.pool,
            {
              kind: o.kind,
              ...(o.family ? { family: o.family } : {}),
              ...(o.rows !== undefined ? { datasetRows: o.rows } : {}),
              declared: {},
            },
            o.factor,
          );
          ctx.print(cmd, e, formatRunEstimate(o.kind, e).join('\n'));
          return;
        }
        const spec = loadSpecFile(file!);
        client.config(spec.quota.pool);
        const e = await estimateLifecycle(client, spec, {
          gatewayUrl: (o.gateway ?? 'http://127.0.0.1:8701').replace(/\/$/, ''),
          factor: o.factor,
          ...(o.qps !== undefined ? { qps: o.qps } : {}),
        });
        ctx.print(cmd, e, formatLifecycleEstimate(e));
      },
    );

  withJson(quota.command('check [pool]'))
    .description(
      'can the pool run every registered pipeline, the running experiments and the given lifecycles at once? ' +
        'exit 0 yes, 5 no (naming what falls short)',
    )
    .option('--spec <file...>', 'lifecycle specs to include at their estimates')
    .option(
      '--gateway <url>',
      "the serving gateway's admin API, whose measured service time sizes serving (default: $GATEWAY_ADMIN_URL's first replica)",
      firstGatewayReplica(),
    )
    .action(async (pool: string | undefined, o: { spec?: string[]; gateway?: string }, cmd: Command) => {
      const client = await connect(cmd);
      const name = pool ?? 'default';
      const config = client.config(name);
      const specs = (o.spec ?? []).map((f) => loadSpecFile(f));
      for (const s of specs)
        if (s.quota.pool !== name)
          ctx.invalid(`--spec ${s.model} ${s.version}: uses pool "${s.quota.pool}", not "${name}"`);
      const estimates = [];
      for (const s of specs)
        estimates.push(
          await estimateLifecycle(client, s, { gatewayUrl: (o.gateway ?? 'http://127.0.0.1:8701').replace(/\/$/, '') }),
        );
      // The running experiments, as a summary lists them (the rest, if more than it lists, as one line).
      const state = await client.state(name, { summary: true, list: { limit: 1000, kind: 'experiment' } });
      const check = checkPool(config, state, estimates);
      if (!check.fits) ctx.problemsFound();
      const lines = [
        `pool ${name}: ${check.fits ? 'can run every pipeline below at once' : 'CANNOT run every pipeline below at once'}`,
        '',
        table(
          ['PIPELINE', 'KIND', 'RESOURCES', 'FROM'],
          check.pipelines.map((p) => [p.name, p.kind, res(p.resources), p.source]),
        ),
        '',
        `demand ${res(check.demand)}   capacity ${res(config.capacity)}`,
        ...check.problems.map(
          (p) =>
            `SHORT ${p.resource}: ${p.who} needs ${n(p.need)}, ${p.scope === 'pool' ? 'capacity' : `${p.scope} cap`} is ${n(p.limit)}`,
        ),
      ];
      ctx.print(cmd, check, lines.join('\n'));
    });

  withJson(quota.command('reserve <pool>'))
    .description('reserve quota for a pipeline outside the lifecycles (a data pipeline, an experiment)')
    .requiredOption('--lease <id>', 'lease id (idempotency key)')
    .requiredOption('--holder <pipeline>', 'the pipeline holding it; caps apply per holder')
    .addOption(new Option('--kind <kind>', 'pipeline kind').choices(PipelineKind.options).makeOptionMandatory())
    .requiredOption('--resources <list>', 'e.g. cpu=4,memoryGiB=16')
    .option(
      '--ttl <duration>',
      "lease TTL (default: the pool's); renew before it runs out",
      durationArg('--ttl', { positive: true }),
    )
    .option('--wait <duration>', 'wait in the queue this long instead of being refused at once', durationArg('--wait'))
    .option('--priority <n>', 'queue priority, higher first', intArg('--priority', -100, 100), 0)
    .option('--family <family>', 'model family or pipeline type, for later estimates')
    .option('--rows <n>', 'dataset rows, for later estimates', intArg('--rows', 0, Number.MAX_SAFE_INTEGER))
    .action(
      async (
        pool: string,
        o: {
          lease: string;
          holder: string;
          kind: PipelineKind;
          resources: string;
          ttl?: number;
          wait?: number;
          priority: number;
          family?: string;
          rows?: number;
        },
        cmd: Command,
      ) => {
        const ttlMs = o.ttl;
        const waitMs = o.wait;
        const request = ReserveQuotaInput.safeParse({
          leaseId: o.lease,
          holder: o.holder,
          kind: o.kind,
          resources: parseResources(o.resources, ctx),
          ...(ttlMs !== undefined ? { ttlMs } : {}),
          ...(waitMs ? { wait: { timeoutMs: waitMs, priority: o.priority } } : {}),
          ...(o.family || o.rows !== undefined
            ? {
                profile: {
                  ...(o.family ? { family: o.family } : {}),
                  ...(o.rows !== undefined ? { datasetRows: o.rows } : {}),
                },
              }
            : {}),
        });
        if (!request.success)
          ctx.invalid(request.error.issues.map((i) => `${i.path.join('.') || '(request)'}: ${i.message}`).join('; '));
        const client = await connect(cmd);
        client.config(pool);
        const result = await client.reserve(pool, request.data);
        if (!result.granted) {
          ctx.print(cmd, result, result.message);
          ctx.refused(
            `${result.message}${result.earliestRelease ? `; quota expected back at ${result.earliestRelease}` : ''}`,
          );
        }
        ctx.print(
          cmd,
          result,
          `granted ${result.lease.leaseId} to ${result.lease.holder}: ${res(result.lease.resources)}, ` +
            `expires ${result.lease.expiresAt ?? 'never'}`,
        );
      },
    );

  /**
   * Who renews or releases: mlctl holds no lease's owner key (its client lives for one command), so both are privileged
   * operations on the pool: `--as` a quota operator or the lease's holder, signed with `--key` (or MLCTL_SIGNING_KEY)
   * where the platform policy requires it. A refusal is exit 4.
   */
  const acting = (
    pool: string,
    lease: string,
    op: 'quota-renew' | 'quota-release',
    o: { as: string; key?: string },
  ): { by: string; signed?: unknown } => {
    const by = parseIdentity(o.as);
    const key = signingKeyArg(o.key);
    if (!key) return { by };
    const claim = operationClaim({ op, target: OperationTarget.lease(pool, lease), by });
    return { by, signed: signOperation(claim, key) };
  };
  const refusals = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw updateRefusal(err);
      throw err;
    }
  };
  const AS_HELP = "your identity: a quota operator, or the lease's holder (recorded in the pool's journal)";
  const KEY_HELP = 'sign with this private key (default: $MLCTL_SIGNING_KEY); required by the default policy';

  withJson(quota.command('renew <pool> <lease>'))
    .description('extend a lease by its TTL (or --ttl)')
    .requiredOption('--as <user>', AS_HELP)
    .option('--key <file>', KEY_HELP)
    .option('--ttl <duration>', 'new TTL', durationArg('--ttl', { positive: true }))
    .action(async (pool: string, lease: string, o: { as: string; key?: string; ttl?: number }, cmd: Command) => {
      const ttlMs = o.ttl;
      const who = acting(pool, lease, 'quota-renew', o);
      const client = await connect(cmd);
      client.config(pool);
      const renewed = await refusals(() =>
        client.renew(pool, { leaseId: lease, ...(ttlMs !== undefined ? { ttlMs } : {}), ...who }),
      );
      if (!renewed) ctx.refused(`pool "${pool}" does not hold lease ${lease} (released or expired)`);
      ctx.print(cmd, renewed, `${lease} renewed until ${renewed.expiresAt ?? 'never'}`);
    });

  withJson(quota.command('release <pool> <lease>'))
    .description('release a lease (releasing twice is harmless)')
    .requiredOption('--as <user>', AS_HELP)
    .option('--key <file>', KEY_HELP)
    .action(async (pool: string, lease: string, o: { as: string; key?: string }, cmd: Command) => {
      const who = acting(pool, lease, 'quota-release', o);
      const client = await connect(cmd);
      client.config(pool);
      const released = await refusals(() => client.release(pool, { leaseId: lease, ...who }));
      ctx.print(
        cmd,
        { released: released !== null, lease: released },
        released ? `released ${lease}: ${res(released.resources)}` : `${lease} was not held (nothing to release)`,
      );
    });
}

/** The worker's gateway (GATEWAY_ADMIN_URL, a comma-separated list of replicas): its first replica measures. */
function firstGatewayReplica(): string | undefined {
  const first = process.env.GATEWAY_ADMIN_URL?.split(',')[0]?.trim();
  return first ? first : undefined;
}
