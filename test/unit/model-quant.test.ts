import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { attr, DataType, OnnxGraph } from '../../pool-agent/model/onnx-graph.js';
import { dequantizeMatrix, quantizeMatrix, quantizedBytes, type WeightQuantBits } from '../../pool-agent/model/quant.js';
import { mulberry32 } from '../support/mulberry32.js';

/** Gaussian [K, N] values (Box-Muller), with a few outliers as trained weights have. */
function matrix(K: number, N: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const w = new Float32Array(K * N);
  for (let i = 0; i < w.length; i++) w[i] = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()) * 0.05;
  for (let i = 0; i < w.length; i += 97) w[i] = w[i]! * 8;
  return w;
}

/**
 * MatMulNBits' layout as its spec words it, written apart from quant.ts: element e of a packed run
 * of b-bit values sits at bit e*b, least significant bits first.
 */
function readBits(bytes: Uint8Array, byteOffset: number, element: number, bits: number): number {
  const bit = element * bits;
  let v = 0;
  for (let i = 0; i < bits; i++) {
    const at = bit + i;
    v |= ((bytes[byteOffset + (at >> 3)]! >> (at & 7)) & 1) << i;
  }
  return v;
}

/** Reference dequantization: W[k, n] from codes [N, blocks, blockSize*bits/8], scales [N*blocks], zero points [N, ceil(blocks*bits/8)]. */
function referenceDequantize(q: { K: number; N: number; bits: number; blockSize: number; codes: Uint8Array; scales: Float32Array; zeroPoints?: Uint8Array }): Float64Array {
  const blocks = Math.ceil(q.K / q.blockSize);
  const blobBytes = (q.blockSize * q.bits) / 8;
  const zpColumnBytes = Math.ceil((blocks * q.bits) / 8);
  const out = new Float64Array(q.K * q.N);
  for (let n = 0; n < q.N; n++) {
    for (let k = 0; k < q.K; k++) {
      const b = Math.floor(k / q.blockSize);
      const code = readBits(q.codes, (n * blocks + b) * blobBytes, k % q.blockSize, q.bits);
      const zp = q.zeroPoints ? readBits(q.zeroPoints, n * zpColumnBytes, b, q.bits) : 2 ** (q.bits - 1);
      out[k * q.N + n] = (code - zp) * q.scales[n * blocks + b]!;
    }
  }
  return out;
}

const cases: { bits: WeightQuantBits; blockSize: number; symmetric: boolean; K: number }[] = [];
for (const bits of [4, 8] as const) for (const blockSize of [16, 32, 64, 128]) for (const symmetric of [false, true]) for (const K of [256, 200]) cases.push({ bits, blockSize, symmetric, K });

describe('block-wise weight quantization (MatMulNBits layout)', () => {
  it('packs int4 codes low nibble first, pads a short block with its zero point, and rounds as documented', () => {
    // One column, K = 3 in a block of 16: range [-1, 1] over 15 steps; the float32 step is a hair
    // above 2/15, so 1 / step = 7.4999997 and the zero point is 7.
    const q = quantizeMatrix(Float32Array.of(0, 1, -1), 3, 1, { bits: 4, blockSize: 16 });
    expect(q.blocks).toBe(1);
    expect(q.scales[0]).toBe(Math.fround(2 / 15));
    expect([...q.zeroPoints!]).toEqual([0x07]);
    // 0 -> 7; 1 -> 7 + 7 = 14; -1 -> -7 + 7 = 0; the 13 padding codes are the zero point.
    expect([...q.codes]).toEqual([0xe7, 0x70, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77]);
    const back = dequantizeMatrix(q);
    expect(back[0]).toBe(0);
    expect(Math.abs(back[1]! - 1)).toBeLessThanOrEqual(q.scales[0]! / 2 + 1e-7);
  });

  it.each(cases)('int$bits, block $blockSize, symmetric $symmetric, K $K: codes read back as the spec says, every weight within half a step', ({ bits, blockSize, symmetric, K }) => {
    const N = 24;
    const w = matrix(K, N, K * 31 + bits + blockSize);
    const q = quantizeMatrix(w, K, N, { bits, blockSize, symmetric });
    const blocks = Math.ceil(K / blockSize);
    expect(q.blocks).toBe(blocks);
    expect(q.codes.byteLength).toBe((N * blocks * blockSize * bits) / 8);
    expect(q.scales.length).toBe(N * blocks);
    expect(q.zeroPoints?.byteLength).toBe(symmetric ? undefined : N * Math.ceil((blocks * bits) / 8));
    expect(quantizedBytes(q)).toBe(q.codes.byteLength + 4 * N * blocks + (q.zeroPoints?.byteLength ?? 0));
    const ours = dequantizeMatrix(q);
    const ref = referenceDequantize(q);
    let worst = 0;
    for (let k = 0; k < K; k++) {
      for (let n = 0; n < N; n++) {
        const i = k * N + n;
        expect(ours[i]).toBeCloseTo(ref[i]!, 6);
        const step = q.scales[n * blocks + Math.floor(k / blockSize)]!;
        worst = Math.max(worst, Math.abs(ref[i]! - w[i]!) / step);
      }
    }
    expect(worst).toBeLessThanOrEqual(0.5 + 1e-4);
    // The short last block's scale covers only its own weights.
    if (K % blockSize !== 0) {
      const k0 = (blocks - 1) * blockSize;
      let lo = 0;
      let hi = 0;
      for (let k = k0; k < K; k++) (lo = Math.min(lo, w[k * N]!)), (hi = Math.max(hi, w[k * N]!));
      const expected = symmetric ? Math.max(-lo, hi) / (2 ** (bits - 1) - 1) : (hi - lo) / (2 ** bits - 1);
      expect(q.scales[blocks - 1]).toBeCloseTo(expected, 7);
    }
  });

  it('keeps zero weights and all-zero blocks exactly zero', () => {
    const w = new Float32Array(64 * 4);
    w[5] = 0.3;
    for (const symmetric of [false, true]) {
      const back = dequantizeMatrix(quantizeMatrix(w, 64, 4, { bits: 4, blockSize: 32, symmetric }));
      for (let i = 0; i < w.length; i++) if (w[i] === 0) expect(back[i]).toBe(0);
    }
  });

  it('rejects what MatMulNBits cannot take', () => {
    const w = new Float32Array(64);
    expect(() => quantizeMatrix(w, 8, 8, { bits: 4, blockSize: 48 })).toThrow(/power of two/);
    expect(() => quantizeMatrix(w, 8, 8, { bits: 4, blockSize: 8 })).toThrow(/at least 16/);
    expect(() => quantizeMatrix(w, 8, 8, { bits: 3 as 4, blockSize: 16 })).toThrow(/bits/);
    expect(() => quantizeMatrix(w, 8, 9, { bits: 4, blockSize: 16 })).toThrow(/values/);
  });
});

