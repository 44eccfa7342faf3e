/**
 * What a later hop (hop >= 1) does with the frames it receives, by POST or over a link: a
 * `forward` frame runs one step on the job's session (the opening one checks the ticket and opens
 * it), a `seal` frame signs the unsealed chunk, a `close` frame frees the session here and on
 * later hops. Before a sealing frame runs or signs anything, the previous hop's attestation is
 * checked against every payload of the chunk (forward-refusal.ts). Frames are decoded and
 * validated in hop-frames.ts; the step itself is step-runner.ts.
 *
 * Where a step scheduler slots in: a frame arrives (handleFrame / handleLinkFrame), is decoded
 * and matched to its session here, then runs under the session's lock in StepRunner.runStep,
 * whose runSpan is the single call into the span.
 *
 * @example
 * const hop = new DownstreamHop(core, steps);
 * const { status, body } = await hop.handleFrame(bytes);          // POST /v1/spans/forward
 * const answer = await hop.handleLinkFrame(bytes, link);          // a frame over a link (null: no answer)
 */
import { bytesOf, concatByteList } from '../../protocol/bytes.js';
import { framePayloadAs, type Frame } from '../../protocol/frame.js';
import { ticketBytes, type JobTicket, type SignedTicket } from '../../protocol/ticket.js';
import type { SignedAttestation } from '../../protocol/attestation.js';
import type { ForwardClaim } from './attest.js';
import { hopContext } from './chunk-attestation.js';
import type { CoreContext } from './core-context.js';
import { AgentError, toAgentError } from './errors.js';
import { forwardRefusal } from './forward-refusal.js';
import { closedFrame, closeRequest, decodeHopFrame, errorFrameBytes, forwardRequest, sealRequest, tokensFrame } from './hop-frames.js';
import type { Link } from './link.js';
import { holdsSessionsOf, tellTapUpstreamEnded } from './link-server.js';
import { RemoteStage } from './remote-stage.js';
import type { SessionEntry } from './session-manager.js';
import type { StepResult, StepRunner } from './step-runner.js';

export class DownstreamHop {
  /** Next hop of each job this agent serves as a middle hop. */
  private readonly nextStages = new Map<string, RemoteStage>();

  constructor(
    private readonly core: CoreContext,
    private readonly steps: StepRunner,
  ) {}

  /** Handles one frame; always answers a frame (an `error` frame for anything refused) and its HTTP status. */
  async handleFrame(bytes: Uint8Array): Promise<{ status: number; body: Uint8Array }> {
    try {
      return { status: 200, body: (await this.dispatchFrame(bytes, null))! };
    } catch (err) {
      return this.refuse(err);
    }
  }

  /**
   * Handles one frame that came over a link (frames of one link run one after the other). Answers
   * a frame, or null for an unsealed step that is not answered on this link (see link.ts).
   */
  async handleLinkFrame(bytes: Uint8Array, via: Link): Promise<Uint8Array | null> {
    try {
      return await this.dispatchFrame(bytes, via);
    } catch (err) {
      return this.refuse(err).body;
    }
  }

  private refuse(err: unknown): { status: number; body: Uint8Array } {
    const e = toAgentError(err);
    if (e.code === 'internal_error') this.core.log.error('forward failed', { error: err as Error });
    return this.errorFrame(e);
  }

  private async dispatchFrame(bytes: Uint8Array, via: Link | null): Promise<Uint8Array | null> {
    const frame = decodeHopFrame(bytes, this.core.limits.maxFramePayloadBytes);
    if (frame.kind === 'close') return this.handleClose(frame);
    if (frame.kind === 'seal') return this.handleSeal(frame);
    if (frame.kind !== 'forward') throw new AgentError('bad_frame', `expected a forward frame, got ${frame.kind}`);
    return this.handleForward(frame, via);
  }

