import { index, pgTable, text } from 'drizzle-orm/pg-core';
import { agents } from './agents.js';
import { at, createdAt, id } from './columns.js';
import { models } from './models.js';

/**
 * Routes (exact chains of agents) routing must not choose, because a re-execution check of a job
 * they served failed: until `until` (the trust policy's `routeBlockMs`, docs/trust.md §7), or
 * earlier when the dispute it led to is dismissed or voided. Every hop of the route is on
 * probation meanwhile; the scheduled tick deletes expired rows and ends that probation. Until
 * `hold_until` every hop of the route is out of every route (not only this one): nobody knows yet
 * which hop cheated; the blame that names one ends the hold of the others.
 * `job_id` has no foreign key: the job row is written off the response path.
 */
export const routeBlocks = pgTable(
  'route_blocks',
  {
    id: id(),
    modelId: text('model_id')
      .notNull()
      .references(() => models.id),
    /** Agent ids of the route, in hop order. */
    route: text('route').array().notNull(),
    /** The route's first hop: routing candidates carry the blocks of the routes they head. */
    headAgentId: text('head_agent_id')
      .notNull()
      .references(() => agents.id),
    jobId: text('job_id').notNull(),
    /** The failing verdict's reason. */
    reason: text('reason').notNull(),
    createdAt: createdAt(),
    until: at('until').notNull(),
    /** Every hop of the route sits out all routing until then (null: no hold; rows from before 0005). */
    holdUntil: at('hold_until'),
  },
  (t) => [index('route_blocks_head_idx').on(t.headAgentId, t.until), index('route_blocks_until_idx').on(t.until), index('route_blocks_job_idx').on(t.jobId), index('route_blocks_hold_idx').on(t.holdUntil)],
);
