import { fromBase64Url, toBase64Url } from './bytes.js';

/**
 * TOPLOC-style locality-sensitive commitments to final hidden states (Ong et al., 2025,
 * arXiv 2501.16007). For every row (one row per generated token: the final-norm hidden state of
 * the position whose logits produced that token) the agent keeps the k entries of largest
 * magnitude: their indices and their values rounded to 24 bits (fp32 sign, 8-bit exponent, top 15
 * mantissa bits). A checker that re-runs the same model recomputes the rows and compares:
 * index-set overlap with its own top-k, exponent mismatches, and the mantissa difference (in units
 * of 2^-15) at the committed indices. Float noise from other devices, thread counts or summation
 * orders moves values by ~1e-6..1e-5 relative (well under a unit); another model, seed, prompt or
 * precision moves them by orders of magnitude more.
 *
 * Binary layout (little-endian), base64url on the wire:
 *   0 magic 0x54 ('T') | 1 version 1 | 2 k | 3 value format 1 (fp32 high 24 bits)
 *   4..7 hiddenSize u32 | 8..9 numRows u16
 *   then numRows * k entries of [index u16, value 3 bytes], each row in descending magnitude.
 * Size: 10 + 5 k bytes per row (k = 16: 80 bytes per token, 107 base64url characters).
 *
 * @example
 * // agent, last hop, after forward(): one row per token of the chunk
 * const rows = out.finalHidden.subarray((out.seqLen - n) * hidden);
 * att.hiddenCommitment = commitHidden(rows, n, hidden);
 * // checker, after a teacher-forced prefill over prompt ++ generated tokens
 * const r = compareHidden(att.hiddenCommitment, recomputedRows, n, hidden, tolerancesFor('float32'));
 * if (!r.ok) openDispute(r.detail);
 */

export const COMMITMENT_MAGIC = 0x54;
export const COMMITMENT_VERSION = 1;
/** Value format 1: the high 24 bits of the fp32 value, rounded to nearest even. */
export const VALUE_FORMAT_FP32_HI24 = 1;
export const DEFAULT_TOPK = 16;
export const MAX_TOPK = 128;
/** Indices are u16. */
export const MAX_HIDDEN_SIZE = 65_536;
export const MAX_COMMITMENT_ROWS = 65_535;
/** Same bound as attestation.ts MAX_HIDDEN_COMMITMENT_CHARS (kept local: this file imports no zod). */
export const MAX_COMMITMENT_CHARS = 65_536;
const HEADER_BYTES = 10;
const ENTRY_BYTES = 5;
/** Mantissa bits kept by value format 1. */
export const MANTISSA_BITS = 15;

export interface CommitOptions {
  /** Entries kept per row (1..128, at most hiddenSize). Default 16. */
  k?: number;
}

/** Bytes of a commitment of numRows rows (before base64url: multiply by 4/3 for characters). */
export function commitmentBytes(numRows: number, k = DEFAULT_TOPK): number {
  return HEADER_BYTES + numRows * k * ENTRY_BYTES;
}

