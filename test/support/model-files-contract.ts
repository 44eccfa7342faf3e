/**
 * What every `ModelFileStore` (db/model-files-contract.ts) does, checked the same way against the
 * memory double (test/unit/edge-store-model-files.test.ts) and Postgres
 * (test/integration/registry-store.test.ts).
 *
 * @example
 * it('keeps model files', () => checkModelFileStore(store, modelId, otherModelId, NOW));
 */
import { expect } from 'vitest';
import { sha256Hex } from '../../protocol/bytes.js';
import type { RegistryStore } from '../../db/registry-contract.js';

/** `modelId` and `otherModelId` are published models with no files yet. */
export async function checkModelFileStore(store: RegistryStore, modelId: string, otherModelId: string, at: number): Promise<void> {
  // Every byte value, so an escaping mistake (bytea hex, NUL) shows.
  const json = Uint8Array.from({ length: 1024 }, (_, i) => i % 256);
  const config = new TextEncoder().encode('{"eos_token":"<|im_end|>"}');
  const file = async (path: string, content: Uint8Array, when = at) => ({ modelId, path, sha256: await sha256Hex(content), bytes: content.byteLength, content, at: when });

  expect(await store.listModelFiles(modelId)).toEqual([]);
  expect(await store.getModelFile(modelId, 'tokenizer.json')).toBeNull();

  expect(await store.putModelFile(await file('tokenizer.json', json))).toBe(true);
  expect(await store.listModelFiles(modelId)).toEqual([{ path: 'tokenizer.json', sha256: await sha256Hex(json), bytes: 1024, createdAt: at }]);
  const read = await store.getModelFile(modelId, 'tokenizer.json');
  expect(read).toBeInstanceOf(Uint8Array);
  expect(Array.from(read!)).toEqual(Array.from(json));
  // What a caller does with the bytes it got does not reach the store.
  read!.fill(0);
  expect(Array.from((await store.getModelFile(modelId, 'tokenizer.json'))!)).toEqual(Array.from(json));

  // Again: not new, and the first upload's time stays.
  expect(await store.putModelFile(await file('tokenizer.json', json, at + 1000))).toBe(false);
  expect(await store.listModelFiles(modelId)).toEqual([{ path: 'tokenizer.json', sha256: await sha256Hex(json), bytes: 1024, createdAt: at }]);

  // Another copy under the same path replaces the stored one (a re-upload repairs a damaged row).
  const repaired = json.slice(0, 512);
  expect(await store.putModelFile(await file('tokenizer.json', repaired))).toBe(false);
  expect(Array.from((await store.getModelFile(modelId, 'tokenizer.json'))!)).toEqual(Array.from(repaired));

  expect(await store.putModelFile(await file('tokenizer_config.json', config))).toBe(true);
  expect((await store.listModelFiles(modelId)).map((f) => [f.path, f.bytes])).toEqual([
    ['tokenizer.json', 512],
    ['tokenizer_config.json', config.byteLength],
  ]);

  // Files belong to their model.
  expect(await store.listModelFiles(otherModelId)).toEqual([]);
  expect(await store.getModelFile(otherModelId, 'tokenizer.json')).toBeNull();
  expect(await store.getModelFile(modelId, 'chat_template.jinja')).toBeNull();
  await expect(store.putModelFile({ ...(await file('tokenizer.json', json)), modelId: 'f'.repeat(64) })).rejects.toThrow();
}
