/**
 * Hugging Face `config.json` → our Architecture, for the checkpoint classes the graph builder
 * reproduces exactly: LlamaForCausalLM (Llama 2, 3, 3.1/3.2 with `rope_type: "llama3"`),
 * MistralForCausalLM, Qwen2ForCausalLM (q/k/v bias) and Qwen3ForCausalLM (q/k RMSNorm).
 * Anything the graph would get wrong (another class, another rope scaling, biases or
 * activations it does not have) is refused by name, never approximated.
 *
 * @example
 * const { architecture, notes } = architectureFromConfig(JSON.parse(text));
 */
import { z } from 'zod';
import { architectureSchema, type Architecture } from '../../../protocol/manifest.js';
import { CheckpointError } from './safetensors.js';

export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM'] as const;
type SupportedArchitecture = (typeof SUPPORTED_ARCHITECTURES)[number];

const FAMILY: Record<SupportedArchitecture, Architecture['family']> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
};

const positiveInt = z.number().int().positive();
const tokenIds = z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative()).max(16)]).nullable().optional();

/** The fields we read; everything else in config.json is ignored (passthrough). */
export const hfConfigSchema = z
  .object({
    architectures: z.array(z.string().max(128)).min(1).max(4),
    model_type: z.string().max(64).optional(),
    vocab_size: positiveInt,
    hidden_size: positiveInt,
    intermediate_size: positiveInt,
    num_hidden_layers: positiveInt.max(1024),
    num_attention_heads: positiveInt,
    num_key_value_heads: positiveInt.nullable().optional(),
    head_dim: positiveInt.nullable().optional(),
    rms_norm_eps: z.number().positive(),
    rope_theta: z.number().positive().optional(),
    /** transformers 4.x */
    rope_scaling: z.record(z.string(), z.unknown()).nullable().optional(),
    /** transformers 5: rope_theta and the scaling in one object. */
    rope_parameters: z.record(z.string(), z.unknown()).nullable().optional(),
    max_position_embeddings: positiveInt,
    tie_word_embeddings: z.boolean().optional(),
    attention_bias: z.boolean().optional(),
    mlp_bias: z.boolean().optional(),
    hidden_act: z.string().max(32).optional(),
    sliding_window: positiveInt.nullable().optional(),
    use_sliding_window: z.boolean().optional(),
    bos_token_id: tokenIds,
    eos_token_id: tokenIds,
    torch_dtype: z.string().max(32).nullable().optional(),
    dtype: z.string().max(32).nullable().optional(),
  })
  .passthrough();
export type HfConfig = z.infer<typeof hfConfigSchema>;

const llama3Scaling = z.object({
  factor: z.number().positive(),
  low_freq_factor: z.number().positive(),
  high_freq_factor: z.number().positive(),
  original_max_position_embeddings: positiveInt,
});

export interface ArchitectureResult {
  architecture: Architecture;
  /** config.json's class name. */
  className: SupportedArchitecture;
  /** The LM head is the embedding (no `lm_head.weight` needed). */
  tied: boolean;
  /** Things the user should know (e.g. the context capped at a sliding window). */
  notes: string[];
}

/** Parses config.json's text. */
export function parseHfConfig(text: string): HfConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CheckpointError('config.json is not valid JSON', { file: 'config.json' });
  }
  const r = hfConfigSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new CheckpointError(`config.json: ${issue.path.join('.') || '(root)'}: ${issue.message}`, { file: 'config.json' });
  }
  return r.data;
}

