/**
 * Builds and signs the job ticket for one attempt on one route.
 *
 * @example
 * const signed = await issueTicket({ jobId, model, hops, promptIds, prefixIds: [], maxTokens: 64, sampling, ... });
 */
import { encodeTokenIds, randomBytes, sha256Hex, toBase64Url } from '../../protocol/bytes.js';
import { signTicket, ticketHash, type ChunkingPolicy, type JobTicket, type SamplingParams, type SignedTicket } from '../../protocol/ticket.js';
import type { ModelRecord, RouteCandidate } from '../../db/registry-contract.js';

export interface TicketInput {
  jobId: string;
  model: Pick<ModelRecord, 'id' | 'dtype'>;
  hops: readonly RouteCandidate[];
  promptIds: readonly number[];
  prefixIds: readonly number[];
  maxTokens: number;
  sampling: SamplingParams;
  stopTokenIds: number[];
  /** How often the route signs (absent: every step). */
  chunking?: ChunkingPolicy;
  now: number;
  /** Ticket must be presented by then, ms from now. */
  ttlMs: number;
  /** Whole-job deadline, epoch ms. */
  deadline: number;
  edgeKeyId: string;
}

export async function issueTicket(input: TicketInput, privateKey: CryptoKey): Promise<{ signed: SignedTicket; hash: string }> {
  const ticket: JobTicket = {
    v: 1,
    jobId: input.jobId,
    modelId: input.model.id,
    dtype: input.model.dtype,
    route: input.hops.map((h) => ({ agentId: h.agentId, layers: [h.layers[0], h.layers[1]] as [number, number], endpoint: h.endpoint, publicKey: h.publicKey })),
    inputHash: await sha256Hex(encodeTokenIds([...input.promptIds, ...input.prefixIds])),
    promptTokens: input.promptIds.length,
    prefixTokens: input.prefixIds.length,
    limits: { maxTokens: input.maxTokens, deadline: input.deadline },
    sampling: input.sampling,
    stopTokenIds: input.stopTokenIds,
    ...(input.chunking ? { chunking: input.chunking } : {}),
    nonce: toBase64Url(randomBytes(18)),
    issuedAt: input.now,
    expiresAt: input.now + input.ttlMs,
    edgeKeyId: input.edgeKeyId,
  };
  const signed = await signTicket(privateKey, ticket);
  return { signed, hash: await ticketHash(ticket) };
}
