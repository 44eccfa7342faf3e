/**
 * The `ModelFileStore` part of the Postgres registry store (db/model-files-contract.ts): a model's
 * tokenizer files as bytea rows keyed by (model_id, path). Kept out of registry-store.ts, which
 * spreads it into the store it builds.
 *
 * @example
 * const files = modelFileStore(drizzleOver(sql));
 * const content = await files.getModelFile(modelId, 'tokenizer.json');
 */
import { and, asc, eq } from 'drizzle-orm';
import { MAX_MODEL_FILES, type ModelFileStore } from './model-files-contract.js';
import type { RegistryDb } from './client.js';
import { modelFiles } from './schema/index.js';

export function modelFileStore(db: RegistryDb): ModelFileStore {
  return {
    async putModelFile({ modelId, path, sha256, bytes, content, at }) {
      const inserted = await db
        .insert(modelFiles)
        .values({ modelId, path, sha256, bytes, content, createdAt: new Date(at) })
        .onConflictDoNothing()
        .returning({ path: modelFiles.path });
      if (inserted.length) return true;
      // Already there: replace it (the caller checked this copy against the manifest). Two
      // uploads racing here carry the same checked bytes, so whichever lands last is right.
      await db
        .update(modelFiles)
        .set({ sha256, bytes, content })
        .where(and(eq(modelFiles.modelId, modelId), eq(modelFiles.path, path)));
      return false;
    },
    async getModelFile(modelId, path) {
      const [row] = await db
        .select({ content: modelFiles.content })
        .from(modelFiles)
        .where(and(eq(modelFiles.modelId, modelId), eq(modelFiles.path, path)))
        .limit(1);
      if (!row) return null;
      const c = row.content;
      // postgres.js hands back a Buffer; callers get a plain view of the same bytes.
      return new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
    },
    async listModelFiles(modelId) {
      const rows = await db
        .select({ path: modelFiles.path, sha256: modelFiles.sha256, bytes: modelFiles.bytes, createdAt: modelFiles.createdAt })
        .from(modelFiles)
        .where(eq(modelFiles.modelId, modelId))
        .orderBy(asc(modelFiles.path))
        .limit(MAX_MODEL_FILES);
      return rows.map((r) => ({ path: r.path, sha256: r.sha256, bytes: r.bytes, createdAt: r.createdAt.getTime() }));
    },
  };
}
