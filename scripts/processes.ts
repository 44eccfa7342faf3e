/**
 * What this machine says about its processes: liveness by pid or process group, and on Linux
 * (through /proc) a process's start time, group, state and command line. `npm start`, its
 * reaper and its tests use these to stop exactly what they started and to name what holds a
 * port or a lock. Off Linux the /proc readers answer `undefined` and callers fall back to
 * `kill(pid, 0)`.
 *
 * @example
 * if (processAlive(lock.pid)) console.log(`held by pid ${lock.pid}: ${processCommand(lock.pid) ?? '?'}`);
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  ppid: number;
  pgid: number;
  /** One letter: R, S, D, Z (zombie: exited, not yet reaped), T... */
  state: string;
  /** Start time after boot, in clock ticks: a pid that was reused has another. */
  startTime: number;
}

/** /proc/PID/stat, parsed; undefined when the process is gone or there is no /proc. */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself hold spaces or ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0] ?? '?';
  return { pid, ppid: Number(rest[1]), pgid: Number(rest[2]), state, startTime: Number(rest[19]) };
}

/** Whether the process exists and has not exited (a zombie has exited). EPERM counts as alive. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // No /proc entry for a process kill() found: no /proc, or another user's hidden by hidepid.
  const stat = procStat(pid);
  return stat === undefined || (stat.state !== 'Z' && stat.state !== 'X');
}

/** Every pid /proc lists (empty off Linux). */
export function allPids(): number[] {
  try {
    return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number);
  } catch {
    return [];
  }
}

/** Whether /proc can be read (Linux). */
export function hasProc(): boolean {
  try {
    readFileSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
}

/** Members of a process group that have not exited (zombies left out); off Linux, [pgid] while `kill(-pgid, 0)` succeeds. */
export function groupMembers(pgid: number): number[] {
  if (!hasProc()) {
    try {
      process.kill(-pgid, 0);
      return [pgid];
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM' ? [pgid] : [];
    }
  }
  const members: number[] = [];
  for (const pid of allPids()) {
    const s = procStat(pid);
    if (s && s.pgid === pgid && s.state !== 'Z' && s.state !== 'X') members.push(pid);
  }
  return members;
}

/** The command line of a process, shortened, or undefined when it cannot be read. */
export function processCommand(pid: number, max = 160): string | undefined {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    if (!cmd) return undefined;
    return cmd.length > max ? `${cmd.slice(0, max - 1)}…` : cmd;
  } catch {
    return undefined;
  }
}

/** Sends a signal to a pid (or, negative, a process group); false when nothing was there. */
export function signal(target: number, sig: NodeJS.Signals): boolean {
  // 0 and -1 mean "my own group" and "every process I may signal"; 1 and -1 are init: never meant.
  if (!Number.isInteger(target) || Math.abs(target) <= 1) return false;
  try {
    process.kill(target, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops a process group: SIGTERM to the whole group, SIGKILL to what is left after `graceMs`,
 * then waits (at most `graceMs` more) until no member is left. Says how it ended: `stopped`
 * (gone after SIGTERM, or gone already), `killed` (SIGKILL was needed) or `left` (members remain).
 */
export async function stopGroup(pgid: number, graceMs: number): Promise<'stopped' | 'killed' | 'left'> {
  const gone = () => groupMembers(pgid).length === 0;
  if (gone()) return 'stopped';
  signal(-pgid, 'SIGTERM');
  if (await waitUntil(gone, graceMs)) return 'stopped';
  signal(-pgid, 'SIGKILL');
  return (await waitUntil(gone, graceMs)) ? 'killed' : 'left';
}

/** Polls `done` every 100 ms until it is true (resolves true) or `timeoutMs` passed (false). */
export async function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (done()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}