describe("onnxruntime-node's CPU MatMulNBits", () => {
  /** x [1, 3, K] times the quantized matrix, run by onnxruntime. */
  async function run(q: ReturnType<typeof quantizeMatrix>, x: Float32Array, accuracyLevel?: number): Promise<Float32Array> {
    const g = new OnnxGraph('matmul-nbits');
    const a = g.input('a', DataType.FLOAT, [1, 3, q.K]);
    const inputs = [
      a,
      g.initializer({ name: 'B', dataType: DataType.UINT8, dims: [q.N, q.blocks, (q.blockSize * q.bits) / 8], raw: q.codes }),
      g.initializer({ name: 'scales', dataType: DataType.FLOAT, dims: [q.N * q.blocks], raw: new Uint8Array(q.scales.buffer) }),
    ];
    if (q.zeroPoints) inputs.push(g.initializer({ name: 'zp', dataType: DataType.UINT8, dims: [q.zeroPoints.byteLength], raw: q.zeroPoints }));
    const attrs = { K: attr.int(q.K), N: attr.int(q.N), bits: attr.int(q.bits), block_size: attr.int(q.blockSize), ...(accuracyLevel !== undefined ? { accuracy_level: attr.int(accuracyLevel) } : {}) };
    g.output(g.msOp('MatMulNBits', 'mm', inputs, attrs), DataType.FLOAT, [1, 3, q.N], 'y');
    const session = await ort.InferenceSession.create(g.toModel().finish(), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
    try {
      return (await session.run({ a: new ort.Tensor('float32', x, [1, 3, q.K]) })).y!.data as Float32Array;
    } finally {
      await session.release();
    }
  }

  function reference(q: Parameters<typeof referenceDequantize>[0], x: Float32Array): Float64Array {
    const w = referenceDequantize(q);
    const out = new Float64Array(3 * q.N);
    for (let t = 0; t < 3; t++) for (let n = 0; n < q.N; n++) for (let k = 0; k < q.K; k++) out[t * q.N + n]! += x[t * q.K + k]! * w[k * q.N + n]!;
    return out;
  }

  const maxRelError = (got: Float32Array, want: Float64Array): number => {
    let err = 0;
    let scale = 0;
    for (let i = 0; i < want.length; i++) (err = Math.max(err, Math.abs(got[i]! - want[i]!))), (scale = Math.max(scale, Math.abs(want[i]!)));
    return err / scale;
  };

  it.each(cases)('runs int$bits, block $blockSize, symmetric $symmetric, K $K as the reference dequantization times x', async ({ bits, blockSize, symmetric, K }) => {
    const N = 40;
    const q = quantizeMatrix(matrix(K, N, 5 + K + bits), K, N, { bits, blockSize, symmetric });
    const x = matrix(3, K, 9).map((v) => v * 20);
    expect(maxRelError(await run(q, x), reference(q, x))).toBeLessThan(1e-5);
  });

  it('with accuracy_level 4 (int8 activations, the formats’ default) stays within a few thousandths', async () => {
    for (const bits of [4, 8] as const) {
      const q = quantizeMatrix(matrix(256, 40, bits), 256, 40, { bits, blockSize: 32 });
      const x = matrix(3, 256, 11).map((v) => v * 20);
      const err = maxRelError(await run(q, x, 4), reference(q, x));
      expect(err).toBeGreaterThan(0); // the activations are quantized: not the float result
      expect(err).toBeLessThan(1e-2);
    }
  });
});
