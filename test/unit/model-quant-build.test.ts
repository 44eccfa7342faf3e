/**
 * `--quant int8|int4` at build and import: the manifest and the model id pin the format, the
 * float builds keep their ids, every projection (and the LM head) is MatMulNBits computing what
 * the dequantized float weights would, and the runtime loads such spans unchanged.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { manifestSchema, weightFormat, type WeightQuant } from '../../protocol/manifest.js';
import { PRESETS } from '../../pool-agent/model/build.js';
import { headGraph, layerGraph } from '../../pool-agent/model/llama.js';
import { fieldString, readFields } from '../../pool-agent/model/onnx-proto.js';
import { dequantizeMatrix, quantizeMatrix } from '../../pool-agent/model/quant.js';
import { QUANT_DEFAULTS, quantBits, resolveWeightQuant } from '../../pool-agent/model/quant-linear.js';
import { seededWeights, type WeightProvider } from '../../pool-agent/model/weight-provider.js';
import { importModel } from '../../pool-agent/model/import/import.js';
import { runModel } from '../../pool-agent/cli/model.js';
import { forwardChain, loadSpan } from '../../pool-agent/runtime/index.js';
import { writeTinyCheckpoint } from '../support/hf-checkpoint.js';
import { captureIo } from '../support/agent-cli.js';
import { LAYOUTS, maxAbsDiff, tempModels, type TempModels } from './runtime-fixture.js';

const PROMPT = Int32Array.from([1, 15043, 29892, 920, 526, 366, 29973, 450]);

let models: TempModels;
let root: string;
beforeAll(async () => {
  models = await tempModels();
  root = await mkdtemp(join(tmpdir(), 'layernet-quant-'));
});
afterAll(async () => {
  await models.cleanup();
  await rm(root, { recursive: true, force: true });
});

/** Op types and opset domains of an ONNX file. */
async function onnxFacts(path: string): Promise<{ ops: string[]; domains: string[] }> {
  const bytes = new Uint8Array(await readFile(path));
  const model = readFields(bytes);
  const domains = model.filter((f) => f.field === 8).map((f) => fieldString(bytes, readFields(bytes, f.valueStart, f.valueEnd).find((x) => x.field === 1)!));
  const graph = model.find((f) => f.field === 7)!;
  const ops = readFields(bytes, graph.valueStart, graph.valueEnd)
    .filter((f) => f.field === 1)
    .map((n) => fieldString(bytes, readFields(bytes, n.valueStart, n.valueEnd).find((x) => x.field === 4)!));
  return { ops, domains };
}

async function logits(dir: string, layout: readonly (readonly [number, number])[] = [[0, 4]]): Promise<Float32Array> {
  const spans = await Promise.all(layout.map((l) => loadSpan(dir, l, { provider: 'cpu', intraOpThreads: 1 })));
  try {
    return (await forwardChain(spans.map((s) => s.openSession()), PROMPT, { logitsToKeep: PROMPT.length })).logits;
  } finally {
    await Promise.all(spans.map((s) => s.close()));
  }
}

