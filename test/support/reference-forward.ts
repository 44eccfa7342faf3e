/**
 * An independent float64 reference forward pass of Llama-family causal LMs, written plainly from
 * transformers' modeling files (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
 * Qwen3ForCausalLM: RMSNorm, rotary embedding with rotate_half, the llama3 inv_freq scaling of
 * modeling_rope_utils, repeat_kv, eager causal attention, SwiGLU MLP). Full recompute per call, no
 * cache: slow but obviously right, for comparing the importer's ONNX files against on tiny models.
 * HF computes rotary tables and norms in float32 and stores activations in the model dtype; this
 * keeps every intermediate in float64, so comparisons need a tolerance.
 */
import { readCheckpointForTests, type CheckpointTensor } from './hf-safetensors.js';

export interface ReferenceDims {
  architecture: 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM' | 'Qwen3ForCausalLM';
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  ropeTheta: number;
  /** Null, or the llama3 parameters of rope_scaling. */
  llama3Rope: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number } | null;
  tie: boolean;
  /** Which of q/k/v/o carry a bias: Qwen2 q/k/v always; Llama and Qwen3 all four when attention_bias. */
  attnBias: { q: boolean; k: boolean; v: boolean; o: boolean };
  mlpBias: boolean;
  qkNorm: boolean;
  /** Mistral's sliding_window when set; sequences longer than it are refused (not implemented). */
  slidingWindow: number | null;
}

export interface ReferenceModel {
  dims: ReferenceDims;
  /** The checkpoint's tensors by HF name (values already rounded to the stored dtype). */
  tensors: Map<string, CheckpointTensor>;
  invFreq: Float64Array;
}

export interface ReferenceOutput {
  /** One row of `vocab` logits per position (only the last when asked for 'last'). */
  logits: Float64Array[];
  /** One row of `hidden` per position: the final hidden states after model.norm. */
  hidden: Float64Array[];
}

const ARCHITECTURES = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM'] as const;

function num(config: Record<string, unknown>, key: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== 'number') throw new Error(`config.${key} missing or not a number`);
  return v;
}

/**
 * Reads the dimensions the forward needs from a config.json object, with transformers' defaults
 * (head_dim = hidden / heads when absent or null, rope_theta 10000, kv heads = heads).
 * @example referenceDims(ckpt.config).headDim
 */
export function referenceDims(config: Record<string, unknown>): ReferenceDims {
  const architecture = (config.architectures as string[] | undefined)?.[0];
  if (!ARCHITECTURES.includes(architecture as ReferenceDims['architecture'])) throw new Error(`architecture ${architecture} not handled`);
  const arch = architecture as ReferenceDims['architecture'];
  if ((config.hidden_act ?? 'silu') !== 'silu') throw new Error(`hidden_act ${String(config.hidden_act)} not handled`);
  const hidden = num(config, 'hidden_size');
  const heads = num(config, 'num_attention_heads');
  const scaling = config.rope_scaling as Record<string, unknown> | null | undefined;
  const ropeType = scaling ? (scaling.rope_type ?? scaling.type) : 'default';
  if (ropeType !== 'default' && ropeType !== 'llama3') throw new Error(`rope type ${String(ropeType)} not handled`);
  const attentionBias = config.attention_bias === true;
  const qwen2 = arch === 'Qwen2ForCausalLM';
  const mistral = arch === 'MistralForCausalLM';
  return {
    architecture: arch,
    vocab: num(config, 'vocab_size'),
    hidden,
    intermediate: num(config, 'intermediate_size'),
    layers: num(config, 'num_hidden_layers'),
    heads,
    kvHeads: num(config, 'num_key_value_heads', heads),
    headDim: typeof config.head_dim === 'number' && config.head_dim > 0 ? config.head_dim : hidden / heads,
    eps: num(config, 'rms_norm_eps'),
    ropeTheta: num(config, 'rope_theta', 10000),
    llama3Rope:
      ropeType === 'llama3' && scaling
        ? {
            factor: num(scaling, 'factor'),
            lowFreqFactor: num(scaling, 'low_freq_factor'),
            highFreqFactor: num(scaling, 'high_freq_factor'),
            // standardize_rope_params: absent means max_position_embeddings.
            originalMaxPositions: num(scaling, 'original_max_position_embeddings', config.max_position_embeddings as number),
          }
        : null,
    // Llama/Mistral/Qwen2/Qwen3 configs all default tie_word_embeddings to false.
    tie: config.tie_word_embeddings === true,
    attnBias: qwen2
      ? { q: true, k: true, v: true, o: false }
      : mistral
        ? { q: false, k: false, v: false, o: false }
        : { q: attentionBias, k: attentionBias, v: attentionBias, o: attentionBias },
    mlpBias: arch === 'LlamaForCausalLM' && config.mlp_bias === true,
    qkNorm: arch === 'Qwen3ForCausalLM',
    // Qwen2/3 only slide with use_sliding_window; Mistral whenever sliding_window is set.
    slidingWindow: mistral && typeof config.sliding_window === 'number' ? config.sliding_window : null,
  };
}

