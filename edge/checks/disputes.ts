/**
 * Disputes as the edge runs them (docs/trust.md §5, §7): opening one after a failed check,
 * asking third checkers (chosen in checkers.ts) until `transition` settles it, applying
 * its effects (slash, exclusion, reputation, probation), and leaving it open, with a note, when
 * nobody settles it. The same code serves the check right after a job (run-checks.ts) and the
 * scheduled retries of disputes left open (tick.ts): their only difference is where the request
 * and the checkers come from. A dispute opened by a hop check (span checkers) keeps the hop it
 * re-ran: its third checks are hop checks of that hop.
 *
 * @example
 * const started = await startDispute(deps, policy, { jobId, modelId, numLayers, route, request, first });
 * if (started) await pursueDispute(deps, policy, started, checkers, { ask, remaining: () => 20_000, steps });
 */
import type { CheckRequest, CheckVerdict } from '../../protocol/check.js';
import type { SignedTicket } from '../../protocol/ticket.js';
import type { JobCheckStatus, RouteCandidate } from '../../db/registry-contract.js';
import type { TrustPolicy } from '../trust/policy.js';
import { reputationDelta } from '../trust/reputation.js';
import { ineligibleThirdCheckers, openDispute, transition, type Dispute, type DisputeEffect, type Stakes } from '../trust/dispute.js';
import type { CheckAnswer, CheckDeps, CheckStep } from './run-checks.js';

/** Asks one checker (run-checks' `askChecker`, bound to its deps); null: no valid signed verdict. */
export type AskChecker = (checker: RouteCandidate, request: CheckRequest, timeoutMs: number) => Promise<CheckAnswer | null>;

/** An open dispute with what its third checks need. */
export interface DisputeInProgress {
  dispute: Dispute;
  jobId: string;
  /** Agent ids of the disputed route, in hop order. */
  route: string[];
  /** What every third checker is sent. */
  request: CheckRequest;
  /** Signed verdicts so far: the first check's, then each third check's (a slash's evidence). */
  evidence: unknown[];
}

/**
 * Opens the dispute a failing first verdict calls for (the accused goes on probation, and out of
 * routing in this isolate at once: its candidates read `inDispute` from now on) and keeps what
 * the scheduled tick needs to retry its third check. Null when the verdict opens none.
 */
export async function startDispute(
  deps: Pick<CheckDeps, 'store' | 'clock' | 'log' | 'caches'>,
  policy: TrustPolicy,
  input: {
    jobId: string;
    modelId: string;
    numLayers: number;
    route: string[];
    request: CheckRequest;
    first: CheckAnswer;
    /** The hop the first check re-ran, when it was a hop check (its third checks re-run the same hop). */
    hop?: number;
    /** The agents of the segments before the first checker's, when a chain of checkers ran the hop. */
    via?: string[];
  },
): Promise<DisputeInProgress | null> {
  const { first } = input;
  const at = deps.clock.now();
  const opened = openDispute({ id: '', jobId: input.jobId, firstCheckerId: first.checkerId, verdict: first.verdict, at });
  if (!opened.ok) return null;
  const row = await deps.store.openDispute({
    jobId: input.jobId,
    agentId: opened.dispute.accusedAgentId,
    reason: first.verdict.reason ?? 'check_failed',
    evidence: { ticket: input.request.signedTicket, verdicts: [first.signed] },
    firstCheckerId: first.checkerId,
    check: { modelId: input.modelId, numLayers: input.numLayers, request: input.request, ...(input.hop !== undefined ? { hop: input.hop } : {}), ...(input.via?.length ? { via: input.via } : {}) },
    // After the check that opened it is surely over (it ends within its 25 s budget).
    retryAfter: at + policy.disputeRetryMs,
    at,
  });
  const started: DisputeInProgress = { dispute: { ...opened.dispute, id: row.id }, jobId: input.jobId, route: input.route, request: input.request, evidence: [first.signed] };
  await applyDisputeEffects(deps, policy, opened.effects, started, []);
  deps.caches.candidates.clear();
  return started;
}

/** Applies a dispute's effects to the registry: probation, slash (with the signed verdicts as evidence), exclusion, reputation. */
export async function applyDisputeEffects(
  deps: Pick<CheckDeps, 'store' | 'clock' | 'log' | 'caches'>,
  policy: TrustPolicy,
  effects: readonly DisputeEffect[],
  state: DisputeInProgress,
  slashed: string[],
): Promise<void> {
  const { dispute } = state;
  for (const e of effects) {
    const at = deps.clock.now();
    if (e.kind === 'probation') await deps.store.setProbation(e.agentId, e.on);
    else if (e.kind === 'slash') {
      await deps.store.slash({
        agentId: e.agentId,
        amountMicroUsd: e.amountMicroUsd,
        reason: e.reason,
        evidence: { severity: e.severity, disputeId: dispute.id, ticket: state.request.signedTicket as SignedTicket, verdicts: state.evidence },
        jobId: state.jobId,
        at,
      });
      slashed.push(e.agentId);
    } else if (e.kind === 'exclude') {
      // The registry excludes it already (status 'slashed'); this isolate's cached view too, now.
      deps.caches.candidates.clear();
      deps.log({ level: 'warn', msg: 'agent excluded from routing', agentId: e.agentId, disputeId: dispute.id });
    } else {
      const agent = await deps.store.getAgent(e.agentId);
      if (!agent) continue;
      const delta = reputationDelta(agent.reputation, e.event, policy);
      if (delta !== 0) await deps.store.adjustReputation(e.agentId, delta, e.event.kind, { disputeId: dispute.id, jobId: state.jobId }, at);
    }
  }
}

