import { readFile } from 'node:fs/promises';

/** Resource use of a running process, sampled from /proc (Linux); other platforms report nothing. */
export interface ProcessUsage {
  /** Peak resident set size (VmHWM) seen, GiB. */
  peakMemoryGiB?: number;
  /** CPU time (user + system, the process and its waited-for children) over wall time. */
  avgCpuCores?: number;
}

/** Clock ticks per second of /proc/<pid>/stat times; 100 on every Linux this runs on (`getconf CLK_TCK`). */
const CLK_TCK = 100;

async function sample(pid: number): Promise<{ hwmKiB?: number; cpuTicks?: number }> {
  try {
    const [status, stat] = await Promise.all([
      readFile(`/proc/${pid}/status`, 'utf8'),
      readFile(`/proc/${pid}/stat`, 'utf8'),
    ]);
    const hwm = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
    // Fields after the command name (which may contain spaces): state is field 3; utime..cstime are 14..17.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i] ?? 0), 0);
    return { hwmKiB: hwm ? Number(hwm[1]) : undefined, cpuTicks: ticks };
  } catch {
    return {};
  }
}

/**
 * Samples a child process's memory and CPU every `everyMs` until `stop()`; the last sample before the process
 * exits is the measurement (peak RSS is a high-water mark, CPU time is cumulative).
 */
export function watchProcess(pid: number, everyMs = 250): { stop(wallMs: number): ProcessUsage } {
  let hwmKiB = 0;
  let cpuTicks = 0;
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    const s = await sample(pid);
    if (s.hwmKiB !== undefined) hwmKiB = Math.max(hwmKiB, s.hwmKiB);
    if (s.cpuTicks !== undefined) cpuTicks = Math.max(cpuTicks, s.cpuTicks);
    busy = false;
  };
  void tick();
  const timer = setInterval(() => void tick(), everyMs);
  return {
    stop(wallMs: number): ProcessUsage {
      clearInterval(timer);
      if (hwmKiB === 0) return {};
      return {
        peakMemoryGiB: hwmKiB / 1024 / 1024,
        avgCpuCores: wallMs > 0 ? cpuTicks / CLK_TCK / (wallMs / 1000) : undefined,
      };
    },
  };
}
