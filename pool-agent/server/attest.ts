/**
 * Builds and signs one hop's attestation for one chunk of steps, matching what the edge's
 * ChainVerifier (protocol/attestation.ts) checks. Plain code: no Node import.
 *
 * @example
 * const { signed, hash } = await attestChunk(hopCtx, { steps: [4, 5], inputCommitment, outputCommitment, prevHash });
 */
import { attestationBytes, type Attestation, type SignedAttestation } from '../../protocol/attestation.js';
import { encodeTokenIds } from '../../protocol/bytes.js';
import { commitHidden, DEFAULT_TOPK } from '../../protocol/commitment.js';
import { activationValues, committedActivationRows, forwardBytesFault, type ForwardFault } from '../../protocol/forward-evidence.js';
import { commitPickedRows } from '../../protocol/output-commitment.js';
import type { JobTicket } from '../../protocol/ticket.js';

// The agent and the edge decode activations with one implementation (protocol/forward-evidence.ts):
// what a receiving hop refuses, the edge must find wrong too.
export { activationValues };

/** Hashing and signing for the per-step hot path (node:crypto in the agent: node-crypto.ts). */
export interface AgentCrypto {
  sha256Hex(bytes: Uint8Array): string;
  /** Ed25519 signature of the agent key, base64url (as protocol/keys.ts signBytes). */
  sign(bytes: Uint8Array): string;
  /** Verifies an Ed25519 signature (base64url) by a raw base64url public key; never throws. */
  verify(publicKey: string, signature: string, bytes: Uint8Array): boolean;
}

export interface HopContext {
  ticket: JobTicket;
  ticketHash: string;
  agentId: string;
  hop: number;
  layers: readonly [number, number];
  crypto: AgentCrypto;
  clock: () => number;
}

export interface ChunkCommitments {
  steps: [number, number];
  inputCommitment: string;
  outputCommitment: string;
  outputTokenIds?: number[];
  hiddenCommitment?: string;
  /** Hops before the last: TOPLOC commitment of the activations sent (chunkOutputTopLoc). */
  outputTopLoc?: string;
  prevHash: string | null;
}

/**
 * What one hop computed since its unsealed chunk began (the steps since the last seal), kept until
 * the chunk is sealed and signed in one attestation: commitments cover the concatenation of every
 * step's bytes, in step order.
 */
export interface UnsealedChunk {
  /** First step of the chunk. */
  from: number;
  /** Hop 0: the token ids fed at these steps. */
  fed: number[];
  /** Hops > 0: the activation bytes received, one entry per step. */
  inputs: Uint8Array[];
  /** Hops before the last: the activation bytes sent on, one entry per step. */
  outputs: Uint8Array[];
  /** Last hop: the sampled tokens and the final hidden row that produced each. */
  tokens: number[];
  hiddenRows: Float32Array[];
}

export function newUnsealedChunk(from: number): UnsealedChunk {
  return { from, fed: [], inputs: [], outputs: [], tokens: [], hiddenRows: [] };
}

/** The last hop's TOPLOC commitment of a chunk: one row per step. */
export function chunkHiddenCommitment(chunk: UnsealedChunk): string {
  const rows = chunk.hiddenRows.length;
  const hidden = chunk.hiddenRows[0]!.length;
  const all = new Float32Array(rows * hidden);
  chunk.hiddenRows.forEach((r, i) => all.set(r, i * hidden));
  return commitHidden(all, rows, hidden, { k: Math.min(DEFAULT_TOPK, hidden) });
}

/**
 * A middle or head hop's `outputTopLoc` of a chunk: `output` is every step's activations sent, in
 * step order (the bytes whose SHA-256 is `outputCommitment`), [rows, hiddenSize].
 */
export function chunkOutputTopLoc(output: Uint8Array, dtype: 'float32' | 'float16', hiddenSize: number, outputCommitment: string): string {
  const rows = committedActivationRows(output, dtype, hiddenSize, outputCommitment);
  if (!rows) throw new RangeError(`${output.length} bytes of ${dtype} activations are not whole rows of ${hiddenSize}`);
  return commitPickedRows(rows.values, hiddenSize);
}

export function attestChunk(ctx: HopContext, c: ChunkCommitments): { signed: SignedAttestation; hash: string } {
  const att: Attestation = {
    v: 1,
    ticketHash: ctx.ticketHash,
    jobId: ctx.ticket.jobId,
    agentId: ctx.agentId,
    modelId: ctx.ticket.modelId,
    hop: ctx.hop,
    layers: [ctx.layers[0], ctx.layers[1]],
    steps: c.steps,
    inputCommitment: c.inputCommitment,
    outputCommitment: c.outputCommitment,
    prevHash: c.prevHash,
    issuedAt: ctx.clock(),
  };
  if (c.outputTokenIds) att.outputTokenIds = c.outputTokenIds;
  if (c.hiddenCommitment) att.hiddenCommitment = c.hiddenCommitment;
  if (c.outputTopLoc) att.outputTopLoc = c.outputTopLoc;
  const bytes = attestationBytes(att);
  return { signed: { att, sig: ctx.crypto.sign(bytes) }, hash: ctx.crypto.sha256Hex(bytes) };
}

/**
 * The head hop's input commitment: the ticket's inputHash for the first chunk (prefill of
 * prompt ++ prefix), otherwise the tokens fed at these steps (ChainVerifier: previous token, then
 * this chunk's tokens but the last).
 */
