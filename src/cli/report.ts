import { writeFileSync } from 'node:fs';
import type { Client } from '@temporalio/client';
import type { Command } from 'commander';
import { readLifecycleRecord } from '../client/lifecycle-record';
import { lifecycleHtml, lifecyclePage, lifecycleSummary } from '../reports/lifecycle';

export interface ReportCommandDeps {
  print: (cmd: Command, json: unknown, text: string) => void;
  connect: () => Promise<Client>;
}

/** `mlctl report <id> [--html file]`: a lifecycle's traffic, checks, approvals and outcome, as one HTML page. */
export function addReportCommand(program: Command, deps: ReportCommandDeps): void {
  program
    .command('report <id>')
    .description(
      "a lifecycle's report: traffic to the candidate over time, each check's samples against its threshold, " +
        'approvals and outcome (--html writes it as one self-contained page; without it, a short summary)',
    )
    .option('--html <file>', 'write the self-contained HTML report to this file')
    .option('--json', 'machine-readable output (the report data)')
    .action(async (id: string, o: { html?: string }, cmd: Command) => {
      const record = await readLifecycleRecord(await deps.connect(), id);
      if (o.html) writeFileSync(o.html, lifecycleHtml(record));
      deps.print(
        cmd,
        { ...lifecyclePage(record), ...(o.html ? { html: o.html } : {}) },
        `${lifecycleSummary(record)}\n${o.html ? `HTML report: ${o.html}` : 'the charts: --html <file>'}`,
      );
    });
}
