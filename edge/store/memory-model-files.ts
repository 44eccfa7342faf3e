/**
 * The in-memory double's model files (`ModelFileStore`), kept apart from memory.ts's tables.
 * Copies in and out, like the rest of the memory store, so a caller cannot change what is stored.
 *
 * @example
 * const files = createMemoryModelFiles((id) => models.has(id));
 */
import { MAX_MODEL_FILES, type ModelFileInfo, type ModelFileStore } from '../../db/model-files-contract.js';

export function createMemoryModelFiles(modelExists: (modelId: string) => boolean): ModelFileStore {
  /** modelId -> path -> file. */
  const files = new Map<string, Map<string, ModelFileInfo & { content: Uint8Array }>>();
  return {
    async putModelFile({ modelId, path, sha256, bytes, content, at }) {
      // Postgres refuses it with a foreign-key violation: so does the double.
      if (!modelExists(modelId)) throw new Error(`model ${modelId} does not exist`);
      let byPath = files.get(modelId);
      if (!byPath) files.set(modelId, (byPath = new Map()));
      const existed = byPath.has(path);
      byPath.set(path, { path, sha256, bytes, content: content.slice(), createdAt: existed ? byPath.get(path)!.createdAt : at });
      return !existed;
    },
    async getModelFile(modelId, path) {
      const f = files.get(modelId)?.get(path);
      return f ? f.content.slice() : null;
    },
    async listModelFiles(modelId) {
      return [...(files.get(modelId)?.values() ?? [])]
        .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
        .slice(0, MAX_MODEL_FILES)
        .map(({ path, sha256, bytes, createdAt }) => ({ path, sha256, bytes, createdAt }));
    },
  };
}
