import { sql } from 'drizzle-orm';
import { check, index, integer, jsonb, pgTable, text } from 'drizzle-orm/pg-core';
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
    /** Agents that re-executed the hop to settle it. */
    checkerAgentIds: text('checker_agent_ids').array().notNull().default(sql`'{}'::text[]`),
    createdAt: createdAt(),
    resolvedAt: at('resolved_at'),
  },
  (t) => [
    index('disputes_agent_idx').on(t.agentId),
    index('disputes_job_idx').on(t.jobId),
    check('disputes_status_check', sql`${t.status} in ('open', 'upheld', 'rejected')`),
  ],
);
