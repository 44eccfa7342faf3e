/**
 * The checker: re-runs a finished job on this agent's own copy of the model (an independent pool
 * from the route that served it) and judges it with protocol/check.ts. One teacher-forced prefill
 * over input ++ generated tokens gives every step's final hidden row and logits at once, which is
 * why a check costs a fraction of the generation it verifies (bench/toploc.ts).
 *
 * On a failure over a multi-hop route, hops are re-run one span at a time on their inputs (the
 * tokens, disclosed activations) to find the hop whose output does not follow: from the bytes it
 * sent when disclosed, else from its own TOPLOC commitment of them (`outputTopLoc`).
 *
 * @example
 * const verdict = await runCheck({ modelDir: '.models/small', ticket, promptIds, prefixIds, attestations: chunks });
 * if (verdict.status === 'fail') await edge.reportCheckFailure(verdict);
 */
import type { SignedAttestation } from '../../protocol/attestation.js';
import {
  checkTolerancesFor,
  judgeCheck,
  judgeHopOutput,
  lastRows,
  planCheck,
  verifyDisclosure,
  type CheckPlan,
  type CheckTolerances,
  type CheckVerdict,
  type HopDisclosure,
} from '../../protocol/check.js';
import { blameWithholder, boundarySources, hopRerun, mismatchConvicts, reconstructs } from '../../protocol/hop-blame.js';
import { judgeHopCommitment } from '../../protocol/output-commitment.js';
import { manifestHash, uncheckableReason, type Manifest } from '../../protocol/manifest.js';
import type { JobTicket } from '../../protocol/ticket.js';
import { loadManifest } from '../model/build.js';
import { fromFloat16Array, toFloat16Array } from '../model/weights.js';
import { loadSpan as loadOrtSpan } from '../runtime/span.js';
import { sampleToken } from '../runtime/sampler.js';
import type { LoadedSpan, RuntimeOptions, SpanOutput } from '../runtime/types.js';

/** How the checker gets spans: the onnxruntime loader by default, a double in unit tests. */
export type SpanLoader = (modelDir: string, layers: readonly [number, number], options: RuntimeOptions) => Promise<LoadedSpan>;

export interface RunCheckInput {
  /** This checker's copy of the model the ticket names. */
  modelDir: string;
  ticket: JobTicket;
  /** The prompt ids the edge sent (promptIds ++ prefixIds must hash to ticket.inputHash). */
  promptIds: readonly number[];
  prefixIds?: readonly number[];
  /** The tokens the client received, when the edge kept them: must equal the attested tokens. */
  tokenIds?: readonly number[];
  /** Every chunk of the job, each with all hops' signed attestations (as in `chunk` JobEvents). */
  attestations: readonly (readonly SignedAttestation[])[];
  /** Activations hops disclosed for per-hop blame (multi-hop routes). */
  disclosures?: readonly HopDisclosure[];
  /** Hops the edge asked for their disclosure that did not produce one (blamed when that stops the blame). */
  withheld?: readonly number[];
  runtimeOptions?: RuntimeOptions;
  tolerances?: CheckTolerances;
  /** A span of the whole model already loaded (reused across checks); otherwise loaded and closed here. */
  span?: LoadedSpan;
  loadSpan?: SpanLoader;
}

function checkerError(jobId: string, detail: string): CheckVerdict {
  return { jobId, status: 'inconclusive', reason: 'checker_error', detail, evidence: {} };
}

/** Activations as float32 (float16 disclosures are widened). */
export function asFloat32(data: Float32Array | Uint16Array): Float32Array {
  return data instanceof Float32Array ? data : fromFloat16Array(data);
}