/** Largest number of rows whose commitment fits MAX_COMMITMENT_CHARS at this k. */
export function maxRowsPerCommitment(k = DEFAULT_TOPK): number {
  const maxBytes = Math.floor((MAX_COMMITMENT_CHARS * 3) / 4);
  return Math.min(MAX_COMMITMENT_ROWS, Math.floor((maxBytes - HEADER_BYTES) / (k * ENTRY_BYTES)));
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function floatBits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

/** fp32 -> high 24 bits, round to nearest even (non-finite values keep their class). */
function toHi24(x: number): number {
  const bits = floatBits(x);
  if ((bits & 0x7f800000) === 0x7f800000) {
    const hi = bits >>> 8;
    // A NaN whose payload sat in the low byte would turn into Inf: keep it a NaN.
    return (bits & 0x7fffff) !== 0 && (hi & 0x7fff) === 0 ? hi | 1 : hi;
  }
  return ((bits + 0x7f + ((bits >>> 8) & 1)) >>> 8) & 0xffffff;
}

function hi24ToFloat(v: number): number {
  u32[0] = (v << 8) >>> 0;
  return f32[0]!;
}

/** Indices of the k largest |row[i]|, by descending magnitude (ties: lower index first). NaN is never chosen before a number. */
export function topKIndices(row: Float32Array, offset: number, length: number, k: number): number[] {
  const idx: number[] = [];
  const mag: number[] = [];
  for (let i = 0; i < length; i++) {
    const v = row[offset + i]!;
    const m = v === v ? Math.abs(v) : -1;
    if (idx.length === k && m <= mag[k - 1]!) continue;
    if (idx.length < k) {
      idx.push(i);
      mag.push(m);
    }
    let pos = idx.length - 1;
    while (pos > 0 && mag[pos - 1]! < m) {
      idx[pos] = idx[pos - 1]!;
      mag[pos] = mag[pos - 1]!;
      pos--;
    }
    idx[pos] = i;
    mag[pos] = m;
  }
  return idx;
}

/**
 * Commits to `numRows` rows of `hiddenSize` floats. Throws RangeError on bad arguments (a bug in
 * the caller, not hostile input).
 */
export function commitHidden(rows: Float32Array, numRows: number, hiddenSize: number, opts: CommitOptions = {}): string {
  const k = opts.k ?? DEFAULT_TOPK;
  if (!Number.isInteger(hiddenSize) || hiddenSize < 1 || hiddenSize > MAX_HIDDEN_SIZE) throw new RangeError(`hiddenSize ${hiddenSize} outside [1, ${MAX_HIDDEN_SIZE}]`);
  if (!Number.isInteger(k) || k < 1 || k > MAX_TOPK || k > hiddenSize) throw new RangeError(`k ${k} outside [1, min(${MAX_TOPK}, hiddenSize)]`);
  if (!Number.isInteger(numRows) || numRows < 1 || numRows > maxRowsPerCommitment(k)) throw new RangeError(`numRows ${numRows} outside [1, ${maxRowsPerCommitment(k)}]`);
  if (rows.length < numRows * hiddenSize) throw new RangeError(`rows hold ${rows.length} floats, need ${numRows * hiddenSize}`);
  const out = new Uint8Array(commitmentBytes(numRows, k));
  const dv = new DataView(out.buffer);
  out[0] = COMMITMENT_MAGIC;
  out[1] = COMMITMENT_VERSION;
  out[2] = k;
  out[3] = VALUE_FORMAT_FP32_HI24;
  dv.setUint32(4, hiddenSize, true);
  dv.setUint16(8, numRows, true);
  let p = HEADER_BYTES;
  for (let r = 0; r < numRows; r++) {
    const base = r * hiddenSize;
    for (const i of topKIndices(rows, base, hiddenSize, k)) {
      const v = toHi24(rows[base + i]!);
      dv.setUint16(p, i, true);
      out[p + 2] = v & 0xff;
      out[p + 3] = (v >>> 8) & 0xff;
      out[p + 4] = (v >>> 16) & 0xff;
      p += ENTRY_BYTES;
    }
  }
  return toBase64Url(out);
}

export interface DecodedCommitment {
  k: number;
  hiddenSize: number;
  numRows: number;
  /** [numRows * k] indices. */
  indices: Uint16Array;
  /** [numRows * k] 24-bit values. */
  values: Uint32Array;
}

export type DecodeResult = { ok: true; commitment: DecodedCommitment } | { ok: false; detail: string };

/** Parses and validates a commitment; never throws. Rejects non-finite values, duplicate or out-of-range indices, any size mismatch. */
export function decodeCommitment(text: unknown): DecodeResult {
  if (typeof text !== 'string') return { ok: false, detail: 'commitment is not a string' };
  if (text.length > MAX_COMMITMENT_CHARS) return { ok: false, detail: `commitment exceeds ${MAX_COMMITMENT_CHARS} characters` };
  if (text.length % 4 === 1) return { ok: false, detail: 'commitment is not valid base64url' };
  let bytes: Uint8Array;
  try {
    bytes = fromBase64Url(text);
  } catch {
    return { ok: false, detail: 'commitment is not valid base64url' };
  }
  if (bytes.length < HEADER_BYTES) return { ok: false, detail: 'commitment shorter than its header' };
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes[0] !== COMMITMENT_MAGIC || bytes[1] !== COMMITMENT_VERSION) return { ok: false, detail: 'unknown commitment magic or version' };
  if (bytes[3] !== VALUE_FORMAT_FP32_HI24) return { ok: false, detail: `unknown value format ${bytes[3]}` };
  const k = bytes[2]!;
  const hiddenSize = dv.getUint32(4, true);
  const numRows = dv.getUint16(8, true);
  if (k < 1 || k > MAX_TOPK) return { ok: false, detail: `k ${k} outside [1, ${MAX_TOPK}]` };
  if (hiddenSize < k || hiddenSize > MAX_HIDDEN_SIZE) return { ok: false, detail: `hiddenSize ${hiddenSize} invalid for k ${k}` };
  if (numRows < 1) return { ok: false, detail: 'commitment has no rows' };
  if (bytes.length !== commitmentBytes(numRows, k)) return { ok: false, detail: `commitment is ${bytes.length} bytes, header implies ${commitmentBytes(numRows, k)}` };
  const n = numRows * k;
  const indices = new Uint16Array(n);
  const values = new Uint32Array(n);
  const seen = new Set<number>();
  let p = HEADER_BYTES;
  for (let r = 0; r < numRows; r++) {
    seen.clear();
    for (let j = 0; j < k; j++) {
      const i = dv.getUint16(p, true);
      const v = bytes[p + 2]! | (bytes[p + 3]! << 8) | (bytes[p + 4]! << 16);
      p += ENTRY_BYTES;
      if (i >= hiddenSize) return { ok: false, detail: `row ${r}: index ${i} >= hiddenSize ${hiddenSize}` };
      if (seen.has(i)) return { ok: false, detail: `row ${r}: duplicate index ${i}` };
      if (((v >>> 15) & 0xff) === 0xff) return { ok: false, detail: `row ${r}: non-finite value at index ${i}` };
      seen.add(i);
      indices[r * k + j] = i;
      values[r * k + j] = v;
    }
  }
  return { ok: true, commitment: { k, hiddenSize, numRows, indices, values } };
}