  /** An `error` frame for a refused forward/close frame, with its HTTP status. */
  errorFrame(e: AgentError): { status: number; body: Uint8Array } {
    this.core.metrics.errors.inc({ code: e.code });
    return { status: e.status, body: errorFrameBytes(e, this.core.agentId) };
  }

  private async handleClose(frame: Frame): Promise<Uint8Array> {
    const meta = closeRequest(frame);
    const entry = this.core.sessions.get(meta.jobId);
    if (entry && entry.ticketHash === meta.ticketHash && entry.hop === meta.hop) {
      // The head closes its tap before the job's close frame gets here; a tap still working means
      // a hop before this one ended the job early.
      tellTapUpstreamEnded(entry, 'closed the job on', this.core.agentId);
      this.core.sessions.close(meta.jobId, 'closed');
    }
    return closedFrame(entry !== undefined);
  }

  /**
   * Refuses (`bad_input`, nothing run, nothing signed) a sealing frame whose activations (every
   * payload of the chunk) or prevHash are not what the previous hop attested: signing them would
   * make this hop's own attestation the evidence against it (broken commitment/chain at this hop)
   * for a tampered link. When hop k-1 signed that it sent exactly these bytes, the refusal carries
   * the proof against it (forward-refusal.ts).
   */
  private checkPrev(claim: ForwardClaim, ticket: JobTicket, hash: string, payload: Uint8Array): void {
    const refusal = forwardRefusal(this.core.crypto, claim, ticket, hash, payload, this.core.span.manifest.architecture.hiddenSize);
    if (refusal) {
      this.core.log.warn('forward refused: input not attested by the previous hop', { jobId: ticket.jobId, hop: claim.hop, detail: refusal.message, provable: refusal.evidence !== undefined });
      throw refusal;
    }
  }

  /**
   * The session a later frame of a job belongs to, with its ticket: named by the full signed
   * ticket (hashed and compared) or by its hash alone.
   */
  private sessionFor(ref: { signedTicket?: { ticket: JobTicket } | undefined; job?: { jobId: string; ticketHash: string } | undefined }, hop: number): { entry: SessionEntry; ticket: JobTicket; hash: string } {
    const jobId = ref.signedTicket?.ticket.jobId ?? ref.job!.jobId;
    const hash = ref.signedTicket ? this.core.crypto.sha256Hex(ticketBytes(ref.signedTicket.ticket)) : ref.job!.ticketHash;
    const found = this.core.sessions.get(jobId);
    if (!found) throw new AgentError('unknown_session', `no open session for job ${jobId} on this agent (expired, closed or never opened)`);
    if (found.hop !== hop) throw new AgentError('wrong_hop', `job ${jobId} is open here as hop ${found.hop}, not ${hop}`);
    if (found.ticketHash !== hash || !found.ticket) throw new AgentError('invalid_ticket', `job ${jobId} was opened with another ticket`);
    return { entry: found, ticket: found.ticket, hash };
  }

  /**
   * The next hop of a job this agent serves as a middle hop, made when its session opens. It is
   * reached the way this hop was: over a link when `via` is one (an error a later hop reports
   * about an unsealed step then goes back up `via` at once, and the job ends here), else by POST.
   */
  private nextStage(entry: SessionEntry, signedTicket: SignedTicket | undefined, hash: string, hop: number, via: Link | null): RemoteStage {
    const core = this.core;
    const jobId = entry.jobId;
    const existing = this.nextStages.get(jobId);
    if (existing) return existing;
    if (!signedTicket) throw new AgentError('bad_frame', `job ${jobId}: the opening frame did not reach this hop`);
    const onFailure = (err: AgentError) => {
      if (core.sessions.get(jobId) !== entry) return;
      core.log.warn('a later hop failed', { jobId, code: err.code, detail: err.message });
      if (via && !via.error) via.send(this.errorFrame(err).body);
      core.sessions.close(jobId, 'error');
    };
    const stage = new RemoteStage({
      signedTicket,
      ticketHash: hash,
      hop: hop + 1,
      timeoutMs: core.limits.hopTimeoutMs,
      // Signs what this hop forwards (senderSig), so the next hop's refusal can be held against it.
      sign: (bytes) => core.crypto.sign(bytes),
      ...(via ? { transport: 'link' as const, awaitTokens: false, onFailure, onLink: core.countLink } : { transport: 'post' as const, ...(core.fetch ? { fetch: core.fetch } : {}) }),
    });
    stage.connect();
    this.nextStages.set(jobId, stage);
    // However this session ends (close frame, idle expiry, error), later hops free theirs too.
    entry.onClose = () => {
      this.nextStages.delete(jobId);
      void stage.close();
    };
    return stage;
  }

