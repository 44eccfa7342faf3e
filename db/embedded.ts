/**
 * The embedded registry: PGlite (Postgres in WebAssembly) served over the Postgres wire protocol
 * on 127.0.0.1, so every component (postgres.js in Node and in workerd) talks to it exactly as
 * to a real server. Used when no `DATABASE_URL` is configured. Node only.
 *
 * Connections are multiplexed onto PGlite's single backend by `PGliteSessionQueue` (one query
 * or transaction at a time; see there for why pglite-socket's own queue is not used).
 *
 * @example
 * const registry = await startEmbeddedRegistry({ dataDir: '.data/registry' });
 * const { db, close } = createDb(registry.url);
 * // ...
 * await close();
 * await registry.stop();
 */
import { mkdir } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketHandler } from '@electric-sql/pglite-socket';
import { PGliteSessionQueue } from './pglite-session-queue.js';

export interface EmbeddedRegistryOptions {
  /** Folder the database persists in (created if missing); omit for an in-memory database. */
  dataDir?: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 (default) lets the OS pick a free port. */
  port?: number;
  /** Concurrent client connections accepted (default 64); more are refused. */
  maxConnections?: number;
}

export interface EmbeddedRegistry {
  /** postgres:// URL of the server (database name `postgres`, user `postgres`, no password). */
  url: string;
  host: string;
  port: number;
  /** The PGlite instance itself (tests, dumps). */
  pglite: PGlite;
  /** Closes every connection, stops listening and closes the database (flushing it to disk). */
  stop(): Promise<void>;
}

export async function startEmbeddedRegistry(options: EmbeddedRegistryOptions = {}): Promise<EmbeddedRegistry> {
  const host = options.host ?? '127.0.0.1';
  const maxConnections = options.maxConnections ?? 64;
  if (options.dataDir) await mkdir(options.dataDir, { recursive: true });
  const pglite = await PGlite.create(options.dataDir ? { dataDir: options.dataDir } : {});
  const queue = new PGliteSessionQueue(pglite);
  const handlers = new Set<PGLiteSocketHandler>();
  const sockets = new Set<Socket>();

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    if (handlers.size >= maxConnections) {
      socket.destroy();
      return;
    }
    const handler = new PGLiteSocketHandler({
      // The handler only calls enqueue / clearQueueForHandler / clearTransactionIfNeeded.
      queryQueue: queue as unknown as ConstructorParameters<typeof PGLiteSocketHandler>[0]['queryQueue'],
      closeOnDetach: true,
    });
    handlers.add(handler);
    const forget = () => handlers.delete(handler);
    handler.addEventListener('close', forget);
    handler.addEventListener('error', forget);
    handler.attach(socket).catch(() => {
      forget();
      socket.destroy();
    });
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await pglite.close();
    throw err;
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.allSettled([...handlers].map((h) => h.detach(true)));
      for (const s of sockets) s.destroy();
      await closed;
      await pglite.close();
    })());

  return { url: `postgres://postgres@${host}:${port}/postgres`, host, port, pglite, stop };
}
