/**
 * The frames between hops (protocol/agent-api.ts, protocol/frame.ts), both ways: decoding and
 * validating the `forward`, `seal` and `close` frames a hop receives, encoding the ones it sends
 * to the next hop, and the answers (`tokens`, `error`, `close`). What a frame *means* for a
 * session is downstream-hop.ts; how it travels is link.ts or hop-post.ts.
 *
 * @example
 * const frame = decodeHopFrame(bytes, limits.maxFramePayloadBytes);
 * const step = forwardRequest(frame, span.manifest.dtype, span.manifest.architecture.hiddenSize);
 * return tokensFrame({ attestations, tokenIds: [token] });
 */
import { createHash, type Hash } from 'node:crypto';
import {
  closeMetaSchema,
  errorFrameMetaSchema,
  forwardMetaSchema,
  forwardResultMetaSchema,
  sealMetaSchema,
  type CloseMeta,
  type ForwardMeta,
  type ForwardResultMeta,
  type SealMeta,
} from '../../protocol/agent-api.js';
import type { SignedAttestation } from '../../protocol/attestation.js';
import { decodeFrame, encodeFrame, FrameError, type Frame } from '../../protocol/frame.js';
import { forwardBytes } from '../../protocol/forward-evidence.js';
import type { SignedTicket } from '../../protocol/ticket.js';
import { AgentError, isAgentErrorCode } from './errors.js';

/** Largest tensor in an answer from the next hop (sampled token ids). */
export const MAX_ANSWER_PAYLOAD_BYTES = 4 * 4096;

// ---- received: decode and validate ----------------------------------------------------------

/** A frame's bytes as a Frame; a malformed or oversized one is an AgentError (`bad_frame`, `payload_too_large`). */
export function decodeHopFrame(bytes: Uint8Array, maxPayloadBytes: number): Frame {
  try {
    return decodeFrame(bytes, { maxPayloadBytes });
  } catch (err) {
    if (err instanceof FrameError) throw new AgentError(err.code === 'too_large' ? 'payload_too_large' : 'bad_frame', `bad frame (${err.code}): ${err.message}`);
    throw err;
  }
}

/** A `forward` frame that has the shape of one step of this span: its meta, with the defaults filled in. */
export interface ForwardRequest {
  meta: ForwardMeta;
  /** Positions the activations carry (the prompt at the opening frame, 1 after). */
  seqLen: number;
  from: number;
  to: number;
  /** First step of the attestation chunk this step belongs to. */
  chunkFrom: number;
  /** Whether this step seals its chunk. */
  seal: boolean;
  /** The wire's `open`: the job's opening (prefill) frame, which opens its session on this hop. */
  opening: boolean;
}

/**
 * Validates a `forward` frame against the span it is for (meta schema, dtype, [1, T, hiddenSize]
 * activations, one step); what depends on the job's ticket is checked once it is known.
 */
export function forwardRequest(frame: Frame, dtype: string, hiddenSize: number): ForwardRequest {
  const parsed = forwardMetaSchema.safeParse(frame.meta);
  if (!parsed.success) throw new AgentError('bad_frame', `forward meta does not match the schema: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message ?? ''}`.trim());
  const meta = parsed.data;
  if (frame.dtype !== dtype) {
    throw new AgentError('bad_frame', `activations must be ${dtype}, got ${frame.dtype}`);
  }
  const [b, seqLen, h] = frame.dims;
  if (frame.dims.length !== 3 || b !== 1 || h !== hiddenSize || !seqLen) {
    throw new AgentError('bad_frame', `activations must be [1, T, ${hiddenSize}] with T >= 1, got [${frame.dims.join(', ')}]`);
  }
  const [from, to] = meta.steps;
  if (to !== from + 1) throw new AgentError('bad_frame', `a forward frame covers one step, got [${from}, ${to})`);
  return { meta, seqLen, from, to, chunkFrom: meta.chunkFrom ?? from, seal: meta.seal ?? true, opening: meta.open };
}

/** A `seal` frame's meta, or `bad_frame`. */
export function sealRequest(frame: Frame): SealMeta {
  const parsed = sealMetaSchema.safeParse(frame.meta);
  if (!parsed.success) throw new AgentError('bad_frame', `seal meta does not match the schema: ${parsed.error.issues[0]?.path.join('.')}`);
  return parsed.data;
}

/** A `close` frame's meta, or `bad_frame`. */
export function closeRequest(frame: Frame): CloseMeta {
  const meta = closeMetaSchema.safeParse(frame.meta);
  if (!meta.success) throw new AgentError('bad_frame', 'close frame meta does not match the schema');
  return meta.data;
}

// ---- answers to the previous hop ----------------------------------------------------------

/** A `tokens` frame: a step's (or seal's) answer, its token ids also as the int32 payload. */
export function tokensFrame(meta: ForwardResultMeta): Uint8Array {
  return encodeFrame({ kind: 'tokens', dtype: 'int32', dims: [meta.tokenIds.length], meta, payload: Int32Array.from(meta.tokenIds) });
}

/** An `error` frame; it names `agentId` (this agent) unless the error names a later hop. */
export function errorFrameBytes(e: AgentError, agentId: string): Uint8Array {
  const meta = errorFrameMetaSchema.parse({ code: e.code, message: e.message.slice(0, 2000), agentId: e.agentId ?? agentId, ...(e.evidence ? { evidence: e.evidence } : {}) });
  return encodeFrame({ kind: 'error', meta });
}

/** The answer to a `close` frame: whether it freed a session here. */
export function closedFrame(closed: boolean): Uint8Array {
  return encodeFrame({ kind: 'close', meta: { closed } });
}

