import { bigint, integer, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import { apiKeys } from './api-keys.js';
import { at, microUsd } from './columns.js';

/** Per API key and minute: what rate limits read and what billing sums. */
export const usage = pgTable(
  'usage',
  {
    apiKeyId: text('api_key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    /** Start of the minute (`usageWindowStart`). */
    windowStart: at('window_start').notNull(),
    requests: integer('requests').notNull().default(0),
    /** Prompt + completion tokens. */
    tokens: bigint('tokens', { mode: 'number' }).notNull().default(0),
    costMicroUsd: microUsd('cost_micro_usd').notNull().default(0),
  },
  (t) => [primaryKey({ name: 'usage_pkey', columns: [t.apiKeyId, t.windowStart] })],
);