export function headInputCommitment(crypto: AgentCrypto, ticket: JobTicket, firstChunk: boolean, fedTokens: readonly number[]): string {
  return firstChunk ? ticket.inputHash : tokenCommitmentSync(crypto, fedTokens);
}

/** protocol/attestation.ts tokenCommitment, synchronously. */
export function tokenCommitmentSync(crypto: AgentCrypto, ids: readonly number[]): string {
  return crypto.sha256Hex(encodeTokenIds(ids));
}

/** A copy of the final hidden row of a forward pass (the one that produced the step's token). */
export function lastHiddenRow(finalHidden: Float32Array, seqLen: number): Float32Array {
  const hidden = finalHidden.length / seqLen;
  return finalHidden.slice((seqLen - 1) * hidden, seqLen * hidden);
}

/** What a sealing frame tells hop k about hop k-1: the chunk's steps and hop k-1's attestation of it. */
export interface ForwardClaim {
  hop: number;
  steps: readonly [number, number];
  prevHash: string;
  prev?: SignedAttestation | undefined;
  /** Hop k-1's signature over the bytes it sent for the chunk (protocol/forward-evidence.ts); absent from older senders. */
  senderSig?: string | undefined;
}

/**
 * Why hop k refuses a sealing frame, and whether the refusal is about the bytes: `bytes` is set
 * only once `prev` has passed every other check (this ticket, hop, agent, layers, model, steps,
 * prevHash, and hop k-1's key when the ticket gives it), so only then may the received bytes be
 * held against hop k-1 (pool-agent/server/forward-refusal.ts).
 */
export interface PrevFault {
  why: string;
  bytes?: ForwardFault;
  /** SHA-256 of the received payload, when it was computed (a `bytes` fault). */
  receivedSha256?: string;
}

/**
 * Checks, before hop k runs or signs anything, that the activations it received are what hop k-1
 * attested for these steps: `prev` is hop k-1's attestation of this ticket and these steps, it
 * hashes to `prevHash`, and its output commitment is the hash of the received payload (every
 * payload of the chunk, concatenated in step order), and its `outputTopLoc`, when it carries one,
 * commits to those bytes (exact values; hiddenSize is this hop's). Returns why not, or null.
 * `prev`'s signature is checked against the key the signed ticket gives for hop k-1, when it gives
 * one; the edge checks the whole chain again.
 *
 * @example
 * const fault = prevAttestationFault(crypto, meta, ticket, ticketHash, frame.payload, hiddenSize);
 * if (fault) throw new AgentError('bad_input', fault.why);
 */
export function prevAttestationFault(crypto: AgentCrypto, claim: ForwardClaim, ticket: JobTicket, ticketHash: string, payload: Uint8Array, hiddenSize: number): PrevFault | null {
  const { hop, steps, prev } = claim;
  const refuse = (why: string): PrevFault => ({ why });
  if (hop < 1) return refuse(`hop ${hop} has no previous hop`);
  if (!prev) return refuse(`hop ${hop} needs hop ${hop - 1}'s signed attestation (meta.prev) for steps [${steps[0]}, ${steps[1]})`);
  const att = prev.att;
  const expected = ticket.route[hop - 1];
  if (!expected) return refuse(`the route has no hop ${hop - 1}`);
  if (att.ticketHash !== ticketHash || att.jobId !== ticket.jobId) return refuse('prev is bound to another ticket');
  if (att.hop !== hop - 1) return refuse(`prev is the attestation of hop ${att.hop}, not hop ${hop - 1}`);
  if (att.agentId !== expected.agentId) return refuse(`prev is signed as ${att.agentId}, the ticket names ${expected.agentId} as hop ${hop - 1}`);
  if (att.layers[0] !== expected.layers[0] || att.layers[1] !== expected.layers[1]) return refuse(`prev covers layers [${att.layers[0]}, ${att.layers[1]}), the ticket gives hop ${hop - 1} [${expected.layers[0]}, ${expected.layers[1]})`);
  if (att.modelId !== ticket.modelId) return refuse('prev names another model');
  if (att.steps[0] !== steps[0] || att.steps[1] !== steps[1]) return refuse(`prev covers steps [${att.steps[0]}, ${att.steps[1]}), the frame [${steps[0]}, ${steps[1]})`);
  if (att.outputTokenIds !== undefined || att.hiddenCommitment !== undefined) return refuse('prev commits to tokens: only the last hop does');
  const bytes = attestationBytes(att);
  if (crypto.sha256Hex(bytes) !== claim.prevHash) return refuse("prevHash is not the hash of prev (hop k-1's attestation)");
  // The edge vouches for hop k-1's key in the signed ticket: a forged prev is refused here,
  // so a malicious previous hop cannot make this hop sign on top of a lie.
  if (expected.publicKey !== undefined && !crypto.verify(expected.publicKey, prev.sig, bytes)) return refuse(`prev's signature does not verify against hop ${hop - 1}'s registered key`);
  const received = crypto.sha256Hex(payload);
  if (att.outputCommitment !== received) {
    return { why: `the activations received differ from what hop ${hop - 1} attested (output commitment mismatch)`, bytes: 'hash_mismatch', receivedSha256: received };
  }
  // A checker judges hop k-1 by its outputTopLoc when its bytes are not disclosed: it must
  // describe what hop k runs on, or hop k-1 could commit to one output and send another.
  const fault = forwardBytesFault(payload, att, ticket.dtype, hiddenSize);
  return fault ? { why: fault.detail, bytes: fault.fault, receivedSha256: received } : null;
}
