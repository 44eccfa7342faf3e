/**
 * The agent's core, free of HTTP: builds what its concerns share (sessions, committed inputs,
 * ticket checks, keys, metrics; core-context.ts) and wires them together. `app.ts` wires it to
 * node:http. Each concern has its own file:
 *
 * - ticket-checks.ts: whether the edge vouches for a ticket, a link's upgrade, a signed request;
 * - head-job.ts: the head hop's job loop (`POST /v1/jobs`), cancel, stopping jobs on drain;
 * - downstream-hop.ts: the frames a later hop receives (forward, seal, close);
 * - step-runner.ts: one step on a session, the one call into the span (where a scheduler goes);
 * - chunk-attestation.ts / attest.ts: a hop's unsealed chunk, its attestation, what is kept;
 * - hop-frames.ts: decoding, validating and encoding the frames between hops;
 * - remote-stage.ts, link-pool.ts, hop-post.ts: reaching the next hop (outbound);
 * - link.ts, link-server.ts: links and taps (frames over a socket; accepting them);
 * - session-manager.ts: the KV sessions; edge-requests.ts: cancel and check-inputs.
 *
 * @example
 * const agent = new AgentCore({ agentId, signingKey, edgeKeys, span });
 * const job = await agent.prepareJob(body);          // throws AgentError before any byte is sent
 * for await (const ev of job.events(signal)) write(ev);
 */
import type { CheckInputsResponse } from '../../protocol/agent-api.js';
import type { SigningKey } from '../../protocol/keys.js';
import type { JobTicket } from '../../protocol/ticket.js';
import type { LoadedSpan } from '../runtime/types.js';
import { silentLogger, type Logger } from '../log.js';
import { AgentMetrics } from '../metrics.js';
import type { AgentCrypto } from './attest.js';
import { DEFAULT_AGENT_LIMITS, type AgentLimits, type CoreContext } from './core-context.js';
import { DownstreamHop } from './downstream-hop.js';
import { cancelJob, committedInputs } from './edge-requests.js';
import { AgentError, fail, toAgentError } from './errors.js';
import { HeadJobs, type PreparedJob } from './head-job.js';
import type { FetchLike } from './hop-post.js';
import { DEFAULT_INPUT_STORE_LIMITS, InputStore, type InputStoreLimits } from './input-store.js';
import type { Link } from './link.js';
import { nodeAgentCrypto } from './node-crypto.js';
import type { HopTransport } from './remote-stage.js';
// Constructed here, and only here: a test build swaps this module for this file alone (test/support/partial-cheating-serve).
import { SessionManager, type SessionEntry } from './session-manager.js';
import { StepRunner } from './step-runner.js';
import { TicketChecks } from './ticket-checks.js';

export type { AgentLimits, PreparedJob };

export interface AgentCoreOptions {
  agentId: string;
  signingKey: SigningKey;
  /** Trusted ticket-signing keys of the edge, by key id. */
  edgeKeys: Readonly<Record<string, string>>;
  span: LoadedSpan;
  limits?: Partial<AgentLimits>;
  inputStore?: Partial<InputStoreLimits>;
  clock?: () => number;
  fetch?: FetchLike;
  /**
   * How this agent, as the head, reaches the next hops: 'link' (default; one upgraded connection
   * per job and hop, unsealed steps go round the ring, see link.ts) or 'post' (one
   * `POST /v1/spans/forward` per step; the default when `fetch` is given). Later hops use what
   * reached them.
   */
  hopTransport?: HopTransport;
  log?: Logger;
}

export class AgentCore implements CoreContext {
  readonly agentId: string;
  readonly span: LoadedSpan;
  readonly limits: AgentLimits;
  readonly sessions: SessionManager;
  readonly inputs: InputStore;
  readonly metrics: AgentMetrics;
  readonly log: Logger;
  readonly clock: () => number;
  readonly fetch: FetchLike | undefined;
  readonly hopTransport: HopTransport;
  readonly crypto: AgentCrypto;
  readonly tickets: TicketChecks;
  /** One step on a session, for the head and later hops alike. */
  readonly steps: StepRunner;
  /** The jobs this agent runs as the head hop. */
  readonly head: HeadJobs;
  /** The frames this agent receives as a later hop. */
  readonly downstream: DownstreamHop;
  private shuttingDown = false;

