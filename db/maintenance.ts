/**
 * Housekeeping for append-only tables. The agents' EWMAs already hold what routing needs, so raw
 * observations older than a retention window can go.
 *
 * @example
 * // from a cron: keep a day of raw observations
 * while ((await pruneObservations(db, Date.now() - 86_400_000)) > 0);
 */
import { sql } from 'drizzle-orm';
import type { RegistryDb } from './client.js';
import { observations } from './schema/index.js';

/**
 * Deletes up to `batch` observations older than `before` (epoch ms), oldest first, through
 * `observations_at_idx`; returns how many went. Small batches keep locks and WAL bursts short.
 */
export async function pruneObservations(db: RegistryDb, before: number, batch = 10_000): Promise<number> {
  const doomed = db
    .select({ id: observations.id })
    .from(observations)
    .where(sql`${observations.at} < ${new Date(before).toISOString()}::timestamptz`)
    .orderBy(observations.at)
    .limit(Math.max(1, Math.floor(batch)));
  const rows = await db
    .delete(observations)
    .where(sql`${observations.id} in (${doomed})`)
    .returning({ id: observations.id });
  return rows.length;
}
