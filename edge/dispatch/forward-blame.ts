/**
 * The edge's own check of a refused forward's evidence (protocol/forward-evidence.ts) before it
 * blames the hop that sent the bytes instead of the hop that refused them. Nothing in the evidence
 * is taken on the reporter's word: the accused is the route hop that signed `prev`, both of its
 * signatures are checked under the key the edge registered for that hop, the statements must be
 * about this ticket, this chunk and the next hop, and for bytes that hash as attested the edge
 * decodes them and finds the contradiction itself. A refusing hop therefore cannot frame its
 * predecessor: it would need that predecessor's signature over bytes that contradict its own
 * attestation, which an honest sender never makes.
 *
 * @example
 * const proof = await verifyForwardEvidence(ev.evidence, { ticket, ticketHash, hops: route.hops, hiddenSize });
 * if (proof.ok) blame(proof.agentId); else blame(reporter);
 */
import { attestationBytes } from '../../protocol/attestation.js';
import { fromBase64Url, sha256Hex } from '../../protocol/bytes.js';
import { forwardBytes, forwardBytesFault, forwardEvidenceSchema, MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES, type ForwardFault } from '../../protocol/forward-evidence.js';
import { verifyBytes } from '../../protocol/keys.js';
import type { JobTicket } from '../../protocol/ticket.js';

export interface ForwardEvidenceContext {
  ticket: JobTicket;
  ticketHash: string;
  /** The route as the edge planned it: each hop's agent id and registered key (not the ticket's copy). */
  hops: readonly { agentId: string; publicKey: string }[];
  /** The model's hidden size (the manifest's), to decode disclosed activations. */
  hiddenSize: number;
}

export type ForwardProof =
  | { ok: true; hop: number; agentId: string; steps: [number, number]; fault: ForwardFault; detail: string }
  | { ok: false; why: string };

/** Whether `input` proves that a hop of this route forwarded bytes other than it attested; never throws. */
export async function verifyForwardEvidence(input: unknown, ctx: ForwardEvidenceContext): Promise<ForwardProof> {
  const parsed = forwardEvidenceSchema.safeParse(input);
  if (!parsed.success) return { ok: false, why: 'evidence does not match the schema' };
  const ev = parsed.data;
  const { ticket, ticketHash } = ctx;
  const att = ev.prev.att;
  const hop = att.hop;
  // Bound to this chunk of this attempt: a genuine statement replayed from another ticket (an
  // earlier attempt of the job, another job) or another hop proves nothing here.
  if (att.ticketHash !== ticketHash || att.jobId !== ticket.jobId) return { ok: false, why: 'prev is bound to another ticket' };
  const accused = ctx.hops[hop];
  const routeHop = ticket.route[hop];
  if (!accused || !routeHop || hop + 1 >= ticket.route.length || ctx.hops.length !== ticket.route.length) return { ok: false, why: `hop ${hop} has no next hop on this route` };
  if (att.agentId !== accused.agentId || routeHop.agentId !== accused.agentId) return { ok: false, why: `prev is signed as ${att.agentId}, the route's hop ${hop} is ${accused.agentId}` };
  if (att.layers[0] !== routeHop.layers[0] || att.layers[1] !== routeHop.layers[1] || att.modelId !== ticket.modelId) return { ok: false, why: 'prev covers other layers or another model' };
  const [from, to] = att.steps;
  if (to <= from) return { ok: false, why: 'prev covers no steps' };
  if (att.outputTokenIds !== undefined || att.hiddenCommitment !== undefined) return { ok: false, why: 'prev commits to tokens: only the last hop does' };
  if (!(await verifyBytes(accused.publicKey, ev.prev.sig, attestationBytes(att)))) return { ok: false, why: `prev's signature does not verify under ${accused.agentId}'s registered key` };
  const statement = { jobId: ticket.jobId, ticketHash, hop: hop + 1, steps: [from, to] as const, payloadSha256: ev.receivedSha256 };
  if (!(await verifyBytes(accused.publicKey, ev.senderSig, forwardBytes(statement)))) {
    return { ok: false, why: `the sender signature does not verify under ${accused.agentId}'s registered key over the received hash` };
  }
  const proven = (fault: ForwardFault, detail: string): ForwardProof => ({ ok: true, hop, agentId: accused.agentId, steps: [from, to], fault, detail });
  if (ev.receivedSha256 !== att.outputCommitment) {
    return proven('hash_mismatch', `hop ${hop} signed that it sent bytes hashing to ${ev.receivedSha256.slice(0, 12)}… for steps [${from}, ${to}), and attested ${att.outputCommitment.slice(0, 12)}…`);
  }
  // The same hash: the bytes must be shown, and must contradict the attestation's other claims.
  if (ev.payload === undefined) return { ok: false, why: 'the received bytes hash as attested and are not disclosed' };
  let bytes: Uint8Array;
  try {
    bytes = fromBase64Url(ev.payload);
  } catch {
    return { ok: false, why: 'the disclosed payload is not base64url' };
  }
  if (bytes.byteLength > MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES) return { ok: false, why: `the disclosed payload exceeds ${MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES} bytes` };
  if ((await sha256Hex(bytes)) !== ev.receivedSha256) return { ok: false, why: 'the disclosed payload does not hash to the received hash' };
  const fault = forwardBytesFault(bytes, att, ticket.dtype, ctx.hiddenSize);
  if (!fault) return { ok: false, why: 'the disclosed bytes are what the attestation commits to' };
  return proven(fault.fault, `hop ${hop}: ${fault.detail}`);
}
