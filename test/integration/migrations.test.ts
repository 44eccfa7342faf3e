/**
 * The committed migrations build exactly the schema that db/schema/ declares:
 * - every migration applies to an empty database, and applying again changes nothing;
 * - drizzle-kit, run against the schema and the committed snapshots, finds nothing to generate;
 * - the migrated database has every table, column (type, nullability), index and check
 *   constraint of the drizzle definitions, and nothing else.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { getTableConfig, PgTable } from 'drizzle-orm/pg-core';
import { is } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as schema from '../../db/schema/index.js';
import { migrate, MIGRATIONS_FOLDER } from '../../db/migrate.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

const run = promisify(execFile);
const tables = (Object.values(schema) as unknown[]).filter((v): v is PgTable => is(v, PgTable)).map((t) => getTableConfig(t));

let testDb: TestDatabase;
let sql: postgres.Sql;

beforeAll(async () => {
  testDb = await createTestDatabase({ migrate: false });
  sql = postgres(testDb.url, { max: 1, onnotice: () => undefined });
});
afterAll(async () => {
  await sql?.end({ timeout: 5 });
  await testDb?.close();
});

describe('migrations', () => {
  it('apply every committed migration to an empty database, and are idempotent', async () => {
    const journal = JSON.parse(await readFile(join(MIGRATIONS_FOLDER, 'meta/_journal.json'), 'utf8')) as { entries: unknown[] };
    expect(journal.entries.length).toBeGreaterThan(0);

    await migrate(sql);
    const [first] = await sql<{ n: number }[]>`select count(*)::int as n from drizzle.__drizzle_migrations`;
    expect(first!.n).toBe(journal.entries.length);

    await migrate(sql);
    const [second] = await sql<{ n: number }[]>`select count(*)::int as n from drizzle.__drizzle_migrations`;
    expect(second!.n).toBe(journal.entries.length);
  });

  it('leave nothing for drizzle-kit to generate (schema and committed snapshots agree)', async () => {
    const out = await mkdtemp(join(tmpdir(), 'layernet-drift-'));
    try {
      await cp(MIGRATIONS_FOLDER, out, { recursive: true });
      const before = (await readdir(out)).sort();
      // drizzle-kit resolves --out against the working directory, so pass it relative.
      const { stdout, stderr } = await run(
        'node_modules/.bin/drizzle-kit',
        ['generate', '--dialect', 'postgresql', '--schema', './db/schema/index.ts', '--out', relative(process.cwd(), out)],
        { cwd: process.cwd(), timeout: 60_000 },
      );
      expect(stderr + stdout).toContain('No schema changes');
      expect((await readdir(out)).sort()).toEqual(before);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  it('build every table, column, index and check of the drizzle definitions, and nothing else', async () => {
    const liveTables = await sql<{ table_name: string }[]>`
      select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`;
    expect(liveTables.map((t) => t.table_name).sort()).toEqual(tables.map((t) => t.name).sort());

    for (const table of tables) {
      const columns = await sql<{ column_name: string; is_nullable: string; udt_name: string }[]>`
        select column_name, is_nullable, udt_name from information_schema.columns
        where table_schema = 'public' and table_name = ${table.name}`;
      const live = Object.fromEntries(columns.map((c) => [c.column_name, { nullable: c.is_nullable === 'YES', type: c.udt_name }]));
      const declared = Object.fromEntries(
        table.columns.map((c) => [c.name, { nullable: !c.notNull, type: udtName(c.getSQLType()) }]),
      );
      expect(live, table.name).toEqual(declared);

      const indexes = await sql<{ indexname: string }[]>`
        select indexname from pg_indexes where schemaname = 'public' and tablename = ${table.name}`;
      const declaredIndexes = [
        ...table.indexes.map((i) => i.config.name),
        ...(table.primaryKeys.length ? table.primaryKeys.map((pk) => pk.getName()) : [`${table.name}_pkey`]),
      ];
      expect(indexes.map((i) => i.indexname).sort(), table.name).toEqual(declaredIndexes.sort());

      const checks = await sql<{ conname: string }[]>`
        select conname from pg_constraint where contype = 'c' and conrelid = ${`public.${table.name}`}::regclass`;
      expect(checks.map((c) => c.conname).sort(), table.name).toEqual(table.checks.map((c) => c.name).sort());

      const fks = await sql<{ n: number }[]>`
        select count(*)::int as n from pg_constraint where contype = 'f' and conrelid = ${`public.${table.name}`}::regclass`;
      expect(fks[0]!.n, table.name).toBe(table.foreignKeys.length);
    }
  });
});

/** information_schema's udt_name of a drizzle SQL type. */
function udtName(sqlType: string): string {
  const base = sqlType.replace(/\(.*\)/, '');
  const names: Record<string, string> = {
    text: 'text',
    integer: 'int4',
    bigint: 'int8',
    boolean: 'bool',
    'double precision': 'float8',
    jsonb: 'jsonb',
    'timestamp with time zone': 'timestamptz',
    'text[]': '_text',
    'integer[]': '_int4',
    bytea: 'bytea',
  };
  const name = names[base];
  if (!name) throw new Error(`add ${sqlType} to udtName`);
  return name;
}

describe('test databases', () => {
  it('are isolated from each other and gone after close', async () => {
    const [one, two] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    expect(one.url).not.toBe(two.url);
    const a = postgres(one.url, { max: 1, onnotice: () => undefined });
    const b = postgres(two.url, { max: 1, onnotice: () => undefined });
    try {
      await a`insert into accounts (name) values ('only in one')`;
      const [{ n }] = (await b`select count(*)::int as n from accounts`) as unknown as [{ n: number }];
      expect(n).toBe(0);
    } finally {
      await a.end({ timeout: 1 });
      await b.end({ timeout: 1 });
    }
    await one.close();
    await two.close();
    if (one.kind === 'postgres') {
      const name = new URL(one.url).pathname.slice(1);
      const admin = postgres(process.env.DATABASE_URL!, { max: 1, onnotice: () => undefined });
      try {
        const rows = await admin`select 1 from pg_database where datname = ${name}`;
        expect(rows).toHaveLength(0);
      } finally {
        await admin.end({ timeout: 1 });
      }
    } else {
      const probe = postgres(one.url, { max: 1, connect_timeout: 2, onnotice: () => undefined });
      await expect(probe`select 1`).rejects.toThrow();
      await probe.end({ timeout: 0 });
    }
  });
});
