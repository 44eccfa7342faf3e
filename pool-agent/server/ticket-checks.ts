/**
 * Whether the edge vouches for a request: a job ticket for one hop of its route (edge signature
 * by key id, validity window, this agent and span at that hop, the route covering the model,
 * one session per nonce), a link's upgrade request carrying such a ticket, and the edge's
 * signature on cancel and check-inputs requests. Every refusal is an AgentError.
 *
 * @example
 * const tickets = new TicketChecks({ agentId, span, edgeKeys, clock, maxNonces: 100_000, signedRequestWindowMs: 300_000 });
 * const { ticket, hash } = await tickets.check(body.signedTicket, 0, false);
 * tickets.claimNonce(ticket); // AgentError `replayed` the second time
 */
import { fromBase64Url, fromUtf8, utf8 } from '../../protocol/bytes.js';
import { verifyBytes } from '../../protocol/keys.js';
import { routeCoversModel, signedTicketSchema, verifyTicket, type JobTicket } from '../../protocol/ticket.js';
import type { LoadedSpan } from '../runtime/types.js';
import { fail } from './errors.js';
import { LINK_HOP_HEADER, LINK_TICKET_HEADER, type LinkBinding } from './link.js';
import { NonceCache } from './nonce-cache.js';

export interface TicketChecksOptions {
  agentId: string;
  span: LoadedSpan;
  /** Trusted ticket-signing keys of the edge, by key id. */
  edgeKeys: Readonly<Record<string, string>>;
  clock: () => number;
  maxNonces: number;
  /** How far a signed cancel / check request's issuedAt may be from now. */
  signedRequestWindowMs: number;
}

export class TicketChecks {
  private readonly agentId: string;
  private readonly span: LoadedSpan;
  private readonly clock: () => number;
  private readonly windowMs: number;
  private readonly nonces: NonceCache;
  private edgeKeys: Record<string, string>;

  constructor(opts: TicketChecksOptions) {
    this.agentId = opts.agentId;
    this.span = opts.span;
    this.clock = opts.clock;
    this.windowMs = opts.signedRequestWindowMs;
    this.edgeKeys = { ...opts.edgeKeys };
    this.nonces = new NonceCache(opts.maxNonces, opts.clock);
  }

  /** Adds or replaces trusted edge keys (after a registration or a key rotation). */
  setEdgeKeys(keys: Readonly<Record<string, string>>): void {
    this.edgeKeys = { ...keys };
  }

  /**
   * Verifies a ticket for `hop` of its route: the edge signature (by key id), the validity window,
   * that this agent is that hop with this span's layers and model, that the route covers the model.
   * Claims the nonce when `claimNonce` (a ticket opens at most one session per agent).
   */
  async check(input: unknown, hop: number, claimNonce: boolean): Promise<{ ticket: JobTicket; hash: string }> {
    const shaped = signedTicketSchema.safeParse(input);
    if (!shaped.success) fail('invalid_ticket', 'the ticket does not match the schema');
    const edgeKey = this.edgeKeys[shaped.data.ticket.edgeKeyId];
    if (!edgeKey) fail('invalid_ticket', `ticket signed by unknown edge key ${shaped.data.ticket.edgeKeyId}`);
    const check = await verifyTicket(shaped.data, edgeKey, this.clock());
    if (!check.ok) {
      if (check.reason === 'expired') fail('expired', 'the ticket has expired');
      if (check.reason === 'not_yet_valid') fail('invalid_ticket', 'the ticket is not valid yet (clock skew?)');
      fail('invalid_ticket', `ticket refused: ${check.reason}`);
    }
    const { ticket, hash } = check;
    const routeHop = ticket.route[hop];
    if (!routeHop || routeHop.agentId !== this.agentId) fail('wrong_hop', `this agent (${this.agentId}) is not hop ${hop} of the route`);
    const [a, b] = this.span.layers;
    if (routeHop.layers[0] !== a || routeHop.layers[1] !== b) {
      fail('wrong_hop', `hop ${hop} must run layers [${routeHop.layers[0]}, ${routeHop.layers[1]}), this agent serves [${a}, ${b})`);
    }
    if (ticket.modelId !== this.span.modelId) fail('wrong_model', `this agent serves model ${this.span.modelId}, not ${ticket.modelId}`);
    if (ticket.dtype !== this.span.manifest.dtype) fail('wrong_model', `this agent serves ${this.span.manifest.dtype}, the ticket wants ${ticket.dtype}`);
    if (!routeCoversModel(ticket.route, this.span.manifest.architecture.numLayers)) fail('invalid_ticket', 'the route does not cover the model exactly once');
    if (ticket.route.some((h, i) => i !== hop && h.agentId === this.agentId)) fail('wrong_hop', 'this agent appears twice in the route');
    if (claimNonce) this.claimNonce(ticket);
    return { ticket, hash };
  }

  /**
   * A link's upgrade request (see link.ts): the job's signed ticket, base64url JSON, names this
   * agent as hop `hop`. Checked like an opening frame's ticket, but its nonce is left for the
   * opening frame to claim. Resolves with the job the link is bound to (not yet run on it).
   */
  async checkLinkUpgrade(ticketHeader: unknown, hopHeader: unknown): Promise<Omit<LinkBinding, 'ran'>> {
    if (typeof ticketHeader !== 'string' || ticketHeader === '') fail('invalid_ticket', `a link is opened with the job's signed ticket in ${LINK_TICKET_HEADER}`);
    if (typeof hopHeader !== 'string' || !/^[1-9][0-9]?$/.test(hopHeader)) fail('invalid_request', `${LINK_HOP_HEADER} must be the hop the link opens to (1..15)`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(fromUtf8(fromBase64Url(ticketHeader)));
    } catch {
      fail('invalid_ticket', `${LINK_TICKET_HEADER} is not base64url JSON`);
    }
    const hop = Number(hopHeader);
    const { ticket, hash } = await this.check(parsed, hop, false);
    if (this.clock() > ticket.limits.deadline) fail('deadline', 'job deadline passed');
    return { jobId: ticket.jobId, ticketHash: hash, hop };
  }

  /** Claims the ticket's nonce, or refuses it as `replayed` (used, or the cache is full of live ones). */
  claimNonce(ticket: JobTicket): void {
    if (!this.nonces.claim(ticket.nonce, ticket.expiresAt)) fail('replayed', 'ticket nonce already used');
  }

  /** Gives a nonce back: the ticket was refused for a reason that is not its fault (capacity). */
  releaseNonce(ticket: JobTicket): void {
    this.nonces.release(ticket.nonce);
  }

  /** A cancel or check-inputs request: issued within the window and signed by a trusted edge key. */
  async verifyEdgeSignature(message: string, signature: string, issuedAt: number): Promise<void> {
    if (Math.abs(this.clock() - issuedAt) > this.windowMs) fail('expired', 'the request is too old or from the future');
    for (const key of Object.values(this.edgeKeys)) if (await verifyBytes(key, signature, utf8(message))) return;
    fail('invalid_signature', 'the request is not signed by a trusted edge key');
  }
}
