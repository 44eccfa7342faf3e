import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { allPids, procStat, processCommand } from './processes.js';

/** A port the OS just handed out on 127.0.0.1 (for processes that cannot bind port 0 themselves, like wrangler dev). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Whether `host:port` can be bound now: undefined when it can, else why not (`EADDRINUSE`,
 * `EACCES`...). On Linux a listener on 0.0.0.0 or [::] of the same port makes it fail too.
 */
export function portUnavailable(port: number, host = '127.0.0.1'): Promise<string | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(undefined)));
  });
}

/** A process listening on a TCP port; `pid` is undefined when the socket is another user's (not readable here). */
export interface PortListener {
  pid?: number;
  pgid?: number;
  command?: string;
}

/** Addresses a listener on 127.0.0.1 collides with, as /proc/net/tcp{,6} writes them. */
const COLLIDING = new Set(['0100007F', '00000000', '00000000000000000000000000000000', '0000000000000000FFFF00000100007F']);

/**
 * The processes listening on `port` on 127.0.0.1 or a wildcard address, from /proc/net/tcp,
 * /proc/net/tcp6 and /proc/PID/fd (Linux). Undefined where that cannot be read (macOS...).
 */
export function portListeners(port: number): PortListener[] | undefined {
  const inodes = new Set<string>();
  let readable = false;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
      readable = true;
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const [addr, portHex] = (f[1] ?? '').split(':');
      // f[3] is the state: 0A is LISTEN; f[9] the socket's inode.
      if (f[3] === '0A' && portHex && parseInt(portHex, 16) === port && COLLIDING.has(addr!.toUpperCase()) && f[9]) inodes.add(f[9]);
    }
  }
  if (!readable) return undefined;
  if (inodes.size === 0) return [];
  const found = new Map<string, PortListener>();
  for (const pid of allPids()) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m && inodes.has(m[1]!) && !found.has(m[1]!)) found.set(m[1]!, { pid, pgid: procStat(pid)?.pgid, command: processCommand(pid) });
    }
  }
  const listeners = [...found.values()];
  // A listening socket no process of ours holds belongs to another user.
  if (listeners.length < inodes.size) listeners.push({});
  return listeners;
}

/** "pid 123 (node server.js)", or what can be said when /proc does not tell. */
export function describePortHolders(port: number): string {
  const listeners = portListeners(port);
  if (listeners === undefined) return 'a process this system does not name';
  if (listeners.length === 0) return 'a process that is no longer listening';
  return listeners.map((l) => (l.pid === undefined ? "another user's process" : `pid ${l.pid}${l.command ? ` (${l.command})` : ''}`)).join(', ');
}
