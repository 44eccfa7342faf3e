import { z } from 'zod';
import { ChainVerifierBase, MAX_CHUNK_HOPS } from './attestation-chain.js';
import { MAX_HIDDEN_COMMITMENT_CHARS, MAX_OUTPUT_TOPLOC_CHARS } from './limits.js';

/**
 * Attestations: each hop of a route signs, per chunk of generation steps, what it computed.
 * Hops chain (`prevHash` = hash of the previous hop's attestation; the head hop of a chunk binds
 * the last hop of the previous chunk), and so do commitments (a hop's `inputCommitment` equals
 * the previous hop's `outputCommitment`). The last hop commits to the sampled token ids; every
 * other hop also commits TOPLOC-style to the activations it sent (`outputTopLoc`), which a checker
 * compares with a re-run of its span without any disclosure of them (output-commitment.ts).
 *
 * The head agent emits one chunk per generation step; the first chunk (step = ticket.prefixTokens)
 * is the prefill, whose input is promptIds ++ prefixIds (hash = ticket.inputHash). A later chunk
 * covering steps [a, b) has as input the tokens [t(a-1) .. t(b-2)].
 *
 * This file holds the schemas and the edge's `ChainVerifier`, which checks each chunk against
 * them; the bytes, hashes and chain checks are in attestation-chain.ts (no zod, so the SDK's
 * browser bundle runs the same checks without it) and re-exported here. The SDK reads
 * attestations with a zod/mini mirror of the schemas (sdk/src/schemas.ts): a change here goes
 * there too.
 *
 * @example
 * const verifier = new ChainVerifier({ ticket, ticketHash, numLayers, keys });
 * const result = await verifier.verifyChunk(chunk.attestations);
 * if (!result.ok) failover(result.agentId);
 */
export {
  ATTESTATION_DOMAIN,
  MAX_CHUNK_HOPS,
  attestationBytes,
  attestationHash,
  signAttestation,
  tokenCommitment,
  ChainVerifierBase,
  type ChainFailure,
  type ChunkResult,
  type ChainVerifierOptions,
} from './attestation-chain.js';
export { MAX_HIDDEN_COMMITMENT_CHARS, MAX_OUTPUT_TOPLOC_CHARS };

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

export const attestationSchema = z.object({
  v: z.literal(1),
  ticketHash: hex64,
  jobId: z.string().min(1).max(64),
  agentId: z.string().min(1).max(64),
  modelId: hex64,
  hop: z.number().int().nonnegative().max(15),
  layers: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
  /** Generation steps covered, [from, to). */
  steps: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
  inputCommitment: hex64,
  outputCommitment: hex64,
  /** Last hop only: the sampled tokens of these steps. */
  outputTokenIds: z.array(z.number().int().nonnegative()).max(4096).optional(),
  /** Last hop only: locality-sensitive commitment of the final hidden states (see commitment.ts). */
  hiddenCommitment: z.string().max(MAX_HIDDEN_COMMITMENT_CHARS).optional(),
  /**
   * Hops before the last: TOPLOC-style commitment of the activations sent (the rows whose bytes
   * hash to outputCommitment; see output-commitment.ts). Optional: older agents do not write it.
   */
  outputTopLoc: z.string().max(MAX_OUTPUT_TOPLOC_CHARS).optional(),
  prevHash: hex64.nullable(),
  issuedAt: z.number().int().positive(),
});
export type Attestation = z.infer<typeof attestationSchema>;

export const signedAttestationSchema = z.object({ att: attestationSchema, sig: z.string().max(128) });
export type SignedAttestation = z.infer<typeof signedAttestationSchema>;

const chunkSchema = z.array(signedAttestationSchema).max(MAX_CHUNK_HOPS);

/** The edge's chain verifier: each chunk is checked against the attestation schema, then chained. */
export class ChainVerifier extends ChainVerifierBase {
  protected override readChunk(input: unknown): SignedAttestation[] | null {
    const parsed = chunkSchema.safeParse(input);
    return parsed.success ? parsed.data : null;
  }
}
