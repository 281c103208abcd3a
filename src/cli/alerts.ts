import { operationClaim, signOperation } from '../client/approval-signing';
import type { Operation } from '../shared/policy';
import { OperationTarget } from '../shared/signed-operation';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { Option, type Command } from 'commander';
import { MONITOR_ACTIONS, type AlertRouterState, type MonitorAction } from '../shared/alerts';
import { signingKeyArg, durationArg, intArg, parseIdentity } from './options';
import {
  ALERT_ROUTER_WORKFLOW_ID,
  AlertHistoryQuery,
  alertRouterQuery,
  OverrideInput,
  overrideActionUpdate,
  SilenceInput,
  silenceModelUpdate,
} from '../shared/monitoring';
import { updateRefusal } from '../client/lifecycle-client';

export interface AlertsCommandDeps {
  connect: () => Promise<Client>;
  print: (cmd: Command, json: unknown, text: string) => void;
  notFound: (message: string) => never;
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));

/** The router's state as a table: open incidents, silences, then the history, oldest first. */
export function formatAlerts(state: AlertRouterState, options: { openOnly?: boolean } = {}): string {
  const lines: string[] = [];
  if (state.open.length === 0) lines.push('no open incidents');
  else {
    lines.push('OPEN INCIDENTS');
    for (const o of state.open) {
      const action = o.action ? ` · ${o.action.kind} at ${o.action.dueAt}` : '';
      lines.push(`  ${pad(o.incident, 48)} ${pad(o.severity, 8)} ${pad(o.state, 10)} since ${o.since}${action}`);
      lines.push(`    ${o.summary}`);
    }
  }
  for (const s of state.silences)
    lines.push(`silenced: ${s.model} until ${s.until} by ${s.by}${s.reason ? ` (${s.reason})` : ''}`);
  if (options.openOnly) return lines.join('\n');
  lines.push('', `HISTORY (${state.history.length} entries)`);
  for (const h of state.history) {
    const who = h.by ? ` by ${h.by}` : '';
    const where = h.sinks ? ` → ${h.sinks.join(', ') || 'log only'}${h.owner ? ` (owner ${h.owner})` : ''}` : '';
    lines.push(`  ${h.at}  ${pad(h.event, 17)} ${pad(h.incident ?? h.model ?? '', 44)} ${h.summary}${who}${where}`);
  }
  return lines.join('\n');
}

/** `mlctl alerts`: the alert history and open incidents, silences and overrides of automated actions. */
export function addAlertsCommands(program: Command, deps: AlertsCommandDeps): void {
  const router = async () => (await deps.connect()).workflow.getHandle(ALERT_ROUTER_WORKFLOW_ID);
  const routerCall = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError)
        deps.notFound('no alert router is running yet: no alert or monitor check has been reported');
      if (err instanceof WorkflowUpdateFailedError) throw updateRefusal(err);
      throw err;
    }
  };

  const alerts = program
    .command('alerts')
    .description('alert history and open incidents (from the alert router); silence a model, override an action')
    .option('--model <model>', 'only this model')
    .option('--open', 'only open incidents and silences')
    .addOption(
      new Option('--limit <n>', 'history entries, newest kept').default(100).argParser(intArg('--limit', 1, 1000)),
    )
    .option('--json', 'machine-readable output')
    .action(async (o: { model?: string; open?: boolean; limit: number }, cmd: Command) => {
      // The router's own schemas check every input here first: a bad one is exit 2 before anything is sent.
      const query = AlertHistoryQuery.parse({ ...(o.model ? { model: o.model } : {}), limit: o.limit });
      const handle = await router();
      const state = await routerCall(() => handle.query(alertRouterQuery, query));
      deps.print(
        cmd,
        o.open ? { open: state.open, silences: state.silences } : state,
        formatAlerts(state, { openOnly: o.open }),
      );
    });

  alerts
    .command('silence <model>')
    .description("silence a model's alerts for a while: incidents still open and resolve, quietly, and are recorded")
    .requiredOption(
      '--for <duration>',
      'how long, e.g. 30m, 2h (at most 365d)',
      durationArg('--for', { positive: true }),
    )
    .requiredOption('--as <user>', 'your identity, recorded with the silence')
    .option('--reason <text>', 'recorded with the silence', '')
    .option('--key <file>', KEY_HELP)
    .option('--json', 'machine-readable output')
    .action(async (model: string, o: { for: number; as: string; reason: string; key?: string }, cmd: Command) => {
      const input = signed(
        SilenceInput.parse({ model, forMs: o.for, by: parseIdentity(o.as), reason: o.reason }),
        'alert-silence',
        OperationTarget.silence(model, o.for),
        o.key,
      );
      const handle = await router();
      const silence = await routerCall(() => handle.executeUpdate(silenceModelUpdate, { args: [input] }));
      deps.print(cmd, silence, `alerts of ${model} silenced until ${silence?.until}`);
    });

  alerts
    .command('unsilence <model>')
    .description("lift a model's silence")
    .requiredOption('--as <user>', 'your identity, recorded')
    .option('--key <file>', KEY_HELP)
    .option('--json', 'machine-readable output')
    .action(async (model: string, o: { as: string; key?: string }, cmd: Command) => {
      const input = signed(
        SilenceInput.parse({ model, forMs: 0, by: parseIdentity(o.as) }),
        'alert-silence',
        OperationTarget.silence(model, 0),
        o.key,
      );
      const handle = await router();
      const was = await routerCall(() => handle.executeUpdate(silenceModelUpdate, { args: [input] }));
      deps.print(cmd, { model, was }, was ? `alerts of ${model} unsilenced` : `${model} was not silenced`);
    });

  alerts
    .command('override <incident>')
    .description("override an incident's pending automated action: notify cancels it, another action runs now")
    .addOption(
      new Option('--action <action>', 'what to do instead').choices([...MONITOR_ACTIONS]).makeOptionMandatory(),
    )
    .requiredOption('--as <user>', 'your identity, recorded with the override')
    .option('--reason <text>', 'recorded with the override', '')
    .option('--key <file>', KEY_HELP)
    .option('--json', 'machine-readable output')
    .action(
      async (
        incident: string,
        o: { action: MonitorAction; as: string; reason: string; key?: string },
        cmd: Command,
      ) => {
        const input = signed(
          OverrideInput.parse({ incident, action: o.action, by: parseIdentity(o.as), reason: o.reason }),
          'alert-override',
          OperationTarget.incident(incident, o.action),
          o.key,
        );
        const handle = await router();
        const ack = await routerCall(() => handle.executeUpdate(overrideActionUpdate, { args: [input] }));
        deps.print(cmd, ack, `${incident}: ${ack.was} → ${ack.now}`);
      },
    );
}

const KEY_HELP = 'sign with this private key (default: $MLCTL_SIGNING_KEY); required by the default policy';

/** `input` with a signed claim of `op` on `target` when a key is given (`--key` or MLCTL_SIGNING_KEY). */
function signed<T extends { by: string; reason?: string }>(
  input: T,
  op: Operation,
  target: string,
  keyFile?: string,
): T {
  const key = signingKeyArg(keyFile);
  if (!key) return input;
  const claim = operationClaim({ op, target, by: input.by, reason: input.reason ?? '' });
  return { ...input, signed: signOperation(claim, key) };
}
