/**
 * The hop check: re-runs ONE hop of a finished job's route on this agent's span of exactly that
 * hop's layers (docs/trust.md §2, "Span checkers"), so a model no agent holds whole can still be
 * checked. The hop's input is the ticket's tokens (head) or the disclosed activations it received;
 * its output is judged against the disclosed activations it sent (TOPLOC-style, `judgeHopOutput`)
 * or, for the last hop, against its commitments and sampled tokens (`judgeCheck`).
 *
 * Blame, in order: a disclosure that does not hash to its attestations (its discloser); a
 * boundary the check needs that a hop withheld (that hop, the sender first); a boundary without
 * one row per position (its sender, which attested it); the hop itself when its output does not
 * follow from its input. A boundary nobody disclosed or withheld makes the check inconclusive.
 * Every verdict carries `checkedHop`.
 *
 * @example
 * const verdict = await runHopCheck({ ticket, promptIds, attestations: chunks, hop: 1, disclosures, span });
 * if (verdict.status === 'fail') accuse(verdict.agentId);
 */
import type { SignedAttestation } from '../../protocol/attestation.js';
import {
  checkTolerancesFor,
  judgeCheck,
  judgeHopOutput,
  lastRows,
  planCheck,
  verifyDisclosure,
  type CheckTolerances,
  type CheckVerdict,
  type HopDisclosure,
} from '../../protocol/check.js';
import { boundarySources } from '../../protocol/hop-blame.js';
import { uncheckableReason } from '../../protocol/manifest.js';
import { withholderOf } from '../../protocol/hop-check.js';
import { rowsHash } from '../../protocol/segment.js';
import type { JobTicket } from '../../protocol/ticket.js';
import { sampleToken } from '../runtime/sampler.js';
import type { LoadedSpan } from '../runtime/types.js';
import { asFloat32, concatRows, prefill } from './checker.js';

export interface RunHopCheckInput {
  ticket: JobTicket;
  /** The prompt ids the edge sent (promptIds ++ prefixIds must hash to ticket.inputHash). */
  promptIds: readonly number[];
  prefixIds?: readonly number[];
  /** Every chunk of the job, each with all hops' signed attestations. */
  attestations: readonly (readonly SignedAttestation[])[];
  /** The route index of the hop to re-run. */
  hop: number;
  /** Disclosures carrying the boundaries into and out of the hop (one side of each is enough). */
  disclosures?: readonly HopDisclosure[];
  /** Hops the edge asked for their disclosure that did not produce one. */
  withheld?: readonly number[];
  /** A span of exactly the hop's layers (this agent's loaded span: a session of its own is opened on it). */
  span?: LoadedSpan;
  /** Otherwise loads one (a whole-model checker, from its model folder), closed after the check. */
  loadSpan?: (layers: readonly [number, number]) => Promise<LoadedSpan>;
  tolerances?: CheckTolerances;
  /**
   * Re-run only these layers of the hop (a chain of checkers covers it: protocol/segment.ts).
   * `input`: the previous segment's output rows, required unless the segment starts the hop.
   */
  segment?: { layers: readonly [number, number]; input?: Float32Array };
  /** Called with the rows a segment that does not end the hop computed (they go back to the edge). */
  onSegmentOutput?: (rows: Float32Array) => void;
}

