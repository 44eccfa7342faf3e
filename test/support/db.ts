/**
 * A fresh, migrated registry database per test suite.
 *
 * With `DATABASE_URL` set: a new database `layernet_t_<random>` on that server (parallel runs
 * never collide), dropped on close. Without it: an in-memory PGlite served over the wire
 * protocol on a free loopback port.
 *
 * @example
 * let testDb: TestDatabase;
 * beforeAll(async () => { testDb = await createTestDatabase(); });
 * afterAll(() => testDb.close());
 * const { db, close } = createDb(testDb.url);
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { startEmbeddedRegistry } from '../../db/embedded.js';
import { migrate } from '../../db/migrate.js';

export interface TestDatabase {
  url: string;
  /** 'postgres' (a database on DATABASE_URL's server) or 'pglite' (in-memory, embedded). */
  kind: 'postgres' | 'pglite';
  close(): Promise<void>;
}

export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const shouldMigrate = options.migrate ?? true;
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) {
    const registry = await startEmbeddedRegistry();
    try {
      if (shouldMigrate) await migrateUrl(registry.url);
    } catch (err) {
      await registry.stop();
      throw err;
    }
    return { url: registry.url, kind: 'pglite', close: () => registry.stop() };
  }

  const name = `layernet_t_${randomBytes(6).toString('hex')}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => undefined, connect_timeout: 10 });
  try {
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  const drop = async () => {
    const a = postgres(serverUrl, { max: 1, onnotice: () => undefined, connect_timeout: 10 });
    try {
      // FORCE: a suite that leaked a connection must not leave its database behind.
      await a.unsafe(`drop database if exists "${name}" with (force)`);
    } finally {
      await a.end({ timeout: 5 });
    }
  };
  try {
    if (shouldMigrate) await migrateUrl(url);
  } catch (err) {
    await drop();
    throw err;
  }
  let closed: Promise<void> | undefined;
  return { url, kind: 'postgres', close: () => (closed ??= drop()) };
}

async function migrateUrl(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => undefined, connect_timeout: 10 });
  try {
    await migrate(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}
