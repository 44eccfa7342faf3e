/**
 * KV sessions of the jobs this agent serves, keyed by job id: a cap on how many are open and on
 * the KV bytes they may reserve (kvBytesPerToken x (prompt + maxTokens), reserved at open, so a
 * session never runs out mid-generation), idle expiry, and a per-session lock so two frames for
 * one job never run on its cache at once.
 *
 * @example
 * const s = sessions.open({ jobId, ticketHash, hop, reservedBytes, maxPositions, create: () => span.openSession() });
 * await sessions.withSession(jobId, ticketHash, async (entry) => entry.session.forward(input));
 * sessions.close(jobId);
 */
import type { JobTicket } from '../../protocol/ticket.js';
import type { UnsealedChunk } from './attest.js';
import type { SpanSession } from '../runtime/types.js';
import { AgentError } from './errors.js';
import type { Link } from './link.js';

export interface SessionLimits {
  maxSessions: number;
  maxKvBytes: number;
  /** A session untouched this long is freed. */
  idleMs: number;
}

export interface SessionEntry {
  readonly jobId: string;
  readonly ticketHash: string;
  readonly hop: number;
  readonly session: SpanSession;
  readonly reservedBytes: number;
  /** Positions the session may hold (prompt + maxTokens). */
  readonly maxPositions: number;
  /** Next generation step this session expects (downstream hops check frame order). */
  nextStep: number;
  lastUsed: number;
  busy: boolean;
  /** Called once when the session is freed (cancel in-flight work, close later hops). */
  onClose?: (reason: string) => void;
  /** The job's ticket, once verified (later frames may name it by hash only). */
  ticket?: JobTicket;
  /** What this hop computed since its unsealed attestation chunk began (see attest.ts). */
  chunk?: UnsealedChunk;
  /** The link the session was opened over (it closes with the link); absent for POST frames. */
  upstream?: Link;
  /** Last hop on a link: where unsealed steps' tokens go (the head's tap; see link.ts). */
  tap?: Link;
}

export interface OpenSession {
  jobId: string;
  ticketHash: string;
  hop: number;
  reservedBytes: number;
  maxPositions: number;
  nextStep: number;
  create: () => SpanSession;
}

export class SessionManager {
  private readonly entries = new Map<string, SessionEntry>();
  private reserved = 0;

  constructor(
    readonly limits: SessionLimits,
    private readonly clock: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get reservedBytes(): number {
    return this.reserved;
  }

  get kvBytes(): number {
    let total = 0;
    for (const e of this.entries.values()) {
      try {
        total += e.session.kvBytes;
      } catch {
        // A disposed session holds nothing.
      }
    }
    return total;
  }

  get freeKvBytes(): number {
    return Math.max(0, this.limits.maxKvBytes - this.reserved);
  }

  has(jobId: string): boolean {
    return this.entries.has(jobId);
  }

  get(jobId: string): SessionEntry | undefined {
    return this.entries.get(jobId);
  }

  /** The open sessions (a snapshot: closing one while iterating is fine). */
  list(): SessionEntry[] {
    return [...this.entries.values()];
  }

  /** Opens a session or throws AgentError: `conflict` (job already open), `capacity` (503 + retry-after). */
  open(req: OpenSession): SessionEntry {
    this.sweep();
    if (this.entries.has(req.jobId)) throw new AgentError('conflict', `job ${req.jobId} already has a session on this agent`);
    if (this.entries.size >= this.limits.maxSessions) {
      throw new AgentError('capacity', `all ${this.limits.maxSessions} sessions are in use`, { retryAfter: this.retryAfterSeconds() });
    }
    if (req.reservedBytes > this.limits.maxKvBytes) {
      throw new AgentError('capacity', `the job needs ${req.reservedBytes} KV bytes, this agent offers at most ${this.limits.maxKvBytes}`);
    }
    if (this.reserved + req.reservedBytes > this.limits.maxKvBytes) {
      throw new AgentError('capacity', `KV cache full: ${this.freeKvBytes} bytes free, the job needs ${req.reservedBytes}`, { retryAfter: this.retryAfterSeconds() });
    }
    const entry: SessionEntry = {
      jobId: req.jobId,
      ticketHash: req.ticketHash,
      hop: req.hop,
      session: req.create(),
      reservedBytes: req.reservedBytes,
      maxPositions: req.maxPositions,
      nextStep: req.nextStep,
      lastUsed: this.clock(),
      busy: false,
    };
    this.entries.set(req.jobId, entry);
    this.reserved += req.reservedBytes;
    return entry;
  }

  /**
   * Runs `fn` with the session locked; refuses an unknown job (`unknown_session`), another
   * ticket's frames (`invalid_ticket`), or a session already running (`busy`).
   */
  async withSession<T>(jobId: string, ticketHash: string, fn: (entry: SessionEntry) => Promise<T>): Promise<T> {
    const entry = this.entries.get(jobId);
    if (!entry) throw new AgentError('unknown_session', `no open session for job ${jobId} on this agent (expired, closed or never opened)`);
    if (entry.ticketHash !== ticketHash) throw new AgentError('invalid_ticket', `job ${jobId} was opened with another ticket`);
    if (entry.busy) throw new AgentError('busy', `job ${jobId} is already running a step`);
    entry.busy = true;
    entry.lastUsed = this.clock();
    try {
      return await fn(entry);
    } finally {
      entry.busy = false;
      entry.lastUsed = this.clock();
    }
  }

  /** Frees a session (idempotent). */
  close(jobId: string, reason = 'closed'): boolean {
    const entry = this.entries.get(jobId);
    if (!entry) return false;
    this.entries.delete(jobId);
    this.reserved -= entry.reservedBytes;
    try {
      entry.session.dispose();
    } catch {
      // Already disposed.
    }
    // The head's tap has nothing more to carry.
    entry.tap?.close();
    try {
      entry.onClose?.(reason);
    } catch {
      // A close hook must not keep the session.
    }
    return true;
  }

  /** Frees sessions idle past the limit (never one that is running a step). */
  sweep(now = this.clock()): string[] {
    const expired: string[] = [];
    for (const e of this.entries.values()) if (!e.busy && now - e.lastUsed > this.limits.idleMs) expired.push(e.jobId);
    for (const id of expired) this.close(id, 'idle');
    return expired;
  }

  closeAll(reason = 'shutdown'): void {
    for (const id of [...this.entries.keys()]) this.close(id, reason);
  }

  private retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(this.limits.idleMs / 1000 / 4));
  }
}
