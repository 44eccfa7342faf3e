/**
 * The edge's scheduled trust work (docs/trust.md §7), run by the Worker's `scheduled` handler on
 * its Cron Trigger (wrangler.toml: every minute) and, locally, by `npm start` through wrangler's
 * `/__scheduled` route:
 *
 * 1. disputes older than the policy's `disputeTimeoutMs` are voided (nobody penalised);
 * 2. route blocks whose time is over end, and their hops leave probation (unless something else
 *    keeps them on it);
 * 3. jobs an edge left `running` (it crashed or restarted, or the registry was down when the job
 *    ended) past `jobDeadlineMs` plus a minute are ended as failed, uncharged;
 * 4. open disputes due for a retry (`disputeRetryMs` after the last try) get their third check
 *    again, from the request kept on the dispute, with checkers chosen as after a job
 *    (span-checks.ts `thirdChecks`: whole-model agents, or for a dispute a hop check opened,
 *    holders of that hop's span): as agents join, a dispute nobody could check gets settled.
 *
 * Several ticks may run at once (a slow one, the next minute's): each dispute is claimed by one.
 *
 * @example
 * export default { async scheduled(_controller, env, ctx) { ctx.waitUntil(runTrustTick(depsFor(env))); } };
 */
import { DEFAULT_TRUST_POLICY, type TrustPolicy } from '../trust/policy.js';
import type { Dispute } from '../trust/dispute.js';
import type { DisputeRetry } from '../../db/registry-contract.js';
import { voidStaleDisputes, type CheckDeps, type CheckStep } from './run-checks.js';
import { pursueDispute } from './disputes.js';
import { thirdChecks } from './span-checks.js';
import { expireRouteBlocks } from './route-blocks.js';
import { checkTimeouts } from './settings.js';

export interface TickOptions {
  /** Disputes retried per tick (default 10). */
  limit?: number;
  /** The tick stops asking checkers after this, ms (default 45 s: ticks come every minute). */
  budgetMs?: number;
}

export interface TickOutcome {
  voided: number;
  blocksEnded: number;
  /** Jobs left running by an edge that went away, ended as failed. */
  jobsEnded: number;
  retried: Array<{ disputeId: string; state: Dispute['state'] | 'not_retried'; asked: number; steps: CheckStep[] }>;
}

/** One pass of the scheduled trust work; never throws for an agent's misbehaviour (store failures are logged per step). */
export async function runTrustTick(deps: CheckDeps, opts: TickOptions = {}): Promise<TickOutcome> {
  const policy = deps.checks?.policy ?? DEFAULT_TRUST_POLICY;
  const budgetEnd = deps.clock.now() + (opts.budgetMs ?? 45_000);
  const perCheckMs = deps.checks?.timeoutMs ?? 20_000;
  const remaining = checkTimeouts(deps.clock, budgetEnd, perCheckMs);
  const voided = await voidStaleDisputes(deps, policy);
  if (voided) deps.caches.candidates.clear();
  const blocksEnded = await expireRouteBlocks(deps);
  const jobsEnded = await failAbandonedJobs(deps);
  const retried: TickOutcome['retried'] = [];
  let due: DisputeRetry[] = [];
  try {
    due = await deps.store.claimDisputeRetries({ at: deps.clock.now(), retryMs: policy.disputeRetryMs, limit: opts.limit ?? 10 });
  } catch (err) {
    deps.log({ level: 'warn', msg: 'could not claim disputes to retry', error: err instanceof Error ? err.message : String(err) });
  }
  for (const d of due) {
    if (!remaining()) break;
    try {
      retried.push(await retryDispute(deps, policy, d, remaining));
    } catch (err) {
      deps.log({ level: 'warn', msg: 'dispute retry failed', disputeId: d.id, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return { voided, blocksEnded, jobsEnded, retried };
}

/** Margin past a job's deadline before the tick calls it abandoned (its edge may still be writing its end). */
const ABANDONED_AFTER_DEADLINE_MS = 60_000;

/** Ends, as failed and uncharged, the jobs an edge left `running` past their deadline (at most 100 a tick). */
async function failAbandonedJobs(deps: CheckDeps): Promise<number> {
  const now = deps.clock.now();
  try {
    const ended = await deps.store.failAbandonedJobs({ startedBefore: now - deps.config.jobDeadlineMs - ABANDONED_AFTER_DEADLINE_MS, at: now, limit: 100 });
    if (ended.length) deps.log({ level: 'info', msg: 'jobs left running by an edge that went away ended as failed', jobs: ended });
    return ended.length;
  } catch (err) {
    deps.log({ level: 'warn', msg: 'could not end abandoned jobs', error: err instanceof Error ? err.message : String(err) });
    return 0;
  }
}

/** One retry of an open dispute's third check, from what the dispute kept. */
async function retryDispute(deps: CheckDeps, policy: TrustPolicy, d: DisputeRetry, remaining: () => number): Promise<TickOutcome['retried'][number]> {
  const steps: CheckStep[] = [];
  const firstCheckerId = d.checkerAgentIds[0];
  if (!d.check || !firstCheckerId) {
    // Opened before disputes kept their request: nothing to re-run; it is voided at its timeout.
    await deps.store.noteDisputeRetry(d.id, { at: deps.clock.now(), outcome: 'no_request', asked: 0 });
    return { disputeId: d.id, state: 'not_retried', asked: 0, steps };
  }
  const { request, modelId, numLayers, hop, via } = d.check;
  const route = request.signedTicket.ticket.route.map((h) => h.agentId);
  const now = deps.clock.now();
  const candidates = await deps.store.listRouteCandidates(modelId, { heartbeatAfter: now - deps.config.heartbeatStaleMs, limit: deps.config.candidateLimit, at: now });
  const { checkers, ask } = await thirdChecks(deps, { candidates, route: request.signedTicket.ticket.route, numLayers, ...(hop !== undefined ? { hop } : {}), exclude: new Set([...d.checkerAgentIds, ...(via ?? [])]) });
  const verdicts = d.verdicts.map((s) => (s as { verdict?: unknown }).verdict) as Dispute['evidence'];
  const dispute: Dispute = {
    id: d.id,
    jobId: d.jobId,
    state: 'open',
    accusedAgentId: d.agentId,
    accusedHop: verdicts[0]?.hop ?? null,
    firstCheckerId,
    thirdCheckers: d.checkerAgentIds.slice(1),
    attempts: d.checkerAgentIds.length - 1,
    openedAt: d.openedAt,
    settledAt: null,
    evidence: verdicts,
  };
  deps.log({ level: 'info', msg: 'retrying a dispute\'s third check', disputeId: d.id, jobId: d.jobId, accused: d.agentId, attempts: dispute.attempts, checkers: checkers.length, ...(hop !== undefined ? { hop } : {}) });
  const out = await pursueDispute(deps, policy, { dispute, jobId: d.jobId, route, request, evidence: [...d.verdicts] }, checkers, { ask, remaining, steps });
  return { disputeId: d.id, state: out.dispute.state, asked: out.asked, steps };
}
