import { z } from 'zod';
import { canonicalJson, type CanonicalValue } from './canonical.js';
import { encodeTokenIds, sha256Hex, utf8 } from './bytes.js';
import { signBytes, verifyBytes } from './keys.js';
import { routeCoversModel, type JobTicket } from './ticket.js';

/**
 * Attestations: each hop of a route signs, per chunk of generation steps, what it computed.
 * Hops chain (`prevHash` = hash of the previous hop's attestation; the head hop of a chunk binds
 * the last hop of the previous chunk), and so do commitments (a hop's `inputCommitment` equals
 * the previous hop's `outputCommitment`). The last hop commits to the sampled token ids.
 *
 * The head agent emits one chunk per generation step; the first chunk (step = ticket.prefixTokens)
 * is the prefill, whose input is promptIds ++ prefixIds (hash = ticket.inputHash). A later chunk
 * covering steps [a, b) has as input the tokens [t(a-1) .. t(b-2)].
 *
 * @example
 * const verifier = new ChainVerifier({ ticket, ticketHash, numLayers, keys });
 * const result = await verifier.verifyChunk(chunk.attestations);
 * if (!result.ok) failover(result.agentId);
 */
export const ATTESTATION_DOMAIN = 'layernet.attestation/1\n';
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
/** Upper bound for a TOPLOC-style hidden-state commitment per chunk (base64url). */
export const MAX_HIDDEN_COMMITMENT_CHARS = 65_536;

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
  prevHash: hex64.nullable(),
  issuedAt: z.number().int().positive(),
});
export type Attestation = z.infer<typeof attestationSchema>;

export const signedAttestationSchema = z.object({ att: attestationSchema, sig: z.string().max(128) });
export type SignedAttestation = z.infer<typeof signedAttestationSchema>;

export function attestationBytes(att: Attestation): Uint8Array {
  return utf8(ATTESTATION_DOMAIN + canonicalJson(att as unknown as CanonicalValue));
}

export function attestationHash(att: Attestation): Promise<string> {
  return sha256Hex(attestationBytes(att));
}

export async function signAttestation(agentPrivateKey: CryptoKey, att: Attestation): Promise<SignedAttestation> {
  return { att, sig: await signBytes(agentPrivateKey, attestationBytes(att)) };
}

/** Commitment to token ids (input of the head hop, output of the last hop). */
export function tokenCommitment(ids: readonly number[]): Promise<string> {
  return sha256Hex(encodeTokenIds(ids));
}

export type ChainFailure =
  | 'malformed'
  | 'wrong_hop_count'
  | 'wrong_agent'
  | 'wrong_layers'
  | 'wrong_ticket'
  | 'wrong_model'
  | 'bad_signature'
  | 'unknown_key'
  | 'broken_chain'
  | 'broken_commitment'
  | 'wrong_steps'
  | 'bad_tokens'
  | 'incomplete_coverage';

export type ChunkResult =
  | { ok: true; tokenIds: number[]; steps: [number, number]; lastHash: string }
  | { ok: false; reason: ChainFailure; agentId?: string; hop?: number; detail: string };

export interface ChainVerifierOptions {
  ticket: JobTicket;
  ticketHash: string;
  numLayers: number;
  /** Registered public keys (raw base64url) by agent id. */
  keys: ReadonlyMap<string, string> | Record<string, string>;
}

/** Verifies a stream's attestation chunks in order; state carries the chain across chunks. */
export class ChainVerifier {
  private readonly opts: ChainVerifierOptions;
  private prevHash: string | null = null;
  private prevOutputCommitment: string;
  private lastToken: number | null = null;
  private nextStep: number;
  private readonly hashes: string[] = [];
  private readonly tokens: number[] = [];

  constructor(opts: ChainVerifierOptions) {
    this.opts = opts;
    this.prevOutputCommitment = opts.ticket.inputHash;
    this.nextStep = opts.ticket.prefixTokens;
  }

  /** Tokens verified so far, in order. */
  get verifiedTokens(): readonly number[] {
    return this.tokens;
  }

  /** Hashes of every verified attestation, in chain order. */
  get chainHashes(): readonly string[] {
    return this.hashes;
  }

  private key(agentId: string): string | undefined {
    const k = this.opts.keys;
    return k instanceof Map ? k.get(agentId) : (k as Record<string, string>)[agentId];
  }

