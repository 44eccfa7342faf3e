/**
 * `.dev/start.lock` (scripts/start-lock.ts): one `npm start` per state folder; a lock whose holder
 * is gone, or whose pid now belongs to another process, is taken over; a live holder is named.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireStartLock } from '../../scripts/start-lock.js';
import { procStat } from '../../scripts/processes.js';

let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'layernet-lock-'));
  file = join(dir, 'start.lock');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A pid that was just used and is free now. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}

describe('start lock', () => {
  it('is taken when free, written whole, and released only by its holder', () => {
    const lock = acquireStartLock(file, { port: 8787 });
    expect(lock.ok).toBe(true);
    const written = JSON.parse(readFileSync(file, 'utf8'));
    expect(written).toMatchObject({ pid: process.pid, port: 8787 });
    expect(readdirNames()).toEqual(['start.lock']);
    if (lock.ok) lock.release();
    expect(existsSync(file)).toBe(false);
  });

  it('names a live holder and leaves its lock alone', async () => {
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      writeFileSync(file, JSON.stringify({ pid: holder.pid, startTime: procStat(holder.pid!)?.startTime, port: 9000 }));
      const lock = acquireStartLock(file, { port: 8787 });
      expect(lock.ok).toBe(false);
      if (!lock.ok) {
        expect(lock.holder).toMatchObject({ pid: holder.pid, port: 9000 });
        if (process.platform === 'linux') expect(lock.command).toBeDefined();
      }
      expect(JSON.parse(readFileSync(file, 'utf8')).pid).toBe(holder.pid);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('takes over the lock of a holder that is gone', async () => {
    const pid = await deadPid();
    writeFileSync(file, JSON.stringify({ pid, port: 9000 }));
    const lock = acquireStartLock(file, { port: 8787 });
    expect(lock.ok).toBe(true);
    if (lock.ok) expect(lock.tookOverFrom?.pid).toBe(pid);
    expect(JSON.parse(readFileSync(file, 'utf8')).pid).toBe(process.pid);
    expect(readdirNames()).toEqual(['start.lock']);
  });

  it.skipIf(process.platform !== 'linux')('takes over a lock whose pid now belongs to another process (another start time)', () => {
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      writeFileSync(file, JSON.stringify({ pid: other.pid, startTime: procStat(other.pid!)!.startTime - 1 }));
      const lock = acquireStartLock(file, { port: 8787 });
      expect(lock.ok).toBe(true);
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('takes over a lock file it cannot read (not one this code wrote)', () => {
    writeFileSync(file, 'garbage');
    const lock = acquireStartLock(file, { port: 8787 });
    expect(lock.ok).toBe(true);
    expect(JSON.parse(readFileSync(file, 'utf8')).pid).toBe(process.pid);
  });
});

/** What is in the folder: the lock alone, no staging or moved-aside file left behind. */
function readdirNames(): string[] {
  return readdirSync(dir);
}