  private async handleForward(frame: Frame, via: Link | null): Promise<Uint8Array | null> {
    const core = this.core;
    const { meta, seqLen, from, to, chunkFrom, seal, opening } = forwardRequest(frame, core.span.manifest.dtype, core.span.manifest.architecture.hiddenSize);
    let ticket: JobTicket;
    let hash: string;
    let entry: SessionEntry;
    if (opening) {
      if (!meta.signedTicket) throw new AgentError('bad_frame', 'the opening frame carries the signed ticket');
      // A link carries the job it is bound to, and a later one only once that job ran and
      // ended on it (the previous hop keeps links for its next job to this hop).
      const bound = via?.boundJob;
      const rebinding = bound !== undefined && bound !== null && (bound.jobId !== meta.signedTicket.ticket.jobId || bound.hop !== meta.hop);
      if (rebinding && (!bound.ran || holdsSessionsOf(core.sessions, via!))) {
        throw new AgentError('bad_frame', `this link was opened for job ${bound.jobId} at hop ${bound.hop}`);
      }
      ({ ticket, hash } = await core.tickets.check(meta.signedTicket, meta.hop, true));
      if (bound && !rebinding && bound.ticketHash !== hash) throw new AgentError('bad_frame', `this link was opened with another ticket for job ${ticket.jobId}`);
      if (seqLen !== ticket.promptTokens + ticket.prefixTokens || from !== ticket.prefixTokens) {
        throw new AgentError('bad_frame', `the opening frame must carry ${ticket.promptTokens + ticket.prefixTokens} positions at step ${ticket.prefixTokens}`);
      }
      if (!seal || chunkFrom !== from) throw new AgentError('bad_frame', 'the opening (prefill) frame is a chunk of its own');
      this.checkPrev({ hop: meta.hop, steps: [from, to], prevHash: meta.prevHash!, prev: meta.prev, senderSig: meta.senderSig }, ticket, hash, frame.payload);
      entry = core.openSession(ticket, hash, meta.hop);
      entry.ticket = ticket;
      if (via) {
        entry.upstream = via;
        via.boundJob = { jobId: ticket.jobId, ticketHash: hash, hop: meta.hop, ran: true };
      }
    } else {
      ({ entry, ticket, hash } = this.sessionFor(meta, meta.hop));
      if (seqLen !== 1) throw new AgentError('bad_frame', 'a decode frame carries one position');
    }
    if (frame.dtype !== ticket.dtype) throw new AgentError('bad_frame', `activations must be ${ticket.dtype}, got ${frame.dtype}`);
    if (core.clock() > ticket.limits.deadline) {
      core.sessions.close(ticket.jobId, 'deadline');
      throw new AgentError('deadline', 'job deadline passed');
    }
    // An aligned copy of the payload: the span reads it, the unsealed chunk keeps it (as bytes) for the seal.
    const data = framePayloadAs(frame) as Float32Array | Uint16Array;
    const ctx = hopContext(core, ticket, hash, meta.hop);
    const last = meta.hop === ticket.route.length - 1;
    if (!opening && (entry.upstream ?? null) !== via) throw new AgentError('bad_frame', `job ${ticket.jobId} was opened ${entry.upstream ? 'over a link' : 'by POST'}: its frames come the same way`);
    const next = last ? null : this.nextStage(entry, meta.signedTicket as SignedTicket | undefined, hash, meta.hop, via);
    let result: StepResult;
    try {
      result = await core.sessions.withSession(ticket.jobId, hash, async (e) => {
        if (from !== e.nextStep) throw new AgentError('bad_frame', `job ${ticket.jobId} expects step ${e.nextStep}, got ${from}`);
        if (seal && !opening) {
          // Before running anything: every payload of the chunk is what hop k-1 signed.
          const received = e.chunk && e.chunk.from === chunkFrom ? [...e.chunk.inputs, frame.payload] : [frame.payload];
          this.checkPrev({ hop: meta.hop, steps: [chunkFrom, to], prevHash: meta.prevHash!, prev: meta.prev, senderSig: meta.senderSig }, ticket, hash, concatByteList(received));
        }
        const r = await this.steps.runStep(e, ctx, { kind: 'hidden', data, seqLen }, bytesOf(data), [from, to], { chunkFrom, seal, prevHash: meta.prevHash ?? null }, next, opening);
        e.nextStep = to;
        return r;
      });
    } catch (err) {
      const e = toAgentError(err);
      // The head waits for an unsealed step's token on its tap: tell it there, not only back up the chain.
      if (via && entry.tap && !entry.tap.error) entry.tap.send(errorFrameBytes(e, core.agentId));
      // A step that failed part-way leaves the KV cache ahead of the chain: the job cannot go on here.
      if (e.code !== 'busy' && e.code !== 'invalid_ticket' && e.code !== 'unknown_session') core.sessions.close(ticket.jobId, 'error');
      throw err;
    }
    core.metrics.forwards.inc({ hop: String(meta.hop) });
    if (last) core.metrics.tokens.inc({ role: 'last' }, result.tokenIds.length);
    // An unsealed step on a link is not answered on it: the last hop's token went to the head's tap
    // (without a tap it goes back up the link, to the head itself as the previous hop), and
    // middle hops have nothing to add. A sealing step's answer carries the attestations back up.
    if (via && !seal && (!last || entry.tap)) return null;
    return tokensFrame({ attestations: result.attestations, tokenIds: result.tokenIds });
  }

