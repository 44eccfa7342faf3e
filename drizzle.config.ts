/**
 * drizzle-kit (pinned in package.json) generates the SQL migrations in `migrations/` from
 * `db/schema/`: `npx drizzle-kit generate --name <change>`. Generated files are committed and
 * never edited; a schema change is a new migration.
 */
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './db/schema/index.ts',
  out: './migrations',
  dbCredentials: { url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  strict: true,
  verbose: true,
});
