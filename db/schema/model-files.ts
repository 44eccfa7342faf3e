import { sql } from 'drizzle-orm';
import { check, customType, integer, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import { models } from './models.js';
import { createdAt } from './columns.js';

/** Raw bytes (postgres.js reads bytea as a Buffer, a Uint8Array). drizzle-orm 0.45 has no bytea column of its own. */
const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({ dataType: () => 'bytea' });

/**
 * Files a model needs beside its ONNX blocks that the edge itself reads: an imported model's
 * tokenizer files (`tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`), uploaded by
 * its pool owner. The manifest pins each one's size and SHA-256; the edge checks both before it
 * stores a file and again before it builds a tokenizer from it.
 */
export const modelFiles = pgTable(
  'model_files',
  {
    modelId: text('model_id')
      .notNull()
      .references(() => models.id, { onDelete: 'cascade' }),
    /** The file's name in the manifest (no folders). */
    path: text('path').notNull(),
    /** SHA-256 (hex) of `content`, as the manifest pins it. */
    sha256: text('sha256').notNull(),
    /** Length of `content` (a tokenizer file is at most 64 MiB). */
    bytes: integer('bytes').notNull(),
    content: bytea('content').notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ name: 'model_files_pkey', columns: [t.modelId, t.path] }),
    check('model_files_path_check', sql`${t.path} ~ '^[A-Za-z0-9._-]{1,128}$'`),
    check('model_files_sha256_check', sql`${t.sha256} ~ '^[0-9a-f]{64}$'`),
    check('model_files_bytes_check', sql`${t.bytes} = octet_length(${t.content})`),
  ],
);
