import { sql } from 'drizzle-orm';
import { check, index, integer, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { ApiKeyScope } from '../../protocol/api-key.js';
import { accounts } from './accounts.js';
import { at, createdAt, id, microUsd } from './columns.js';

/**
 * API keys `ln_<prefix>_<secret>` (protocol/api-key.ts). Only the prefix and the hash are
 * stored; the secret is shown to its owner once.
 */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: id(),
    accountId: text('account_id')
      .notNull()
      .references(() => accounts.id),
    /** The 12 base32 characters after `ln_`, in clear (dashboards, logs, lookup). */
    prefix: text('prefix').notNull(),
    /** Hex SHA-256 of the full key (`hashApiKey`), compared in constant time by the edge. */
    hash: text('hash').notNull(),
    /** Subset of inference, pool-owner, admin. */
    scopes: text('scopes').array().$type<ApiKeyScope[]>().notNull(),
    name: text('name').notNull().default(''),
    revokedAt: at('revoked_at'),
    expiresAt: at('expires_at'),
    /** Null = unlimited. */
    requestsPerMinute: integer('requests_per_minute'),
    /** Prompt + completion tokens per minute; null = unlimited. */
    tokensPerMinute: integer('tokens_per_minute'),
    /** Total spending allowed; null = unlimited. */
    budgetMicroUsd: microUsd('budget_micro_usd'),
    /** Charged when jobs finish. */
    spentMicroUsd: microUsd('spent_micro_usd').notNull().default(0),
    lastUsedAt: at('last_used_at'),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('api_keys_prefix_key').on(t.prefix),
    index('api_keys_account_idx').on(t.accountId),
    check('api_keys_hash_check', sql`${t.hash} ~ '^[0-9a-f]{64}$'`),
    check('api_keys_scopes_check', sql`${t.scopes} <@ array['inference', 'pool-owner', 'admin']::text[]`),
    check('api_keys_spent_check', sql`${t.spentMicroUsd} >= 0`),
  ],
);
