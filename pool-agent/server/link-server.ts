/**
 * The inbound side of links (link.ts): `GET /v1/spans/link` and `GET /v1/spans/tap` with
 * `Upgrade: layernet-link/1`. A link's upgrade request carries the job's signed ticket (checked
 * before the upgrade; one link per ticket); the link then carries that job's frames, one after
 * the other, to the frame handler (downstream-hop.ts). A link without a session, idle past the
 * session idle time, is closed, and closing a link frees the sessions opened over it. A tap only
 * carries tokens to the head: the last hop attaches it to the job's session. At most
 * linkCap(limits) links and taps are held at once. Outbound links are link-pool.ts and
 * remote-stage.ts.
 *
 * @example
 * const links = new LinkServer(core, core); // AgentCore: the shared state, and where link frames go
 * server.on('upgrade', (req, socket, head) => links.handleUpgrade(req, socket, head));
 * links.closeAll(); // shutting down
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { tapMessage } from '../../protocol/agent-api.js';
import { utf8 } from '../../protocol/bytes.js';
import { linkCap, type CoreContext } from './core-context.js';
import { AgentError, toAgentError } from './errors.js';
import { errorFrameBytes } from './hop-frames.js';
import { Link, LINK_HOP_HEADER, LINK_PATH, LINK_PROTOCOL, LINK_TICKET_HEADER, TAP_JOB_HEADER, TAP_PATH, TAP_SIGNATURE_HEADER, TAP_TICKET_HEADER, type LinkBinding } from './link.js';
import type { SessionEntry, SessionManager } from './session-manager.js';

/** Frames a link may hold unhandled before its socket is paused. */
const MAX_QUEUED_LINK_FRAMES = 4;

/** Where a link's frames go (AgentCore, which hands them to DownstreamHop): an answer to send back, or null for none. */
export interface LinkFrameHandler {
  handleLinkFrame(bytes: Uint8Array, via: Link): Promise<Uint8Array | null>;
}

/** Whether a session opened over this link is still open. */
export function holdsSessionsOf(sessions: SessionManager, via: Link): boolean {
  return sessions.list().some((e) => e.upstream === via);
}

/** Last hop: the previous hop ended the job while the head's tap still works; say so on the tap. */
export function tellTapUpstreamEnded(entry: SessionEntry, what: string, agentId: string): void {
  const prev = entry.ticket?.route[entry.hop - 1];
  if (entry.tap && !entry.tap.error && prev) {
    entry.tap.send(errorFrameBytes(new AgentError('upstream_error', `hop ${entry.hop - 1} ${what} hop ${entry.hop}`, { agentId: prev.agentId }), agentId));
  }
}

/** Answers a refused upgrade with the agent's JSON error and closes the socket. */
function refuseUpgrade(socket: Duplex, err: AgentError): void {
  const body = JSON.stringify(err.toEnvelope());
  const retry = err.retryAfter ? `retry-after: ${err.retryAfter}\r\n` : '';
  socket.end(`HTTP/1.1 ${err.status} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${retry}connection: close\r\n\r\n${body}`);
}

export class LinkServer {
  /** The links and taps this agent holds. */
  private readonly all = new Set<Link>();
  /** Links by the hash of the ticket of their upgrade request. */
  private readonly byTicket = new Map<string, Link>();

  constructor(
    private readonly core: CoreContext,
    private readonly frames: LinkFrameHandler,
  ) {}

