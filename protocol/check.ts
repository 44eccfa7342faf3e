import { segmentEvidenceSchema, segmentRequestSchema, type SegmentEvidence } from './segment.js';
import { z } from 'zod';
import { MAX_PROMPT_TOKENS } from './agent-api.js';
import { signedAttestationSchema, type Attestation, type SignedAttestation } from './attestation.js';
import { bytesOf, encodeTokenIds, fromBase64Url, sha256Hex, utf8 } from './bytes.js';
import { canonicalJson, type CanonicalValue } from './canonical.js';
import { commitHidden, compareHidden, tolerancesFor, type CompareResult, type CompareTolerances } from './commitment.js';
import { signBytes, verifyBytes } from './keys.js';
import { signedTicketSchema, type JobTicket, type SamplingParams } from './ticket.js';

/**
 * Re-execution checks, the pure part: what to recompute for a finished job, and the verdict from
 * the recomputation. The runtime side (loading spans, running the prefill) is
 * pool-agent/verify/checker.ts; this file imports no runtime.
 *
 * A check is one teacher-forced prefill over input ++ generated[0 .. n-2] with logitsToKeep = n:
 * the kept logits row j predicts generated[j], and the final hidden row of the same position is
 * what the last hop committed to for that step. Two tests per step:
 *  - the TOPLOC commitment of the chunk matches the recomputed rows (same model, prompt, precision);
 *  - the ticket's sampler on the recomputed logits gives the token the node returned, so a node
 *    cannot decode with a cheap model and commit with the real one, nor return plausible noise.
 *
 * @example
 * const planned = await planCheck(ticket, [...promptIds, ...prefixIds], chunks);
 * if (!planned.ok) return planned.verdict;
 * const plan = planned.plan;
 * const out = await session.forward({ kind: 'tokens', ids: Int32Array.from(plan.sequence) }, { logitsToKeep: plan.logitsToKeep });
 * const verdict = judgeCheck({ plan, hidden: lastRows(out.finalHidden, out.seqLen, H, plan.logitsToKeep), logits: out.logits, hiddenSize: H, vocabSize: V, sample: sampleToken });
 */

export type CheckFailure =
  /** Input the checker was given does not match the ticket (not the node's fault: inconclusive). */
  | 'bad_request'
  /** The last hop's chunk carries no hidden commitment, or one that does not decode. */
  | 'missing_commitment'
  /** The TOPLOC commitment differs from the recomputed final hidden rows. */
  | 'hidden_mismatch'
  /** The returned token is not what the ticket's sampler gives on the recomputed logits. */
  | 'sampling_mismatch'
  /** Per-hop blame: this hop's disclosed output differs from a re-run of its span on its disclosed input. */
  | 'hop_output_mismatch'
  /** Per-hop blame: disclosed activations do not hash to the attested commitments. */
  | 'disclosure_mismatch'
  /** The checker could not run (model missing, runtime error): no one is blamed. */
  | 'checker_error';

export interface CheckEvidence {
  /** First step that failed, when a step did. */
  step?: number;
  /** Token the node returned / token the recomputation samples at that step. */
  returnedToken?: number;
  expectedToken?: number;
  /** Logit of each (recomputed), to tell near-ties from cheating. */
  returnedLogit?: number;
  expectedLogit?: number;
  /** Commitment comparison: the failing chunk's figures on a hidden mismatch, else the worst figures over all chunks. */
  hidden?: Omit<CompareResult, 'ok'>;
  /** Steps whose sampled token only matched after a near-tie allowance (honest float noise). */
  nearTies?: number[];
  stepsChecked?: number;
  /** A segment of a hop check (protocol/segment.ts): the layers re-run and the hashes of its input and output rows. */
  segment?: SegmentEvidence;
}

export interface CheckVerdict {
  jobId: string;
  /** pass: recomputation agrees; fail: a node is at fault; inconclusive: the check itself could not decide. */
  status: 'pass' | 'fail' | 'inconclusive';
  reason?: CheckFailure;
  /** Hop blamed (route index) and its agent, when known. A fail without a hop blames the whole route. */
  hop?: number;
  agentId?: string;
  /** A hop check's scope: the one hop of the route it re-ran (absent: a check of the whole route). */
  checkedHop?: number;
  detail: string;
  evidence: CheckEvidence;
}

