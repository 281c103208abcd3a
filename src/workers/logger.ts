import type { LogLevel, LogMetadata, Logger } from '@temporalio/common';
import pino from 'pino';
import pretty from 'pino-pretty';
import { own } from '../shared/own';

/**
 * The process's root logger: JSON lines in production, readable lines on a terminal (`LOG_FORMAT=pretty|json`
 * forces one or the other).
 */
export function createLogger(level: string, name: string): pino.Logger {
  const format = process.env.LOG_FORMAT ?? (process.stdout.isTTY ? 'pretty' : 'json');
  if (format === 'pretty') {
    // A stream in this thread rather than a transport: a transport's options cross to a worker thread, which
    // drops the messageFormat function.
    return pino({ level, name }, pretty(prettyOptions()));
  }
  return pino({ level, name });
}

/** Fields the pretty output shows in the message prefix instead of the details below it. */
const CONTEXT_FIELDS = ['model', 'version', 'stage', 'pool'] as const;

/** pino-pretty's options for development output (`destination` for tests; default stdout). */
export function prettyOptions(overrides: pretty.PrettyOptions = {}): pretty.PrettyOptions {
  return {
    colorize: true,
    translateTime: 'HH:MM:ss.l',
    ignore: ['pid', 'hostname', ...CONTEXT_FIELDS].join(','),
    messageFormat: formatLogMessage,
    ...overrides,
  };
}

/**
 * The pretty message of a line: its log context in brackets, then the message — `[churn v2 canary] training
 * finished`, `[churn] rollback step`, `[pool default] ...`; a line without context is just its message.
 */
export function formatLogMessage(log: Record<string, unknown>, messageKey: string): string {
  const field = (k: (typeof CONTEXT_FIELDS)[number]) => {
    const v = own(log, k);
    return typeof v === 'string' && v !== '' ? v : null;
  };
  const pool = field('pool');
  const parts = [field('model'), field('version'), field('stage'), pool && `pool ${pool}`].filter(Boolean);
  const message = own(log, messageKey) === undefined ? '' : String(own(log, messageKey));
  return parts.length > 0 ? `[${parts.join(' ')}] ${message}` : message;
}

const LEVELS: Record<LogLevel, pino.Level> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

/** Temporal's Logger on top of pino: Temporal calls `(message, meta)`, pino wants `(meta, message)`. */
export class PinoTemporalLogger implements Logger {
  constructor(private readonly pino: pino.Logger) {}

  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    this.pino[LEVELS[level]](meta ?? {}, message);
  }
  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}
