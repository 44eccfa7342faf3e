/**
 * Hop checks by a chain of checkers (docs/trust.md §2, "Covering chains"): when no independent
 * agent holds exactly a hop's layers, nor the whole model, agents whose spans cover the hop
 * between them re-run it segment by segment (protocol/segment.ts). Each segment's checker gets
 * the previous one's output rows and signs a verdict committing to what it was given and what it
 * returned; the last is judged against the hop's output like any hop check and names the hop when
 * it does not follow. The edge checks the links itself: every segment covers the layers asked,
 * each input hash is the previous output hash, each output decodes to those rows. A broken link
 * ends the chain with no verdict (the hop stays unchecked); it blames nobody, since the edge
 * cannot tell a lying segment checker from a lying hop without another chain.
 *
 * @example
 * const chains = coveringChains(deps, candidates, ticket.route, 0, { exclude: new Set() });
 * const answer = await askChain(deps, chains[0], request, 0, remaining, steps);
 */
import type { CheckRequest } from '../../protocol/check.js';
import { hopCheckRequest } from '../../protocol/hop-check.js';
import { decodeSegmentRows, encodeSegmentRows, rowsHash } from '../../protocol/segment.js';
import type { RouteHop } from '../../protocol/ticket.js';
import type { RouteCandidate } from '../../db/registry-contract.js';
import { independentHolders } from './checkers.js';
import { askChecker, type CheckAnswer, type CheckDeps, type CheckStep } from './run-checks.js';

/** Agents whose spans cover one hop's layers, in layer order (two or more). */
export type Chain = RouteCandidate[];

/** Segments a chain may have at most (each is one more round trip and one more agent trusted with a link). */
export const MAX_CHAIN_SEGMENTS = 4;
/** Chains kept per hop (a second one after a broken or inconclusive first). */
export const MAX_CHAINS = 2;

/** A chain's answer: the last segment's verdict on the hop, and the signed verdicts of the segments before it. */
export interface ChainAnswer extends CheckAnswer {
  via: { checkerId: string; signed: unknown }[];
}

/**
 * Chains of independent agents (`independentHolders`: active, not accused, not held, not in the
 * route, of no owner of a hop of it, none in `exclude`) whose spans cover hop `hop`'s layers
 * exactly, in order; fewer segments first, then the better worst reputation; at most
 * `MAX_CHAINS`, each ending at another agent (a dispute asks each final checker once).
 */
export async function coveringChains(
  deps: Pick<CheckDeps, 'store' | 'random'>,
  candidates: readonly RouteCandidate[],
  route: readonly Pick<RouteHop, 'agentId' | 'layers'>[],
  hop: number,
  opts: { exclude?: ReadonlySet<string>; maxSegments?: number; maxChains?: number } = {},
): Promise<Chain[]> {
  const layers = route[hop]?.layers;
  if (!layers) return [];
  const maxSegments = opts.maxSegments ?? MAX_CHAIN_SEGMENTS;
  // Spans strictly inside the hop (a span of exactly its layers is a direct hop checker, not a chain).
  const inside = (await independentHolders(deps, candidates, route.map((h) => h.agentId))).filter(
    (c) => !opts.exclude?.has(c.agentId) && c.layers[0] >= layers[0] && c.layers[1] <= layers[1] && !(c.layers[0] === layers[0] && c.layers[1] === layers[1]),
  );
  const from = new Map<number, RouteCandidate[]>();
  for (const c of inside) from.set(c.layers[0], [...(from.get(c.layers[0]) ?? []), c]);
  const found: Chain[] = [];
  const path: RouteCandidate[] = [];
  const walk = (at: number) => {
    if (found.length >= 64) return;
    if (at === layers[1]) {
      found.push([...path]);
      return;
    }
    if (path.length >= maxSegments) return;
    for (const c of from.get(at) ?? []) {
      if (path.some((p) => p.agentId === c.agentId)) continue;
      path.push(c);
      walk(c.layers[1]);
      path.pop();
    }
  };
  walk(layers[0]);
  const worst = (ch: Chain) => Math.min(...ch.map((c) => c.reputation));
  found.sort((a, b) => a.length - b.length || worst(b) - worst(a));
  const out: Chain[] = [];
  for (const ch of found) {
    if (out.length >= (opts.maxChains ?? MAX_CHAINS)) break;
    if (out.some((o) => o.at(-1)!.agentId === ch.at(-1)!.agentId)) continue;
    out.push(ch);
  }
  return out;
}