  /** A `seal` frame: signs the unsealed chunk without running a step, then has later hops do the same. */
  private async handleSeal(frame: Frame): Promise<Uint8Array> {
    const core = this.core;
    const meta = sealRequest(frame);
    const { entry, ticket, hash } = this.sessionFor(meta, meta.hop);
    const [from, to] = meta.chunk;
    const ctx = hopContext(core, ticket, hash, meta.hop);
    const last = meta.hop === ticket.route.length - 1;
    const next = last ? null : this.nextStage(entry, undefined, hash, meta.hop, entry.upstream ?? null);
    let attestations: SignedAttestation[];
    try {
      attestations = await core.sessions.withSession(ticket.jobId, hash, async (e) => {
        if (!e.chunk || e.chunk.from !== from || e.nextStep !== to) {
          throw new AgentError('bad_frame', `job ${ticket.jobId}: no open chunk [${from}, ${to}) on this hop`);
        }
        this.checkPrev({ hop: meta.hop, steps: [from, to], prevHash: meta.prevHash, prev: meta.prev, senderSig: meta.senderSig }, ticket, hash, concatByteList(e.chunk.inputs));
        return this.steps.sealOnly(e, ctx, to, meta.prevHash, next);
      });
    } catch (err) {
      const e = toAgentError(err);
      if (e.code !== 'busy' && e.code !== 'invalid_ticket' && e.code !== 'unknown_session') core.sessions.close(ticket.jobId, 'error');
      throw err;
    }
    return tokensFrame({ attestations, tokenIds: [] });
  }
}
