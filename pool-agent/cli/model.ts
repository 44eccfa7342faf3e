/** `pool-agent model build`: generates a preset model (ONNX files + manifest) with a progress bar. */
import { resolve } from 'node:path';
import { loadState, recordModelDir, resolveStateDir } from '../config.js';
import { buildModel, PRESETS, type PresetName } from '../model/build.js';
import { createProgressBar } from '../model/progress.js';
import { importModel } from '../model/import/import.js';
import { CheckpointError } from '../model/import/safetensors.js';
import type { WeightQuantOptions } from '../model/quant-linear.js';
import { CliError, parseFlags, parseNumber, str, type CliIo } from './args.js';

const QUANT_FLAGS = { quant: { type: 'string' }, 'quant-block': { type: 'string' } } as const;

/** --quant / --quant-block, checked like the other flags. */
function parseQuant(values: { quant?: string | boolean; 'quant-block'?: string | boolean }): WeightQuantOptions | undefined {
  const format = str(values.quant);
  const block = parseNumber('quant-block', str(values['quant-block']), { int: true, min: 16, max: 4096 });
  if (format === undefined || format === 'none') {
    if (block !== undefined) throw new CliError('--quant-block needs --quant int8|int4');
    return undefined;
  }
  if (format !== 'int8' && format !== 'int4') throw new CliError('--quant must be int8, int4 or none');
  if (block !== undefined && (block & (block - 1)) !== 0) throw new CliError(`--quant-block must be a power of two (16, 32, 64, 128...), got ${block}`);
  return { format, ...(block !== undefined ? { blockSize: block } : {}) };
}

export const MODEL_USAGE = `Usage: pool-agent model build --preset tiny|small|1b [--dtype float32|float16] [--quant int8|int4 [--quant-block N]] [--seed N] [--out DIR] [--kv-cache append|full] [--dir STATE_DIR]
       pool-agent model import CHECKPOINT_DIR --out DIR [--dtype float32|float16] [--quant int8|int4 [--quant-block N]] [--name NAME] [--force] [--dir STATE_DIR]

Both record the model folder as modelDir in the state folder's pool-agent.json (--dir, else
$LAYERNET_AGENT_DIR, else ~/.layernet-agent), so bench, register and serve find it without
--model; only once \`pool-agent init\` made that folder (a build elsewhere creates no agent state).

import: converts a Hugging Face checkpoint folder (config.json, model.safetensors or sharded
safetensors with model.safetensors.index.json, tokenizer.json, tokenizer_config.json,
generation_config.json) into per-block ONNX files plus manifest.json in DIR. Architectures:
LlamaForCausalLM (Llama 2, 3, 3.1, 3.2), MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM;
F32, F16 and BF16 tensors. --dtype float32 (default) is exact for BF16/F16 checkpoints; float16
halves the files (BF16 values outside float16's range become infinite). NAME defaults to the
checkpoint folder's name. An import already in DIR is kept unless --force.

Builds a Llama-architecture model with deterministic weights into DIR (default .models/PRESET),
one ONNX file per block plus manifest.json. Idempotent: an intact model already there is kept.
--kv-cache: 'append' (default) keeps the KV cache in the agent's buffers, only new rows leave
onnxruntime; 'full' is the layout of standard exports (the whole cache in and out every step,
slower as the context grows). Another layout is another model id.

--quant int8|int4 (both commands; default none): block-wise weight-only quantization. Every
projection of the decoder layers and the LM head becomes onnxruntime's MatMulNBits over 8- or
4-bit codes, with a scale and a zero point per block of --quant-block weights along the input
(a power of two >= 16; default 32); activations, the KV cache and the embedding stay --dtype.
A projection then takes ~1.16 (int8) or ~0.64 (int4) bytes a weight instead of 4 (float32) or
2 (float16). On a CPU (onnxruntime-node 1.30) int4 decodes about as fast as float32 and int8
17-33x slower (no fast float kernel for 8-bit MatMulNBits): int8 saves memory, not time. The
manifest records the format, so it is another model id (named -int8 / -int4).`;