  /** An HTTP upgrade request (node:http's 'upgrade' event): accepts a link or a tap, or refuses it. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const core = this.core;
    socket.on('error', () => undefined);
    const path = new URL(req.url ?? '/', 'http://agent').pathname;
    if (String(req.headers.upgrade).toLowerCase() !== LINK_PROTOCOL || (path !== LINK_PATH && path !== TAP_PATH)) {
      refuseUpgrade(socket, new AgentError('not_found', `no upgrade to ${String(req.headers.upgrade)} on ${path}`));
      return;
    }
    if (core.draining && path === LINK_PATH) {
      refuseUpgrade(socket, new AgentError('shutdown', 'this agent is shutting down', { retryAfter: 5 }));
      return;
    }
    const full = (): boolean => {
      if (this.all.size < linkCap(core.limits)) return false;
      // A link kept idle by a previous hop for its next job (one job ran on it, no session now) makes
      // room: that hop dials a new one when it needs it.
      for (const l of this.all) {
        if (l.boundJob?.ran && !holdsSessionsOf(core.sessions, l)) {
          l.close(); // (its failure handler takes it out of the table)
          return false;
        }
      }
      core.metrics.errors.inc({ code: 'capacity' });
      refuseUpgrade(socket, new AgentError('capacity', `this agent holds ${this.all.size} links, its limit`, { retryAfter: 1 }));
      return true;
    };
    if (full()) return;
    const accept = () => {
      (socket as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true);
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${LINK_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
    };
    if (path === TAP_PATH) {
      // Nothing comes from the head on a tap: any byte is a protocol error.
      const tap = new Link(socket, { maxPayloadBytes: 0 });
      try {
        this.attachTap(String(req.headers[TAP_JOB_HEADER] ?? ''), String(req.headers[TAP_TICKET_HEADER] ?? ''), String(req.headers[TAP_SIGNATURE_HEADER] ?? ''), tap);
      } catch (err) {
        refuseUpgrade(socket, toAgentError(err));
        return;
      }
      tap.onUnsolicited = () => tap.close();
      accept();
      this.all.add(tap);
      tap.onFailed(() => this.all.delete(tap));
      return;
    }
    core.tickets.checkLinkUpgrade(req.headers[LINK_TICKET_HEADER], req.headers[LINK_HOP_HEADER]).then(
      (bound) => {
        if (socket.destroyed || full()) return;
        if (this.byTicket.has(bound.ticketHash)) {
          refuseUpgrade(socket, new AgentError('conflict', `the ticket of job ${bound.jobId} already opened a link to this agent`));
          return;
        }
        accept();
        this.serveLink(socket, head, bound);
      },
      (err: unknown) => {
        if (!socket.destroyed) refuseUpgrade(socket, toAgentError(err));
      },
    );
  }

  /** Runs an accepted link's frames, one at a time, for the job it is bound to. */
  private serveLink(socket: Duplex, head: Buffer, bound: Omit<LinkBinding, 'ran'>): void {
    const core = this.core;
    const link = new Link(socket, { maxPayloadBytes: core.limits.maxFramePayloadBytes }, head);
    link.boundJob = { ...bound, ran: false };
    this.all.add(link);
    this.byTicket.set(bound.ticketHash, link);
    // A link that carries no session for the idle time goes; one whose session is busy (a long
    // prefill upstream) stays: sessions expire on their own, and then the link follows.
    (socket as { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(core.limits.idleMs, () => {
      if (!holdsSessionsOf(core.sessions, link)) link.close();
    });
    let queue = Promise.resolve();
    // Frames run one at a time; a peer that sends ahead is paused rather than buffered without end.
    let waiting = 0;
    link.onUnsolicited = (bytes) => {
      if (++waiting > MAX_QUEUED_LINK_FRAMES) socket.pause();
      queue = queue.then(async () => {
        const answer = await this.frames.handleLinkFrame(bytes, link);
        if (answer && !link.error) link.send(answer);
        if (--waiting <= MAX_QUEUED_LINK_FRAMES) socket.resume();
      });
    };
    // (A link whose stream is not frames has already dropped its socket: nothing can be answered.)
    link.onFailed(() => {
      this.all.delete(link);
      if (this.byTicket.get(bound.ticketHash) === link) this.byTicket.delete(bound.ticketHash);
      void queue.then(() => this.linkClosed(link));
    });
  }

  /**
   * Last hop: the head's tap for job `jobId`. Unsealed steps' tokens go to it from now on; throws
   * AgentError when the job has no session here, another ticket, or already a tap.
   */
  private attachTap(jobId: string, ticketHash: string, signature: string, tap: Link): void {
    const sessions = this.core.sessions;
    const entry = sessions.get(jobId);
    if (!entry || entry.ticketHash !== ticketHash || !entry.ticket) throw new AgentError('unknown_session', `no open session for job ${jobId} on this agent`);
    if (entry.hop !== entry.ticket.route.length - 1) throw new AgentError('wrong_hop', `job ${jobId} is open here as hop ${entry.hop}, not the last hop`);
    // Only the head may take the tokens: a hop in between that took the tap could withhold them
    // and have this hop blamed. The route names the head's registered key (vouched by the edge).
    const headKey = entry.ticket.route[0]?.publicKey;
    if (headKey !== undefined && !this.core.crypto.verify(headKey, signature, utf8(tapMessage(jobId, ticketHash)))) {
      throw new AgentError('invalid_signature', `the tap request for job ${jobId} is not signed by the head's key`);
    }
    if (!entry.upstream) throw new AgentError('bad_frame', `job ${jobId} did not reach this hop over a link`);
    if (entry.tap) throw new AgentError('conflict', `job ${jobId} already has a tap`);
    entry.tap = tap;
    // Without the tap the tokens of unsealed steps have nowhere to go: the job ends here.
    tap.onFailed(() => {
      if (sessions.get(jobId) === entry) sessions.close(jobId, 'tap closed');
    });
  }

  /**
   * A link closed: the sessions opened over it end (their upstream is gone). A last hop says so on
   * the head's tap first, naming the previous hop, so the head does not take the tap's closing
   * for this hop's failure.
   */
  private linkClosed(via: Link): void {
    for (const entry of this.core.sessions.list()) {
      if (entry.upstream !== via) continue;
      tellTapUpstreamEnded(entry, 'closed its link to', this.core.agentId);
      this.core.sessions.close(entry.jobId, 'link closed');
    }
  }

  /** Closes every link and tap held (the agent shutting down: the other sides free what they held). */
  closeAll(): void {
    for (const l of this.all) l.close();
  }
}
