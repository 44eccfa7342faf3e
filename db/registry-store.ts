/**
 * `RegistryStore` over Postgres (drizzle + postgres.js): the registry of record for the edge.
 * No Node-only import: it runs inside workerd (Hyperdrive or a direct URL) as well as in Node.
 *
 * One module per domain (db/registry/): keys, models, routing, owners, jobs, ledger, disputes,
 * over shared row mappers (rows.ts); this file puts them together.
 *
 * Every list is bounded. The routing query walks `agent_spans_model_idx` for the model and joins
 * agents and pools by primary key, so its cost follows the model's span count and `limit`, never
 * the size of the agents table.
 *
 * @example
 * const sql = postgres(url, { max: 1, fetch_types: false });
 * const store = createRegistryStore(sql);
 * const candidates = await store.listRouteCandidates(modelId, { heartbeatAfter: Date.now() - 30_000, limit: 256, region: 'eu-west' });
 */
import type { Sql } from 'postgres';
import type { RegistryStore } from './registry-contract.js';
import { drizzleOver } from './client.js';
import { PUBLIC_AGENTS_PER_POOL } from './registry/rows.js';
import { keyMethods } from './registry/keys.js';
import { modelMethods } from './registry/models.js';
import { routingMethods } from './registry/routing.js';
import { ownerMethods } from './registry/owners.js';
import { jobMethods } from './registry/jobs.js';
import { ledgerMethods } from './registry/ledger.js';
import { disputeMethods } from './registry/disputes.js';

export { routeCandidatesQuery } from './registry/routing.js';

export interface RegistryStoreOptions {
  /** Agents listed per pool by `listPublicPools` (default PUBLIC_AGENTS_PER_POOL). */
  publicAgentsPerPool?: number;
}

export function createRegistryStore(client: Sql, options: RegistryStoreOptions = {}): RegistryStore {
  const db = drizzleOver(client);
  const agentsPerPool = Math.max(1, Math.floor(options.publicAgentsPerPool ?? PUBLIC_AGENTS_PER_POOL));
  return {
    ...keyMethods(db),
    ...modelMethods(db),
    ...routingMethods(db),
    ...ownerMethods(db, agentsPerPool),
    ...jobMethods(db),
    ...ledgerMethods(db),
    ...disputeMethods(db),
  };
}
