/**
 * Block-wise weight-only quantization of a MatMul weight into the layout of onnxruntime's
 * `com.microsoft` MatMulNBits: for each output column n, K input rows cut into blocks of
 * `blockSize` along K (the last block may be short), each block with its own scale and (when
 * asymmetric) zero point; a weight dequantizes to (code - zeroPoint) * scale.
 *
 * Layouts, as MatMulNBits reads them (bits b, nb = ceil(K / blockSize) blocks per column):
 * - codes: uint8 [N, nb, blockSize * b / 8]; codes packed low bits first (int4: element 2i in
 *   the low nibble of byte i, 2i+1 in the high one); a short last block is padded with its zero
 *   point (the kernel never reads past K).
 * - scales: float32 [N * nb], column-major over blocks (n * nb + block).
 * - zeroPoints: uint8 [N * ceil(nb * b / 8)] packed like the codes, one column after the other;
 *   absent when symmetric (the kernel then uses 2^(b-1): 8 for int4, 128 for int8).
 *
 * Asymmetric blocks span [min(w, 0), max(w, 0)], so a zero weight stays exactly zero.
 *
 * @example
 * const q = quantizeMatrix(w, K, N, { bits: 4, blockSize: 32 }); // w is [K, N] row-major
 * const back = dequantizeMatrix(q); // [K, N], |back - w| <= scale / 2 per block
 */

export type WeightQuantBits = 4 | 8;

export interface QuantOptions {
  bits: WeightQuantBits;
  /** A power of two, at least 16 (MatMulNBits' rule). */
  blockSize: number;
  /** Symmetric blocks (no zero points): scale = max|w| / (2^(b-1) - 1). Default false. */
  symmetric?: boolean;
}

export interface QuantizedMatrix {
  K: number;
  N: number;
  bits: WeightQuantBits;
  blockSize: number;
  /** Blocks per column, ceil(K / blockSize). */
  blocks: number;
  /** [N, blocks, blockSize * bits / 8] */
  codes: Uint8Array;
  /** [N * blocks] */
  scales: Float32Array;
  /** [N * ceil(blocks * bits / 8)]; absent: symmetric. */
  zeroPoints?: Uint8Array;
}

/** Bytes of one column's zero points. */
export function zeroPointBytesPerColumn(blocks: number, bits: WeightQuantBits): number {
  return Math.ceil((blocks * bits) / 8);
}

function checkOptions(K: number, N: number, o: QuantOptions): void {
  if (o.bits !== 4 && o.bits !== 8) throw new RangeError(`bits must be 4 or 8, got ${o.bits}`);
  if (!Number.isInteger(o.blockSize) || o.blockSize < 16 || (o.blockSize & (o.blockSize - 1)) !== 0) {
    throw new RangeError(`blockSize must be a power of two of at least 16, got ${o.blockSize}`);
  }
  if (!Number.isInteger(K) || K < 1 || !Number.isInteger(N) || N < 1) throw new RangeError(`bad matrix shape [${K}, ${N}]`);
}

/** Writes `code` (bits wide) as element `i` of a packed run starting at byte `base`. */
function put(buf: Uint8Array, base: number, i: number, code: number, bits: WeightQuantBits): void {
  if (bits === 8) buf[base + i] = code;
  else buf[base + (i >> 1)]! |= (i & 1) === 0 ? code : code << 4;
}

/** Quantizes `w`, a [K, N] row-major matrix (MatMul's [in, out]). */
export function quantizeMatrix(w: Float32Array, K: number, N: number, options: QuantOptions): QuantizedMatrix {
  checkOptions(K, N, options);
  if (w.length !== K * N) throw new RangeError(`matrix has ${w.length} values, expected ${K} x ${N}`);
  const { bits, blockSize } = options;
  const symmetric = options.symmetric === true;
  const qmax = (1 << bits) - 1;
  const mid = 1 << (bits - 1);
  const blocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) / 8;
  const codes = new Uint8Array(N * blocks * blob);
  const scales = new Float32Array(N * blocks);
  const zpBytes = zeroPointBytesPerColumn(blocks, bits);
  const zeroPoints = symmetric ? undefined : new Uint8Array(N * zpBytes);
  const col = new Float32Array(K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) col[k] = w[k * N + n]!;
    for (let b = 0; b < blocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(K, k0 + blockSize);
      let lo = 0;
      let hi = 0;
      for (let k = k0; k < k1; k++) {
        const v = col[k]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      let scale: number;
      let zp: number;
      if (symmetric) {
        const amax = Math.max(-lo, hi);
        scale = Math.fround(amax / (mid - 1));
        zp = mid;
      } else {
        scale = Math.fround((hi - lo) / qmax);
        zp = scale === 0 ? mid : Math.min(qmax, Math.max(0, Math.round(-lo / scale)));
      }
      const inv = scale === 0 ? 0 : 1 / scale;
      scales[n * blocks + b] = scale;
      if (zeroPoints) put(zeroPoints, n * zpBytes, b, zp, bits);
      const base = (n * blocks + b) * blob;
      for (let k = k0; k < k0 + blockSize; k++) {
        const q = k < k1 ? Math.min(qmax, Math.max(0, Math.round(col[k]! * inv) + zp)) : zp;
        put(codes, base, k - k0, q, bits);
      }
    }
  }
  return { K, N, bits, blockSize, blocks, codes, scales, ...(zeroPoints ? { zeroPoints } : {}) };
}

/** The float32 [K, N] matrix a quantized one stands for (what MatMulNBits multiplies by). */
export function dequantizeMatrix(q: QuantizedMatrix): Float32Array {
  const { K, N, bits, blockSize, blocks } = q;
  const blob = (blockSize * bits) / 8;
  const zpBytes = zeroPointBytesPerColumn(blocks, bits);
  const get = (buf: Uint8Array, base: number, i: number): number =>
    bits === 8 ? buf[base + i]! : (buf[base + (i >> 1)]! >> ((i & 1) * 4)) & 0xf;
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const scale = q.scales[n * blocks + b]!;
      const zp = q.zeroPoints ? get(q.zeroPoints, n * zpBytes, b) : 1 << (bits - 1);
      const base = (n * blocks + b) * blob;
      const k0 = b * blockSize;
      for (let k = k0; k < Math.min(K, k0 + blockSize); k++) out[k * N + n] = (get(q.codes, base, k - k0) - zp) * scale;
    }
  }
  return out;
}

/** Bytes a quantized matrix stores (codes, float32 scales, zero points). */
export function quantizedBytes(q: Pick<QuantizedMatrix, 'codes' | 'scales' | 'zeroPoints'>): number {
  return q.codes.byteLength + q.scales.byteLength + (q.zeroPoints?.byteLength ?? 0);
}