/** One chunk's tensors after the other, as float32 rows of the whole job. */
export function concatRows(parts: readonly (Float32Array | Uint16Array)[]): Float32Array {
  const f = parts.map(asFloat32);
  const out = new Float32Array(f.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of f) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** One prefill in a session of its own on `span` (disposed after); logits for the last `logitsToKeep` positions on the last span. */
export async function prefill(span: LoadedSpan, input: { kind: 'tokens'; ids: number[] } | { kind: 'hidden'; data: Float32Array; seqLen: number }, logitsToKeep?: number): Promise<SpanOutput> {
  const session = span.openSession();
  try {
    // Activations are held as float32 here; a float16 span takes them as float16 bits (exact: they were float16).
    const spanInput =
      input.kind === 'tokens'
        ? { kind: 'tokens' as const, ids: Int32Array.from(input.ids) }
        : span.manifest.dtype === 'float16'
          ? { ...input, data: toFloat16Array(input.data) }
          : input;
    return await session.forward(spanInput, span.last && logitsToKeep ? { logitsToKeep } : {});
  } finally {
    session.dispose();
  }
}

/** Re-runs the whole model over the job and judges it; on a multi-hop failure, narrows the blame with disclosures. */
export async function runCheck(input: RunCheckInput): Promise<CheckVerdict> {
  const { ticket } = input;
  const jobId = ticket.jobId;
  const load = input.loadSpan ?? loadOrtSpan;
  const opts = input.runtimeOptions ?? {};
  let manifest: Manifest;
  try {
    manifest = input.span?.manifest ?? (await loadManifest(input.modelDir));
  } catch (err) {
    return checkerError(jobId, `cannot read the model: ${(err as Error).message}`);
  }
  if ((await manifestHash(manifest)) !== ticket.modelId) return checkerError(jobId, 'this checker holds another model than the ticket names');
  const arch = manifest.architecture;
  if (input.span && (input.span.layers[0] !== 0 || input.span.layers[1] !== arch.numLayers)) return checkerError(jobId, 'the span given does not hold the whole model');
  const planned = await planCheck(ticket, [...input.promptIds, ...(input.prefixIds ?? [])], input.attestations);
  if (!planned.ok) return planned.verdict;
  const plan = planned.plan;
  if (input.tokenIds && (input.tokenIds.length !== plan.generated.length || input.tokenIds.some((t, i) => t !== plan.generated[i]))) {
    return { jobId, status: 'inconclusive', reason: 'bad_request', detail: 'the tokens given differ from the attested tokens', evidence: {} };
  }
  if (plan.generated.some((t) => t >= arch.vocabSize)) {
    // An attested token outside the vocabulary cannot come from the model.
    const step = ticket.prefixTokens + plan.generated.findIndex((t) => t >= arch.vocabSize);
    const last = ticket.route.length - 1;
    return { jobId, status: 'fail', reason: 'sampling_mismatch', hop: last, agentId: ticket.route[last]!.agentId, detail: `step ${step}: token outside the vocabulary`, evidence: { step } };
  }
  const unverifiable = uncheckableReason(manifest);
  if (unverifiable) return checkerError(jobId, unverifiable);
  const tolerances = input.tolerances ?? checkTolerancesFor(ticket.dtype);
  const multiHop = ticket.route.length > 1;
  let verdict: CheckVerdict;
  const owned = input.span ? null : await load(input.modelDir, [0, arch.numLayers], opts).catch((err: Error) => err);
  if (owned instanceof Error) return checkerError(jobId, `cannot load the model: ${owned.message}`);
  const span = input.span ?? owned!;
  try {
    const out = await prefill(span, { kind: 'tokens', ids: plan.sequence }, plan.logitsToKeep);
    if (out.kind !== 'logits') return checkerError(jobId, 'the whole-model span returned no logits');
    verdict = judgeCheck({
      plan,
      hidden: lastRows(out.finalHidden, out.seqLen, arch.hiddenSize, plan.logitsToKeep),
      logits: out.logits,
      hiddenSize: arch.hiddenSize,
      vocabSize: arch.vocabSize,
      sample: sampleToken,
      tolerances,
      blame: multiHop ? undefined : { hop: 0, agentId: ticket.route[0]!.agentId },
    });
  } catch (err) {
    return checkerError(jobId, `recomputation failed: ${(err as Error).message}`);
  } finally {
    if (owned) await owned.close();
  }
  if (verdict.status !== 'fail' || !multiHop) return verdict;
  const { hop: _h, agentId: _a, ...routeWide } = verdict;
  if (!input.disclosures?.length && !input.withheld?.length) {
    return { ...routeWide, detail: `${verdict.detail} (route of ${ticket.route.length} hops: per-hop blame needs the hops' disclosures)` };
  }
  const blamed = await blameHop(plan, input.disclosures ?? [], input.withheld ?? [], input.modelDir, load, opts, tolerances, arch.hiddenSize, arch.vocabSize).catch(
    (err: Error): HopBlame => ({ kind: 'none', detail: `per-hop blame failed: ${err.message}` }),
  );
  if (blamed.kind === 'none') return { ...routeWide, detail: `${verdict.detail}; ${blamed.detail}` };
  return { ...blamed.verdict, evidence: { ...verdict.evidence, ...blamed.verdict.evidence } };
}

/** What per-hop blame found: the hop at fault, or why it names none. */
type HopBlame = { kind: 'hop'; verdict: CheckVerdict } | { kind: 'none'; detail: string };

/**
 * Re-runs hops' spans in route order (all positions of the job in one prefill each) and returns
 * the first hop whose output does not follow from its input. A hop's input: the ticket's tokens
 * for the head, the disclosed boundary (either side's disclosure: the chain binds both to one
 * commitment), else the checker's own output of the hop before when that hop agreed with its own
 * commitments to all it sent. Its output is judged against the disclosed bytes it sent and its
 * own `outputTopLoc` (the last hop: its commitments and tokens). The rules are
 * protocol/hop-blame.ts's. Blame, in order: a disclosure that does not hash to its attestations
 * (its discloser); a boundary whose tensor does not hold one row per position (its sender, which
 * attested it); the first re-run hop whose output disagrees on its exact input, or on the
 * checker's reconstruction when it withheld its own disclosure; then a hop that withheld its
 * disclosure (one that keeps a hop from being re-run first). Otherwise none.
 */
async function blameHop(
  plan: CheckPlan,
  disclosures: readonly HopDisclosure[],
  withheld: readonly number[],
  modelDir: string,
  load: SpanLoader,
  opts: RuntimeOptions,
  tolerances: CheckTolerances,
  hiddenSize: number,
  vocabSize: number,
): Promise<HopBlame> {
  const route = plan.ticket.route;
  const positions = plan.sequence.length;
  const blame = (h: number, reason: 'disclosure_mismatch' | 'hop_output_mismatch', detail: string): HopBlame => ({
    kind: 'hop',
    verdict: { jobId: plan.jobId, status: 'fail', reason, hop: h, agentId: route[h]!.agentId, detail, evidence: {} },
  });
  for (const d of disclosures) {
    const bad = await verifyDisclosure(plan, d);
    if (bad?.status === 'fail') return { kind: 'hop', verdict: bad };
    if (bad) return { kind: 'none', detail: bad.detail };
  }
  const sources = boundarySources(
    route.length,
    disclosures.map((d) => ({ hop: d.hop, inputs: !!d.inputs, outputs: !!d.outputs })),
  );
  /** boundary[b]: activations from hop b-1 into hop b, [positions, hidden]; absent when nobody disclosed them. */
  const boundary: (Float32Array | undefined)[] = [];
  for (let b = 1; b < route.length; b++) {
    const from = sources[b];
    if (from === null || from === undefined) continue;
    const d = disclosures.find((x) => x.hop === from)!;
    const rows = concatRows(from === b - 1 ? d.outputs! : d.inputs!);
    if (rows.length !== positions * hiddenSize) {
      // Both hops attested these bytes; the sender made them.
      return blame(b - 1, 'hop_output_mismatch', `hop ${b - 1} sent hop ${b} ${rows.length / hiddenSize} rows, the job has ${positions} positions`);
    }
    boundary[b] = rows;
  }
  const committed = route.map((_, h) => plan.chunks.some((c) => c.attestations[h]?.outputTopLoc !== undefined));
  const rerun: number[] = [];
  /** Hops whose output disagreed on the checker's reconstruction of their input, while they disclosed theirs or were not asked. */
  const unproven: number[] = [];
  /** The checker's output of the hop just re-run, when it stands for what that hop sent. */
  let reconstruction: Float32Array | undefined;
  for (let h = 0; h < route.length; h++) {
    const run = hopRerun(h, route.length, sources, committed, reconstruction !== undefined);
    const reconstructed = reconstruction;
    reconstruction = undefined;
    if (!run) continue;
    rerun.push(h);
    const hop = route[h]!;
    const span = await load(modelDir, hop.layers, opts);
    try {
      if (span.modelId !== plan.ticket.modelId || span.layers[0] !== hop.layers[0] || span.layers[1] !== hop.layers[1]) {
        throw new Error(`the span loaded for hop ${h} is not layers [${hop.layers.join(', ')}) of the ticket's model`);
      }
      const data = run.input === 'disclosed' ? boundary[h]! : reconstructed;
      const input = run.input === 'tokens' ? ({ kind: 'tokens', ids: plan.sequence } as const) : ({ kind: 'hidden', data: data!, seqLen: positions } as const);
      const out = await prefill(span, input, plan.logitsToKeep);
      let fault: CheckVerdict | null = null;
      let ownBytes = false;
      let complete = false;
      if (run.last) {
        if (out.kind !== 'logits') throw new Error('the last hop span returned no logits');
        const v = judgeCheck({ plan, hidden: lastRows(out.finalHidden, out.seqLen, hiddenSize, plan.logitsToKeep), logits: out.logits, hiddenSize, vocabSize, sample: sampleToken, tolerances, blame: { hop: h, agentId: hop.agentId } });
        if (v.status === 'fail') fault = v;
        ownBytes = v.reason === 'missing_commitment';
      } else {
        if (out.kind !== 'hidden') throw new Error(`hop ${h} span returned logits`);
        const recomputed = asFloat32(out.data);
        if (run.sentDisclosed) fault = judgeHopOutput(plan, h, boundary[h + 1]!, recomputed, positions, hiddenSize, tolerances.hidden);
        if (!fault && run.ownCommitment) {
          const j = judgeHopCommitment(plan, h, recomputed, hiddenSize, tolerances.hidden);
          if (j.kind === 'malformed' || j.kind === 'disagrees') fault = j.verdict;
          ownBytes = j.kind === 'malformed';
          complete = j.kind === 'agrees' && j.complete;
        }
        if (!fault && reconstructs(run, true, complete)) reconstruction = recomputed;
      }
      // A commitment the hop signed that does not even decode is its fault whatever its input.
      if (fault && (ownBytes || mismatchConvicts(run, withheld))) return { kind: 'hop', verdict: fault };
      if (fault) unproven.push(h);
    } finally {
      await span.close();
    }
  }
  // Nobody proven wrong: the blame goes to a hop that withheld its disclosure, if any.
  const unjudged = route.map((_, h) => h).filter((h) => !rerun.includes(h));
  const hopList = (hs: number[]) => `hop${hs.length > 1 ? 's' : ''} ${hs.join(', ')}`;
  const also = unproven.length ? `; ${hopList(unproven)} disagreed on the checker's reconstruction of the input, which only its own disclosure could confirm` : '';
  const w = blameWithholder(route.length, sources, withheld);
  if (w?.boundary) return blame(w.hop, 'disclosure_mismatch', `hop ${w.hop} withheld the activations between hops ${w.boundary - 1} and ${w.boundary}, so ${unjudged.length ? `${hopList(unjudged)} cannot be re-run` : 'they are not known'}${also}`);
  if (w) return blame(w.hop, 'disclosure_mismatch', `hop ${w.hop} withheld its disclosure, and the route's failure is placed on no other hop${also}`);
  if (unjudged.length) return { kind: 'none', detail: `${hopList(unjudged)} cannot be re-run: the activations between hops were not disclosed${also}` };
  if (unproven.length) return { kind: 'none', detail: also.slice(2) };
  return { kind: 'none', detail: 'every hop re-runs consistently on its input' };
}