describe('model ids', () => {
  it('keeps the ids of float builds byte for byte (as built before weight formats existed)', async () => {
    // Computed with the builder before --quant was added; a change here re-registers every model.
    expect((await models.build('f32', { preset: 'tiny' })).modelId).toBe('4bd2aa0db0b3f7cb30d267bd34b597673d403786289dd979b7e232e3a1bc33dd');
    expect((await models.build('f16', { preset: 'tiny', dtype: 'float16', seed: 7 })).modelId).toBe('d3926eac977a30b100ff80a373c8b5950f6b64611b38921e10c16126dc1d29e5');
    expect((await models.build('full', { preset: 'tiny', seed: 3, kvCache: 'full' })).modelId).toBe('28b0fd1e4a758eb66c4b22b53237378164c4e7b6b751711c024624efe62d044d');
  });

  it('pins the format: int8 and int4 are other ids and names, recorded in the manifest, smaller files', async () => {
    const f32 = await models.build('f32', { preset: 'tiny' });
    const i8 = await models.build('i8', { preset: 'tiny', quant: { format: 'int8' } });
    const i4 = await models.build('i4', { preset: 'tiny', quant: { format: 'int4' } });
    expect(new Set([f32.modelId, i8.modelId, i4.modelId]).size).toBe(3);
    expect(i8.manifest.name).toBe('layernet-llama-tiny-fp32-int8-seed0');
    expect(i4.manifest.name).toBe('layernet-llama-tiny-fp32-int4-seed0');
    expect(i4.manifest.quant).toEqual({ format: 'int4', ...QUANT_DEFAULTS.int4 });
    expect(weightFormat(i4.manifest)).toBe('int4');
    expect(weightFormat(f32.manifest)).toBe('float32');
    expect(f32.manifest.quant).toBeUndefined();
    const bytes = (m: typeof f32, kind: string) => m.manifest.files.filter((f) => f.kind === kind).reduce((n, f) => n + f.bytes, 0);
    // The embedding stays float (its file only gains the opset import); layers and head shrink
    // about 3.5x (int8) and 6x (int4) with block 32.
    expect(bytes(i4, 'embed') - bytes(f32, 'embed')).toBeGreaterThan(0);
    expect(bytes(i4, 'embed') - bytes(f32, 'embed')).toBeLessThan(32);
    expect(bytes(i8, 'head') / bytes(f32, 'head')).toBeLessThan(0.3);
    expect(bytes(i4, 'head') / bytes(f32, 'head')).toBeLessThan(0.17);
    expect(bytes(i4, 'layers')).toBeLessThan(bytes(i8, 'layers'));
    // Another block size is another model.
    const b64 = await models.build('i4', { preset: 'tiny', quant: { format: 'int4', blockSize: 64 } });
    expect(b64.modelId).not.toBe(i4.modelId);
    expect(b64.manifest.quant?.blockSize).toBe(64);
  });

  it('rebuilds nothing for the same format, and validates the manifest field', async () => {
    await models.build('cache', { preset: 'tiny', quant: { format: 'int8' } });
    const labels: string[] = [];
    await models.build('cache', { preset: 'tiny', quant: { format: 'int8' }, onProgress: (_d, _t, l) => labels.push(l) });
    expect(labels).toEqual(['cached']);
    await models.build('cache', { preset: 'tiny', onProgress: (_d, _t, l) => labels.push(l) });
    expect(labels.at(-1)).toBe('done');
    const good = (await models.build('i8', { preset: 'tiny', quant: { format: 'int8' } })).manifest;
    expect(manifestSchema.safeParse({ ...good, quant: { ...good.quant, blockSize: 48 } }).success).toBe(false);
    expect(manifestSchema.safeParse({ ...good, quant: { ...good.quant, format: 'int3' } }).success).toBe(false);
    expect(() => resolveWeightQuant({ format: 'int4', blockSize: 8 })).toThrow();
  });
});

