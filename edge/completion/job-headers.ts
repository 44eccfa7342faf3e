/**
 * The job's headers. A collected answer's are final; a stream's are sent before its tokens, so
 * they describe the job as it stood then: its attestation header says `provisional` (it counts
 * the chunks verified so far), and the last event's `route` and `attestation` are authoritative.
 *
 * @example
 * return new Response(body, { headers: { 'content-type': 'application/json', ...jobHeaders(gen, requestId, false) } });
 */
import type { Generation } from '../dispatch/generate.js';

export function jobHeaders(gen: Generation, requestId: string, stream: boolean): Record<string, string> {
  const att = gen.attestationSummary();
  const regionMet = gen.regionMet();
  const attestation = att.chain_head ? `verified; chunks=${att.chunks}; chain-head=${att.chain_head}; url=${att.url}` : `pending; url=${att.url}`;
  return {
    'x-request-id': requestId,
    'x-layernet-job-id': gen.req.jobId,
    'x-layernet-route': gen.routeHeader(),
    'x-layernet-attestation': stream ? `${attestation}; provisional` : attestation,
    ...(regionMet !== null ? { 'x-layernet-region-met': String(regionMet) } : {}),
  };
}
