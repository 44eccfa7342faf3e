/**
 * `pool-agent model import` against an independent float64 reference written from the Hugging
 * Face modeling code (test/support/reference-forward.ts): tiny random checkpoints of every
 * supported family, in the real layout (bf16 safetensors, one of them sharded), imported, run
 * split over two spans, compared logit by logit and greedy token by token.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importModel } from '../../pool-agent/model/import/import.js';
import { CheckpointError } from '../../pool-agent/model/import/safetensors.js';
import { verifyModelFiles } from '../../pool-agent/model/build.js';
import { loadSpan } from '../../pool-agent/runtime/span.js';
import { forwardChain, generate } from '../../pool-agent/runtime/pipeline.js';
import { corruptCheckpoint, writeTinyCheckpoint, type CheckpointDefect, type HfFamily, type TinyCheckpointOptions } from '../support/hf-checkpoint.js';
import { greedyGenerate, loadReferenceModel, referenceForward } from '../support/reference-forward.js';
import { runModel } from '../../pool-agent/cli/model.js';
import type { CliIo } from '../../pool-agent/cli/args.js';

const PROMPT = [1, 17, 99, 3, 250, 400, 7, 8, 9, 100, 11, 12, 300, 42];
const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: 0 };

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'layernet-import-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A minimal tokenizers file: the numeric tests feed token ids, but an import needs the model's tokenizer. */
async function minimalTokenizer(dir: string): Promise<void> {
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0', added_tokens: [], model: { type: 'WordLevel', vocab: { '<unk>': 0 }, unk_token: '<unk>' } }));
}

async function checkpoint(name: string, o: Omit<TinyCheckpointOptions, 'dir'>): Promise<string> {
  const dir = join(root, name, 'ckpt');
  await writeTinyCheckpoint({ ...o, dir });
  if (!o.tokenizer) await minimalTokenizer(dir);
  return dir;
}

interface Compared {
  maxAbs: number;
  greedy: number[];
  expectedGreedy: number[];
}

/** Imports, runs the model split over [0, 2) and [2, L), and compares with the reference. */
async function importAndCompare(ckpt: string, out: string, dtype: 'float32' | 'float16' = 'float32'): Promise<Compared> {
  const m = await importModel({ dir: ckpt, outDir: out, dtype });
  const L = m.manifest.architecture.numLayers;
  const V = m.manifest.architecture.vocabSize;
  const ref = await loadReferenceModel(ckpt);
  const expected = referenceForward(ref, PROMPT);
  const spans = [await loadSpan(out, [0, 2], { provider: 'cpu', intraOpThreads: 1 }), await loadSpan(out, [2, L], { provider: 'cpu', intraOpThreads: 1 })];
  try {
    const got = await forwardChain(spans.map((s) => s.openSession()), Int32Array.from(PROMPT), { logitsToKeep: PROMPT.length });
    let maxAbs = 0;
    for (let t = 0; t < PROMPT.length; t++) {
      for (let v = 0; v < V; v++) maxAbs = Math.max(maxAbs, Math.abs(got.logits[t * V + v]! - expected.logits[t]![v]!));
    }
    const gen = await generate({ stages: spans.map((s) => s.openSession()), promptIds: PROMPT, sampling: GREEDY, maxTokens: 12 });
    return { maxAbs, greedy: gen.tokens, expectedGreedy: greedyGenerate(ref, PROMPT, 12) };
  } finally {
    for (const s of spans) await s.close();
  }
}

describe('imported checkpoints compute what the Hugging Face definitions say', () => {
  const cases: [string, HfFamily, Partial<TinyCheckpointOptions>][] = [
    ['Llama 2 (LlamaForCausalLM)', 'llama', {}],
    ['Llama 3.2 (llama3 rope scaling, tied embeddings)', 'llama3', {}],
    ['Mistral', 'mistral', {}],
    ['Qwen2 (q/k/v bias), sharded in 3 files', 'qwen2', { shards: 3 }],
    ['Qwen3 (q/k norm, head_dim apart from hidden/heads)', 'qwen3', {}],
  ];
  for (const [label, family, extra] of cases) {
    it(`${label}: bf16 checkpoint, fp32 import over 2 spans: logits within 1e-4, greedy tokens equal`, async () => {
      const ckpt = await checkpoint(`${family}-bf16`, { family, dtype: 'BF16', seed: 3, ...extra });
      const r = await importAndCompare(ckpt, join(root, `${family}-bf16`, 'out'));
      expect(r.maxAbs).toBeLessThanOrEqual(1e-4);
      expect(r.greedy).toEqual(r.expectedGreedy);
    });
  }

  it('F32 and F16 checkpoints import exactly too', async () => {
    for (const dtype of ['F32', 'F16'] as const) {
      const ckpt = await checkpoint(`llama-${dtype}`, { family: 'llama', dtype, seed: 5 });
      const r = await importAndCompare(ckpt, join(root, `llama-${dtype}`, 'out'));
      expect(r.maxAbs).toBeLessThanOrEqual(1e-4);
      expect(r.greedy).toEqual(r.expectedGreedy);
    }
  });

  it('a float16 import stays close (weights and hidden states rounded to half precision)', async () => {
    const ckpt = await checkpoint('qwen3-fp16', { family: 'qwen3', seed: 9 });
    const r = await importAndCompare(ckpt, join(root, 'qwen3-fp16', 'out'), 'float16');
    expect(r.maxAbs).toBeGreaterThan(0);
    expect(r.maxAbs).toBeLessThanOrEqual(0.05);
  });
});

