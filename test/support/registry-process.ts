/**
 * A registry that a test can take away and bring back: the embedded PGlite registry running in a
 * child process of its own (test/support/registry-server.ts), persisted in a temporary folder, on
 * a port chosen at run time that it keeps across restarts. `stop` ends it cleanly (SIGTERM: its
 * port closes, connections drop, the data is flushed), `pause` freezes it
 * (SIGSTOP: the kernel still accepts connections on its port, nothing answers) until `resume`
 * (SIGCONT); `start` brings a stopped registry back with the same data on the same URL.
 *
 * Pass it to `startNetwork({ database })` so the edge uses it (it is a `TestDatabase`: the network
 * closes it with itself).
 *
 * @example
 * const registry = await startRegistryProcess();
 * const net = await startNetwork({ database: registry, agents: [...] });
 * await registry.stop();   // the edge now answers 503 with retry-after
 * await registry.start();  // and recovers, nothing restarted
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import postgres from 'postgres';
import { migrate } from '../../db/migrate.js';
import { freePort } from '../../scripts/ports.js';
import type { TestDatabase } from './db.js';

const REPO = resolve(import.meta.dirname, '../..');
const SERVER = join(REPO, 'test/support/registry-server.ts');

export interface RegistryProcess extends TestDatabase {
  port: number;
  /** The running process's pid (undefined while stopped). */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Its output, for failure messages. */
  logs: string[];
  /** Starts it again (same data, same port); a no-op while it runs. */
  start(): Promise<void>;
  /** SIGTERM: closes every connection and its port, flushes the data; resolves once it exited. */
  stop(): Promise<void>;
  /** SIGSTOP: the process hangs (connections are accepted by the kernel, never answered). */
  pause(): void;
  /** SIGCONT after `pause`. */
  resume(): void;
}

export async function startRegistryProcess(options: { migrate?: boolean } = {}): Promise<RegistryProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), 'layernet-registry-'));
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const logs: string[] = [];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let paused = false;

  const start = async () => {
    if (child) return;
    const proc = spawn(process.execPath, ['--import', 'tsx', SERVER, '--data-dir', dataDir, '--port', String(port)], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    exited = new Promise<void>((r) => proc.once('exit', () => r()));
    void exited.then(() => {
      if (child === proc) child = undefined;
      paused = false;
    });
    const keep = (l: string) => {
      if (logs.length < 2000) logs.push(l);
    };
    createInterface({ input: proc.stderr! }).on('line', keep);
    const ready = new Promise<void>((resolveReady, reject) => {
      const timer = setTimeout(() => reject(new Error(`the registry did not start within 60 s:\n${logs.slice(-20).join('\n')}`)), 60_000);
      createInterface({ input: proc.stdout! }).on('line', (l) => {
        keep(l);
        if (l.startsWith('listening ')) {
          clearTimeout(timer);
          resolveReady();
        }
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`the registry exited before it listened:\n${logs.slice(-20).join('\n')}`));
      });
    });
    try {
      await ready;
    } catch (err) {
      proc.kill('SIGKILL');
      throw err;
    }
  };

  /** SIGTERM (continued first if paused), SIGKILL after 15 s; resolves once it exited. */
  const stop = async () => {
    const proc = child;
    if (!proc) return;
    if (paused) proc.kill('SIGCONT');
    paused = false;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(t);
  };

  await start();
  const registry: RegistryProcess = {
    url,
    kind: 'pglite',
    port,
    logs,
    get pid() {
      return child?.pid;
    },
    get running() {
      return child !== undefined;
    },
    start,
    stop,
    pause() {
      if (!child || paused) return;
      child.kill('SIGSTOP');
      paused = true;
    },
    resume() {
      if (!child || !paused) return;
      child.kill('SIGCONT');
      paused = false;
    },
    close: async () => {
      await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  try {
    if (options.migrate ?? true) {
      const sql = postgres(url, { max: 1, onnotice: () => undefined, connect_timeout: 10 });
      try {
        await migrate(sql);
      } finally {
        await sql.end({ timeout: 5 });
      }
    }
  } catch (err) {
    await registry.close();
    throw err;
  }
  return registry;
}