/** Pool stake of each agent, for `transition` (an agent or pool gone reads 0). */
async function stakesOf(deps: Pick<CheckDeps, 'store'>, agentIds: readonly string[]): Promise<Stakes> {
  const stakes = new Map<string, number>();
  for (const id of new Set(agentIds)) {
    const agent = await deps.store.getAgent(id);
    const pool = agent ? await deps.store.getPool(agent.poolId) : null;
    stakes.set(id, pool?.stakeMicroUsd ?? 0);
  }
  return { stakeOf: (id) => stakes.get(id) ?? 0 };
}

export interface PursueOptions {
  ask: AskChecker;
  /** Timeout for the next checker, ms; 0: the time budget is spent, stop asking. */
  remaining: () => number;
  /** Each checker asked is appended here. */
  steps: CheckStep[];
}

export interface PursueOutcome {
  dispute: Dispute;
  slashed: string[];
  /** Checkers asked. */
  asked: number;
  /** The job's status once settled (undefined while the dispute stays open). */
  status?: Extract<JobCheckStatus, 'upheld' | 'dismissed' | 'voided'>;
}

/**
 * Third checks until the dispute settles, the checkers run out or the time budget is spent.
 * `checkers` are candidates in the order to ask them (checkers.ts); those
 * `ineligibleThirdCheckers` names and those of the first checker's owner are skipped. Every
 * answer is kept on the dispute (so a later retry goes on from it) and on the job. Settled:
 * effects applied, the route's block lifted unless upheld. Left open: logged, and noted on the
 * dispute (`no_eligible_checker` when nobody may run it), for the scheduled tick to retry.
 */
export async function pursueDispute(
  deps: Pick<CheckDeps, 'store' | 'clock' | 'log' | 'caches'>,
  policy: TrustPolicy,
  state: DisputeInProgress,
  checkers: readonly RouteCandidate[],
  opts: PursueOptions,
): Promise<PursueOutcome> {
  const slashed: string[] = [];
  let dispute = state.dispute;
  const firstOwner = checkers.find((c) => c.agentId === dispute.firstCheckerId)?.ownerAccountId ?? (await deps.store.getAgent(dispute.firstCheckerId))?.ownerAccountId;
  const eligible = checkers.filter((c) => c.ownerAccountId !== firstOwner && !ineligibleThirdCheckers(dispute, state.route).has(c.agentId));
  const stakes = await stakesOf(deps, [dispute.accusedAgentId, dispute.firstCheckerId]);
  let asked = 0;
  let answered = 0;
  for (const checker of eligible) {
    if (dispute.state !== 'open') break;
    if (ineligibleThirdCheckers(dispute, state.route).has(checker.agentId)) continue;
    const timeoutMs = opts.remaining();
    if (!timeoutMs) break;
    asked++;
    const answer = await opts.ask(checker, state.request, timeoutMs);
    opts.steps.push({ checkerId: checker.agentId, status: answer?.verdict.status ?? null });
    if (!answer) continue;
    answered++;
    state.evidence.push(answer.signed);
    await deps.store.recordDisputeCheck(dispute.id, { checkerAgentId: checker.agentId, verdict: answer.signed, at: deps.clock.now() });
    await deps.store.recordCheck({ jobId: state.jobId, status: answer.verdict.status, entry: { kind: 'third_check', disputeId: dispute.id, checkerId: checker.agentId, verdict: answer.signed }, at: deps.clock.now() });
    const next = transition(dispute, { kind: 'third_check', checkerId: checker.agentId, verdict: answer.verdict as CheckVerdict, at: deps.clock.now() }, stakes, policy);
    dispute = next.dispute;
    state.dispute = dispute;
    await applyDisputeEffects(deps, policy, next.effects, state, slashed);
  }
  if (dispute.state === 'open') {
    const outcome = eligible.length === 0 ? 'no_eligible_checker' : answered === 0 ? 'no_answer' : 'inconclusive';
    await deps.store.noteDisputeRetry(dispute.id, { at: deps.clock.now(), outcome, asked });
    deps.log({
      level: 'warn',
      msg: outcome === 'no_eligible_checker' ? 'dispute left open: no eligible third checker' : 'dispute left open: no third checker settled it',
      disputeId: dispute.id,
      jobId: state.jobId,
      accused: dispute.accusedAgentId,
      asked,
    });
    return { dispute, slashed, asked };
  }
  await deps.store.settleDispute(dispute.id, {
    status: dispute.state === 'upheld' ? 'upheld' : 'rejected',
    checkerAgentIds: [dispute.firstCheckerId, ...dispute.thirdCheckers],
    evidence: { state: dispute.state, verdicts: state.evidence },
    at: deps.clock.now(),
  });
  if (dispute.state !== 'upheld') {
    // The route's block was for as long as the dispute was open: it is routable again.
    await deps.store.liftRouteBlocks({ jobId: state.jobId, route: state.route, at: deps.clock.now() });
  }
  deps.caches.candidates.clear();
  const status = dispute.state === 'upheld' ? 'upheld' : dispute.state === 'dismissed' ? 'dismissed' : 'voided';
  await deps.store.recordCheck({ jobId: state.jobId, status, entry: { kind: 'dispute', disputeId: dispute.id, state: dispute.state }, at: deps.clock.now() });
  deps.log({ level: dispute.state === 'upheld' ? 'warn' : 'info', msg: 'dispute settled', disputeId: dispute.id, jobId: state.jobId, state: dispute.state, accused: dispute.accusedAgentId });
  return { dispute, slashed, asked, status };
}
