import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corruptCheckpoint, readCheckpointForTests, readSafetensorsForTests, writeSafetensors, writeTinyCheckpoint, type CheckpointDefect, type HfFamily } from '../support/hf-checkpoint.js';
import { encodeTensor, fromBf16Bits, fromF16Bits, roundToDtype, toBf16Bits, toF16Bits } from '../support/hf-safetensors.js';
import { argmax, greedyGenerate, loadReferenceModel, referenceForward, referenceModel, ropeInvFreq, rotateHalf, type ReferenceModel } from '../support/reference-forward.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'hf-ckpt-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const PROMPT = [3, 17, 42, 99, 7, 256, 311, 5, 64, 128, 77, 400, 12, 1, 500, 33];
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};
const dot = (a: ArrayLike<number>, b: ArrayLike<number>, bOffset = 0): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[bOffset + i]!;
  return s;
};

describe('reduced-precision rounding', () => {
  it('BF16 rounds to nearest, ties to even, keeps NaN and overflows to infinity', () => {
    expect(toBf16Bits(1.00390625)).toBe(0x3f80); // 1 + 2^-8: halfway between 1 (even) and 1 + 2^-7
    expect(roundToDtype(1.01171875, 'BF16')).toBe(1.015625); // 1 + 3·2^-8: halfway, 1 + 2^-6 is the even one
    expect(roundToDtype(1.00390625 + 2 ** -20, 'BF16')).toBe(1.0078125); // just above halfway rounds up
    expect(roundToDtype(-2.00390625 * 2, 'BF16')).toBe(-4); // sign kept, tie to even below
    expect(Number.isNaN(fromBf16Bits(toBf16Bits(NaN)))).toBe(true);
    expect(toBf16Bits(-0)).toBe(0x8000);
    expect(fromBf16Bits(toBf16Bits(3.4e38))).toBe(Infinity);
  });

  it('F16 rounds to nearest even, with subnormals and overflow', () => {
    expect(roundToDtype(1 + 2 ** -11, 'F16')).toBe(1); // halfway to 1 + 2^-10, even wins
    expect(roundToDtype(1 + 3 * 2 ** -11, 'F16')).toBe(1 + 2 ** -9);
    expect(toF16Bits(65504)).toBe(0x7bff);
    expect(toF16Bits(65520)).toBe(0x7c00); // halfway past the largest finite half: infinity
    expect(roundToDtype(2 ** -24, 'F16')).toBe(2 ** -24); // smallest subnormal
    expect(roundToDtype(2 ** -25, 'F16')).toBe(0); // tie between 0 (even) and 2^-24
    expect(roundToDtype(1.5 * 2 ** -25, 'F16')).toBe(2 ** -24);
    expect(roundToDtype(3 * 2 ** -25, 'F16')).toBe(2 ** -23); // tie between 1 and 2 units: 2 is even
    expect(Number.isNaN(fromF16Bits(toF16Bits(NaN)))).toBe(true);
    expect(fromF16Bits(toF16Bits(-1.5))).toBe(-1.5);
  });
});

