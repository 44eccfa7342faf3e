import { sql } from 'drizzle-orm';
import { bigint, check, doublePrecision, index, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import { at } from './columns.js';

export type LedgerKind = 'stake' | 'slash' | 'reputation' | 'refund';

/**
 * Append-only history of stake deposits, slashes, reputation changes and refunds to clients of
 * jobs found bad, with the evidence that justified each. `pools.stake_micro_usd`,
 * `agents.reputation` and `api_keys.spent_micro_usd` are the running totals.
 */
export const ledgerEntries = pgTable(
  'ledger_entries',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    kind: text('kind').$type<LedgerKind>().notNull(),
    accountId: text('account_id'),
    poolId: text('pool_id'),
    agentId: text('agent_id'),
    jobId: text('job_id'),
    /** Stake moved (deposits positive; a slash records the amount taken, positive); a refund: the amount handed back. */
    amountMicroUsd: bigint('amount_micro_usd', { mode: 'number' }).notNull().default(0),
    /** Reputation change applied (after clamping to [0, 1]), for `reputation` entries. */
    reputationDelta: doublePrecision('reputation_delta'),
    reason: text('reason').notNull(),
    /** E.g. the offending attestation chunk and ticket. */
    evidence: jsonb('evidence'),
    at: at('at').notNull(),
  },
  (t) => [
    index('ledger_entries_pool_idx').on(t.poolId, t.at),
    index('ledger_entries_agent_idx').on(t.agentId, t.at),
    /** A job is refunded once at most. */
    uniqueIndex('ledger_entries_refund_job_key').on(t.jobId).where(sql`${t.kind} = 'refund'`),
    check('ledger_entries_kind_check', sql`${t.kind} in ('stake', 'slash', 'reputation', 'refund')`),
  ],
);
