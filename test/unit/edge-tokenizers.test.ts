/**
 * Tokenizers per model (edge/text/tokenizer-provider.ts): the built-in kind keeps the edge's own
 * tokenizer with the manifest's stop ids; an imported model's tokenizer is built once per isolate
 * from its uploaded files, each checked against the manifest, and never from files that are
 * missing or do not match.
 */
import { describe, expect, it } from 'vitest';
import { ApiError } from '../../protocol/errors.js';
import { manifestHash, type Manifest } from '../../protocol/manifest.js';
import { createHfTokenizer, type HfTokenizer, type HfTokenizerFiles } from '../../protocol/hf-tokenizer.js';
import { createMemoryStore } from '../../edge/store/memory.js';
import { createByteTokenizer } from '../../edge/text/byte-tokenizer.js';
import { createTokenizerProvider } from '../../edge/text/tokenizer-provider.js';
import type { ModelRecord, RegistryStore } from '../../db/registry-contract.js';
import { testManifest } from './edge-fixtures.js';
import { hfModel, referenceTokenizer, uploadAll } from './hf-model-fixtures.js';

async function published(store: RegistryStore, manifest: Manifest): Promise<ModelRecord> {
  return store.publishModel({ manifest, id: await manifestHash(manifest), publishedBy: null, at: 1 });
}

/** The store as the provider sees it, counting reads. */
function counting(store: RegistryStore) {
  const reads = { lists: 0, gets: 0 };
  return {
    reads,
    files: {
      listModelFiles: (id: string) => (reads.lists++, store.listModelFiles(id)),
      getModelFile: (id: string, path: string) => (reads.gets++, store.getModelFile(id, path)),
    },
  };
}

function countingBuild() {
  const builds: HfTokenizerFiles[] = [];
  return { builds, build: (files: HfTokenizerFiles): HfTokenizer => (builds.push(files), createHfTokenizer(files)) };
}

const rejection = async (p: Promise<unknown>): Promise<ApiError> => {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApiError);
  return err as ApiError;
};

