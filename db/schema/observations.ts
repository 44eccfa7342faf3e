import { bigint, boolean, doublePrecision, index, pgTable, text } from 'drizzle-orm/pg-core';
import { at } from './columns.js';

/**
 * What the edge observed of an agent in one job attempt, raw and append-only; the agent's EWMAs
 * hold the folded figures, so old rows can be pruned (`observations_at_idx`). No foreign keys:
 * appends stay cheap and pruning never waits on agents.
 */
export const observations = pgTable(
  'observations',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    agentId: text('agent_id').notNull(),
    modelId: text('model_id').notNull(),
    /** Edge location (Cloudflare colo or region) that observed it. */
    edgeLocation: text('edge_location').notNull(),
    /** Time to first token of the route the agent was in (null when no token arrived). */
    ttftMs: doublePrecision('ttft_ms'),
    /** Mean time per token after the first. */
    perTokenMs: doublePrecision('per_token_ms'),
    /** false = the agent failed, timed out or attested badly. */
    ok: boolean('ok').notNull(),
    jobId: text('job_id'),
    at: at('at').notNull(),
  },
  (t) => [index('observations_agent_at_idx').on(t.agentId, t.at), index('observations_at_idx').on(t.at)],
);