/**
 * Rotary inverse frequencies, one per (j, j + headDim/2) pair: theta^(-2j/d), then for llama3
 * `_compute_llama3_parameters`: wavelength 2π/f below original/high_freq_factor kept, above
 * original/low_freq_factor divided by factor, between them blended with
 * s = (original/wavelen - low) / (high - low): (1 - s)·f/factor + s·f.
 * @example ropeInvFreq({ ...dims, headDim: 16, ropeTheta: 500000, llama3Rope: null })[1] // 500000^(-1/8)
 */
export function ropeInvFreq(dims: Pick<ReferenceDims, 'headDim' | 'ropeTheta' | 'llama3Rope'>): Float64Array {
  const d = dims.headDim;
  const out = new Float64Array(d / 2);
  for (let j = 0; j < d / 2; j++) out[j] = 1 / dims.ropeTheta ** ((2 * j) / d);
  const r = dims.llama3Rope;
  if (!r) return out;
  const lowFreqWavelen = r.originalMaxPositions / r.lowFreqFactor;
  const highFreqWavelen = r.originalMaxPositions / r.highFreqFactor;
  for (let j = 0; j < out.length; j++) {
    const f = out[j]!;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) continue;
    if (wavelen > lowFreqWavelen) {
      out[j] = f / r.factor;
    } else {
      const s = (r.originalMaxPositions / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor);
      out[j] = ((1 - s) * f) / r.factor + s * f;
    }
  }
  return out;
}

/** Expected [shape] of every tensor the config implies, independently of any writer's list. */
function expectedShapes(d: ReferenceDims): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const q = d.heads * d.headDim;
  const kv = d.kvHeads * d.headDim;
  m.set('model.embed_tokens.weight', [d.vocab, d.hidden]);
  for (let l = 0; l < d.layers; l++) {
    const a = `model.layers.${l}.self_attn`;
    const proj = { q: [q, d.hidden], k: [kv, d.hidden], v: [kv, d.hidden], o: [d.hidden, q] } as const;
    for (const p of ['q', 'k', 'v', 'o'] as const) {
      m.set(`${a}.${p}_proj.weight`, [...proj[p]]);
      if (d.attnBias[p]) m.set(`${a}.${p}_proj.bias`, [proj[p][0]]);
    }
    if (d.qkNorm) {
      m.set(`${a}.q_norm.weight`, [d.headDim]);
      m.set(`${a}.k_norm.weight`, [d.headDim]);
    }
    const mlp = `model.layers.${l}.mlp`;
    for (const [p, shape] of [['gate', [d.intermediate, d.hidden]], ['up', [d.intermediate, d.hidden]], ['down', [d.hidden, d.intermediate]]] as const) {
      m.set(`${mlp}.${p}_proj.weight`, [...shape]);
      if (d.mlpBias) m.set(`${mlp}.${p}_proj.bias`, [shape[0]]);
    }
    m.set(`model.layers.${l}.input_layernorm.weight`, [d.hidden]);
    m.set(`model.layers.${l}.post_attention_layernorm.weight`, [d.hidden]);
  }
  m.set('model.norm.weight', [d.hidden]);
  if (!d.tie) m.set('lm_head.weight', [d.vocab, d.hidden]);
  return m;
}

/**
 * A reference model over a config and its tensors; throws when a tensor the config implies is
 * missing or misshapen (extra tensors are ignored).
 * @example const ref = referenceModel(ckpt.config, ckpt.tensors)
 */
