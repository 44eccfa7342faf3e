import { sql } from 'drizzle-orm';
import { check, index, integer, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import { agents } from './agents.js';
import { models } from './models.js';

/** The layer spans [layer_start, layer_end) of each model an agent serves. */
export const agentSpans = pgTable(
  'agent_spans',
  {
    agentId: text('agent_id')
      .notNull()
      .references(() => agents.id, { onDelete: 'cascade' }),
    modelId: text('model_id')
      .notNull()
      .references(() => models.id),
    layerStart: integer('layer_start').notNull(),
    /** Exclusive. */
    layerEnd: integer('layer_end').notNull(),
  },
  (t) => [
    primaryKey({ name: 'agent_spans_pkey', columns: [t.agentId, t.modelId, t.layerStart] }),
    // Routing candidates of a model: an index-only walk of the model's spans, then agents by pk.
    index('agent_spans_model_idx').on(t.modelId, t.agentId, t.layerStart, t.layerEnd),
    check('agent_spans_layers_check', sql`${t.layerStart} >= 0 and ${t.layerStart} < ${t.layerEnd}`),
  ],
);
