/**
 * `pool-agent model import`: a Hugging Face checkpoint folder → our per-block ONNX files, the
 * tokenizer files and a manifest pinning them all. The checkpoint is checked whole first
 * (checkpoint.ts), then converted one block at a time: the embedding, each decoder layer, the
 * head. Only one block's tensors are in memory at once, so the peak is set by the largest block
 * (the embedding or the head), not by the checkpoint.
 *
 * @example
 * const m = await importModel({ dir: '~/models/llama-3.2-1b', outDir: '.models/llama-3.2-1b' });
 * m.manifest.name; // 'llama-3.2-1b'
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { manifestHash, manifestSchema, type ManifestFile, type ModelDtype, type TokenizerFile, type WeightQuant } from '../../../protocol/manifest.js';
import { loadManifest, MANIFEST_FILE, sha256File, verifyModelFiles, writeGraph, type BuiltModel } from '../build.js';
import { embedGraph, headGraph, layerGraph } from '../llama.js';
import { resolveWeightQuant, type WeightQuantOptions } from '../quant-linear.js';
import type { WeightProvider } from '../weight-provider.js';
import { openCheckpoint, type Checkpoint } from './checkpoint.js';
import { layerTensors } from './hf-config.js';
import { CheckpointError } from './safetensors.js';

/** Written into every imported manifest's `builder`; bump when the graphs an import writes change. */
export const IMPORTER_VERSION = 'layernet-import/1';
/** Beside the manifest: what the folder was imported from, so a repeated import is skipped. */
export const IMPORT_RECORD = 'import.json';

export interface ImportModelOptions {
  /** The checkpoint folder (config.json, *.safetensors, tokenizer files). */
  dir: string;
  outDir: string;
  /** Storage dtype of the ONNX files (default float32: exact for BF16 and F16 checkpoints). */
  dtype?: ModelDtype;
  /** Block-wise int8/int4 projections (MatMulNBits), as `model build --quant`. Absent: float weights. */
  quant?: WeightQuantOptions;
  /** Model name in the registry (default: the checkpoint folder's name, `-fp16` added for float16, `-int8`/`-int4` when quantized). */
  name?: string;
  /** Import again even when the folder already holds this import. */
  force?: boolean;
  /** Called before each block and once at the end (done === total). */
  onProgress?: (done: number, total: number, label: string) => void;
}

export interface ImportedModel extends BuiltModel {
  /** Nothing was written: the folder already held this import. */
  cached: boolean;
  notes: string[];
}

const importRecordSchema = z.object({ fingerprint: z.string() });

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function defaultModelName(dir: string, dtype: ModelDtype, quant?: WeightQuant['format']): string {
  const suffix = `${dtype === 'float16' ? '-fp16' : ''}${quant ? `-${quant}` : ''}`;
  const base = basename(resolve(dir)).replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, Math.min(120, 128 - suffix.length)) || 'model';
  return `${base}${suffix}`;
}

/** Serves one block's tensors, read beforehand (the graph builder asks synchronously). */
function blockWeights(values: Map<string, Float32Array>): WeightProvider {
  const take = (name: string, count: number): Float32Array => {
    const v = values.get(name);
    // The checkpoint was checked against the config, so this is a bug, not bad input.
    if (!v || v.length !== count) throw new Error(`import: tensor ${name} was not read for this block (or has ${v?.length} values, expected ${count})`);
    return v;
  };
  return {
    linear: (name, fanIn, fanOut) => take(name, fanIn * fanOut),
    bias: (name, size) => take(name, size),
    norm: (name, size) => take(name, size),
    embedding: (name, vocab, hidden) => take(name, vocab * hidden),
  };
}

async function readBlock(ckpt: Checkpoint, shapes: Map<string, number[]>): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) out.set(name, shape.length === 2 ? await ckpt.readLinear(name) : await ckpt.readTensor(name));
  return out;
}

async function fingerprint(ckpt: Checkpoint, dtype: ModelDtype, name: string, quant: WeightQuant | undefined): Promise<string> {
  const h = createHash('sha256');
  h.update(`${IMPORTER_VERSION}\n${dtype}\n${name}\n`);
  if (quant) h.update(`quant ${JSON.stringify(quant)}\n`);
  h.update(await readFile(join(ckpt.dir, 'config.json')));
  for (const s of ckpt.shards) h.update(`${s.file}:${s.bytes}:${s.header}\n`);
  for (const f of ckpt.tokenizerFiles) h.update(`${f.path}:${(await sha256File(f.abs)).sha256}\n`);
  const gen = await readFile(join(ckpt.dir, 'generation_config.json')).catch(() => null);
  if (gen) h.update(gen);
  return h.digest('hex');
}

