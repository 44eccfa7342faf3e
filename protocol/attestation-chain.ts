/**
 * The checks of an attestation chain, without zod: the bytes each hop signs, their hash, and
 * `ChainVerifierBase`, which re-runs every check on chunks of a known shape. attestation.ts holds
 * the schemas and its `ChainVerifier` (the edge's) checks each chunk against them first; the SDK
 * bundles this file for browsers with its own zod/mini shape check, so both run the same chain
 * logic. attestation.ts re-exports all of this.
 *
 * @example
 * class Verifier extends ChainVerifierBase {
 *   protected readChunk(input: unknown) { const r = chunkSchema.safeParse(input); return r.success ? r.data : null; }
 * }
 * const result = await new Verifier({ ticket, ticketHash, numLayers, keys }).verifyChunk(chunk);
 */
import { canonicalJson, type CanonicalValue } from './canonical.js';
import { encodeTokenIds, sha256Hex, utf8 } from './bytes.js';
import { signBytes, verifyBytes } from './keys.js';
import { routeCoversModel } from './ticket-signing.js';
import type { Attestation, SignedAttestation } from './attestation.js';
import type { JobTicket } from './ticket.js';

export const ATTESTATION_DOMAIN = 'layernet.attestation/1\n';
/** Hops of a chunk (a route has at most 16). */
export const MAX_CHUNK_HOPS = 16;

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

/**
 * Verifies a stream's attestation chunks in order; state carries the chain across chunks.
 * Subclasses say how an untrusted chunk's shape is checked (`readChunk`).
 */
export abstract class ChainVerifierBase {
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

  /**
   * The chunk as an array of at most {@link MAX_CHUNK_HOPS} signed attestations of the
   * attestation schema, unknown keys stripped (the signed bytes are the parsed fields); null when
   * it does not match.
   */
  protected abstract readChunk(input: unknown): SignedAttestation[] | null;

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
    const chunk = this.readChunk(input);
    if (!chunk) return { ok: false, reason: 'malformed', detail: 'attestations do not match the schema' };
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
        if (att.outputTopLoc !== undefined) return fail('malformed', 'the last hop commits to tokens and hidden states, not to activations sent');
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
