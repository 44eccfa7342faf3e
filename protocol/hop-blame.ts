/**
 * Per-hop blame, the pure part the edge and the checker share (docs/trust.md §2): which
 * boundaries between hops a set of disclosures covers, which hops can then be re-run, on what and
 * against what, and whom to blame for a hop that cannot. Boundary b (1 .. hops-1) is the
 * activations hop b-1 sent and hop b received; the chain binds both sides to one commitment, so
 * either side's disclosure gives it (the sender's is taken first: it is the hop whose output is in
 * question). Every hop but the last also commits TOPLOC-style to what it sent (`outputTopLoc`):
 * a hop can be judged by its own commitment when the bytes it sent are not disclosed.
 *
 * @example
 * const sources = boundarySources(3, [{ hop: 0, outputs: true }, { hop: 2, inputs: true }]); // [null, 0, 2]
 * judgeableHops(3, sources); // [0, 1, 2]
 * blameWithholder(2, boundarySources(2, []), [1]); // { hop: 1, boundary: 1 }
 * hopRerun(1, 3, [null, 0, null], [true, true, false], false); // { hop: 1, input: 'disclosed', sentDisclosed: false, ownCommitment: true, last: false }
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

/** What a re-run hop is fed: the ticket's tokens (head), a disclosed boundary, or the checker's re-run of the hop before. */
export type HopInput = 'tokens' | 'disclosed' | 'recomputed';

/** One hop the checker re-runs, and what it compares the output with. */
export interface HopRerun {
  hop: number;
  input: HopInput;
  /** Against the disclosed bytes it sent (boundary hop + 1). */
  sentDisclosed: boolean;
  /** Against its own `outputTopLoc` commitments. */
  ownCommitment: boolean;
  /** The last hop: against its hidden commitments and tokens. */
  last: boolean;
}

/**
 * How hop `hop` can be re-run, or null when it cannot. Its input: the tokens for the head, else
 * boundary `hop` when disclosed, else the checker's own output of hop - 1 when `reconstructed`
 * (hop - 1 was re-run and agreed with a commitment to all it sent, see {@link reconstructs}).
 * What it is judged against: the last hop's commitments and tokens; otherwise the disclosed
 * boundary hop + 1 and/or its own `outputTopLoc` (`committed[hop]`: some chunk of it carries one).
 */
export function hopRerun(hop: number, hops: number, sources: readonly (number | null)[], committed: readonly boolean[], reconstructed: boolean): HopRerun | null {
  const input: HopInput | null = hop === 0 ? 'tokens' : sources[hop] != null ? 'disclosed' : reconstructed ? 'recomputed' : null;
  if (input === null) return null;
  const last = hop === hops - 1;
  const sentDisclosed = !last && sources[hop + 1] != null;
  const ownCommitment = !last && committed[hop] === true;
  if (!last && !sentDisclosed && !ownCommitment) return null;
  return { hop, input, sentDisclosed, ownCommitment, last };
}

/**
 * Whether a re-run hop whose output disagrees is the one at fault. On its exact input (tokens or a
 * disclosure bound to the chain) it is. On the checker's reconstruction it may not be: the hop
 * before may have sent other bytes than the ones its commitment describes (a receiving hop checks
 * the commitment's top-k values against the bytes, not every value); the receiving hop could show
 * what it got by disclosing it, so it is at fault only when it withheld its disclosure.
 */
export function mismatchConvicts(run: HopRerun, withheld: Iterable<number>): boolean {
  return run.input !== 'recomputed' || new Set(withheld).has(run.hop);
}

/**
 * Whether the checker's output of a re-run hop that agreed stands for what it sent, as the next
 * hop's input when no disclosure carries boundary hop + 1: it was judged against its own
 * commitments (`complete`: every chunk carries one) and nothing else gives that boundary.
 */
export function reconstructs(run: HopRerun, agreed: boolean, complete: boolean): boolean {
  return agreed && !run.last && !run.sentDisclosed && run.ownCommitment && complete;
}