  constructor(opts: AgentCoreOptions) {
    this.agentId = opts.agentId;
    this.span = opts.span;
    this.crypto = nodeAgentCrypto(opts.signingKey);
    this.limits = { ...DEFAULT_AGENT_LIMITS, ...opts.limits };
    this.clock = opts.clock ?? Date.now;
    this.fetch = opts.fetch;
    this.hopTransport = opts.hopTransport ?? (opts.fetch ? 'post' : 'link');
    this.log = opts.log ?? silentLogger;
    this.sessions = new SessionManager(this.limits, this.clock);
    this.tickets = new TicketChecks({
      agentId: opts.agentId,
      span: opts.span,
      edgeKeys: opts.edgeKeys,
      clock: this.clock,
      maxNonces: this.limits.maxNonces,
      signedRequestWindowMs: this.limits.signedRequestWindowMs,
    });
    this.inputs = new InputStore({ ...DEFAULT_INPUT_STORE_LIMITS, ...opts.inputStore }, this.clock);
    this.metrics = new AgentMetrics({
      sessions: () => this.sessions.size,
      reservedKvBytes: () => this.sessions.reservedBytes,
      kvBytes: () => this.sessions.kvBytes,
    });
    this.steps = new StepRunner(this);
    this.head = new HeadJobs(this, this.steps);
    this.downstream = new DownstreamHop(this, this.steps);
  }

  get activeJobs(): number {
    return this.head.size;
  }

  get draining(): boolean {
    return this.shuttingDown;
  }

  /** Adds or replaces trusted edge keys (after a registration or a key rotation). */
  setEdgeKeys(keys: Readonly<Record<string, string>>): void {
    this.tickets.setEdgeKeys(keys);
  }

  openSession(ticket: JobTicket, hash: string, hop: number): SessionEntry {
    if (this.shuttingDown) fail('shutdown', 'this agent is shutting down', 5);
    const maxPositions = ticket.promptTokens + ticket.limits.maxTokens;
    try {
      return this.sessions.open({
        jobId: ticket.jobId,
        ticketHash: hash,
        hop,
        reservedBytes: this.span.kvBytesPerToken * maxPositions,
        maxPositions,
        nextStep: ticket.prefixTokens,
        create: () => this.span.openSession({ maxPositions }),
      });
    } catch (err) {
      const e = toAgentError(err);
      // Not the ticket's fault: the edge may retry it once capacity frees up.
      if (e.code === 'capacity') this.tickets.releaseNonce(ticket);
      throw e;
    }
  }

  readonly countLink = (kept: boolean): void => this.metrics.links.inc({ kept: String(kept) });

  // ---- the HTTP routes' entry points (app.ts) -------------------------------------------------

  /** `POST /v1/jobs`: validates a job request and opens its session; throws AgentError (a real HTTP status). */
  prepareJob(body: unknown): Promise<PreparedJob> {
    return this.head.prepare(body);
  }

  /** `POST /v1/spans/forward`: one frame; always answers a frame (an `error` frame for anything refused) and its HTTP status. */
  handleFrame(bytes: Uint8Array): Promise<{ status: number; body: Uint8Array }> {
    return this.downstream.handleFrame(bytes);
  }

  /** A frame over a link: its answer, or null for an unsealed step not answered on the link. */
  handleLinkFrame(bytes: Uint8Array, via: Link): Promise<Uint8Array | null> {
    return this.downstream.handleLinkFrame(bytes, via);
  }

  /** An `error` frame for a refused forward/close frame, with its HTTP status. */
  errorFrame(e: AgentError): { status: number; body: Uint8Array } {
    return this.downstream.errorFrame(e);
  }

  /** `POST /v1/jobs/:id/cancel`: stops a running job (its stream ends with done/cancelled). */
  cancel(pathJobId: string, body: unknown): Promise<{ cancelled: boolean }> {
    return cancelJob(this, this.head, pathJobId, body);
  }

  /** `POST /v1/checks/inputs`: what a hop committed to for a recent job. */
  checkInputs(body: unknown): Promise<CheckInputsResponse> {
    return committedInputs(this, body);
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /**
   * Stops taking jobs and opening sessions, lets running ones finish for `graceMs` (a middle hop
   * keeps serving the sessions it has, so chains through it complete), then ends head jobs with
   * error `shutdown` so the edge resumes them elsewhere, and frees every session.
   */
  async drain(graceMs: number): Promise<void> {
    this.shuttingDown = true;
    // Real time, not the injected clock: a grace period is wall time even in tests.
    const deadline = Date.now() + graceMs;
    while ((this.head.size > 0 || this.sessions.size > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.max(1, Math.min(50, deadline - Date.now()))));
    }
    await this.head.stopAll('shutdown');
    this.sessions.closeAll('shutdown');
  }

  sweep(): void {
    this.sessions.sweep();
    this.inputs.evict();
  }
}
