/**
 * The lock one `npm start` holds on its state folder (`.dev/start.lock`), so a second start on
 * the same folder refuses before it opens the registry in `.data/registry`, registers agents
 * from `.dev/agents` or writes `.dev/stack.json`. The file holds the holder's pid (and, on Linux,
 * its start time, so a pid reused by another process does not count); a lock whose holder is
 * gone (a start killed outright) is taken over.
 *
 * The file appears whole or not at all: it is written beside the lock and hard-linked into
 * place, and `link` fails when the lock exists.
 *
 * @example
 * const lock = acquireStartLock('.dev/start.lock', { port: 8787 });
 * if (!lock.ok) throw new Error(`held by pid ${lock.holder.pid}`);
 * // ... run ...
 * lock.release();
 */
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { procStat, processAlive, processCommand } from './processes.js';

const holderSchema = z.object({
  pid: z.number().int().positive(),
  /** /proc/PID/stat start time (clock ticks after boot); absent off Linux. */
  startTime: z.number().optional(),
  /** The edge port the holder serves. */
  port: z.number().int().optional(),
  startedAt: z.string().optional(),
});
export type LockHolder = z.infer<typeof holderSchema>;

export type StartLock =
  | { ok: true; release(): void; /** The holder of a stale lock that was taken over. */ tookOverFrom?: LockHolder }
  | { ok: false; holder: LockHolder; /** The holder's command line, when it can be read. */ command?: string };

export function acquireStartLock(file: string, info: { port: number }): StartLock {
  const me: LockHolder = { pid: process.pid, startTime: procStat(process.pid)?.startTime, port: info.port, startedAt: new Date().toISOString() };
  const staging = `${file}.${process.pid}.new`;
  writeFileSync(staging, JSON.stringify(me) + '\n', { mode: 0o600 });
  let tookOverFrom: LockHolder | undefined;
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(staging, file);
        return { ok: true, tookOverFrom, release: () => releaseLock(file) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = readHolder(file);
      if (holder === 'gone') continue;
      if (holder !== 'unreadable' && holderAlive(holder)) return { ok: false, holder, command: processCommand(holder.pid) };
      // Stale (its holder is gone) or not a lock this code wrote: move it aside, and make sure
      // what was moved is what was judged stale (another start may have taken it over meanwhile).
      const aside = `${file}.${process.pid}.stale`;
      try {
        renameSync(file, aside);
      } catch {
        continue;
      }
      const moved = readHolder(aside);
      if (holder === 'unreadable' ? moved === 'unreadable' : moved !== 'gone' && moved !== 'unreadable' && moved.pid === holder.pid) {
        unlinkSync(aside);
        if (holder !== 'unreadable') tookOverFrom = holder;
      } else {
        try {
          linkSync(aside, file);
        } catch {
          /* someone holds it already; the next round says who */
        }
        unlinkSync(aside);
      }
    }
    throw new Error(`could not take ${file} (it keeps changing hands)`);
  } finally {
    unlinkSync(staging);
  }
}

function readHolder(file: string): LockHolder | 'gone' | 'unreadable' {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return 'gone';
  }
  try {
    const parsed = holderSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : 'unreadable';
  } catch {
    return 'unreadable';
  }
}

/** Alive, and the same process that wrote the lock (not a later one given the same pid). */
function holderAlive(holder: LockHolder): boolean {
  // This very pid, from before a restart (a container's pid namespace hands out the same pids).
  if (holder.pid === process.pid || !processAlive(holder.pid)) return false;
  if (holder.startTime === undefined) return true;
  const now = procStat(holder.pid)?.startTime;
  return now === undefined || now === holder.startTime;
}

/** Removes the lock if this process holds it. */
function releaseLock(file: string): void {
  const holder = readHolder(file);
  if (holder !== 'gone' && holder !== 'unreadable' && holder.pid === process.pid) {
    try {
      unlinkSync(file);
    } catch {
      /* already gone */
    }
  }
}
