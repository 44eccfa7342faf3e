import { open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { manifestHash, manifestSchema } from '../../protocol/manifest.js';
import { BUILDER_VERSION, loadManifest, ModelFileError, parameterCount, PRESETS, verifyModelFiles } from '../../pool-agent/model/build.js';
import { fromFloat16Bits, toFloat16Bits, uniformWeights } from '../../pool-agent/model/weights.js';
import { createProgressBar, renderProgress } from '../../pool-agent/model/progress.js';
import { mergeOnnxModels, OnnxMerger } from '../../pool-agent/runtime/merge.js';
import { loadSpan } from '../../pool-agent/runtime/span.js';
import { tempModels, type TempModels } from './runtime-fixture.js';

let models: TempModels;
beforeAll(async () => {
  models = await tempModels();
});
afterAll(async () => {
  await models.cleanup();
});

describe('buildModel', () => {
  it('is deterministic: same seed, same bytes and model id; another seed, another id', async () => {
    const progress: string[] = [];
    const a = await models.build('a', { preset: 'tiny', seed: 7, onProgress: (d, t, label) => progress.push(`${d}/${t} ${label}`) });
    const b = await models.build('b', { preset: 'tiny', seed: 7 });
    const c = await models.build('c', { preset: 'tiny', seed: 8 });
    expect(a.modelId).toMatch(/^[0-9a-f]{64}$/);
    expect(a.modelId).toBe(b.modelId);
    expect(a.manifest).toEqual(b.manifest);
    expect(c.modelId).not.toBe(a.modelId);
    expect(a.modelId).toBe(await manifestHash(a.manifest));
    expect(manifestSchema.parse(a.manifest)).toEqual(a.manifest);
    expect(progress[0]).toBe('0/6 embed.onnx');
    expect(progress.at(-1)).toBe('6/6 done');
    const shaA = a.manifest.files.map((f) => f.sha256);
    const shaC = c.manifest.files.map((f) => f.sha256);
    for (let i = 0; i < shaA.length; i++) expect(shaA[i]).not.toBe(shaC[i]);
  });

  it('writes embed, one file per layer and head, each listed with its size', async () => {
    const { manifest, dir } = await models.build('layout', { preset: 'tiny', seed: 1 });
    expect(manifest.files.map((f) => [f.path, f.kind, f.layers])).toEqual([
      ['embed.onnx', 'embed', [0, 0]],
      ['layers.0.onnx', 'layers', [0, 1]],
      ['layers.1.onnx', 'layers', [1, 2]],
      ['layers.2.onnx', 'layers', [2, 3]],
      ['layers.3.onnx', 'layers', [3, 4]],
      ['head.onnx', 'head', [4, 4]],
    ]);
    for (const f of manifest.files) expect((await stat(join(dir, f.path))).size).toBe(f.bytes);
    expect(manifest.architecture).toEqual(PRESETS.tiny);
    expect(await loadManifest(dir)).toEqual(manifest);
    const layer = await ort.InferenceSession.create(join(dir, 'layers.2.onnx'));
    expect(layer.inputNames).toEqual(['hidden_states.2', 'position_ids', 'past_key_values.2.key', 'past_key_values.2.value']);
    expect(layer.outputNames).toEqual(['hidden_states.3', 'present.2.key', 'present.2.value']);
    await layer.release();
  });

  it('is idempotent: a second build over a verified directory reuses it', async () => {
    const first = await models.build('idem', { preset: 'tiny', seed: 3 });
    const labels: string[] = [];
    const again = await models.build('idem', { preset: 'tiny', seed: 3, onProgress: (_d, _t, l) => labels.push(l) });
    expect(labels).toEqual(['cached']);
    expect(again.modelId).toBe(first.modelId);
    // A damaged file makes the next build regenerate instead of trusting the directory.
    await truncate(join(first.dir, 'head.onnx'), 10);
    const rebuilt = await models.build('idem', { preset: 'tiny', seed: 3, onProgress: (_d, _t, l) => labels.push(l) });
    expect(labels.at(-1)).toBe('done');
    expect(rebuilt.modelId).toBe(first.modelId);
    await verifyModelFiles(rebuilt.dir, rebuilt.manifest);
    // So does a model written by another builder version (its files may be intact but old graphs),
    // or in another KV-cache layout.
    const manifestPath = join(first.dir, 'manifest.json');
    const older = JSON.parse(await readFile(manifestPath, 'utf8')) as Record<string, unknown>;
    await writeFile(manifestPath, JSON.stringify({ ...older, builder: 'layernet-model-builder/1' }));
    await models.build('idem', { preset: 'tiny', seed: 3, onProgress: (_d, _t, l) => labels.push(l) });
    expect(labels.at(-1)).toBe('done');
    expect((await loadManifest(first.dir)).builder).toBe(BUILDER_VERSION);
    const full = await models.build('idem', { preset: 'tiny', seed: 3, kvCache: 'full', onProgress: (_d, _t, l) => labels.push(l) });
    expect(labels.at(-1)).toBe('done');
    expect(full.modelId).not.toBe(first.modelId);
    expect(full.manifest.kvCache).toBe('full');
  });

  it('builds float16 with half-size weights and a different id', async () => {
    const f32 = await models.build('f32', { preset: 'tiny', seed: 1 });
    const f16 = await models.build('f16', { preset: 'tiny', seed: 1, dtype: 'float16' });
    expect(f16.manifest.dtype).toBe('float16');
    expect(f16.modelId).not.toBe(f32.modelId);
    const embed32 = f32.manifest.files[0]!.bytes;
    const embed16 = f16.manifest.files[0]!.bytes;
    expect(embed16).toBeLessThan(embed32 * 0.55);
  });

  it('rejects bad options', async () => {
    await expect(models.build('bad', { preset: 'nope' as 'tiny' })).rejects.toThrow(/unknown model preset/);
    await expect(models.build('bad', { preset: 'tiny', seed: -1 })).rejects.toThrow(/seed/);
    await expect(models.build('bad', { preset: 'tiny', overrides: { numKeyValueHeads: 3 } })).rejects.toThrow(/multiple/);
  });

  it('sizes the presets as documented', () => {
    expect(parameterCount(PRESETS.small)).toBeGreaterThan(90e6);
    expect(parameterCount(PRESETS.small)).toBeLessThan(130e6);
    expect(parameterCount(PRESETS['1b'])).toBeGreaterThan(1.0e9);
  });
});

describe('verifyModelFiles', () => {
  it('names the corrupted file', async () => {
    const { manifest, dir } = await models.build('corrupt', { preset: 'tiny', seed: 5 });
    await verifyModelFiles(dir, manifest);
    const path = join(dir, 'layers.2.onnx');
    const fh = await open(path, 'r+');
    const buf = Buffer.alloc(1);
    await fh.read(buf, 0, 1, 5000);
    buf[0] = buf[0]! ^ 0xff;
    await fh.write(buf, 0, 1, 5000);
    await fh.close();
    const err = await verifyModelFiles(dir, manifest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFileError);
    expect((err as ModelFileError).file).toBe('layers.2.onnx');
    expect((err as Error).message).toMatch(/layers\.2\.onnx has SHA-256/);
    // Files outside the set asked for are not checked.
    await verifyModelFiles(dir, manifest, manifest.files.filter((f) => f.path !== 'layers.2.onnx'));
    // Loading a span that needs the file fails; a span that does not, loads.
    await expect(loadSpan(dir, [2, 4], { provider: 'cpu' })).rejects.toThrow(/layers\.2\.onnx/);
    const ok = await loadSpan(dir, [0, 2], { provider: 'cpu' });
    await ok.close();
  });

  it('names a missing file and rejects a bad manifest', async () => {
    const { manifest, dir } = await models.build('missing', { preset: 'tiny', seed: 6 });
    await truncate(join(dir, 'embed.onnx'), 0);
    await expect(verifyModelFiles(dir, manifest)).rejects.toThrow(/embed\.onnx has 0 bytes/);
    await expect(verifyModelFiles(join(dir, 'nowhere'), manifest)).rejects.toThrow(/embed\.onnx is missing/);
    // Loading a span reads the same way: the truncated file and a missing one are named.
    await expect(loadSpan(dir, [0, 2], { provider: 'cpu' })).rejects.toThrow(/embed\.onnx has 0 bytes, the manifest says/);
    await rm(join(dir, 'layers.1.onnx'));
    await expect(loadSpan(dir, [1, 3], { provider: 'cpu' })).rejects.toThrow(/layers\.1\.onnx is missing from/);
    await expect(loadManifest(join(dir, 'nowhere'))).rejects.toThrow(/cannot read model manifest/);
    const raw = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    expect(raw.format).toBe('layernet.manifest/1');
  });
});

describe('weights and encoding helpers', () => {
  it('generates the same weights for the same (seed, name) and bounded by sqrt(3 / fanIn)', () => {
    const a = uniformWeights(1, 'w', 4096, 64);
    expect(a).toEqual(uniformWeights(1, 'w', 4096, 64));
    expect(a).not.toEqual(uniformWeights(2, 'w', 4096, 64));
    expect(a).not.toEqual(uniformWeights(1, 'v', 4096, 64));
    const bound = Math.sqrt(3 / 64);
    let sum = 0;
    let sq = 0;
    for (const x of a) {
      expect(Math.abs(x)).toBeLessThanOrEqual(bound);
      sum += x;
      sq += x * x;
    }
    expect(Math.abs(sum / a.length)).toBeLessThan(0.01);
    expect(sq / a.length).toBeGreaterThan(0.8 / 64);
    expect(sq / a.length).toBeLessThan(1.2 / 64);
  });

  it('rounds float16 to nearest even, with subnormals and overflow', () => {
    expect(toFloat16Bits(1)).toBe(0x3c00);
    expect(toFloat16Bits(-2)).toBe(0xc000);
    expect(toFloat16Bits(65504)).toBe(0x7bff);
    expect(toFloat16Bits(1e6)).toBe(0x7c00);
    expect(toFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(toFloat16Bits(2 ** -26)).toBe(0);
    expect(toFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie, even stays
    expect(toFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, odd rounds up
    expect(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN)))).toBe(true);
    for (const x of [0.1, -3.25, 1234.5, 6.1e-5]) expect(Math.abs(fromFloat16Bits(toFloat16Bits(x)) - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -11);
  });

  it('renders a progress bar', () => {
    expect(renderProgress(3, 6, 'layers.2.onnx', 10)).toBe('[#####-----]  50% 3/6 layers.2.onnx');
    expect(renderProgress(6, 6, 'done', 4)).toBe('[####] 100% 6/6 done');
    const lines: string[] = [];
    const log = createProgressBar('model', { write: (c) => lines.push(c) });
    log.update(0, 2, 'a.onnx');
    log.update(0, 2, 'a.onnx');
    log.update(1, 2, 'b.onnx');
    log.finish();
    expect(lines.slice(0, 2)).toEqual(['model [------------------------------]   0% 0/2 a.onnx\n', 'model [###############---------------]  50% 1/2 b.onnx\n']);
    expect(lines[2]).toMatch(/^model done in \d+\.\ds\n$/);
    const tty: string[] = [];
    const bar = createProgressBar('m', { write: (c) => tty.push(c), isTTY: true, columns: 40 });
    bar.update(1, 2, 'x');
    expect(tty[0]!.startsWith('\rm [###')).toBe(true);
    expect(tty[0]!.length).toBe(40);
  });

  it('merges block graphs into one model whose interface is the span interface', async () => {
    const { dir } = await models.build('merge', { preset: 'tiny', seed: 1 });
    const bytes = await Promise.all(['embed.onnx', 'layers.0.onnx', 'layers.1.onnx'].map((f) => readFile(join(dir, f))));
    const merged = mergeOnnxModels(bytes.map((b) => new Uint8Array(b)));
    const s = await ort.InferenceSession.create(merged);
    expect(s.inputNames).toEqual(['input_ids', 'position_ids', 'past_key_values.0.key', 'past_key_values.0.value', 'past_key_values.1.key', 'past_key_values.1.value']);
    expect(s.outputNames).toEqual(['present.0.key', 'present.0.value', 'hidden_states.2', 'present.1.key', 'present.1.value']);
    await s.release();
  });

  it('merges blocks one at a time through one reused buffer, as a span is loaded: same model, nothing kept of the bytes it was given', async () => {
    const { dir } = await models.build('merge-scratch', { preset: 'tiny', seed: 1 });
    const files = ['layers.1.onnx', 'layers.2.onnx', 'layers.3.onnx', 'head.onnx'];
    const bytes = await Promise.all(files.map(async (f) => new Uint8Array(await readFile(join(dir, f)))));
    const whole = mergeOnnxModels(bytes);
    // Announced far too small: the merger grows its buffer.
    for (const announced of [bytes.reduce((n, b) => n + b.byteLength, 0), 1]) {
      const scratch = new Uint8Array(Math.max(...bytes.map((b) => b.byteLength)));
      const merger = new OnnxMerger(announced);
      for (const b of bytes) {
        scratch.set(b);
        merger.add(scratch.subarray(0, b.byteLength));
        scratch.fill(0xff); // the next file's bytes land here
      }
      expect(Buffer.from(merger.finish()).equals(Buffer.from(whole))).toBe(true);
    }
    const s = await ort.InferenceSession.create(whole);
    expect(s.inputNames).toEqual(['hidden_states.1', 'position_ids', 'past_key_values.1.key', 'past_key_values.1.value', 'past_key_values.2.key', 'past_key_values.2.value', 'past_key_values.3.key', 'past_key_values.3.value', 'num_logits_to_keep']);
    expect(s.outputNames).toEqual(['present.1.key', 'present.1.value', 'present.2.key', 'present.2.value', 'present.3.key', 'present.3.value', 'logits', 'final_hidden']);
    await s.release();
  });
});