export async function importModel(options: ImportModelOptions): Promise<ImportedModel> {
  const dtype = options.dtype ?? 'float32';
  const quant = options.quant ? resolveWeightQuant(options.quant) : undefined;
  const name = options.name ?? defaultModelName(options.dir, dtype, quant?.format);
  if (!NAME.test(name)) throw new CheckpointError(`model name ${JSON.stringify(name)}: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  const outDir = options.outDir;
  if (resolve(outDir) === resolve(options.dir)) throw new CheckpointError('--out must be another folder than the checkpoint');
  const ckpt = await openCheckpoint(options.dir);
  try {
    const arch = ckpt.architecture;
    const L = arch.numLayers;
    const total = L + 3;
    const print = await fingerprint(ckpt, dtype, name, quant);

    const existing = await loadManifest(outDir).catch(() => null);
    if (existing && !options.force) {
      const record = await readFile(join(outDir, IMPORT_RECORD), 'utf8').then((t) => importRecordSchema.safeParse(JSON.parse(t)), () => null);
      const intact = record?.success && record.data.fingerprint === print && existing.builder === IMPORTER_VERSION && (await verifyModelFiles(outDir, existing).then(() => true, () => false));
      if (intact) {
        options.onProgress?.(total, total, 'cached');
        return { manifest: existing, modelId: await manifestHash(existing), dir: outDir, cached: true, notes: ckpt.notes };
      }
    }

    await mkdir(outDir, { recursive: true });
    // A half-written folder must never look like a finished import.
    await rm(join(outDir, MANIFEST_FILE), { force: true });
    await rm(join(outDir, IMPORT_RECORD), { force: true });
    const files: ManifestFile[] = [];
    let done = 0;
    const step = (label: string) => options.onProgress?.(done++, total, label);

    step('embed.onnx');
    {
      const w = new Map([['model.embed_tokens.weight', await ckpt.readTensor('model.embed_tokens.weight')]]);
      const r = await writeGraph(outDir, 'embed.onnx', embedGraph(arch, dtype, blockWeights(w), quant));
      files.push({ path: 'embed.onnx', kind: 'embed', layers: [0, 0], ...r });
    }
    for (let i = 0; i < L; i++) {
      step(`layers.${i}.onnx`);
      const w = await readBlock(ckpt, layerTensors(arch, i));
      const r = await writeGraph(outDir, `layers.${i}.onnx`, layerGraph(arch, dtype, blockWeights(w), i, 'append', quant));
      files.push({ path: `layers.${i}.onnx`, kind: 'layers', layers: [i, i + 1], ...r });
    }
    step('head.onnx');
    {
      const w = new Map<string, Float32Array>([['model.norm.weight', await ckpt.readTensor('model.norm.weight')]]);
      // A tied head is the embedding, [vocab, hidden], used as the [hidden, vocab] projection.
      w.set('lm_head.weight', await ckpt.readLinear(ckpt.tied ? 'model.embed_tokens.weight' : 'lm_head.weight'));
      const r = await writeGraph(outDir, 'head.onnx', headGraph(arch, dtype, blockWeights(w), quant));
      files.push({ path: 'head.onnx', kind: 'head', layers: [L, L], ...r });
    }
    step('tokenizer');
    const tokenizerFiles: TokenizerFile[] = [];
    for (const f of ckpt.tokenizerFiles) {
      const tmp = join(outDir, `.${f.path}.${process.pid}.tmp`);
      await copyFile(f.abs, tmp);
      await rename(tmp, join(outDir, f.path));
      const { sha256, bytes } = await sha256File(join(outDir, f.path));
      tokenizerFiles.push({ path: f.path, sha256, bytes });
    }
    const manifest = manifestSchema.parse({
      format: 'layernet.manifest/1',
      name,
      architecture: arch,
      dtype,
      kvCache: 'append',
      builder: IMPORTER_VERSION,
      seed: null,
      tokenizer: { kind: 'hf-tokenizer', files: tokenizerFiles, bosTokenId: ckpt.bosTokenId, eosTokenIds: ckpt.eosTokenIds },
      source: { format: 'hf-safetensors', architecture: ckpt.className, dtype: ckpt.dtype },
      ...(quant ? { quant } : {}),
      files,
    });
    const tmp = join(outDir, `.${MANIFEST_FILE}.${process.pid}.tmp`);
    await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
    await rename(tmp, join(outDir, MANIFEST_FILE));
    await writeFile(join(outDir, IMPORT_RECORD), `${JSON.stringify({ fingerprint: print, from: resolve(options.dir), importer: IMPORTER_VERSION }, null, 2)}\n`);
    options.onProgress?.(total, total, 'done');
    return { manifest, modelId: await manifestHash(manifest), dir: outDir, cached: false, notes: ckpt.notes };
  } finally {
    await ckpt.close();
  }
}
