import { sql } from 'drizzle-orm';
import { check, index, integer, jsonb, pgTable, text } from 'drizzle-orm/pg-core';
import type { DisputeCheck, DisputeRetryNote } from '../registry-contract.js';
import { agents } from './agents.js';
import { at, createdAt, id } from './columns.js';

export type DisputeStatus = 'open' | 'upheld' | 'rejected';

/**
 * A re-execution mismatch against one agent's hop of a job, settled by a third execution.
 * `job_id` has no foreign key: the job row is written off the response path and may land later.
 */
export const disputes = pgTable(
  'disputes',
  {
    id: id(),
    jobId: text('job_id').notNull(),
    agentId: text('agent_id')
      .notNull()
      .references(() => agents.id),
    /** Index of the agent's hop in the route, when known. */
    hop: integer('hop'),
    reason: text('reason').notNull(),
    status: text('status').$type<DisputeStatus>().notNull().default('open'),
    evidence: jsonb('evidence'),
    /**
     * The checkers so far, in order: the first checker (whose verdict opened it), then each third
     * checker that answered. Written as checks come, so the scheduled tick can go on from them.
     */
    checkerAgentIds: text('checker_agent_ids').array().notNull().default(sql`'{}'::text[]`),
    /**
     * What a third check needs (the check request: ticket, prompt and prefix ids, attestations,
     * disclosures; the model), kept while the dispute is open so the scheduled tick can retry it,
     * cleared when it settles (the prompt is not kept longer). Null: the tick does not retry it.
     */
    checkRequest: jsonb('check_request').$type<DisputeCheck>(),
    /** The scheduled tick retries the third check from then on (null: never; settled disputes). */
    retryAfter: at('retry_after'),
    /** How the last retry went (e.g. no eligible checker), for operators. */
    retryNote: jsonb('retry_note').$type<DisputeRetryNote>(),
    createdAt: createdAt(),
    resolvedAt: at('resolved_at'),
  },
  (t) => [
    index('disputes_agent_idx').on(t.agentId),
    index('disputes_job_idx').on(t.jobId),
    // The tick's "open disputes due for a retry".
    index('disputes_retry_idx')
      .on(t.retryAfter)
      .where(sql`${t.status} = 'open'`),
    check('disputes_status_check', sql`${t.status} in ('open', 'upheld', 'rejected')`),
  ],
);