describe('the manifest pins what the edge needs', () => {
  it('tokenizer files with their hashes, every eos id, the source; a repeated import is skipped, --force redoes it', async () => {
    const ckpt = await checkpoint('qwen3-tok', { family: 'qwen3', tokenizer: 'qwen3', eosTokenIds: [151645, 151643], hiddenSize: 32, numLayers: 2, seed: 1 });
    const out = join(root, 'qwen3-tok', 'out');
    const first = await importModel({ dir: ckpt, outDir: out, name: 'tiny-qwen3' });
    const t = first.manifest.tokenizer;
    expect(t.kind).toBe('hf-tokenizer');
    if (t.kind !== 'hf-tokenizer') return;
    expect(t.eosTokenIds).toEqual([151645, 151643]);
    expect(t.files.map((f) => f.path).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
    for (const f of t.files) expect((await stat(join(out, f.path))).size).toBe(f.bytes);
    expect(first.manifest.source).toEqual({ format: 'hf-safetensors', architecture: 'Qwen3ForCausalLM', dtype: 'BF16' });
    expect(first.manifest.name).toBe('tiny-qwen3');
    await verifyModelFiles(out, first.manifest);

    const again = await importModel({ dir: ckpt, outDir: out, name: 'tiny-qwen3' });
    expect(again.cached).toBe(true);
    expect(again.modelId).toBe(first.modelId);
    const forced = await importModel({ dir: ckpt, outDir: out, name: 'tiny-qwen3', force: true });
    expect(forced.cached).toBe(false);
    expect(forced.modelId).toBe(first.modelId);

    // Another tokenizer file is another model id.
    const cfg = JSON.parse(await readFile(join(ckpt, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(ckpt, 'tokenizer_config.json'), JSON.stringify({ ...cfg, chat_template: '{{ messages[0].content }}' }));
    const changed = await importModel({ dir: ckpt, outDir: out, name: 'tiny-qwen3' });
    expect(changed.cached).toBe(false);
    expect(changed.modelId).not.toBe(first.modelId);
  });
});

describe('bad checkpoints are refused by name, and nothing half-written looks like a model', () => {
  const defects: [CheckpointDefect, number][] = [
    ['unknown-architecture', 1],
    ['unknown-rope', 1],
    ['missing-tensor', 1],
    ['wrong-shape', 1],
    ['truncated', 1],
    ['bad-header', 1],
    ['missing-shard', 2],
  ];
  for (const [how, shards] of defects) {
    it(how, async () => {
      const ckpt = await checkpoint(`bad-${how}`, { family: how === 'unknown-rope' ? 'llama3' : 'llama', shards, numLayers: 2, seed: 2 });
      const { expect: why } = await corruptCheckpoint(ckpt, how);
      const out = join(root, `bad-${how}`, 'out');
      const err = await importModel({ dir: ckpt, outDir: out }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CheckpointError);
      expect((err as Error).message).toMatch(why);
      await expect(stat(join(out, 'manifest.json'))).rejects.toThrow();
    });
  }

  it('no tokenizer.json, no eos id, a missing config: each named', async () => {
    const ckpt = await checkpoint('bad-misc', { family: 'llama', numLayers: 2, seed: 2 });
    await rm(join(ckpt, 'tokenizer.json'));
    await expect(importModel({ dir: ckpt, outDir: join(root, 'bad-misc', 'out') })).rejects.toThrow(/tokenizer\.json is missing/);
    await minimalTokenizer(ckpt);
    const config = JSON.parse(await readFile(join(ckpt, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(ckpt, 'config.json'), JSON.stringify({ ...config, eos_token_id: null }));
    await rm(join(ckpt, 'generation_config.json'), { force: true });
    await expect(importModel({ dir: ckpt, outDir: join(root, 'bad-misc', 'out') })).rejects.toThrow(/no eos_token_id/);
    await rm(join(ckpt, 'config.json'));
    await expect(importModel({ dir: ckpt, outDir: join(root, 'bad-misc', 'out') })).rejects.toThrow(/config\.json is missing/);
  });
});

describe('pool-agent model import', () => {
  function io(): CliIo & { lines: string[]; errors: string[] } {
    const lines: string[] = [];
    const errors: string[] = [];
    // A state folder that does not exist: the import records its folder nowhere (never in ~).
    return { lines, errors, out: (l) => lines.push(l), err: (l) => errors.push(l), env: { LAYERNET_AGENT_DIR: join(root, 'no-agent-state') } };
  }

  it('prints the model id and name; a bad checkpoint exits 1 naming the file', async () => {
    const ckpt = await checkpoint('cli', { family: 'mistral', numLayers: 2, seed: 4 });
    const a = io();
    expect(await runModel(['import', ckpt, '--out', join(root, 'cli', 'out'), '--name', 'tiny-mistral'], a)).toBe(0);
    const printed = JSON.parse(a.lines.at(-1)!) as { modelId: string; name: string; family: string; numLayers: number };
    expect(printed).toMatchObject({ name: 'tiny-mistral', family: 'mistral', numLayers: 2 });
    expect(printed.modelId).toMatch(/^[0-9a-f]{64}$/);

    await corruptCheckpoint(ckpt, 'truncated');
    await expect(runModel(['import', ckpt, '--out', join(root, 'cli', 'out2')], io())).rejects.toMatchObject({ exitCode: 1, message: expect.stringMatching(/model\.safetensors/) });
    await expect(runModel(['import', '--out', join(root, 'cli', 'out3')], io())).rejects.toMatchObject({ exitCode: 2 });
    await expect(runModel(['import', ckpt], io())).rejects.toMatchObject({ exitCode: 2, message: expect.stringMatching(/--out/) });
  });
});
