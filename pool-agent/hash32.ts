/**
 * MurmurHash3's 32-bit finalizer: integer-only mixing, identical on every machine. The weight
 * generator and the sampler's counter-based RNG both derive their randomness from it.
 *
 * @example
 * const r = fmix32(seed ^ Math.imul(step, 0x9e3779b9)) / 2 ** 32; // uniform in [0, 1)
 */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
