/**
 * The POST transport between hops: one `POST /v1/spans/forward` per frame, its answer read
 * bounded, every failure an AgentError naming the hop called. RemoteStage (remote-stage.ts) uses
 * it when the head chose 'post' or a POST reached this hop; links are the other transport.
 *
 * @example
 * const answer = await postToHop(nodePostBytes, url, frameBytes, 30_000, 1, 'agent-b');
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { readResponseBytes } from '../../protocol/bytes.js';
import { FrameError } from '../../protocol/frame.js';
import { AgentError } from './errors.js';

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

/** PostBytes over a given fetch (tests, other runtimes). */
export function fetchPostBytes(doFetch: FetchLike): PostBytes {
  return async (url, body, { timeoutMs, maxBytes }) => {
    const res = await doFetch(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: body as BodyInit, signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: await readBounded(res, maxBytes) };
  };
}

async function readBounded(res: Response, max: number): Promise<Uint8Array> {
  const bytes = await readResponseBytes(res, max);
  if (!bytes) throw new FrameError('too_large', `answer exceeds ${max} bytes`);
  return bytes;
}

/** Posts a frame to hop `hop` (agent `agentId`) at `url` and returns its answer; a failure is an AgentError naming that hop. */
export async function postToHop(postBytes: PostBytes, url: string, body: Uint8Array, timeoutMs: number, hop: number, agentId: string): Promise<Uint8Array> {
  try {
    return (await postBytes(url, body, { timeoutMs, maxBytes: MAX_RESULT_BYTES })).body;
  } catch (err) {
    if (err instanceof AgentError) throw err;
    if (err instanceof FrameError) throw new AgentError('upstream_error', `hop ${hop}: ${err.message}`, { agentId });
    const name = (err as Error).name;
    if (name === 'TimeoutError' || name === 'AbortError') {
      throw new AgentError('upstream_timeout', `hop ${hop} did not answer within ${timeoutMs} ms`, { agentId });
    }
    throw new AgentError('upstream_error', `hop ${hop} unreachable: ${(err as Error).message}`, { agentId });
  }
}
