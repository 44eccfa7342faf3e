/**
 * Checks by span checkers (docs/trust.md §2, §7): a model too large for any one agent has no
 * whole-model checker, so when none is independent of a multi-hop route, the edge checks the
 * route hop by hop:
 *
 * 1. it gathers every hop's disclosure (disclosures.ts: hash-checked against the hop's own
 *    attestations; withholders penalised at once), as after a failed whole-route check;
 * 2. for each hop at once, it asks an independent agent whose span is exactly that hop's layers
 *    (checkers.ts `hopCheckers`; one more after no answer or an inconclusive one) for a hop check:
 *    the request scoped to the hop (`hop`, the boundaries into and out of it), answered by the
 *    agent's `runHopCheck` with a verdict signed like any other and carrying `checkedHop`;
 * 3. the first hop whose check fails, naming a hop of the route, is the accusation
 *    (run-checks.ts opens the dispute; its third checks are hop checks of the same hop by another
 *    owner's holder of that span, or a whole-model agent: `thirdChecks`). A hop nobody may check
 *    is said on the job (`no_span_checker`) and gets no credit.
 *
 * @example
 * const hops = await runHopChecks({ deps, policy, jobId, attempt, route, byId, checkers, request, remaining, steps });
 * if (hops?.failed) first = hops.failed.answer;
 */
import type { CheckRequest } from '../../protocol/check.js';
import { hopCheckRequest } from '../../protocol/hop-check.js';
import type { RouteHop } from '../../protocol/ticket.js';
import type { RouteCandidate } from '../../db/registry-contract.js';
import { candidatesById, hopCheckers, independentCheckers } from './checkers.js';
import { gatherForCheck, type HopBlameInput } from './disclosures.js';
import type { AskChecker } from './disputes.js';
import { askChecker, type CheckAnswer, type CheckDeps } from './run-checks.js';
import { askChain, coveringChains, type Chain, type ChainAnswer } from './chain-checks.js';
import { checkTimeouts } from './settings.js';

/** Checkers asked per hop at most (the second after no answer or an inconclusive one). */
const CHECKERS_PER_HOP = 2;

/** Asks `checker` for a hop check of `hop`; null unless it answers a valid signed verdict on that hop. */
export async function askHopChecker(deps: CheckDeps, checker: RouteCandidate, request: CheckRequest, hop: number, timeoutMs: number): Promise<CheckAnswer | null> {
  const answer = await askChecker(deps, checker, hopCheckRequest(request, hop), timeoutMs);
  if (answer && answer.verdict.checkedHop !== hop) {
    deps.log({ level: 'warn', msg: 'checker answered a verdict on another scope than the hop asked', checkerId: checker.agentId, hop, checkedHop: answer.verdict.checkedHop ?? null });
    return null;
  }
  return answer;
}

/** A verdict that accuses a hop of the route: a fail whose hop index and agent agree with the route. */
function accuses(answer: CheckAnswer, route: readonly string[]): boolean {
  const v = answer.verdict;
  return v.status === 'fail' && v.hop !== undefined && v.agentId !== undefined && route[v.hop] === v.agentId;
}

export interface HopChecksInput extends Omit<HopBlameInput, 'checker'> {
  /** Per hop, the checkers to ask in order (`hopCheckers`); empty: nobody may check it directly. */
  checkers: readonly (readonly RouteCandidate[])[];
  /** Per hop, chains of checkers covering it (`coveringChains`), asked when no direct checker settled it. */
  chains?: readonly (readonly Chain[])[];
  /** Called when a hop's check accuses a hop of the route, while the other hops' checks may still run. */
  onAccusation?: (answer: CheckAnswer) => Promise<void>;
}

export interface HopChecksOutcome {
  /** Hops whose check passed, each with the checker that passed it. */
  passed: { hop: number; checkerId: string }[];
  /** Hops not checked: nobody may check them (`noChecker`), or no checker answered conclusively. */
  unchecked: number[];
  noChecker: number[];
  /** The first hop whose check accuses a hop of the route, with that answer. */
  failed: { hop: number; answer: CheckAnswer } | null;
  /** For the job's record, in order: withholders, hops with no checker, every hop check answered. */
  entries: unknown[];
}

/**
 * Gathers the disclosures (they go into `request`, which a dispute keeps) and runs every hop's
 * check at once. Null when the time budget was spent before any checker could be asked.
 */