/** The ticket sampler: same signature as pool-agent/runtime/sampler.ts `sampleToken`. */
export type SampleFn = (logits: Float32Array, sampling: SamplingParams, step: number) => number;

export interface CheckChunk {
  steps: [number, number];
  tokenIds: number[];
  hiddenCommitment: string | undefined;
  /** Every hop's attestation of this chunk, in route order. */
  attestations: Attestation[];
}

export interface CheckPlan {
  jobId: string;
  ticket: JobTicket;
  /** promptIds ++ prefixIds: what hashes to ticket.inputHash. */
  inputLength: number;
  /** Token ids of the teacher-forced prefill: input ++ generated[0 .. n-2]. */
  sequence: number[];
  /** n: one kept logits row (and one committed hidden row) per generated token. */
  logitsToKeep: number;
  /** Generated tokens, steps ticket.prefixTokens .. +n. */
  generated: number[];
  chunks: CheckChunk[];
}

export type PlanResult = { ok: true; plan: CheckPlan } | { ok: false; verdict: CheckVerdict };

/** Longest sequence one check recomputes (bounded work per check). */
export const MAX_CHECK_POSITIONS = 65_536;

const chunksSchema = z.array(z.array(signedAttestationSchema).min(1).max(16)).min(1).max(MAX_CHECK_POSITIONS);

function inconclusive(jobId: string, reason: CheckFailure, detail: string): CheckVerdict {
  return { jobId, status: 'inconclusive', reason, detail, evidence: {} };
}

/**
 * Lays out a check from the job record the edge kept: the ticket, the exact input ids and the
 * attestation chunks (each chunk: every hop's signed attestation, as in a `chunk` JobEvent).
 * The edge verified signatures and chaining inline (ChainVerifier); this only re-reads the layout
 * and refuses records that do not hang together (inconclusive, never a node's fault).
 */
export async function planCheck(ticket: JobTicket, inputIds: readonly number[], chunksInput: readonly (readonly SignedAttestation[])[] | unknown): Promise<PlanResult> {
  const jobId = ticket.jobId;
  const bad = (detail: string): PlanResult => ({ ok: false, verdict: inconclusive(jobId, 'bad_request', detail) });
  if (inputIds.length !== ticket.promptTokens + ticket.prefixTokens) return bad(`input has ${inputIds.length} ids, ticket says ${ticket.promptTokens} + ${ticket.prefixTokens}`);
  if ((await sha256Hex(encodeTokenIds(inputIds))) !== ticket.inputHash) return bad('input ids do not hash to ticket.inputHash');
  const parsed = chunksSchema.safeParse(chunksInput);
  if (!parsed.success) return bad('attestation chunks do not match the schema');
  const chunks: CheckChunk[] = [];
  const generated: number[] = [];
  let next = ticket.prefixTokens;
  for (const signed of parsed.data) {
    const atts = signed.map((s) => s.att);
    const last = atts[atts.length - 1]!;
    if (atts.length !== ticket.route.length) return bad(`chunk at step ${next} has ${atts.length} hops, route has ${ticket.route.length}`);
    if (atts.some((a) => a.jobId !== jobId)) return bad('chunk attests another job');
    const [from, to] = last.steps;
    if (from !== next || to <= from) return bad(`chunk steps [${from}, ${to}) do not follow step ${next}`);
    const ids = last.outputTokenIds;
    if (!ids || ids.length !== to - from) return bad(`chunk [${from}, ${to}) lists ${ids?.length ?? 0} tokens`);
    chunks.push({ steps: [from, to], tokenIds: ids, hiddenCommitment: last.hiddenCommitment, attestations: atts });
    generated.push(...ids);
    next = to;
  }
  const n = generated.length;
  if (inputIds.length + n - 1 > MAX_CHECK_POSITIONS) return bad(`check would recompute ${inputIds.length + n - 1} positions`);
  return {
    ok: true,
    plan: { jobId, ticket, inputLength: inputIds.length, sequence: [...inputIds, ...generated.slice(0, -1)], logitsToKeep: n, generated, chunks },
  };
}

/** The last `n` rows of a [seqLen, hidden] tensor (no copy). */
export function lastRows(data: Float32Array, seqLen: number, hiddenSize: number, n: number): Float32Array {
  return data.subarray((seqLen - n) * hiddenSize, seqLen * hiddenSize);
}

