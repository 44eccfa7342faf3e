/**
 * Optimistic re-execution checks, wired end to end (docs/trust.md §2-§4). After a job finishes,
 * off the response path:
 *
 * 1. `shouldCheck(jobId, CHECK_SECRET, routeCheckRate(route))` decides whether it is checked
 *    (CHECK_RATE_OVERRIDE forces the rate);
 * 2. an independent checker is picked: an active agent holding the whole model, with a fresh
 *    heartbeat, of another owner than every hop of the route; the edge signs a check request
 *    for it (`POST /v1/checks`) and verifies the verdict under the checker's registered key.
 *    Without one, a multi-hop route is checked hop by hop by agents holding each hop's span
 *    (span-checks.ts), on the hops' disclosures;
 * 3. `pass`: every hop's reputation and checks-passed counter go up; `inconclusive`: one other
 *    checker is tried; `fail`: a dispute opens (accused on probation) and third checkers outside
 *    `ineligibleThirdCheckers` (and of yet other owners) re-run the job until `transition`
 *    settles it; its effects are applied: slash (ledger entry with the signed verdicts as
 *    evidence, status 'slashed', reputation 0), exclusion, reputation, probation.
 *
 * Exclusion is immediate in the registry (candidate queries return active agents only) and in
 * this isolate's candidate cache (cleared here); other isolates' caches expire within
 * `candidateCacheTtlMs` (2 s by default).
 *
 * Every step is recorded on the job (`jobs.check_status`, `jobs.checks`).
 *
 * @example
 * deps.waitUntil(record.then(() => checkFinishedJob(deps, { jobId, modelId, numLayers, promptIds, tokenIds, attempts })));
 */
import {
  CHECK_ISSUED_AT_HEADER,
  CHECK_PATH,
  CHECK_SIGNATURE_HEADER,
  checkRequestMessage,
  verifyVerdict,
  type CheckRequest,
  type CheckVerdict,
} from '../../protocol/check.js';
import { readResponseBytes, sha256Hex, utf8 } from '../../protocol/bytes.js';
import { MAX_SEGMENT_CHARS, segmentAnswerSchema } from '../../protocol/segment.js';
import { signBytes } from '../../protocol/keys.js';
import type { EdgeDeps } from '../deps.js';
import type { JobAttemptRecord, RouteCandidate } from '../../db/registry-contract.js';
import { askWithDisclosures } from './disclosures.js';
import { DEFAULT_TRUST_POLICY, type TrustPolicy } from '../trust/policy.js';
import { checkTimeouts, type CheckSettings } from './settings.js';

export type { CheckSettings } from './settings.js';
import { routeCheckRate, shouldCheck, type AgentTrust } from '../trust/sampling.js';
import { reputationDelta } from '../trust/reputation.js';
import type { Dispute } from '../trust/dispute.js';
import { pursueDispute, startDispute, type AskChecker } from './disputes.js';
import { candidatesById, hopCheckers, independentCheckers } from './checkers.js';
import { runHopChecks, thirdChecks } from './span-checks.js';
import { coveringChains, type ChainAnswer } from './chain-checks.js';
import { blockFailedRoute, releaseHeldHops } from './route-blocks.js';
import { refundJob } from '../billing/refund.js';


export type CheckDeps = Pick<EdgeDeps, 'store' | 'transport' | 'signingKey' | 'clock' | 'log' | 'caches' | 'config' | 'random'> & {
  checks?: CheckSettings | null;
};

export interface FinishedJob {
  jobId: string;
  modelId: string;
  numLayers: number;
  /** The prompt ids of the request (what the first ticket's inputHash covers). */
  promptIds: readonly number[];
  /** Tokens handed to the client, in order. */
  tokenIds: readonly number[];
  attempts: readonly JobAttemptRecord[];
}

export interface CheckStep {
  checkerId: string;
  /** null: the checker did not answer with a valid signed verdict. */
  status: CheckVerdict['status'] | null;
}

