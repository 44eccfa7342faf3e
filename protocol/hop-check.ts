/**
 * Hop checks, the pure part the edge and the checker share (docs/trust.md §2, "Span checkers"):
 * a check of one hop of a route, which an agent holding only that hop's layers can run. The hop is
 * re-run on its input (the ticket's tokens for the head, else boundary `hop`: what hop - 1 sent
 * it) and judged against its output (boundary `hop + 1`; the last hop: its commitments and
 * tokens). Boundary b is the activations hop b-1 sent and hop b received (protocol/hop-blame.ts).
 *
 * @example
 * hopBoundaries(3, 1); // [1, 2]
 * const scoped = hopCheckRequest(request, 1); // disclosures cut to boundaries 1 and 2, hop: 1
 * withholderOf(2, [1, 2]); // 1: the sender of a missing boundary is blamed before its receiver
 */
import type { CheckRequest, WireDisclosure } from './check.js';
import { boundarySources } from './hop-blame.js';

/** The boundaries a check of `hop` needs: its input (unless it is the head) and its output (unless it is the last hop). */
export function hopBoundaries(hops: number, hop: number): number[] {
  const out: number[] = [];
  if (hop > 0) out.push(hop);
  if (hop < hops - 1) out.push(hop + 1);
  return out;
}

/**
 * The request a checker of `hop` is sent: the job record, one copy of each boundary the hop
 * check needs (the sender's side first, as `boundarySources` picks), the withholders beside it,
 * and `hop`. The edge keeps the full request (every boundary) for later checks. `boundaries`
 * narrows which of the hop's boundaries go (a segment of the hop needs only its own ends:
 * protocol/segment.ts).
 */
export function hopCheckRequest(request: CheckRequest, hop: number, boundaries?: readonly number[]): CheckRequest {
  const hops = request.signedTicket.ticket.route.length;
  const disclosures = request.disclosures ?? [];
  const sources = boundarySources(
    hops,
    disclosures.map((d) => ({ hop: d.hop, inputs: !!d.inputs, outputs: !!d.outputs })),
  );
  const byHop = new Map<number, WireDisclosure>();
  for (const b of hopBoundaries(hops, hop)) {
    if (boundaries && !boundaries.includes(b)) continue;
    const from = sources[b];
    if (from === null || from === undefined) continue;
    const d = disclosures.find((x) => x.hop === from)!;
    const w = byHop.get(from) ?? { hop: from, dtype: d.dtype };
    if (from === b - 1) w.outputs = d.outputs;
    else w.inputs = d.inputs;
    byHop.set(from, w);
  }
  const { disclosures: _all, withheld, hop: _scope, ...record } = request;
  const beside = (withheld ?? []).filter((w) => w >= hop - 1 && w <= hop + 1);
  return {
    ...record,
    ...(byHop.size ? { disclosures: [...byHop.values()].sort((a, b) => a.hop - b.hop) } : {}),
    ...(beside.length ? { withheld: beside } : {}),
    hop,
  };
}

/**
 * Whom a hop check blames for a boundary it lacks: the hop that withheld it, the sender before
 * the receiver (as `blameWithholder`), or null when neither did (e.g. left out for size: nobody's
 * fault, and the hop check is inconclusive).
 */
export function withholderOf(boundary: number, withheld: Iterable<number>): number | null {
  const w = new Set(withheld);
  if (w.has(boundary - 1)) return boundary - 1;
  if (w.has(boundary)) return boundary;
  return null;
}
