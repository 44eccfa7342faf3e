/**
 * Registry command line.
 *
 *   node --import tsx db/cli.ts migrate [--database-url URL] [--data-dir DIR]
 *
 * Target: `--database-url`, else `DATABASE_URL`, else the embedded registry persisted in
 * `--data-dir` (default `.data/registry`). The embedded registry must not be running at the same
 * time (PGlite allows one process per data folder).
 */
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { startEmbeddedRegistry } from './embedded.js';
import { migrate } from './migrate.js';
import { redactDatabaseUrl } from './client.js';

export const DEFAULT_DATA_DIR = '.data/registry';

const USAGE = 'usage: db/cli.ts migrate [--database-url URL] [--data-dir DIR]';

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { 'database-url': { type: 'string' }, 'data-dir': { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals[0] !== 'migrate' || positionals.length !== 1) {
    console.error(USAGE);
    return 2;
  }
  const url = values['database-url'] ?? process.env.DATABASE_URL;
  const embedded = url ? undefined : await startEmbeddedRegistry({ dataDir: values['data-dir'] ?? DEFAULT_DATA_DIR });
  const sql = postgres(url ?? embedded!.url, { max: 1, onnotice: () => undefined, connect_timeout: 10 });
  try {
    await migrate(sql);
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from drizzle.__drizzle_migrations`;
    console.log(`migrated ${url ? redactDatabaseUrl(url) : `embedded registry (${values['data-dir'] ?? DEFAULT_DATA_DIR})`}: ${row?.n ?? 0} migrations applied`);
    return 0;
  } finally {
    await sql.end({ timeout: 5 });
    await embedded?.stop();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
