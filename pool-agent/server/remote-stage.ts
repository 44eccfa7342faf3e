/**
 * The next hop, as the hop before it sees it: hands one step's activations on (over a link or
 * by POST) and returns the sampled token and, when the step seals its chunk, that hop's
 * attestation plus every later one, checked. At the head over links it also holds the tap the
 * last hop sends tokens on. Every call has a timeout; a bad answer is an AgentError naming the
 * agent at fault. Frames are built and read in hop-frames.ts, kept links come from link-pool.ts.
 *
 * @example
 * const next = new RemoteStage({ signedTicket, ticketHash, hop: 1, fetch });
 * const { attestations, tokenIds } = await next.forward({ data, seqLen }, [0, 1], { chunkFrom: 0, seal: true, prev: signedAtt0, prevHash: att0Hash }, true);
 * await next.close();
 */
import type { ForwardResultMeta } from '../../protocol/agent-api.js';
import { decodeFrame } from '../../protocol/frame.js';
import { bytesOf, toBase64Url, utf8 } from '../../protocol/bytes.js';
import type { SignedAttestation } from '../../protocol/attestation.js';
import type { SignedTicket } from '../../protocol/ticket.js';
import { tapMessage } from '../../protocol/agent-api.js';
import { AgentError, isAgentErrorCode } from './errors.js';
import { closeFrame, forwardFrame, MAX_ANSWER_PAYLOAD_BYTES, parseHopAnswer, sealFrame, SentChunk, type HiddenActivation, type StepChunk } from './hop-frames.js';
import { fetchPostBytes, FORWARD_PATH, nodePostBytes, postToHop, type FetchLike, type PostBytes } from './hop-post.js';
import { dialLink, LINK_HOP_HEADER, LINK_PATH, LINK_TICKET_HEADER, LinkError, TAP_JOB_HEADER, TAP_PATH, TAP_SIGNATURE_HEADER, TAP_TICKET_HEADER, type Link } from './link.js';
import { linkPool, type LinkPool } from './link-pool.js';

// Types of this stage's API, defined with the frames they travel in.
export type { FetchLike, HiddenActivation, StepChunk };

/** How long a head whose tap closed waits for the error of a hop before the last (see forwardUnsealed). */
const TAP_GRACE_MS = 250;

export interface RemoteStageOptions {
  signedTicket: SignedTicket;
  ticketHash: string;
  /** Route index of the hop this stage calls. */
  hop: number;
  /** A fetch to use instead of node:http (tests, other runtimes). */
  fetch?: FetchLike;
  timeoutMs?: number;
  /**
   * 'post' (one `POST /v1/spans/forward` per step, every step answered back up the chain) or
   * 'link' (frames over one upgraded connection per job; unsealed steps are not answered by middle
   * hops, the last hop sends the token to the head's tap; see link.ts). Default 'link', or
   * 'post' when `fetch` is given (a fetch cannot upgrade).
   */
  transport?: HopTransport;
  /**
   * Link only: whether `forward` waits for the sampled token of an unsealed step (the head does; a
   * middle hop hands the step on and answers nothing).
   */
  awaitTokens?: boolean;
  /**
   * Link only: a frame or failure of the link nobody waited for (an error a later hop reported
   * about an unsealed step, or the link closing). Called once; the stage is unusable after it.
   */
  onFailure?: (err: AgentError) => void;
  /**
   * This hop's signature (base64url): of the head's tap request (see tapMessage; required for a
   * tap), and of the bytes it forwards (`senderSig` on sealing frames; none without it).
   */
  sign?: (bytes: Uint8Array) => string;
  /** Link only: where idle links are taken from and given back to (default the process's linkPool; null: a link per job). */
  pool?: LinkPool | null;
  /** Link only: told, for each link the stage takes, whether it was kept from an earlier job. */
  onLink?: (kept: boolean) => void;
}

export type HopTransport = 'post' | 'link';

/**
 * A step's answer at the hop that sent it. At a head over links (forwardThenSeal), a sealing
 * step's token comes first (from the last hop, on the tap or the link) and the attestations after
 * it (back up the chain, behind the seal frame): `later` then resolves with this hop's attestation
 * of the chunk and every later hop's, already checked like a synchronous answer's.
 */
