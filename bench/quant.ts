/**
 * Weight formats (issue 17): fp32 against block-wise int8/int4 weight-only quantization
 * (MatMulNBits), measured side by side in one run:
 * - bytes per parameter (all files over the parameter count, and the decoder layers' files over
 *   their parameters);
 * - quality: next-token distributions over a fixed text (teacher-forced, every position) against
 *   the fp32 build of the same weights: top-1 agreement and KL(fp32 || quantized), on the preset
 *   and on an imported Hugging Face-layout checkpoint (Llama 3 layout, BF16, the real Llama 3
 *   tokenizer). Both have random weights, a poor proxy for trained ones (see BENCHMARKS.md);
 * - decode tokens per second on CPU: the formats take turns round by round (prefill the prompt,
 *   then greedy decode), and each round's ratio against fp32 is taken before the median.
 *
 *   npm run bench:quant -- [--preset small|tiny|1b] [--variants int8,int4] [--threads 2] [--rounds 3]
 *     [--prompt 16] [--decode 32] [--no-speed] [--no-checkpoint] [--text-tokens 256]
 *
 * A variant is a format with optional changes to its defaults, joined by ':' — b64 (block size),
 * sym (no zero points), nohead (float LM head), a4 (accuracy_level 4: int8 activations, faster on CPU but
 * not checkable, see docs/trust.md) — e.g.
 * `--variants int4,int4:b128,int4:nohead,int8:a4`.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encode } from '../protocol/tokenizer.js';
import { createHfTokenizer } from '../protocol/hf-tokenizer.js';
import type { Manifest } from '../protocol/manifest.js';
import { buildModel, createProgressBar, parameterCount, type BuiltModel, type PresetName } from '../pool-agent/model/index.js';
import { importModel } from '../pool-agent/model/import/import.js';
import type { WeightQuantOptions } from '../pool-agent/model/quant-linear.js';
import { argmax, forwardChain, loadSpan, type LoadedSpan } from '../pool-agent/runtime/index.js';
import { writeTinyCheckpoint } from '../test/support/hf-checkpoint.js';
import { compareDistributions, FIXED_TEXT, median, type Agreement } from './quant-metrics.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'small' },
    variants: { type: 'string', default: 'int8,int4' },
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    prompt: { type: 'string', default: '16' },
    decode: { type: 'string', default: '32' },
    'text-tokens': { type: 'string', default: '256' },
    'no-speed': { type: 'boolean', default: false },
    'no-checkpoint': { type: 'boolean', default: false },
  },
});
const preset = values.preset as PresetName;
const threads = Number(values.threads);
const rounds = Number(values.rounds);
const promptLen = Number(values.prompt);
const decodeLen = Number(values.decode);
const textTokens = Number(values['text-tokens']);

interface Variant {
  label: string;
  quant: WeightQuantOptions;
}

function parseVariant(text: string): Variant {
  const [format, ...mods] = text.split(':');
  if (format !== 'int8' && format !== 'int4') throw new Error(`variant ${text}: the format must be int8 or int4`);
  const quant: WeightQuantOptions = { format };
  for (const m of mods) {
    if (/^b\d+$/.test(m)) quant.blockSize = Number(m.slice(1));
    else if (m === 'sym') quant.zeroPoints = false;
    else if (m === 'nohead') quant.lmHead = false;
    else if (m === 'a4') quant.accuracyLevel = 4;
    else throw new Error(`variant ${text}: unknown modifier ${m} (b<N>, sym, nohead, a4)`);
  }
  return { label: text, quant };
}
const variants = values.variants!.split(',').filter(Boolean).map(parseVariant);
const slug = (v: Variant) => v.label.replaceAll(':', '-');

/** Bytes per parameter: all files over all parameters, and the layer files over the layers' parameters. */
function bytesPerParameter(m: Manifest): { all: number; layers: number } {
  const a = m.architecture;
  const total = m.files.reduce((n, f) => n + f.bytes, 0);
  const layerFiles = m.files.filter((f) => f.kind === 'layers').reduce((n, f) => n + f.bytes, 0);
  const layerParams = (parameterCount(a) - 2 * a.vocabSize * a.hiddenSize - a.hiddenSize) / a.numLayers;
  return { all: total / parameterCount(a), layers: layerFiles / (layerParams * a.numLayers) };
}

/** Logits of every position of `ids` (teacher-forced, one prefill). */
async function allLogits(span: LoadedSpan, ids: number[]): Promise<Float32Array> {
  const s = span.openSession();
  try {
    const out = await forwardChain([s], Int32Array.from(ids), { logitsToKeep: ids.length });
    return out.logits;
  } finally {
    s.dispose();
  }
}

async function quality(label: string, ref: BuiltModel, models: { name: string; built: BuiltModel }[], ids: number[]): Promise<Record<string, Record<string, string | number>>> {
  const L = ref.manifest.architecture.numLayers;
  const V = ref.manifest.architecture.vocabSize;
  const load = (dir: string) => loadSpan(dir, [0, L], { provider: 'cpu', intraOpThreads: threads });
  const refSpan = await load(ref.dir);
  const refLogits = await allLogits(refSpan, ids);
  await refSpan.close();
  const rows: Record<string, Record<string, string | number>> = {};
  for (const m of models) {
    const span = await load(m.built.dir);
    const a: Agreement = compareDistributions(refLogits, await allLogits(span, ids), V);
    await span.close();
    const bpp = bytesPerParameter(m.built.manifest);
    rows[`${label} ${m.name}`] = {
      positions: a.positions,
      'top-1 agreement': `${(100 * a.top1).toFixed(1)}%`,
      'KL mean (nats)': +a.klMean.toPrecision(3),
      'KL p50': +a.klMedian.toPrecision(3),
      'KL max': +a.klMax.toPrecision(3),
      'bytes/param (all)': +bpp.all.toFixed(3),
      'bytes/param (layers)': +bpp.layers.toFixed(3),
    };
  }
  return rows;
}

