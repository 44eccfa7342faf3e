/**
 * Llama-architecture graphs, one ONNX model per block span: `embed` (token embedding), one per
 * decoder layer (RMSNorm, rotary embeddings computed from `position_ids`, grouped-query attention
 * with explicit KV cache and a causal mask offset by the past length, SwiGLU MLP), and `head`
 * (final RMSNorm and LM head). Standard opset-17 ops only, so the CPU provider runs everything.
 *
 * Names follow torch.onnx exports of Hugging Face Llama models (`/model/layers.N/self_attn/
 * q_proj/MatMul`, `model.layers.N.self_attn.q_proj.weight`, `past_key_values.N.key`,
 * `present.N.key`) so real exports can be cut at the same boundaries. MatMul weights are stored
 * [in, out], as torch.onnx stores them.
 *
 * The KV cache comes in two layouts (protocol/manifest.ts `kvCache`): 'full', the contract of
 * standard exports, and 'append' (the default), where the cache inputs are the runtime's buffers
 * and present.N.* carry only the new rows, so decode time does not grow with copies of the cache.
 *
 * float16 models keep weights, hidden states between blocks and the KV cache in float16 and
 * compute in float32 (Casts after each load), which the CPU provider supports everywhere
 * (onnxruntime-node 1.30's CPU provider has no float16 kernels for MatMul, Add, Mul, Softmax and
 * the reductions: it would insert the same Casts itself).
 *
 * With `quant` (protocol/manifest.ts `WeightQuant`), the projections (and the LM head when
 * `quant.lmHead`) are MatMulNBits over int8/int4 codes (quant-linear.ts); every file of such a
 * model imports the `com.microsoft` opset, since a merged span keeps its first file's imports.
 */
import type { Architecture, KvCacheLayout, ModelDtype, WeightQuant } from '../../protocol/manifest.js';
import { attr, DataType, MS_DOMAIN, OnnxGraph, type DataTypeCode } from './onnx-graph.js';
import { quantizedMatMul } from './quant-linear.js';
import { toFloat16Array } from './weights.js';
import type { WeightProvider } from './weight-provider.js';

export const INPUT_IDS = 'input_ids';
export const POSITION_IDS = 'position_ids';
export const NUM_LOGITS_TO_KEEP = 'num_logits_to_keep';
export const LOGITS = 'logits';
export const FINAL_HIDDEN = 'final_hidden';
export const hiddenName = (i: number): string => `hidden_states.${i}`;
export const pastKeyName = (i: number): string => `past_key_values.${i}.key`;
export const pastValueName = (i: number): string => `past_key_values.${i}.value`;
export const presentKeyName = (i: number): string => `present.${i}.key`;
export const presentValueName = (i: number): string => `present.${i}.value`;

const FLOAT_MIN = -3.4028234663852886e38;
const INT64_MAX = 9223372036854775807n;

export function storageType(dtype: ModelDtype): DataTypeCode {
  return dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
}

interface BuildContext {
  g: OnnxGraph;
  arch: Architecture;
  dtype: ModelDtype;
  weights: WeightProvider;
  quant?: WeightQuant;
}

/** A block graph; a quantized model's files all import the contrib opset. */
function newGraph(name: string, quant: WeightQuant | undefined): OnnxGraph {
  const g = new OnnxGraph(name);
  return quant ? g.useDomain(MS_DOMAIN) : g;
}

