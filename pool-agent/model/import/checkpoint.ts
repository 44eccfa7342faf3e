/**
 * A Hugging Face checkpoint folder, opened and checked before anything is written: config.json,
 * the safetensors file(s) (one `model.safetensors`, or shards listed by
 * `model.safetensors.index.json`), generation_config.json and the tokenizer files. Every tensor
 * the graph needs must be present with the shape the config implies; a tensor nobody reads is an
 * error too (it would mean a variant of the architecture we do not reproduce).
 *
 * @example
 * const ckpt = await openCheckpoint('/models/llama-3.2-1b');
 * const w = await ckpt.readLinear('model.layers.0.mlp.up_proj.weight'); // [in, out] float32
 * await ckpt.close();
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Architecture, HfTokenizer, TokenizerFile } from '../../../protocol/manifest.js';
import { architectureFromConfig, expectedTensors, parseHfConfig, type HfConfig } from './hf-config.js';
import { CheckpointError, openSafetensors, toFloat32Transposed, type SafetensorsFile, type TensorInfo } from './safetensors.js';

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja'] as const;
const MAX_JSON_BYTES = 64 * 1024 * 1024;
const MAX_SHARDS = 1024;

/** Tensors some checkpoints carry that the graph recomputes (old Llama exports keep inv_freq). */
const IGNORED_TENSOR = /\.rotary_emb\.inv_freq$/;

export interface Checkpoint {
  dir: string;
  config: HfConfig;
  architecture: Architecture;
  className: string;
  tied: boolean;
  notes: string[];
  /** The widest weight dtype found. */
  dtype: 'F32' | 'F16' | 'BF16';
  /** Every safetensors file, with its size (for the import fingerprint). */
  shards: { file: string; bytes: number; header: string }[];
  tokenizerFiles: { path: TokenizerFile['path']; abs: string; bytes: number }[];
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** A tensor as float32 in HF layout. */
  readTensor(name: string): Promise<Float32Array>;
  /** An nn.Linear weight ([out, in] in the file) transposed to [in, out], as MatMul reads it. */
  readLinear(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

async function readJsonFile(dir: string, file: string, required: boolean): Promise<{ text: string; json: unknown } | null> {
  const path = join(dir, file);
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    if (required) throw new CheckpointError(`${file} is missing from ${dir}`, { file });
    return null;
  }
  if (size > MAX_JSON_BYTES) throw new CheckpointError(`${file} is ${size} bytes, more than the ${MAX_JSON_BYTES} accepted`, { file });
  const text = await readFile(path, 'utf8');
  try {
    return { text, json: JSON.parse(text) };
  } catch {
    throw new CheckpointError(`${file} is not valid JSON`, { file });
  }
}

const indexSchema = z.object({ weight_map: z.record(z.string(), z.string().regex(/^[A-Za-z0-9._-]+\.safetensors$/, 'a file name in the folder')) });
const generationSchema = z.object({ bos_token_id: z.unknown().optional(), eos_token_id: z.unknown().optional() }).passthrough();
const idList = z.union([z.number().int().nonnegative().transform((n) => [n]), z.array(z.number().int().nonnegative()).min(1).max(16)]);

export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  try {
    await stat(dir);
  } catch {
    throw new CheckpointError(`checkpoint folder ${dir} does not exist`);
  }
  const configFile = await readJsonFile(dir, 'config.json', true);
  const config = parseHfConfig(configFile!.text);
  const { architecture, className, tied, notes } = architectureFromConfig(config);