export interface CheckTolerances {
  hidden: CompareTolerances;
  /**
   * Near-tie allowance for sampling: a returned token that differs from the recomputed sample is
   * accepted when raising its recomputed logit by this much makes the sampler pick it (float noise
   * can flip an argmax tie or a CDF boundary; a cheater gains nothing from tokens this close).
   */
  logitTieEpsilon: number;
}

export function checkTolerancesFor(dtype: 'float32' | 'float16'): CheckTolerances {
  return { hidden: tolerancesFor(dtype), logitTieEpsilon: dtype === 'float32' ? 1e-3 : 3e-2 };
}

export interface JudgeInput {
  plan: CheckPlan;
  /** Recomputed final hidden rows of the n positions that produced generated tokens, [n, hidden]. */
  hidden: Float32Array;
  /** Recomputed logits of the same positions, [n, vocab]. */
  logits: Float32Array;
  hiddenSize: number;
  vocabSize: number;
  sample: SampleFn;
  tolerances?: CheckTolerances;
  /** Route index and agent blamed when a step fails (default: the last hop, which committed). */
  blame?: { hop: number; agentId: string };
}

function samplingAgrees(logits: Float32Array, token: number, sampling: SamplingParams, step: number, sample: SampleFn, eps: number): 'exact' | 'near_tie' | 'no' {
  const expected = sample(logits, sampling, step);
  if (expected === token) return 'exact';
  if (!(token >= 0 && token < logits.length)) return 'no';
  const bumped = Float32Array.from(logits);
  bumped[token] = bumped[token]! + eps;
  return sample(bumped, sampling, step) === token ? 'near_tie' : 'no';
}

/** The verdict of a full-route check: every chunk's commitment, then every step's token. */
export function judgeCheck(input: JudgeInput): CheckVerdict {
  const { plan, hiddenSize: H, vocabSize: V, sample } = input;
  const tol = input.tolerances ?? checkTolerancesFor(plan.ticket.dtype);
  const n = plan.logitsToKeep;
  const lastHop = plan.ticket.route.length - 1;
  const blame = input.blame ?? { hop: lastHop, agentId: plan.ticket.route[lastHop]!.agentId };
  const jobId = plan.jobId;
  if (input.hidden.length !== n * H || input.logits.length !== n * V) {
    return { jobId, status: 'inconclusive', reason: 'checker_error', detail: `recomputation shapes [${input.hidden.length}], [${input.logits.length}] for ${n} rows`, evidence: {} };
  }
  const fail = (reason: CheckFailure, detail: string, evidence: CheckEvidence): CheckVerdict => ({ jobId, status: 'fail', reason, ...blame, detail, evidence });
  let worst: Omit<CompareResult, 'ok'> | undefined;
  let row = 0;
  for (const chunk of plan.chunks) {
    const rows = chunk.steps[1] - chunk.steps[0];
    const step = chunk.steps[0];
    if (chunk.hiddenCommitment === undefined) return fail('missing_commitment', `chunk at step ${step} carries no hidden commitment`, { step });
    const cmp = compareHidden(chunk.hiddenCommitment, input.hidden.subarray(row * H, (row + rows) * H), rows, H, tol.hidden);
    const { ok, ...stats } = cmp;
    worst = worst
      ? {
          maxExpMismatch: Math.max(worst.maxExpMismatch, stats.maxExpMismatch),
          mantissaErrMean: Math.max(worst.mantissaErrMean, stats.mantissaErrMean),
          mantissaErrMedian: Math.max(worst.mantissaErrMedian, stats.mantissaErrMedian),
          indexOverlap: Math.min(worst.indexOverlap, stats.indexOverlap),
          failedRow: -1,
          detail: 'worst figures over the chunks checked',
        }
      : { ...stats, failedRow: -1, detail: 'worst figures over the chunks checked' };
    if (!ok) {
      const failedStep = cmp.failedRow >= 0 ? step + cmp.failedRow : step;
      return fail(cmp.failedRow >= 0 ? 'hidden_mismatch' : 'missing_commitment', `step ${failedStep}: ${cmp.detail}`, { step: failedStep, hidden: stats });
    }
    row += rows;
  }
  const nearTies: number[] = [];
  for (let j = 0; j < n; j++) {
    const step = plan.ticket.prefixTokens + j;
    const logits = input.logits.subarray(j * V, (j + 1) * V);
    const token = plan.generated[j]!;
    const agree = samplingAgrees(logits, token, plan.ticket.sampling, step, sample, tol.logitTieEpsilon);
    if (agree === 'near_tie') nearTies.push(step);
    if (agree === 'no') {
      const expected = sample(logits, plan.ticket.sampling, step);
      return fail('sampling_mismatch', `step ${step}: returned token ${token}, the ticket's sampler gives ${expected}`, {
        step,
        returnedToken: token,
        expectedToken: expected,
        returnedLogit: token < V ? logits[token] : undefined,
        expectedLogit: logits[expected],
        hidden: worst,
        stepsChecked: j,
      });
    }
  }
  return { jobId, status: 'pass', detail: `${n} steps agree`, evidence: { hidden: worst, nearTies, stepsChecked: n } };
}

