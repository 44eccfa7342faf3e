/**
 * Runs the edge Worker in workerd through `wrangler dev`, as a child process, on 127.0.0.1.
 * Used by `npm start` and by the integration tests. Secrets reach wrangler through an env file
 * (0600), never on the command line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freePort } from './ports.js';

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

  const stop = async () => {
    rmSync(envFile, { force: true });
    if (exited || child.pid === undefined) return;
    const done = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      process.kill(-child.pid, 'SIGTERM'); // wrangler spawns workerd: stop the whole group
    } catch {
      /* already gone */
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, 5000);
    await done;
    clearTimeout(timer);
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 90_000);
  while (Date.now() < deadline) {
    if (exited) {
      rmSync(envFile, { force: true });
      throw new Error(`wrangler dev exited before the edge was ready:\n${tail}\n${wranglerLogTail(opts.stateDir)}`);
    }
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return { url, pid: child.pid!, child, stop };
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stop();
  throw new Error(`edge did not become ready on ${url} in time:\n${tail}`);
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
