/**
 * Per-hop blame, the pure part the edge and the checker share (docs/trust.md §2): which
 * boundaries between hops a set of disclosures covers, which hops can then be re-run, and whom
 * to blame for a hop that cannot. Boundary b (1 .. hops-1) is the activations hop b-1 sent and
 * hop b received; the chain binds both sides to one commitment, so either side's disclosure
 * gives it (the sender's is taken first: it is the hop whose output is in question).
 *
 * @example
 * const sources = boundarySources(3, [{ hop: 0, outputs: true }, { hop: 2, inputs: true }]); // [null, 0, 2]
 * judgeableHops(3, sources); // [0, 1, 2]
 * blameWithholder(2, boundarySources(2, []), [1]); // { hop: 1, boundary: 1 }
 */

/** What one hop's disclosure holds: the tensors it received (hop > 0) and sent (before the last hop). */
export interface DisclosedSides {
  hop: number;
  inputs?: boolean;
  outputs?: boolean;
}

/**
 * For each boundary b (index b; index 0 is unused and null), the hop whose disclosure carries it:
 * b-1 when it disclosed its outputs, else b when it disclosed its inputs, else null.
 */
export function boundarySources(hops: number, disclosed: readonly DisclosedSides[]): (number | null)[] {
  const sent = new Set(disclosed.filter((d) => d.outputs).map((d) => d.hop));
  const received = new Set(disclosed.filter((d) => d.inputs).map((d) => d.hop));
  const out: (number | null)[] = [null];
  for (let b = 1; b < hops; b++) out.push(sent.has(b - 1) ? b - 1 : received.has(b) ? b : null);
  return out;
}

/**
 * Hops that can be re-run and judged: their input is known (the ticket's tokens for the head, a
 * disclosed boundary otherwise) and so is what they are judged against (the next boundary; the
 * last hop's commitments and tokens).
 */
export function judgeableHops(hops: number, sources: readonly (number | null)[]): number[] {
  const out: number[] = [];
  for (let h = 0; h < hops; h++) {
    const input = h === 0 || sources[h] !== null;
    const output = h === hops - 1 || sources[h + 1] !== null;
    if (input && output) out.push(h);
  }
  return out;
}

/**
 * Which withholder (a hop asked for its disclosure that produced nothing usable) the blame goes
 * to when no hop is proven wrong: first one beside a missing boundary, which keeps the hops
 * there from being re-run (the sending hop before the receiving one); else the first withholder
 * (`boundary` null: the others' disclosures covered for it). Null when nobody withheld.
 */
export function blameWithholder(hops: number, sources: readonly (number | null)[], withheld: Iterable<number>): { hop: number; boundary: number | null } | null {
  const w = new Set([...withheld].filter((h) => Number.isInteger(h) && h >= 0 && h < hops));
  for (let b = 1; b < hops; b++) {
    if (sources[b] !== null) continue;
    if (w.has(b - 1)) return { hop: b - 1, boundary: b };
    if (w.has(b)) return { hop: b, boundary: b };
  }
  const first = [...w].sort((a, b) => a - b)[0];
  return first === undefined ? null : { hop: first, boundary: null };
}
