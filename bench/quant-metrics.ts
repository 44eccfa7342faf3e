/**
 * What bench/quant.ts compares: next-token distributions of a reference and a candidate at the
 * same positions (top-1 agreement, KL divergence in nats), over a fixed English text.
 *
 * @example
 * const a = compareDistributions(refLogits, quantLogits, vocabSize);
 * a.top1; // share of positions whose argmax agrees
 */

/** The fixed text the quality figures are measured over (plain English prose, ~300 tokens). */
export const FIXED_TEXT =
  'The river rose slowly through the night, and by morning the low fields east of the town were under water. ' +
  'Farmers who had lived there for forty years said they had never seen it climb so fast. The council met at noon ' +
  'in the old school, because the town hall was too close to the bank, and agreed to open the sluice gates upstream ' +
  'only if the rain stopped before evening. It did not. At six o\'clock the engineer walked out along the dam with two ' +
  'assistants and a lamp, measured the level against the painted marks, and wrote the numbers in a small notebook that ' +
  'is still kept in the library. Her report, written the following week, explains that the gates were opened a little ' +
  'at a time, one every hour, so that the water below would never rise faster than a person could walk. Nobody was hurt. ' +
  'Three bridges were lost, a mill wheel was carried two miles downstream, and the school kept its doors open for a month ' +
  'as a place where families could sleep, eat and dry their clothes while the fields drained and the roads were repaired.';

export interface Agreement {
  positions: number;
  /** Share of positions where both argmaxes agree. */
  top1: number;
  /** KL(reference || candidate) per position, nats. */
  klMean: number;
  klMedian: number;
  klMax: number;
}

/** log-softmax of one row, float64. */
function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i]! - lse;
  return out;
}

function argmaxOf(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Compares [positions, vocab] logits of a reference and a candidate, row by row. */
export function compareDistributions(reference: Float32Array, candidate: Float32Array, vocab: number): Agreement {
  if (reference.length !== candidate.length || reference.length % vocab !== 0) throw new RangeError(`logits of ${reference.length} and ${candidate.length} values over a vocabulary of ${vocab}`);
  const n = reference.length / vocab;
  let agree = 0;
  const kls: number[] = [];
  for (let t = 0; t < n; t++) {
    const r = reference.subarray(t * vocab, (t + 1) * vocab);
    const c = candidate.subarray(t * vocab, (t + 1) * vocab);
    if (argmaxOf(r) === argmaxOf(c)) agree++;
    const lp = logSoftmax(r);
    const lq = logSoftmax(c);
    let kl = 0;
    for (let i = 0; i < vocab; i++) kl += Math.exp(lp[i]!) * (lp[i]! - lq[i]!);
    kls.push(Math.max(0, kl));
  }
  return { positions: n, top1: agree / n, klMean: kls.reduce((a, b) => a + b, 0) / n, klMedian: median(kls), klMax: Math.max(...kls) };
}