async function build(name: string, quant?: WeightQuantOptions): Promise<BuiltModel> {
  const bar = createProgressBar(`${preset} ${name}`);
  const dir = join('.models', quant ? `${preset}-${name}` : preset);
  const built = await buildModel({ preset, dtype: 'float32', seed: 0, outDir: dir, ...(quant ? { quant } : {}), onProgress: bar.update });
  bar.finish();
  return built;
}

const ref = await build('fp32');
const quantized = [];
for (const v of variants) quantized.push({ name: v.label, built: await build(slug(v), v.quant) });
const a = ref.manifest.architecture;
console.log(`preset ${preset}: ${(parameterCount(a) / 1e6).toFixed(1)}M parameters, hidden ${a.hiddenSize}, ${a.numLayers} layers, vocab ${a.vocabSize}; threads ${threads}, cpu`);

const bpp = bytesPerParameter(ref.manifest);
const presetIds = encode(FIXED_TEXT, { bos: true }).slice(0, textTokens);
const table: Record<string, Record<string, string | number>> = {
  [`${preset} fp32`]: { positions: presetIds.length, 'top-1 agreement': '100.0%', 'KL mean (nats)': 0, 'KL p50': 0, 'KL max': 0, 'bytes/param (all)': +bpp.all.toFixed(3), 'bytes/param (layers)': +bpp.layers.toFixed(3) },
  ...(await quality(preset, ref, quantized, presetIds)),
};

if (!values['no-checkpoint']) {
  // A Llama 3-layout checkpoint (BF16, tied embeddings, llama3 rope scaling, Gaussian weights) with
  // the real Llama 3 tokenizer, imported in each format.
  const root = join('.models', 'quant-bench-ckpt');
  const src = join(root, 'checkpoint');
  await mkdir(root, { recursive: true });
  await writeTinyCheckpoint({ family: 'llama3', dir: src, hiddenSize: 512, numLayers: 4, numAttentionHeads: 8, numKeyValueHeads: 2, headDim: 64, intermediateSize: 1536, seed: 3, tokenizer: 'llama3' });
  const fs = await import('node:fs/promises');
  const tokenizer = createHfTokenizer({ tokenizerJson: await fs.readFile(join(src, 'tokenizer.json'), 'utf8'), tokenizerConfig: await fs.readFile(join(src, 'tokenizer_config.json'), 'utf8') });
  const ids = tokenizer.encodePrompt(FIXED_TEXT).slice(0, textTokens);
  const imp = async (name: string, quant?: WeightQuantOptions) => importModel({ dir: src, outDir: join(root, name), name: `ckpt-${name}`, ...(quant ? { quant } : {}) });
  const cRef = await imp('fp32');
  const cModels = [];
  for (const v of variants) cModels.push({ name: v.label, built: await imp(slug(v), v.quant) });
  const cb = bytesPerParameter(cRef.manifest);
  table['checkpoint fp32'] = { positions: ids.length, 'top-1 agreement': '100.0%', 'KL mean (nats)': 0, 'KL p50': 0, 'KL max': 0, 'bytes/param (all)': +cb.all.toFixed(3), 'bytes/param (layers)': +cb.layers.toFixed(3) };
  Object.assign(table, await quality('checkpoint', cRef, cModels, ids));
  await rm(src, { recursive: true, force: true });
}
console.log('quality against fp32 over the fixed text (teacher-forced, every position) and bytes per parameter');
console.table(table);

const speed: Record<string, Record<string, string | number>> = {};
if (!values['no-speed']) {
  const all = [{ name: 'fp32', built: ref }, ...quantized];
  const spans = new Map<string, LoadedSpan>();
  for (const m of all) spans.set(m.name, await loadSpan(m.built.dir, [0, a.numLayers], { provider: 'cpu', intraOpThreads: threads }));
  const prompt = presetIds.slice(0, promptLen);
  const perRound = new Map<string, number[]>(all.map((m) => [m.name, []]));
  for (let r = 0; r <= rounds; r++) {
    for (const m of all) {
      const s = spans.get(m.name)!.openSession();
      let out = await forwardChain([s], Int32Array.from(prompt));
      const t0 = performance.now();
      for (let i = 0; i < decodeLen; i++) out = await forwardChain([s], Int32Array.of(argmax(out.logits)));
      const tps = decodeLen / ((performance.now() - t0) / 1000);
      s.dispose();
      if (r > 0) perRound.get(m.name)!.push(tps); // round 0 warms up
    }
  }
  const base = perRound.get('fp32')!;
  for (const m of all) {
    const tps = perRound.get(m.name)!;
    speed[m.name] = {
      'decode tok/s (median)': +median(tps).toFixed(1),
      'per round': tps.map((x) => x.toFixed(1)).join(' '),
      'x fp32 (median of per-round ratios)': +median(tps.map((x, i) => x / base[i]!)).toFixed(2),
      'file MiB': Math.round(m.built.manifest.files.reduce((n, f) => n + f.bytes, 0) / 2 ** 20),
    };
  }
  for (const s of spans.values()) await s.close();
  console.log(`decode on ${preset}: prompt ${prompt.length}, ${decodeLen} greedy tokens, ${rounds} rounds after a warm-up, formats in turn`);
  console.table(speed);
}
console.log(JSON.stringify({ bench: 'quant', preset, threads, variants: variants.map((v) => v.label), quality: table, speed }));
