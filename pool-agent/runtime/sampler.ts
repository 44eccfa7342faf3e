/**
 * Token sampling that any host reproduces exactly: greedy at temperature 0, otherwise
 * temperature, top-k and top-p over the logits with a counter-based random number keyed by
 * (seed, step). No state is carried between steps, so a generation resumed at step k (or run
 * over any span layout or batch) draws the same numbers. Ties break towards the lowest token id.
 *
 * @example
 * const token = sampleToken(logits, { temperature: 0.7, topP: 0.9, topK: 40, seed: 42 }, step);
 */
import { fmix32 } from '../hash32.js';

export interface SamplingParams {
  /** 0 means greedy. */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 disables top-p. */
  topP: number;
  /** Keep the k most likely tokens; 0 disables top-k. */
  topK: number;
  /** Unsigned 32-bit seed. */
  seed: number;
}


/** Uniform double in [0, 1) from (seed, step): 53 bits from two rounds of a 32-bit mixer. */
export function uniformAt(seed: number, step: number): number {
  const s = seed >>> 0;
  const lo = step >>> 0;
  const hi = Math.floor(step / 4294967296) >>> 0;
  const k = fmix32(s ^ 0x5bd1e995) ^ fmix32(hi + 0x6a09e667);
  const a = fmix32(Math.imul(lo, 0x9e3779b1) ^ k);
  const b = fmix32(a ^ fmix32(lo + 0x7f4a7c15) ^ 0x27d4eb2f);
  return ((a >>> 5) * 67108864 + (b >>> 6)) / 9007199254740992;
}

/** Index of the largest value, lowest index among equals; NaN never wins. */
export function argmax(logits: Float32Array): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > bestValue || (best === -1 && v === -Infinity)) {
      best = i;
      bestValue = v;
    }
  }
  if (best === -1) throw new RangeError('logits are all NaN');
  return best;
}