describe('quantized graphs', () => {
  it('every file imports com.microsoft; projections and the LM head are MatMulNBits, the embedding a float Gather', async () => {
    const i4 = await models.build('i4', { preset: 'tiny', quant: { format: 'int4' } });
    for (const f of i4.manifest.files) {
      const { ops, domains } = await onnxFacts(join(i4.dir, f.path));
      expect(domains).toEqual(['', 'com.microsoft']);
      if (f.kind === 'layers') expect(ops.filter((o) => o === 'MatMulNBits')).toHaveLength(7);
      if (f.kind === 'head') expect(ops.filter((o) => o === 'MatMulNBits')).toHaveLength(1);
      if (f.kind === 'embed') expect(ops).toEqual(['Gather']);
      // A layer's remaining MatMuls are attention's (scores, weighted values), none over a weight.
      if (f.kind === 'layers') expect(ops.filter((o) => o === 'MatMul').length).toBeLessThanOrEqual(6);
    }
    const f32 = await models.build('f32', { preset: 'tiny' });
    expect((await onnxFacts(join(f32.dir, 'layers.0.onnx'))).domains).toEqual(['']);
  });

  /** The seeded weights with every projection replaced by its quantize-dequantize round trip. */
  function dequantized(spec: WeightQuant): WeightProvider {
    const w = seededWeights(0);
    return { ...w, linear: (name, fanIn, fanOut) => dequantizeMatrix(quantizeMatrix(w.linear(name, fanIn, fanOut), fanIn, fanOut, { bits: quantBits(spec.format), blockSize: spec.blockSize, symmetric: !spec.zeroPoints })) };
  }

  it.each(['int8', 'int4'] as const)('%s layer and head compute what the float graph over the dequantized weights computes', async (format) => {
    const arch = { ...PRESETS.tiny, intermediateSize: 200 }; // K = 200 for down_proj: a short last block
    const T = 5;
    const rand = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s) * 0.8);
    const run = async (g: { toModel(): { finish(): Uint8Array } }, feeds: Record<string, ort.Tensor>) => {
      const s = await ort.InferenceSession.create(g.toModel().finish(), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
      try {
        return await s.run(feeds);
      } finally {
        await s.release();
      }
    };
    for (const accuracyLevel of [0, 4] as const) {
      const spec = resolveWeightQuant({ format, accuracyLevel });
      const hidden = new ort.Tensor('float32', rand(T * arch.hiddenSize, 1), [1, T, arch.hiddenSize]);
      const layerFeeds = {
        'hidden_states.0': hidden,
        position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(i)), [1, T]),
        'past_key_values.0.key': new ort.Tensor('float32', new Float32Array(0), [1, arch.numKeyValueHeads, 0, arch.headDim]),
        'past_key_values.0.value': new ort.Tensor('float32', new Float32Array(0), [1, arch.numKeyValueHeads, 0, arch.headDim]),
      };
      const q = await run(layerGraph(arch, 'float32', seededWeights(0), 0, 'full', spec), layerFeeds);
      const f = await run(layerGraph(arch, 'float32', dequantized(spec), 0, 'full'), layerFeeds);
      const headFeeds = { 'hidden_states.4': hidden, num_logits_to_keep: new ort.Tensor('int64', BigInt64Array.of(BigInt(T)), []) };
      const qh = await run(headGraph(arch, 'float32', seededWeights(0), spec), headFeeds);
      const fh = await run(headGraph(arch, 'float32', dequantized(spec), spec.lmHead ? undefined : spec), headFeeds);
      // accuracy_level 0: the same float arithmetic (measured: identical); 4: int8 activations,
      // ~1% of hidden states of magnitude ~2.5 (measured 0.023-0.028), and no more.
      const tol = accuracyLevel === 0 ? 1e-5 : 5e-2;
      expect(maxAbsDiff(q['hidden_states.1']!.data as Float32Array, f['hidden_states.1']!.data as Float32Array)).toBeLessThan(tol);
      expect(maxAbsDiff(q['present.0.key']!.data as Float32Array, f['present.0.key']!.data as Float32Array)).toBeLessThan(tol);
      expect(maxAbsDiff(qh.logits!.data as Float32Array, fh.logits!.data as Float32Array)).toBeLessThan(tol);
    }
  });

  it('loads unchanged: any split of a quantized model gives the same logits, close to the float model', async () => {
    const f32 = await logits((await models.build('f32', { preset: 'tiny' })).dir);
    for (const format of ['int8', 'int4'] as const) {
      const { dir } = await models.build(format === 'int8' ? 'i8' : 'i4', { preset: 'tiny', quant: { format } });
      const whole = await logits(dir);
      for (const layout of LAYOUTS.slice(1)) expect(maxAbsDiff(await logits(dir, layout), whole)).toBeLessThan(1e-4);
      const err = maxAbsDiff(whole, f32);
      expect(err).toBeGreaterThan(0);
      expect(err).toBeLessThan(format === 'int8' ? 0.1 : 2);
    }
    // float16 activations with int4 weights load too.
    const f16 = await models.build('f16-i4', { preset: 'tiny', dtype: 'float16', quant: { format: 'int4' } });
    expect(f16.manifest.name).toBe('layernet-llama-tiny-fp16-int4-seed0');
    expect(maxAbsDiff(await logits(f16.dir, [[0, 2], [2, 4]]), await logits(f16.dir))).toBeLessThan(1e-2);
  });
});