export async function runHopChecks(input: HopChecksInput): Promise<HopChecksOutcome | null> {
  const { deps, jobId, route, request, remaining, steps } = input;
  const gathered = await gatherForCheck(input);
  if (!gathered) return null;
  if (gathered.disclosures.length) request.disclosures = gathered.disclosures;
  if (gathered.withheld.length) request.withheld = gathered.withheld;
  const entries: unknown[] = gathered.withheldEntry ? [gathered.withheldEntry] : [];
  const noChecker = route.map((_, h) => h).filter((h) => !input.checkers[h]?.length && !input.chains?.[h]?.length);
  if (noChecker.length) {
    const ticket = request.signedTicket.ticket;
    entries.push({ kind: 'no_span_checker', hops: noChecker, agentIds: noChecker.map((h) => route[h]) });
    deps.log({
      level: 'warn',
      msg: 'no independent checker holds these hops\' layers: they stay unchecked (and on probation)',
      jobId,
      modelId: ticket.modelId,
      hops: noChecker.map((h) => ({ hop: h, layers: ticket.route[h]!.layers })),
      throttle: `no_span_checker:${ticket.modelId}:${noChecker.map((h) => ticket.route[h]!.layers.join('-')).join(',')}`,
    });
  }

  const checkHop = async (hop: number): Promise<CheckAnswer[]> => {
    const answers: CheckAnswer[] = [];
    /** Whether the answer settles the hop: a pass or an accusation; an inconclusive answer (or a fail naming no hop of the route) does not. */
    const settles = async (answer: CheckAnswer): Promise<boolean> => {
      answers.push(answer);
      if (accuses(answer, route)) {
        await input.onAccusation?.(answer);
        return true;
      }
      return answer.verdict.status === 'pass';
    };
    const direct = (input.checkers[hop] ?? []).slice(0, CHECKERS_PER_HOP);
    for (const checker of direct) {
      const left = remaining();
      if (!left) break;
      const answer = await askHopChecker(deps, checker, request, hop, left);
      steps.push({ checkerId: checker.agentId, status: answer?.verdict.status ?? null });
      if (answer && (await settles(answer))) return answers;
    }
    // Nobody holding the hop's layers settled it: chains of agents covering them, fewest segments first.
    for (const chain of (input.chains?.[hop] ?? []).slice(0, CHECKERS_PER_HOP)) {
      const answer = await askChain(deps, [...chain], request, hop, remaining, steps);
      if (answer && (await settles(answer))) return answers;
    }
    return answers;
  };
  const perHop = await Promise.all(route.map((_, h) => checkHop(h)));

  const passed: HopChecksOutcome['passed'] = [];
  const unchecked: number[] = [];
  let failed: HopChecksOutcome['failed'] = null;
  for (const [hop, answers] of perHop.entries()) {
    for (const a of answers) entries.push({ kind: 'check', checkerId: a.checkerId, checkedHop: hop, verdict: a.signed, ...('via' in a ? { via: (a as ChainAnswer).via } : {}) });
    const last = answers[answers.length - 1];
    if (last?.verdict.status === 'pass') passed.push({ hop, checkerId: last.checkerId });
    else if (last && accuses(last, route)) failed ??= { hop, answer: last };
    else unchecked.push(hop);
  }
  return { passed, unchecked, noChecker, failed, entries };
}

/**
 * Who runs a dispute's third checks, and how they are asked: for a dispute a hop check opened,
 * hop checks of that hop (`hopCheckers`: its span's holders, then whole-model agents); otherwise
 * whole-route checks by whole-model agents (`independentCheckers`), as today.
 */
export async function thirdChecks(
  deps: CheckDeps,
  input: {
    candidates: readonly RouteCandidate[];
    route: readonly Pick<RouteHop, 'agentId' | 'layers'>[];
    numLayers: number;
    hop?: number;
    /** Agents that took part in the checks so far (a chain's segments too): no chain of a third check goes through them. */
    exclude?: ReadonlySet<string>;
  },
): Promise<{ checkers: RouteCandidate[]; ask: AskChecker }> {
  const { hop } = input;
  if (hop === undefined) {
    const checkers = await independentCheckers(deps, candidatesById(input.candidates), input.route.map((h) => h.agentId), input.numLayers);
    return { checkers, ask: (checker, request, timeoutMs) => askChecker(deps, checker, request, timeoutMs) };
  }
  const direct = await hopCheckers(deps, input.candidates, input.route, hop, input.numLayers);
  // After the direct holders, chains covering the hop, each listed by its last segment's agent (it signs the verdict that settles).
  const chains = (await coveringChains(deps, input.candidates, input.route, hop, input.exclude ? { exclude: input.exclude } : {})).filter((ch) => !direct.some((d) => d.agentId === ch.at(-1)!.agentId));
  const chainOf = new Map(chains.map((ch) => [ch.at(-1)!.agentId, ch]));
  return {
    checkers: [...direct, ...chains.map((ch) => ch.at(-1)!)],
    ask: async (checker, request, timeoutMs) => {
      const chain = direct.some((d) => d.agentId === checker.agentId) ? undefined : chainOf.get(checker.agentId);
      if (!chain) return askHopChecker(deps, checker, request, hop, timeoutMs);
      // The chain's segments before the last are recorded on the job by the caller's steps only; the dispute keeps the last's verdict.
      return askChain(deps, chain, request, hop, checkTimeouts(deps.clock, deps.clock.now() + timeoutMs, timeoutMs), []);
    },
  };
}