export interface CheckOutcome {
  checked: boolean;
  /** Why the job was not checked, when it was not. */
  skipped?: 'off' | 'no_attempt' | 'not_sampled' | 'no_checker';
  rate?: number;
  /** Final status recorded on the job. */
  status?: 'pass' | 'fail' | 'inconclusive' | 'upheld' | 'dismissed' | 'voided';
  steps: CheckStep[];
  /** Checked by span checkers: the hops no checker passed nor accused (no eligible checker, or no conclusive answer). */
  uncheckedHops?: number[];
  /** Attempts before the final one that delivered tokens (a failover), each checked on its own. */
  earlier?: CheckOutcome[];
  dispute?: { id: string; state: Dispute['state']; accusedAgentId: string };
  slashed?: string[];
}

const MAX_VERDICT_BYTES = 256 * 1024;

async function readBounded(res: Response, max: number): Promise<string | null> {
  const bytes = await readResponseBytes(res, max);
  return bytes && new TextDecoder().decode(bytes);
}

/** What a checker answered: its verified verdict and the signed form kept as evidence. */
export interface CheckAnswer {
  checkerId: string;
  verdict: CheckVerdict;
  signed: unknown;
  /** A segment that does not end its hop (chain-checks.ts): the rows it hands on, base64url, unverified. */
  segmentOutput?: string;
}

/**
 * Waits before asking a busy checker again, ms: an agent runs one check at a time (503
 * `capacity`), and the check it is busy with (often the first check of a job still in flight,
 * or this dispute's own) takes well under a second on the models it can hold in memory.
 */
const BUSY_RETRY_MS = [100, 200, 400, 800, 1_600] as const;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Posts a signed check request to one checker; null when it fails or answers anything
 * unverifiable. A checker busy with another check (503) is asked again after a short wait, up to
 * `BUSY_RETRY_MS.length` times within `timeoutMs`.
 */
