/**
 * The client side of `POST /v1/spans/forward`: hands one step's activations to the next hop and
 * returns the sampled token and, when the step seals its chunk, that hop's attestation plus every
 * later one. Every call has
 * a timeout; a bad answer is an AgentError naming the agent at fault.
 *
 * @example
 * const next = new RemoteStage({ signedTicket, ticketHash, hop: 1, fetch });
 * const { attestations, tokenIds } = await next.forward({ data, seqLen }, [0, 1], { chunkFrom: 0, seal: true, prev: signedAtt0, prevHash: att0Hash }, true);
 * await next.close();
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { closeMetaSchema, errorFrameMetaSchema, forwardResultMetaSchema, type ForwardMeta, type ForwardResultMeta, type SealMeta } from '../../protocol/agent-api.js';
import { decodeFrame, encodeFrame, FrameError } from '../../protocol/frame.js';
import { readResponseBytes } from '../../protocol/bytes.js';
import type { SignedAttestation } from '../../protocol/attestation.js';
import type { SignedTicket } from '../../protocol/ticket.js';
import { AgentError, isAgentErrorCode } from './errors.js';

export const FORWARD_PATH = '/v1/spans/forward';
/** Largest answer accepted from the next hop (attestations only, no tensor). */
const MAX_RESULT_BYTES = 1024 * 1024;

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

/** Posts bytes and resolves with the status and at most `maxBytes` of the answer. */
export type PostBytes = (url: string, body: Uint8Array, opts: { timeoutMs: number; maxBytes: number }) => Promise<{ status: number; body: Uint8Array }>;

const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 256 });
const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 256 });

/**
 * node:http with keep-alive: a hop call per generated token is the hot path, and undici's fetch
 * costs noticeably more per request than a bare http.request on a pooled socket.
 */
export const nodePostBytes: PostBytes = (url, body, { timeoutMs, maxBytes }) =>
  new Promise((resolve, reject) => {
    const u = new URL(url);
    const https = u.protocol === 'https:';
    const req = (https ? httpsRequest : httpRequest)(
      u,
      { method: 'POST', agent: https ? httpsAgent : httpAgent, headers: { 'content-type': 'application/octet-stream', 'content-length': body.byteLength } },
      (res) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.byteLength;
          if (size > maxBytes) {
            req.destroy(new FrameError('too_large', `answer exceeds ${maxBytes} bytes`));
            return;
          }
          parts.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          const out = Buffer.concat(parts, size);
          resolve({ status: res.statusCode ?? 0, body: new Uint8Array(out.buffer, out.byteOffset, out.byteLength) });
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
      },
    );
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('hop timed out'), { name: 'TimeoutError' })), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end(body);
  });

function fetchPostBytes(doFetch: FetchLike): PostBytes {
  return async (url, body, { timeoutMs, maxBytes }) => {
    const res = await doFetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: body as BodyInit, signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: await readBounded(res, maxBytes) };
  };
}

export interface RemoteStageOptions {
  signedTicket: SignedTicket;
  ticketHash: string;
  /** Route index of the hop this stage calls. */
  hop: number;
  /** A fetch to use instead of node:http (tests, other runtimes). */
  fetch?: FetchLike;
  timeoutMs?: number;
}

/** How a step relates to the attestation chunk it belongs to (see ForwardMeta). */
export type StepLink =
  | { chunkFrom: number; seal: false }
  | { chunkFrom: number; seal: true; prev: SignedAttestation; prevHash: string };

export interface HiddenActivation {
  data: Float32Array | Uint16Array;
  seqLen: number;
}

async function readBounded(res: Response, max: number): Promise<Uint8Array> {
  const bytes = await readResponseBytes(res, max);
  if (!bytes) throw new FrameError('too_large', `answer exceeds ${max} bytes`);
  return bytes;
}

export class RemoteStage {
  readonly agentId: string;
  readonly url: string;
  private readonly postBytes: PostBytes;
  private readonly timeoutMs: number;