describe('import --quant', () => {
  it('imports a checkpoint quantized: named -int4, another id, re-imported when the format changes', async () => {
    const ckpt = join(root, 'ckpt');
    await writeTinyCheckpoint({ family: 'qwen2', dir: ckpt, numLayers: 2, seed: 2 });
    await writeFile(join(ckpt, 'tokenizer.json'), JSON.stringify({ version: '1.0', added_tokens: [], model: { type: 'WordLevel', vocab: { '<unk>': 0 }, unk_token: '<unk>' } }));
    const f32 = await importModel({ dir: ckpt, outDir: join(root, 'f32') });
    const i4 = await importModel({ dir: ckpt, outDir: join(root, 'f32'), quant: { format: 'int4' } });
    expect(i4.cached).toBe(false);
    expect(i4.manifest.name).toBe('ckpt-int4');
    expect(i4.manifest.quant?.format).toBe('int4');
    expect(i4.modelId).not.toBe(f32.modelId);
    expect((await importModel({ dir: ckpt, outDir: join(root, 'f32'), quant: { format: 'int4' } })).cached).toBe(true);
    const ids = PROMPT.map((t) => t % 512);
    const run = async (dir: string) => {
      const spans = [await loadSpan(dir, [0, 1], { provider: 'cpu' }), await loadSpan(dir, [1, 2], { provider: 'cpu' })];
      const out = await forwardChain(spans.map((s) => s.openSession()), ids, { logitsToKeep: ids.length });
      await Promise.all(spans.map((s) => s.close()));
      return out.logits;
    };
    const i8 = await importModel({ dir: ckpt, outDir: join(root, 'i8'), quant: { format: 'int8' } });
    const a = await run(i4.dir);
    const b = await run(i8.dir);
    await importModel({ dir: ckpt, outDir: join(root, 'f32'), force: true });
    const ref = await run(join(root, 'f32'));
    // int8 sits far closer to float32 than int4 does (qwen2: the q/k/v biases stay float).
    expect(maxAbsDiff(b, ref)).toBeLessThan(maxAbsDiff(a, ref) / 4);
  });

  it('the CLI takes --quant and --quant-block and refuses what it cannot build', async () => {
    const stateless = { LAYERNET_AGENT_DIR: join(root, 'no-agent-state') };
    const ok = captureIo(stateless);
    expect(await runModel(['build', '--preset', 'tiny', '--quant', 'int4', '--quant-block', '64', '--out', join(root, 'cli')], ok.io)).toBe(0);
    expect(JSON.parse(ok.out.at(-1)!)).toMatchObject({ name: 'layernet-llama-tiny-fp32-int4-seed0', quant: { format: 'int4', blockSize: 64 } });
    for (const [args, message] of [
      [['--quant', 'int3'], /--quant must be int8, int4 or none/],
      [['--quant', 'int4', '--quant-block', '48'], /power of two/],
      [['--quant', 'int4', '--quant-block', '8'], /--quant-block/],
      [['--quant-block', '64'], /needs --quant/],
    ] as const) {
      await expect(runModel(['build', '--preset', 'tiny', ...args, '--out', join(root, 'cli-bad')], captureIo(stateless).io)).rejects.toMatchObject({ exitCode: 2, message: expect.stringMatching(message) });
    }
  });
});
