/**
 * What a job's re-execution checks found, told to the job's owner (`check` in
 * `GET /v1/jobs/:id/attestation`, protocol/api.ts `JobCheck`). A pure function of the job record
 * (its check status and the steps run-checks.ts recorded), the job's disputes and the clock.
 *
 * Only what concerns the caller's own job leaves: the status, the failing verdict's reason and
 * detail, the hop blamed and its (public) agent id, the dispute's id and state, the refund. Not
 * the checkers, their signatures, the evidence figures, nor anything of another account.
 *
 * @example
 * const check = jobCheckOutcome(job, await store.listJobDisputes(job.id, 8), { checksOn: !!deps.checks?.key, now: deps.clock.now() });
 */
import { checkVerdictSchema } from '../../protocol/check.js';
import type { JobCheck } from '../../protocol/api.js';
import type { JobDisputeRecord, JobRecord } from '../../db/registry-contract.js';

/**
 * How long after a job finished a verdict may still land, ms: run-checks.ts ends all of a job's
 * checks within its 25 s budget (workerd's waitUntil window); 5 s more for the record to land.
 */
export const CHECK_WINDOW_MS = 30_000;

/** Disputes of one job read for its outcome (one per checked attempt at most, in practice). */
export const MAX_JOB_DISPUTES = 8;

interface RecordedVerdict {
  /** The job id the verdict's ticket carries (`${jobId}.${n}` for attempt n, 1-based, after the first). */
  jobId: string;
  status: 'pass' | 'fail' | 'inconclusive';
  reason?: string;
  hop?: number;
  agentId?: string;
  detail: string;
  step?: number;
}

/** The verdicts recorded on the job, in order (entries run-checks.ts wrote: check and third_check). */
function recordedVerdicts(entries: readonly unknown[]): RecordedVerdict[] {
  const out: RecordedVerdict[] = [];
  for (const e of entries) {
    if (!e || typeof e !== 'object') continue;
    const { kind, verdict } = e as { kind?: unknown; verdict?: unknown };
    if (kind !== 'check' && kind !== 'third_check') continue;
    // The signed verdict ({ checkerId, verdict, issuedAt, sig }) was verified when it was recorded.
    const parsed = checkVerdictSchema.safeParse((verdict as { verdict?: unknown } | null)?.verdict);
    if (!parsed.success) continue;
    const v = parsed.data;
    out.push({
      jobId: v.jobId,
      status: v.status,
      detail: v.detail,
      ...(v.reason !== undefined ? { reason: v.reason } : {}),
      ...(v.hop !== undefined ? { hop: v.hop } : {}),
      ...(v.agentId !== undefined ? { agentId: v.agentId } : {}),
      ...(v.evidence.step !== undefined ? { step: v.evidence.step } : {}),
    });
  }
  return out;
}

/** Index into `job.attempts` of the attempt whose ticket carries `ticketJobId`, or null. */
function attemptOf(job: JobRecord, ticketJobId: string): number | null {
  const i = job.attempts.findIndex((a) => a.ticket.ticket.jobId === ticketJobId);
  return i < 0 ? null : i;
}

/** The dispute the outcome reports: an upheld one first, then an open one, then the latest. */
function mainDispute(disputes: readonly JobDisputeRecord[]): JobDisputeRecord | undefined {
  return disputes.find((d) => d.status === 'upheld') ?? disputes.find((d) => d.status === 'open') ?? disputes[disputes.length - 1];
}

/**
 * The job's check outcome for its owner.
 *
 * `status` is the job's recorded check status, except that a `fail` whose dispute settled later
 * without a check step on the job (a dispute voided after the timeout) reads as its settlement.
 * With no verdict recorded: `pending` while one may still come (checks on, the job running or
 * finished less than `CHECK_WINDOW_MS` ago), else `unchecked`.
 */
export function jobCheckOutcome(
  job: JobRecord,
  disputes: readonly JobDisputeRecord[],
  ctx: { checksOn: boolean; now: number; windowMs?: number },
): JobCheck {
  const refund = job.refund ? { refunded_micro_usd: job.refund.amountMicroUsd } : {};
  const recorded = job.checkStatus ?? null;
  if (recorded === null) {
    const window = ctx.windowMs ?? CHECK_WINDOW_MS;
    const mayCome = ctx.checksOn && (job.status === 'running' || (job.status === 'completed' && job.finishedAt !== null && ctx.now - job.finishedAt < window));
    return { status: mayCome ? 'pending' : 'unchecked', ...refund };
  }
  const dispute = mainDispute(disputes);
  const status = recorded === 'fail' && dispute && dispute.status !== 'open' ? dispute.status : recorded;
  const out: JobCheck = { status, ...(dispute ? { dispute: { id: dispute.id, status: dispute.status } } : {}), ...refund };
  if (status !== 'fail' && status !== 'upheld') return out;

  // The verdict the job was found bad on: the accusation against the disputed agent, else the
  // last failing verdict (a route-wide failure names no hop).
  const failing = recordedVerdicts(job.checks ?? []).filter((v) => v.status === 'fail');
  const verdict = (dispute && failing.filter((v) => v.agentId === dispute.agentId).at(-1)) || failing.at(-1);
  if (!verdict) return out;
  out.verdict = { reason: verdict.reason ?? 'check_failed', detail: verdict.detail, ...(verdict.step !== undefined ? { step: verdict.step } : {}) };
  const attempt = attemptOf(job, verdict.jobId);
  if (attempt === null || verdict.agentId === undefined) return out;
  // Blame only what the attempt's signed route says: the hop's index and its agent must agree.
  const route = job.attempts[attempt]!.ticket.ticket.route;
  const hop = verdict.hop ?? route.findIndex((h) => h.agentId === verdict.agentId);
  if (hop >= 0 && route[hop]?.agentId === verdict.agentId) out.blame = { attempt, hop, agent_id: verdict.agentId };
  return out;
}
