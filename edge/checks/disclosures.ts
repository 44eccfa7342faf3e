/**
 * Per-hop blame, the edge's side (docs/trust.md §2, §7). A whole-model check of a multi-hop
 * route that fails says the route is wrong, not which hop. The edge then:
 *
 * 1. asks every hop at once (`POST /v1/checks/inputs`, signed) for the activations it received
 *    and sent, each within `DISCLOSURE_TIMEOUT_MS`;
 * 2. judges each answer against the attempt (`judgeDisclosure`): one chunk per attested chunk,
 *    the sides the hop had, every tensor hashing to the commitment the hop itself attested. A hop
 *    that does not answer in time, refuses, or answers anything else has withheld its disclosure;
 *    one whose answer is larger than a check request can carry has not;
 * 3. forwards one copy of each boundary between hops (`assembleDisclosures`: the chain binds the
 *    sender's and the receiver's side to one commitment), within the checker's body limit, with
 *    the list of withholders, to the checker that failed the route, which re-runs each hop's span
 *    and names the hop at fault, or else a withholder (`protocol/hop-blame.ts`).
 *
 * Withholding also costs reputation at once and puts the hop on probation. The verdict that
 * names a hop opens the dispute (disputes.ts), whose third checkers get the same disclosures.
 *
 * @example
 * const named = await askWithDisclosures({ deps, policy, jobId, attempt, route, byId, checker, request, remaining, steps });
 * if (named) first = named; // names a hop of the route: a dispute opens against it
 */
import { checkInputsMessage, checkInputsResponseSchema } from '../../protocol/agent-api.js';
import { fromBase64Url, readResponseBytes, sha256Hex, utf8 } from '../../protocol/bytes.js';
import { MAX_CHECK_BODY_BYTES, type CheckRequest, type WireDisclosure } from '../../protocol/check.js';
import { boundarySources } from '../../protocol/hop-blame.js';
import { signBytes } from '../../protocol/keys.js';
import type { JobAttemptRecord, RouteCandidate } from '../../db/registry-contract.js';
import type { TrustPolicy } from '../trust/policy.js';
import { reputationDelta } from '../trust/reputation.js';
import { askChecker, type CheckAnswer, type CheckDeps, type CheckStep } from './run-checks.js';

/** A hop that has not disclosed within this (ms) has withheld its disclosure. */
export const DISCLOSURE_TIMEOUT_MS = 8_000;

/** Share of the checker's body limit the forwarded tensors may take (the job record needs the rest). */
const DISCLOSURE_BUDGET_CHARS = Math.floor(MAX_CHECK_BODY_BYTES * 0.75);

export type WithholdingReason =
  /** The edge knows no endpoint for the hop. */
  | 'no_endpoint'
  /** No answer within the timeout, or no connection. */
  | 'no_answer'
  /** An HTTP error (e.g. 404: nothing kept for the job). */
  | 'refused'
  /** Not a disclosure of this job and hop, or not valid tensor data. */
  | 'malformed'
  /** Its chunks are not the attempt's, or a side it had is missing. */
  | 'misaligned'
  /** A tensor does not hash to the commitment the hop attested. */
  | 'commitment_mismatch';

/** What came of asking one hop. */
export type HopDisclosureResult =
  | { hop: number; status: 'disclosed'; dtype: 'float32' | 'float16'; inputs?: string[]; outputs?: string[] }
  | { hop: number; status: 'withheld'; reason: WithholdingReason; detail: string }
  /** It answered, more than a check request can carry: not the hop's fault. */
  | { hop: number; status: 'too_large' };

/**
 * Judges one hop's answer to `POST /v1/checks/inputs` against the attempt: the chunks the
 * attempt holds (by steps), each with the side(s) the hop had (what it received unless it is the
 * head, what it sent unless it is the last hop), every tensor hashing to that hop's attested
 * `inputCommitment` / `outputCommitment`.
 */