/** Commitment to hidden activations exchanged between hops: SHA-256 (hex) of the raw little-endian tensor bytes. */
export function activationCommitment(data: Float32Array | Uint16Array): Promise<string> {
  return sha256Hex(bytesOf(data));
}

/**
 * What a hop discloses when its route is disputed: the activations it received and sent for
 * every chunk of the job (agents keep them for a window). Head hops receive tokens (their input
 * is bound by ticket.inputHash and the chain); the last hop's output is the tokens and commitment.
 */
export interface HopDisclosure {
  hop: number;
  /** Per chunk, in order: the tensor this hop received ([rows, hidden]); absent for hop 0. */
  inputs?: Array<Float32Array | Uint16Array>;
  /** Per chunk, in order: the tensor this hop sent; absent for the last hop. */
  outputs?: Array<Float32Array | Uint16Array>;
}

/**
 * Checks that disclosed tensors hash to the attested commitments, chunk by chunk. A disclosure
 * may hold only one side (the edge forwards one copy of each boundary): the sides it holds must
 * cover every chunk.
 */
export async function verifyDisclosure(plan: CheckPlan, d: HopDisclosure): Promise<CheckVerdict | null> {
  const hop = plan.ticket.route[d.hop];
  if (!hop) return inconclusive(plan.jobId, 'bad_request', `no hop ${d.hop} in the route`);
  const fail = (detail: string): CheckVerdict => ({ jobId: plan.jobId, status: 'fail', reason: 'disclosure_mismatch', hop: d.hop, agentId: hop.agentId, detail, evidence: {} });
  const lastHop = plan.ticket.route.length - 1;
  for (const [field, list, needed] of [
    ['inputCommitment', d.inputs, d.hop > 0],
    ['outputCommitment', d.outputs, d.hop < lastHop],
  ] as const) {
    if (!needed || !list) continue;
    if (list.length !== plan.chunks.length) return fail(`hop ${d.hop} disclosed ${list.length} ${field} tensors for ${plan.chunks.length} chunks`);
    for (let c = 0; c < plan.chunks.length; c++) {
      const att = plan.chunks[c]!.attestations[d.hop]!;
      if ((await activationCommitment(list[c]!)) !== att[field]) return fail(`hop ${d.hop} chunk ${c}: disclosed tensor does not hash to the attested ${field}`);
    }
  }
  return null;
}

/**
 * Per-hop blame for a middle hop: its disclosed output against a re-run of its span on its
 * disclosed input (rows = every position of the job, [rows, hidden]). Compared TOPLOC-style with
 * all rows committed from the disclosed output.
 */
export function judgeHopOutput(plan: CheckPlan, hop: number, disclosed: Float32Array, recomputed: Float32Array, rows: number, hiddenSize: number, tolerances?: CompareTolerances): CheckVerdict | null {
  const agentId = plan.ticket.route[hop]?.agentId;
  const tol = tolerances ?? tolerancesFor(plan.ticket.dtype);
  const chunkRows = Math.min(rows, 512);
  for (let start = 0; start < rows; start += chunkRows) {
    const count = Math.min(chunkRows, rows - start);
    const c = commitHidden(disclosed.subarray(start * hiddenSize, (start + count) * hiddenSize), count, hiddenSize);
    const r = compareHidden(c, recomputed.subarray(start * hiddenSize, (start + count) * hiddenSize), count, hiddenSize, tol);
    if (!r.ok) {
      const { ok: _ok, ...stats } = r;
      return { jobId: plan.jobId, status: 'fail', reason: 'hop_output_mismatch', hop, agentId, detail: `hop ${hop} position ${start + Math.max(0, r.failedRow)}: ${r.detail}`, evidence: { hidden: stats } };
    }
  }
  return null;
}

