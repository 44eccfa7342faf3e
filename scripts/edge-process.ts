/**
 * Runs the edge Worker in workerd through `wrangler dev`, as a child process, on 127.0.0.1.
 * Used by `npm start` and by the integration tests. Secrets reach wrangler through an env file
 * (0600), never on the command line.
 *
 * `wrangler dev` runs no Cron Triggers, so the edge starts with `--test-scheduled`: its
 * `/__scheduled` route (on 127.0.0.1 only, like the rest of the dev server) runs the Worker's
 * `scheduled` handler, the trust tick (edge/checks/tick.ts), exactly as the Cron Trigger does in
 * production. `tickEveryMs` calls it on a timer (`npm start`); tests call `runScheduledTick`.
 *
 * wrangler runs detached, in a process group of its own with the workerd and esbuild processes
 * it starts: `stop` stops the whole group (SIGTERM, SIGKILL after 5 s) and resolves once none of
 * them is left, so the port is free again. A port someone else holds fails the start: wrangler
 * only logs `Address already in use` and carries on, and the other process would answer the
 * readiness check; so the edge is taken as ready only when `/healthz` names the configured
 * `EDGE_KEY_ID` and (on Linux, from /proc) the listening socket belongs to wrangler's group.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describePortHolders, freePort, portListeners } from './ports.js';
import { stopGroup } from './processes.js';

export interface EdgeProcessOptions {
  port: number;
  /** Port of workerd's inspector (default: one the OS hands out, so parallel edges never collide on 9229). */
  inspectorPort?: number;
  /** Worker variables (DATABASE_URL, EDGE_SIGNING_KEY, EDGE_KEY_ID, ...). */
  vars: Record<string, string>;
  /** Folder for the env file and wrangler's local state. */
  stateDir: string;
  /** Where wrangler's output goes (default: a log file in stateDir). */
  onLog?: (line: string) => void;
  readyTimeoutMs?: number;
  /** Runs the scheduled trust tick this often, ms (absent: only when `runScheduledTick` is called). */
  tickEveryMs?: number;
  /** Called as soon as wrangler is spawned, before the edge is ready (its pid is its process group's id). */
  onSpawn?: (child: ChildProcess) => void;
}

export interface EdgeProcess {
  url: string;
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

const ROOT = resolve(import.meta.dirname, '..');

export async function startEdgeProcess(opts: EdgeProcessOptions): Promise<EdgeProcess> {
  mkdirSync(opts.stateDir, { recursive: true });
  const envFile = join(opts.stateDir, 'edge.env');
  const lines = Object.entries(opts.vars).map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  writeFileSync(envFile, lines.join('\n') + '\n', { mode: 0o600 });
  const wrangler = join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
  const child = spawn(
    process.execPath,
    [
      wrangler, 'dev',
      '--ip', '127.0.0.1',
      '--port', String(opts.port),
      '--inspector-port', String(opts.inspectorPort ?? (await freePort())),
      '--env-file', envFile,
      '--persist-to', join(opts.stateDir, 'wrangler-state'),
      '--show-interactive-dev-session=false',
      '--log-level', 'warn',
      '--test-scheduled',
    ],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        CLOUDFLARE_CF_FETCH_ENABLED: 'false',
        WRANGLER_SEND_METRICS: 'false',
        WRANGLER_LOG_PATH: join(opts.stateDir, 'wrangler-logs'),
        NO_COLOR: '1',
        CI: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  const url = `http://127.0.0.1:${opts.port}`;
  let tail = '';
  const onData = (buf: Buffer) => {
    const text = buf.toString('utf8');
    tail = (tail + text).slice(-4000);
    if (opts.onLog) for (const l of text.split('\n')) if (l.trim()) opts.onLog(l);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });

  opts.onSpawn?.(child);

  let ticker: ReturnType<typeof setInterval> | undefined;
  const stop = async () => {
    if (ticker) clearInterval(ticker);
    rmSync(envFile, { force: true });
    // Even when wrangler itself already exited, its workerd may still hold the port.
    if (child.pid !== undefined) await stopGroup(child.pid, 5000);
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 90_000);
  while (Date.now() < deadline) {
    if (exited) {
      await stop();
      throw new Error(`wrangler dev exited before the edge was ready:\n${tail}\n${wranglerLogTail(opts.stateDir)}`);
    }
    if (/address already in use/i.test(tail)) {
      const holders = describePortHolders(opts.port);
      await stop();
      throw new Error(`port ${opts.port} is in use (by ${holders}): the edge cannot listen there`);
    }
    let answer: { edge_key_id?: unknown } | undefined;
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) answer = (await res.json()) as { edge_key_id?: unknown };
    } catch {
      /* not up yet */
    }
    if (answer) {
      const stranger = strangerOnPort(opts.port, child.pid!, opts.vars.EDGE_KEY_ID, answer.edge_key_id);
      if (stranger) {
        await stop();
        throw new Error(`port ${opts.port} is answered by another process than the edge started here (${stranger}): stop it, or use another port`);
      }
      if (opts.tickEveryMs) ticker = startTicker(url, opts.tickEveryMs, (l) => onData(Buffer.from(`${l}\n`)));
      return { url, pid: child.pid!, child, stop };
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop();
  throw new Error(`edge did not become ready on ${url} in time:\n${tail}`);
}

/**
 * Why the process answering on `port` is not the edge in process group `pgid`, or undefined when
 * it is: the key id it reports differs from the configured one, or (Linux) the socket listening
 * there belongs to a process outside the group, e.g. an orphaned edge of an earlier start, which
 * reports the same key id.
 */
function strangerOnPort(port: number, pgid: number, keyId: string | undefined, reported: unknown): string | undefined {
  if (keyId !== undefined && reported !== keyId) return `it reports edge key ${JSON.stringify(reported)}, not ${JSON.stringify(keyId)}`;
  const listeners = portListeners(port);
  if (listeners === undefined) return undefined; // no /proc: the key id is all there is to compare
  const foreign = listeners.filter((l) => l.pgid !== pgid);
  if (foreign.length === 0 && listeners.length > 0) return undefined;
  return `held by ${describePortHolders(port)}`;
}

/**
 * Runs the edge's `scheduled` handler once, through wrangler's `/__scheduled` route, and waits
 * for it to finish (the handler awaits the tick). Throws when it failed.
 */
export async function runScheduledTick(edgeUrl: string, timeoutMs = 120_000): Promise<void> {
  const res = await fetch(`${edgeUrl}/__scheduled?cron=${encodeURIComponent('* * * * *')}`, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (!res.ok) throw new Error(`the scheduled tick failed: ${res.status} ${text.slice(0, 500)}`);
}

/** Calls the tick every `everyMs`, never two at once; a failure is logged, not fatal. */
function startTicker(url: string, everyMs: number, log: (line: string) => void): ReturnType<typeof setInterval> {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    runScheduledTick(url)
      .catch((err: unknown) => log(`scheduled tick: ${err instanceof Error ? err.message : String(err)}`))
      .finally(() => (running = false));
  }, everyMs);
  timer.unref();
  return timer;
}

/** The end of wrangler's own log file, which holds workerd's reason when it fails to start. */
function wranglerLogTail(stateDir: string): string {
  try {
    const dir = join(stateDir, 'wrangler-logs');
    const files = readdirSync(dir).sort();
    const last = files[files.length - 1];
    return last ? readFileSync(join(dir, last), 'utf8').slice(-3000) : '';
  } catch {
    return '';
  }
}