  constructor(private readonly opts: RemoteStageOptions) {
    const hop = opts.signedTicket.ticket.route[opts.hop];
    if (!hop) throw new AgentError('invalid_ticket', `the route has no hop ${opts.hop}`);
    this.agentId = hop.agentId;
    this.url = new URL(FORWARD_PATH, hop.endpoint).toString();
    this.postBytes = opts.fetch ? fetchPostBytes(opts.fetch) : nodePostBytes;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /**
   * Runs one step on the next hop (and, through it, every later hop). A sealing step carries
   * `prev`, this hop's signed attestation of the whole chunk (hash `prevHash`): the next hop
   * refuses activations it does not match, and its answer holds every later hop's attestation.
   * An open step is answered with the sampled token alone. The opening frame carries the signed
   * ticket; later ones name the job by ticket hash.
   */
  async forward(hidden: HiddenActivation, steps: [number, number], link: StepLink, open: boolean): Promise<ForwardResultMeta> {
    const ticket = this.opts.signedTicket.ticket;
    const hiddenSize = hidden.data.length / hidden.seqLen;
    const meta: ForwardMeta = {
      ...(open ? { signedTicket: this.opts.signedTicket } : { job: { jobId: ticket.jobId, ticketHash: this.opts.ticketHash } }),
      hop: this.opts.hop,
      steps,
      open,
      ...(link.chunkFrom !== steps[0] ? { chunkFrom: link.chunkFrom } : {}),
      ...(link.seal ? { prevHash: link.prevHash, prev: link.prev } : { seal: false }),
    };
    const body = encodeFrame({ kind: 'forward', dtype: ticket.dtype, dims: [1, hidden.seqLen, hiddenSize], meta, payload: hidden.data });
    const result = await this.exchange(body);
    const attestations = link.seal ? ticket.route.length - this.opts.hop : 0;
    if (result.attestations.length !== attestations || result.tokenIds.length !== steps[1] - steps[0]) {
      throw new AgentError('upstream_error', `hop ${this.opts.hop} returned ${result.attestations.length} attestations and ${result.tokenIds.length} tokens`, { agentId: this.agentId });
    }
    if (link.seal) this.checkRelayed(result, link.prev, link.prevHash);
    return result;
  }

  /**
   * Seals the open chunk `chunk` on the next hop and every later one without running a step:
   * returns their attestations of it.
   */
  async seal(chunk: [number, number], prev: SignedAttestation, prevHash: string): Promise<SignedAttestation[]> {
    const ticket = this.opts.signedTicket.ticket;
    const meta: SealMeta = { job: { jobId: ticket.jobId, ticketHash: this.opts.ticketHash }, hop: this.opts.hop, chunk, prevHash, prev };
    const result = await this.exchange(encodeFrame({ kind: 'seal', meta }));
    if (result.attestations.length !== ticket.route.length - this.opts.hop || result.tokenIds.length !== 0) {
      throw new AgentError('upstream_error', `hop ${this.opts.hop} sealed with ${result.attestations.length} attestations and ${result.tokenIds.length} tokens`, { agentId: this.agentId });
    }
    this.checkRelayed(result, prev, prevHash);
    return result.attestations;
  }

  /** Posts a frame and reads the next hop's `tokens` answer (an `error` frame becomes an AgentError). */
  private async exchange(body: Uint8Array): Promise<ForwardResultMeta> {
    const bytes = await this.post(body);
    let frame;
    try {
      frame = decodeFrame(bytes, { maxPayloadBytes: 4 * 4096 });
    } catch (err) {
      throw new AgentError('upstream_error', `hop ${this.opts.hop} sent a bad frame: ${(err as Error).message}`, { agentId: this.agentId });
    }
    if (frame.kind === 'error') {
      const e = errorFrameMetaSchema.safeParse(frame.meta);
      const code = e.success && isAgentErrorCode(e.data.code) ? e.data.code : 'upstream_error';
      const message = e.success ? e.data.message : 'unreadable error frame';
      throw new AgentError(code, `hop ${this.opts.hop}: ${message}`, { agentId: (e.success && e.data.agentId) || this.agentId });
    }
    const parsed = forwardResultMetaSchema.safeParse(frame.meta);
    if (frame.kind !== 'tokens' || !parsed.success) {
      throw new AgentError('upstream_error', `hop ${this.opts.hop} answered a ${frame.kind} frame without a valid result`, { agentId: this.agentId });
    }
    return parsed.data;
  }

  /**
   * The next hop attests what it received: other bytes or another prevHash than this hop sent
   * means the link was tampered with. Relaying that would make the chunk fail verification with
   * a signed attestation of the next hop as the evidence, so stop here without a provable claim.
   */
  private checkRelayed(result: ForwardResultMeta, prev: SignedAttestation, prevHash: string): void {
    const nextAtt = result.attestations[0]!.att;
    if (nextAtt.prevHash !== prevHash || nextAtt.inputCommitment !== prev.att.outputCommitment) {
      throw new AgentError('upstream_error', `hop ${this.opts.hop} attests other input than this hop sent (${nextAtt.prevHash !== prevHash ? 'prevHash' : 'activations'} differ): the link was tampered with`, { agentId: this.agentId });
    }
  }

  /** Frees the job's sessions on this hop and every later one (best effort, short timeout). */
  async close(): Promise<void> {
    const meta = closeMetaSchema.parse({ jobId: this.opts.signedTicket.ticket.jobId, ticketHash: this.opts.ticketHash, hop: this.opts.hop });
    try {
      await this.post(encodeFrame({ kind: 'close', meta }), Math.min(this.timeoutMs, 5_000));
    } catch {
      // The next hop frees idle sessions on its own.
    }
  }

  private async post(body: Uint8Array, timeoutMs = this.timeoutMs): Promise<Uint8Array> {
    try {
      return (await this.postBytes(this.url, body, { timeoutMs, maxBytes: MAX_RESULT_BYTES })).body;
    } catch (err) {
      if (err instanceof AgentError) throw err;
      if (err instanceof FrameError) throw new AgentError('upstream_error', `hop ${this.opts.hop}: ${err.message}`, { agentId: this.agentId });
      const name = (err as Error).name;
      if (name === 'TimeoutError' || name === 'AbortError') {
        throw new AgentError('upstream_timeout', `hop ${this.opts.hop} did not answer within ${timeoutMs} ms`, { agentId: this.agentId });
      }
      throw new AgentError('upstream_error', `hop ${this.opts.hop} unreachable: ${(err as Error).message}`, { agentId: this.agentId });
    }
  }
}
