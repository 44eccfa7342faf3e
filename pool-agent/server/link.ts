/**
 * Links: one upgraded HTTP connection per job (at a time) between two consecutive hops, carrying binary
 * frames both ways without an HTTP exchange per step (`GET /v1/spans/link`, `Upgrade:
 * layernet-link/1`). Frames delimit themselves (see protocol/frame.ts), so a link is just the
 * frames back to back. This file is the socket side of it: a `Link` (frames over one socket) and
 * dialling one; the agent's side of a link is link-server.ts (inbound) and link-pool.ts with
 * remote-stage.ts (outbound).
 *
 * A link changes which messages a decode step sends, not what is signed: the last hop sends each
 * sampled token straight to the head on a *tap* (`GET /v1/spans/tap`, dialled by the head to the
 * last hop after the prefill), so a step costs one message per hop around the ring (head -> ...
 * -> last -> head) instead of two per hop down and back up the chain. An unsealed step (one
 * inside its attestation chunk, `seal: false` on the wire) is not answered by the hops in the
 * middle at all; a step that seals an attestation chunk is also answered back up the chain with
 * the attestations, exactly as on `POST /v1/spans/forward`, while the head already runs its next
 * step. Errors travel back up hop by hop.
 *
 * When a job ended cleanly on a link (its close frame answered, nothing failed or in flight), the
 * hop that dialled it keeps it for its next job to the same agent (LinkPool, link-pool.ts, at most
 * 20 s idle), which then skips the TCP/TLS handshake and the upgrade; the agent carries the new
 * job on it once the link holds no session, after checking its ticket as on any opening frame.
 *
 * @example
 * const link = await dialLink('http://10.0.0.2:7000/v1/spans/link', { timeoutMs: 5000, maxPayloadBytes: 64 << 20 });
 * const answer = await link.request(encodeFrame({ kind: 'forward', ... }), 30_000);
 * link.send(unsealedStepFrame);      // no answer expected
 * link.close();
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { FrameError, FrameReader } from '../../protocol/frame.js';

export const LINK_PATH = '/v1/spans/link';
export const TAP_PATH = '/v1/spans/tap';
export const LINK_PROTOCOL = 'layernet-link/1';
/** Request headers naming the job a tap is for. */
export const TAP_JOB_HEADER = 'x-layernet-job';
export const TAP_TICKET_HEADER = 'x-layernet-ticket-hash';
/** The head's Ed25519 signature (base64url) of tapMessage(jobId, ticketHash). */
export const TAP_SIGNATURE_HEADER = 'x-layernet-tap-signature';
/**
 * A link's upgrade request carries the job's signed ticket (base64url of its JSON) and the hop it
 * goes to: the agent checks the edge's signature and its own place in the route before it
 * upgrades, so only a job's previous hop can hold a link to it, one link per ticket.
 */
export const LINK_TICKET_HEADER = 'x-layernet-ticket';
export const LINK_HOP_HEADER = 'x-layernet-hop';
/** Largest request head an agent reads (a 16-hop ticket in base64url stays under 20 KB). */
export const MAX_LINK_HEADER_BYTES = 64 * 1024;

/** Why a link stopped: the socket closed or failed, a bad frame, a timeout, or an unanswerable frame. */
export class LinkError extends Error {
  override readonly name = 'LinkError';
  constructor(
    readonly code: 'closed' | 'timeout' | 'bad_frame' | 'refused',
    message: string,
    /** The HTTP status of a refused upgrade. */
    readonly status?: number,
    /** The agent's error code of a refused upgrade (its JSON envelope), when it sent one. */
    readonly agentCode?: string,
  ) {
    super(message);
  }
}

/**
 * Server side: the job a link carries (first the one its upgrade request's ticket names), at which
 * hop, and whether that job's opening frame opened a session on it (`ran`). A link whose job ran
 * and ended may carry a later job (remote-stage.ts: links are kept for the next job to the same hop).
 */
export interface LinkBinding {
  jobId: string;
  ticketHash: string;
  hop: number;
  ran: boolean;
}

/** Frames a link keeps for a later `next` before it gives up on the peer. */
const MAX_UNREAD_FRAMES = 64;

interface Waiter {
  resolve(bytes: Uint8Array): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * Frames over one socket. `request` sends a frame and waits for the next one to arrive; `send`
 * expects nothing back. A frame arriving while nobody waits is *unsolicited* (an error a later
 * hop reports about an unsealed step): `onUnsolicited` gets it, else it is kept for the next `next`.
 */
export class Link {
  private readonly reader: FrameReader;
  private readonly queue: Uint8Array[] = [];
  private readonly waiters: Waiter[] = [];
  private failure: LinkError | null = null;
  private readonly failedHandlers: ((err: LinkError) => void)[] = [];
  /** Called with frames nobody waits for; when unset they queue for `next`. */
  onUnsolicited: ((bytes: Uint8Array) => void) | null = null;
  /** Server side: the job this link carries (see LinkBinding); null on a dialled link or a tap. */
  boundJob: LinkBinding | null = null;