export interface StepAnswer extends ForwardResultMeta {
  later?: Promise<SignedAttestation[]>;
}

export class RemoteStage {
  readonly agentId: string;
  readonly url: string;
  readonly transport: HopTransport;
  private readonly postBytes: PostBytes;
  private readonly timeoutMs: number;
  private link: Promise<Link> | null = null;
  /** Removes this stage's failure handler from its link (a link given back to the pool outlives the stage). */
  private detachLink: (() => void) | null = null;
  private tap: Promise<Link> | null = null;
  /** Set once the link failed outside a request (see RemoteStageOptions.onFailure). */
  private broken: AgentError | null = null;
  private readonly brokenWaiters: ((err: AgentError) => void)[] = [];
  private closed = false;
  /** Whether the job's opening frame was answered: the next hop then holds its link as used (see close). */
  private ran = false;
  /** Whether the link came from the pool (see exchangeOpening). */
  private pooled = false;
  /** Requests waiting for an answer: a failure then rejects them, and onFailure is not called. */
  private pending = 0;
  /** What went out for the unsealed chunk, signed on the sealing frame (`senderSig`). */
  private readonly sent: SentChunk;

  constructor(private readonly opts: RemoteStageOptions) {
    const hop = opts.signedTicket.ticket.route[opts.hop];
    if (!hop) throw new AgentError('invalid_ticket', `the route has no hop ${opts.hop}`);
    this.agentId = hop.agentId;
    this.url = new URL(FORWARD_PATH, hop.endpoint).toString();
    this.postBytes = opts.fetch ? fetchPostBytes(opts.fetch) : nodePostBytes;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.transport = opts.transport ?? (opts.fetch ? 'post' : 'link');
    if (this.transport === 'link' && opts.fetch) throw new AgentError('internal_error', 'a link cannot run over a custom fetch');
    this.sent = new SentChunk(opts, opts.sign);
  }

  /** How long dialling a link or tap may take (at most 10 s, never more than a step). */
  private get handshakeMs(): number {
    return Math.min(this.timeoutMs, 10_000);
  }

  /** Link: starts dialling the connection (a step waits for it); lets the caller overlap it with work. */
  connect(): void {
    if (this.transport !== 'link' || this.link) return;
    // A link an earlier job kept to this hop, else a new one dialled with this job's ticket.
    const pooled = this.pool?.take(this.linkUrl) ?? null;
    this.pooled = pooled !== null;
    this.opts.onLink?.(this.pooled);
    const dialling = pooled
      ? Promise.resolve(pooled)
      : dialLink(this.linkUrl, {
          timeoutMs: this.handshakeMs,
          maxPayloadBytes: MAX_ANSWER_PAYLOAD_BYTES,
          headers: { [LINK_TICKET_HEADER]: toBase64Url(utf8(JSON.stringify(this.opts.signedTicket))), [LINK_HOP_HEADER]: String(this.opts.hop) },
        });
    this.link = dialling.then((link) => {
      link.onUnsolicited = (bytes) => this.unsolicited(bytes);
      this.detachLink = link.onFailed((err) => this.markBroken(this.nextHopError(err)));
      return link;
    });
    this.link.catch(() => undefined);
  }

  private get pool(): LinkPool | null {
    return this.opts.pool === undefined ? linkPool : this.opts.pool;
  }

  private get linkUrl(): string {
    return new URL(LINK_PATH, this.opts.signedTicket.ticket.route[this.opts.hop]!.endpoint).toString();
  }

  /** Where the sampled token of an unsealed step comes from: the last hop's tap when it is not the next hop. */
  private get tapped(): boolean {
    return this.opts.hop < this.opts.signedTicket.ticket.route.length - 1;
  }