/** Adds a weight initializer and returns the name of its float32 value (a Cast for float16). */
function weight(ctx: BuildContext, name: string, dims: number[], values: Float32Array): string {
  const { g, dtype } = ctx;
  if (dtype === 'float32') {
    return g.initializer({ name, dataType: DataType.FLOAT, dims, raw: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
  }
  const half = toFloat16Array(values);
  g.initializer({ name, dataType: DataType.FLOAT16, dims, raw: new Uint8Array(half.buffer) });
  return g.op('Cast', `${name}/Cast`, [name], { to: attr.int(DataType.FLOAT) });
}

/** x W (+ b): `name` is the matrix, stored [fanIn, fanOut]; `biasName` adds its bias [fanOut]. */
function linear(ctx: BuildContext, scope: string, x: string, name: string, fanIn: number, fanOut: number, biasName?: string): string {
  const values = ctx.weights.linear(name, fanIn, fanOut);
  const y = ctx.quant
    ? quantizedMatMul(ctx.g, scope, x, name, values, fanIn, fanOut, ctx.quant, ctx.dtype)
    : ctx.g.op('MatMul', `${scope}/MatMul`, [x, weight(ctx, name, [fanIn, fanOut], values)]);
  if (biasName === undefined) return y;
  const b = weight(ctx, biasName, [fanOut], ctx.weights.bias(biasName, fanOut));
  return ctx.g.op('Add', `${scope}/Add`, [b, y]);
}

/** y = x / sqrt(mean(x^2) + eps) * weight over the last axis (`size`), as Hugging Face's LlamaRMSNorm (float32). */
function rmsNorm(ctx: BuildContext, scope: string, x: string, weightName: string, size = ctx.arch.hiddenSize): string {
  const { g, arch } = ctx;
  const w = weight(ctx, weightName, [size], ctx.weights.norm(weightName, size));
  const two = g.constFloat(scope, [2], true);
  const sq = g.op('Pow', `${scope}/Pow`, [x, two]);
  const mean = g.op('ReduceMean', `${scope}/ReduceMean`, [sq], { axes: attr.ints([-1]), keepdims: attr.int(1) });
  const eps = g.constFloat(scope, [arch.rmsNormEps], true);
  const sum = g.op('Add', `${scope}/Add`, [mean, eps]);
  const root = g.op('Sqrt', `${scope}/Sqrt`, [sum]);
  const inv = g.op('Reciprocal', `${scope}/Reciprocal`, [root]);
  const normed = g.op('Mul', `${scope}/Mul`, [x, inv]);
  return g.op('Mul', `${scope}/Mul_1`, [w, normed]);
}

function toFloat(ctx: BuildContext, scope: string, x: string): string {
  return ctx.dtype === 'float16' ? ctx.g.op('Cast', `${scope}/Cast`, [x], { to: attr.int(DataType.FLOAT) }) : x;
}

function toStorage(ctx: BuildContext, scope: string, x: string): string {
  return ctx.dtype === 'float16' ? ctx.g.op('Cast', `${scope}/Cast`, [x], { to: attr.int(DataType.FLOAT16) }) : x;
}

/** `embed.onnx`: input_ids int64 [1, T] -> hidden_states.0 [1, T, hidden]. */
export function embedGraph(arch: Architecture, dtype: ModelDtype, weights: WeightProvider, quant?: WeightQuant): OnnxGraph {
  const g = newGraph('layernet-embed', quant);
  const ids = g.input(INPUT_IDS, DataType.INT64, [1, 'sequence_length']);
  const name = 'model.embed_tokens.weight';
  const values = weights.embedding(name, arch.vocabSize, arch.hiddenSize);
  const dims = [arch.vocabSize, arch.hiddenSize];
  if (dtype === 'float32') g.initializer({ name, dataType: DataType.FLOAT, dims, raw: new Uint8Array(values.buffer) });
  else g.initializer({ name, dataType: DataType.FLOAT16, dims, raw: new Uint8Array(toFloat16Array(values).buffer) });
  g.node('Gather', '/model/embed_tokens/Gather', [name, ids], { axis: attr.int(0) }, [hiddenName(0)]);
  g.output(hiddenName(0), storageType(dtype), [1, 'sequence_length', arch.hiddenSize]);
  return g;
}

/** Rotary cos/sin [1, 1, T, headDim] from position_ids, as Hugging Face's LlamaRotaryEmbedding. */
function rotary(ctx: BuildContext, scope: string, positionIds: string): { cos: string; sin: string } {
  const { g, arch } = ctx;
  const d = arch.headDim;
  let invFreq: string;
  if (arch.ropeScaling) {
    // Scaled frequencies are constants of the checkpoint: computed once here (float64, stored float32).
    invFreq = g.constFloat(scope, scaledInverseFrequencies(arch));
  } else {
    const exps = Array.from({ length: d / 2 }, (_, i) => (2 * i) / d);
    const base = g.constFloat(scope, [arch.ropeTheta], true);
    const expsName = g.constFloat(scope, exps);
    const pw = g.op('Pow', `${scope}/Pow`, [base, expsName]);
    invFreq = g.op('Reciprocal', `${scope}/Reciprocal`, [pw]);
  }
  const pos = g.op('Cast', `${scope}/Cast`, [positionIds], { to: attr.int(DataType.FLOAT) });
  const posU = g.op('Unsqueeze', `${scope}/Unsqueeze`, [pos, g.constInt64(scope, [2])]);
  const freqs = g.op('Mul', `${scope}/Mul`, [posU, invFreq]);
  const emb = g.op('Concat', `${scope}/Concat`, [freqs, freqs], { axis: attr.int(-1) });
  const cos = g.op('Cos', `${scope}/Cos`, [emb]);
  const sin = g.op('Sin', `${scope}/Sin`, [emb]);
  const axis1 = g.constInt64(scope, [1]);
  return {
    cos: g.op('Unsqueeze', `${scope}/Unsqueeze_1`, [cos, axis1]),
    sin: g.op('Unsqueeze', `${scope}/Unsqueeze_2`, [sin, axis1]),
  };
}

/**
 * Llama 3.1's rotary frequencies (`rope_type: "llama3"`), as transformers'
 * `_compute_llama3_parameters`: wavelengths longer than original/lowFreqFactor are divided by
 * `factor`, shorter than original/highFreqFactor kept, the band between interpolated smoothly.
 */
export function scaledInverseFrequencies(arch: Architecture): number[] {
  const d = arch.headDim;
  const s = arch.ropeScaling;
  const base = Array.from({ length: d / 2 }, (_, i) => 1 / arch.ropeTheta ** ((2 * i) / d));
  if (!s) return base;
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return base.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return ((1 - smooth) * f) / s.factor + smooth * f;
  });
}

