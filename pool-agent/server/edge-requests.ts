/**
 * The edge's signed requests to an agent about jobs it served: `POST /v1/jobs/:id/cancel` (stop a
 * running head job) and `POST /v1/checks/inputs` (what a hop committed to for a recent job, for a
 * re-execution check). Each is signed by a trusted edge key within a time window (ticket-checks.ts).
 *
 * @example
 * sendJson(res, 200, await cancelJob(core, core.head, jobIdFromPath, body));
 * sendJson(res, 200, await committedInputs(core, body));
 */
import { cancelMessage, cancelRequestSchema, checkInputsMessage, checkInputsRequestSchema, type CheckInputsResponse } from '../../protocol/agent-api.js';
import { toBase64Url } from '../../protocol/bytes.js';
import type { CoreContext } from './core-context.js';
import { fail } from './errors.js';
import type { HeadJobs } from './head-job.js';

/** `POST /v1/jobs/:id/cancel`: stops a running job (its stream ends with done/cancelled). */
export async function cancelJob(core: Pick<CoreContext, 'tickets'>, jobs: Pick<HeadJobs, 'cancel'>, pathJobId: string, body: unknown): Promise<{ cancelled: boolean }> {
  const parsed = cancelRequestSchema.safeParse(body);
  if (!parsed.success) fail('invalid_request', 'invalid cancel request');
  const r = parsed.data;
  if (r.jobId !== pathJobId) fail('invalid_request', 'job id in the path and the body differ');
  await core.tickets.verifyEdgeSignature(cancelMessage(r), r.signature, r.issuedAt);
  return { cancelled: jobs.cancel(r.jobId, r.ticketHash) };
}

/** `POST /v1/checks/inputs`: what a hop committed to for a recent job. */
export async function committedInputs(core: Pick<CoreContext, 'tickets' | 'inputs'>, body: unknown): Promise<CheckInputsResponse> {
  const parsed = checkInputsRequestSchema.safeParse(body);
  if (!parsed.success) fail('invalid_request', 'invalid check-inputs request');
  const r = parsed.data;
  await core.tickets.verifyEdgeSignature(checkInputsMessage(r), r.signature, r.issuedAt);
  const job = core.inputs.get(r.jobId, r.hop);
  if (!job) fail('not_found', `no committed inputs kept for job ${r.jobId} hop ${r.hop} (expired or never served here)`);
  return {
    jobId: job.jobId,
    hop: job.hop,
    dtype: job.dtype,
    hiddenSize: job.hiddenSize,
    chunks: job.chunks.map((c) => ({
      steps: c.steps,
      ...(c.inputTokenIds ? { inputTokenIds: c.inputTokenIds } : {}),
      ...(c.input ? { input: toBase64Url(c.input) } : {}),
      ...(c.output ? { output: toBase64Url(c.output) } : {}),
    })),
  };
}
