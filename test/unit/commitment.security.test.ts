import { describe, expect, it } from 'vitest';
import { toBase64Url, fromBase64Url } from '../../protocol/bytes.js';
import { commitHidden, compareHidden, decodeCommitment, MAX_COMMITMENT_CHARS } from '../../protocol/commitment.js';

const H = 64;
const rows = Float32Array.from({ length: 2 * H }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 7)));
const good = commitHidden(rows, 2, H, { k: 8 });

function mutate(fn: (b: Uint8Array) => void): string {
  const b = fromBase64Url(good);
  fn(b);
  return toBase64Url(b);
}

function f32hi24(x: number): [number, number, number] {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]! >>> 8;
  return [u & 0xff, (u >>> 8) & 0xff, (u >>> 16) & 0xff];
}

describe('hostile commitments are rejected without throwing', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['not a string', 42, /not a string/],
    ['null', null, /not a string/],
    ['an object', { k: 8 }, /not a string/],
    ['empty', '', /shorter than its header/],
    ['not base64url', 'ab+/==', /base64url/],
    ['impossible base64 length', 'abcde', /base64url/],
    ['garbage bytes', toBase64Url(new Uint8Array(300).fill(0xa5)), /magic/],
    ['oversized', 'A'.repeat(MAX_COMMITMENT_CHARS + 4), /exceeds/],
    ['truncated', good.slice(0, good.length - 8), /bytes, header implies/],
    ['trailing bytes', toBase64Url(new Uint8Array([...fromBase64Url(good), 0, 0, 0])), /bytes, header implies/],
    ['wrong version', mutate((b) => (b[1] = 2)), /version/],
    ['unknown value format', mutate((b) => (b[3] = 9)), /value format/],
    ['k zero', mutate((b) => (b[2] = 0)), /k 0/],
    ['k larger than hidden', mutate((b) => new DataView(b.buffer).setUint32(4, 4, true)), /hiddenSize 4 invalid/],
    ['zero rows', mutate((b) => new DataView(b.buffer).setUint16(8, 0, true)), /no rows/],
    ['row count lies', mutate((b) => new DataView(b.buffer).setUint16(8, 65535, true)), /header implies/],
    ['index out of range', mutate((b) => new DataView(b.buffer).setUint16(10, 64, true)), /index 64 >= hiddenSize/],
    ['duplicate index', mutate((b) => new DataView(b.buffer).setUint16(15, new DataView(b.buffer).getUint16(10, true), true)), /duplicate index/],
    ['NaN value', mutate((b) => b.set(f32hi24(NaN), 12)), /non-finite/],
    ['Infinity value', mutate((b) => b.set(f32hi24(Infinity), 12)), /non-finite/],
    ['-Infinity value', mutate((b) => b.set(f32hi24(-Infinity), 12)), /non-finite/],
  ];
  for (const [name, input, why] of cases) {
    it(name, () => {
      expect(decodeCommitment(input).ok).toBe(false);
      let r!: ReturnType<typeof compareHidden>;
      expect(() => (r = compareHidden(input, rows, 2, H))).not.toThrow();
      expect(r.ok).toBe(false);
      expect(r.detail).toMatch(why);
    });
  }

  it('the untouched commitment passes (so the cases above fail for their own reason)', () => {
    expect(compareHidden(good, rows, 2, H).ok).toBe(true);
  });

  it('non-finite recomputed rows fail rather than pass', () => {
    const bad = Float32Array.from(rows);
    bad[3] = NaN;
    expect(compareHidden(good, bad, 2, H)).toMatchObject({ ok: false, failedRow: 0 });
  });

  it('tolerances cannot be disabled with NaN', () => {
    const other = Float32Array.from(rows, (v) => -v);
    const r = compareHidden(good, other, 2, H, { minIndexOverlap: NaN, maxExpMismatch: NaN, maxMantissaErrMean: NaN, maxMantissaErrMedian: NaN });
    expect(r.ok).toBe(false);
  });

  it('a commitment that swaps values among committed indices fails', () => {
    const swapped = mutate((b) => {
      const tmp = b.slice(12, 15);
      b.copyWithin(12, 17, 20);
      b.set(tmp, 17);
    });
    expect(compareHidden(swapped, rows, 2, H).ok).toBe(false);
  });

  it('random base64url strings never pass and never throw', () => {
    let seed = 1;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let n = 0; n < 500; n++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const len = seed % 400;
      let s = 'VAEIAU';
      for (let i = 0; i < len; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        s += alphabet[seed % 64];
      }
      expect(compareHidden(s, rows, 2, H).ok).toBe(false);
    }
  });
});