/** x * cos + rotate_half(x) * sin, x [1, heads, T, headDim]. */
function applyRotary(ctx: BuildContext, scope: string, x: string, cos: string, sin: string): string {
  const { g, arch } = ctx;
  const half = arch.headDim / 2;
  const axes = g.constInt64(scope, [3]);
  const x1 = g.op('Slice', `${scope}/Slice`, [x, g.constInt64(scope, [0]), g.constInt64(scope, [half]), axes]);
  const x2 = g.op('Slice', `${scope}/Slice_1`, [x, g.constInt64(scope, [half]), g.constInt64(scope, [INT64_MAX]), axes]);
  const neg = g.op('Neg', `${scope}/Neg`, [x2]);
  const rot = g.op('Concat', `${scope}/Concat`, [neg, x1], { axis: attr.int(-1) });
  const a = g.op('Mul', `${scope}/Mul`, [x, cos]);
  const b = g.op('Mul', `${scope}/Mul_1`, [rot, sin]);
  return g.op('Add', `${scope}/Add`, [a, b]);
}

/**
 * `layers.<i>.onnx`: hidden_states.i [1, T, hidden], position_ids int64 [1, T],
 * past_key_values.i.key/value [1, kvHeads, P, headDim] -> hidden_states.{i+1} and
 * present.i.key/value. `kvCache` (protocol/manifest.ts): 'full' as standard exports (P = past
 * length, present = past ++ new, [1, kvHeads, past + T, headDim]); 'append' (P = the runtime's
 * buffer capacity, present = the T new rows only, [1, kvHeads, T, headDim]).
 */
