/**
 * A registry connection: postgres.js plus drizzle over it. No Node-only import, so the same
 * options serve the edge inside workerd.
 *
 * Options that matter (checked against the embedded PGlite server and real PostgreSQL):
 * - `fetch_types: false`: skips the pg_type round trip at connect (the edge connects per
 *   request); array columns then arrive as Postgres text (`{a,b}`), which drizzle's array
 *   columns parse themselves, so read arrays through drizzle columns, not raw `sql`.
 * - `prepare`: named prepared statements work against the embedded server (it closes a
 *   connection's statements when it goes away); they are on by default.
 * - `max`: any value works against the embedded server, but it runs one query or transaction
 *   at a time, so more connections only queue; a transaction left open there blocks everyone.
 * - `onnotice`: silenced (PGlite reports harmless notices during migrations).
 *
 * @example
 * const { db, sql, close } = createDb(process.env.DATABASE_URL!);
 * const rows = await db.select().from(schema.models).limit(10);
 * await close();
 */
import postgres, { type Options, type PostgresType, type Sql } from 'postgres';
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import * as schema from './schema/index.js';

export type RegistryDb = PostgresJsDatabase<typeof schema>;

export interface Db {
  db: RegistryDb;
  sql: Sql;
  close(): Promise<void>;
}

export type ClientOptions = Options<Record<string, PostgresType>>;

/** Defaults for postgres.js against the registry (embedded or real). */
export function registryClientOptions(overrides: ClientOptions = {}): ClientOptions {
  return { max: 10, fetch_types: false, idle_timeout: 20, connect_timeout: 10, onnotice: () => undefined, ...overrides };
}

export function createDb(url: string, overrides: ClientOptions = {}): Db {
  const sql = postgres(url, registryClientOptions(overrides));
  return { db: drizzleOver(sql), sql, close: () => sql.end({ timeout: 5 }) };
}

/** drizzle over an existing postgres.js client (the edge creates its own per request). */
export function drizzleOver(sql: Sql): RegistryDb {
  return drizzle(sql, { schema });
}

/** The URL without its password, for logs. */
export function redactDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(database url)';
  }
}
