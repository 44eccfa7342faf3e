import { z } from 'zod';
import { canonicalJson, type CanonicalValue } from './canonical.js';
import { sha256Hex } from './bytes.js';

/**
 * A model manifest pins the architecture, the tokenizer and every ONNX file (by SHA-256).
 * The manifest's own hash (`modelId`) names the model everywhere: registry, tickets, attestations.
 *
 * Files: `embed` (input_ids -> hidden_states.0), one `layers` file per block
 * (hidden_states.{i} -> hidden_states.{i+1}, with KV cache), `head` (final norm + LM head).
 * A span [start, end) of layers is served by merging the block files it covers; the span that
 * starts at 0 also holds `embed`, the span that ends at numLayers also holds `head`.
 */
export const ropeScalingSchema = z.object({
  /** Llama 3.1's frequency-dependent scaling of the rotary frequencies (`rope_type: "llama3"`). */
  type: z.literal('llama3'),
  factor: z.number().positive(),
  lowFreqFactor: z.number().positive(),
  highFreqFactor: z.number().positive(),
  originalMaxPositionEmbeddings: z.number().int().positive(),
});
export type RopeScaling = z.infer<typeof ropeScalingSchema>;

/**
 * The decoder's shape and the variations of the Llama family it takes. The optional fields are
 * left out when off, so a manifest written before they existed keeps its hash (model id).
 */
export const architectureSchema = z.object({
  /** Which checkpoint family the weights came from (the graph is Llama's plus the flags below). */
  family: z.enum(['llama', 'mistral', 'qwen2', 'qwen3']),
  vocabSize: z.number().int().positive(),
  hiddenSize: z.number().int().positive(),
  intermediateSize: z.number().int().positive(),
  numLayers: z.number().int().positive().max(1024),
  numAttentionHeads: z.number().int().positive(),
  numKeyValueHeads: z.number().int().positive(),
  headDim: z.number().int().positive(),
  rmsNormEps: z.number().positive(),
  ropeTheta: z.number().positive(),
  maxPositionEmbeddings: z.number().int().positive(),
  /** q, k and v projections carry a bias (Qwen2). Absent: none. */
  attentionBias: z.boolean().optional(),
  /** An RMSNorm over each head of q and of k before the rotary embedding (Qwen3). Absent: none. */
  qkNorm: z.boolean().optional(),
  /** The LM head is the transposed token embedding (the head file holds its own copy). */
  tieWordEmbeddings: z.boolean().optional(),
  /** Scaling of the rotary frequencies. Absent: plain RoPE. */
  ropeScaling: ropeScalingSchema.optional(),
});
export type Architecture = z.infer<typeof architectureSchema>;

export const modelDtypeSchema = z.enum(['float32', 'float16']);

/**
 * How a layer file exchanges its KV cache. 'full' (standard exports; the meaning when a manifest
 * leaves the field out): past_key_values.N.* hold the cached positions, present.N.* return
 * past ++ new, and the runtime keeps the outputs as the next past. 'append' (what the builder
 * writes): past_key_values.N.* are the runtime's cache buffers of capacity C, rows from the
 * cached length (the first position id) on are zeros, and present.N.* return only the new rows,
 * which the runtime writes into its buffers. Same math; 'append' never copies the whole cache
 * in or out of onnxruntime, so decode does not slow down as the context grows.
 */
export const kvCacheLayoutSchema = z.enum(['full', 'append']);
export type KvCacheLayout = z.infer<typeof kvCacheLayoutSchema>;
export type ModelDtype = z.infer<typeof modelDtypeSchema>;

export const weightFormatSchema = z.enum(['int8', 'int4']);
export type WeightFormat = z.infer<typeof weightFormatSchema>;