export function referenceModel(config: Record<string, unknown>, tensors: Map<string, CheckpointTensor>): ReferenceModel {
  const dims = referenceDims(config);
  for (const [name, shape] of expectedShapes(dims)) {
    const t = tensors.get(name);
    if (!t) throw new Error(`tensor ${name} missing`);
    if (t.shape.join(',') !== shape.join(',')) throw new Error(`tensor ${name} is [${t.shape}], config implies [${shape}]`);
  }
  return { dims, tensors, invFreq: ropeInvFreq(dims) };
}

/** Reads a checkpoint folder into a reference model. @example const ref = await loadReferenceModel(dir) */
export async function loadReferenceModel(dir: string): Promise<ReferenceModel> {
  const { config, tensors } = await readCheckpointForTests(dir);
  return referenceModel(config, tensors);
}

// ---- the forward, one position (row) at a time ----

function rmsNorm(x: Float64Array, weight: Float64Array, eps: number, from = 0, len = x.length): Float64Array {
  let ss = 0;
  for (let i = 0; i < len; i++) ss += x[from + i]! * x[from + i]!;
  const inv = 1 / Math.sqrt(ss / len + eps);
  const out = new Float64Array(len);
  for (let i = 0; i < len; i++) out[i] = x[from + i]! * inv * weight[i]!;
  return out;
}

