/**
 * `npm start` owns what it starts (issue 16): scripts/start.ts runs as a real process, with its
 * own state folder (LAYERNET_HOME, a temporary folder) and free ports, and each case checks the
 * real processes it started.
 *
 * - a second start on the same state folder is refused while the first runs, naming the first's
 *   pid, and `.dev/stack.json` is left as it was;
 * - an agent killed first, then Ctrl-C (SIGINT to the process group of `npm start`, as a
 *   terminal sends it; npm forwards it too, so start.ts gets it twice): everything stops, no
 *   `kill ESRCH` crash, no SIGKILL short cut;
 * - SIGTERM, and SIGHUP in the middle of starting: everything stops (no pid left, port free);
 * - SIGKILL of start.ts: its children are gone within seconds (the reaper);
 * - a port someone else holds: refused naming the port and the holder, before the state folder
 *   is touched (and the stale lock of the killed start is taken over);
 * - an edge port answered by another process than the wrangler started: refused.
 *
 * Linux only: the checks read /proc (the processes themselves use it to name a port's holder).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEdgeProcess } from '../../scripts/edge-process.js';
import { freePort, portUnavailable } from '../../scripts/ports.js';
import { allPids, procStat, processCommand, signal, waitUntil } from '../../scripts/processes.js';
import { generateSigningKey } from '../../protocol/keys.js';
import { TEST_MODEL_DIR } from '../support/model.js';

const REPO = resolve(import.meta.dirname, '../..');
const UP = 'LayerNet local network is up.';

interface Proc {
  pid: number;
  startTime: number;
  command: string;
}

interface Start {
  child: ChildProcess;
  port: number;
  /** stdout and stderr so far. */
  output(): string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once `pattern` appeared in the output; rejects when the start exited first. */
  waitFor(pattern: string | RegExp, timeoutMs: number): Promise<void>;
}

let home: string;
const started: Start[] = [];
/** Every process a start had running when a case stopped it (pids checked with their start time). */
const seen: Proc[] = [];

