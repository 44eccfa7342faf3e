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
import type { JobTicket } from '../../protocol/ticket.js';

/** Hashing and signing for the per-step hot path (node:crypto in the agent: node-crypto.ts). */
export interface AgentCrypto {
  sha256Hex(bytes: Uint8Array): string;
  /** Ed25519 signature of the agent key, base64url (as protocol/keys.ts signBytes). */
  sign(bytes: Uint8Array): string;
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
  prevHash: string | null;
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

/** TOPLOC commitment of the final hidden row(s) that produced this chunk's tokens (last hop). */
export function hiddenCommitmentOf(finalHidden: Float32Array, seqLen: number, rows: number): string {
  const hidden = finalHidden.length / seqLen;
  return commitHidden(finalHidden.subarray((seqLen - rows) * hidden, seqLen * hidden), rows, hidden, { k: Math.min(DEFAULT_TOPK, hidden) });
}
