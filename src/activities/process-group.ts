// Signals for a process group: a child spawned with `detached: true` leads its own group (its pid is the group id),
// and everything it forks joins that group unless it leaves it on purpose (setsid/setpgid).
import { accessSync, constants } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';

/** How often a stopping group is checked for processes still running. */
const POLL_MS = 100;
/** How long SIGKILL may take to end a group (a process in uninterruptible I/O dies only when the I/O returns). */
const KILL_CONFIRM_MS = 5_000;

/** How a group was stopped: after SIGTERM alone, after SIGKILL, or not at all (processes left running). */
export interface GroupStop {
  pgid: number;
  /** Why: the activity's cancellation reason (CANCELLED, TIMED_OUT, WORKER_SHUTDOWN, ...) or `trainer-exited`. */
  reason: string;
  /** `SIGTERM`: the group ended within the grace period. `SIGKILL`: it had to be killed. `none`: nothing was left. */
  endedBy: 'SIGTERM' | 'SIGKILL' | 'none';
  /** Processes running when SIGTERM was sent (empty when SIGTERM was skipped). */
  terminated: number[];
  /** Processes still running when SIGKILL was sent. */
  killed: number[];
  /** Processes still running after SIGKILL (uninterruptible, or not ours to signal): normally empty. */
  survivors: number[];
  ms: number;
}

/** Sends `signal` to every process of group `pgid`: false when it has none (ESRCH). */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * Pids of group `pgid` that are still running. Zombies are left out: they are dead and only wait to be reaped, which
 * an orphan's new parent (PID 1, or a container's init that never reaps) may not do.
 */
export async function runningMembers(pgid: number): Promise<number[]> {
  let exists: boolean;
  try {
    exists = signalGroup(pgid, 0);
  } catch {
    exists = true; // EPERM: the group exists, though not all of it is ours to signal.
  }
  if (!exists) return [];
  let entries: string[];
  try {
    entries = (await readdir('/proc')).filter((e) => /^\d+$/.test(e));
  } catch {
    // No /proc (not Linux): the group exists, so count its leader as running.
    return [pgid];
  }
  const members = await Promise.all(
    entries.map(async (e) => {
      try {
        const stat = await readFile(`/proc/${e}/stat`, 'utf8');
        // After the command name (which may hold spaces and parentheses): state, ppid, pgrp, ...
        const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return Number(pgrp) === pgid && state !== 'Z' && state !== 'X' ? Number(e) : null;
      } catch {
        return null; // exited while we looked
      }
    }),
  );
  return members.filter((pid): pid is number => pid !== null);
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitUntilEmpty(pgid: number, ms: number): Promise<number[]> {
  const deadline = performance.now() + ms;
  for (;;) {
    const left = await runningMembers(pgid);
    if (left.length === 0 || performance.now() >= deadline) return left;
    await pause(Math.min(POLL_MS, Math.max(deadline - performance.now(), 0)));
  }
}

/**
 * Stops a whole group: SIGTERM, then SIGKILL to whatever is still running `graceMs` later. Resolves once the group
 * has no running process (or SIGKILL had KILL_CONFIRM_MS to work). Never rejects: an unexpected kill error is
 * reported as survivors.
 */
export async function terminateGroup(pgid: number, graceMs: number, reason: string): Promise<GroupStop> {
  const started = performance.now();
  const done = (stop: Omit<GroupStop, 'pgid' | 'reason' | 'ms'>): GroupStop => ({
    pgid,
    reason,
    ...stop,
    ms: Math.round(performance.now() - started),
  });
  const terminated = await runningMembers(pgid);
  if (terminated.length === 0) return done({ endedBy: 'none', terminated, killed: [], survivors: [] });
  try {
    signalGroup(pgid, 'SIGTERM');
  } catch {
    // EPERM: nothing here accepts our signals; SIGKILL below will say so.
  }
  const killed = await waitUntilEmpty(pgid, graceMs);
  if (killed.length === 0) return done({ endedBy: 'SIGTERM', terminated, killed, survivors: [] });
  return done({ endedBy: 'SIGKILL', terminated, killed, survivors: await killNow(pgid) });
}

/** SIGKILL to whatever of the group is still running, without a grace period: for a trainer that already exited. */
export async function killLeftovers(pgid: number, reason: string): Promise<GroupStop> {
  const started = performance.now();
  const killed = await runningMembers(pgid);
  const survivors = killed.length > 0 ? await killNow(pgid) : [];
  return {
    pgid,
    reason,
    endedBy: killed.length > 0 ? 'SIGKILL' : 'none',
    terminated: [],
    killed,
    survivors,
    ms: Math.round(performance.now() - started),
  };
}

async function killNow(pgid: number): Promise<number[]> {
  try {
    signalGroup(pgid, 'SIGKILL');
  } catch {
    return runningMembers(pgid);
  }
  return waitUntilEmpty(pgid, KILL_CONFIRM_MS);
}

const live = new Set<number>();
let exitHookInstalled = false;

/**
 * Kills group `pgid` with SIGKILL if this process exits while it is registered (a worker that crashes or calls
 * `process.exit`: a detached group would otherwise outlive it). Returns the unregister function.
 */
export function killGroupOnExit(pgid: number): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const g of live) {
        try {
          signalGroup(g, 'SIGKILL');
        } catch {
          // Exiting: nothing better to do.
        }
      }
    });
  }
  live.add(pgid);
  return () => live.delete(pgid);
}

let setpriv: string | null | undefined;

/** util-linux's `setpriv` on the search path (or in /usr/bin, /bin), found once; null when there is none. */
function findSetpriv(): string | null {
  if (setpriv !== undefined) return setpriv;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(isAbsolute), '/usr/bin', '/bin'];
  setpriv = null;
  for (const dir of dirs) {
    try {
      accessSync(join(dir, 'setpriv'), constants.X_OK);
      setpriv = join(dir, 'setpriv');
      break;
    } catch {
      // not here
    }
  }
  return setpriv;
}

/**
 * `command args`, run so that it gets SIGTERM when this process dies, however it dies (SIGKILL, OOM killer): the
 * kernel's parent-death signal (PR_SET_PDEATHSIG), set by util-linux's `setpriv`, which then execs the command (same
 * pid, same process group). Without it, a trainer whose worker was killed would run on, holding its accelerator,
 * until it next wrote to its closed stdout. `guarded` is false when this host has no `setpriv` (the command runs
 * as is). The signal reaches the command itself, not the processes it forked: stopping those on SIGTERM is part of
 * the trainer's contract.
 */
export function underParentDeathSignal(
  command: string,
  args: readonly string[],
): { command: string; args: string[]; guarded: boolean } {
  const bin = process.platform === 'linux' ? findSetpriv() : null;
  if (bin === null) return { command, args: [...args], guarded: false };
  return { command: bin, args: ['--pdeathsig', 'TERM', '--', command, ...args], guarded: true };
}

/** Whether process `pid` exists (EPERM: it does, though it is not ours). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