describe('safetensors', () => {
  it('writes the format exactly and reads it back bit for bit', async () => {
    const a = encodeTensor([0.1, -2.5, 3e-3, 7], 'BF16');
    const b = encodeTensor([1, 2, 3], 'F32');
    const c = encodeTensor([0.333], 'F16');
    const ids = new Uint8Array(16);
    new DataView(ids.buffer).setBigInt64(8, 12345n, true);
    const path = join(tmp, 'fmt.safetensors');
    const tensors = [
      { name: 'z.weight', dtype: 'BF16' as const, shape: [2, 2], data: a.data },
      { name: 'a.bias', dtype: 'F32' as const, shape: [3], data: b.data },
      { name: 'm.ids', dtype: 'I64' as const, shape: [2], data: ids },
      { name: 'h', dtype: 'F16' as const, shape: [1, 1], data: c.data },
    ];
    await writeSafetensors(path, tensors, { format: 'pt' });

    // Against the spec, parsed by hand rather than by our reader.
    const bytes = new Uint8Array(await readFile(path));
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    expect((8 + n) % 8).toBe(0);
    const json = Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8');
    expect(json[0]).toBe('{');
    expect(json.trimEnd().endsWith('}')).toBe(true);
    expect(/^[^ ]*\}( *)$/.test(json.replace(/"[^"]*"/g, '""'))).toBe(true); // padding is spaces only, after the JSON
    const header = JSON.parse(json) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    expect(header.__metadata__).toEqual({ format: 'pt' });
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    expect(names).toEqual(['a.bias', 'h', 'm.ids', 'z.weight']);
    let at = 0;
    for (const name of names) {
      const [begin, end] = header[name]!.data_offsets;
      expect(begin).toBe(at);
      at = end;
    }
    expect(8 + n + at).toBe(bytes.length);

    const back = await readSafetensorsForTests(path);
    expect(back.headerLength).toBe(n);
    for (const t of tensors) {
      const r = back.tensors.get(t.name)!;
      expect(r.dtype).toBe(t.dtype);
      expect(r.shape).toEqual(t.shape);
      expect(Buffer.from(r.data).equals(Buffer.from(t.data))).toBe(true);
    }
  });

  it('refuses a data length that disagrees with the shape', async () => {
    await expect(writeSafetensors(join(tmp, 'bad.safetensors'), [{ name: 'w', dtype: 'F32', shape: [3], data: new Uint8Array(8) }])).rejects.toThrow(/w: 8 bytes/);
  });
});

describe('writeTinyCheckpoint', () => {
  it('shards: every tensor in exactly one shard, the index names each once, values read back exactly', async () => {
    const ckpt = await writeTinyCheckpoint({ family: 'qwen2', dir: join(tmp, 'sharded'), shards: 3, dtype: 'F16', seed: 4 });
    const files = (await readdir(ckpt.dir)).sort();
    expect(files).toEqual([
      'config.json',
      'generation_config.json',
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const index = JSON.parse(await readFile(join(ckpt.dir, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    const seen = new Map<string, string>();
    let bytes = 0;
    for (const f of files.filter((x) => x.startsWith('model-'))) {
      const st = await readSafetensorsForTests(join(ckpt.dir, f));
      expect(st.tensors.size).toBeGreaterThan(0);
      expect(st.metadata).toEqual({ format: 'pt' });
      for (const [name, t] of st.tensors) {
        expect(seen.has(name)).toBe(false);
        seen.set(name, f);
        bytes += t.data.length;
      }
    }
    expect(Object.fromEntries(seen)).toEqual(index.weight_map);
    expect([...seen.keys()].sort()).toEqual([...ckpt.tensors.keys()].sort());
    expect(index.metadata.total_size).toBe(bytes);
    const back = await readCheckpointForTests(ckpt.dir);
    for (const [name, t] of ckpt.tensors) {
      expect(back.tensors.get(name)!.shape).toEqual(t.shape);
      expect(Buffer.from(back.tensors.get(name)!.values.buffer).equals(Buffer.from(t.values.buffer))).toBe(true);
    }
    for (const v of ckpt.tensors.get('model.layers.0.self_attn.k_proj.bias')!.values) expect(roundToDtype(v, 'F16')).toBe(v);
  });

  it('writes each family as transformers does, and random values are stored-dtype exact and deterministic', async () => {
    const shapes = async (family: HfFamily) => writeTinyCheckpoint({ family, dir: join(tmp, `fam-${family}`) });
    const l2 = await shapes('llama');
    expect(l2.config).toMatchObject({ architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'bfloat16', attention_bias: false, rope_scaling: null, tie_word_embeddings: false });
    expect('head_dim' in l2.config).toBe(false);
    const l3 = await shapes('llama3');
    expect(l3.config).toMatchObject({ model_type: 'llama', head_dim: 16, tie_word_embeddings: true, rope_scaling: { rope_type: 'llama3', factor: 8 } });
    expect(l3.tensors.has('lm_head.weight')).toBe(false);
    const mi = await shapes('mistral');
    expect(mi.config).toMatchObject({ architectures: ['MistralForCausalLM'], sliding_window: null });
    const q2 = await shapes('qwen2');
    expect(q2.config).toMatchObject({ architectures: ['Qwen2ForCausalLM'], use_sliding_window: false, max_window_layers: 4 });
    expect(q2.tensors.get('model.layers.3.self_attn.v_proj.bias')!.shape).toEqual([32]);
    expect(q2.tensors.has('model.layers.0.self_attn.o_proj.bias')).toBe(false);
    const q3 = await shapes('qwen3');
    expect(q3.config).toMatchObject({ architectures: ['Qwen3ForCausalLM'], head_dim: 32, hidden_size: 64, num_attention_heads: 4 });
    expect(q3.tensors.get('model.layers.0.self_attn.q_norm.weight')!.shape).toEqual([32]);
    expect(q3.tensors.get('model.layers.0.self_attn.q_proj.weight')!.shape).toEqual([128, 64]);
    expect(q3.tensors.get('model.layers.0.self_attn.o_proj.weight')!.shape).toEqual([64, 128]);
    const config = JSON.parse(await readFile(join(q3.dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(config)).toEqual(Object.keys(config).sort());
    for (const v of q3.tensors.get('model.layers.1.mlp.up_proj.weight')!.values) expect(roundToDtype(v, 'BF16')).toBe(v);
    const norm = q3.tensors.get('model.norm.weight')!.values;
    expect(Math.min(...norm)).toBeGreaterThan(0.69);
    expect(Math.max(...norm) - Math.min(...norm)).toBeGreaterThan(0.2);
    const again = await writeTinyCheckpoint({ family: 'qwen3', dir: join(tmp, 'fam-qwen3-again') });
    expect(again.tensors.get('model.layers.2.mlp.down_proj.weight')!.values).toEqual(q3.tensors.get('model.layers.2.mlp.down_proj.weight')!.values);
  });

  it('copies a real tokenizer and sizes the vocabulary and eos ids to it', async () => {
    const ckpt = await writeTinyCheckpoint({ family: 'llama3', dir: join(tmp, 'tok'), tokenizer: 'llama3', numLayers: 1, eosTokenIds: [128001, 128008, 128009] });
    expect(ckpt.config).toMatchObject({ vocab_size: 128256, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009] });
    const gen = JSON.parse(await readFile(join(ckpt.dir, 'generation_config.json'), 'utf8')) as Record<string, unknown>;
    expect(gen).toMatchObject({ bos_token_id: 128000, eos_token_id: [128001, 128008, 128009] });
    expect((await stat(join(ckpt.dir, 'tokenizer.json'))).size).toBeGreaterThan(1_000_000);
    await stat(join(ckpt.dir, 'tokenizer_config.json'));
    await expect(writeTinyCheckpoint({ family: 'qwen3', dir: join(tmp, 'tok2'), tokenizer: 'qwen3', vocabSize: 1000 })).rejects.toThrow(/151669/);
  });

  it.each<CheckpointDefect>(['missing-tensor', 'wrong-shape', 'truncated', 'bad-header', 'missing-shard', 'unknown-architecture', 'unknown-rope'])(
    'corruptCheckpoint %s breaks it so that a reader refuses, naming what expect says',
    async (how) => {
      const dir = join(tmp, `bad-${how}`);
      await writeTinyCheckpoint({ family: 'llama3', dir, shards: 2 });
      await loadReferenceModel(dir); // sound before
      const { expect: why } = await corruptCheckpoint(dir, how);
      await expect(loadReferenceModel(dir)).rejects.toThrow(why);
    },
  );
});

describe('llama3 rope scaling', () => {
  it('matches hand-derived inverse frequencies in each band', () => {
    // head_dim 16, theta 500000: f_j = 500000^(-j/8). Original 256 positions, low 1, high 4, factor 8:
    // wavelengths below 256/4 = 64 keep f, above 256/1 = 256 get f/8, in between are blended.
    // j=0: f = 1, wavelen 2π ≈ 6.28 < 64: kept, 1.
    // j=1: f = 500000^(-1/8) ≈ 0.193923, wavelen ≈ 32.40 < 64: kept.
    // j=2: f = 1/500000^(1/4) = 1/26.5915 ≈ 0.0376060, wavelen ≈ 167.079: s = (256/167.079 - 1)/3
    //      ≈ 0.177403, f·((1 - s)/8 + s) ≈ 0.0376060 · 0.280228 ≈ 0.0105382.
    // j=4: f = 1/sqrt(500000) ≈ 0.00141421, wavelen ≈ 4443 > 256: f/8 ≈ 0.000176777.
    const inv = ropeInvFreq({ headDim: 16, ropeTheta: 500000, llama3Rope: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 256 } });
    expect(inv.length).toBe(8);
    expect(inv[0]).toBe(1);
    expect(inv[1]).toBeCloseTo(0.193923, 6);
    expect(inv[2]).toBeCloseTo(0.0105382, 7);
    expect(inv[4]).toBeCloseTo(0.000176777, 9);
    const plain = ropeInvFreq({ headDim: 16, ropeTheta: 500000, llama3Rope: null });
    expect(plain[2]).toBeCloseTo(0.037606, 6);
  });
});

describe('referenceForward', () => {
  const models = new Map<string, ReferenceModel>();
  const model = async (family: HfFamily, extra: { tie?: boolean } = {}): Promise<ReferenceModel> => {
    const key = extra.tie === undefined ? family : `${family}-tie-${extra.tie}`;
    if (!models.has(key)) {
      const ckpt = await writeTinyCheckpoint({ family, dir: join(tmp, `ref-${key}`), seed: 1, tieWordEmbeddings: extra.tie });
      models.set(key, referenceModel(ckpt.config, ckpt.tensors));
    }
    return models.get(key)!;
  };

  it.each<HfFamily>(['llama', 'llama3', 'mistral', 'qwen2', 'qwen3'])('%s: 16 tokens in well under a second, finite, same from the folder', async (family) => {
    const ref = await model(family);
    const started = performance.now();
    const out = referenceForward(ref, PROMPT);
    expect(performance.now() - started).toBeLessThan(1000); // ~20-100 ms measured
    expect(out.logits.length).toBe(16);
    expect(out.hidden.length).toBe(16);
    expect(out.logits[15]!.length).toBe(512);
    for (const row of out.logits) for (const v of row) expect(Number.isFinite(v)).toBe(true);
    const fromDir = referenceForward(await loadReferenceModel(join(tmp, `ref-${family}`)), PROMPT);
    expect(maxAbsDiff(fromDir.logits[15]!, out.logits[15]!)).toBe(0);
  });

  it('is causal: logits up to t ignore the tokens after t, and the changed position moves', async () => {
    const ref = await model('qwen3');
    const a = referenceForward(ref, PROMPT);
    const changed = [...PROMPT];
    changed[9] = 401;
    const b = referenceForward(ref, changed);
    for (let t = 0; t < 9; t++) expect(maxAbsDiff(a.logits[t]!, b.logits[t]!)).toBe(0);
    for (let t = 9; t < 16; t++) expect(maxAbsDiff(a.logits[t]!, b.logits[t]!)).toBeGreaterThan(1e-3);
  });

  it('applies rotary positions: with one layer, reordering the prefix moves the last logits', async () => {
    // One layer without rotation attends over the prefix as a set: the last position could not see
    // the order. With it, the order changes the scores and so the logits.
    const ckpt = await writeTinyCheckpoint({ family: 'llama3', dir: join(tmp, 'ref-one-layer'), numLayers: 1, seed: 2 });
    const ref = referenceModel(ckpt.config, ckpt.tensors);
    const a = referenceForward(ref, [5, 6, 7, 8, 9], { logits: 'last' }).logits[0]!;
    const b = referenceForward(ref, [7, 5, 8, 6, 9], { logits: 'last' }).logits[0]!;
    expect(maxAbsDiff(a, b)).toBeGreaterThan(1e-3);
    const still = referenceForward({ ...ref, invFreq: new Float64Array(ref.invFreq.length) }, [7, 5, 8, 6, 9], { logits: 'last' }).logits[0]!;
    expect(maxAbsDiff(referenceForward({ ...ref, invFreq: new Float64Array(ref.invFreq.length) }, [5, 6, 7, 8, 9], { logits: 'last' }).logits[0]!, still)).toBeLessThan(1e-9);
  });

  it('rotates dimension j with j + head_dim/2 (rotate_half), by position × inv_freq', () => {
    const x = new Float64Array([0, 0, 0, 0, 1, 0, 0, 0, 2, 0]); // a head of 8 starting at 2: x[2 + 2] = 1, x[2 + 6] = 2
    rotateHalf(x, 2, 8, 3, new Float64Array([1, 1, 0.5, 1]));
    // pair (2, 6) of the head, angle 3 × 0.5: [1, 2] -> [cos·1 - sin·2, cos·2 + sin·1]
    const [c, s] = [Math.cos(1.5), Math.sin(1.5)];
    expect([...x].map((v) => +v.toFixed(12))).toEqual([0, 0, 0, 0, c - 2 * s, 0, 0, 0, 2 * c + s, 0].map((v) => +v.toFixed(12)));
  });

  it('query heads 0,1 read kv head 0 and 2,3 read kv head 1 (repeat_kv), not kv head h mod 2', async () => {
    // Zero kv head 1's values and the o_proj columns of query heads 0 and 1: with repeat_kv's
    // mapping no head contributes, so the logits equal those with all of v_proj zero.
    const ref = await model('llama');
    const zeroed = (zeroAllV: boolean): ReferenceModel => {
      const tensors = new Map(ref.tensors);
      for (let l = 0; l < ref.dims.layers; l++) {
        const v = tensors.get(`model.layers.${l}.self_attn.v_proj.weight`)!;
        const vv = v.values.slice();
        vv.fill(0, zeroAllV ? 0 : 16 * 64, 32 * 64); // rows 16..31 = kv head 1
        tensors.set(`model.layers.${l}.self_attn.v_proj.weight`, { shape: v.shape, values: vv });
        const o = tensors.get(`model.layers.${l}.self_attn.o_proj.weight`)!;
        const ov = o.values.slice();
        for (let r = 0; r < 64; r++) ov.fill(0, r * 64, r * 64 + 32); // input columns 0..31 = query heads 0, 1
        tensors.set(`model.layers.${l}.self_attn.o_proj.weight`, { shape: o.shape, values: ov });
      }
      return { ...ref, tensors };
    };
    const a = referenceForward(zeroed(false), PROMPT).logits[15]!;
    expect(maxAbsDiff(a, referenceForward(zeroed(true), PROMPT).logits[15]!)).toBeLessThan(1e-12);
    expect(maxAbsDiff(a, referenceForward(ref, PROMPT).logits[15]!)).toBeGreaterThan(1e-2); // the zeroing mattered
  });

  it('tied embeddings read embed_tokens; untied read lm_head', async () => {
    for (const [family, tie] of [['llama3', true], ['qwen3', true], ['llama', false]] as const) {
      const ref = await model(family, { tie });
      const out = referenceForward(ref, PROMPT.slice(0, 4));
      const head = ref.tensors.get(tie ? 'model.embed_tokens.weight' : 'lm_head.weight')!.values;
      expect(ref.tensors.has('lm_head.weight')).toBe(!tie);
      for (const j of [0, 77, 511]) expect(out.logits[3]![j]).toBeCloseTo(dot(out.hidden[3]!, head, j * 64), 9);
      if (!tie) {
        const embed = ref.tensors.get('model.embed_tokens.weight')!.values;
        expect(Math.abs(out.logits[3]![77]! - dot(out.hidden[3]!, embed, 77 * 64))).toBeGreaterThan(1e-3);
      }
    }
  });

  /** The same model with rows [from, from + count) of every layer's `proj` weight scaled by `k`. */
  const scaled = (ref: ReferenceModel, proj: string, from: number, count: number, k: number): ReferenceModel => {
    const tensors = new Map(ref.tensors);
    for (let l = 0; l < ref.dims.layers; l++) {
      const name = `model.layers.${l}.self_attn.${proj}.weight`;
      const t = tensors.get(name)!;
      const values = t.values.slice();
      const cols = t.shape[1]!;
      for (let i = from * cols; i < (from + count) * cols; i++) values[i]! *= k;
      tensors.set(name, { shape: t.shape, values });
    }
    return { ...ref, tensors };
  };

  it('qwen3 normalizes q and k per head: scaling one head of q_proj changes nothing, unlike llama', async () => {
    const q3 = await model('qwen3');
    const base = referenceForward(q3, PROMPT).logits[15]!;
    // Head 1 of q (rows 32..63) ×3: per-head RMSNorm undoes it (up to eps); a norm over all heads would not.
    expect(maxAbsDiff(referenceForward(scaled(q3, 'q_proj', 32, 32, 3), PROMPT).logits[15]!, base)).toBeLessThan(1e-4);
    expect(maxAbsDiff(referenceForward(scaled(q3, 'k_proj', 0, 32, 0.25), PROMPT).logits[15]!, base)).toBeLessThan(1e-4);
    const llama = await model('llama');
    const llamaBase = referenceForward(llama, PROMPT).logits[15]!;
    expect(maxAbsDiff(referenceForward(scaled(llama, 'q_proj', 16, 16, 3), PROMPT).logits[15]!, llamaBase)).toBeGreaterThan(1e-2);
  });

  it('qwen3 multiplies by the q_norm/k_norm weights: all-ones weights give other logits', async () => {
    const q3 = await model('qwen3');
    const tensors = new Map(q3.tensors);
    for (let l = 0; l < q3.dims.layers; l++) {
      for (const n of ['q_norm', 'k_norm']) tensors.set(`model.layers.${l}.self_attn.${n}.weight`, { shape: [32], values: new Float64Array(32).fill(1) });
    }
    const ones = referenceForward({ ...q3, tensors }, PROMPT).logits[15]!;
    expect(maxAbsDiff(ones, referenceForward(q3, PROMPT).logits[15]!)).toBeGreaterThan(1e-2);
  });

  it('refuses a missing tensor the config implies, naming it', async () => {
    const ckpt = await writeTinyCheckpoint({ family: 'qwen2', dir: join(tmp, 'ref-refuse'), numLayers: 3 });
    const tensors = new Map(ckpt.tensors);
    tensors.delete('model.layers.2.self_attn.k_proj.bias');
    expect(() => referenceModel(ckpt.config, tensors)).toThrow(/model\.layers\.2\.self_attn\.k_proj\.bias missing/);
    tensors.set('model.layers.2.self_attn.k_proj.bias', { shape: [31], values: new Float64Array(31) });
    expect(() => referenceModel(ckpt.config, tensors)).toThrow(/k_proj\.bias is \[31\], config implies \[32\]/);
  });

  it('greedyGenerate is argmax of the full recompute at each step, ties to the lowest id', async () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
    expect(argmax([-1, -1])).toBe(0);
    const ref = await model('mistral');
    const prompt = PROMPT.slice(0, 5);
    const got = greedyGenerate(ref, prompt, 6);
    expect(got.length).toBe(6);
    const seq = [...prompt];
    for (const next of got) {
      expect(next).toBe(argmax(referenceForward(ref, seq).logits.at(-1)!));
      seq.push(next);
    }
  });
});
