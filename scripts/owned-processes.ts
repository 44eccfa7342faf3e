/**
 * The processes `npm start` owns, and their stopping. Each runs in a process group of its own
 * (spawned detached), so stopping one stops what it started too (wrangler's workerd and
 * esbuild), and a terminal's Ctrl-C reaches start.ts alone, which then stops them in order.
 *
 * `stopAll` sends SIGTERM to every group still running, SIGKILL to what is left after the grace
 * period, and waits until no member of any group is left; it never throws for a process that
 * already exited (by a code or a signal). A reaper (scripts/reaper.ts) watches the same groups
 * from outside and stops them within seconds when start.ts itself is killed outright.
 *
 * @example
 * const owner = startProcessOwner();
 * const agent = owner.spawn('eu-whole', process.execPath, [AGENT_BIN, 'serve'], { stdio: ['ignore', 'pipe', 'pipe'] });
 * // ... on Ctrl-C:
 * await owner.stopAll(10_000);
 * owner.release();
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { join, resolve } from 'node:path';
import { signal, stopGroup } from './processes.js';

const ROOT = resolve(import.meta.dirname, '..');

export interface ProcessOwner {
  /** Spawns `command` in a process group of its own, owned from now on; throws once `stopAll` was called. */
  spawn(name: string, command: string, args: string[], options: SpawnOptions): ChildProcess;
  /** Owns a child someone else spawned detached (its pid is its group's id), e.g. wrangler; once `stopAll` was called, stops it at once. */
  adopt(name: string, child: ChildProcess): void;
  /**
   * SIGTERM to every group, SIGKILL after `graceMs`; resolves once none is left (or after twice
   * `graceMs`) with the names of those that needed SIGKILL and of those still there.
   */
  stopAll(graceMs: number): Promise<{ killed: string[]; left: string[] }>;
  /** SIGKILL to every group now (a second Ctrl-C). */
  killAll(): void;
  /** Ends the reaper's pipe: it stops what is still watched (nothing, after a complete `stopAll`) and exits. */
  release(): void;
}

interface Owned {
  name: string;
  pgid: number;
  stopped: boolean;
}

export function startProcessOwner(): ProcessOwner {
  const reaper = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'reaper.ts')], {
    cwd: ROOT,
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  reaper.unref();
  // The pipe must not keep start.ts alive, and a reaper that died must not crash it (EPIPE).
  reaper.stdin!.on('error', () => undefined);
  (reaper.stdin as unknown as { unref?: () => void }).unref?.();
  const tell = (line: string) => {
    if (reaper.stdin!.writable) reaper.stdin!.write(`${line}\n`);
  };
  const owned = new Set<Owned>();
  let stopping: ((o: Owned) => Promise<'stopped' | 'killed' | 'left'>) | undefined;
  const stopOne = (graceMs: number) => async (o: Owned) => {
    if (o.stopped) return 'stopped';
    const how = await stopGroup(o.pgid, graceMs);
    if (how !== 'left') {
      o.stopped = true;
      tell(`forget-group ${o.pgid}`);
    }
    return how;
  };

  const adopt = (name: string, child: ChildProcess) => {
    if (child.pid === undefined) return; // it failed to spawn: its 'error' event says why
    const o: Owned = { name, pgid: child.pid, stopped: false };
    owned.add(o);
    tell(`watch-group ${o.pgid}`);
    // Started while stopping (a step of the start that was already under way): stop it too.
    if (stopping) void stopping(o);
  };

  return {
    spawn(name, command, args, options) {
      if (stopping) throw new Error(`not starting ${name}: stopping`);
      const child = spawn(command, args, { ...options, detached: true });
      adopt(name, child);
      return child;
    },
    adopt,
    async stopAll(graceMs) {
      stopping = stopOne(graceMs);
      const all = [...owned];
      const how = await Promise.all(all.map(stopping));
      const named = (h: string) => all.filter((_, i) => how[i] === h).map((o) => `${o.name} (pid ${o.pgid})`);
      return { killed: named('killed'), left: named('left') };
    },
    killAll() {
      for (const o of owned) if (!o.stopped) signal(-o.pgid, 'SIGKILL');
    },
    release() {
      reaper.stdin!.end();
    },
  };
}