// ---------------------------------------------------------------- wire forms (edge <-> checker)

/** Longest base64url string of one disclosed tensor (48 MiB of tensor bytes). */
export const MAX_DISCLOSED_TENSOR_CHARS = 64 * 1024 * 1024;

/** A hop's disclosure as JSON: raw little-endian tensor bytes, base64url, one per chunk. */
export const wireDisclosureSchema = z.object({
  hop: z.number().int().nonnegative().max(15),
  dtype: z.enum(['float32', 'float16']),
  inputs: z.array(z.string().max(MAX_DISCLOSED_TENSOR_CHARS)).max(MAX_CHECK_POSITIONS).optional(),
  outputs: z.array(z.string().max(MAX_DISCLOSED_TENSOR_CHARS)).max(MAX_CHECK_POSITIONS).optional(),
});
export type WireDisclosure = z.infer<typeof wireDisclosureSchema>;

/** Decodes a wire disclosure; null when a tensor is not valid base64url of whole elements. */
export function decodeDisclosure(w: WireDisclosure): HopDisclosure | null {
  const size = w.dtype === 'float32' ? 4 : 2;
  const decode = (list: string[] | undefined): Array<Float32Array | Uint16Array> | undefined | null => {
    if (!list) return undefined;
    const out: Array<Float32Array | Uint16Array> = [];
    for (const text of list) {
      let bytes: Uint8Array;
      try {
        bytes = fromBase64Url(text);
      } catch {
        return null;
      }
      if (bytes.length % size !== 0) return null;
      const copy = bytes.slice().buffer;
      out.push(size === 4 ? new Float32Array(copy) : new Uint16Array(copy));
    }
    return out;
  };
  const inputs = decode(w.inputs);
  const outputs = decode(w.outputs);
  if (inputs === null || outputs === null) return null;
  return { hop: w.hop, ...(inputs ? { inputs } : {}), ...(outputs ? { outputs } : {}) };
}

/**
 * What the edge sends a checker agent (`POST /v1/checks` on the pool agent): the job record.
 * The checker verifies the ticket's edge signature like any job, then calls runCheck.
 */
export const checkRequestSchema = z.object({
  signedTicket: signedTicketSchema,
  promptIds: z.array(z.number().int().nonnegative()).min(1).max(MAX_PROMPT_TOKENS),
  prefixIds: z.array(z.number().int().nonnegative()).max(MAX_PROMPT_TOKENS),
  attestations: chunksSchema,
  disclosures: z.array(wireDisclosureSchema).max(16).optional(),
  /**
   * Hops the edge asked for their disclosure that did not produce one usable (no answer in time,
   * a refusal, chunks that do not line up, tensors that do not hash to their attestations). A
   * hop the blame cannot reach because of them is blamed on them (protocol/hop-blame.ts).
   */
  withheld: z.array(z.number().int().nonnegative().max(15)).max(16).optional(),
  /**
   * A hop check (docs/trust.md §2, span checkers): re-run only this hop of the route, on the
   * boundaries into and out of it that `disclosures` carry (protocol/hop-check.ts). Absent: the
   * whole route.
   */
  hop: z.number().int().nonnegative().max(15).optional(),
  /** Re-run only these layers of `hop` (protocol/segment.ts: a chain of checkers covering the hop). */
  segment: segmentRequestSchema.optional(),
}).refine((r) => r.segment === undefined || r.hop !== undefined, { message: 'a segment is part of a hop check', path: ['segment'] });
export type CheckRequest = z.infer<typeof checkRequestSchema>;