/** Re-runs one hop of the route and judges it; never throws. */
export async function runHopCheck(input: RunHopCheckInput): Promise<CheckVerdict> {
  const { ticket, hop: h } = input;
  const jobId = ticket.jobId;
  const scoped = (v: CheckVerdict): CheckVerdict => ({ ...v, checkedHop: h });
  const inconclusive = (reason: 'bad_request' | 'checker_error', detail: string) => scoped({ jobId, status: 'inconclusive', reason, detail, evidence: {} });
  const route = ticket.route;
  const hop = route[h];
  if (!hop) return inconclusive('bad_request', `no hop ${h} in a route of ${route.length}`);
  const last = h === route.length - 1;
  const seg = input.segment;
  if (seg && (seg.layers[0] < hop.layers[0] || seg.layers[1] > hop.layers[1] || seg.layers[0] >= seg.layers[1])) {
    return inconclusive('bad_request', `segment [${seg.layers.join(', ')}) is not within hop ${h}'s layers [${hop.layers.join(', ')})`);
  }
  if (seg && (seg.layers[0] === hop.layers[0]) === (seg.input !== undefined)) {
    return inconclusive('bad_request', seg.input ? 'the segment that starts the hop runs on the hop\'s own input' : 'a segment after the hop\'s first layer needs the previous segment\'s output');
  }
  /** The layers this check re-runs: the hop's, or the segment's. */
  const layers = seg?.layers ?? hop.layers;
  /** Whether the re-run output is the hop's output (judged), or a segment's to hand on. */
  const endsHop = layers[1] === hop.layers[1];
  const planned = await planCheck(ticket, [...input.promptIds, ...(input.prefixIds ?? [])], input.attestations);
  if (!planned.ok) return scoped(planned.verdict);
  const plan = planned.plan;
  const positions = plan.sequence.length;
  const blame = (at: number, reason: 'disclosure_mismatch' | 'hop_output_mismatch', detail: string) =>
    scoped({ jobId, status: 'fail', reason, hop: at, agentId: route[at]!.agentId, detail, evidence: {} });

  const disclosures = input.disclosures ?? [];
  for (const d of disclosures) {
    const bad = await verifyDisclosure(plan, d);
    if (bad) return scoped(bad);
  }
  const sources = boundarySources(
    route.length,
    disclosures.map((d) => ({ hop: d.hop, inputs: !!d.inputs, outputs: !!d.outputs })),
  );

  let owned: LoadedSpan | null = null;
  try {
    const span = input.span ?? (owned = input.loadSpan ? await input.loadSpan(layers) : null);
    if (!span) return inconclusive('checker_error', `this checker does not hold layers [${layers.join(', ')})`);
    if (span.modelId !== ticket.modelId) return inconclusive('checker_error', 'this checker holds another model than the ticket names');
    if (span.layers[0] !== layers[0] || span.layers[1] !== layers[1]) {
      return inconclusive('checker_error', `this checker's span [${span.layers.join(', ')}) is not the layers asked of hop ${h}, [${layers.join(', ')})`);
    }
    const unverifiable = uncheckableReason(span.manifest);
    if (unverifiable) return inconclusive('checker_error', unverifiable);
    const { hiddenSize, vocabSize } = span.manifest.architecture;
    if (last && plan.generated.some((t) => t >= vocabSize)) {
      // An attested token outside the vocabulary cannot come from the model.
      const step = ticket.prefixTokens + plan.generated.findIndex((t) => t >= vocabSize);
      return scoped({ jobId, status: 'fail', reason: 'sampling_mismatch', hop: h, agentId: hop.agentId, detail: `step ${step}: token outside the vocabulary`, evidence: { step } });
    }

    /** Boundary b as [positions, hidden] rows, or the verdict that ends the check without it. */
    const boundary = (b: number): Float32Array | CheckVerdict => {
      const from = sources[b];
      if (from === null || from === undefined) {
        const w = withholderOf(b, input.withheld ?? []);
        if (w !== null) return blame(w, 'disclosure_mismatch', `hop ${w} withheld the activations between hops ${b - 1} and ${b}, so hop ${h} cannot be re-run`);
        return inconclusive('bad_request', `the activations between hops ${b - 1} and ${b} were not disclosed`);
      }
      const d = disclosures.find((x) => x.hop === from)!;
      const rows = concatRows(from === b - 1 ? d.outputs! : d.inputs!);
      // Both hops attested these bytes; the sender made them.
      if (rows.length !== positions * hiddenSize) return blame(b - 1, 'hop_output_mismatch', `hop ${b - 1} sent hop ${b} ${rows.length / hiddenSize} rows, the job has ${positions} positions`);
      return rows;
    };
    let into: Float32Array | CheckVerdict | null;
    if (seg?.input) {
      // From the edge, as the previous segment's checker computed it: a wrong size is nobody's doing here.
      if (seg.input.length !== positions * hiddenSize) return inconclusive('bad_request', `the segment input has ${seg.input.length / hiddenSize} rows, the job has ${positions} positions`);
      into = seg.input;
    } else {
      into = h === 0 ? null : boundary(h);
    }
    if (into && !(into instanceof Float32Array)) return into;
    const outOf = last || !endsHop ? null : boundary(h + 1);
    if (outOf && !(outOf instanceof Float32Array)) return outOf;
    /** What a segment's verdict commits to (absent for a whole-hop check). */
    const segmentEvidence = seg ? { layers: [seg.layers[0], seg.layers[1]] as [number, number], ...(seg.input ? { inputHash: await rowsHash(seg.input) } : {}) } : undefined;
    const withSegment = (v: CheckVerdict): CheckVerdict => (segmentEvidence ? { ...v, evidence: { ...v.evidence, segment: segmentEvidence } } : v);

    const tolerances = input.tolerances ?? checkTolerancesFor(ticket.dtype);
    const out = await prefill(span, into ? { kind: 'hidden', data: into, seqLen: positions } : { kind: 'tokens', ids: plan.sequence }, plan.logitsToKeep);
    if (!endsHop) {
      // Not judged: handed on to the next segment's checker, committed to by hash.
      if (out.kind !== 'hidden') return inconclusive('checker_error', `segment [${layers.join(', ')}) returned logits`);
      const rows = asFloat32(out.data);
      if (rows.length !== positions * hiddenSize) return inconclusive('checker_error', `segment [${layers.join(', ')}) returned ${rows.length / hiddenSize} rows for ${positions} positions`);
      input.onSegmentOutput?.(rows);
      return scoped({ jobId, status: 'pass', detail: `hop ${h}: layers [${layers.join(', ')}) re-run at all ${positions} positions, handed on`, evidence: { segment: { ...segmentEvidence!, outputHash: await rowsHash(rows) } } });
    }
    if (last) {
      if (out.kind !== 'logits') return inconclusive('checker_error', 'the last hop span returned no logits');
      const v = judgeCheck({ plan, hidden: lastRows(out.finalHidden, out.seqLen, hiddenSize, plan.logitsToKeep), logits: out.logits, hiddenSize, vocabSize, sample: sampleToken, tolerances, blame: { hop: h, agentId: hop.agentId } });
      return withSegment(scoped(v.status === 'pass' ? { ...v, detail: `hop ${h}: ${v.detail}` } : v));
    }
    if (out.kind !== 'hidden') return inconclusive('checker_error', `hop ${h} span returned logits`);
    const v = judgeHopOutput(plan, h, outOf as Float32Array, asFloat32(out.data), positions, hiddenSize, tolerances.hidden);
    return withSegment(scoped(v ?? { jobId, status: 'pass', detail: `hop ${h}: its output follows from its input at all ${positions} positions`, evidence: {} }));
  } catch (err) {
    return inconclusive('checker_error', `recomputation failed: ${(err as Error).message}`);
  } finally {
    if (owned) await owned.close();
  }
}
