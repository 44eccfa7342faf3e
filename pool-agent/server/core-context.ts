/**
 * What the concerns of the agent core share, and its limits. AgentCore (agent.ts) builds one of
 * these and hands it to the head's job loop (head-job.ts), the frame handler of later hops
 * (downstream-hop.ts), the step runner (step-runner.ts) and the link server (link-server.ts), so
 * each of them reads the same sessions, keys and metrics without reaching into the others.
 * Types and limits only.
 */
import type { JobTicket } from '../../protocol/ticket.js';
import type { LoadedSpan } from '../runtime/types.js';
import type { Logger } from '../log.js';
import type { AgentMetrics } from '../metrics.js';
import type { AgentCrypto } from './attest.js';
import type { FetchLike } from './hop-post.js';
import type { InputStore } from './input-store.js';
import type { HopTransport } from './remote-stage.js';
import type { SessionEntry, SessionLimits, SessionManager } from './session-manager.js';
import type { TicketChecks } from './ticket-checks.js';

export interface AgentLimits extends SessionLimits {
  /** Largest JSON body of `POST /v1/jobs`. */
  maxJobBodyBytes: number;
  /** Largest activation tensor in a forward frame. */
  maxFramePayloadBytes: number;
  /** Timeout of each call to the next hop. */
  hopTimeoutMs: number;
  maxNonces: number;
  /** How far a signed cancel / check request's issuedAt may be from now. */
  signedRequestWindowMs: number;
  /**
   * Links and taps held at once (see link.ts); an upgrade past it first closes a link kept
   * idle for a later job, else is refused with `capacity`. Default: 2 x maxSessions + 16 (a
   * session has one upstream link, a last hop one tap per job, and links are dialled a little
   * before their first frame).
   */
  maxLinks?: number;
}

/** The most links and taps an agent holds at once under `limits`. */
export function linkCap(limits: Pick<AgentLimits, 'maxSessions' | 'maxLinks'>): number {
  return limits.maxLinks ?? 2 * limits.maxSessions + 16;
}

export const DEFAULT_AGENT_LIMITS: AgentLimits = {
  maxSessions: 16,
  maxKvBytes: 2 * 1024 ** 3,
  idleMs: 60_000,
  maxJobBodyBytes: 2 * 1024 * 1024,
  maxFramePayloadBytes: 256 * 1024 * 1024,
  hopTimeoutMs: 30_000,
  maxNonces: 100_000,
  signedRequestWindowMs: 5 * 60_000,
};

/** The agent's shared state, as each concern of the core sees it (AgentCore implements it). */
export interface CoreContext {
  readonly agentId: string;
  readonly span: LoadedSpan;
  readonly limits: AgentLimits;
  readonly sessions: SessionManager;
  readonly inputs: InputStore;
  readonly metrics: AgentMetrics;
  readonly log: Logger;
  readonly clock: () => number;
  /** Hashing and signing with this agent's key (node-crypto.ts). */
  readonly crypto: AgentCrypto;
  readonly tickets: TicketChecks;
  /** A fetch for hop calls instead of node:http (tests); forces POST at the head. */
  readonly fetch: FetchLike | undefined;
  /** How this agent, as the head, reaches the next hops. */
  readonly hopTransport: HopTransport;
  /** Set once the agent drains: no new jobs or sessions. */
  readonly draining: boolean;
  /**
   * Opens the KV session of `ticket`'s job for `hop`, sized for the whole job; refuses while
   * draining, and gives the nonce back when refused for capacity.
   */
  openSession(ticket: JobTicket, hash: string, hop: number): SessionEntry;
  /** Counts a link taken to a next hop, `kept` when it came from the link pool (bound: handed to RemoteStage as is). */
  readonly countLink: (kept: boolean) => void;
}
