import { setTimeout as sleep } from 'node:timers/promises';
import type { FaultSettings } from '../shared/gateway-api';

/** Slack on `n · share` so that shares like 0.3 or 0.29 give exact counts despite binary floating point. */
const SHARE_EPSILON = 1e-9;

/**
 * Picks an exact share of a sequence of events without randomness: of the first n calls to {@link next}, exactly
 * ⌊n · share⌋ return true, spread evenly (0.3 picks the 4th, 7th and 10th of every 10). Tests can count on it.
 */
export class ShareCounter {
  private seen = 0;

  constructor(readonly share: number) {
    if (!(share >= 0 && share <= 1)) throw new RangeError(`share must be a number in [0, 1], got ${share}`);
  }

  /** Whether the next event is one of the share. */
  next(): boolean {
    if (this.share === 0) return false;
    const before = Math.floor(this.seen * this.share + SHARE_EPSILON);
    this.seen++;
    return Math.floor(this.seen * this.share + SHARE_EPSILON) > before;
  }
}

/** A prediction failed on purpose; the gateway answers `statusCode` with the message as `error`. */
export class InjectedFaultError extends Error {
  constructor(
    readonly statusCode: 500 | 503,
    message: string,
  ) {
    super(`injected fault: ${message}`);
    this.name = 'InjectedFaultError';
  }
}

/**
 * The injected faults of one deployed version (see {@link FaultSettings}). Replaced as a whole when an operator sets
 * new faults, which restarts the error-rate count. In memory only, like the rest of the gateway's fault injection.
 */
export class VersionFaultState {
  private readonly errors: ShareCounter;

  constructor(
    readonly settings: FaultSettings,
    /** `version 'v2' of model 'churn'`, for the error messages. */
    private readonly subject: string,
  ) {
    this.errors = new ShareCounter(settings.errorRate ?? 0);
  }

  get down(): boolean {
    return this.settings.down === true;
  }

  /** The error a `down` version answers with. */
  outage(): InjectedFaultError {
    return new InjectedFaultError(503, `${this.subject} is down`);
  }

  /**
   * What to do before this prediction's inference, decided now, in arrival order (so concurrent requests still fail
   * exactly the configured share): wait `delayMs`, then fail if the error rate picks it. Undefined when nothing
   * applies, so that an unfaulted prediction costs nothing more.
   */
  beforeInference(): (() => Promise<void>) | undefined {
    const delayMs = this.settings.delayMs ?? 0;
    const fail = this.errors.next();
    if (delayMs === 0 && !fail) return undefined;
    return async () => {
      if (delayMs > 0) await sleep(delayMs);
      if (fail) throw new InjectedFaultError(500, `${this.subject} failed (errorRate ${this.settings.errorRate})`);
    };
  }
}