export function layerGraph(arch: Architecture, dtype: ModelDtype, weights: WeightProvider, layer: number, kvCache: KvCacheLayout = 'append', quant?: WeightQuant): OnnxGraph {
  const g = newGraph(`layernet-layer-${layer}`, quant);
  const ctx: BuildContext = { g, arch, dtype, weights, ...(quant ? { quant } : {}) };
  const st = storageType(dtype);
  const H = arch.numAttentionHeads;
  const KV = arch.numKeyValueHeads;
  const D = arch.headDim;
  const rep = H / KV;
  const p = `/model/layers.${layer}`;
  const wp = `model.layers.${layer}`;

  const hiddenIn = g.input(hiddenName(layer), st, [1, 'sequence_length', arch.hiddenSize]);
  const positionIds = g.input(POSITION_IDS, DataType.INT64, [1, 'sequence_length']);
  const pastK = g.input(pastKeyName(layer), st, [1, KV, 'past_sequence_length', D]);
  const pastV = g.input(pastValueName(layer), st, [1, KV, 'past_sequence_length', D]);

  const x = toFloat(ctx, `${p}/input`, hiddenIn);
  const h = rmsNorm(ctx, `${p}/input_layernorm`, x, `${wp}.input_layernorm.weight`);

  const a = `${p}/self_attn`;
  const bias = (proj: string): string | undefined => (arch.attentionBias ? `${wp}.self_attn.${proj}.bias` : undefined);
  const q = linear(ctx, `${a}/q_proj`, h, `${wp}.self_attn.q_proj.weight`, arch.hiddenSize, H * D, bias('q_proj'));
  const k = linear(ctx, `${a}/k_proj`, h, `${wp}.self_attn.k_proj.weight`, arch.hiddenSize, KV * D, bias('k_proj'));
  const v = linear(ctx, `${a}/v_proj`, h, `${wp}.self_attn.v_proj.weight`, arch.hiddenSize, KV * D, bias('v_proj'));
  const perm0213 = { perm: attr.ints([0, 2, 1, 3]) };
  // Qwen3 normalises each head of q and k (over headDim) between the projection and the rotary embedding.
  const heads = (x: string, n: number, tag: string, norm?: string): string => {
    const r = g.op('Reshape', `${a}/Reshape${tag}`, [x, g.constInt64(a, [0, 0, n, D])]);
    const normed = norm === undefined ? r : rmsNorm(ctx, `${a}/${norm}`, r, `${wp}.self_attn.${norm}.weight`, D);
    return g.op('Transpose', `${a}/Transpose${tag}`, [normed], perm0213);
  };
  const qh = heads(q, H, '', arch.qkNorm ? 'q_norm' : undefined);
  const kh = heads(k, KV, '_1', arch.qkNorm ? 'k_norm' : undefined);
  const vh = heads(v, KV, '_2');

  const { cos, sin } = rotary(ctx, `${a}/rotary_emb`, positionIds);
  const qr = applyRotary(ctx, `${a}/rotary_q`, qh, cos, sin);
  const kr = applyRotary(ctx, `${a}/rotary_k`, kh, cos, sin);

  // The cache holds the storage dtype; attention reads it back, so a position's key is the same
  // whether it was computed in this call or an earlier one.
  const kNew = toStorage(ctx, `${a}/key_store`, kr);
  const vNew = toStorage(ctx, `${a}/value_store`, vh);
  // Grouped-query attention without repeating the cache: queries [1, KV, rep, T, D] against
  // keys [1, KV, 1, S, D] (broadcast over rep). Head h uses kv head floor(h / rep), as repeat_kv.
  const qg = g.op('Reshape', `${a}/Reshape_3`, [qr, g.constInt64(a, [0, KV, rep, -1, D])]);
  const axis2 = g.constInt64(a, [2]);
  const scale = g.constFloat(a, [1 / Math.sqrt(D)], true);
  const one = g.constInt64(a, [1], true);
  const zero = g.constInt64(a, [0], true);
  const shapeX = g.op('Shape', `${a}/Shape_1`, [hiddenIn]);
  const seqLen = g.op('Gather', `${a}/Gather_1`, [shapeX, g.constInt64(a, [1], true)], { axis: attr.int(0) });
  let ctxv: string;
  if (kvCache === 'full') {
    const concat2 = { axis: attr.int(2) };
    g.node('Concat', `${a}/Concat_k`, [pastK, kNew], concat2, [presentKeyName(layer)]);
    g.node('Concat', `${a}/Concat_v`, [pastV, vNew], concat2, [presentValueName(layer)]);
    const kAll = toFloat(ctx, `${a}/key_load`, presentKeyName(layer));
    const vAll = toFloat(ctx, `${a}/value_load`, presentValueName(layer));
    const kT = g.op('Transpose', `${a}/Transpose_3`, [kAll], { perm: attr.ints([0, 1, 3, 2]) });
    const kU = g.op('Unsqueeze', `${a}/Unsqueeze`, [kT, axis2]);
    const vU = g.op('Unsqueeze', `${a}/Unsqueeze_1`, [vAll, axis2]);
    const scores = g.op('MatMul', `${a}/MatMul`, [qg, kU]);
    const scaled = g.op('Mul', `${a}/Mul`, [scores, scale]);
    // Causal mask over absolute positions: query j of this call sits at past + j and sees keys 0..past+j.
    const shapeK = g.op('Shape', `${a}/Shape`, [kAll]);
    const total = g.op('Gather', `${a}/Gather`, [shapeK, g.constInt64(a, [2], true)], { axis: attr.int(0) });
    const past = g.op('Sub', `${a}/Sub`, [total, seqLen]);
    const kpos = g.op('Range', `${a}/Range`, [zero, total, one]);
    const qpos = g.op('Range', `${a}/Range_1`, [past, total, one]);
    const qposU = g.op('Unsqueeze', `${a}/Unsqueeze_2`, [qpos, g.constInt64(a, [1])]);
    const allowed = g.op('LessOrEqual', `${a}/LessOrEqual`, [kpos, qposU]);
    const masked = g.op('Where', `${a}/Where`, [allowed, scaled, g.constFloat(a, [FLOAT_MIN], true)]);
    const probs = g.op('Softmax', `${a}/Softmax`, [masked], { axis: attr.int(-1) });
    ctxv = g.op('MatMul', `${a}/MatMul_1`, [probs, vU]);
  } else {
    // 'append': the past inputs are the runtime's cache buffers, capacity C >= the cached length
    // (rows from the cached length on are zeros and masked). The cached length is the first
    // position id. Attention runs over two key blocks, the buffer and this call's T positions,
    // with one softmax across both: ctx = P_past . V_past + P_new . V_new. Nothing the size of
    // the cache is copied (float16 models still cast it to float32 to read it, as 'full' does),
    // and only the T new rows go out (present.N.key/value [1, KV, T, D]), which the runtime
    // writes into its buffers.
    const keysT = (graph: OnnxGraph, k: string, tag: string): string =>
      graph.op('Transpose', `${a}/Transpose${tag}`, [graph.op('Unsqueeze', `${a}/Unsqueeze${tag}`, [k, axis2])], { perm: attr.ints([0, 1, 2, 4, 3]) });
    const kCur = toFloat(ctx, `${a}/key_new_load`, kNew);
    const vCur = toFloat(ctx, `${a}/value_new_load`, vNew);
    const vCurU = g.op('Unsqueeze', `${a}/Unsqueeze_7`, [vCur, axis2]);
    const scoresNew = g.op('Mul', `${a}/Mul_1`, [g.op('MatMul', `${a}/MatMul_2`, [qg, keysT(g, kCur, '_5')]), scale]);
    const fmin = g.constFloat(a, [FLOAT_MIN], true);
    // Among the new positions, causal: query i sees new keys 0..i.
    const tpos = g.op('Range', `${a}/Range_1`, [zero, seqLen, one]);
    const tposU = g.op('Unsqueeze', `${a}/Unsqueeze_2`, [tpos, g.constInt64(a, [1])]);
    const causal = g.op('LessOrEqual', `${a}/LessOrEqual`, [tpos, tposU]);
    const maskedNew = g.op('Where', `${a}/Where_1`, [causal, scoresNew, fmin]);
    const flatPos = g.op('Reshape', `${a}/Reshape_6`, [positionIds, g.constInt64(a, [-1])]);
    const cached = g.op('Gather', `${a}/Gather_2`, [flatPos, zero], { axis: attr.int(0) });
    const keep = { axes: attr.ints([-1]), keepdims: attr.int(1) };
    const lastAxis = g.constInt64(a, [-1]);
    const ctxDims = [1, KV, rep, 'sequence_length', D];

    // Nothing cached (a first prefill): one fused Softmax over the new block, as 'full' does.
    const fresh = new OnnxGraph(`${a}/fresh`);
    fresh.output(fresh.op('MatMul', `${a}/fresh/MatMul`, [fresh.op('Softmax', `${a}/fresh/Softmax`, [maskedNew], { axis: attr.int(-1) }), vCurU]), DataType.FLOAT, ctxDims);

    // Rows cached: the buffer block (rows below the cached length visible to every query) and the
    // new block under one softmax without joining them: shared row max, one denominator, the
    // weighted values divided once at the end.
    const more = new OnnxGraph(`${a}/cached`);
    const m = (op: string, name: string, inputs: string[], attrs = {}) => more.op(op, `${a}/cached/${name}`, inputs, attrs);
    const kPast = dtype === 'float16' ? m('Cast', 'key_load/Cast', [pastK], { to: attr.int(DataType.FLOAT) }) : pastK;
    const vPast = dtype === 'float16' ? m('Cast', 'value_load/Cast', [pastV], { to: attr.int(DataType.FLOAT) }) : pastV;
    const scoresPast = m('Mul', 'Mul', [m('MatMul', 'MatMul', [qg, keysT(more, kPast, '/cached/_3')]), scale]);
    const capacity = m('Gather', 'Gather', [m('Shape', 'Shape', [pastK]), g.constInt64(a, [2], true)], { axis: attr.int(0) });
    const visible = m('Less', 'Less', [m('Range', 'Range', [zero, capacity, one]), cached]);
    const maskedPast = m('Where', 'Where', [visible, scoresPast, fmin]);
    const rowMax = m('Max', 'Max', [m('ReduceMax', 'ReduceMax', [maskedPast], keep), m('ReduceMax', 'ReduceMax_1', [maskedNew], keep)]);
    const expPast = m('Exp', 'Exp', [m('Sub', 'Sub', [maskedPast, rowMax])]);
    const expNew = m('Exp', 'Exp_1', [m('Sub', 'Sub_1', [maskedNew, rowMax])]);
    const denom = m('Add', 'Add', [m('ReduceSum', 'ReduceSum', [expPast, lastAxis], { keepdims: attr.int(1) }), m('ReduceSum', 'ReduceSum_1', [expNew, lastAxis], { keepdims: attr.int(1) })]);
    const ctxPast = m('MatMul', 'MatMul_1', [expPast, m('Unsqueeze', 'Unsqueeze_1', [vPast, axis2])]);
    const ctxNew = m('MatMul', 'MatMul_3', [expNew, vCurU]);
    more.output(m('Div', 'Div', [m('Add', 'Add_1', [ctxPast, ctxNew]), denom]), DataType.FLOAT, ctxDims);

    const nothingCached = g.op('Equal', `${a}/Equal`, [cached, zero]);
    ctxv = g.op('If', `${a}/If`, [nothingCached], { then_branch: attr.graph(fresh), else_branch: attr.graph(more) });
  }
  const merged = g.op('Reshape', `${a}/Reshape_4`, [ctxv, g.constInt64(a, [1, H, -1, D])]);
  const tr = g.op('Transpose', `${a}/Transpose_4`, [merged], perm0213);
  const flat = g.op('Reshape', `${a}/Reshape_5`, [tr, g.constInt64(a, [0, 0, H * D])]);
  const o = linear(ctx, `${a}/o_proj`, flat, `${wp}.self_attn.o_proj.weight`, H * D, arch.hiddenSize);
  const r1 = g.op('Add', `${p}/Add`, [x, o]);

  const h2 = rmsNorm(ctx, `${p}/post_attention_layernorm`, r1, `${wp}.post_attention_layernorm.weight`);
  const m = `${p}/mlp`;
  const gate = linear(ctx, `${m}/gate_proj`, h2, `${wp}.mlp.gate_proj.weight`, arch.hiddenSize, arch.intermediateSize);
  const up = linear(ctx, `${m}/up_proj`, h2, `${wp}.mlp.up_proj.weight`, arch.hiddenSize, arch.intermediateSize);
  const sig = g.op('Sigmoid', `${m}/act_fn/Sigmoid`, [gate]);
  const act = g.op('Mul', `${m}/act_fn/Mul`, [gate, sig]);
  const prod = g.op('Mul', `${m}/Mul`, [act, up]);
  const down = linear(ctx, `${m}/down_proj`, prod, `${wp}.mlp.down_proj.weight`, arch.intermediateSize, arch.hiddenSize);
  const out = g.op('Add', `${p}/Add_1`, [r1, down]);
  const stored = toStorage(ctx, `${p}/output`, out);
  g.output(stored, st, [1, 'sequence_length', arch.hiddenSize], hiddenName(layer + 1));
  if (kvCache === 'full') {
    g.output(presentKeyName(layer), st, [1, KV, 'total_sequence_length', D]);
    g.output(presentValueName(layer), st, [1, KV, 'total_sequence_length', D]);
  } else {
    g.output(kNew, st, [1, KV, 'sequence_length', D], presentKeyName(layer));
    g.output(vNew, st, [1, KV, 'sequence_length', D], presentValueName(layer));
  }
  return g;
}