  private async dialTap(): Promise<Link> {
    const route = this.opts.signedTicket.ticket.route;
    const last = route[route.length - 1]!;
    return dialLink(new URL(TAP_PATH, last.endpoint).toString(), {
      timeoutMs: this.handshakeMs,
      maxPayloadBytes: MAX_ANSWER_PAYLOAD_BYTES,
      headers: {
        [TAP_JOB_HEADER]: this.opts.signedTicket.ticket.jobId,
        [TAP_TICKET_HEADER]: this.opts.ticketHash,
        ...(this.opts.sign ? { [TAP_SIGNATURE_HEADER]: this.opts.sign(utf8(tapMessage(this.opts.signedTicket.ticket.jobId, this.opts.ticketHash))) } : {}),
      },
    }).catch((err: unknown) => {
      throw this.linkError(err, route.length - 1, last.agentId);
    });
  }

  /** A link failure on the way to the next hop, as an AgentError naming it. */
  private nextHopError(err: unknown): AgentError {
    return this.linkError(err, this.opts.hop, this.agentId);
  }

  private linkError(err: unknown, hop: number, agentId: string): AgentError {
    if (err instanceof AgentError) return err;
    if (err instanceof LinkError && err.code === 'timeout') return new AgentError('upstream_timeout', `hop ${hop}: ${err.message}`, { agentId });
    // A refused upgrade keeps the agent's own code (shutdown, unknown_session, ...), as a POST would.
    if (err instanceof LinkError && err.agentCode && isAgentErrorCode(err.agentCode)) return new AgentError(err.agentCode, `hop ${hop}: ${err.message}`, { agentId });
    return new AgentError('upstream_error', `hop ${hop}: ${(err as Error).message}`, { agentId });
  }

  /** A frame on the link nobody waited for: a later hop's error about an unsealed step (anything else is a protocol error). */
  private unsolicited(bytes: Uint8Array): void {
    let err: AgentError;
    try {
      parseHopAnswer(bytes, this.opts.hop, this.agentId);
      err = new AgentError('upstream_error', `hop ${this.opts.hop} answered a step nobody asked about`, { agentId: this.agentId });
    } catch (e) {
      err = e instanceof AgentError ? e : new AgentError('upstream_error', String(e), { agentId: this.agentId });
    }
    this.markBroken(err);
  }

  private markBroken(err: AgentError): void {
    if (this.broken) return;
    this.broken = err;
    for (const fn of this.brokenWaiters.splice(0)) fn(err);
    if (!this.closed && this.pending === 0) this.opts.onFailure?.(err);
  }

  /**
   * Races `p` against the link breaking outside a request (an error a later hop sent back up, or
   * the link closing); the waiter goes away with the race, so a long job does not pile them up.
   */
  private async orBroken<T>(p: Promise<T>): Promise<T> {
    if (this.broken) throw this.broken;
    let waiter!: (err: AgentError) => void;
    const broken = new Promise<never>((_, reject) => {
      waiter = reject;
      this.brokenWaiters.push(reject);
    });
    try {
      return await Promise.race([p, broken]);
    } finally {
      const i = this.brokenWaiters.indexOf(waiter);
      if (i >= 0) this.brokenWaiters.splice(i, 1);
    }
  }

  /**
   * The opening frame. On a link taken from the pool that the other side closed meanwhile (it
   * idled out there, or was evicted for a new one) before answering, the frame was never run
   * there: it goes again on a new link. (Had it run, its ticket's nonce is spent, and the second
   * try is refused as a replay: never run twice.)
   */
  private async exchangeOpening(body: Uint8Array): Promise<ForwardResultMeta> {
    if (this.transport === 'post') return this.exchange(body);
    const link = await this.linked();
    try {
      return await this.exchangeOn(link, body);
    } catch (err) {
      if (!this.pooled || link.error?.code !== 'closed' || this.closed) throw err;
      this.detachLink?.();
      this.link = null;
      this.pooled = false;
      this.broken = null;
      return this.exchangeOn(await this.linked(), body);
    }
  }

  private async linked(): Promise<Link> {
    if (this.broken) throw this.broken;
    this.connect();
    try {
      return await this.link!;
    } catch (err) {
      throw this.nextHopError(err);
    }
  }

