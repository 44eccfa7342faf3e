/**
 * The registry's part of a model that is not ONNX: files the edge reads itself (an imported
 * model's tokenizer files), uploaded by a pool owner once the manifest is published. Part of
 * `RegistryStore`; both implementations follow it (`db/model-files-store.ts`,
 * `edge/store/memory-model-files.ts`).
 *
 * The store checks nothing about the content: the caller checked size and SHA-256 against the
 * manifest before `putModelFile`, and the edge checks them again after `getModelFile`.
 *
 * @example
 * await store.putModelFile({ modelId, path: 'tokenizer.json', sha256, bytes: content.byteLength, content, at: Date.now() });
 * const present = await store.listModelFiles(modelId); // [{ path: 'tokenizer.json', sha256, bytes, createdAt }]
 * const content = await store.getModelFile(modelId, 'tokenizer.json'); // Uint8Array | null
 */

/** At most this many files are listed per model (a tokenizer is three files). */
export const MAX_MODEL_FILES = 64;

export interface ModelFileInput {
  modelId: string;
  /** The file name the manifest gives it. */
  path: string;
  /** SHA-256 (hex) of `content`. */
  sha256: string;
  /** `content.byteLength`. */
  bytes: number;
  content: Uint8Array;
  at: number;
}

/** What is stored of one file, without its content. */
export interface ModelFileInfo {
  path: string;
  sha256: string;
  bytes: number;
  createdAt: number;
}

export interface ModelFileStore {
  /**
   * Stores a model's file. True when it was not there before; false when a file of that path
   * was, in which case it is replaced by this one (so uploading a checked copy again repairs a
   * damaged one). The model must exist.
   */
  putModelFile(input: ModelFileInput): Promise<boolean>;
  /** The file's bytes, or null when it was never uploaded. */
  getModelFile(modelId: string, path: string): Promise<Uint8Array | null>;
  /** The model's stored files (no content), by path; at most MAX_MODEL_FILES. */
  listModelFiles(modelId: string): Promise<ModelFileInfo[]>;
}
