import { sql } from 'drizzle-orm';
import { bigint, boolean, check, doublePrecision, index, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Hardware } from '../../protocol/owner-api.js';
import { at, createdAt, id, microUsd } from './columns.js';
import { pools } from './pools.js';

export const AGENT_STATUSES = ['active', 'draining', 'offline', 'slashed', 'deregistered'] as const;
export type AgentStatusColumn = (typeof AGENT_STATUSES)[number];

/**
 * Pool agents: registration, live figures from signed heartbeats, and the EWMAs the edge folds
 * its observations into. Deregistered agents stay (the ledger and disputes refer to them).
 */
export const agents = pgTable(
  'agents',
  {
    id: id(),
    poolId: text('pool_id')
      .notNull()
      .references(() => pools.id),
    /** Base URL the edge posts tickets to. */
    endpoint: text('endpoint').notNull(),
    /** Raw Ed25519 public key, base64url (43 chars): verifies heartbeats and attestations. */
    publicKey: text('public_key').notNull(),
    hardware: jsonb('hardware').$type<Hardware>().notNull(),
    /** Integer micro-USD per million tokens (the API's USD/Mtok times 1e6). */
    priceMicroUsdPerMTok: microUsd('price_micro_usd_per_mtok').notNull(),
    /** Tokens per second the owner claims. */
    throughputTokensPerS: doublePrecision('throughput_tokens_per_s').notNull().default(0),
    status: text('status').$type<AgentStatusColumn>().notNull().default('active'),
    /** In [0, 1]; new agents start at 0.5; a slash sets it to 0. */
    reputation: doublePrecision('reputation').notNull().default(0.5),
    /** Routing scores it with a penalty (still usable when nothing else is). */
    probation: boolean('probation').notNull().default(false),
    /** Routing skips the agent until then (set after failures). */
    cooldownUntil: at('cooldown_until'),
    /** Why the cooldown that ends at `cooldown_until` was set (the failure kind), for owners and operators. */
    cooldownReason: text('cooldown_reason'),
    lastHeartbeatAt: at('last_heartbeat_at'),
    /** Highest heartbeat seq accepted (-1 before the first): replays are refused. */
    heartbeatSeq: bigint('heartbeat_seq', { mode: 'number' }).notNull().default(-1),
    queueDepth: integer('queue_depth').notNull().default(0),
    load: doublePrecision('load').notNull().default(0),
    freeKvBytes: bigint('free_kv_bytes', { mode: 'number' }).notNull().default(0),
    activeSessions: integer('active_sessions').notNull().default(0),
    /** EWMA of observed time to first token, ms (null: never observed). */
    ttftMsEwma: doublePrecision('ttft_ms_ewma'),
    /** EWMA of observed time per generated token, ms. */
    perTokenMsEwma: doublePrecision('per_token_ms_ewma'),
    /** EWMA of failures in [0, 1] (1 = every recent job failed). */
    failureRateEwma: doublePrecision('failure_rate_ewma').notNull().default(0),
    /** Observations folded into the EWMAs so far. */
    observations: integer('observations').notNull().default(0),
    /** Re-execution checks of jobs this agent served (any outcome). */
    jobsChecked: integer('jobs_checked').notNull().default(0),
    /** Re-execution checks of its jobs that passed (ends probation, docs/trust.md §3). */
    checksPassed: integer('checks_passed').notNull().default(0),
    createdAt: createdAt(),
    deregisteredAt: at('deregistered_at'),
  },
  (t) => [
    index('agents_pool_idx').on(t.poolId),
    // One live registration per key; a deregistered agent's key may register again.
    uniqueIndex('agents_public_key_live_key')
      .on(t.publicKey)
      .where(sql`${t.status} <> 'deregistered'`),
    // Routing: "active agents with a fresh heartbeat".
    index('agents_active_heartbeat_idx')
      .on(t.lastHeartbeatAt)
      .where(sql`${t.status} = 'active'`),
    check('agents_status_check', sql`${t.status} in ('active', 'draining', 'offline', 'slashed', 'deregistered')`),
    check('agents_reputation_check', sql`${t.reputation} >= 0 and ${t.reputation} <= 1`),
    check('agents_price_check', sql`${t.priceMicroUsdPerMTok} >= 0`),
  ],
);