/** y = W x + b with W as nn.Linear stores it: [out, in], row-major. */
function linear(w: CheckpointTensor, x: Float64Array, b?: CheckpointTensor): Float64Array {
  const [out, inp] = w.shape as [number, number];
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = b ? b.values[o]! : 0;
    const row = o * inp;
    for (let i = 0; i < inp; i++) s += w.values[row + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

/**
 * apply_rotary_pos_emb on one head in place: x·cos + rotate_half(x)·sin with rotate_half = cat(-x2, x1)
 * and cos/sin = cat(freqs, freqs): dimension j turns with j + headDim/2 (not with j + 1, the
 * interleaved layout of Meta's original checkpoints, which HF's conversion permuted away).
 * @example const x = new Float64Array([1, 0, 0, 0]); rotateHalf(x, 0, 4, 1, new Float64Array([1, 0])) // x = [cos 1, 0, sin 1, 0]
 */
export function rotateHalf(x: Float64Array, from: number, headDim: number, pos: number, invFreq: Float64Array): void {
  const half = headDim / 2;
  for (let j = 0; j < half; j++) {
    const angle = pos * invFreq[j]!;
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    const x1 = x[from + j]!;
    const x2 = x[from + j + half]!;
    x[from + j] = x1 * c - x2 * s;
    x[from + j + half] = x2 * c + x1 * s;
  }
}

/**
 * Logits (all positions, or only the last) and final-normed hidden states for `ids` at positions
 * 0..n-1, with full causal attention over the sequence.
 * @example const { logits } = referenceForward(ref, [1, 5, 9]); logits[2]!.length === ref.dims.vocab
 */
export function referenceForward(ref: ReferenceModel, ids: number[], opts: { logits?: 'all' | 'last' } = {}): ReferenceOutput {
  const d = ref.dims;
  const w = (name: string): CheckpointTensor => ref.tensors.get(name)!;
  const opt = (name: string, present: boolean): CheckpointTensor | undefined => (present ? w(name) : undefined);
  if (d.slidingWindow !== null && ids.length > d.slidingWindow) throw new Error('sliding-window attention not implemented');
  const embed = w('model.embed_tokens.weight');
  const h = ids.map((id) => {
    if (!Number.isInteger(id) || id < 0 || id >= d.vocab) throw new Error(`token id ${id} outside the vocabulary`);
    return embed.values.slice(id * d.hidden, (id + 1) * d.hidden);
  });
  const groups = d.heads / d.kvHeads;
  const scale = 1 / Math.sqrt(d.headDim);
  for (let l = 0; l < d.layers; l++) {
    const p = `model.layers.${l}`;
    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    for (let t = 0; t < h.length; t++) {
      const x = rmsNorm(h[t]!, w(`${p}.input_layernorm.weight`).values, d.eps);
      const q = linear(w(`${p}.self_attn.q_proj.weight`), x, opt(`${p}.self_attn.q_proj.bias`, d.attnBias.q));
      const k = linear(w(`${p}.self_attn.k_proj.weight`), x, opt(`${p}.self_attn.k_proj.bias`, d.attnBias.k));
      const v = linear(w(`${p}.self_attn.v_proj.weight`), x, opt(`${p}.self_attn.v_proj.bias`, d.attnBias.v));
      // Qwen3: q_norm / k_norm over each head's head_dim slice, before the rotation.
      if (d.qkNorm) {
        for (let hq = 0; hq < d.heads; hq++) q.set(rmsNorm(q, w(`${p}.self_attn.q_norm.weight`).values, d.eps, hq * d.headDim, d.headDim), hq * d.headDim);
        for (let hk = 0; hk < d.kvHeads; hk++) k.set(rmsNorm(k, w(`${p}.self_attn.k_norm.weight`).values, d.eps, hk * d.headDim, d.headDim), hk * d.headDim);
      }
      for (let hq = 0; hq < d.heads; hq++) rotateHalf(q, hq * d.headDim, d.headDim, t, ref.invFreq);
      for (let hk = 0; hk < d.kvHeads; hk++) rotateHalf(k, hk * d.headDim, d.headDim, t, ref.invFreq);
      qs.push(q);
      ks.push(k);
      vs.push(v);
    }
    for (let t = 0; t < h.length; t++) {
      const attn = new Float64Array(d.heads * d.headDim);
      for (let hq = 0; hq < d.heads; hq++) {
        const kvHead = Math.floor(hq / groups); // repeat_kv: query head hq reads kv head hq // n_rep
        const qo = hq * d.headDim;
        const ko = kvHead * d.headDim;
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < d.headDim; i++) dot += qs[t]![qo + i]! * ks[s]![ko + i]!;
          scores[s] = dot * scale;
          if (scores[s]! > max) max = scores[s]!;
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) sum += scores[s] = Math.exp(scores[s]! - max);
        for (let s = 0; s <= t; s++) {
          const pr = scores[s]! / sum;
          for (let i = 0; i < d.headDim; i++) attn[qo + i]! += pr * vs[s]![ko + i]!;
        }
      }
      const o = linear(w(`${p}.self_attn.o_proj.weight`), attn, opt(`${p}.self_attn.o_proj.bias`, d.attnBias.o));
      const hr = h[t]!;
      for (let i = 0; i < d.hidden; i++) hr[i]! += o[i]!;
      const x = rmsNorm(hr, w(`${p}.post_attention_layernorm.weight`).values, d.eps);
      const gate = linear(w(`${p}.mlp.gate_proj.weight`), x, opt(`${p}.mlp.gate_proj.bias`, d.mlpBias));
      const up = linear(w(`${p}.mlp.up_proj.weight`), x, opt(`${p}.mlp.up_proj.bias`, d.mlpBias));
      for (let i = 0; i < gate.length; i++) gate[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!; // SiLU(gate)·up
      const down = linear(w(`${p}.mlp.down_proj.weight`), gate, opt(`${p}.mlp.down_proj.bias`, d.mlpBias));
      for (let i = 0; i < d.hidden; i++) hr[i]! += down[i]!;
    }
  }
  const normW = w('model.norm.weight').values;
  const hidden = h.map((row) => rmsNorm(row, normW, d.eps));
  const head = w(d.tie ? 'model.embed_tokens.weight' : 'lm_head.weight');
  const rows = opts.logits === 'last' ? hidden.slice(-1) : hidden;
  return { logits: rows.map((row) => linear(head, row)), hidden };
}

/** Index of the largest value; ties go to the lowest index. @example argmax(new Float64Array([1, 3, 3])) // 1 */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/**
 * `n` greedy tokens after `promptIds`, recomputing the whole sequence at each step.
 * @example greedyGenerate(ref, [1, 2, 3], 8) // 8 token ids
 */
export function greedyGenerate(ref: ReferenceModel, promptIds: number[], n: number): number[] {
  if (promptIds.length === 0) throw new Error('greedyGenerate needs at least one prompt token');
  const seq = [...promptIds];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const next = argmax(referenceForward(ref, seq, { logits: 'last' }).logits[0]!);
    out.push(next);
    seq.push(next);
  }
  return out;
}
