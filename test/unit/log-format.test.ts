import { PassThrough } from 'node:stream';
import pino from 'pino';
import pretty from 'pino-pretty';
import { describe, expect, it } from 'vitest';
import { formatLogMessage, PinoTemporalLogger, prettyOptions } from '../../src/workers/logger';

describe('pretty log lines', () => {
  it('prefixes the message with the model, version and stage in brackets', () => {
    const line = { msg: 'training finished', model: 'churn', version: 'v2', stage: 'canary', workflowId: 'x' };
    expect(formatLogMessage(line, 'msg')).toBe('[churn v2 canary] training finished');
  });

  it('shows only the fields a workflow declared: a model alone, or a pool', () => {
    expect(formatLogMessage({ msg: 'rollback step', model: 'churn' }, 'msg')).toBe('[churn] rollback step');
    expect(formatLogMessage({ msg: 'lease expired', pool: 'default' }, 'msg')).toBe('[pool default] lease expired');
  });

  it('leaves a line without log context as its message', () => {
    expect(formatLogMessage({ msg: 'worker running', version: 3 }, 'msg')).toBe('worker running');
  });

  it('writes the prefix and keeps the context fields out of the details below the message', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const logger = new PinoTemporalLogger(
      pino({ level: 'info' }, pretty(prettyOptions({ colorize: false, destination: out, sync: true }))),
    );
    logger.info('training finished', {
      model: 'churn',
      version: 'v2',
      stage: 'training',
      workflowId: 'lifecycle-churn-v2',
      runId: 'r1',
    });
    expect(text).toContain('INFO: [churn v2 training] training finished');
    expect(text).toContain('workflowId: "lifecycle-churn-v2"');
    expect(text).not.toMatch(/^\s+(model|version|stage):/m);
  });
});
