import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { Command, CommanderError, Option } from 'commander';
import { z } from 'zod';
import { InvalidInputError, LifecycleClient, NotFoundError, RefusedError } from '../client/lifecycle-client';
import { servingMonitorQuery, servingMonitorWorkflowId, type ServingMonitorState } from '../shared/monitoring';
import { PlanInputError } from '../client/hardware-planning';
import { UnknownPoolError } from '../client/quota-client';
import { loadSpecFile } from '../client/spec-file';
import { durationArg, intArg, OptionError, parseIdentity, signingKeyArg } from './options';
import { validRollbackSteps } from '../shared/registry';
import { InvalidFileError } from '../config/yaml-file';
import { connectClient } from '../config/temporal';
import { registerSearchAttributes } from '../dev/register-search-attributes';
import { formatAudit, formatHistory, formatList, formatMonitor, formatStatus } from './format';
import { auditModel } from '../client/audit';
import { ModelName } from '../shared/names';
import { addAlertsCommands } from './alerts';
import { addDataCommands } from './data';
import { addHardwareCommands } from './hardware';
import { addKeysCommands } from './keys';
import { addQuotaCommands } from './quota';
import { addReportCommand } from './report';

/** mlctl exit codes (DESIGN.md §4). */
export const Exit = { Ok: 0, Failure: 1, Invalid: 2, NotFound: 3, Refused: 4, ProblemsFound: 5 } as const;

class InputError extends Error {}
/** A check ran and found a problem (exit 5): the pool falls short, the data drifted. */
let problemsFound = false;

interface GlobalOptions {
  json?: boolean;
  verbose?: boolean;
}

let client: Client | undefined;

async function lifecycles(): Promise<LifecycleClient> {
  client = await connectClient();
  return new LifecycleClient(client);
}

