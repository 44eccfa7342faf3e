import { describe, expect, it } from 'vitest';
import {
  commitHidden,
  commitmentBytes,
  commitmentValues,
  compareHidden,
  decodeCommitment,
  maxRowsPerCommitment,
  MAX_COMMITMENT_CHARS,
  tolerancesFor,
  topKIndices,
} from '../../protocol/commitment.js';
import { mulberry32 } from '../support/mulberry32.js';

function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

/**
 * A stand-in for the last layer + final RMSNorm, computed in float32 with a chosen summation order:
 * 'forward', 'reverse' or 'pairwise' (as different kernels / thread splits would do).
 */
function finalRows(seed: number, inputs: Float32Array, numRows: number, inDim: number, hidden: number, order: 'forward' | 'reverse' | 'pairwise'): Float32Array {
  const r = mulberry32(seed);
  const w = new Float32Array(hidden * inDim);
  for (let i = 0; i < w.length; i++) w[i] = gaussian(r) / Math.sqrt(inDim);
  const out = new Float32Array(numRows * hidden);
  const f = Math.fround;
  const prod = new Float32Array(inDim);
  for (let row = 0; row < numRows; row++) {
    for (let o = 0; o < hidden; o++) {
      for (let i = 0; i < inDim; i++) prod[i] = f(w[o * inDim + i]! * inputs[row * inDim + i]!);
      let acc = 0;
      if (order === 'forward') for (let i = 0; i < inDim; i++) acc = f(acc + prod[i]!);
      else if (order === 'reverse') for (let i = inDim - 1; i >= 0; i--) acc = f(acc + prod[i]!);
      else acc = pairwiseSum(prod, 0, inDim);
      out[row * hidden + o] = acc;
    }
    let ss = 0;
    for (let o = 0; o < hidden; o++) ss = f(ss + out[row * hidden + o]! ** 2);
    const inv = f(1 / Math.sqrt(ss / hidden + 1e-6));
    for (let o = 0; o < hidden; o++) out[row * hidden + o] = f(out[row * hidden + o]! * inv);
  }
  return out;
}

function pairwiseSum(a: Float32Array, from: number, to: number): number {
  if (to - from <= 4) {
    let acc = 0;
    for (let i = from; i < to; i++) acc = Math.fround(acc + a[i]!);
    return acc;
  }
  const mid = (from + to) >> 1;
  return Math.fround(pairwiseSum(a, from, mid) + pairwiseSum(a, mid, to));
}

function inputs(seed: number, numRows: number, inDim: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: numRows * inDim }, () => gaussian(r));
}

const H = 256;
const D = 384;
const N = 12;
const fp32 = tolerancesFor('float32');