describe('tokenizer provider', () => {
  it("keeps the built-in tokenizer for the built-in kind, with the manifest's stop ids, and reads no file", async () => {
    const store = createMemoryStore();
    const model = await published(store, { ...testManifest(2), tokenizer: { kind: 'llama-sentencepiece-bpe', package: 'llama-tokenizer-js', bosTokenId: 1, eosTokenId: 7, chatTemplate: 'llama-2' } });
    const { reads, files } = counting(store);
    const t = await createTokenizerProvider({ builtin: createByteTokenizer() }).forModel(model, files);
    expect(t.eosIds).toEqual([7]);
    expect(t.encodePrompt('hi')).toEqual(createByteTokenizer().encodePrompt('hi'));
    expect(reads).toEqual({ lists: 0, gets: 0 });
  });

  it('builds an imported model’s tokenizer once for concurrent first requests, and keeps it', async () => {
    const qwen = await hfModel('qwen3');
    const store = createMemoryStore();
    const model = await published(store, qwen.manifest);
    await uploadAll(store, model.id, qwen);
    const { reads, files } = counting(store);
    const { builds, build } = countingBuild();
    const provider = createTokenizerProvider({ builtin: createByteTokenizer(), build });
    const all = await Promise.all(Array.from({ length: 5 }, () => provider.forModel(model, files)));
    expect(new Set(all).size).toBe(1);
    expect(builds).toHaveLength(1);
    expect(reads).toEqual({ lists: 1, gets: 2 });
    await provider.forModel(model, files);
    expect(builds).toHaveLength(1);

    const t = all[0]!;
    const ref = referenceTokenizer('qwen3', qwen);
    const messages = [{ role: 'user', content: 'Hello there' }];
    expect(t.encodeChat(messages)).toEqual(ref.encodeChat(messages, { addGenerationPrompt: true }));
    expect(t.encodePrompt('Hello')).toEqual(ref.encodePrompt('Hello'));
    expect(t.eosIds).toEqual([151_645, 151_643]);
    // Ids past the tokenizer but inside the model's embedding (padding rows) decode to nothing.
    const ids = [...ref.encodePrompt('héllo'), 151_800];
    const d = t.streamingDecoder();
    expect(ids.map((id) => d.push(id)).join('') + d.flush()).toBe('héllo');
    expect(t.decode(ids)).toBe('héllo');

    // forget(): the next request builds it again.
    provider.forget(model.id);
    await provider.forModel(model, files);
    expect(builds).toHaveLength(2);
  });

  it('answers 503 naming the missing files, and tries again once they are uploaded', async () => {
    const qwen = await hfModel('qwen3');
    const store = createMemoryStore();
    const model = await published(store, qwen.manifest);
    const provider = createTokenizerProvider({ builtin: createByteTokenizer() });
    const none = await rejection(provider.forModel(model, store));
    expect(none.status).toBe(503);
    expect(none.code).toBe('no_route');
    expect(none.message).toMatch(/tokenizer files are not uploaded \(missing: tokenizer\.json, tokenizer_config\.json\)/);
    expect(none.retryAfter).toBeGreaterThan(0);

    const [json, config] = qwen.files;
    await store.putModelFile({ modelId: model.id, path: json!.path, sha256: json!.sha256, bytes: json!.bytes, content: json!.content, at: 1 });
    expect((await rejection(provider.forModel(model, store))).message).toContain('(missing: tokenizer_config.json)');
    await store.putModelFile({ modelId: model.id, path: config!.path, sha256: config!.sha256, bytes: config!.bytes, content: config!.content, at: 1 });
    expect((await provider.forModel(model, store)).eosIds).toEqual([151_645, 151_643]);
  });

  it('refuses stored bytes that do not match the manifest, whatever the row claims, and builds nothing from them', async () => {
    const qwen = await hfModel('qwen3');
    const store = createMemoryStore();
    const model = await published(store, qwen.manifest);
    await uploadAll(store, model.id, qwen);
    const config = qwen.files[1]!;
    const damaged = config.content.slice();
    damaged[5] = damaged[5]! ^ 0x20;
    // The row's metadata is right; its content is not.
    await store.putModelFile({ modelId: model.id, path: config.path, sha256: config.sha256, bytes: config.bytes, content: damaged, at: 1 });
    const logs: Record<string, unknown>[] = [];
    const { builds, build } = countingBuild();
    const provider = createTokenizerProvider({ builtin: createByteTokenizer(), build, log: (e) => logs.push(e) });
    const err = await rejection(provider.forModel(model, store));
    expect(err.status).toBe(503);
    expect(err.message).toContain("the registry's copy of its tokenizer_config.json does not match the manifest (SHA-256)");
    expect(builds).toHaveLength(0);
    expect(logs).toEqual([expect.objectContaining({ level: 'error', path: 'tokenizer_config.json' })]);

    await store.putModelFile({ modelId: model.id, path: config.path, sha256: config.sha256, bytes: config.bytes, content: config.content.subarray(0, 100), at: 1 });
    expect((await rejection(provider.forModel(model, store))).message).toContain('size (100 bytes');

    // A re-upload repairs it, and the failure was not kept.
    await uploadAll(store, model.id, qwen);
    await provider.forModel(model, store);
    expect(builds).toHaveLength(1);
  });

  it('keeps at most maxModels tokenizers, least recently used out', async () => {
    const qwen = await hfModel('qwen3');
    const store = createMemoryStore();
    const models: ModelRecord[] = [];
    for (const name of ['a', 'b', 'c']) {
      const m = await published(store, { ...qwen.manifest, name });
      await uploadAll(store, m.id, qwen);
      models.push(m);
    }
    // The files are real; the tokenizer built from them need not be, for counting.
    const built: string[] = [];
    const fake = { hasChatTemplate: false, encodePrompt: () => [], decode: () => '', streamingDecoder: () => ({ push: () => '', flush: () => '' }) } as unknown as HfTokenizer;
    const provider = createTokenizerProvider({ builtin: createByteTokenizer(), maxModels: 2, build: () => (built.push('x'), fake) });
    const [a, b, c] = models as [ModelRecord, ModelRecord, ModelRecord];
    await provider.forModel(a, store);
    await provider.forModel(b, store);
    await provider.forModel(a, store); // a is now the most recent
    await provider.forModel(c, store); // b goes
    expect(built).toHaveLength(3);
    await provider.forModel(a, store);
    expect(built).toHaveLength(3);
    await provider.forModel(b, store);
    expect(built).toHaveLength(4);
  });
});
