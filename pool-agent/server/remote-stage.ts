/**
 * The client side of `POST /v1/spans/forward`: hands one step's activations to the next hop and
 * returns that hop's attestation plus every later one, and the sampled token ids. Every call has
 * a timeout; a bad answer is an AgentError naming the agent at fault.
 *
 * @example
 * const next = new RemoteStage({ signedTicket, ticketHash, hop: 1, fetch });
 * const { attestations, tokenIds } = await next.forward({ data, seqLen }, [0, 1], signedAtt0, att0Hash, true);
 * await next.close();
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { closeMetaSchema, errorFrameMetaSchema, forwardResultMetaSchema, type ForwardMeta, type ForwardResultMeta } from '../../protocol/agent-api.js';
import { decodeFrame, encodeFrame, FrameError } from '../../protocol/frame.js';
import { concatByteList } from '../../protocol/bytes.js';
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

export interface HiddenActivation {
  data: Float32Array | Uint16Array;
  seqLen: number;
}

async function readBounded(res: Response, max: number): Promise<Uint8Array> {
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      throw new FrameError('too_large', `answer exceeds ${max} bytes`);
    }
    parts.push(value);
  }
  return concatByteList(parts);
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
   * Runs one step on the next hop (and, through it, every later hop). `prev` is this hop's signed
   * attestation of `hidden` (hash `prevHash`): the next hop refuses activations it does not match.
   */
  async forward(hidden: HiddenActivation, steps: [number, number], prev: SignedAttestation, prevHash: string, open: boolean): Promise<ForwardResultMeta> {
    const ticket = this.opts.signedTicket.ticket;
    const hiddenSize = hidden.data.length / hidden.seqLen;
    const meta: ForwardMeta = { signedTicket: this.opts.signedTicket, hop: this.opts.hop, steps, prevHash, open, prev };
    const body = encodeFrame({ kind: 'forward', dtype: ticket.dtype, dims: [1, hidden.seqLen, hiddenSize], meta, payload: hidden.data });
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
    const expectedHops = ticket.route.length - this.opts.hop;
    if (parsed.data.attestations.length !== expectedHops || parsed.data.tokenIds.length !== steps[1] - steps[0]) {
      throw new AgentError('upstream_error', `hop ${this.opts.hop} returned ${parsed.data.attestations.length} attestations and ${parsed.data.tokenIds.length} tokens`, { agentId: this.agentId });
    }
    // The next hop attests what it received: other bytes or another prevHash than this hop sent
    // means the link was tampered with. Relaying that would make this chunk fail verification with
    // a signed attestation of the next hop as the evidence, so stop here without a provable claim.
    const nextAtt = parsed.data.attestations[0]!.att;
    if (nextAtt.prevHash !== prevHash || nextAtt.inputCommitment !== prev.att.outputCommitment) {
      throw new AgentError('upstream_error', `hop ${this.opts.hop} attests other input than this hop sent (${nextAtt.prevHash !== prevHash ? 'prevHash' : 'activations'} differ): the link was tampered with`, { agentId: this.agentId });
    }
    return parsed.data;
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
