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

/** postgres.js's and the OS's codes for a connection that could not be made or was lost. */
const CONNECTION_CODES = new Set([
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs that say the server is not there for us right now: class 08 (connection exception),
 * 57P01-57P03 (shut down by an admin, after a crash, not accepting connections yet), 53300 (too
 * many connections).
 */
function unavailableSqlState(code: string): boolean {
  return /^08[0-9A-Z]{3}$/.test(code) || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300';
}

/**
 * What workerd's sockets say when a connection fails or drops (no `code` there: "proxy request
 * failed, cannot connect to the specified address", "Network connection lost"), and postgres.js's
 * own messages for the same.
 */
const CONNECTION_MESSAGE = /cannot connect to the specified address|network connection lost|connection refused|connect(ion)? (timed out|timeout)|socket (hang up|closed)|ECONNREFUSED|ECONNRESET|CONNECTION_(CLOSED|ENDED|DESTROYED)|CONNECT_TIMEOUT/i;

/** The error and its `cause`s, outermost first (at most 8: causes may loop). */
function causeChain(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && chain.length < 8 && !chain.includes(e); e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain;
}

/**
 * Whether `err` (a postgres.js error, or drizzle's `DrizzleQueryError` around one) says the
 * registry could not be reached or went away: connection refused, reset, closed or timed out,
 * the server shutting down or not accepting connections. A query the server refused (a
 * constraint, bad SQL) is not: that is the caller's error, not an outage.
 *
 * @example
 * try { await store.getApiKeyByPrefix(p); } catch (err) { if (isRegistryUnavailable(err)) return retryLater(); throw err; }
 */
export function isRegistryUnavailable(err: unknown): boolean {
  for (const e of causeChain(err)) {
    if (typeof e !== 'object') continue;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (CONNECTION_CODES.has(code) || unavailableSqlState(code))) return true;
    // A Postgres error with another SQLSTATE is the server's answer: it is there.
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return false;
    const message = (e as { message?: unknown }).message;
    if (typeof message === 'string' && CONNECTION_MESSAGE.test(message) && !/^Failed query:/.test(message)) return true;
  }
  return false;
}