/** Runs scripts/start.ts directly, or (`viaNpm`) as `npm start` in a process group of its own, as a terminal runs it. */
function runStart(stateHome: string, port: number, viaNpm = false): Start {
  const env: NodeJS.ProcessEnv = { ...process.env, LAYERNET_HOME: stateHome };
  delete env.DATABASE_URL; // the embedded registry in the temporary folder, never a developer's server
  const args = ['--port', String(port), '--model', TEST_MODEL_DIR];
  const child = viaNpm
    ? spawn('npm', ['start', '--silent', '--', ...args], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    : spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts', ...args], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (b: Buffer) => {
    out += b.toString('utf8');
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exited = false;
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, sig) => {
      exited = true;
      for (const l of listeners) l();
      r({ code, signal: sig });
    }),
  );
  const start: Start = {
    child,
    port,
    output: () => out,
    exit,
    waitFor: (pattern, timeoutMs) =>
      new Promise<void>((res, rej) => {
        const check = () => {
          const hit = typeof pattern === 'string' ? out.includes(pattern) : pattern.test(out);
          if (hit || exited) {
            listeners.delete(check);
            clearTimeout(timer);
            if (hit) res();
            else rej(new Error(`start exited before ${String(pattern)}:\n${out.slice(-4000)}`));
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          rej(new Error(`no ${String(pattern)} within ${timeoutMs} ms:\n${out.slice(-4000)}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      }),
  };
  started.push(start);
  return start;
}

/** The process tree under `pid` (agents, pool-agent CLIs, wrangler, workerd, the reaper), not `pid` itself. */
function descendants(pid: number): Proc[] {
  const stats = allPids().map(procStat).filter((s) => s !== undefined);
  const found: Proc[] = [];
  let frontier = new Set([pid]);
  while (frontier.size > 0) {
    const next = new Set<number>();
    for (const s of stats) {
      if (frontier.has(s.ppid) && s.state !== 'Z') {
        next.add(s.pid);
        found.push({ pid: s.pid, startTime: s.startTime, command: processCommand(s.pid) ?? '?' });
      }
    }
    frontier = next;
  }
  return found;
}

function stillRunning(procs: Proc[]): Proc[] {
  return procs.filter((p) => {
    const s = procStat(p.pid);
    return s !== undefined && s.startTime === p.startTime && s.state !== 'Z';
  });
}

/** Processes whose command line names the state folder (agents' --dir, wrangler's --env-file): started by some start. */
function processesUsing(folder: string): string[] {
  return allPids()
    .filter((pid) => pid !== process.pid && (processCommand(pid, 10_000) ?? '').includes(folder))
    .map((pid) => `${pid} ${processCommand(pid)}`);
}

async function expectAllStopped(start: Start, procs: Proc[], withinMs: number): Promise<void> {
  await waitUntil(() => stillRunning(procs).length === 0, withinMs);
  expect(stillRunning(procs).map((p) => `${p.pid} ${p.command}`)).toEqual([]);
  expect(processesUsing(home)).toEqual([]);
  expect(await portUnavailable(start.port)).toBeUndefined();
}

async function startUp(viaNpm = false): Promise<Start> {
  const start = runStart(home, await freePort(), viaNpm);
  await start.waitFor(UP, 150_000);
  return start;
}

/** Kills (SIGKILL) whatever a case left running, group by group. */
function killLeftovers(): void {
  const procs = [...seen, ...started.flatMap((s) => (s.child.pid ? descendants(s.child.pid) : []))];
  for (const p of stillRunning(procs)) {
    const s = procStat(p.pid);
    if (s && s.pgid !== procStat(process.pid)?.pgid) signal(-s.pgid, 'SIGKILL');
    signal(p.pid, 'SIGKILL');
  }
  for (const s of started) {
    if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    if (s.child.spawnargs[0] === 'npm') signal(-s.child.pid!, 'SIGKILL');
  }
}

/** The pid of the start.ts that holds the state folder's lock. */
async function lockHolder(): Promise<number> {
  return (JSON.parse(await readFile(join(home, '.dev', 'start.lock'), 'utf8')) as { pid: number }).pid;
}

describe.skipIf(process.platform !== 'linux')('npm start owns what it starts', () => {
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'layernet-start-'));
  });

  afterAll(async () => {
    killLeftovers();
    if (home) await rm(home, { recursive: true, force: true });
  });

  it('refuses a second start on the same state folder, then stops everything on Ctrl-C after an agent died', async () => {
    const first = await startUp(true);
    const firstPid = await lockHolder();
    expect(processCommand(firstPid)).toContain('scripts/start.ts');
    const stackFile = join(home, '.dev', 'stack.json');
    const stackBefore = await readFile(stackFile, 'utf8');
    const stack = JSON.parse(stackBefore) as { edge: string; agents: { pid: number }[] };
    expect(stack.edge).toBe(`http://127.0.0.1:${first.port}`);

    const second = runStart(home, await freePort());
    const secondExit = await second.exit;
    expect(secondExit.code).toBe(1);
    expect(second.output()).toContain(`refused: another npm start (pid ${firstPid}`);
    expect(second.output()).not.toContain(UP);
    expect(await readFile(stackFile, 'utf8')).toBe(stackBefore);
    expect((await fetch(`${stack.edge}/healthz`)).ok).toBe(true);

    const procs = descendants(first.child.pid!);
    seen.push(...procs);
    expect(procs.length).toBeGreaterThanOrEqual(6); // reaper, wrangler (+ workerd), three agents
    // An agent dies by a signal (its exitCode stays null), then Ctrl-C.
    process.kill(stack.agents[0]!.pid, 'SIGKILL');
    await first.waitFor(`an agent (pid ${stack.agents[0]!.pid}) exited (SIGKILL)`, 10_000);
    process.kill(-first.child.pid!, 'SIGINT'); // Ctrl-C: the terminal signals the foreground process group
    const exit = await first.exit;
    expect(first.output()).not.toMatch(/ESRCH|killing what is left|SIGKILL\) after/);
    expect(first.output()).toContain('[start] stopped;');
    // npm, once its script exited, ends itself by the signal it got (start.ts exited 0).
    expect(exit.code === 0 || exit.signal === 'SIGINT').toBe(true);
    await expectAllStopped(first, procs, 5000);
    expect(existsSync(join(home, '.dev', 'start.lock'))).toBe(false);
  }, 240_000);

  it('SIGTERM stops everything', async () => {
    const start = await startUp();
    const procs = descendants(start.child.pid!);
    seen.push(...procs);
    start.child.kill('SIGTERM');
    expect(await start.exit).toEqual({ code: 0, signal: null });
    await expectAllStopped(start, procs, 5000);
  }, 200_000);

  it('SIGHUP in the middle of starting stops everything started so far', async () => {
    const start = runStart(home, await freePort());
    await start.waitFor(/\[start\] agent eu-whole .* on http/, 150_000);
    const procs = descendants(start.child.pid!);
    seen.push(...procs);
    start.child.kill('SIGHUP');
    const exit = await start.exit;
    expect(exit.signal).toBeNull();
    expect(start.output()).not.toContain(UP);
    expect(start.output()).not.toMatch(/ESRCH|\[start\] failed/);
    await expectAllStopped(start, procs, 5000);
  }, 200_000);

  it('SIGKILL of start.ts: its children are gone within seconds', async () => {
    const start = await startUp();
    const procs = descendants(start.child.pid!);
    seen.push(...procs);
    const killedAt = Date.now();
    start.child.kill('SIGKILL');
    await start.exit;
    // The reaper: SIGTERM at once, SIGKILL after 3 s.
    await expectAllStopped(start, procs, 8000);
    console.log(`children gone ${Date.now() - killedAt} ms after SIGKILL`);
  }, 200_000);

  it('refuses a port someone else holds, naming it and its holder, before touching the state folder; takes over a stale lock', async () => {
    const port = await freePort();
    const squatter: Server = createServer();
    await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', r));
    try {
      // The start killed above left its lock behind: taken over, then the port is refused.
      const stackBefore = await readFile(join(home, '.dev', 'stack.json'), 'utf8');
      const start = runStart(home, port);
      expect((await start.exit).code).toBe(1);
      expect(start.output()).toMatch(/took over .*start\.lock from pid \d+, which is no longer running/);
      expect(start.output()).toContain(`refused: port ${port} on 127.0.0.1 is already in use, by pid ${process.pid}`);
      expect(await readFile(join(home, '.dev', 'stack.json'), 'utf8')).toBe(stackBefore);
      expect(existsSync(join(home, '.dev', 'start.lock'))).toBe(false);

      const fresh = await mkdtemp(join(tmpdir(), 'layernet-start-fresh-'));
      try {
        const other = runStart(fresh, port);
        expect((await other.exit).code).toBe(1);
        expect(other.output()).toContain(`refused: port ${port}`);
        expect(existsSync(join(fresh, '.data'))).toBe(false);
        expect(existsSync(join(fresh, '.dev', 'stack.json'))).toBe(false);
        expect(existsSync(join(fresh, '.dev', 'start.lock'))).toBe(false);
      } finally {
        await rm(fresh, { recursive: true, force: true });
      }
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  }, 60_000);

  it('takes the edge as ready only when the process answering on its port is the wrangler it started', async () => {
    // An orphaned edge of an earlier start answers /healthz with the same key id.
    const port = await freePort();
    const orphan = (await import('node:http')).createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, edge_key_id: 'k-same' }));
    });
    await new Promise<void>((r) => orphan.listen(port, '127.0.0.1', r));
    const stateDir = await mkdtemp(join(tmpdir(), 'layernet-start-edge-'));
    let wranglerPid: number | undefined;
    try {
      const key = await generateSigningKey();
      const started = startEdgeProcess({
        port,
        stateDir,
        vars: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/postgres', EDGE_SIGNING_KEY: key.privateKeyPkcs8, EDGE_KEY_ID: 'k-same' },
        onSpawn: (child) => (wranglerPid = child.pid),
      });
      // Its first readiness poll reaches the orphan, long before wrangler could log `Address already in use`.
      await expect(started).rejects.toThrow(`port ${port} is answered by another process than the edge started here (held by pid ${process.pid} `);
      expect(wranglerPid).toBeDefined();
      // Its wrangler (and any workerd) was stopped.
      expect(allPids().filter((p) => procStat(p)?.pgid === wranglerPid && procStat(p)?.state !== 'Z')).toEqual([]);
    } finally {
      orphan.closeAllConnections();
      await new Promise((r) => orphan.close(r));
      await rm(stateDir, { recursive: true, force: true });
    }
  }, 60_000);
});