  private forwardFrame(hidden: HiddenActivation, steps: [number, number], chunk: StepChunk, opening: boolean): Uint8Array {
    // The frame's payload is these bytes (encodeFrame copies a typed array's bytes as they are).
    this.sent.record(chunk.chunkFrom, bytesOf(hidden.data));
    const senderSig = chunk.seal ? this.sent.signed([chunk.chunkFrom, steps[1]]) : undefined;
    return forwardFrame(this.opts, hidden, steps, chunk, opening, senderSig);
  }

  /**
   * Runs one step on the next hop (and, through it, every later hop). A sealing step carries
   * `prev`, this hop's signed attestation of the whole chunk (hash `prevHash`): the next hop
   * refuses activations it does not match, and its answer holds every later hop's attestation.
   * An unsealed step is answered with the sampled token alone (on a link: at the head only, null
   * at a middle hop). The opening frame (`opening`: the one that opens the job's sessions, the
   * prefill) carries the signed ticket; later ones name the job by ticket hash.
   */
  async forward(hidden: HiddenActivation, steps: [number, number], chunk: StepChunk, opening: boolean): Promise<StepAnswer | null> {
    const body = this.forwardFrame(hidden, steps, chunk, opening);
    if (this.transport === 'link' && !chunk.seal) return this.forwardUnsealed(body, steps);
    const result = opening ? await this.exchangeOpening(body) : await this.exchange(body);
    if (this.transport === 'link' && opening && this.opts.awaitTokens && this.tapped) {
      // The last hop's session exists now: unsealed steps' tokens will come straight from it (the
      // first unsealed step waits for the tap; dialling it overlaps this hop's next run).
      this.tap = this.dialTap();
      this.tap.catch(() => undefined);
    }
    this.checkAnswer(result, steps, chunk);
    if (opening) this.ran = true;
    return result;
  }

  /** The next hop's answer holds every later hop's attestation of a sealing step (none for an unsealed one), the token, and a link not tampered with. */
  private checkAnswer(result: ForwardResultMeta, steps: [number, number], chunk: StepChunk): void {
    const attestations = chunk.seal ? this.opts.signedTicket.ticket.route.length - this.opts.hop : 0;
    if (result.attestations.length !== attestations || result.tokenIds.length !== steps[1] - steps[0]) {
      throw new AgentError('upstream_error', `hop ${this.opts.hop} returned ${result.attestations.length} attestations and ${result.tokenIds.length} tokens`, { agentId: this.agentId });
    }
    if (chunk.seal) this.checkRelayed(result, chunk.prev, chunk.prevHash);
  }

  /**
   * Head over a link whose tokens come back without the middle hops (a tap, or the last hop is
   * the next one), a decode step that seals its chunk: see forwardThenSeal.
   */
  get sealsBehindStep(): boolean {
    return this.transport === 'link' && this.opts.awaitTokens === true && (this.tap !== null || !this.tapped);
  }

  /**
   * Head, a decode step that seals its chunk, when `sealsBehindStep`: the step goes on as an
   * unsealed step at once; `attest` then signs this hop's attestation of the chunk while the later hops
   * run, and a `seal` frame follows the step on the link. Every later hop checks the previous
   * hop's attestation and signs its own when that frame reaches it, after its run (as for the
   * unsealed steps before it: nothing is signed over activations not yet checked). Resolves with the
   * token once it is in and `attest` is done; `later` with this hop's attestation of the chunk and
   * every later hop's, checked like a synchronous answer's. A failure on either path ends the wait.
   */
  async forwardThenSeal(hidden: HiddenActivation, steps: [number, number], chunkFrom: number, attest: () => Promise<{ signed: SignedAttestation; hash: string }>): Promise<StepAnswer & { later: Promise<SignedAttestation[]> }> {
    const sent = await this.sendUnsealed(this.forwardFrame(hidden, steps, { chunkFrom, seal: false }, false));
    if (!sent) throw new AgentError('internal_error', 'a stage that waits for no token cannot seal behind a step');
    const { link, answer: tokenFrame } = sent;
    const token = this.awaitToken(tokenFrame, steps);
    token.catch(() => undefined);
    // The step is on its way: sign now, while the later hops run it.
    const attested = attest();
    attested.catch(() => undefined);
    // The seal frame goes out as soon as the attestation is signed, before this call returns and
    // the next step's frame can follow it (the next hop reads a link's frames in order).
    const later = attested.then(async ({ signed, hash }) => [signed, ...this.sealed(await this.exchangeOn(link, this.sealFrame([chunkFrom, steps[1]], signed, hash)), signed, hash)]);
    // Whoever takes the step's result reports a failure; a job that ended first (a client gone,
    // an error elsewhere) never looks at it, and its rejection is not an unhandled one.
    later.catch(() => undefined);
    // Until the token is in, a failure sealing the chunk (it names its own culprit) ends the wait too.
    const failed = later.then(() => new Promise<never>(() => undefined));
    const answer = await Promise.race([token, failed]);
    // The caller's chunk is sealed only once `attest` returns: the next step must not start before.
    await attested;
    return { ...answer, later };
  }