export async function judgeDisclosure(attempt: JobAttemptRecord, hop: number, body: unknown): Promise<HopDisclosureResult> {
  const ticket = attempt.ticket.ticket;
  const last = ticket.route.length - 1;
  const withheld = (reason: WithholdingReason, detail: string): HopDisclosureResult => ({ hop, status: 'withheld', reason, detail });
  const parsed = checkInputsResponseSchema.safeParse(body);
  if (!parsed.success) return withheld('malformed', 'the answer is not a disclosure');
  const d = parsed.data;
  if (d.jobId !== ticket.jobId || d.hop !== hop) return withheld('malformed', `the answer discloses job ${d.jobId} hop ${d.hop}`);
  if (d.dtype !== ticket.dtype) return withheld('malformed', `the answer holds ${d.dtype} tensors, the ticket says ${ticket.dtype}`);
  const byStep = new Map(d.chunks.map((c) => [`${c.steps[0]}:${c.steps[1]}`, c]));
  const inputs: string[] = [];
  const outputs: string[] = [];
  for (const [i, chunk] of attempt.chunks.entries()) {
    const att = chunk[hop]?.att;
    if (!att) return withheld('misaligned', `chunk ${i} of the attempt has no attestation of hop ${hop}`);
    const c = byStep.get(`${att.steps[0]}:${att.steps[1]}`);
    if (!c) return withheld('misaligned', `no chunk for steps [${att.steps[0]}, ${att.steps[1]})`);
    for (const [side, text, commitment, list] of [
      ['input', hop > 0 ? c.input : '', att.inputCommitment, inputs],
      ['output', hop < last ? c.output : '', att.outputCommitment, outputs],
    ] as const) {
      if (text === '') continue;
      if (text === undefined) return withheld('misaligned', `no ${side} for steps [${att.steps[0]}, ${att.steps[1]})`);
      let bytes: Uint8Array;
      try {
        bytes = fromBase64Url(text);
      } catch {
        return withheld('malformed', `the ${side} for steps [${att.steps[0]}, ${att.steps[1]}) is not base64url`);
      }
      if ((await sha256Hex(bytes)) !== commitment) return withheld('commitment_mismatch', `the ${side} for steps [${att.steps[0]}, ${att.steps[1]}) does not hash to the attested ${side}Commitment`);
      list.push(text);
    }
  }
  return { hop, status: 'disclosed', dtype: d.dtype, ...(hop > 0 ? { inputs } : {}), ...(hop < last ? { outputs } : {}) };
}

/**
 * What the checker is sent: one copy of each boundary (the sender's, else the receiver's), as
 * long as they fit `budgetChars` in all, and the hops that withheld. `omitted`: boundaries left
 * out for size (nobody's fault: the checker cannot judge the hops beside them).
 */
export function assembleDisclosures(
  hops: number,
  results: readonly HopDisclosureResult[],
  budgetChars = DISCLOSURE_BUDGET_CHARS,
): { disclosures: WireDisclosure[]; withheld: number[]; omitted: number[] } {
  const disclosed = results.filter((r): r is Extract<HopDisclosureResult, { status: 'disclosed' }> => r.status === 'disclosed');
  const sources = boundarySources(hops, disclosed.map((r) => ({ hop: r.hop, inputs: !!r.inputs, outputs: !!r.outputs })));
  const byHop = new Map<number, WireDisclosure>();
  const omitted: number[] = [];
  let budget = budgetChars;
  for (let b = 1; b < hops; b++) {
    const from = sources[b];
    if (from === null || from === undefined) continue;
    const r = disclosed.find((x) => x.hop === from)!;
    const tensors = from === b - 1 ? r.outputs! : r.inputs!;
    const size = tensors.reduce((n, t) => n + t.length, 0);
    if (size > budget) {
      omitted.push(b);
      continue;
    }
    budget -= size;
    const w = byHop.get(from) ?? { hop: from, dtype: r.dtype };
    if (from === b - 1) w.outputs = tensors;
    else w.inputs = tensors;
    byHop.set(from, w);
  }
  return {
    disclosures: [...byHop.values()].sort((a, b) => a.hop - b.hop),
    withheld: results.filter((r) => r.status === 'withheld').map((r) => r.hop).sort((a, b) => a - b),
    omitted,
  };
}

