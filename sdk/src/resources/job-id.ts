/**
 * Which job an answer is: its attestation's job id, else the `x-layernet-job-id` header.
 */
import { LayerNetError } from '../errors.js';

export function jobIdOf(body: { attestation?: { job_id: string } | undefined }, headers?: Headers): string | null {
  return body.attestation?.job_id ?? headers?.get('x-layernet-job-id') ?? null;
}

export function requireJobId(jobId: string | null): string {
  if (!jobId) throw new LayerNetError('the answer names no job: cannot verify it');
  return jobId;
}
