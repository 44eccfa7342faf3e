import { DEFAULT_TRUST_POLICY, type TrustPolicy } from './policy.js';

/**
 * Reputation, slashing and exclusion: pure arithmetic over registry figures. Reputation is an
 * EWMA in [0, 1] (new agents 0.5): r <- r + w (target - r), target 1 for a served job or a
 * passed check, 0 for a failed job or a dismissed accusation; a verified fraud sets it to 0.
 * The registry applies it as a delta (`RegistryStore.adjustReputation(agentId, delta, ...)`).
 *
 * @example
 * const delta = reputationDelta(agent.reputation, { kind: 'check_passed' }, policy);
 * await store.adjustReputation(agent.id, delta, 'check_passed', { jobId }, now);
 */
export type TrustEvent =
  /** A job finished with a verified attestation chain. */
  | { kind: 'job_ok' }
  /** A job failed on this agent (timeout, error, broken attestation). Not fraud. */
  | { kind: 'job_failed' }
  /** A re-execution check of one of its jobs passed. */
  | { kind: 'check_passed' }
  /** A dispute against it was upheld by the third check. */
  | { kind: 'fraud_upheld' }
  /** As first checker, it accused a node that the third check cleared. */
  | { kind: 'false_accusation' };

export function nextReputation(current: number, event: TrustEvent, policy: TrustPolicy = DEFAULT_TRUST_POLICY): number {
  const r = Number.isFinite(current) ? Math.min(1, Math.max(0, current)) : 0;
  switch (event.kind) {
    case 'job_ok':
      return r + policy.weightJobOk * (1 - r);
    case 'job_failed':
      return r - policy.weightJobFailed * r;
    case 'check_passed':
      return r + policy.weightCheckPassed * (1 - r);
    case 'false_accusation':
      return r - policy.weightFalseAccusation * r;
    case 'fraud_upheld':
      return 0;
  }
}

/** nextReputation as a delta, for `adjustReputation`. */
export function reputationDelta(current: number, event: TrustEvent, policy: TrustPolicy = DEFAULT_TRUST_POLICY): number {
  const r = Number.isFinite(current) ? Math.min(1, Math.max(0, current)) : 0;
  return nextReputation(r, event, policy) - r;
}

export type SlashSeverity =
  /** Upheld dispute: wrong tokens or hidden states. */
  | 'fraud'
  /** Asked for the activations it attested to (per-hop blame) and did not produce them. */
  | 'disclosure_refused'
  /** A checker's accusation dismissed by the third check. */
  | 'false_accusation';

/** Micro-USD to take from a stake (integer, never more than the stake, 0 for a non-positive stake). */
export function slashAmount(stakeMicroUsd: number, severity: SlashSeverity, policy: TrustPolicy = DEFAULT_TRUST_POLICY): number {
  if (!(stakeMicroUsd > 0) || !Number.isFinite(stakeMicroUsd)) return 0;
  const share = severity === 'fraud' ? policy.slashFraud : severity === 'disclosure_refused' ? policy.slashDisclosureRefused : policy.slashFalseAccusation;
  return Math.min(Math.floor(stakeMicroUsd), Math.floor(stakeMicroUsd * share));
}

export interface ExclusionInput {
  status: string;
  reputation: number;
}

export type Exclusion = { excluded: false } | { excluded: true; reason: 'slashed' | 'low_reputation' };

/** Routing drops an agent at once when slashed or when its reputation is under the floor. */
export function exclusion(a: ExclusionInput, policy: TrustPolicy = DEFAULT_TRUST_POLICY): Exclusion {
  if (a.status === 'slashed') return { excluded: true, reason: 'slashed' };
  if (!(a.reputation >= policy.exclusionReputation)) return { excluded: true, reason: 'low_reputation' };
  return { excluded: false };
}

/**
 * Unstaked pools get at most the operator-allowed share of a model's traffic. Given how many
 * recent jobs of the model went to unstaked routes, says whether this one may.
 *
 * @example
 * const allowed = unstakedRouteAllowed({ unstakedJobs: 12, totalJobs: 100 }, policy); // share 0.1 -> false
 */
export function unstakedRouteAllowed(recent: { unstakedJobs: number; totalJobs: number }, policy: TrustPolicy = DEFAULT_TRUST_POLICY): boolean {
  if (policy.unstakedTrafficShare <= 0) return false;
  if (policy.unstakedTrafficShare >= 1) return true;
  return recent.unstakedJobs + 1 <= policy.unstakedTrafficShare * (recent.totalJobs + 1);
}

/** A route is staked when every hop's pool holds stake. */
export function routeIsStaked(hops: readonly { stakeMicroUsd: number }[]): boolean {
  return hops.length > 0 && hops.every((h) => h.stakeMicroUsd > 0);
}
