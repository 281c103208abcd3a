import { readFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';

/**
 * Where `freePort` looks: below the kernel's ephemeral range (Linux: /proc/sys/net/ipv4/ip_local_port_range, 32768 up
 * by default), from 20000. A port the kernel hands out for `listen(0)` is one it may also give, a moment later, to any
 * process's outgoing connection as its local port; under load (the test files' many connections) that happened
 * between `freePort` and the server's own bind, and the server failed with EADDRINUSE. The kernel never picks a local
 * port outside its ephemeral range, so a port chosen there stays free until a server that was told it binds it.
 * Null (use `listen(0)`) when the range cannot be read or leaves no room below it.
 */
function portRange(): [number, number] | null {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low === undefined || !Number.isInteger(low) || low <= 21_000) return null;
    return [20_000, low - 1];
  } catch {
    return null;
  }
}
const RANGE = portRange();
/** Ports this process has handed out: never handed out twice (its servers may not have bound them yet). */
const handedOut = new Set<number>();

/** Binds `port` (0: any) on 127.0.0.1 and closes it again: the port bound, or null when it was taken. */
function tryBind(port: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) =>
      err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(null) : reject(err),
    );
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(bound));
    });
  });
}

/**
 * A TCP port free on 127.0.0.1 right now, for a server about to be started on it: a random one outside the kernel's
 * ephemeral range (see {@link portRange}), not handed out before by this process; else one the kernel picks.
 */
export async function freePort(): Promise<number> {
  if (RANGE) {
    const [low, high] = RANGE;
    for (let attempt = 0; attempt < 64; attempt++) {
      const port = low + Math.floor(Math.random() * (high - low + 1));
      if (handedOut.has(port)) continue;
      if ((await tryBind(port)) !== null) {
        handedOut.add(port);
        return port;
      }
    }
  }
  const port = await tryBind(0);
  if (port === null) throw new Error('no free TCP port on 127.0.0.1');
  return port;
}

/** True when something accepts TCP connections on host:port. */
export async function portOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 200,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`${what} not ready within ${Math.round(timeoutMs / 1000)} s`);
}
