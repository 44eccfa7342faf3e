/**
 * A job found bad is not charged. When a re-execution check fails against a hop of the job's
 * route (the moment run-checks.ts opens a dispute and puts the accused on probation), the job's
 * whole cost goes back to its API key's spend (`api_keys.spent_micro_usd`, what budgets read),
 * with a `refund` ledger entry and the refund marked on the job, which its owner sees in
 * `GET /v1/jobs/:id/attestation` (`check.refunded_micro_usd`).
 *
 * Billing rules (docs/trust.md §7):
 * - refunded at the first failed check that names a hop, not when the dispute settles: the client
 *   learns its answer was found wrong at once, and the route is out of service (on probation)
 *   already; an upheld dispute always comes through that point, so it needs no second refund;
 * - once per job, whatever happens next: a dismissed or voided dispute does not charge it again
 *   (the false accuser loses reputation instead);
 * - a failure that names no hop (a multi-hop route checked without disclosures) convicts no one
 *   and refunds nothing: one checker's unattributed verdict is not settled by anyone;
 * - rate-limit windows (`usage`) are not handed back: they meter load, which was spent;
 * - this isolate's cached key record (`caches.keys`) still counts the spend until it expires
 *   (`keyCacheTtlMs`, ≤ 5 s): a budget check may refuse for that long, never overspend.
 *
 * Never throws: a store failure is logged and leaves the job charged (the check goes on).
 *
 * @example
 * await refundJob(deps, { jobId, reason: 'sampling_mismatch', disputeId, agentId });
 */
import type { EdgeDeps } from '../deps.js';
import type { JobRefundResult } from '../../db/registry-contract.js';

export interface RefundRequest {
  jobId: string;
  /** Why the job was found bad (the failing verdict's reason). */
  reason: string;
  /** The dispute the failure opened, kept with the ledger entry. */
  disputeId?: string;
  /** The accused agent. */
  agentId?: string;
}

/** Hands the job's cost back to its API key, once; null when nothing was refunded now. */
export async function refundJob(deps: Pick<EdgeDeps, 'store' | 'clock' | 'log'>, req: RefundRequest): Promise<JobRefundResult | null> {
  const evidence = { ...(req.disputeId !== undefined ? { disputeId: req.disputeId } : {}), ...(req.agentId !== undefined ? { agentId: req.agentId } : {}) };
  try {
    const refund = await deps.store.refundJob({ jobId: req.jobId, reason: req.reason, evidence, at: deps.clock.now() });
    if (refund) deps.log({ level: 'info', msg: 'job found bad: cost refunded', jobId: req.jobId, amountMicroUsd: refund.amountMicroUsd, reason: req.reason, ...evidence });
    return refund;
  } catch (err) {
    deps.log({ level: 'error', msg: 'could not refund a job found bad', jobId: req.jobId, error: err instanceof Error ? err.message : String(err) });
    return null;
  }
}