/** Committed values as floats (for evidence and debugging). */
export function commitmentValues(c: DecodedCommitment): Float32Array {
  const out = new Float32Array(c.values.length);
  for (let i = 0; i < out.length; i++) out[i] = hi24ToFloat(c.values[i]!);
  return out;
}

export interface CompareTolerances {
  /** Per row: |committed indices ∩ recomputed top-k| / k must be at least this. */
  minIndexOverlap: number;
  /** Per row: share of committed entries whose sign or exponent differs, at most this. */
  maxExpMismatch: number;
  /** Per row: mean |mantissa difference| (units of 2^-15) over exponent-matched entries, at most this. */
  maxMantissaErrMean: number;
  /** Per row: median |mantissa difference|, at most this. */
  maxMantissaErrMedian: number;
}

/**
 * Tolerances by the ticket's dtype. Measured on the tiny and small presets (docs/trust.md): honest
 * fp32 recomputation on other thread counts gives a worst-row mean mantissa error of 0.13 units
 * of 2^-15; the same model served in fp16 gives 8.8..27 per row; another model, seed, depth or
 * prompt gives hundreds to tens of thousands. fp16 tickets allow fp16 rounding between devices.
 */
export function tolerancesFor(dtype: 'float32' | 'float16'): CompareTolerances {
  return dtype === 'float32'
    ? { minIndexOverlap: 0.75, maxExpMismatch: 0.125, maxMantissaErrMean: 4, maxMantissaErrMedian: 2 }
    : { minIndexOverlap: 0.5, maxExpMismatch: 0.25, maxMantissaErrMean: 256, maxMantissaErrMedian: 128 };
}

export const DEFAULT_TOLERANCES: CompareTolerances = tolerancesFor('float32');

export interface CompareResult {
  ok: boolean;
  /** Worst row: share of entries with a sign/exponent mismatch (1 when the commitment is unusable). */
  maxExpMismatch: number;
  /** Worst row mean of |mantissa difference| in units of 2^-15 (Infinity when unusable). */
  mantissaErrMean: number;
  /** Worst row median of |mantissa difference|. */
  mantissaErrMedian: number;
  /** Worst row index-set overlap in [0, 1]. */
  indexOverlap: number;
  /** First row that broke a tolerance, or -1. */
  failedRow: number;
  detail: string;
}

function unusable(detail: string): CompareResult {
  return { ok: false, maxExpMismatch: 1, mantissaErrMean: Infinity, mantissaErrMedian: Infinity, indexOverlap: 0, failedRow: -1, detail };
}