  /**
   * Link, a step that does not seal its chunk: hands it on and, at the head, waits for the sampled
   * token from the last hop (on the tap, or on the link when the next hop is the last), or for an
   * error a hop reports back up the chain meanwhile. A middle hop returns null at once.
   */
  private async forwardUnsealed(body: Uint8Array, steps: [number, number]): Promise<ForwardResultMeta | null> {
    const sent = await this.sendUnsealed(body);
    return sent ? this.awaitToken(sent.answer, steps) : null;
  }

  /**
   * Link: sends an unsealed step's frame; resolves once it is on the socket, with the link and the
   * frame that will carry its token (the tap's next, or the link's when the next hop is the last),
   * or null at a middle hop, which waits for nothing.
   */
  private async sendUnsealed(body: Uint8Array): Promise<{ link: Link; answer: Promise<Uint8Array> } | null> {
    const link = await this.linked();
    if (!this.opts.awaitTokens) {
      this.sendOn(link, body);
      return null;
    }
    if (!this.tap) return { link, answer: this.requestOn(link, body) };
    const answer = (await this.tap).next(this.timeoutMs);
    this.sendOn(link, body);
    return { link, answer };
  }

  /** Head: the sampled token of a step from `answer` (the tap's next frame, or the link's), or the error that came instead. */
  private async awaitToken(answer: Promise<Uint8Array>, steps: [number, number]): Promise<ForwardResultMeta> {
    const route = this.opts.signedTicket.ticket.route;
    this.pending++;
    let result: ForwardResultMeta;
    try {
      result = parseHopAnswer(await this.orBroken(answer), this.opts.hop, this.agentId);
    } catch (err) {
      // Nothing came in time: the hop this step was handed to (or one after it) did not answer,
      // as a POST chain would report it.
      if (err instanceof LinkError && err.code === 'timeout') throw this.nextHopError(err);
      if (this.tap && !this.broken) {
        // The tap failed or carried an error. A hop before the last that failed frees its
        // session, which closes the chain behind it up to the tap, while its own error is still
        // on its way back up the link: wait a moment for that report rather than take the last
        // hop's word (or silence) for it.
        let timer: NodeJS.Timeout | undefined;
        const first = await this.orBroken(new Promise<null>((r) => (timer = setTimeout(r, TAP_GRACE_MS, null)))).catch((e: unknown) => e);
        clearTimeout(timer);
        if (first instanceof AgentError) throw first;
      }
      throw this.linkError(err, this.tap ? route.length - 1 : this.opts.hop, this.tap ? route[route.length - 1]!.agentId : this.agentId);
    } finally {
      this.pending--;
    }
    if (result.attestations.length !== 0 || result.tokenIds.length !== steps[1] - steps[0]) {
      throw new AgentError('upstream_error', `the last hop returned ${result.attestations.length} attestations and ${result.tokenIds.length} tokens for an open step`, { agentId: route[route.length - 1]!.agentId });
    }
    return result;
  }