/**
 * The request one segment's checker is sent: the hop check of `hop` (protocol/hop-check.ts)
 * with only the boundary that segment needs (the hop's input for the first, its output for the
 * last, none between), and the previous segment's rows.
 */
export function segmentCheckRequest(request: CheckRequest, hop: number, segment: readonly [number, number], hopLayers: readonly [number, number], input?: Float32Array): CheckRequest {
  // The hop's input (boundary `hop`) only for the segment that starts it, its output (boundary `hop + 1`) only for the one that ends it.
  const ends = [...(segment[0] === hopLayers[0] ? [hop] : []), ...(segment[1] === hopLayers[1] ? [hop + 1] : [])];
  return {
    ...hopCheckRequest(request, hop, ends),
    segment: { layers: [segment[0], segment[1]], ...(input ? { input: encodeSegmentRows(input) } : {}) },
  };
}

/**
 * Runs hop `hop`'s check along `chain`: each segment in turn, the links checked as they come.
 * The last segment's answer (on the hop, `checkedHop` checked) with the signed verdicts before
 * it; null when a segment does not answer, answers anything but a committed hand-on, or the
 * rows it hands on do not match its commitment.
 */
export async function askChain(
  deps: CheckDeps,
  chain: Chain,
  request: CheckRequest,
  hop: number,
  remaining: () => number,
  steps: CheckStep[],
): Promise<ChainAnswer | null> {
  const hopLayers = request.signedTicket.ticket.route[hop]?.layers;
  if (!hopLayers || chain.length < 2) return null;
  const via: ChainAnswer['via'] = [];
  let rows: Float32Array | undefined;
  let rowsDigest: string | undefined;
  for (const [i, checker] of chain.entries()) {
    const left = remaining();
    if (!left) return null;
    const last = i === chain.length - 1;
    const answer = await askChecker(deps, checker, segmentCheckRequest(request, hop, checker.layers, hopLayers, rows), left, { segment: true });
    steps.push({ checkerId: checker.agentId, status: answer?.verdict.status ?? null });
    if (!answer) return null;
    const v = answer.verdict;
    const seg = v.evidence.segment;
    const broken = (why: string) => {
      deps.log({ level: 'warn', msg: 'a chain of hop checkers broke: the hop stays unchecked by it', jobId: v.jobId, hop, checkerId: checker.agentId, segment: checker.layers, why });
      return null;
    };
    if (v.checkedHop !== hop) return broken(`verdict on hop ${v.checkedHop ?? 'none'}`);
    if (!seg || seg.layers[0] !== checker.layers[0] || seg.layers[1] !== checker.layers[1]) return broken('verdict not on the segment asked');
    if (seg.inputHash !== rowsDigest) return broken('the segment ran on other rows than the previous segment handed on');
    if (last) return { ...answer, via };
    if (v.status !== 'pass' || !seg.outputHash || answer.segmentOutput === undefined) return broken(`segment answered ${v.status}${v.reason ? ` (${v.reason})` : ''}: ${v.detail}`);
    const next = decodeSegmentRows(answer.segmentOutput);
    if (!next || (await rowsHash(next)) !== seg.outputHash) return broken('the rows handed on are not those the verdict commits to');
    via.push({ checkerId: answer.checkerId, signed: answer.signed });
    rows = next;
    rowsDigest = seg.outputHash;
  }
  return null;
}
