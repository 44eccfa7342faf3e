import { sql } from 'drizzle-orm';
import { boolean, check, doublePrecision, index, pgTable, text } from 'drizzle-orm/pg-core';
import { accounts } from './accounts.js';
import { createdAt, id, microUsd } from './columns.js';

/** A set of agents of one owner in one region. */
export const pools = pgTable(
  'pools',
  {
    id: id(),
    ownerAccountId: text('owner_account_id')
      .notNull()
      .references(() => accounts.id),
    name: text('name').notNull(),
    /** Lowercase region slug (e.g. `eu-west`); routing prefers the caller's region. */
    region: text('region').notNull(),
    latitude: doublePrecision('latitude'),
    longitude: doublePrecision('longitude'),
    /** Stake currently held: deposits minus slashes (the ledger has the history). */
    stakeMicroUsd: microUsd('stake_micro_usd').notNull().default(0),
    status: text('status').$type<'active' | 'suspended'>().notNull().default('active'),
    /** Whether routing may send traffic to the pool while it holds no stake. */
    allowUnstakedTraffic: boolean('allow_unstaked_traffic').notNull().default(true),
    createdAt: createdAt(),
  },
  (t) => [
    index('pools_owner_idx').on(t.ownerAccountId),
    index('pools_region_idx').on(t.region),
    check('pools_status_check', sql`${t.status} in ('active', 'suspended')`),
    check('pools_stake_check', sql`${t.stakeMicroUsd} >= 0`),
  ],
);