  constructor(
    private readonly socket: Duplex,
    limits: { maxPayloadBytes: number },
    head?: Uint8Array,
  ) {
    this.reader = new FrameReader(limits);
    // Plain views: a Buffer's slice() does not copy, and frames are sliced downstream.
    socket.on('data', (chunk: Buffer) => this.feed(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)));
    socket.on('error', (err) => this.fail(new LinkError('closed', `link failed: ${err.message}`)));
    socket.on('close', () => this.fail(new LinkError('closed', 'link closed')));
    // The peer closed its side (an HTTP server's sockets allow half-open ones): so does this one,
    // at once, rather than holding the socket until it idles out.
    socket.on('end', () => {
      this.fail(new LinkError('closed', 'link closed'));
      socket.end();
    });
    if (head && head.byteLength > 0) queueMicrotask(() => this.feed(new Uint8Array(head.buffer, head.byteOffset, head.byteLength)));
  }

  /** Why the link stopped, or null while it works. */
  get error(): LinkError | null {
    return this.failure;
  }

  /** Calls `fn` once when the link stops (at once if it already has); returns what removes it. */
  onFailed(fn: (err: LinkError) => void): () => void {
    if (this.failure) fn(this.failure);
    else this.failedHandlers.push(fn);
    return () => {
      const i = this.failedHandlers.indexOf(fn);
      if (i >= 0) this.failedHandlers.splice(i, 1);
    };
  }

  /** Whether the socket keeps the process alive (a link idle in a pool does not). */
  set keepsAlive(on: boolean) {
    const s = this.socket as { ref?: () => void; unref?: () => void };
    if (on) s.ref?.();
    else s.unref?.();
  }

  send(bytes: Uint8Array): void {
    if (this.failure) throw this.failure;
    this.socket.write(bytes);
  }

  /** Sends a frame and resolves with the next frame from the other side. */
  request(bytes: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const answer = this.next(timeoutMs);
    try {
      this.send(bytes);
    } catch (err) {
      answer.catch(() => undefined);
      throw err;
    }
    return answer;
  }

  /** Resolves with the next frame from the other side (queued or yet to come). */
  next(timeoutMs: number): Promise<Uint8Array> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new LinkError('timeout', `no answer within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Closes the socket (the other side frees what the link held). */
  close(): void {
    this.fail(new LinkError('closed', 'link closed'));
    this.socket.end();
  }

  private feed(chunk: Uint8Array): void {
    if (this.failure) return;
    let frames: Uint8Array[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.fail(new LinkError('bad_frame', err instanceof FrameError ? `bad frame on the link (${err.code}): ${err.message}` : String(err)));
      this.socket.destroy();
      return;
    }
    for (const f of frames) {
      const waiter = this.waiters.shift();
      if (waiter) {
        clearTimeout(waiter.timer);
        waiter.resolve(f);
      } else if (this.onUnsolicited) this.onUnsolicited(f);
      else if (this.queue.length < MAX_UNREAD_FRAMES) this.queue.push(f);
      else {
        // A peer sending frames nobody asks for (a flooding tap) does not get to fill memory.
        this.fail(new LinkError('bad_frame', `more than ${MAX_UNREAD_FRAMES} frames nobody asked for`));
        this.socket.destroy();
        return;
      }
    }
  }

  private fail(err: LinkError): void {
    if (this.failure) return;
    this.failure = err;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    for (const fn of this.failedHandlers.splice(0)) fn(err);
  }
}

/**
 * Dials a link (or a tap) to `url`: an HTTP upgrade to `layernet-link/1`. A refusal (any answer
 * but 101) rejects with the status and the agent's error message; so does a timeout.
 */
export function dialLink(url: string, opts: { timeoutMs: number; maxPayloadBytes: number; headers?: Record<string, string> }): Promise<Link> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {
      method: 'GET',
      headers: { connection: 'Upgrade', upgrade: LINK_PROTOCOL, ...opts.headers },
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new LinkError('timeout', `link to ${u.host} not opened within ${opts.timeoutMs} ms`));
    }, opts.timeoutMs);
    req.on('upgrade', (res, socket, head) => {
      clearTimeout(timer);
      if (res.headers.upgrade?.toLowerCase() !== LINK_PROTOCOL) {
        socket.destroy();
        reject(new LinkError('refused', `${u.host} upgraded to ${res.headers.upgrade ?? 'nothing'}, not ${LINK_PROTOCOL}`, 101));
        return;
      }
      (socket as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true);
      resolve(new Link(socket, { maxPayloadBytes: opts.maxPayloadBytes }, head));
    });
    req.on('response', (res) => {
      // Not upgraded: an agent's JSON error (bounded), or a server that does not speak links.
      const parts: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.byteLength;
        if (size <= 4096) parts.push(c);
      });
      res.on('end', () => {
        clearTimeout(timer);
        let message = `HTTP ${res.statusCode}`;
        let code: string | undefined;
        try {
          const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as { error?: { message?: unknown; code?: unknown } };
          if (typeof body.error?.message === 'string') message = body.error.message.slice(0, 500);
          if (typeof body.error?.code === 'string') code = body.error.code.slice(0, 64);
        } catch {
          // Not JSON: the status says enough.
        }
        reject(new LinkError('refused', `${u.host} refused the link: ${message}`, res.statusCode, code));
      });
      res.on('error', () => undefined);
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(new LinkError('closed', `link to ${u.host} failed: ${err.message}`));
    });
    req.end();
  });
}