  // Which file holds which tensor.
  const index = await readJsonFile(dir, 'model.safetensors.index.json', false);
  let shardNames: string[];
  let weightMap: Record<string, string> | null = null;
  if (index) {
    const r = indexSchema.safeParse(index.json);
    if (!r.success) throw new CheckpointError(`model.safetensors.index.json: ${r.error.issues[0]!.path.join('.')}: ${r.error.issues[0]!.message}`, { file: 'model.safetensors.index.json' });
    weightMap = r.data.weight_map;
    shardNames = [...new Set(Object.values(weightMap))].sort();
    if (shardNames.length > MAX_SHARDS) throw new CheckpointError(`model.safetensors.index.json names ${shardNames.length} shards`, { file: 'model.safetensors.index.json' });
  } else {
    shardNames = ['model.safetensors'];
    try {
      await stat(join(dir, 'model.safetensors'));
    } catch {
      throw new CheckpointError(`no weights in ${dir}: expected model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not read; convert them to safetensors)`, { file: 'model.safetensors' });
    }
  }
  const files: SafetensorsFile[] = [];
  const closeAll = () => Promise.all(files.map((f) => f.close()));
  try {
    const tensors = new Map<string, { info: TensorInfo; file: SafetensorsFile }>();
    const shards: Checkpoint['shards'] = [];
    for (const name of shardNames) {
      try {
        await stat(join(dir, name));
      } catch {
        throw new CheckpointError(`shard ${name} named by model.safetensors.index.json is missing from ${dir}`, { file: name });
      }
      const f = await openSafetensors(join(dir, name));
      files.push(f);
      shards.push({ file: name, bytes: (await stat(f.path)).size, header: JSON.stringify([...f.tensors.values()].map((t) => [t.name, t.dtype, t.shape, t.begin, t.end])) });
      for (const [tname, info] of f.tensors) {
        if (weightMap && weightMap[tname] !== name) {
          if (weightMap[tname] === undefined) throw new CheckpointError(`${name}: tensor ${tname} is not in model.safetensors.index.json`, { file: name, tensor: tname });
          throw new CheckpointError(`tensor ${tname} is in ${name}, model.safetensors.index.json says ${weightMap[tname]}`, { file: name, tensor: tname });
        }
        if (tensors.has(tname)) throw new CheckpointError(`tensor ${tname} appears twice (${tensors.get(tname)!.info.file} and ${name})`, { file: name, tensor: tname });
        tensors.set(tname, { info, file: f });
      }
    }
    if (weightMap) {
      for (const [tname, file] of Object.entries(weightMap)) {
        if (!tensors.has(tname)) throw new CheckpointError(`tensor ${tname} is missing from ${file} (model.safetensors.index.json names it there)`, { file, tensor: tname });
      }
    }

    // Every tensor the graph reads, with the right shape and a weight dtype; nothing else.
    const expected = expectedTensors(architecture, tied);
    let widest: Checkpoint['dtype'] = 'BF16';
    for (const [tname, shape] of expected) {
      const t = tensors.get(tname);
      if (!t) throw new CheckpointError(`tensor ${tname} is missing from the checkpoint (${className}, ${architecture.numLayers} layers)`, { tensor: tname });
      const { info } = t;
      if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
        throw new CheckpointError(`${info.file}: tensor ${tname} has shape [${info.shape.join(', ')}], config.json implies [${shape.join(', ')}]`, { file: info.file, tensor: tname });
      }
      if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') {
        throw new CheckpointError(`${info.file}: tensor ${tname} is ${info.dtype}; weights must be F32, F16 or BF16 (quantized checkpoints are not read)`, { file: info.file, tensor: tname });
      }
      if (info.dtype === 'F32') widest = 'F32';
      else if (info.dtype === 'F16' && widest === 'BF16') widest = 'F16';
    }
    for (const [tname, t] of tensors) {
      if (expected.has(tname) || IGNORED_TENSOR.test(tname)) continue;
      if (tied && tname === 'lm_head.weight') continue; // a tied head saved anyway: the embedding is used
      throw new CheckpointError(`${t.info.file}: unexpected tensor ${tname}: not part of ${className} as configured (another variant of the architecture?)`, { file: t.info.file, tensor: tname });
    }

    const tokenizerFiles: Checkpoint['tokenizerFiles'] = [];
    for (const path of TOKENIZER_FILES) {
      const abs = join(dir, path);
      const size = await stat(abs).then((s) => s.size, () => -1);
      if (size < 0) continue;
      if (size === 0 || size > MAX_JSON_BYTES) throw new CheckpointError(`${path} is ${size} bytes (expected 1 byte to 64 MiB)`, { file: path });
      tokenizerFiles.push({ path, abs, bytes: size });
    }
    if (!tokenizerFiles.some((f) => f.path === 'tokenizer.json')) {
      throw new CheckpointError(`tokenizer.json is missing from ${dir}: the edge tokenizes with the model's own tokenizer (download it with the checkpoint)`, { file: 'tokenizer.json' });
    }
    const tokenizerJson = await readJsonFile(dir, 'tokenizer.json', true);
    if (typeof tokenizerJson!.json !== 'object' || tokenizerJson!.json === null || !('model' in tokenizerJson!.json)) {
      throw new CheckpointError('tokenizer.json has no "model" (not a Hugging Face tokenizers file)', { file: 'tokenizer.json' });
    }
    const { bosTokenId, eosTokenIds } = await specialIds(dir, config, architecture.vocabSize);

    const get = (name: string) => {
      const t = tensors.get(name);
      if (!t) throw new CheckpointError(`tensor ${name} is missing from the checkpoint`, { tensor: name });
      return t;
    };
    const readTensor = (name: string) => {
      const t = get(name);
      return t.file.readFloat32(t.info);
    };
    return {
      dir,
      config,
      architecture,
      className,
      tied,
      notes,
      dtype: widest,
      shards,
      tokenizerFiles,
      bosTokenId,
      eosTokenIds,
      readTensor,
      readLinear: async (name) => {
        const t = get(name);
        return toFloat32Transposed(t.info, await t.file.readBytes(t.info), t.info.shape[0]!, t.info.shape[1]!);
      },
      close: async () => void (await closeAll()),
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** BOS and EOS ids: generation_config.json first (as transformers' generate), then config.json. */
async function specialIds(dir: string, config: HfConfig, vocabSize: number): Promise<Pick<HfTokenizer, 'bosTokenId' | 'eosTokenIds'>> {
  const gen = await readJsonFile(dir, 'generation_config.json', false);
  const g = gen ? generationSchema.safeParse(gen.json) : null;
  if (gen && !g?.success) throw new CheckpointError('generation_config.json is not a JSON object', { file: 'generation_config.json' });
  const pick = (field: 'bos_token_id' | 'eos_token_id'): number[] | null => {
    for (const [file, v] of [['generation_config.json', g?.data?.[field]], ['config.json', config[field]]] as const) {
      if (v === undefined || v === null) continue;
      const r = idList.safeParse(v);
      if (!r.success) throw new CheckpointError(`${file}: ${field} must be a token id or a list of them`, { file });
      const bad = r.data.find((id) => id >= vocabSize);
      if (bad !== undefined) throw new CheckpointError(`${file}: ${field} ${bad} is outside the vocabulary (${vocabSize})`, { file });
      return r.data;
    }
    return null;
  };
  const eos = pick('eos_token_id');
  if (!eos) throw new CheckpointError('no eos_token_id in generation_config.json or config.json: a generation could never stop', { file: 'generation_config.json' });
  return { bosTokenId: pick('bos_token_id')?.[0] ?? null, eosTokenIds: [...new Set(eos)] };
}
