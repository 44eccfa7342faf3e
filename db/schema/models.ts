import { sql } from 'drizzle-orm';
import { check, integer, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { Manifest, ModelDtype } from '../../protocol/manifest.js';
import { accounts } from './accounts.js';
import { createdAt } from './columns.js';

/** Published model manifests (protocol/manifest.ts). */
export const models = pgTable(
  'models',
  {
    /** The manifest hash (`manifestHash`): SHA-256 hex of its canonical JSON. */
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    manifest: jsonb('manifest').$type<Manifest>().notNull(),
    numLayers: integer('num_layers').notNull(),
    dtype: text('dtype').$type<ModelDtype>().notNull(),
    /** Null for models seeded by an operator. */
    publishedBy: text('published_by').references(() => accounts.id),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('models_name_key').on(t.name),
    check('models_id_check', sql`${t.id} ~ '^[0-9a-f]{64}$'`),
    check('models_num_layers_check', sql`${t.numLayers} > 0`),
  ],
);