export function architectureFromConfig(c: HfConfig): ArchitectureResult {
  const fail = (msg: string): never => {
    throw new CheckpointError(`config.json: ${msg}`, { file: 'config.json' });
  };
  const className = c.architectures[0]!;
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(className)) {
    fail(`architecture ${className} is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
  }
  const cls = className as SupportedArchitecture;
  const family = FAMILY[cls];
  const notes: string[] = [];
  if ((c.hidden_act ?? 'silu') !== 'silu') fail(`hidden_act ${c.hidden_act} is not supported (SwiGLU with silu only)`);
  if (c.mlp_bias) fail('mlp_bias: true is not supported (MLP projections without bias only)');
  if (c.attention_bias && family !== 'qwen2') fail(`attention_bias: true is not supported for ${cls}`);
  if (c.use_sliding_window) fail('use_sliding_window: true is not supported (full attention only)');

  const heads = c.num_attention_heads;
  const kvHeads = c.num_key_value_heads ?? heads;
  if (heads % kvHeads !== 0) fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const headDim = c.head_dim ?? c.hidden_size / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) fail(`head_dim ${headDim} must be an even integer`);

  const rope = c.rope_parameters ?? c.rope_scaling ?? null;
  const ropeTheta = c.rope_theta ?? (typeof rope?.rope_theta === 'number' ? rope.rope_theta : 10000);
  const ropeType = rope ? String(rope.rope_type ?? rope.type ?? 'default') : 'default';
  let ropeScaling: Architecture['ropeScaling'];
  if (ropeType === 'llama3') {
    const s = llama3Scaling.safeParse(rope);
    if (!s.success) fail(`rope_scaling of type llama3 needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings`);
    const v = s.data!;
    if (v.high_freq_factor <= v.low_freq_factor) fail('rope_scaling: high_freq_factor must exceed low_freq_factor');
    ropeScaling = { type: 'llama3', factor: v.factor, lowFreqFactor: v.low_freq_factor, highFreqFactor: v.high_freq_factor, originalMaxPositionEmbeddings: v.original_max_position_embeddings };
  } else if (ropeType !== 'default') {
    fail(`rope scaling type ${JSON.stringify(ropeType)} is not supported (supported: llama3, or none)`);
  }

  let maxPositions = c.max_position_embeddings;
  // Mistral 7B v0.1 attends over a window of 4096 positions; full attention is the same math up to it.
  if (family === 'mistral' && c.sliding_window != null && c.sliding_window < maxPositions) {
    notes.push(`context capped at the sliding window of ${c.sliding_window} positions (max_position_embeddings ${maxPositions}): the graph attends to every position, which equals windowed attention up to there`);
    maxPositions = c.sliding_window;
  }
  const tied = c.tie_word_embeddings ?? false;
  const architecture = architectureSchema.parse({
    family,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numAttentionHeads: heads,
    numKeyValueHeads: kvHeads,
    headDim,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta,
    maxPositionEmbeddings: maxPositions,
    ...(family === 'qwen2' ? { attentionBias: true } : {}),
    ...(family === 'qwen3' ? { qkNorm: true } : {}),
    ...(tied ? { tieWordEmbeddings: true } : {}),
    ...(ropeScaling ? { ropeScaling } : {}),
  });
  return { architecture, className: cls, tied, notes };
}

/** Every tensor the graph reads, with the shape the config implies (HF layout: nn.Linear is [out, in]). */
export function expectedTensors(a: Architecture, tied: boolean): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const H = a.hiddenSize;
  m.set('model.embed_tokens.weight', [a.vocabSize, H]);
  for (let i = 0; i < a.numLayers; i++) {
    for (const [k, v] of layerTensors(a, i)) m.set(k, v);
  }
  m.set('model.norm.weight', [H]);
  if (!tied) m.set('lm_head.weight', [a.vocabSize, H]);
  return m;
}

/** The tensors of decoder layer `i`, HF names and shapes. */
export function layerTensors(a: Architecture, i: number): Map<string, number[]> {
  const H = a.hiddenSize;
  const q = a.numAttentionHeads * a.headDim;
  const kv = a.numKeyValueHeads * a.headDim;
  const p = `model.layers.${i}`;
  const m = new Map<string, number[]>([
    [`${p}.input_layernorm.weight`, [H]],
    [`${p}.self_attn.q_proj.weight`, [q, H]],
    [`${p}.self_attn.k_proj.weight`, [kv, H]],
    [`${p}.self_attn.v_proj.weight`, [kv, H]],
    [`${p}.self_attn.o_proj.weight`, [H, q]],
    [`${p}.post_attention_layernorm.weight`, [H]],
    [`${p}.mlp.gate_proj.weight`, [a.intermediateSize, H]],
    [`${p}.mlp.up_proj.weight`, [a.intermediateSize, H]],
    [`${p}.mlp.down_proj.weight`, [H, a.intermediateSize]],
  ]);
  if (a.attentionBias) {
    m.set(`${p}.self_attn.q_proj.bias`, [q]);
    m.set(`${p}.self_attn.k_proj.bias`, [kv]);
    m.set(`${p}.self_attn.v_proj.bias`, [kv]);
  }
  if (a.qkNorm) {
    m.set(`${p}.self_attn.q_norm.weight`, [a.headDim]);
    m.set(`${p}.self_attn.k_norm.weight`, [a.headDim]);
  }
  return m;
}