export async function askChecker(
  deps: CheckDeps,
  checker: Pick<RouteCandidate, 'agentId' | 'endpoint' | 'publicKey'>,
  request: CheckRequest,
  timeoutMs: number,
  opts: { segment?: boolean } = {},
): Promise<CheckAnswer | null> {
  const body = JSON.stringify(request);
  const bodyHash = await sha256Hex(utf8(body));
  const deadline = Date.now() + timeoutMs;
  try {
    let res: Response;
    for (let attempt = 0; ; attempt++) {
      const issuedAt = deps.clock.now();
      const signature = await signBytes(deps.signingKey.privateKey, utf8(checkRequestMessage(checker.agentId, issuedAt, bodyHash)));
      res = await deps.transport(new URL(CHECK_PATH, checker.endpoint).toString(), {
        method: 'POST',
        headers: { 'content-type': 'application/json', [CHECK_SIGNATURE_HEADER]: signature, [CHECK_ISSUED_AT_HEADER]: String(issuedAt) },
        body,
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      const wait = BUSY_RETRY_MS[attempt];
      if (res.status !== 503 || wait === undefined || Date.now() + wait >= deadline - 1_000) break;
      await res.body?.cancel().catch(() => undefined);
      deps.log({ level: 'info', msg: 'checker busy: asking again shortly', checkerId: checker.agentId, waitMs: wait });
      await sleep(wait);
    }
    // A segment's answer carries the rows it hands on beside the verdict.
    const text = await readBounded(res, opts.segment ? MAX_VERDICT_BYTES + MAX_SEGMENT_CHARS : MAX_VERDICT_BYTES);
    if (!res.ok || text === null) {
      deps.log({ level: 'warn', msg: 'checker refused', checkerId: checker.agentId, status: res.status, body: text?.slice(0, 300) });
      return null;
    }
    const signed = JSON.parse(text) as unknown;
    const v = await verifyVerdict(signed, checker.publicKey);
    if (!v || v.checkerId !== checker.agentId || v.verdict.jobId !== request.signedTicket.ticket.jobId) {
      deps.log({ level: 'warn', msg: 'checker answered an unverifiable verdict', checkerId: checker.agentId });
      return null;
    }
    const handedOn = opts.segment ? segmentAnswerSchema.safeParse(signed) : null;
    // The signed form alone is kept (evidence); the rows go to the next segment only.
    const { segmentOutput, ...verdictOnly } = signed as { segmentOutput?: unknown };
    return {
      checkerId: checker.agentId,
      verdict: v.verdict as CheckVerdict,
      signed: verdictOnly,
      ...(handedOn?.success && handedOn.data.segmentOutput !== undefined && typeof segmentOutput === 'string' ? { segmentOutput } : {}),
    };
  } catch (err) {
    deps.log({ level: 'warn', msg: 'checker unreachable', checkerId: checker.agentId, error: err instanceof Error ? err.message : String(err) });
    return null;
  }
}

/**
 * What the sampling policy knows of a hop when one of its jobs is checked. `jobsServed` counts the
 * jobs before this one: the job's own observation is normally in already (written when its answer
 * ended, before the check runs), so its 20th job is still a probation job; when that write is
 * late, one more job is checked, never one fewer.
 */
function trustOf(c: RouteCandidate | undefined): AgentTrust {
  // A hop the edge cannot see now (offline) is treated as on probation: rate 1.
  if (!c) return { jobsServed: 0, checksPassed: 0, reputation: 0, stakeMicroUsd: 0, probation: true };
  return { jobsServed: Math.max(0, c.observations - 1), checksPassed: c.checksPassed ?? 0, reputation: c.reputation, stakeMicroUsd: c.stakeMicroUsd, probation: c.probation };
}

/**
 * Decides whether a finished job is checked and, when it is, runs the check, the dispute and
 * their effects, for every attempt that delivered tokens (the final one's outcome is returned,
 * earlier ones in `earlier`). Never throws for a checker's misbehaviour; store failures propagate
 * (waitUntil logs them).
 */
export async function checkFinishedJob(deps: CheckDeps, job: FinishedJob): Promise<CheckOutcome> {
  const settings = deps.checks;
  if (!settings?.key) return { checked: false, skipped: 'off', steps: [] };
  // Every attempt whose verified tokens reached the client is checkable, failed ones included:
  // a route that delivered tokens and then dropped the stream must not escape re-execution.
  const delivered = job.attempts.filter((a) => a.chunks.length > 0);
  const final = delivered[delivered.length - 1];
  if (!final) return { checked: false, skipped: 'no_attempt', steps: [] };
  const budgetEnd = deps.clock.now() + (settings.budgetMs ?? 25_000);
  const earlier: CheckOutcome[] = [];
  for (const attempt of delivered.slice(0, -1)) earlier.push(await checkAttempt(deps, settings, job, attempt, budgetEnd));
  const outcome = await checkAttempt(deps, settings, job, final, budgetEnd);
  // Piggybacks on checked jobs (a fraction of traffic) rather than on a timer.
  if (outcome.checked || earlier.some((o) => o.checked)) await voidStaleDisputes(deps, settings.policy ?? DEFAULT_TRUST_POLICY);
  if (earlier.length === 0) return outcome;
  // The job's recorded status is the worst of its attempts' (the final attempt's record came last).
  const worst = [outcome, ...earlier].reduce((w, o) => (severity(o.status) > severity(w.status) ? o : w));
  if (worst !== outcome && worst.status) await deps.store.recordCheck({ jobId: job.jobId, status: worst.status, entry: { kind: 'attempts', statuses: [...earlier, outcome].map((o) => o.status ?? o.skipped ?? null) }, at: deps.clock.now() });
  return { ...outcome, earlier };
}

/**
 * Disputes no third check settled within the policy's `disputeTimeoutMs` (no eligible checker
 * answered in time) are voided, as `transition`'s `tick` says: nobody is penalised, and the
 * accused leaves probation unless another dispute against it is still open.
 */
export async function voidStaleDisputes(deps: Pick<CheckDeps, 'store' | 'clock' | 'log'>, policy: TrustPolicy = DEFAULT_TRUST_POLICY): Promise<number> {
  const now = deps.clock.now();
  try {
    const voided = await deps.store.voidStaleDisputes({ openedBefore: now - policy.disputeTimeoutMs, at: now, limit: 50 });
    if (voided.length) deps.log({ level: 'info', msg: 'stale disputes voided', disputes: voided.map((d) => d.id), agents: [...new Set(voided.map((d) => d.agentId))] });
    return voided.length;
  } catch (err) {
    deps.log({ level: 'warn', msg: 'could not void stale disputes', error: err instanceof Error ? err.message : String(err) });
    return 0;
  }
}

const SEVERITY: Record<NonNullable<CheckOutcome['status']>, number> = { pass: 0, dismissed: 1, voided: 2, inconclusive: 3, fail: 4, upheld: 5 };
function severity(status: CheckOutcome['status']): number {
  return status === undefined ? -1 : SEVERITY[status];
}

/** Decides whether one attempt of a finished job is checked and, when it is, runs the check, the dispute and their effects. */
async function checkAttempt(deps: CheckDeps, settings: CheckSettings, job: FinishedJob, attempt: JobAttemptRecord, budgetEnd: number): Promise<CheckOutcome> {
  const steps: CheckStep[] = [];
  const key = settings.key!;
  const policy = settings.policy ?? DEFAULT_TRUST_POLICY;
  const perCheckMs = settings.timeoutMs ?? 20_000;
  /** Each call's timeout: the per-check limit, cut to what the budget has left (0: stop asking). */
  const remaining = checkTimeouts(deps.clock, budgetEnd, perCheckMs);
  const ticket = attempt.ticket.ticket;
  const route = ticket.route.map((h) => h.agentId);
  const now = deps.clock.now();
  const candidates = await deps.store.listRouteCandidates(job.modelId, { heartbeatAfter: now - deps.config.heartbeatStaleMs, limit: deps.config.candidateLimit });
  const byId = candidatesById(candidates);
  const rate = settings.rateOverride ?? routeCheckRate(route.map((id) => trustOf(byId.get(id))), policy);
  // Keyed by the attempt's own ticket job id (the job id itself for the first attempt).
  if (!(await shouldCheck(ticket.jobId, key, rate))) return { checked: false, skipped: 'not_sampled', rate, steps };

  // Whole-model agents of owners other than every hop's (docs/trust.md §7); without one, a
  // multi-hop route is checked hop by hop by agents holding each hop's span (span-checks.ts).
  const whole = await independentCheckers(deps, byId, route, job.numLayers);
  const spanCheckers = whole.length === 0 && route.length > 1 ? await Promise.all(ticket.route.map((_, h) => hopCheckers(deps, candidates, ticket.route, h, job.numLayers))) : null;
  // A hop nobody holds whole is re-run by a chain of agents covering its layers (chain-checks.ts).
  const chains = spanCheckers ? await Promise.all(ticket.route.map((_, h) => (spanCheckers[h]!.length ? [] : coveringChains(deps, candidates, ticket.route, h)))) : null;
  if (whole.length === 0 && !spanCheckers?.some((c) => c.length > 0) && !chains?.some((c) => c.length > 0)) {
    // A standing condition (the demo's whole-model agent has no checker of another owner): said once per model and window (edge/log.ts).
    deps.log({ level: 'warn', msg: 'job sampled for a check, but no independent checker is available', jobId: job.jobId, modelId: job.modelId, throttle: `no_checker:${job.modelId}` });
    return { checked: false, skipped: 'no_checker', rate, steps };
  }

  const request: CheckRequest = {
    signedTicket: attempt.ticket,
    promptIds: [...job.promptIds],
    prefixIds: job.tokenIds.slice(0, ticket.prefixTokens),
    attestations: attempt.chunks,
  };
  const record = (status: NonNullable<CheckOutcome['status']>, entry: unknown, extra: { checked?: string[]; passed?: string[] } = {}) =>
    deps.store.recordCheck({ jobId: job.jobId, status, entry, at: deps.clock.now(), ...(extra.checked ? { checkedAgentIds: extra.checked } : {}), ...(extra.passed ? { passedAgentIds: extra.passed } : {}) });
  /** A passed check raises each of these agents' reputation. */
  const credit = async (ids: readonly string[], checkerId: string) => {
    for (const id of new Set(ids)) {
      const current = (await deps.store.getAgent(id))?.reputation;
      if (current === undefined) continue;
      const delta = reputationDelta(current, { kind: 'check_passed' }, policy);
      if (delta !== 0) await deps.store.adjustReputation(id, delta, 'check_passed', { jobId: job.jobId, checkerId }, deps.clock.now());
    }
  };

  let first: CheckAnswer | null = null;
  /** The hop a hop check re-ran, when span checkers found the route wrong (undefined: a whole-route check). */
  let scope: number | undefined;
  const used: RouteCandidate[] = [];
  // Before any blame: this route is not chosen again and its hops are held out of routing and on
  // probation (route-blocks.ts). Once: a hop check's accusation blocks as soon as it comes, before
  // the other hops' checks end.
  let blocking: Promise<void> | null = null;
  const block = (reason: string) => (blocking ??= blockFailedRoute(deps, policy, { jobId: job.jobId, modelId: job.modelId, route, reason }));
  if (spanCheckers) {
    const hops = await runHopChecks({ deps, policy, jobId: job.jobId, attempt, route, byId, checkers: spanCheckers, chains: chains ?? [], request, remaining, steps, onAccusation: (answer) => block(answer.verdict.reason ?? 'check_failed') });
    if (!hops) {
      // Drawn and begun, but the budget ran out first: said on the job, not left as if never drawn.
      await record('inconclusive', { kind: 'no_answer', checkers: steps.map((st) => st.checkerId), detail: 'the check budget was spent before any hop checker answered' });
      return { checked: true, rate, status: 'inconclusive', steps };
    }
    const status = hops.failed ? 'fail' : hops.unchecked.length ? 'inconclusive' : 'pass';
    const passedIds = hops.passed.map((p) => route[p.hop]!);
    const summary = { kind: 'hop_checks', passedHops: hops.passed.map((p) => p.hop), uncheckedHops: hops.unchecked, ...(hops.failed ? { failedHop: hops.failed.hop } : {}) };
    if (!hops.failed) {
      // Each hop's own checker vouches for it; a hop nobody checked gets nothing (and stays on probation).
      for (const p of hops.passed) await credit([route[p.hop]!], p.checkerId);
      for (const e of hops.entries) await record(status, e);
      // Last: a job reads 'pass' once every effect of the check is applied.
      await record(status, summary, { checked: passedIds, passed: passedIds });
      return { checked: true, rate, status, steps, ...(hops.unchecked.length ? { uncheckedHops: hops.unchecked } : {}) };
    }
    for (const e of hops.entries) await record('fail', e);
    await record('fail', summary, { checked: route });
    first = hops.failed.answer;
    scope = hops.failed.hop;
  } else {
    // First check: one more checker after an inconclusive (or missing) answer.
    for (const checker of whole.slice(0, 2)) {
      used.push(checker);
      if (!remaining()) break;
      const answer = await askChecker(deps, checker, request, remaining());
      steps.push({ checkerId: checker.agentId, status: answer?.verdict.status ?? null });
      if (answer?.verdict.status === 'inconclusive') await record('inconclusive', { kind: 'check', checkerId: checker.agentId, verdict: answer.signed });
      if (answer && answer.verdict.status !== 'inconclusive') {
        first = answer;
        break;
      }
    }
    if (!first) {
      // Nobody answered a verdict (busy past its retries, down, or unverifiable): said on the job.
      if (!steps.some((st) => st.status === 'inconclusive')) await record('inconclusive', { kind: 'no_answer', checkers: steps.map((st) => st.checkerId), detail: 'no checker answered a valid verdict' });
      return { checked: true, rate, status: 'inconclusive', steps };
    }

    const firstEntry = { kind: 'check', checkerId: first.checkerId, verdict: first.signed };
    if (first.verdict.status === 'pass') {
      await credit(route, first.checkerId);
      // Last: a job reads 'pass' once every effect of the check is applied.
      await record('pass', firstEntry, { checked: route, passed: route });
      return { checked: true, rate, status: 'pass', steps };
    }
    // A failure: only an accusation against a hop of this route opens a dispute.
    await record('fail', firstEntry, { checked: route });
  }

  await block(first.verdict.reason ?? 'check_failed');
  if (!first.verdict.agentId && route.length > 1 && scope === undefined) {
    // A route-wide failure names no hop: the hops' disclosures, and the same checker again (disclosures.ts).
    const checker = whole.find((c) => c.agentId === first!.checkerId);
    const named = await askWithDisclosures({ deps, policy, jobId: job.jobId, attempt, route, byId, checker, request, remaining, steps });
    if (named) first = named;
  }
  const accused = first.verdict.agentId;
  if (!accused || !route.includes(accused)) {
    deps.log({ level: 'warn', msg: 'a failed check names no hop of the route: no dispute', jobId: job.jobId, checkerId: first.checkerId });
    return { checked: true, rate, status: 'fail', steps };
  }
  // Opening, third checks, effects and settlement: disputes.ts (the scheduled tick retries what is left open).
  /** A chain's segments before the accusing checker (chain-checks.ts): independent third checks avoid them too. */
  const via = 'via' in first ? (first as ChainAnswer).via.map((v) => v.checkerId) : [];
  const started = await startDispute(deps, policy, { jobId: job.jobId, modelId: job.modelId, numLayers: job.numLayers, route, request, first, ...(scope !== undefined ? { hop: scope } : {}), ...(via.length ? { via } : {}) });
  if (!started) return { checked: true, rate, status: 'fail', steps };
  // The accused is out while its dispute is open; the route's other hops may serve again.
  await releaseHeldHops(deps, { jobId: job.jobId, route, accused });
  // Found bad against a hop of the route: the client is not charged (once per job; upheld disputes come through here).
  await refundJob(deps, { jobId: job.jobId, reason: first.verdict.reason ?? 'check_failed', disputeId: started.dispute.id, agentId: accused });

  // Third checkers: outside the route, the accused, the first checker, and of other owners than all of them.
  // After a hop check, hop checks of the same hop (span-checks.ts); checkers asked already are not asked again.
  const third =
    scope === undefined
      ? { checkers: whole.filter((c) => !used.includes(c)), ask: ((checker, req, timeoutMs) => askChecker(deps, checker, req, timeoutMs)) as AskChecker }
      : await thirdChecks(deps, { candidates, route: ticket.route, numLayers: job.numLayers, hop: scope, exclude: new Set([first.checkerId, ...via]) });
  const asked = new Set(steps.map((s) => s.checkerId));
  const settled = await pursueDispute(deps, policy, started, third.checkers.filter((c) => !asked.has(c.agentId)), { ask: third.ask, remaining, steps });
  const { dispute, slashed } = settled;
  return { checked: true, rate, status: settled.status ?? 'fail', steps, dispute: { id: dispute.id, state: dispute.state, accusedAgentId: dispute.accusedAgentId }, slashed };
}