function validate(p: SamplingParams): void {
  if (!(Number.isFinite(p.temperature) && p.temperature >= 0)) throw new RangeError(`temperature must be >= 0, got ${p.temperature}`);
  if (!(p.topP > 0 && p.topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${p.topP}`);
  if (!(Number.isInteger(p.topK) && p.topK >= 0)) throw new RangeError(`topK must be a non-negative integer, got ${p.topK}`);
  if (!(Number.isInteger(p.seed) && p.seed >= 0 && p.seed <= 0xffffffff)) throw new RangeError(`seed must be an unsigned 32-bit integer, got ${p.seed}`);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Monotonic map of a float32 value onto [0, 2^32): larger value, larger key. */
function orderedBits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  return b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
}

/** Ids whose logit is at or above `threshold` (NaN never), ranked: logit descending, id ascending. */
function ranked(logits: Float32Array, threshold: number): Uint32Array {
  let count = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i]! >= threshold) count++;
  // Packed keys (inverted logit order above the id bits) sort natively, without a comparator.
  const keys = new Float64Array(count);
  let j = 0;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i]! >= threshold) keys[j++] = (0xffffffff - orderedBits(logits[i]!)) * 1048576 + i;
  }
  keys.sort();
  const ids = new Uint32Array(count);
  for (let i = 0; i < count; i++) ids[i] = keys[i]! % 1048576;
  return ids;
}

/**
 * The first k ids in rank order (logit descending, id ascending; NaN never), in one pass with a
 * bounded heap whose root is the worst id kept. Ids arrive in ascending order, so a later id
 * displaces the root only with a strictly larger logit.
 */
function topKRanked(logits: Float32Array, k: number): Uint32Array {
  const ids = new Uint32Array(k);
  const vals = new Float32Array(k);
  let size = 0;
  // Worse = lower logit, or the same logit and a higher id (ids arrive ascending).
  const siftDown = (from: number): void => {
    let c = from;
    const id = ids[c]!;
    const v = vals[c]!;
    for (;;) {
      const l = 2 * c + 1;
      if (l >= size) break;
      const r = l + 1;
      let w = l;
      if (r < size && (vals[r]! < vals[l]! || (vals[r] === vals[l] && ids[r]! > ids[l]!))) w = r;
      if (!(vals[w]! < v || (vals[w] === v && ids[w]! > id))) break;
      ids[c] = ids[w]!;
      vals[c] = vals[w]!;
      c = w;
    }
    ids[c] = id;
    vals[c] = v;
  };
  const n = logits.length;
  let i = 0;
  // Fill the heap with the first k non-NaN ids, then heapify.
  for (; i < n && size < k; i++) {
    const v = logits[i]!;
    if (v !== v) continue;
    ids[size] = i;
    vals[size++] = v;
  }
  for (let p = (size >> 1) - 1; p >= 0; p--) siftDown(p);
  // The root is the worst kept; a later id displaces it only with a strictly larger logit
  // (NaN compares false, so it never does).
  let min = size > 0 ? vals[0]! : Infinity;
  for (; i < n; i++) {
    const v = logits[i]!;
    if (v > min) {
      ids[0] = i;
      vals[0] = v;
      siftDown(0);
      min = vals[0]!;
    }
  }
  const order = Array.from({ length: size }, (_, j) => j);
  order.sort((a, b) => vals[b]! - vals[a]! || ids[a]! - ids[b]!);
  return Uint32Array.from(order, (j) => ids[j]!);
}

/**
 * Picks the next token from one row of logits. `step` is the index of the generated token
 * (0 for the first token after the prompt), which keys the random draw.
 *
 * Semantics (what any reimplementation must do to draw the same tokens): NaN logits are never
 * picked; temperature 0 is argmax. Otherwise p_i = exp((l_i - max) / temperature) in float64.
 * With topK = 0 and topP = 1, u = uniformAt(seed, step) * sum(p) (summed in id order) selects
 * the first id, in id order, whose running sum exceeds u. Otherwise candidates are ranked by
 * logit descending, id ascending; top-k keeps the first k; top-p keeps the shortest ranked prefix
 * whose mass (over the sum of the top-k, or of all ids summed in id order) reaches topP; the
 * draw walks that prefix in rank order.
 */
export function sampleToken(logits: Float32Array, params: SamplingParams, step: number): number {
  validate(params);
  if (!(Number.isInteger(step) && step >= 0)) throw new RangeError(`step must be a non-negative integer, got ${step}`);
  if (logits.length === 0) throw new RangeError('empty logits');
  if (logits.length > 1048576) throw new RangeError('vocabularies over 2^20 tokens are not supported');
  if (params.temperature === 0) return argmax(logits);
  // The top-k path finds the maximum itself (its first ranked id is argmax's answer).
  const top = params.topK > 0 ? topKRanked(logits, Math.min(params.topK, logits.length)) : undefined;
  if (top !== undefined && top.length === 0) throw new RangeError('logits are all NaN');
  const best = top !== undefined ? top[0]! : argmax(logits);
  const maxLogit = logits[best]!;
  if (maxLogit === Infinity || maxLogit === -Infinity) return best;
  const t = params.temperature;
  const u = uniformAt(params.seed, step);
  const n = logits.length;

  if (top === undefined) {
    let total = 0;
    for (let i = 0; i < n; i++) {
      const l = logits[i]!;
      if (l === l) total += Math.exp((l - maxLogit) / t);
    }
    if (params.topP >= 1) {
      const target = u * total;
      let acc = 0;
      let lastValid = best;
      for (let i = 0; i < n; i++) {
        const l = logits[i]!;
        if (l !== l) continue;
        acc += Math.exp((l - maxLogit) / t);
        lastValid = i;
        if (target < acc) return i;
      }
      return lastValid;
    }
    // Every id outside the nucleus has p < tau, and all of them together weigh under
    // (1 - topP) * total, so the ranked prefix that reaches topP lies inside the candidates.
    const tau = ((1 - params.topP) * total) / (2 * n);
    const threshold = tau > 0 ? maxLogit + t * Math.log(tau) : -Infinity;
    return drawRanked(logits, ranked(logits, threshold), maxLogit, t, total, params.topP, u);
  }

  let total = 0;
  for (let i = 0; i < top.length; i++) total += Math.exp((logits[top[i]!]! - maxLogit) / t);
  return drawRanked(logits, top, maxLogit, t, total, params.topP, u);
}

function drawRanked(logits: Float32Array, ids: Uint32Array, maxLogit: number, t: number, total: number, topP: number, u: number): number {
  const probs = new Float64Array(ids.length);
  for (let i = 0; i < ids.length; i++) probs[i] = Math.exp((logits[ids[i]!]! - maxLogit) / t);
  let keep = ids.length;
  if (topP < 1) {
    let cum = 0;
    for (let i = 0; i < ids.length; i++) {
      cum += probs[i]! / total;
      if (cum >= topP) {
        keep = i + 1;
        break;
      }
    }
  }
  let mass = 0;
  for (let i = 0; i < keep; i++) mass += probs[i]!;
  const target = u * mass;
  let acc = 0;
  for (let i = 0; i < keep; i++) {
    acc += probs[i]!;
    if (target < acc) return ids[i]!;
  }
  return ids[keep - 1]!;
}