/**
 * `head.onnx`: hidden_states.L [1, T, hidden], num_logits_to_keep int64 scalar ->
 * logits float32 [1, K, vocab] (last K positions), final_hidden float32 [1, T, hidden] (after the final norm).
 */
export function headGraph(arch: Architecture, dtype: ModelDtype, weights: WeightProvider, quant?: WeightQuant): OnnxGraph {
  const g = newGraph('layernet-head', quant);
  const ctx: BuildContext = { g, arch, dtype, weights };
  const L = arch.numLayers;
  const hiddenIn = g.input(hiddenName(L), storageType(dtype), [1, 'sequence_length', arch.hiddenSize]);
  const keep = g.input(NUM_LOGITS_TO_KEEP, DataType.INT64, []);
  const x = toFloat(ctx, '/model/norm/input', hiddenIn);
  const normed = rmsNorm(ctx, '/model/norm', x, 'model.norm.weight');
  const s = '/lm_head';
  const keepU = g.op('Unsqueeze', `${s}/Unsqueeze`, [keep, g.constInt64(s, [0])]);
  const start = g.op('Neg', `${s}/Neg`, [keepU]);
  const sliced = g.op('Slice', `${s}/Slice`, [normed, start, g.constInt64(s, [INT64_MAX]), g.constInt64(s, [1])]);
  const name = 'lm_head.weight';
  const values = weights.linear(name, arch.hiddenSize, arch.vocabSize);
  if (quant?.lmHead) {
    g.output(quantizedMatMul(g, s, sliced, name, values, arch.hiddenSize, arch.vocabSize, quant, dtype), DataType.FLOAT, [1, 'num_logits_to_keep', arch.vocabSize], LOGITS);
    g.output(normed, DataType.FLOAT, [1, 'sequence_length', arch.hiddenSize], FINAL_HIDDEN);
    return g;
  }
  const w = weight(ctx, name, [arch.hiddenSize, arch.vocabSize], values);
  g.node('MatMul', `${s}/MatMul`, [sliced, w], {}, [LOGITS]);
  g.output(LOGITS, DataType.FLOAT, [1, 'num_logits_to_keep', arch.vocabSize]);
  g.output(normed, DataType.FLOAT, [1, 'sequence_length', arch.hiddenSize], FINAL_HIDDEN);
  return g;
}
