/**
 * Hop k's refusal of a sealing frame, and who it can prove at fault. `prevAttestationFault`
 * (attest.ts) says why the bytes or `prev` are not acceptable; this module decides whether the
 * refusal can name hop k-1: only when hop k-1's own signatures contradict each other, i.e. its
 * `senderSig` verifies (under the key the signed ticket gives for it) over the hash of the bytes
 * actually received, and those bytes contradict its signed attestation. The refusal then carries
 * `ForwardEvidence` (protocol/forward-evidence.ts) that the edge checks on its own
 * (edge/dispatch/forward-blame.ts). Otherwise (no signature, one over other bytes, no key in the
 * ticket, `prev` itself not acceptable, or a payload too large to disclose) it is today's
 * refusal: the edge cannot tell a tampered link or a broken sender from a lying receiver.
 *
 * The error keeps naming the refusing hop (`agentId` left to the refuser): an edge that does not
 * read the evidence, or finds it wrong, blames whoever reported, as before.
 *
 * @example
 * const refusal = forwardRefusal(crypto, claim, ticket, ticketHash, payload, hiddenSize);
 * if (refusal) throw refusal;
 */
import { forwardBytes, MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES, type ForwardEvidence } from '../../protocol/forward-evidence.js';
import { toBase64Url } from '../../protocol/bytes.js';
import type { JobTicket } from '../../protocol/ticket.js';
import { prevAttestationFault, type AgentCrypto, type ForwardClaim, type PrevFault } from './attest.js';
import { AgentError } from './errors.js';

/** The refusal of a sealing frame whose bytes or `prev` hop k does not vouch for, or null to go on. */
export function forwardRefusal(crypto: AgentCrypto, claim: ForwardClaim, ticket: JobTicket, ticketHash: string, payload: Uint8Array, hiddenSize: number): AgentError | null {
  const fault = prevAttestationFault(crypto, claim, ticket, ticketHash, payload, hiddenSize);
  if (!fault) return null;
  const refused = `hop ${claim.hop} refuses steps [${claim.steps[0]}, ${claim.steps[1]}): ${fault.why}`;
  const evidence = forwardEvidence(crypto, claim, ticket, ticketHash, payload, fault);
  if (!evidence) return new AgentError('bad_input', refused);
  return new AgentError('bad_input', `${refused}; hop ${claim.hop - 1} signed that it sent these bytes: it is at fault`, { evidence });
}

/**
 * Evidence against hop k-1 for a refusal about the bytes, or null when the refusal proves nothing
 * about it. Every check here is one the edge repeats; this side only avoids sending what the edge
 * would refuse anyway.
 */
export function forwardEvidence(crypto: AgentCrypto, claim: ForwardClaim, ticket: JobTicket, ticketHash: string, payload: Uint8Array, fault: PrevFault): ForwardEvidence | null {
  const { prev, senderSig } = claim;
  // A fault that is not about the bytes (prev of another ticket, forged, ...) says nothing about
  // what hop k-1 signed: anyone on the link could have written that prev.
  if (!fault.bytes || !fault.receivedSha256 || !prev || senderSig === undefined) return null;
  // Without a key vouched for by the edge, this hop never checked prev's signature either.
  const key = ticket.route[claim.hop - 1]?.publicKey;
  if (key === undefined) return null;
  const statement = { jobId: ticket.jobId, ticketHash, hop: claim.hop, steps: claim.steps, payloadSha256: fault.receivedSha256 };
  // Over other bytes than received: the link changed them, or hop k-1 signed something else.
  // Either way nothing ties hop k-1 to these bytes.
  if (!crypto.verify(key, senderSig, forwardBytes(statement))) return null;
  const evidence: ForwardEvidence = { kind: 'bad_forward', prev, senderSig, receivedSha256: fault.receivedSha256 };
  if (fault.bytes === 'hash_mismatch') return evidence;
  // The hash matches the attestation: only the bytes themselves show they do not fit it, and a
  // disclosure too large for an error frame leaves the fault unprovable.
  if (payload.byteLength > MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES) return null;
  return { ...evidence, payload: toBase64Url(payload) };
}