function median(sorted: number[]): number {
  if (sorted.length === 0) return 0;
  const m = sorted.length >> 1;
  return sorted.length % 2 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
}

function validTolerances(t: CompareTolerances): boolean {
  return [t.minIndexOverlap, t.maxExpMismatch, t.maxMantissaErrMean, t.maxMantissaErrMedian].every((x) => typeof x === 'number' && x >= 0 && !Number.isNaN(x));
}

/**
 * Compares a commitment with recomputed rows. Never throws: a malformed, oversized or non-finite
 * commitment, a shape mismatch or non-finite recomputed values give `ok: false` with the reason.
 */
export function compareHidden(
  commitment: unknown,
  recomputedRows: Float32Array,
  numRows: number,
  hiddenSize: number,
  tolerances: CompareTolerances = DEFAULT_TOLERANCES,
): CompareResult {
  if (!validTolerances(tolerances)) return unusable('invalid tolerances');
  const decoded = decodeCommitment(commitment);
  if (!decoded.ok) return unusable(decoded.detail);
  const c = decoded.commitment;
  if (c.hiddenSize !== hiddenSize) return unusable(`commitment hiddenSize ${c.hiddenSize}, model has ${hiddenSize}`);
  if (c.numRows !== numRows) return unusable(`commitment has ${c.numRows} rows, expected ${numRows}`);
  if (!(recomputedRows instanceof Float32Array) || recomputedRows.length < numRows * hiddenSize) return unusable('recomputed rows too short');
  const k = c.k;
  let worstExp = 0;
  let worstMean = 0;
  let worstMedian = 0;
  let worstOverlap = 1;
  let failedRow = -1;
  let why = '';
  const diffs: number[] = [];
  for (let r = 0; r < numRows; r++) {
    const base = r * hiddenSize;
    for (let i = 0; i < hiddenSize; i++) {
      const v = recomputedRows[base + i]!;
      if (!Number.isFinite(v)) return { ...unusable(`recomputed row ${r} holds a non-finite value`), failedRow: r };
    }
    const mine = new Set(topKIndices(recomputedRows, base, hiddenSize, k));
    let overlap = 0;
    let expMismatch = 0;
    diffs.length = 0;
    for (let j = 0; j < k; j++) {
      const idx = c.indices[r * k + j]!;
      if (mine.has(idx)) overlap++;
      const committed = c.values[r * k + j]!;
      const recomputed = toHi24(recomputedRows[base + idx]!);
      if (committed >>> 15 !== recomputed >>> 15) {
        expMismatch++;
        continue;
      }
      diffs.push(Math.abs((committed & 0x7fff) - (recomputed & 0x7fff)));
    }
    diffs.sort((a, b) => a - b);
    const ov = overlap / k;
    const em = expMismatch / k;
    const mean = diffs.length ? diffs.reduce((s, d) => s + d, 0) / diffs.length : 0;
    const med = median(diffs);
    worstOverlap = Math.min(worstOverlap, ov);
    worstExp = Math.max(worstExp, em);
    worstMean = Math.max(worstMean, mean);
    worstMedian = Math.max(worstMedian, med);
    if (failedRow < 0) {
      const reasons: string[] = [];
      if (ov < tolerances.minIndexOverlap) reasons.push(`index overlap ${ov.toFixed(3)} < ${tolerances.minIndexOverlap}`);
      if (em > tolerances.maxExpMismatch) reasons.push(`exponent mismatch ${em.toFixed(3)} > ${tolerances.maxExpMismatch}`);
      if (mean > tolerances.maxMantissaErrMean) reasons.push(`mantissa error mean ${mean.toFixed(2)} > ${tolerances.maxMantissaErrMean}`);
      if (med > tolerances.maxMantissaErrMedian) reasons.push(`mantissa error median ${med} > ${tolerances.maxMantissaErrMedian}`);
      if (reasons.length) {
        failedRow = r;
        why = `row ${r}: ${reasons.join('; ')}`;
      }
    }
  }
  const stats = { maxExpMismatch: worstExp, mantissaErrMean: worstMean, mantissaErrMedian: worstMedian, indexOverlap: worstOverlap, failedRow };
  if (failedRow >= 0) return { ok: false, ...stats, detail: why };
  return { ok: true, ...stats, detail: `${numRows} rows within tolerance (k ${k})` };
}
