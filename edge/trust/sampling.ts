import { utf8 } from '../../protocol/bytes.js';
import { DEFAULT_TRUST_POLICY, type TrustPolicy } from './policy.js';

/**
 * Which jobs get a re-execution check. The choice is a keyed hash of the job id, so agents cannot
 * predict it (they never see the edge secret) and the edge needs no state to recompute it later
 * (a job recorded as unchecked can be re-derived, and any edge location agrees).
 *
 * @example
 * const key = await importCheckSecret(env.CHECK_SECRET);
 * const rate = checkRate(agentTrust, policy, { gainPerJobMicroUsd: price });
 * if (await shouldCheck(jobId, key, rate)) await queueCheck(jobId);
 */
export const CHECK_DOMAIN = 'layernet.check/1\n';

/** HMAC-SHA256 key for shouldCheck. A secret of fewer than 32 bytes is refused. */
export async function importCheckSecret(secret: string | Uint8Array): Promise<CryptoKey> {
  const raw = typeof secret === 'string' ? utf8(secret) : secret;
  if (raw.length < 32) throw new RangeError('the check secret must be at least 32 bytes');
  return crypto.subtle.importKey('raw', raw as BufferSource, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
}

/** A uniform number in [0, 1) from the job id and the secret (53 bits of HMAC-SHA256). */
export async function checkDraw(jobId: string, key: CryptoKey): Promise<number> {
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, utf8(CHECK_DOMAIN + jobId) as BufferSource));
  let x = 0;
  for (let i = 0; i < 7; i++) x = x * 256 + mac[i]!;
  return Math.floor(x / 8) / 2 ** 53;
}

/** True when the job is to be checked at `rate` in [0, 1]; rate >= 1 always checks, rate <= 0 (or NaN) never. */
export async function shouldCheck(jobId: string, key: CryptoKey, rate: number): Promise<boolean> {
  if (!(rate > 0)) return false;
  if (rate >= 1) return true;
  return (await checkDraw(jobId, key)) < rate;
}

/** What checkRate needs to know about an agent (fields of the registry's agent and pool records). */
export interface AgentTrust {
  /** Jobs finished by the agent (served, not necessarily checked). */
  jobsServed: number;
  checksPassed: number;
  /** In [0, 1]. */
  reputation: number;
  /** The agent's pool stake, micro-USD. */
  stakeMicroUsd: number;
  /** An operator or an open dispute put the agent on probation. */
  probation: boolean;
  /** A dispute against the agent is open. */
  disputeOpen?: boolean;
}

export function onProbation(a: AgentTrust, policy: TrustPolicy = DEFAULT_TRUST_POLICY): boolean {
  return a.probation || a.disputeOpen === true || a.jobsServed < policy.probationJobs || a.checksPassed < policy.probationChecks;
}

/**
 * Check rate that makes one cheat a loss: cheating gains G per job and loses the stake S (and the
 * gain) when caught with probability p, so E = (1 - p) G - p S < 0 iff p > G / (S + G).
 */
export function breakEvenRate(stakeMicroUsd: number, gainPerJobMicroUsd: number): number {
  const g = Math.max(0, gainPerJobMicroUsd);
  const s = Math.max(0, stakeMicroUsd);
  return g === 0 ? 0 : g / (s + g);
}

/** Smallest stake for which cheating at check rate p has negative expected value: S > G (1 - p) / p. */
export function minimumStake(rate: number, gainPerJobMicroUsd: number): number {
  if (!(rate > 0)) return Infinity;
  return (Math.max(0, gainPerJobMicroUsd) * (1 - Math.min(1, rate))) / rate;
}

/**
 * The share of an agent's jobs to check: 1 on probation (new agents, open disputes); otherwise
 * from `ceilingRate` at the initial reputation down to `floorRate` at reputation 1, never below
 * the unstaked floor for pools without stake, nor below stakeSafetyFactor times the break-even
 * rate for the job's value when `gainPerJobMicroUsd` is given.
 */
export function checkRate(a: AgentTrust, policy: TrustPolicy = DEFAULT_TRUST_POLICY, job?: { gainPerJobMicroUsd: number }): number {
  if (onProbation(a, policy)) return 1;
  const r = Math.min(1, Math.max(0, Number.isFinite(a.reputation) ? a.reputation : 0));
  const span = Math.max(1e-9, 1 - policy.initialReputation);
  const t = Math.min(1, Math.max(0, (1 - r) / span));
  let rate = policy.floorRate + (policy.ceilingRate - policy.floorRate) * t * t;
  if (a.stakeMicroUsd <= 0) rate = Math.max(rate, policy.unstakedFloorRate);
  if (job) rate = Math.max(rate, policy.stakeSafetyFactor * breakEvenRate(a.stakeMicroUsd, job.gainPerJobMicroUsd));
  return Math.min(1, rate);
}

/** Rate for a route: every hop is checked by the same re-execution, so the route takes its least trusted hop's rate. */
export function routeCheckRate(hops: readonly AgentTrust[], policy: TrustPolicy = DEFAULT_TRUST_POLICY, job?: { gainPerJobMicroUsd: number }): number {
  let rate = 0;
  for (const h of hops) rate = Math.max(rate, checkRate(h, policy, job));
  return rate;
}
