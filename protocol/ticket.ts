import { z } from 'zod';
import { checkSignedTicket, type TicketCheck } from './ticket-signing.js';

/**
 * Job tickets: the edge's signed order to a route of agents. Agents refuse unsigned, expired or
 * replayed tickets; every attestation binds the ticket's hash. This file holds the schemas; the
 * bytes, hash, signature and the checks past the shape are in ticket-signing.ts (no zod, so the
 * SDK's browser bundle re-verifies tickets without it) and re-exported here. The SDK reads
 * tickets with a zod/mini mirror of the schemas (sdk/src/schemas.ts): a change here goes there too.
 *
 * @example
 * const signed = await signTicket(edgeKey.privateKey, ticket);
 * const check = await verifyTicket(signed, edgeKey.publicKey, Date.now());
 */
export {
  TICKET_DOMAIN,
  ticketBytes,
  ticketHash,
  signTicket,
  checkSignedTicket,
  routeCoversModel,
  type TicketCheck,
} from './ticket-signing.js';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
export const layerRangeSchema = z
  .tuple([z.number().int().nonnegative(), z.number().int().nonnegative()])
  .refine(([a, b]) => a < b, 'a layer range is [start, end) with start < end');

export const routeHopSchema = z.object({
  agentId: z.string().min(1).max(64),
  /** Layers this hop computes, [start, end). */
  layers: layerRangeSchema,
  /** Where the previous hop sends activations (the head hop is called by the edge). */
  endpoint: z.string().url().max(512),
  /**
   * The hop's registered Ed25519 public key (raw, base64url), vouched for by the edge's
   * signature, so a later hop can verify the earlier hop's attestation before building on it.
   */
  publicKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/).optional(),
});
export type RouteHop = z.infer<typeof routeHopSchema>;

export const samplingSchema = z.object({
  temperature: z.number().min(0).max(2),
  topP: z.number().gt(0).max(1),
  topK: z.number().int().min(0).max(1000),
  seed: z.number().int().min(0).max(2 ** 32 - 1),
});
export type SamplingParams = z.infer<typeof samplingSchema>;

/**
 * How often the route signs: a chunk closes after `maxSteps` generation steps, or once it has been
 * open `maxDelayMs` (the head agent's clock), whichever comes first, and at the end of the job.
 * The prefill step is always a chunk of its own (time to first token is not delayed). Absent: one
 * chunk per step. Longer chunks divide the signing and verification cost per token; tokens reach
 * the client only when their chunk is verified, so `maxDelayMs` bounds the added latency.
 */
export const chunkingSchema = z.object({
  maxSteps: z.number().int().min(1).max(256),
  maxDelayMs: z.number().int().min(0).max(60_000),
});
export type ChunkingPolicy = z.infer<typeof chunkingSchema>;

export const ticketSchema = z.object({
  v: z.literal(1),
  jobId: z.string().min(1).max(64),
  modelId: hex64,
  dtype: z.enum(['float32', 'float16']),
  route: z.array(routeHopSchema).min(1).max(16),
  /** sha256 (hex) of encodeTokenIds(promptIds ++ prefixIds): the exact input the head hop must use. */
  inputHash: hex64,
  promptTokens: z.number().int().positive().max(1_000_000),
  /** Tokens already generated (and sent to the client) before this ticket: a resumed stream. */
  prefixTokens: z.number().int().nonnegative().max(1_000_000),
  limits: z.object({
    /** Maximum generated tokens, counted from step 0 (prefix included). */
    maxTokens: z.number().int().positive().max(1_000_000),
    /** Epoch milliseconds after which agents stop working on the job. */
    deadline: z.number().int().positive(),
  }),
  sampling: samplingSchema,
  stopTokenIds: z.array(z.number().int().nonnegative()).max(64),
  chunking: chunkingSchema.optional(),
  nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  issuedAt: z.number().int().positive(),
  expiresAt: z.number().int().positive(),
  /** Which edge key signed it (agents may trust several during a rotation). */
  edgeKeyId: z.string().min(1).max(64),
});
export type JobTicket = z.infer<typeof ticketSchema>;

export const signedTicketSchema = z.object({ ticket: ticketSchema, signature: z.string().max(128) });
export type SignedTicket = z.infer<typeof signedTicketSchema>;

/**
 * Checks shape, signature and validity window. Replay protection (nonce already seen) is the
 * caller's: it owns the nonce store. `hop` optionally checks that `agentId` is at that hop.
 */
export async function verifyTicket(
  input: unknown,
  edgePublicKey: string,
  now: number,
  expect?: { agentId: string; hop?: number },
  clockSkewMs = 30_000,
): Promise<TicketCheck> {
  const parsed = signedTicketSchema.safeParse(input);
  if (!parsed.success) return { ok: false, reason: 'malformed' };
  return checkSignedTicket(parsed.data, edgePublicKey, now, expect, clockSkewMs);
}