/**
 * Block-wise weight-only quantization (`pool-agent model build|import --quant int8|int4`): every
 * projection of the decoder layers (q, k, v, o, gate, up, down), and the LM head when `lmHead`,
 * is onnxruntime's `com.microsoft` MatMulNBits over `format` codes in blocks of `blockSize`
 * weights along the input dimension, each block with a scale (the manifest's dtype) and, with
 * `zeroPoints`, a zero point; otherwise symmetric. Activations, norms, the embedding and the KV
 * cache keep the manifest's dtype. The graph carries all of it; this field says so, and being
 * in the manifest it is in the model id. Absent: float weights.
 */
export const weightQuantSchema = z.object({
  format: weightFormatSchema,
  blockSize: z
    .number()
    .int()
    .min(16)
    .max(4096)
    .refine((n) => (n & (n - 1)) === 0, 'a power of two'),
  zeroPoints: z.boolean(),
  lmHead: z.boolean(),
  /**
   * MatMulNBits' accuracy_level: 0 (what `--quant` builds) computes in the activations' float
   * type, so a recomputation matches as closely as a float model's; 4 rounds activations to int8
   * (faster on CPU, but re-execution checks cannot judge it: `uncheckableReason`).
   */
  accuracyLevel: z.union([z.literal(0), z.literal(4)]),
});
export type WeightQuant = z.infer<typeof weightQuantSchema>;

export const manifestFileSchema = z.object({
  path: z.string().regex(/^[A-Za-z0-9._-]+$/, 'file names only, no folders'),
  kind: z.enum(['embed', 'layers', 'head']),
  /** Layers covered, [start, end). `embed` is [0, 0], `head` is [numLayers, numLayers]. */
  layers: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});
export type ManifestFile = z.infer<typeof manifestFileSchema>;

/** The Llama-2 SentencePiece tokenizer that ships with the code (built demo models). */
export const builtinTokenizerSchema = z.object({
  kind: z.literal('llama-sentencepiece-bpe'),
  package: z.literal('llama-tokenizer-js'),
  bosTokenId: z.number().int().nonnegative(),
  eosTokenId: z.number().int().nonnegative(),
  chatTemplate: z.literal('llama-2'),
});

/** Tokenizer files an imported model carries, pinned like its ONNX files. */
export const tokenizerFileSchema = z.object({
  path: z.enum(['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja']),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** At most 64 MiB (the largest hub tokenizer.json files are ~ 20 MB). */
  bytes: z.number().int().positive().max(64 * 1024 * 1024),
});
export type TokenizerFile = z.infer<typeof tokenizerFileSchema>;

/**
 * A Hugging Face tokenizer: `tokenizer.json` (required), `tokenizer_config.json` (special tokens,
 * the chat template) and `chat_template.jinja` (newer checkpoints keep the template there). The
 * edge loads them from the registry, checks each against `sha256`, and tokenizes with them.
 */
export const hfTokenizerSchema = z.object({
  kind: z.literal('hf-tokenizer'),
  files: z
    .array(tokenizerFileSchema)
    .min(1)
    .max(3)
    .refine((fs) => fs.some((f) => f.path === 'tokenizer.json'), 'tokenizer.json is required')
    .refine((fs) => new Set(fs.map((f) => f.path)).size === fs.length, 'each tokenizer file once'),
  /** The BOS token the checkpoint names, if any (the post-processor decides where it goes). */
  bosTokenId: z.number().int().nonnegative().nullable(),
  /** Every token that ends a generation (generation_config.json's eos_token_id, list or number). */
  eosTokenIds: z.array(z.number().int().nonnegative()).min(1).max(16),
});
export type HfTokenizer = z.infer<typeof hfTokenizerSchema>;

export const tokenizerSchema = z.discriminatedUnion('kind', [builtinTokenizerSchema, hfTokenizerSchema]);
export type TokenizerSpec = z.infer<typeof tokenizerSchema>;

/** What an imported model was converted from. */
export const modelSourceSchema = z.object({
  format: z.literal('hf-safetensors'),
  /** config.json's `architectures[0]`, e.g. LlamaForCausalLM. */
  architecture: z.string().min(1).max(128),
  /** The checkpoint's tensor dtype (the widest one found). */
  dtype: z.enum(['F32', 'F16', 'BF16']),
});