/** Asks one hop for its disclosure and judges the answer. */
async function askHop(deps: CheckDeps, attempt: JobAttemptRecord, hop: number, endpoint: string | undefined, timeoutMs: number): Promise<HopDisclosureResult> {
  const ticket = attempt.ticket.ticket;
  if (!endpoint) return { hop, status: 'withheld', reason: 'no_endpoint', detail: 'the edge knows no endpoint for this hop' };
  const base = { jobId: ticket.jobId, hop, issuedAt: deps.clock.now() };
  // A middle hop answers both sides; each fits the budget or is of no use.
  const sides = (hop > 0 ? 1 : 0) + (hop < ticket.route.length - 1 ? 1 : 0);
  try {
    const signature = await signBytes(deps.signingKey.privateKey, utf8(checkInputsMessage(base)));
    const res = await deps.transport(new URL('/v1/checks/inputs', endpoint).toString(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...base, signature }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const bytes = await readResponseBytes(res, sides * DISCLOSURE_BUDGET_CHARS + 64 * 1024);
    if (!res.ok) return { hop, status: 'withheld', reason: 'refused', detail: `HTTP ${res.status}` };
    if (bytes === null) return { hop, status: 'too_large' };
    let body: unknown;
    try {
      body = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return { hop, status: 'withheld', reason: 'malformed', detail: 'the answer is not JSON' };
    }
    return await judgeDisclosure(attempt, hop, body);
  } catch (err) {
    return { hop, status: 'withheld', reason: 'no_answer', detail: err instanceof Error ? err.message : String(err) };
  }
}

/** A hop whose connection failed at once is asked once more after this, ms (a blip is not withholding). */
const RECONNECT_MS = 500;

/**
 * Asks every hop of the attempt at once, in hop order, each within `timeoutMs`: a hop whose
 * connection fails is asked once more while that time lasts; one that stays silent is not.
 */
export async function gatherDisclosures(deps: CheckDeps, attempt: JobAttemptRecord, endpoints: ReadonlyMap<string, string>, timeoutMs: number): Promise<HopDisclosureResult[]> {
  const route = attempt.ticket.ticket.route;
  const ask = async (hop: number): Promise<HopDisclosureResult> => {
    const started = deps.clock.now();
    const first = await askHop(deps, attempt, hop, endpoints.get(route[hop]!.agentId), timeoutMs);
    const left = timeoutMs - (deps.clock.now() - started) - RECONNECT_MS;
    if (first.status !== 'withheld' || first.reason !== 'no_answer' || left < 1_000) return first;
    await new Promise((r) => setTimeout(r, RECONNECT_MS));
    return askHop(deps, attempt, hop, endpoints.get(route[hop]!.agentId), left);
  };
  return Promise.all(route.map((_, hop) => ask(hop)));
}

export interface HopBlameInput {
  deps: CheckDeps;
  policy: TrustPolicy;
  jobId: string;
  attempt: JobAttemptRecord;
  /** Agent ids of the attempt's route, in hop order. */
  route: string[];
  byId: ReadonlyMap<string, RouteCandidate>;
  /** The checker whose verdict failed the route (asked again); undefined: not a candidate now. */
  checker: RouteCandidate | undefined;
  /** The check request; gets the disclosures and withholders (third checkers are sent the same). */
  request: CheckRequest;
  /** Timeout for the next call, ms; 0: the check's time budget is spent. */
  remaining: () => number;
  steps: CheckStep[];
}

/** A checker busy with another check answers 503 (no verdict): asked again this often, ms. */
const BUSY_RETRY_MS = 300;
const CHECKER_TRIES = 4;

/** What asking the hops for their disclosures gave, ready for a check request. */
export interface GatheredDisclosures {
  results: HopDisclosureResult[];
  /** One copy of each boundary, within the checker's body limit. */
  disclosures: WireDisclosure[];
  /** Hops that withheld, in order. */
  withheld: number[];
  /** Boundaries left out for size. */
  omitted: number[];
  /** The job entry that names the withholders (null: nobody withheld); the caller records it. */
  withheldEntry: { kind: 'disclosure_withheld'; hops: number[]; agentIds: string[]; reasons: WithholdingReason[] } | null;
}

/**
 * Asks every hop of the attempt for its disclosure, penalises the withholders at once
 * (reputation, probation) and assembles what a checker is sent. Null when the time budget is
 * spent. Used after a whole-route check failed (`askWithDisclosures`) and before hop checks
 * (span-checks.ts), which need the boundaries to run at all.
 */
export async function gatherForCheck(input: Pick<HopBlameInput, 'deps' | 'policy' | 'jobId' | 'attempt' | 'route' | 'byId' | 'remaining'>): Promise<GatheredDisclosures | null> {
  const { deps, policy, jobId, attempt, route, remaining } = input;
  const endpoints = new Map<string, string>();
  for (const id of route) {
    const endpoint = input.byId.get(id)?.endpoint ?? (await deps.store.getAgent(id))?.endpoint;
    if (endpoint) endpoints.set(id, endpoint);
  }
  const timeoutMs = Math.min(DISCLOSURE_TIMEOUT_MS, remaining());
  if (!timeoutMs) return null;
  const results = await gatherDisclosures(deps, attempt, endpoints, timeoutMs);
  const { disclosures, withheld, omitted } = assembleDisclosures(route.length, results);
  // Withholding what it attested to is a fault in itself: a reputation loss and probation at once
  // (every later job of it re-executed); the checker names it when its silence stops the blame.
  for (const r of results) {
    if (r.status !== 'withheld') continue;
    const id = route[r.hop]!;
    deps.log({ level: 'warn', msg: 'hop withheld its disclosure', jobId, hop: r.hop, agentId: id, reason: r.reason, detail: r.detail });
    const current = (await deps.store.getAgent(id))?.reputation;
    if (current === undefined) continue;
    const delta = reputationDelta(current, { kind: 'job_failed' }, policy);
    if (delta !== 0) await deps.store.adjustReputation(id, delta, 'disclosure_withheld', { jobId, hop: r.hop, reason: r.reason }, deps.clock.now());
    await deps.store.setProbation(id, true);
  }
  if (omitted.length) deps.log({ level: 'warn', msg: 'disclosures too large for a check request: boundaries left out', jobId, boundaries: omitted });
  const reasons = results.flatMap((r) => (r.status === 'withheld' ? [r.reason] : []));
  const withheldEntry = withheld.length ? { kind: 'disclosure_withheld' as const, hops: withheld, agentIds: withheld.map((h) => route[h]!), reasons } : null;
  return { results, disclosures, withheld, omitted, withheldEntry };
}

/**
 * Gathers the hops' disclosures, penalises the withholders, and asks the checker that failed the
 * route again with them. Returns its failing verdict (naming a hop, when blame could be placed),
 * or null when there was nothing to ask with or no answer came.
 */
export async function askWithDisclosures(input: HopBlameInput): Promise<CheckAnswer | null> {
  const { deps, jobId, request, remaining } = input;
  const record = (entry: unknown) => deps.store.recordCheck({ jobId, status: 'fail', entry, at: deps.clock.now() });
  const gathered = await gatherForCheck(input);
  if (!gathered) return null;
  const { results, disclosures, withheld } = gathered;
  if (gathered.withheldEntry) await record(gathered.withheldEntry);
  if (!input.checker || (disclosures.length === 0 && withheld.length === 0)) return null;
  request.disclosures = disclosures;
  if (withheld.length) request.withheld = withheld;
  let answer: CheckAnswer | null = null;
  for (let i = 0; i < CHECKER_TRIES && !answer; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, BUSY_RETRY_MS));
    const left = remaining();
    if (!left) break;
    answer = await askChecker(deps, input.checker, request, left);
  }
  input.steps.push({ checkerId: input.checker.agentId, status: answer?.verdict.status ?? null });
  // The route failed its check whatever this answer says; the job stays 'fail'.
  const disclosedHops = results.filter((r) => r.status === 'disclosed').map((r) => r.hop);
  if (answer) await record({ kind: 'check', checkerId: input.checker.agentId, disclosedHops, ...(withheld.length ? { withheldHops: withheld } : {}), verdict: answer.signed });
  return answer?.verdict.status === 'fail' ? answer : null;
}