// ---- sent to the next hop -----------------------------------------------------------------

export interface HiddenActivation {
  data: Float32Array | Uint16Array;
  seqLen: number;
}

/** How a step relates to the attestation chunk it belongs to (see ForwardMeta). */
export type StepChunk =
  | { chunkFrom: number; seal: false }
  | { chunkFrom: number; seal: true; prev: SignedAttestation; prevHash: string };

/** The hop a frame goes to: the job's signed ticket, its hash, and that hop's index in the route. */
export interface NextHopRef {
  signedTicket: SignedTicket;
  ticketHash: string;
  hop: number;
}

/**
 * A `forward` frame of one step to `to`. The opening frame carries the signed ticket; later ones
 * name the job by ticket hash. A sealing step carries `prev` and `prevHash`, and `senderSig` when
 * the sender signed what it sent.
 */
export function forwardFrame(to: NextHopRef, hidden: HiddenActivation, steps: [number, number], chunk: StepChunk, opening: boolean, senderSig: string | undefined): Uint8Array {
  const ticket = to.signedTicket.ticket;
  const meta: ForwardMeta = {
    ...(opening ? { signedTicket: to.signedTicket } : { job: { jobId: ticket.jobId, ticketHash: to.ticketHash } }),
    hop: to.hop,
    steps,
    open: opening,
    ...(chunk.chunkFrom !== steps[0] ? { chunkFrom: chunk.chunkFrom } : {}),
    ...(chunk.seal ? { prevHash: chunk.prevHash, prev: chunk.prev } : { seal: false }),
    ...(senderSig !== undefined ? { senderSig } : {}),
  };
  const hiddenSize = hidden.data.length / hidden.seqLen;
  return encodeFrame({ kind: 'forward', dtype: ticket.dtype, dims: [1, hidden.seqLen, hiddenSize], meta, payload: hidden.data });
}

/** A `seal` frame: seals the unsealed chunk `chunk` on `to` without running a step. */
export function sealFrame(to: NextHopRef, chunk: [number, number], prev: SignedAttestation, prevHash: string, senderSig: string | undefined): Uint8Array {
  const ticket = to.signedTicket.ticket;
  const meta: SealMeta = { job: { jobId: ticket.jobId, ticketHash: to.ticketHash }, hop: to.hop, chunk, prevHash, prev, ...(senderSig !== undefined ? { senderSig } : {}) };
  return encodeFrame({ kind: 'seal', meta });
}

/** A `close` frame: the job is over on `to` and every later hop. */
export function closeFrame(to: NextHopRef): Uint8Array {
  const meta = closeMetaSchema.parse({ jobId: to.signedTicket.ticket.jobId, ticketHash: to.ticketHash, hop: to.hop });
  return encodeFrame({ kind: 'close', meta });
}

/** The next hop's answer (`tokens`) to a forward or seal frame; an `error` frame, or anything else, is an AgentError. */
export function parseHopAnswer(bytes: Uint8Array, hop: number, agentId: string): ForwardResultMeta {
  let frame;
  try {
    frame = decodeFrame(bytes, { maxPayloadBytes: MAX_ANSWER_PAYLOAD_BYTES });
  } catch (err) {
    throw new AgentError('upstream_error', `hop ${hop} sent a bad frame: ${(err as Error).message}`, { agentId });
  }
  if (frame.kind === 'error') {
    const e = errorFrameMetaSchema.safeParse(frame.meta);
    const code = e.success && isAgentErrorCode(e.data.code) ? e.data.code : 'upstream_error';
    const message = e.success ? e.data.message : 'unreadable error frame';
    const evidence = e.success ? e.data.evidence : undefined;
    throw new AgentError(code, `hop ${hop}: ${message}`, { agentId: (e.success && e.data.agentId) || agentId, ...(evidence ? { evidence } : {}) });
  }
  const parsed = forwardResultMetaSchema.safeParse(frame.meta);
  if (frame.kind !== 'tokens' || !parsed.success) {
    throw new AgentError('upstream_error', `hop ${hop} answered a ${frame.kind} frame without a valid result`, { agentId });
  }
  return parsed.data;
}

/**
 * What a hop sent to the next one for its unsealed chunk, and its signature of it (`senderSig`).
 * Hashed here, as payloads go out, rather than taken from the attestation: the signature says
 * what this hop sent, so a hop whose wire bytes differ from what it attested is caught by its own
 * word.
 */
export class SentChunk {
  /** The unsealed chunk's payloads as they went out: its first step and their running SHA-256. */
  private sent: { from: number; hash: Hash } | null = null;

  constructor(
    private readonly to: NextHopRef,
    private readonly sign: ((bytes: Uint8Array) => string) | undefined,
  ) {}

  /** Adds a frame's payload to what was sent for the chunk starting at `chunkFrom`. */
  record(chunkFrom: number, payload: Uint8Array): void {
    if (!this.sent || this.sent.from !== chunkFrom) this.sent = { from: chunkFrom, hash: createHash('sha256') };
    this.sent.hash.update(payload);
  }

  /**
   * Signs what was sent for the chunk `steps` (forwardMessage) and starts the next chunk afresh.
   * None without a signer, or when what was sent is not exactly that chunk's (nothing is signed
   * that this hop cannot stand behind).
   */
  signed(steps: [number, number]): string | undefined {
    const sent = this.sent;
    this.sent = null;
    if (!this.sign || !sent || sent.from !== steps[0]) return undefined;
    const ticket = this.to.signedTicket.ticket;
    return this.sign(forwardBytes({ jobId: ticket.jobId, ticketHash: this.to.ticketHash, hop: this.to.hop, steps, payloadSha256: sent.hash.digest('hex') }));
  }
}