/** Ids that end a generation, whatever the tokenizer kind. */
export function stopTokenIds(manifest: Pick<Manifest, 'tokenizer'>): number[] {
  const t = manifest.tokenizer;
  return t.kind === 'hf-tokenizer' ? [...t.eosTokenIds] : [t.eosTokenId];
}

export const manifestSchema = z.object({
  format: z.literal('layernet.manifest/1'),
  name: z.string().min(1).max(128),
  architecture: architectureSchema,
  dtype: modelDtypeSchema,
  /** KV-cache layout of the layer files; absent means 'full'. */
  kvCache: kvCacheLayoutSchema.optional(),
  /** What wrote the files (the model builder and its graph version); absent for converted exports. */
  builder: z.string().min(1).max(64).optional(),
  /** Seed the deterministic weights were generated from (null for converted real models). */
  seed: z.number().int().nullable(),
  tokenizer: tokenizerSchema,
  /** Where an imported model came from (absent for built models). */
  source: modelSourceSchema.optional(),
  /** Quantized weights (absent: the weights are stored in `dtype`). */
  quant: weightQuantSchema.optional(),
  files: z.array(manifestFileSchema).min(2),
});
export type Manifest = z.infer<typeof manifestSchema>;

/** The model id: SHA-256 (hex) of the manifest's canonical JSON. */
export async function manifestHash(manifest: Manifest): Promise<string> {
  return sha256Hex(canonicalJson(manifest as unknown as CanonicalValue));
}

/** The format the weights are stored in: the quantization when there is one, else the dtype. */
export function weightFormat(manifest: Pick<Manifest, 'dtype' | 'quant'>): ModelDtype | WeightFormat {
  return manifest.quant?.format ?? manifest.dtype;
}

/**
 * Why a re-execution check cannot judge this model, or null. Models whose MatMulNBits round
 * activations to int8 (`quant.accuracyLevel` 4) recompute with a discontinuous error: a last-bit
 * difference between the generation and the checker's prefill moves an activation a whole int8
 * step, hidden rows then stray up to 370 units of 2^-15 and logits by ~0.09, and the sampler's
 * ranked walk (top-k, top-p) over near-equal logits replays other tokens (measured: 131 of 144
 * sampled steps of honest jobs on `small`). Judging them would blame honest nodes, so checkers
 * answer inconclusive (docs/trust.md §1).
 */
export function uncheckableReason(manifest: Pick<Manifest, 'quant'>): string | null {
  if (manifest.quant?.accuracyLevel === 4) {
    return 'this model computes with int8 activations (MatMulNBits accuracy_level 4), whose recomputation cannot replay sampled tokens: it is not checked';
  }
  return null;
}

/** Layer span of a block range, [start, end). */
export interface LayerSpan {
  start: number;
  end: number;
}

/** Files a span needs, in graph order. Throws if the span is out of range or empty. */
export function filesForSpan(manifest: Manifest, span: LayerSpan): ManifestFile[] {
  const L = manifest.architecture.numLayers;
  if (!(Number.isInteger(span.start) && Number.isInteger(span.end) && span.start >= 0 && span.end <= L && span.start < span.end)) {
    throw new RangeError(`span [${span.start}, ${span.end}) is not inside [0, ${L})`);
  }
  const out: ManifestFile[] = [];
  if (span.start === 0) out.push(...manifest.files.filter((f) => f.kind === 'embed'));
  const blocks = manifest.files
    .filter((f) => f.kind === 'layers' && f.layers[0] >= span.start && f.layers[1] <= span.end)
    .sort((a, b) => a.layers[0] - b.layers[0]);
  let cursor = span.start;
  for (const b of blocks) {
    if (b.layers[0] !== cursor) break;
    cursor = b.layers[1];
  }
  if (cursor !== span.end) throw new RangeError(`span [${span.start}, ${span.end}) does not fall on block boundaries`);
  out.push(...blocks);
  if (span.end === L) out.push(...manifest.files.filter((f) => f.kind === 'head'));
  return out;
}
