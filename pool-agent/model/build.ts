/**
 * Builds a Llama-architecture model with deterministic weights as per-block ONNX files plus a
 * `manifest.json` (protocol/manifest.ts) pinning every file's SHA-256. Same preset, dtype and
 * seed give the same bytes, hence the same model id, on every machine.
 *
 * @example
 * const { modelId, dir } = await buildModel({ preset: 'tiny', dtype: 'float32', seed: 1, outDir: '.models/tiny' });
 * const manifest = await loadManifest(dir);
 * await verifyModelFiles(dir, manifest);
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  architectureSchema,
  manifestHash,
  manifestSchema,
  type Architecture,
  type KvCacheLayout,
  type Manifest,
  type ManifestFile,
  type ModelDtype,
  type WeightQuant,
} from '../../protocol/manifest.js';
import { BOS_ID, EOS_ID } from '../../protocol/tokenizer.js';
import { embedGraph, headGraph, layerGraph } from './llama.js';
import type { OnnxGraph } from './onnx-graph.js';
import { resolveWeightQuant, type WeightQuantOptions } from './quant-linear.js';
import { seededWeights } from './weight-provider.js';

export type PresetName = 'tiny' | 'small' | '1b';

const LLAMA2_VOCAB = 32000;

/** Architectures of the built-in presets. */
export const PRESETS: Record<PresetName, Architecture> = {
  tiny: {
    family: 'llama',
    vocabSize: LLAMA2_VOCAB,
    hiddenSize: 64,
    intermediateSize: 172,
    numLayers: 4,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 16,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: 2048,
  },
  small: {
    family: 'llama',
    vocabSize: LLAMA2_VOCAB,
    hiddenSize: 768,
    intermediateSize: 2048,
    numLayers: 8,
    numAttentionHeads: 12,
    numKeyValueHeads: 4,
    headDim: 64,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: 2048,
  },
  '1b': {
    family: 'llama',
    vocabSize: LLAMA2_VOCAB,
    hiddenSize: 2048,
    intermediateSize: 8192,
    numLayers: 16,
    numAttentionHeads: 32,
    numKeyValueHeads: 8,
    headDim: 64,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: 4096,
  },
};

export const MANIFEST_FILE = 'manifest.json';

/**
 * Written into every manifest; bump the number whenever the graphs the builder writes change, so
 * a model directory built by an older builder is rebuilt instead of kept.
 */
export const BUILDER_VERSION = 'layernet-model-builder/3';

export interface BuildModelOptions {
  preset: PresetName;
  dtype?: ModelDtype;
  /** Unsigned 32-bit seed of the weights (default 0). */
  seed?: number;
  outDir: string;
  /**
   * KV-cache layout of the layer files (protocol/manifest.ts): 'append' (default, fast decode at
   * long contexts) or 'full' (the layout of standard exports).
   */
  kvCache?: KvCacheLayout;
  /**
   * Block-wise weight-only int8/int4 projections (MatMulNBits; pool-agent/model/quant-linear.ts).
   * Absent: float weights, and the model id of the float build is unchanged.
   */
  quant?: WeightQuantOptions;
  /** Changes to the preset's architecture (e.g. a shorter maxPositionEmbeddings in tests). */
  overrides?: Partial<Omit<Architecture, 'family'>>;
  /** Called before each file is written and once at the end (done === total). */
  onProgress?: (done: number, total: number, label: string) => void;
}

export interface BuiltModel {
  manifest: Manifest;
  modelId: string;
  dir: string;
}

/** Parameter count of an architecture (embedding and LM head counted apart). */
export function parameterCount(a: Architecture): number {
  const attn = a.hiddenSize * a.headDim * (2 * a.numAttentionHeads + 2 * a.numKeyValueHeads);
  const mlp = 3 * a.hiddenSize * a.intermediateSize;
  return 2 * a.vocabSize * a.hiddenSize + a.numLayers * (attn + mlp + 2 * a.hiddenSize) + a.hiddenSize;
}

export function resolveArchitecture(preset: PresetName, overrides: BuildModelOptions['overrides'] = {}): Architecture {
  const base = PRESETS[preset];
  if (!base) throw new Error(`unknown model preset ${JSON.stringify(preset)} (expected one of ${Object.keys(PRESETS).join(', ')})`);
  const arch = architectureSchema.parse({ ...base, ...overrides });
  if (arch.numAttentionHeads % arch.numKeyValueHeads !== 0) throw new Error('numAttentionHeads must be a multiple of numKeyValueHeads');
  if (arch.headDim % 2 !== 0) throw new Error('headDim must be even (rotary embeddings)');
  return arch;
}

/** Error naming the model file that is missing or does not match the manifest. */
export class ModelFileError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(message);
    this.name = 'ModelFileError';
  }
}