  async verifyChunk(input: unknown): Promise<ChunkResult> {
    const parsed = z.array(signedAttestationSchema).max(16).safeParse(input);
    if (!parsed.success) return { ok: false, reason: 'malformed', detail: 'attestations do not match the schema' };
    const chunk = parsed.data;
    const { ticket, ticketHash, numLayers } = this.opts;
    if (!routeCoversModel(ticket.route, numLayers)) {
      return { ok: false, reason: 'incomplete_coverage', detail: `route does not cover [0, ${numLayers})` };
    }
    if (chunk.length !== ticket.route.length) {
      return { ok: false, reason: 'wrong_hop_count', detail: `${chunk.length} attestations for ${ticket.route.length} hops` };
    }
    const first = chunk[0]!.att;
    const [from, to] = first.steps;
    if (from !== this.nextStep || to <= from || to - from > 4096) {
      return { ok: false, reason: 'wrong_steps', agentId: first.agentId, hop: 0, detail: `steps [${from}, ${to}) after step ${this.nextStep}` };
    }
    if (this.lastToken !== null) {
      // The head hop's input is the previous token then this chunk's tokens but the last.
      const last = chunk[chunk.length - 1]!.att.outputTokenIds ?? [];
      const expected = await tokenCommitment([this.lastToken, ...last.slice(0, -1)]);
      if (first.inputCommitment !== expected) {
        return { ok: false, reason: 'broken_commitment', agentId: first.agentId, hop: 0, detail: 'head input is not the previous tokens' };
      }
    } else if (first.inputCommitment !== this.prevOutputCommitment) {
      return { ok: false, reason: 'broken_commitment', agentId: first.agentId, hop: 0, detail: 'head input is not the ticket input' };
    }
    let prevHash = this.prevHash;
    let prevOutput: string | null = null;
    const hashes: string[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const { att, sig } = chunk[i]!;
      const hop = ticket.route[i]!;
      const fail = (reason: ChainFailure, detail: string): ChunkResult => ({ ok: false, reason, agentId: att.agentId, hop: i, detail });
      if (att.hop !== i || att.agentId !== hop.agentId) return fail('wrong_agent', `hop ${i} signed by ${att.agentId}, ticket names ${hop.agentId}`);
      if (att.layers[0] !== hop.layers[0] || att.layers[1] !== hop.layers[1]) return fail('wrong_layers', `hop ${i} layers differ from the ticket`);
      if (att.ticketHash !== ticketHash || att.jobId !== ticket.jobId) return fail('wrong_ticket', 'attestation bound to another ticket');
      if (att.modelId !== ticket.modelId) return fail('wrong_model', 'attestation names another model');
      if (att.steps[0] !== from || att.steps[1] !== to) return fail('wrong_steps', 'hops disagree on the steps');
      if (att.prevHash !== prevHash) return fail('broken_chain', 'prevHash does not bind the previous attestation');
      if (prevOutput !== null && att.inputCommitment !== prevOutput) return fail('broken_commitment', 'input differs from the previous hop output');
      const key = this.key(att.agentId);
      if (!key) return fail('unknown_key', `no registered key for ${att.agentId}`);
      const bytes = attestationBytes(att);
      if (!(await verifyBytes(key, sig, bytes))) return fail('bad_signature', `signature of ${att.agentId} does not verify`);
      const isLast = i === chunk.length - 1;
      if (isLast) {
        const ids = att.outputTokenIds;
        if (!ids || ids.length !== to - from) return fail('bad_tokens', 'last hop must list one token per step');
        if (att.outputCommitment !== (await tokenCommitment(ids))) return fail('bad_tokens', 'token ids differ from the output commitment');
      } else if (att.outputTokenIds !== undefined || att.hiddenCommitment !== undefined) {
        return fail('malformed', 'only the last hop commits to tokens');
      }
      prevHash = await sha256Hex(bytes);
      prevOutput = att.outputCommitment;
      hashes.push(prevHash);
    }
    const tokenIds = chunk[chunk.length - 1]!.att.outputTokenIds!;
    this.prevHash = prevHash;
    this.prevOutputCommitment = prevOutput!;
    this.lastToken = tokenIds[tokenIds.length - 1]!;
    this.nextStep = to;
    this.hashes.push(...hashes);
    this.tokens.push(...tokenIds);
    return { ok: true, tokenIds, steps: [from, to], lastHash: prevHash! };
  }
}