describe('commitHidden', () => {
  it('is compact: 10 + 5k bytes per row, 80 bytes per token at the default k = 16', () => {
    const rows = finalRows(1, inputs(2, N, D), N, D, H, 'forward');
    const c = commitHidden(rows, N, H);
    expect(c.length).toBe(Math.ceil((commitmentBytes(N) * 4) / 3));
    expect(commitmentBytes(1)).toBe(90);
    expect((commitmentBytes(N) - 10) / N).toBe(80);
    const d = decodeCommitment(c);
    expect(d.ok).toBe(true);
  });

  it('keeps the k largest magnitudes of each row, in descending order, with values within 2^-15 relative', () => {
    const rows = finalRows(1, inputs(2, N, D), N, D, H, 'forward');
    const d = decodeCommitment(commitHidden(rows, N, H, { k: 8 }));
    if (!d.ok) throw new Error(d.detail);
    const vals = commitmentValues(d.commitment);
    for (let r = 0; r < N; r++) {
      const row = Array.from(rows.subarray(r * H, (r + 1) * H));
      const expected = row.map((v, i) => [Math.abs(v), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, 8).map((x) => x[1]);
      expect(Array.from(d.commitment.indices.subarray(r * 8, r * 8 + 8))).toEqual(expected);
      for (let j = 0; j < 8; j++) {
        const exact = row[expected[j]!]!;
        expect(Math.abs(vals[r * 8 + j]! - exact) / Math.abs(exact)).toBeLessThanOrEqual(2 ** -15);
      }
    }
  });

  it('topKIndices handles ties, negatives and NaN', () => {
    const row = new Float32Array([1, -5, NaN, 5, 0.5, -7]);
    expect(topKIndices(row, 0, row.length, 3)).toEqual([5, 1, 3]);
    expect(topKIndices(row, 0, row.length, 6)).toEqual([5, 1, 3, 0, 4, 2]);
  });

  it('rejects bad arguments with RangeError', () => {
    const rows = new Float32Array(H);
    expect(() => commitHidden(rows, 2, H)).toThrow(RangeError);
    expect(() => commitHidden(rows, 1, H, { k: 0 })).toThrow(RangeError);
    expect(() => commitHidden(rows, 1, 8, { k: 16 })).toThrow(RangeError);
    expect(() => commitHidden(new Float32Array(70_000), 1, 70_000)).toThrow(RangeError);
    expect(() => commitHidden(new Float32Array(H * (maxRowsPerCommitment() + 1)), maxRowsPerCommitment() + 1, H)).toThrow(RangeError);
  });

  it('the largest commitment fits the attestation bound', () => {
    const n = maxRowsPerCommitment();
    const rows = finalRows(3, inputs(4, n, 16), n, 16, 32, 'forward');
    expect(commitHidden(rows, n, 32).length).toBeLessThanOrEqual(MAX_COMMITMENT_CHARS);
  });
});

describe('compareHidden', () => {
  const x = inputs(2, N, D);
  const honest = finalRows(1, x, N, D, H, 'forward');
  const commitment = commitHidden(honest, N, H);

  it('passes the identical rows with zero error', () => {
    const r = compareHidden(commitment, honest, N, H, fp32);
    expect(r).toMatchObject({ ok: true, maxExpMismatch: 0, mantissaErrMean: 0, mantissaErrMedian: 0, indexOverlap: 1, failedRow: -1 });
  });

  it('passes rows recomputed with another summation order', () => {
    for (const order of ['reverse', 'pairwise'] as const) {
      const other = finalRows(1, x, N, D, H, order);
      expect(Array.from(other)).not.toEqual(Array.from(honest));
      const r = compareHidden(commitment, other, N, H, fp32);
      expect(r.ok, r.detail).toBe(true);
      expect(r.indexOverlap).toBeGreaterThanOrEqual(0.9);
    }
  });

  it('passes rows with 1e-6 relative noise', () => {
    const r0 = mulberry32(9);
    const noisy = honest.map((v) => v * (1 + (r0() * 2 - 1) * 1e-6));
    const r = compareHidden(commitment, noisy, N, H, fp32);
    expect(r.ok, r.detail).toBe(true);
    expect(r.mantissaErrMean).toBeLessThanOrEqual(1);
  });

  it('fails rows of another model (other weights seed)', () => {
    const other = finalRows(77, x, N, D, H, 'forward');
    const r = compareHidden(commitment, other, N, H, fp32);
    expect(r.ok).toBe(false);
    expect(r.failedRow).toBe(0);
    expect(r.indexOverlap).toBeLessThan(0.5);
  });

  it('fails rows of another input (altered prompt) on the same model', () => {
    const other = finalRows(1, inputs(3, N, D), N, D, H, 'forward');
    expect(compareHidden(commitment, other, N, H, fp32).ok).toBe(false);
  });

  it('fails rows with precision-level error (1e-3 relative, as fp16 would give)', () => {
    const r0 = mulberry32(10);
    const coarse = honest.map((v) => v * (1 + (r0() * 2 - 1) * 2e-3));
    const r = compareHidden(commitment, coarse, N, H, fp32);
    expect(r.ok).toBe(false);
    expect(r.mantissaErrMean).toBeGreaterThan(fp32.maxMantissaErrMean);
    // the same error is within the looser fp16 tolerances
    expect(compareHidden(commitment, coarse, N, H, tolerancesFor('float16')).ok).toBe(true);
  });

  it('catches one tampered row among honest ones and names it', () => {
    const mixed = Float32Array.from(honest);
    const other = finalRows(77, x, N, D, H, 'forward');
    mixed.set(other.subarray(5 * H, 6 * H), 5 * H);
    const r = compareHidden(commitment, mixed, N, H, fp32);
    expect(r.ok).toBe(false);
    expect(r.failedRow).toBe(5);
    expect(r.detail).toMatch(/^row 5:/);
  });

  it('fails on a shape mismatch', () => {
    expect(compareHidden(commitment, honest, N - 1, H).ok).toBe(false);
    expect(compareHidden(commitment, honest.subarray(0, (N - 1) * H), N, H).ok).toBe(false);
    const h2 = finalRows(1, x, N, D, 128, 'forward');
    expect(compareHidden(commitment, h2, N, 128).detail).toMatch(/hiddenSize/);
  });
});