/** Reads and validates `<dir>/manifest.json`. */
export async function loadManifest(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ModelFileError(MANIFEST_FILE, `cannot read model manifest ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ModelFileError(MANIFEST_FILE, `model manifest ${path} is not valid JSON`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) throw new ModelFileError(MANIFEST_FILE, `model manifest ${path} is invalid: ${parsed.error.message}`);
  return parsed.data;
}

export async function sha256File(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).byteLength;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/**
 * Checks size and SHA-256 of the given manifest files (default: all) under `dir`; throws a
 * ModelFileError naming the first file that is missing or differs.
 */
export async function verifyModelFiles(dir: string, manifest: Manifest, files: readonly ManifestFile[] = manifest.files): Promise<void> {
  for (const f of files) {
    const path = join(dir, f.path);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      throw new ModelFileError(f.path, `model file ${f.path} is missing from ${dir}`);
    }
    if (size !== f.bytes) throw new ModelFileError(f.path, `model file ${f.path} has ${size} bytes, the manifest says ${f.bytes}`);
    const { sha256 } = await sha256File(path);
    if (sha256 !== f.sha256) throw new ModelFileError(f.path, `model file ${f.path} has SHA-256 ${sha256}, the manifest says ${f.sha256}`);
  }
}

export async function writeGraph(dir: string, fileName: string, graph: OnnxGraph): Promise<{ sha256: string; bytes: number }> {
  const chunks = graph.toModel().chunks();
  const hash = createHash('sha256');
  const tmp = join(dir, `.${fileName}.${process.pid}.${Date.now()}.tmp`);
  const fh = await open(tmp, 'w');
  let bytes = 0;
  try {
    for (const c of chunks) {
      hash.update(c);
      await fh.write(c);
      bytes += c.byteLength;
    }
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, fileName));
  return { sha256: hash.digest('hex'), bytes };
}

function modelName(preset: PresetName, dtype: ModelDtype, seed: number, overridden: boolean, kvCache: KvCacheLayout, quant: WeightQuant | undefined): string {
  const format = `${dtype === 'float16' ? 'fp16' : 'fp32'}${quant ? `-${quant.format}` : ''}`;
  return `layernet-llama-${preset}${overridden ? '-custom' : ''}-${format}-seed${seed}${kvCache === 'full' ? '-fullkv' : ''}`;
}

/**
 * Generates the model into `outDir` (idempotent: a directory already holding the same model from
 * this builder version, verified by SHA-256, is left as it is). Returns the manifest and the model id.
 */
export async function buildModel(options: BuildModelOptions): Promise<BuiltModel> {
  const dtype = options.dtype ?? 'float32';
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`seed must be an unsigned 32-bit integer, got ${seed}`);
  const arch = resolveArchitecture(options.preset, options.overrides);
  const kvCache = options.kvCache ?? 'append';
  const quant = options.quant ? resolveWeightQuant(options.quant) : undefined;
  const name = modelName(options.preset, dtype, seed, options.overrides !== undefined && Object.keys(options.overrides).length > 0, kvCache, quant);
  const dir = options.outDir;
  const L = arch.numLayers;
  const total = L + 2;

  const existing = await loadManifest(dir).catch(() => null);
  if (
    existing &&
    existing.name === name &&
    existing.dtype === dtype &&
    existing.seed === seed &&
    (existing.kvCache ?? 'full') === kvCache &&
    existing.builder === BUILDER_VERSION &&
    JSON.stringify(existing.quant) === JSON.stringify(quant) &&
    JSON.stringify(existing.architecture) === JSON.stringify(arch)
  ) {
    const ok = await verifyModelFiles(dir, existing).then(
      () => true,
      () => false,
    );
    if (ok) {
      options.onProgress?.(total, total, 'cached');
      return { manifest: existing, modelId: await manifestHash(existing), dir };
    }
  }

  await mkdir(dir, { recursive: true });
  await rm(join(dir, MANIFEST_FILE), { force: true });
  const files: ManifestFile[] = [];
  const weights = seededWeights(seed);
  const plan: { path: string; kind: ManifestFile['kind']; layers: [number, number]; make: () => OnnxGraph }[] = [
    { path: 'embed.onnx', kind: 'embed', layers: [0, 0], make: () => embedGraph(arch, dtype, weights, quant) },
    ...Array.from({ length: L }, (_, i) => ({
      path: `layers.${i}.onnx`,
      kind: 'layers' as const,
      layers: [i, i + 1] as [number, number],
      make: () => layerGraph(arch, dtype, weights, i, kvCache, quant),
    })),
    { path: 'head.onnx', kind: 'head', layers: [L, L], make: () => headGraph(arch, dtype, weights, quant) },
  ];
  let done = 0;
  for (const item of plan) {
    options.onProgress?.(done, total, item.path);
    const { sha256, bytes } = await writeGraph(dir, item.path, item.make());
    files.push({ path: item.path, kind: item.kind, layers: item.layers, sha256, bytes });
    done++;
  }
  const manifest = manifestSchema.parse({
    format: 'layernet.manifest/1',
    name,
    architecture: arch,
    dtype,
    kvCache,
    builder: BUILDER_VERSION,
    seed,
    ...(quant ? { quant } : {}),
    tokenizer: {
      kind: 'llama-sentencepiece-bpe',
      package: 'llama-tokenizer-js',
      bosTokenId: BOS_ID,
      eosTokenId: EOS_ID,
      chatTemplate: 'llama-2',
    },
    files,
  });
  const tmp = join(dir, `.${MANIFEST_FILE}.${process.pid}.tmp`);
  await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(tmp, join(dir, MANIFEST_FILE));
  options.onProgress?.(total, total, 'done');
  return { manifest, modelId: await manifestHash(manifest), dir };
}
