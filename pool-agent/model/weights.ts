/**
 * Deterministic weights: a counter-based integer hash keyed by (seed, tensor name, index), so
 * every machine produces the same bytes and any tensor can be generated on its own. Values are
 * uniform in [-a, a] with a = sqrt(3 / fanIn) (variance 1 / fanIn), computed with exactly
 * rounded operations only (no Math.sin/log), then rounded to float32 (and to float16 on request).
 *
 * @example
 * const w = uniformWeights(42, 'model.layers.0.self_attn.q_proj.weight', 64 * 64, 64);
 */
import { fmix32 } from '../hash32.js';

/** FNV-1a over the UTF-16 code units of a name. */
export function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Float32 values uniform in [-a, a], a = sqrt(3 / fanIn). */
export function uniformWeights(seed: number, name: string, count: number, fanIn: number): Float32Array {
  const key = fmix32((seed >>> 0) ^ fmix32(hashName(name) ^ 0x9e3779b9));
  const key2 = fmix32(key ^ 0x68e31da4);
  const a = Math.sqrt(3 / fanIn);
  const scale = (2 * a) / 4294967296;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const r = fmix32(Math.imul(i, 0x9e3779b1) ^ key ^ fmix32(i ^ key2));
    out[i] = r * scale - a;
  }
  return out;
}

export function onesWeights(count: number): Float32Array {
  return new Float32Array(count).fill(1);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary16 bits of a float32 value, round to nearest even (overflow to infinity). */
export function toFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    const rounded = rem > mid || (rem === mid && (half & 1) === 1) ? half + 1 : half;
    return sign | rounded;
  }
  const half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  const rounded = rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1) ? half + 1 : half;
  return sign | rounded;
}

/** Float32 value of binary16 bits. */
export function fromFloat16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function toFloat16Array(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = toFloat16Bits(values[i]!);
  return out;
}

export function fromFloat16Array(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = fromFloat16Bits(bits[i]!);
  return out;
}