export async function runModel(argv: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === undefined) return io.out(MODEL_USAGE), sub === undefined ? 2 : 0;
  if (sub === 'import') return runImport(rest, io);
  if (sub !== 'build') throw new CliError(`unknown model command ${JSON.stringify(sub)}\n\n${MODEL_USAGE}`);
  const { values, help } = parseFlags(
    rest,
    { dir: { type: 'string' }, preset: { type: 'string' }, dtype: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' }, 'kv-cache': { type: 'string' }, ...QUANT_FLAGS },
    MODEL_USAGE,
  );
  if (help) return io.out(MODEL_USAGE), 0;
  const preset = str(values.preset);
  if (!preset || !(preset in PRESETS)) throw new CliError(`--preset must be one of ${Object.keys(PRESETS).join(', ')}\n\n${MODEL_USAGE}`);
  const dtype = str(values.dtype) ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16') throw new CliError('--dtype must be float32 or float16');
  const kvCache = str(values['kv-cache']) ?? 'append';
  if (kvCache !== 'append' && kvCache !== 'full') throw new CliError('--kv-cache must be append or full');
  const seed = parseNumber('seed', str(values.seed), { int: true, min: 0, max: 0xffffffff }) ?? 0;
  const quant = parseQuant(values);
  const outDir = resolve(str(values.out) ?? `.models/${preset}${quant ? `-${quant.format}` : ''}`);
  const bar = createProgressBar(`building ${preset} ${dtype}${quant ? ` ${quant.format}` : ''}`);
  const built = await buildModel({ preset: preset as PresetName, dtype, seed, outDir, kvCache, ...(quant ? { quant } : {}), onProgress: bar.update });
  bar.finish();
  const recorded = await record(resolveStateDir(str(values.dir), io.env), built.dir, built.modelId, io);
  const q = built.manifest.quant;
  io.out(JSON.stringify({ modelId: built.modelId, dir: built.dir, name: built.manifest.name, numLayers: built.manifest.architecture.numLayers, kvCache, ...(q ? { quant: q } : {}), recorded }));
  return 0;
}

async function runImport(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals, help } = parseFlags(
    argv,
    { dir: { type: 'string' }, out: { type: 'string' }, dtype: { type: 'string' }, name: { type: 'string' }, force: { type: 'boolean' }, ...QUANT_FLAGS },
    MODEL_USAGE,
    true,
  );
  if (help) return io.out(MODEL_USAGE), 0;
  const dir = positionals[0];
  if (!dir || positionals.length > 1) throw new CliError(`model import takes one checkpoint folder\n\n${MODEL_USAGE}`);
  const out = str(values.out);
  if (!out) throw new CliError(`--out DIR is required (e.g. --out .models/${dir.replace(/\/+$/, '').split('/').pop()})`);
  const dtype = str(values.dtype) ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16') throw new CliError('--dtype must be float32 or float16');
  const quant = parseQuant(values);
  const bar = createProgressBar(`importing ${dir}${quant ? ` (${quant.format})` : ''}`);
  try {
    const m = await importModel({ dir: resolve(dir), outDir: resolve(out), dtype, ...(quant ? { quant } : {}), name: str(values.name), force: values.force === true, onProgress: bar.update });
    bar.finish();
    for (const n of m.notes) io.err(`note: ${n}`);
    const recorded = await record(resolveStateDir(str(values.dir), io.env), m.dir, m.modelId, io);
    const a = m.manifest.architecture;
    const q = m.manifest.quant;
    io.out(JSON.stringify({ modelId: m.modelId, dir: m.dir, name: m.manifest.name, family: a.family, numLayers: a.numLayers, dtype, ...(q ? { quant: q } : {}), cached: m.cached, recorded }));
    return 0;
  } catch (err) {
    bar.finish();
    if (err instanceof CheckpointError) throw new CliError(`cannot import ${dir}: ${err.message}`, 1);
    throw err;
  }
}

/**
 * Records the model folder in the state folder (when it exists) and says so; returns the config
 * file written, or null when there is no state folder yet.
 */
async function record(stateDir: string, modelDir: string, modelId: string, io: CliIo): Promise<string | null> {
  const recorded = await recordModelDir(stateDir, modelDir);
  if (!recorded) {
    io.err(`note: no state folder ${stateDir} (run \`pool-agent init\` first to have it recorded): pass --model ${modelDir} to bench, register and serve`);
    return null;
  }
  io.err(`note: modelDir ${modelDir} recorded in ${recorded.path}${recorded.previous ? ` (was ${recorded.previous})` : ''}: bench, register and serve use it without --model`);
  const registered = (await loadState(stateDir)).registration;
  if (registered && registered.modelId !== modelId) io.err(`note: this agent is registered for another model (${registered.modelId}): run \`pool-agent register\` again before serve`);
  return recorded.path;
}