function print(opts: GlobalOptions, json: unknown, text: string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`);
}

export function buildProgram(): Command {
  const program = new Command('mlctl')
    .description('Drive ML model lifecycles on Temporal: run, watch, approve, pause, resume, abort.')
    .option('--json', 'machine-readable output')
    .option('--verbose', 'stack traces on errors')
    .showHelpAfterError()
    .exitOverride();
  program.configureHelp({ showGlobalOptions: true });
  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  const withJson = (cmd: Command) => cmd.option('--json', 'machine-readable output');
  const merged = (cmd: Command): GlobalOptions => ({ ...globals(), ...cmd.opts<GlobalOptions>() });

  withJson(program.command('run <spec>'))
    .description('validate a lifecycle spec and start its lifecycle; prints the lifecycle id')
    .option('--dry-run', 'validate only')
    .option('--model-version <version>', "override the spec's version (e.g. a build number)")
    .action(async (file: string, o: { modelVersion?: string }, cmd: Command) => {
      const spec = loadSpecFile(file, { version: o.modelVersion });
      const opts = merged(cmd);
      if ((cmd.opts() as { dryRun?: boolean }).dryRun) {
        print(opts, { valid: true, spec }, `${file}: valid (${spec.model} ${spec.version})`);
        return;
      }
      const client = await lifecycles();
      const started = await client.start(spec);
      // A spec that loosens the platform policy is refused by the worker at once: say so here, not in the status.
      const policyRule = await client.awaitPolicy(started.id);
      print(
        opts,
        { id: started.id, runId: started.runId, model: spec.model, version: spec.version, policyRule },
        started.id,
      );
    });

  withJson(program.command('init'))
    .description("register the project's search attributes on the configured namespace (once per cluster)")
    .action(async (_o: unknown, cmd: Command) => {
      client = await connectClient();
      const added = await registerSearchAttributes(client.connection, client.options.namespace);
      print(
        merged(cmd),
        { namespace: client.options.namespace, added },
        added.length
          ? `registered ${added.join(', ')} on ${client.options.namespace}`
          : `search attributes already registered on ${client.options.namespace}`,
      );
    });

  withJson(program.command('status <id>'))
    .description('stage, traffic, approvals and decisions of a lifecycle')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const status = await (await lifecycles()).status(id);
      print(merged(cmd), status, formatStatus(status));
    });

  /** The signer's private key: `--key`, else MLCTL_SIGNING_KEY; unsigned when neither is set. */
  const signingKey = (file: string | undefined): string | undefined => signingKeyArg(file);
  withJson(program.command('rollback <model>'))
    .description('put an earlier version back in production now: one atomic traffic swap, recorded in the registry')
    .option('--to <version>', 'the version to return to (default: the previous production version)')
    .requiredOption('--as <user>', 'your identity, recorded with the rollback')
    .requiredOption('--reason <text>', 'why, recorded in the registry')
    .option('--key <file>', 'sign with this private key (default: $MLCTL_SIGNING_KEY); required by the default policy')
    .option('--steps <percents>', "gradual: the restored version's traffic share per step, e.g. 25,50,100")
    .option(
      '--step-interval <duration>',
      'time between gradual steps (e.g. 30s)',
      durationArg('--step-interval', { positive: true }),
      60_000,
    )
    .action(
      async (
        model: string,
        o: { to?: string; as: string; reason: string; key?: string; steps?: string; stepInterval: number },
        cmd: Command,
      ) => {
        const by = parseIdentity(o.as);
        const steps = o.steps?.split(',').map((p) => (/^\s*\d+(\.\d+)?\s*$/.test(p) ? Number(p) : NaN));
        if (steps && !validRollbackSteps(steps)) {
          throw new InputError(`--steps: "${o.steps}" must be increasing percentages in (0, 100] ending at 100`);
        }
        const stepIntervalMs = o.stepInterval;
        const key = signingKey(o.key);
        const result = await (
          await lifecycles()
        ).rollback(
          model,
          {
            by,
            reason: o.reason,
            ...(o.to ? { to: o.to } : {}),
            ...(steps ? { steps, stepIntervalMs } : {}),
          },
          key,
        );
        print(
          merged(cmd),
          result,
          `${model}: rolled back from ${result.from} to ${result.to} (all traffic on ${result.to} ${result.trafficMovedMs} ms after the request)`,
        );
      },
    );

  withJson(program.command('history <model>'))
    .description(
      "a model's registry: the production and previous versions, and every promotion (who, when, from where)",
    )
    .action(async (model: string, _o: unknown, cmd: Command) => {
      const registry = await (await lifecycles()).history(model);
      print(merged(cmd), registry, formatHistory(registry));
    });

  withJson(program.command('audit <model>'))
    .description(
      'who did what to a model and when, with key ids: approvals, rejections, aborts, pauses, rollbacks, overrides, silences, promotions',
    )
    .addOption(
      new Option('--lifecycles <n>', 'read at most this many of its lifecycles (1 to 10000)')
        .default(200)
        .argParser(intArg('--lifecycles', 1, 10_000)),
    )
    .action(async (model: string, o: { lifecycles: number }, cmd: Command) => {
      const parsedModel = ModelName.safeParse(model);
      if (!parsedModel.success)
        throw new InputError(`"${model}" is not a model name (${parsedModel.error.issues[0]?.message})`);
      client = await connectClient();
      const trail = await auditModel(client, parsedModel.data, { lifecycles: o.lifecycles });
      print(merged(cmd), trail, formatAudit(trail));
    });

  withJson(program.command('monitor <model>'))
    .description(
      "a production model's serving monitor: its last check of each condition (drift, skew, input quality, latency, " +
        'outage, quality from labels and estimated without them, quota)',
    )
    .action(async (model: string, _o: unknown, cmd: Command) => {
      const parsedModel = ModelName.safeParse(model);
      if (!parsedModel.success)
        throw new InputError(`"${model}" is not a model name (${parsedModel.error.issues[0]?.message})`);
      client = await connectClient();
      let state: ServingMonitorState;
      try {
        state = await client.workflow.getHandle(servingMonitorWorkflowId(parsedModel.data)).query(servingMonitorQuery);
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) {
          throw new NotFoundError(`${model} has no serving monitor: it starts when a version is promoted`);
        }
        throw err;
      }
      print(merged(cmd), state, formatMonitor(state));
    });

  withJson(program.command('list'))
    .description('lifecycles, newest first')
    .option('--model <model>', 'only this model')
    .option('--stage <stage>', 'only lifecycles in this stage')
    .addOption(
      new Option('--limit <n>', 'at most this many (1 to 10000)').default(50).argParser(intArg('--limit', 1, 10_000)),
    )
    .action(async (o: { model?: string; stage?: string; limit: number }, cmd: Command) => {
      const rows = await (await lifecycles()).list(o);
      print(merged(cmd), rows, formatList(rows));
    });

  for (const decision of ['approve', 'reject'] as const) {
    withJson(program.command(`${decision} <id>`))
      .description(`${decision} the gate a lifecycle is waiting on`)
      .requiredOption('--as <user>', 'your identity (must be an approver, not the submitter)')
      .option('--gate <gate>', 'the gate to decide (default: the pending one)')
      .option('--reason <text>', 'recorded with the decision', '')
      .option('--key <file>', 'sign with this private key (default: $MLCTL_SIGNING_KEY); required by signed gates')
      .action(async (id: string, o: { as: string; gate?: string; reason: string; key?: string }, cmd: Command) => {
        const by = parseIdentity(o.as);
        const key = signingKey(o.key);
        const client = await lifecycles();
        const input = { by, gate: o.gate, reason: o.reason };
        const ack = decision === 'approve' ? await client.approve(id, input, key) : await client.reject(id, input, key);
        const tally =
          ack.outcome === null && ack.quorum !== undefined ? ` (${ack.approvals} of ${ack.quorum} approvals)` : '';
        print(
          merged(cmd),
          { id, ...ack, by, signed: key !== undefined },
          `${id}: gate "${ack.gate}" ${ack.decision} by ${by}${key ? ' (signed)' : ''}${tally}`,
        );
      });
  }

  withJson(program.command('promote-now <id>'))
    .description('skip the rest of the rollout and promote (an approver of the promote-now gate; its quorum applies)')
    .requiredOption('--as <user>', 'your identity (must be an approver, not the submitter)')
    .option('--reason <text>', 'recorded with the request', '')
    .option('--key <file>', 'sign with this private key (default: $MLCTL_SIGNING_KEY)')
    .action(async (id: string, o: { as: string; reason: string; key?: string }, cmd: Command) => {
      const by = parseIdentity(o.as);
      const key = signingKey(o.key);
      const ack = await (await lifecycles()).promoteNow(id, { by, reason: o.reason }, key);
      print(
        merged(cmd),
        { id, ...ack },
        ack.granted
          ? `${id}: promote-now granted (${ack.requestedBy.join(', ')}); skipping to 100%`
          : `${id}: promote-now requested by ${by}; ${ack.requestedBy.length} of ${ack.quorum} needed`,
      );
    });

  withJson(program.command('abort <id>'))
    .description('stop a lifecycle: before deployment it ends rejected, after it rolls back')
    .requiredOption('--as <user>', 'your identity, recorded with the action')
    .option('--reason <text>', 'recorded with the action', '')
    .option('--key <file>', 'sign with this private key (default: $MLCTL_SIGNING_KEY); required by the default policy')
    .action(async (id: string, o: { as: string; reason: string; key?: string }, cmd: Command) => {
      const by = parseIdentity(o.as);
      const key = signingKey(o.key);
      const ack = await (await lifecycles()).abort(id, { by, reason: o.reason }, key);
      print(merged(cmd), { id, by, ...ack }, `${id}: abort accepted in stage ${ack.stage}${key ? ' (signed)' : ''}`);
    });

  for (const action of ['pause', 'resume'] as const) {
    withJson(program.command(`${action} <id>`))
      .description(`${action} a rollout at its next stage boundary`)
      .requiredOption('--as <user>', 'your identity, recorded with the action')
      .option('--reason <text>', 'recorded with the action', '')
      .option(
        '--key <file>',
        'sign with this private key (default: $MLCTL_SIGNING_KEY); required by the default policy',
      )
      .action(async (id: string, o: { as: string; reason: string; key?: string }, cmd: Command) => {
        const by = parseIdentity(o.as);
        const key = signingKey(o.key);
        const client = await lifecycles();
        const ack = await client[action](id, { by, reason: o.reason }, key);
        print(
          merged(cmd),
          { id, action, by, ...(ack ? { accepted: true, stage: ack.stage } : {}) },
          ack ? `${id}: ${action} accepted in stage ${ack.stage}` : `${id}: ${action} sent`,
        );
      });
  }
  addHardwareCommands(
    program,
    (cmd, json, text) => print(merged(cmd), json, text),
    async () => (client = await connectClient()),
  );
  // What the command groups need: a client, printing, and the errors that pick mlctl's exit code.
  const commandDeps = {
    connect: async () => (client = await connectClient()),
    print: (cmd: Command, json: unknown, text: string) => print(merged(cmd), json, text),
    invalid: (message: string): never => {
      throw new InputError(message);
    },
    refused: (message: string): never => {
      throw new RefusedError(message);
    },
    notFound: (message: string): never => {
      throw new NotFoundError(message);
    },
    problemsFound: () => {
      problemsFound = true;
    },
  };
  addQuotaCommands(program, commandDeps);
  addDataCommands(program, commandDeps);
  addAlertsCommands(program, commandDeps);
  addKeysCommands(program, commandDeps);
  addReportCommand(program, commandDeps);
  return program;
}

function fail(code: number, message: string, opts: GlobalOptions, err?: unknown): number {
  if (opts.json) process.stderr.write(`${JSON.stringify({ error: message, exitCode: code })}\n`);
  else process.stderr.write(`mlctl: ${message}\n`);
  if (opts.verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return code;
}

/** Runs mlctl with `argv` (without node and script) and returns the exit code. */
export async function runMlctl(argv: string[]): Promise<number> {
  const program = buildProgram();
  const opts: GlobalOptions = { json: argv.includes('--json'), verbose: argv.includes('--verbose') };
  problemsFound = false;
  try {
    await program.parseAsync(argv, { from: 'user' });
    return problemsFound ? Exit.ProblemsFound : Exit.Ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return Exit.Ok;
      return Exit.Invalid; // commander already printed the problem and the usage
    }
    if (err instanceof InvalidFileError) {
      if (opts.json)
        process.stderr.write(
          `${JSON.stringify({ error: `invalid ${err.what}`, file: err.file, problems: err.problems, exitCode: 2 })}\n`,
        );
      else process.stderr.write(`mlctl: ${err.message}\n`);
      return Exit.Invalid;
    }
    if (
      err instanceof InputError ||
      err instanceof PlanInputError ||
      err instanceof InvalidInputError ||
      err instanceof OptionError
    )
      return fail(Exit.Invalid, err.message, opts, err);
    if (err instanceof z.ZodError) return fail(Exit.Invalid, z.prettifyError(err), opts, err);
    if (err instanceof NotFoundError || err instanceof UnknownPoolError)
      return fail(Exit.NotFound, err.message, opts, err);
    if (err instanceof RefusedError) return fail(Exit.Refused, err.message, opts, err);
    const message = err instanceof Error ? err.message : String(err);
    return fail(Exit.Failure, message, opts, err);
  } finally {
    await client?.connection.close().catch(() => undefined);
  }
}

if (require.main === module) {
  runMlctl(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`mlctl: ${String(err)}\n`);
      process.exit(1);
    },
  );
}
