import type { CheckVerdict } from '../../protocol/check.js';
import { DEFAULT_TRUST_POLICY, type TrustPolicy } from './policy.js';
import { slashAmount, type SlashSeverity, type TrustEvent } from './reputation.js';

/**
 * Disputes: a failed check does not punish anyone by itself (the checker may be the liar). It
 * opens a dispute; a third, independent agent re-runs the same check; its verdict settles it:
 *
 *   (check fail) --open--> open --third check fails the same agent--> upheld   (slash, reputation 0, evidence kept)
 *                           |   --third check passes--------------> dismissed (the first checker loses reputation; slashed only if the policy says so)
 *                           |   --inconclusive / blames another----> open (attempt + 1) ... voided after max attempts
 *                           '--timeout------------------------------> voided  (no one penalised)
 *
 * `transition` is pure: it returns the next state and the effects for the ledger to apply.
 *
 * @example
 * let { dispute, effects } = openDispute({ id, jobId, accusedAgentId, accusedHop, firstCheckerId, verdict, at: now });
 * ({ dispute, effects } = transition(dispute, { kind: 'third_check', checkerId, verdict: v3, at }, stakes, policy));
 * for (const e of effects) await applyEffect(e);
 */
export type DisputeState = 'open' | 'upheld' | 'dismissed' | 'voided';

export interface Dispute {
  id: string;
  jobId: string;
  state: DisputeState;
  accusedAgentId: string;
  accusedHop: number | null;
  firstCheckerId: string;
  /** Agents that ran third checks so far. */
  thirdCheckers: string[];
  attempts: number;
  openedAt: number;
  settledAt: number | null;
  /** Verdicts in order: the first check, then each third check. Kept after settlement. */
  evidence: CheckVerdict[];
}

export type DisputeEvent =
  | { kind: 'third_check'; checkerId: string; verdict: CheckVerdict; at: number }
  | { kind: 'tick'; at: number };

export type DisputeEffect =
  | { kind: 'slash'; agentId: string; amountMicroUsd: number; severity: SlashSeverity; reason: string; evidence: CheckVerdict[] }
  | { kind: 'reputation'; agentId: string; event: TrustEvent }
  | { kind: 'exclude'; agentId: string }
  /** Raise the accused's check rate to 1 until the dispute settles. */
  | { kind: 'probation'; agentId: string; on: boolean };

export interface OpenDisputeInput {
  id: string;
  jobId: string;
  firstCheckerId: string;
  verdict: CheckVerdict;
  /**
   * Fallback for a verdict that names no agent (a multi-hop route without disclosures). Such a
   * dispute is upheld only by a third check that names this agent, i.e. one run with disclosures.
   */
  accusedAgentId?: string;
  at: number;
}

export type OpenResult = { ok: true; dispute: Dispute; effects: DisputeEffect[] } | { ok: false; reason: string };

/** Only a failed verdict opens a dispute; pass and inconclusive verdicts do not. */
export function openDispute(input: OpenDisputeInput): OpenResult {
  const v = input.verdict;
  if (v.status !== 'fail') return { ok: false, reason: `a ${v.status} verdict opens no dispute` };
  const accused = v.agentId ?? input.accusedAgentId;
  if (!accused) return { ok: false, reason: 'the verdict names no agent to accuse' };
  if (accused === input.firstCheckerId) return { ok: false, reason: 'a checker cannot accuse itself' };
  return {
    ok: true,
    dispute: {
      id: input.id,
      jobId: input.jobId,
      state: 'open',
      accusedAgentId: accused,
      accusedHop: v.hop ?? null,
      firstCheckerId: input.firstCheckerId,
      thirdCheckers: [],
      attempts: 0,
      openedAt: input.at,
      settledAt: null,
      evidence: [v],
    },
    effects: [{ kind: 'probation', agentId: accused, on: true }],
  };
}

/** Agents that may not run the third check: the accused, the first checker, earlier third checkers. */
export function ineligibleThirdCheckers(d: Dispute, route: readonly string[]): Set<string> {
  return new Set([...route, d.accusedAgentId, d.firstCheckerId, ...d.thirdCheckers]);
}

export interface Stakes {
  /** Stake of the agent's pool, micro-USD. */
  stakeOf(agentId: string): number;
}

export function transition(d: Dispute, event: DisputeEvent, stakes: Stakes, policy: TrustPolicy = DEFAULT_TRUST_POLICY): { dispute: Dispute; effects: DisputeEffect[] } {
  if (d.state !== 'open') return { dispute: d, effects: [] };
  const voided = (at: number): { dispute: Dispute; effects: DisputeEffect[] } => ({
    dispute: { ...d, state: 'voided', settledAt: at },
    effects: [{ kind: 'probation', agentId: d.accusedAgentId, on: false }],
  });
  if (event.kind === 'tick') return event.at - d.openedAt >= policy.disputeTimeoutMs ? voided(event.at) : { dispute: d, effects: [] };
  const { checkerId, verdict, at } = event;
  if (checkerId === d.accusedAgentId || checkerId === d.firstCheckerId || d.thirdCheckers.includes(checkerId)) {
    return { dispute: d, effects: [] };
  }
  const next: Dispute = { ...d, attempts: d.attempts + 1, thirdCheckers: [...d.thirdCheckers, checkerId], evidence: [...d.evidence, verdict] };
  // A route-wide failure (multi-hop route without disclosures) names no hop: it convicts no one.
  const blamesAccused = verdict.status === 'fail' && verdict.agentId === d.accusedAgentId;
  if (blamesAccused) {
    // Withheld or altered disclosures are punished apart from proven wrong computation.
    const severity: SlashSeverity = verdict.reason === 'disclosure_mismatch' ? 'disclosure_refused' : 'fraud';
    const amount = slashAmount(stakes.stakeOf(d.accusedAgentId), severity, policy);
    return {
      dispute: { ...next, state: 'upheld', settledAt: at },
      effects: [
        { kind: 'slash', agentId: d.accusedAgentId, amountMicroUsd: amount, severity, reason: `dispute ${d.id} upheld: ${verdict.reason ?? 'fail'}`, evidence: next.evidence },
        { kind: 'reputation', agentId: d.accusedAgentId, event: { kind: 'fraud_upheld' } },
        { kind: 'exclude', agentId: d.accusedAgentId },
        { kind: 'reputation', agentId: d.firstCheckerId, event: { kind: 'check_passed' } },
        { kind: 'reputation', agentId: checkerId, event: { kind: 'check_passed' } },
      ],
    };
  }
  if (verdict.status === 'pass') {
    const amount = slashAmount(stakes.stakeOf(d.firstCheckerId), 'false_accusation', policy);
    const effects: DisputeEffect[] = [
      { kind: 'probation', agentId: d.accusedAgentId, on: false },
      { kind: 'reputation', agentId: d.firstCheckerId, event: { kind: 'false_accusation' } },
    ];
    if (amount > 0) effects.push({ kind: 'slash', agentId: d.firstCheckerId, amountMicroUsd: amount, severity: 'false_accusation', reason: `dispute ${d.id} dismissed`, evidence: next.evidence });
    return { dispute: { ...next, state: 'dismissed', settledAt: at }, effects };
  }
  // Inconclusive, or a failure that blames someone else: try another third checker.
  if (next.attempts >= policy.disputeMaxAttempts) return { ...voided(at), dispute: { ...next, state: 'voided', settledAt: at } };
  return { dispute: next, effects: [] };
}
