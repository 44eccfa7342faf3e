import { sql } from 'drizzle-orm';
import { check, index, integer, jsonb, pgTable, text } from 'drizzle-orm/pg-core';
import type { JobAttemptRecord } from '../registry-contract.js';
import { accounts } from './accounts.js';
import { apiKeys } from './api-keys.js';
import { at, createdAt, microUsd } from './columns.js';
import { models } from './models.js';

export type JobStatus = 'running' | 'completed' | 'failed' | 'cancelled';
export type JobCheckStatus = 'pass' | 'fail' | 'inconclusive' | 'upheld' | 'dismissed' | 'voided';
export type JobFinishReason = 'stop' | 'length' | 'cancelled' | 'error';

/** One completion request: its routes, signed tickets, attestation chains, tokens and cost. */
export const jobs = pgTable(
  'jobs',
  {
    /** Chosen by the edge (a UUID): it is in the signed ticket before the row exists. */
    id: text('id').primaryKey(),
    accountId: text('account_id')
      .notNull()
      .references(() => accounts.id),
    apiKeyId: text('api_key_id')
      .notNull()
      .references(() => apiKeys.id),
    modelId: text('model_id')
      .notNull()
      .references(() => models.id),
    status: text('status').$type<JobStatus>().notNull().default('running'),
    finishReason: text('finish_reason').$type<JobFinishReason>(),
    /** Agent ids of the first route tried, in order. */
    route: jsonb('route').$type<string[]>().notNull(),
    /** Every attempt: its signed ticket and the full attestation chain of each verified chunk. */
    attempts: jsonb('attempts').$type<JobAttemptRecord[]>().notNull().default([]),
    /** Completion token ids delivered to the client, in order. */
    tokenIds: integer('token_ids').array().notNull().default(sql`'{}'::integer[]`),
    promptTokens: integer('prompt_tokens').notNull().default(0),
    completionTokens: integer('completion_tokens').notNull().default(0),
    costMicroUsd: microUsd('cost_micro_usd').notNull().default(0),
    /** Outcome of the re-execution check, when the job was sampled (null: not checked). */
    checkStatus: text('check_status').$type<JobCheckStatus>(),
    /** Every signed verdict and dispute step of the job's checks, in order. */
    checks: jsonb('checks').$type<unknown[]>().notNull().default([]),
    /**
     * Set once, when a re-execution check found the job bad (edge/billing/refund.ts): the cost
     * handed back to the key's `spent_micro_usd` (the whole `cost_micro_usd`), when and why.
     */
    refundedMicroUsd: microUsd('refunded_micro_usd'),
    refundedAt: at('refunded_at'),
    refundReason: text('refund_reason'),
    createdAt: createdAt(),
    finishedAt: at('finished_at'),
  },
  (t) => [
    index('jobs_account_created_idx').on(t.accountId, t.createdAt),
    // The tick's sweep of jobs an edge left running (a crash, a restart): only running rows indexed.
    index('jobs_running_created_idx').on(t.createdAt).where(sql`${t.status} = 'running'`),
    check('jobs_status_check', sql`${t.status} in ('running', 'completed', 'failed', 'cancelled')`),
    check('jobs_finish_reason_check', sql`${t.finishReason} in ('stop', 'length', 'cancelled', 'error')`),
    check('jobs_check_status_check', sql`${t.checkStatus} in ('pass', 'fail', 'inconclusive', 'upheld', 'dismissed', 'voided')`),
    check('jobs_tokens_check', sql`${t.promptTokens} >= 0 and ${t.completionTokens} >= 0 and ${t.costMicroUsd} >= 0`),
    check(
      'jobs_refund_check',
      sql`(${t.refundedAt} is null and ${t.refundedMicroUsd} is null and ${t.refundReason} is null) or (${t.refundedAt} is not null and ${t.refundedMicroUsd} >= 0 and ${t.refundReason} is not null)`,
    ),
  ],
);