  private sendOn(link: Link, body: Uint8Array): void {
    try {
      link.send(body);
    } catch (err) {
      throw this.nextHopError(err);
    }
  }

  /** Sends a frame on the link to the next hop and resolves with the next frame back; failures name the next hop. */
  private async requestOn(link: Link, body: Uint8Array): Promise<Uint8Array> {
    try {
      return await link.request(body, this.timeoutMs);
    } catch (err) {
      throw this.nextHopError(err);
    }
  }

  /**
   * Seals the unsealed chunk `chunk` on the next hop and every later one without running a step:
   * returns their attestations of it.
   */
  async seal(chunk: [number, number], prev: SignedAttestation, prevHash: string): Promise<SignedAttestation[]> {
    return this.sealed(await this.exchange(this.sealFrame(chunk, prev, prevHash)), prev, prevHash);
  }

  private sealFrame(chunk: [number, number], prev: SignedAttestation, prevHash: string): Uint8Array {
    return sealFrame(this.opts, chunk, prev, prevHash, this.sent.signed(chunk));
  }

  /** The next hop's answer to a seal: every later hop's attestation of the chunk, of what this hop sent. */
  private sealed(result: ForwardResultMeta, prev: SignedAttestation, prevHash: string): SignedAttestation[] {
    if (result.attestations.length !== this.opts.signedTicket.ticket.route.length - this.opts.hop || result.tokenIds.length !== 0) {
      throw new AgentError('upstream_error', `hop ${this.opts.hop} sealed with ${result.attestations.length} attestations and ${result.tokenIds.length} tokens`, { agentId: this.agentId });
    }
    this.checkRelayed(result, prev, prevHash);
    return result.attestations;
  }

  /** Sends a frame and reads the next hop's `tokens` answer (an `error` frame becomes an AgentError). */
  private async exchange(body: Uint8Array): Promise<ForwardResultMeta> {
    if (this.transport === 'post') return parseHopAnswer(await this.post(body), this.opts.hop, this.agentId);
    return this.exchangeOn(await this.linked(), body);
  }

  /** Sends a frame on `link` before it returns, and reads the next hop's `tokens` answer. */
  private async exchangeOn(link: Link, body: Uint8Array): Promise<ForwardResultMeta> {
    this.pending++;
    try {
      return parseHopAnswer(await this.requestOn(link, body), this.opts.hop, this.agentId);
    } finally {
      this.pending--;
    }
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
    const close = closeFrame(this.opts);
    if (this.transport === 'link') {
      // Reusable: the job ran on the link and ended with nothing failed and nothing in flight
      // (an agent carries a later job on a link only once the one it was bound to ran on it).
      const clean = this.ran && !this.closed && this.broken === null && this.pending === 0;
      this.closed = true;
      // The next hop frees the sessions opened over a link when the link closes.
      this.markBroken(new AgentError('upstream_error', 'the stage is closed', { agentId: this.agentId }));
      const [link, tap] = await Promise.all([this.link?.catch(() => null), this.tap?.catch(() => null)]);
      tap?.close();
      if (!link) return;
      this.detachLink?.();
      link.onUnsolicited = null;
      const pool = this.pool;
      if (link.error) return;
      if (!clean || !pool) {
        link.send(close);
        link.close();
        return;
      }
      // The close frame's answer comes after anything the next hop still had to say about this
      // job: once it is in, the link carries nothing of it and may take the next job.
      try {
        const answer = decodeFrame(await link.request(close, Math.min(this.timeoutMs, 5_000)), { maxPayloadBytes: 0 });
        if (answer.kind === 'close') {
          pool.give(this.linkUrl, link);
          return;
        }
      } catch {
        // Closed, timed out or not a frame: not reusable.
      }
      link.close();
      return;
    }
    try {
      await this.post(close, Math.min(this.timeoutMs, 5_000));
    } catch {
      // The next hop frees idle sessions on its own.
    }
  }

  private post(body: Uint8Array, timeoutMs = this.timeoutMs): Promise<Uint8Array> {
    return postToHop(this.postBytes, this.url, body, timeoutMs, this.opts.hop, this.agentId);
  }
}