const finite = z.number().nullable().optional();
export const checkVerdictSchema = z.object({
  jobId: z.string().min(1).max(64),
  status: z.enum(['pass', 'fail', 'inconclusive']),
  reason: z.enum(['bad_request', 'missing_commitment', 'hidden_mismatch', 'sampling_mismatch', 'hop_output_mismatch', 'disclosure_mismatch', 'checker_error']).optional(),
  hop: z.number().int().nonnegative().max(15).optional(),
  agentId: z.string().max(64).optional(),
  checkedHop: z.number().int().nonnegative().max(15).optional(),
  detail: z.string().max(4096),
  evidence: z
    .object({
      step: z.number().int().nonnegative().optional(),
      returnedToken: z.number().int().optional(),
      expectedToken: z.number().int().optional(),
      returnedLogit: finite,
      expectedLogit: finite,
      hidden: z
        .object({ maxExpMismatch: finite, mantissaErrMean: finite, mantissaErrMedian: finite, indexOverlap: finite, failedRow: z.number().int(), detail: z.string().max(4096) })
        .optional(),
      nearTies: z.array(z.number().int().nonnegative()).max(MAX_CHECK_POSITIONS).optional(),
      stepsChecked: z.number().int().nonnegative().optional(),
      segment: segmentEvidenceSchema.optional(),
    })
    .strip(),
});

/** A verdict as JSON: non-finite figures (an unusable commitment's Infinity) become null. */
export function verdictToJson(v: CheckVerdict): CanonicalValue {
  return JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : x))) as CanonicalValue;
}

export const VERDICT_DOMAIN = 'layernet.verdict/1\n';

export interface SignedVerdict {
  checkerId: string;
  /** verdictToJson(verdict). */
  verdict: CanonicalValue;
  issuedAt: number;
  sig: string;
}

function verdictBytes(checkerId: string, verdict: CanonicalValue, issuedAt: number): Uint8Array {
  return utf8(VERDICT_DOMAIN + canonicalJson({ checkerId, verdict, issuedAt }));
}

/** The checker signs its verdict with its agent key: disputes keep it as evidence. */
export async function signVerdict(privateKey: CryptoKey, checkerId: string, verdict: CheckVerdict, issuedAt: number): Promise<SignedVerdict> {
  const json = verdictToJson(verdict);
  return { checkerId, verdict: json, issuedAt, sig: await signBytes(privateKey, verdictBytes(checkerId, json, issuedAt)) };
}

export const signedVerdictSchema = z.object({ checkerId: z.string().min(1).max(64), verdict: z.unknown(), issuedAt: z.number().int().positive(), sig: z.string().max(128) });

/**
 * Checks a signed verdict from the network: shape, signature under the checker's registered key.
 * Returns the verdict (figures that were non-finite read as null) or null.
 */
export async function verifyVerdict(input: unknown, checkerPublicKey: string): Promise<{ checkerId: string; verdict: z.infer<typeof checkVerdictSchema>; issuedAt: number } | null> {
  const parsed = signedVerdictSchema.safeParse(input);
  if (!parsed.success) return null;
  const v = checkVerdictSchema.safeParse(parsed.data.verdict);
  if (!v.success) return null;
  let bytes: Uint8Array;
  try {
    bytes = verdictBytes(parsed.data.checkerId, parsed.data.verdict as CanonicalValue, parsed.data.issuedAt);
  } catch {
    return null;
  }
  if (!(await verifyBytes(checkerPublicKey, parsed.data.sig, bytes))) return null;
  return { checkerId: parsed.data.checkerId, verdict: v.data, issuedAt: parsed.data.issuedAt };
}

// ---------------------------------------------------------------- signed check requests (edge -> checker)

/** Path of the check endpoint on a pool agent (whole-model agents; for a hop check, also agents holding that hop's span). */
export const CHECK_PATH = '/v1/checks';
/** Header with the edge's Ed25519 signature (base64url) over `checkRequestMessage`. */
export const CHECK_SIGNATURE_HEADER = 'x-layernet-edge-signature';
/** Header with the signing time (epoch ms) covered by the signature. */
export const CHECK_ISSUED_AT_HEADER = 'x-layernet-issued-at';
/** Largest check request body a checker reads. */
export const MAX_CHECK_BODY_BYTES = 8 * 1024 * 1024;

/**
 * What the edge signs to ask `checkerId` for a check: the SHA-256 (hex) of the exact JSON body
 * bytes, so a signed request cannot be replayed to another agent or with another body.
 *
 * @example
 * const sig = await signBytes(edgeKey, utf8(checkRequestMessage(checkerId, Date.now(), await sha256Hex(body))));
 */
export function checkRequestMessage(checkerId: string, issuedAt: number, bodySha256Hex: string): string {
  return `layernet.check-request/1\n${checkerId}\n${issuedAt}\n${bodySha256Hex}`;
}
