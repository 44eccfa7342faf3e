/**
 * The agent's core, free of HTTP: ticket checks, the head hop's generation loop (prefill, decode,
 * sampling by absolute step, attested chunks of steps as the ticket's chunking policy says), a downstream hop's step on its KV
 * session, cancel, close and committed-input disclosure. `app.ts` wires it to node:http.
 *
 * @example
 * const agent = new AgentCore({ agentId, signingKey, edgeKeys, span });
 * const job = await agent.prepareJob(body);          // throws AgentError before any byte is sent
 * for await (const ev of job.events(signal)) write(ev);
 */
import { cancelMessage, cancelRequestSchema, checkInputsMessage, checkInputsRequestSchema, closeMetaSchema, errorFrameMetaSchema, forwardMetaSchema, jobRequestSchema, sealMetaSchema, tapMessage, type CheckInputsResponse, type ForwardResultMeta, type JobEvent } from '../../protocol/agent-api.js';
import { attestationBytes, type SignedAttestation } from '../../protocol/attestation.js';
import { bytesOf, concatByteList, encodeTokenIds, fromBase64Url, fromUtf8, sha256Hex, toBase64Url, utf8 } from '../../protocol/bytes.js';
import { decodeFrame, encodeFrame, FrameError, framePayloadAs, type Frame } from '../../protocol/frame.js';
import { verifyBytes, type SigningKey } from '../../protocol/keys.js';
import { routeCoversModel, signedTicketSchema, ticketBytes, verifyTicket, type ChunkingPolicy, type JobTicket, type SignedTicket } from '../../protocol/ticket.js';
import { sampleToken } from '../runtime/sampler.js';
import type { LoadedSpan, SpanInput } from '../runtime/types.js';
import { silentLogger, type Logger } from '../log.js';
import { AgentMetrics } from '../metrics.js';
import { attestChunk, chunkHiddenCommitment, chunkOutputTopLoc, headInputCommitment, lastHiddenRow, openChunk, tokenCommitmentSync, type AgentCrypto, type ForwardClaim, type HopContext, type OpenChunk } from './attest.js';
import { nodeAgentCrypto } from './node-crypto.js';
import { AgentError, toAgentError } from './errors.js';
import { forwardRefusal } from './forward-refusal.js';
import { DEFAULT_INPUT_STORE_LIMITS, InputStore, type InputStoreLimits } from './input-store.js';
import { NonceCache } from './nonce-cache.js';
import { RemoteStage, type FetchLike, type HopTransport } from './remote-stage.js';
import { LINK_HOP_HEADER, LINK_TICKET_HEADER, type Link } from './link.js';
import { SessionManager, type SessionEntry, type SessionLimits } from './session-manager.js';

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
   * Links and taps held open at once (see link.ts); an upgrade past it first closes a link kept
   * idle for a later job, else is refused with `capacity`. Default: 2 x maxSessions + 16 (a
   * session has one upstream link, a last hop one tap per job, and links are opened a little
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
   * per job and hop, open steps go round the ring, see link.ts) or 'post' (one
   * `POST /v1/spans/forward` per step; the default when `fetch` is given). Later hops use what
   * reached them.
   */
  hopTransport?: HopTransport;
  log?: Logger;
}

interface RunningJob {
  jobId: string;
  ticketHash: string;
  controller: AbortController;
  done: Promise<void>;
}

export interface PreparedJob {
  ticket: JobTicket;
  ticketHash: string;
  /** NDJSON events: one `chunk` per attested chunk of steps, then `done` or `error`. Frees the session at the end. */
  events(signal?: AbortSignal): AsyncGenerator<JobEvent>;
}

/** A step's result at some hop: its attestation and every later one (sealing steps only), and the sampled token. */
interface StepResult {
  attestations: SignedAttestation[];
  tokenIds: number[];
  /** Head over links: a sealing step's attestations, still on their way back (`attestations` is then empty). */
  later?: Promise<SignedAttestation[]>;
}

/**
 * Where a step stands in its attestation chunk: the chunk's first step, whether this step seals
 * it, and the hash it chains to (a promise at the head while the previous chunk's attestations
 * are still coming back).
 */
interface StepChain {
  chunkFrom: number;
  seal: boolean;
  prevHash: string | null | Promise<string | null>;
}

/** A `tokens` frame: a step's (or seal's) answer, its token ids also as the int32 payload. */
function tokensFrame(meta: ForwardResultMeta): Uint8Array {
  return encodeFrame({ kind: 'tokens', dtype: 'int32', dims: [meta.tokenIds.length], meta, payload: Int32Array.from(meta.tokenIds) });
}

/**
 * Whether the head closes its open chunk with this step: always without a policy (one chunk per
 * step), else once it holds `steps` >= maxSteps or has been open about `elapsedMs` >= maxDelayMs.
 */
export function closesChunk(policy: ChunkingPolicy | undefined, steps: number, elapsedMs: number): boolean {
  return !policy || steps >= policy.maxSteps || elapsedMs >= policy.maxDelayMs;
}

export class AgentCore {
  readonly agentId: string;
  readonly span: LoadedSpan;
  readonly limits: AgentLimits;
  readonly sessions: SessionManager;
  readonly inputs: InputStore;
  readonly metrics: AgentMetrics;
  readonly log: Logger;
  private readonly nonces: NonceCache;
  private readonly clock: () => number;
  private readonly fetch: FetchLike | undefined;
  readonly hopTransport: HopTransport;
  private readonly key: SigningKey;
  private readonly crypto: AgentCrypto;
  private edgeKeys: Record<string, string>;
  private readonly jobs = new Map<string, RunningJob>();
  /** Next hop of each job this agent serves as a middle hop. */
  private readonly downstream = new Map<string, RemoteStage>();
  private shuttingDown = false;

  constructor(opts: AgentCoreOptions) {
    this.agentId = opts.agentId;
    this.span = opts.span;
    this.key = opts.signingKey;
    this.crypto = nodeAgentCrypto(opts.signingKey);
    this.edgeKeys = { ...opts.edgeKeys };
    this.limits = { ...DEFAULT_AGENT_LIMITS, ...opts.limits };
    this.clock = opts.clock ?? Date.now;
    this.fetch = opts.fetch;
    this.hopTransport = opts.hopTransport ?? (opts.fetch ? 'post' : 'link');
    this.log = opts.log ?? silentLogger;
    this.sessions = new SessionManager(this.limits, this.clock);
    this.nonces = new NonceCache(this.limits.maxNonces, this.clock);
    this.inputs = new InputStore({ ...DEFAULT_INPUT_STORE_LIMITS, ...opts.inputStore }, this.clock);
    this.metrics = new AgentMetrics({
      sessions: () => this.sessions.size,
      reservedKvBytes: () => this.sessions.reservedBytes,
      kvBytes: () => this.sessions.kvBytes,
    });
  }

  get activeJobs(): number {
    return this.jobs.size;
  }

  get draining(): boolean {
    return this.shuttingDown;
  }

  /** Adds or replaces trusted edge keys (after a registration or a key rotation). */
  setEdgeKeys(keys: Readonly<Record<string, string>>): void {
    this.edgeKeys = { ...keys };
  }

  private fail(code: ConstructorParameters<typeof AgentError>[0], message: string, retryAfter?: number): never {
    throw new AgentError(code, message, retryAfter === undefined ? {} : { retryAfter });
  }

  /**
   * Verifies a ticket for `hop` of its route: the edge signature (by key id), the validity window,
   * that this agent is that hop with this span's layers and model, that the route covers the model.
   * Claims the nonce when `claimNonce` (a ticket opens at most one session per agent).
   */
  async checkTicket(input: unknown, hop: number, claimNonce: boolean): Promise<{ ticket: JobTicket; hash: string }> {
    const shaped = signedTicketSchema.safeParse(input);
    if (!shaped.success) this.fail('invalid_ticket', 'the ticket does not match the schema');
    const edgeKey = this.edgeKeys[shaped.data.ticket.edgeKeyId];
    if (!edgeKey) this.fail('invalid_ticket', `ticket signed by unknown edge key ${shaped.data.ticket.edgeKeyId}`);
    const check = await verifyTicket(shaped.data, edgeKey, this.clock());
    if (!check.ok) {
      if (check.reason === 'expired') this.fail('expired', 'the ticket has expired');
      if (check.reason === 'not_yet_valid') this.fail('invalid_ticket', 'the ticket is not valid yet (clock skew?)');
      this.fail('invalid_ticket', `ticket refused: ${check.reason}`);
    }
    const { ticket, hash } = check;
    const routeHop = ticket.route[hop];
    if (!routeHop || routeHop.agentId !== this.agentId) this.fail('wrong_hop', `this agent (${this.agentId}) is not hop ${hop} of the route`);
    const [a, b] = this.span.layers;
    if (routeHop.layers[0] !== a || routeHop.layers[1] !== b) {
      this.fail('wrong_hop', `hop ${hop} must run layers [${routeHop.layers[0]}, ${routeHop.layers[1]}), this agent serves [${a}, ${b})`);
    }
    if (ticket.modelId !== this.span.modelId) this.fail('wrong_model', `this agent serves model ${this.span.modelId}, not ${ticket.modelId}`);
    if (ticket.dtype !== this.span.manifest.dtype) this.fail('wrong_model', `this agent serves ${this.span.manifest.dtype}, the ticket wants ${ticket.dtype}`);
    if (!routeCoversModel(ticket.route, this.span.manifest.architecture.numLayers)) this.fail('invalid_ticket', 'the route does not cover the model exactly once');
    if (ticket.route.some((h, i) => i !== hop && h.agentId === this.agentId)) this.fail('wrong_hop', 'this agent appears twice in the route');
    if (claimNonce && !this.nonces.claim(ticket.nonce, ticket.expiresAt)) this.fail('replayed', 'ticket nonce already used');
    return { ticket, hash };
  }

  /**
   * A link's opening request (see link.ts): the job's signed ticket, base64url JSON, names this
   * agent as hop `hop`. Checked like an opening frame's ticket, but its nonce is left for the
   * opening frame to claim.
   */
  async checkLinkOpening(ticketHeader: unknown, hopHeader: unknown): Promise<{ jobId: string; ticketHash: string; hop: number }> {
    if (typeof ticketHeader !== 'string' || ticketHeader === '') this.fail('invalid_ticket', `a link is opened with the job's signed ticket in ${LINK_TICKET_HEADER}`);
    if (typeof hopHeader !== 'string' || !/^[1-9][0-9]?$/.test(hopHeader)) this.fail('invalid_request', `${LINK_HOP_HEADER} must be the hop the link opens to (1..15)`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(fromUtf8(fromBase64Url(ticketHeader)));
    } catch {
      this.fail('invalid_ticket', `${LINK_TICKET_HEADER} is not base64url JSON`);
    }
    const hop = Number(hopHeader);
    const { ticket, hash } = await this.checkTicket(parsed, hop, false);
    if (this.clock() > ticket.limits.deadline) this.fail('deadline', 'job deadline passed');
    return { jobId: ticket.jobId, ticketHash: hash, hop };
  }

  private openSession(ticket: JobTicket, hash: string, hop: number): SessionEntry {
    if (this.shuttingDown) this.fail('shutdown', 'this agent is shutting down', 5);
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
      if (e.code === 'capacity') this.nonces.release(ticket.nonce);
      throw e;
    }
  }

  private readonly countLink = (kept: boolean): void => this.metrics.links.inc({ kept: String(kept) });

  private hopContext(ticket: JobTicket, hash: string, hop: number): HopContext {
    return { ticket, ticketHash: hash, agentId: this.agentId, hop, layers: this.span.layers, crypto: this.crypto, clock: this.clock };
  }

  /** The hop's open chunk, started at `from` if none is open; a frame naming another start is refused. */
  private chunkOf(entry: SessionEntry, from: number): OpenChunk {
    if (!entry.chunk) entry.chunk = openChunk(from);
    else if (entry.chunk.from !== from) throw new AgentError('bad_frame', `the open chunk of job ${entry.jobId} starts at step ${entry.chunk.from}, the frame says ${from}`);
    return entry.chunk;
  }

  /** Signs this hop's attestation of its open chunk, steps [chunk.from, to). */
  private signChunk(entry: SessionEntry, ctx: HopContext, to: number, prevHash: string | null, last: boolean): { signed: SignedAttestation; hash: string } {
    const chunk = entry.chunk!;
    const inputCommitment =
      ctx.hop === 0
        ? headInputCommitment(this.crypto, ctx.ticket, chunk.from === ctx.ticket.prefixTokens, chunk.fed)
        : this.crypto.sha256Hex(concatByteList(chunk.inputs));
    if (last) {
      return attestChunk(ctx, {
        steps: [chunk.from, to],
        inputCommitment,
        outputCommitment: tokenCommitmentSync(this.crypto, chunk.tokens),
        outputTokenIds: [...chunk.tokens],
        hiddenCommitment: chunkHiddenCommitment(chunk),
        prevHash,
      });
    }
    const output = concatByteList(chunk.outputs);
    const outputCommitment = this.crypto.sha256Hex(output);
    const outputTopLoc = output.length > 0 ? chunkOutputTopLoc(output, ctx.ticket.dtype, this.span.manifest.architecture.hiddenSize, outputCommitment) : undefined;
    return attestChunk(ctx, { steps: [chunk.from, to], inputCommitment, outputCommitment, outputTopLoc, prevHash });
  }

  /** The chunk is attested by the whole route: keep what this hop committed to (for checks) and start afresh. */
  private closeChunk(entry: SessionEntry, ctx: HopContext, to: number): void {
    const chunk = entry.chunk!;
    entry.chunk = undefined;
    const meta = { dtype: ctx.ticket.dtype, hiddenSize: this.span.manifest.architecture.hiddenSize };
    this.inputs.record(ctx.ticket.jobId, ctx.hop, meta, {
      steps: [chunk.from, to],
      ...(ctx.hop === 0 ? { inputTokenIds: chunk.fed } : { input: concatByteList(chunk.inputs) }),
      ...(chunk.outputs.length > 0 ? { output: concatByteList(chunk.outputs) } : {}),
    });
  }

  /**
   * Runs one step on this hop's session and, when the span is not the last, on every later hop,
   * adding what it received and computed to the hop's open chunk. A sealing step signs the chunk
   * [link.chunkFrom, steps[1]) and returns this hop's attestation and every later one; an open
   * step returns the sampled token alone. `received` is the payload of a downstream hop's frame.
   */
  private async runStep(
    entry: SessionEntry,
    ctx: HopContext,
    input: SpanInput,
    received: Uint8Array | null,
    steps: [number, number],
    link: StepChain,
    next: RemoteStage | null,
    open: boolean,
  ): Promise<StepResult> {
    const seqLen = input.kind === 'tokens' ? input.ids.length : input.seqLen;
    if (entry.session.length + seqLen > entry.maxPositions) {
      throw new AgentError('invalid_request', `step would hold ${entry.session.length + seqLen} positions, the ticket allows ${entry.maxPositions}`);
    }
    const chunk = this.chunkOf(entry, link.chunkFrom);
    const started = performance.now();
    const out = await entry.session.forward(input);
    this.metrics.spanDuration.observe((performance.now() - started) / 1000);
    if (input.kind === 'tokens') chunk.fed.push(...input.ids);
    else chunk.inputs.push(received!);
    if (out.kind === 'logits') {
      if (next) throw new AgentError('internal_error', 'the last span of the model is not the last hop');
      const vocab = out.logits.length / out.logitsKept;
      const token = sampleToken(out.logits.subarray((out.logitsKept - 1) * vocab), ctx.ticket.sampling, steps[0]);
      // The head waits on its tap for every step after the prefill: the token goes there at once,
      // before this hop signs (a sealing step's attestations follow back up the chain).
      if (entry.tap) {
        if (entry.tap.error) throw new AgentError('upstream_error', `the head's tap for job ${entry.jobId} is closed`);
        entry.tap.send(tokensFrame({ attestations: [], tokenIds: [token] }));
      }
      chunk.tokens.push(token);
      chunk.hiddenRows.push(lastHiddenRow(out.finalHidden, out.seqLen));
      if (!link.seal) return { attestations: [], tokenIds: [token] };
      const { signed } = this.signChunk(entry, ctx, steps[1], await link.prevHash, true);
      this.closeChunk(entry, ctx, steps[1]);
      return { attestations: [signed], tokenIds: [token] };
    }
    if (!next) throw new AgentError('internal_error', 'a span that is not the last of the model ends the route');
    // A copy: the chunk keeps it until it is sealed.
    chunk.outputs.push(bytesOf(out.data).slice());
    const hidden = { data: out.data, seqLen: out.seqLen };
    if (!link.seal) {
      const rest = await next.forward(hidden, steps, { chunkFrom: link.chunkFrom, seal: false }, open);
      // null: a middle hop on a link, whose open steps' tokens go from the last hop to the head.
      return { attestations: [], tokenIds: rest?.tokenIds ?? [] };
    }
    if (!open && next.sealsBehindStep) {
      // The head over links: the step goes on first, this hop signs while the later hops run it,
      // and the chunk's seal follows it down the link (see RemoteStage.forwardThenSeal).
      const rest = await next.forwardThenSeal(hidden, steps, link.chunkFrom, async () => {
        const signed = this.signChunk(entry, ctx, steps[1], await link.prevHash, false);
        this.closeChunk(entry, ctx, steps[1]);
        return signed;
      });
      return { attestations: [], tokenIds: rest.tokenIds, later: rest.later };
    }
    const { signed, hash } = this.signChunk(entry, ctx, steps[1], await link.prevHash, false);
    const rest = await next.forward(hidden, steps, { chunkFrom: link.chunkFrom, seal: true, prev: signed, prevHash: hash }, open);
    if (!rest) throw new AgentError('internal_error', 'a sealing step was not answered');
    this.closeChunk(entry, ctx, steps[1]);
    return { attestations: [signed, ...rest.attestations], tokenIds: rest.tokenIds };
  }

  /**
   * Seals the open chunk, which ends at step `to`, without running a step (the job ended inside
   * it): signs it here and has every later hop sign it too.
   */
  private async sealOnly(entry: SessionEntry, ctx: HopContext, to: number, prevHash: string | null, next: RemoteStage | null): Promise<SignedAttestation[]> {
    const chunk = entry.chunk;
    if (!chunk || to <= chunk.from) throw new AgentError('bad_frame', `job ${entry.jobId} has no open chunk to seal at step ${to} on this hop`);
    const { signed, hash } = this.signChunk(entry, ctx, to, prevHash, next === null);
    const rest = next ? await next.seal([chunk.from, to], signed, hash) : [];
    this.closeChunk(entry, ctx, to);
    return [signed, ...rest];
  }

  // ---- head hop: POST /v1/jobs ------------------------------------------------------------

  /** Validates a job request and opens its session; throws AgentError (a real HTTP status). */
  async prepareJob(body: unknown): Promise<PreparedJob> {
    if (this.shuttingDown) this.fail('shutdown', 'this agent is shutting down', 5);
    const parsed = jobRequestSchema.safeParse(body);
    if (!parsed.success) this.fail('invalid_request', `invalid job request: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ').slice(0, 500)}`);
    const req = parsed.data;
    const { ticket, hash } = await this.checkTicket(req.signedTicket, 0, false);
    if (req.promptIds.length !== ticket.promptTokens || req.prefixIds.length !== ticket.prefixTokens) {
      this.fail('input_mismatch', `ticket says ${ticket.promptTokens} prompt + ${ticket.prefixTokens} prefix tokens, got ${req.promptIds.length} + ${req.prefixIds.length}`);
    }
    const inputIds = [...req.promptIds, ...req.prefixIds];
    if ((await sha256Hex(encodeTokenIds(inputIds))) !== ticket.inputHash) this.fail('input_mismatch', 'prompt and prefix do not hash to the ticket inputHash');
    const vocab = this.span.manifest.architecture.vocabSize;
    if (inputIds.some((t) => t >= vocab)) this.fail('invalid_request', `token ids must be below the vocabulary size ${vocab}`);
    if (!this.nonces.claim(ticket.nonce, ticket.expiresAt)) this.fail('replayed', 'ticket nonce already used');
    const entry = this.openSession(ticket, hash, 0);
    entry.ticket = ticket;
    const signedTicket = req.signedTicket as SignedTicket;
    let next: RemoteStage | null = null;
    try {
      const transport = this.hopTransport;
      next =
        ticket.route.length > 1
          ? new RemoteStage({
              signedTicket,
              ticketHash: hash,
              hop: 1,
              timeoutMs: this.limits.hopTimeoutMs,
              transport,
              awaitTokens: true,
              sign: (bytes) => this.crypto.sign(bytes),
              onLink: this.countLink,
              ...(this.fetch && transport === 'post' ? { fetch: this.fetch } : {}),
            })
          : null;
      // A link's handshake overlaps this hop's prefill.
      next?.connect();
    } catch (err) {
      this.sessions.close(ticket.jobId, 'error');
      throw err;
    }
    return { ticket, ticketHash: hash, events: (signal) => this.runJob(ticket, hash, inputIds, entry, next, signal) };
  }

  private async *runJob(ticket: JobTicket, hash: string, inputIds: number[], entry: SessionEntry, next: RemoteStage | null, signal?: AbortSignal): AsyncGenerator<JobEvent> {
    const controller = new AbortController();
    const onOuterAbort = () => controller.abort(signal?.reason ?? 'disconnect');
    signal?.addEventListener('abort', onOuterAbort, { once: true });
    let finish!: () => void;
    const running: RunningJob = { jobId: ticket.jobId, ticketHash: hash, controller, done: new Promise((r) => (finish = r)) };
    this.jobs.set(ticket.jobId, running);
    entry.onClose = (reason) => controller.abort(reason);
    const ctx = this.hopContext(ticket, hash, 0);
    const started = this.clock();
    const stop = new Set(ticket.stopTokenIds);
    let outcome = 'error';
    try {
      let step = ticket.prefixTokens;
      let fed = inputIds;
      // Hash of the last hop's attestation of the previous chunk: the next chunk chains to it (a
      // promise while that chunk's attestations are still coming back up the chain).
      let prevHash: string | null | Promise<string | null> = null;
      let first = true;
      // The open chunk: its first step, when it began, and the tokens it holds so far.
      let chunkFrom = step;
      let chunkStartedAt = started;
      let chunkTokens: number[] = [];
      let lastStepMs = 0;
      // A sealed chunk whose attestations are on their way back while the next step runs (over
      // links, the token of a sealing step comes first and a seal frame follows the step).
      let pending: { from: number; to: number; tokens: number[]; attestations: Promise<SignedAttestation[]> } | null = null;
      const chunkEvent = (attestations: SignedAttestation[], from: number, to: number, tokens: number[]): JobEvent => {
        const lastAtt = attestations[attestations.length - 1]!;
        const attested = lastAtt.att.outputTokenIds ?? [];
        if (attested.length !== tokens.length || attested.some((t, i) => t !== tokens[i])) {
          throw new AgentError('upstream_error', `the last hop attests other tokens than it returned for steps [${from}, ${to})`, { agentId: lastAtt.att.agentId });
        }
        return { type: 'chunk', steps: [from, to], tokenIds: tokens, attestations };
      };
      const sealed = (attestations: SignedAttestation[], to: number): JobEvent => {
        const ev = chunkEvent(attestations, chunkFrom, to, chunkTokens);
        prevHash = this.crypto.sha256Hex(attestationBytes(attestations[attestations.length - 1]!.att));
        chunkTokens = [];
        return ev;
      };
      const settle = async (): Promise<JobEvent> => {
        const p = pending!;
        pending = null;
        return chunkEvent(await p.attestations, p.from, p.to, p.tokens);
      };
      this.log.info('job started', { jobId: ticket.jobId, hops: ticket.route.length, promptTokens: ticket.promptTokens, prefixTokens: ticket.prefixTokens });
      while (step < ticket.limits.maxTokens) {
        if (controller.signal.aborted) break;
        if (this.clock() > ticket.limits.deadline) throw new AgentError('deadline', `job deadline passed at step ${step}`);
        const t0 = this.clock();
        const steps: [number, number] = [step, step + 1];
        if (chunkTokens.length === 0) {
          chunkFrom = step;
          chunkStartedAt = t0;
        }
        // The prefill is a chunk of its own (first token as soon as possible); later chunks close
        // on the ticket's policy, estimating this step to take as long as the last one.
        const seal = first || step + 1 >= ticket.limits.maxTokens || closesChunk(ticket.chunking, step + 1 - chunkFrom, t0 - chunkStartedAt + lastStepMs);
        const link: StepChain = { chunkFrom, seal, prevHash };
        const running: Promise<StepResult> = this.sessions.withSession(ticket.jobId, hash, (e) => this.runStep(e, ctx, { kind: 'tokens', ids: Int32Array.from(fed) }, null, steps, link, next, first));
        running.catch(() => undefined); // awaited below
        // The previous chunk's attestations come in while this step runs: send it on meanwhile.
        if (pending) yield await settle();
        const result: StepResult = await running;
        const token = result.tokenIds[0]!;
        chunkTokens.push(token);
        lastStepMs = this.clock() - t0;
        this.metrics.tokens.inc({ role: 'head' }, 1);
        this.metrics.stepDuration.observe(lastStepMs / 1000);
        if (controller.signal.aborted && controller.signal.reason === 'disconnect') break;
        const stopped = stop.has(token);
        if (seal && result.later) {
          pending = { from: chunkFrom, to: step + 1, tokens: chunkTokens, attestations: result.later };
          const chained: Promise<string> = result.later.then((a: SignedAttestation[]) => this.crypto.sha256Hex(attestationBytes(a[a.length - 1]!.att)));
          chained.catch(() => undefined); // the chunk's own settle reports a failure
          prevHash = chained;
          chunkTokens = [];
        } else if (seal) yield sealed(result.attestations, step + 1);
        if (pending && (stopped || step + 1 >= ticket.limits.maxTokens)) yield await settle();
        if (!seal && stopped) {
          const chainTo = await prevHash;
          yield sealed(await this.sessions.withSession(ticket.jobId, hash, (e) => this.sealOnly(e, ctx, step + 1, chainTo, next)), step + 1);
        }
        if (stopped) {
          outcome = 'stop';
          yield { type: 'done', finishReason: 'stop' };
          return;
        }
        fed = [token];
        step++;
        first = false;
      }
      // A chunk the whole route sealed still goes out, unless nobody is listening any more.
      if (pending && controller.signal.reason !== 'disconnect') yield await settle();
      if (chunkTokens.length > 0 && controller.signal.reason === 'shutdown') {
        // Hand back what was computed: the edge resumes the job after the last attested token.
        try {
          const chainTo = await prevHash;
          yield sealed(await this.sessions.withSession(ticket.jobId, hash, (e) => this.sealOnly(e, ctx, step, chainTo, next)), step);
        } catch (err) {
          this.log.warn('could not seal the open chunk at shutdown', { jobId: ticket.jobId, detail: (err as Error).message });
        }
      }
      const reason = controller.signal.aborted ? String(controller.signal.reason) : null;
      if (reason === 'shutdown') {
        outcome = 'shutdown';
        this.metrics.errors.inc({ code: 'shutdown' });
        yield { type: 'error', code: 'shutdown', message: 'the agent is shutting down; resume the job elsewhere', agentId: this.agentId };
        return;
      }
      if (reason === 'idle') throw new AgentError('deadline', 'the session expired');
      if (reason !== null) {
        outcome = 'cancelled';
        if (reason !== 'disconnect') yield { type: 'done', finishReason: 'cancelled' };
        return;
      }
      outcome = 'length';
      yield { type: 'done', finishReason: 'length' };
    } catch (err) {
      const e = toAgentError(err);
      if (e.code === 'internal_error') this.log.error('job failed', { jobId: ticket.jobId, error: err as Error });
      else this.log.warn('job failed', { jobId: ticket.jobId, code: e.code, detail: e.message });
      this.metrics.errors.inc({ code: e.code });
      outcome = 'error';
      yield { type: 'error', code: e.code, message: e.message.slice(0, 2000), agentId: e.agentId ?? this.agentId, ...(e.evidence ? { evidence: e.evidence } : {}) };
    } finally {
      signal?.removeEventListener('abort', onOuterAbort);
      entry.onClose = undefined;
      this.sessions.close(ticket.jobId, 'done');
      if (next) void next.close();
      this.jobs.delete(ticket.jobId);
      this.metrics.jobs.inc({ outcome });
      this.metrics.jobDuration.observe((this.clock() - started) / 1000);
      this.log.info('job finished', { jobId: ticket.jobId, outcome, ms: this.clock() - started });
      finish();
    }
  }

  // ---- downstream hop: POST /v1/spans/forward ---------------------------------------------

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
   * a frame, or null for an open step that is not answered on this link (see link.ts).
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
    if (e.code === 'internal_error') this.log.error('forward failed', { error: err as Error });
    return this.errorFrame(e);
  }

  private async dispatchFrame(bytes: Uint8Array, via: Link | null): Promise<Uint8Array | null> {
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, { maxPayloadBytes: this.limits.maxFramePayloadBytes });
    } catch (err) {
      if (err instanceof FrameError) throw new AgentError(err.code === 'too_large' ? 'payload_too_large' : 'bad_frame', `bad frame (${err.code}): ${err.message}`);
      throw err;
    }
    if (frame.kind === 'close') return this.handleClose(frame);
    if (frame.kind === 'seal') return this.handleSeal(frame);
    if (frame.kind !== 'forward') throw new AgentError('bad_frame', `expected a forward frame, got ${frame.kind}`);
    return this.handleForward(frame, via);
  }

  /**
   * Last hop: the head's tap for job `jobId` (see link.ts). Open steps' tokens go to it from now
   * on; throws AgentError when the job has no session here, another ticket, or already a tap.
   */
  attachTap(jobId: string, ticketHash: string, signature: string, tap: Link): void {
    const entry = this.sessions.get(jobId);
    if (!entry || entry.ticketHash !== ticketHash || !entry.ticket) throw new AgentError('unknown_session', `no open session for job ${jobId} on this agent`);
    if (entry.hop !== entry.ticket.route.length - 1) throw new AgentError('wrong_hop', `job ${jobId} is open here as hop ${entry.hop}, not the last hop`);
    // Only the head may take the tokens: a hop in between that took the tap could withhold them
    // and have this hop blamed. The route names the head's registered key (vouched by the edge).
    const headKey = entry.ticket.route[0]?.publicKey;
    if (headKey !== undefined && !this.crypto.verify(headKey, signature, utf8(tapMessage(jobId, ticketHash)))) {
      throw new AgentError('invalid_signature', `the tap request for job ${jobId} is not signed by the head's key`);
    }
    if (!entry.upstream) throw new AgentError('bad_frame', `job ${jobId} did not reach this hop over a link`);
    if (entry.tap) throw new AgentError('conflict', `job ${jobId} already has a tap`);
    entry.tap = tap;
    // Without the tap the tokens of open steps have nowhere to go: the job ends here.
    tap.onFailed(() => {
      if (this.sessions.get(jobId) === entry) this.sessions.close(jobId, 'tap closed');
    });
  }

  /**
   * A link closed: the sessions it opened end (their upstream is gone). A last hop says so on
   * the head's tap first, naming the previous hop, so the head does not take the tap's closing
   * for this hop's failure.
   */
  linkClosed(via: Link): void {
    for (const entry of this.sessions.list()) {
      if (entry.upstream !== via) continue;
      this.tellTapUpstreamEnded(entry, 'closed its link to');
      this.sessions.close(entry.jobId, 'link closed');
    }
  }

  /** Last hop: the previous hop ended the job while the head's tap is still open. */
  private tellTapUpstreamEnded(entry: SessionEntry, what: string): void {
    const prev = entry.ticket?.route[entry.hop - 1];
    if (entry.tap && !entry.tap.error && prev) {
      entry.tap.send(this.errorFrameBytes(new AgentError('upstream_error', `hop ${entry.hop - 1} ${what} hop ${entry.hop}`, { agentId: prev.agentId })));
    }
  }

  /** Whether a session this link opened is still open. */
  holdsSessionsOf(via: Link): boolean {
    return this.sessions.list().some((e) => e.upstream === via);
  }

  /** An `error` frame for a refused forward/close frame, with its HTTP status. */
  errorFrame(e: AgentError): { status: number; body: Uint8Array } {
    this.metrics.errors.inc({ code: e.code });
    return { status: e.status, body: this.errorFrameBytes(e) };
  }

  private errorFrameBytes(e: AgentError): Uint8Array {
    const meta = errorFrameMetaSchema.parse({ code: e.code, message: e.message.slice(0, 2000), agentId: e.agentId ?? this.agentId, ...(e.evidence ? { evidence: e.evidence } : {}) });
    return encodeFrame({ kind: 'error', meta });
  }

  private async handleClose(frame: Frame): Promise<Uint8Array> {
    const meta = closeMetaSchema.safeParse(frame.meta);
    if (!meta.success) throw new AgentError('bad_frame', 'close frame meta does not match the schema');
    const entry = this.sessions.get(meta.data.jobId);
    if (entry && entry.ticketHash === meta.data.ticketHash && entry.hop === meta.data.hop) {
      // The head closes its tap before the job's close frame gets here; an open tap means a hop
      // before this one ended the job early.
      this.tellTapUpstreamEnded(entry, 'closed the job on');
      this.sessions.close(meta.data.jobId, 'closed');
    }
    return encodeFrame({ kind: 'close', meta: { closed: entry !== undefined } });
  }

  /**
   * Refuses (`bad_input`, nothing run, nothing signed) a sealing frame whose activations (every
   * payload of the chunk) or prevHash are not what the previous hop attested: signing them would
   * make this hop's own attestation the evidence against it (broken commitment/chain at this hop)
   * for a tampered link. When hop k-1 signed that it sent exactly these bytes, the refusal carries
   * the proof against it (forward-refusal.ts).
   */
  private checkPrev(claim: ForwardClaim, ticket: JobTicket, hash: string, payload: Uint8Array): void {
    const refusal = forwardRefusal(this.crypto, claim, ticket, hash, payload, this.span.manifest.architecture.hiddenSize);
    if (refusal) {
      this.log.warn('forward refused: input not attested by the previous hop', { jobId: ticket.jobId, hop: claim.hop, detail: refusal.message, provable: refusal.evidence !== undefined });
      throw refusal;
    }
  }

  /**
   * The session a later frame of a job belongs to, with its ticket: named by the full signed
   * ticket (hashed and compared) or by its hash alone.
   */
  private sessionFor(ref: { signedTicket?: { ticket: JobTicket } | undefined; job?: { jobId: string; ticketHash: string } | undefined }, hop: number): { entry: SessionEntry; ticket: JobTicket; hash: string } {
    const jobId = ref.signedTicket?.ticket.jobId ?? ref.job!.jobId;
    const hash = ref.signedTicket ? this.crypto.sha256Hex(ticketBytes(ref.signedTicket.ticket)) : ref.job!.ticketHash;
    const found = this.sessions.get(jobId);
    if (!found) throw new AgentError('unknown_session', `no open session for job ${jobId} on this agent (expired, closed or never opened)`);
    if (found.hop !== hop) throw new AgentError('wrong_hop', `job ${jobId} is open here as hop ${found.hop}, not ${hop}`);
    if (found.ticketHash !== hash || !found.ticket) throw new AgentError('invalid_ticket', `job ${jobId} was opened with another ticket`);
    return { entry: found, ticket: found.ticket, hash };
  }

  /**
   * The next hop of a job this agent serves as a middle hop, made when its session opens. It is
   * reached the way this hop was: over a link when `via` is one (an error a later hop reports
   * about an open step then goes back up `via` at once, and the job ends here), else by POST.
   */
  private nextStage(entry: SessionEntry, signedTicket: SignedTicket | undefined, hash: string, hop: number, via: Link | null): RemoteStage {
    const jobId = entry.jobId;
    const existing = this.downstream.get(jobId);
    if (existing) return existing;
    if (!signedTicket) throw new AgentError('bad_frame', `job ${jobId}: the opening frame did not reach this hop`);
    const onFailure = (err: AgentError) => {
      if (this.sessions.get(jobId) !== entry) return;
      this.log.warn('a later hop failed', { jobId, code: err.code, detail: err.message });
      if (via && !via.error) via.send(this.errorFrame(err).body);
      this.sessions.close(jobId, 'error');
    };
    const stage = new RemoteStage({
      signedTicket,
      ticketHash: hash,
      hop: hop + 1,
      timeoutMs: this.limits.hopTimeoutMs,
      // Signs what this hop forwards (senderSig), so the next hop's refusal can be held against it.
      sign: (bytes) => this.crypto.sign(bytes),
      ...(via ? { transport: 'link' as const, awaitTokens: false, onFailure, onLink: this.countLink } : { transport: 'post' as const, ...(this.fetch ? { fetch: this.fetch } : {}) }),
    });
    stage.connect();
    this.downstream.set(jobId, stage);
    // However this session ends (close frame, idle expiry, error), later hops free theirs too.
    entry.onClose = () => {
      this.downstream.delete(jobId);
      void stage.close();
    };
    return stage;
  }

  private async handleForward(frame: Frame, via: Link | null): Promise<Uint8Array | null> {
    const parsed = forwardMetaSchema.safeParse(frame.meta);
    if (!parsed.success) throw new AgentError('bad_frame', `forward meta does not match the schema: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message ?? ''}`.trim());
    const meta = parsed.data;
    const hidden = this.span.manifest.architecture.hiddenSize;
    if (frame.dtype !== this.span.manifest.dtype) {
      throw new AgentError('bad_frame', `activations must be ${this.span.manifest.dtype}, got ${frame.dtype}`);
    }
    const [b, seqLen, h] = frame.dims;
    if (frame.dims.length !== 3 || b !== 1 || h !== hidden || !seqLen) {
      throw new AgentError('bad_frame', `activations must be [1, T, ${hidden}] with T >= 1, got [${frame.dims.join(', ')}]`);
    }
    const [from, to] = meta.steps;
    if (to !== from + 1) throw new AgentError('bad_frame', `a forward frame covers one step, got [${from}, ${to})`);
    const chunkFrom = meta.chunkFrom ?? from;
    const seal = meta.seal ?? true;
    let ticket: JobTicket;
    let hash: string;
    let entry: SessionEntry;
    if (meta.open) {
      if (!meta.signedTicket) throw new AgentError('bad_frame', 'the opening frame carries the signed ticket');
      // A link carries the job it was opened for, and a later one only once that job ran and
      // ended on it (the previous hop keeps links for its next job to this hop).
      const bound = via?.opened;
      const rebinding = bound !== undefined && bound !== null && (bound.jobId !== meta.signedTicket.ticket.jobId || bound.hop !== meta.hop);
      if (rebinding && (!bound.ran || this.holdsSessionsOf(via!))) {
        throw new AgentError('bad_frame', `this link was opened for job ${bound.jobId} at hop ${bound.hop}`);
      }
      ({ ticket, hash } = await this.checkTicket(meta.signedTicket, meta.hop, true));
      if (bound && !rebinding && bound.ticketHash !== hash) throw new AgentError('bad_frame', `this link was opened with another ticket for job ${ticket.jobId}`);
      if (seqLen !== ticket.promptTokens + ticket.prefixTokens || from !== ticket.prefixTokens) {
        throw new AgentError('bad_frame', `the opening frame must carry ${ticket.promptTokens + ticket.prefixTokens} positions at step ${ticket.prefixTokens}`);
      }
      if (!seal || chunkFrom !== from) throw new AgentError('bad_frame', 'the opening (prefill) frame is a chunk of its own');
      this.checkPrev({ hop: meta.hop, steps: [from, to], prevHash: meta.prevHash!, prev: meta.prev, senderSig: meta.senderSig }, ticket, hash, frame.payload);
      entry = this.openSession(ticket, hash, meta.hop);
      entry.ticket = ticket;
      if (via) {
        entry.upstream = via;
        via.opened = { jobId: ticket.jobId, ticketHash: hash, hop: meta.hop, ran: true };
      }
    } else {
      ({ entry, ticket, hash } = this.sessionFor(meta, meta.hop));
      if (seqLen !== 1) throw new AgentError('bad_frame', 'a decode frame carries one position');
    }
    if (frame.dtype !== ticket.dtype) throw new AgentError('bad_frame', `activations must be ${ticket.dtype}, got ${frame.dtype}`);
    if (this.clock() > ticket.limits.deadline) {
      this.sessions.close(ticket.jobId, 'deadline');
      throw new AgentError('deadline', 'job deadline passed');
    }
    // An aligned copy of the payload: the span reads it, the open chunk keeps it (as bytes) for the seal.
    const data = framePayloadAs(frame) as Float32Array | Uint16Array;
    const ctx = this.hopContext(ticket, hash, meta.hop);
    const last = meta.hop === ticket.route.length - 1;
    if (!meta.open && (entry.upstream ?? null) !== via) throw new AgentError('bad_frame', `job ${ticket.jobId} was opened ${entry.upstream ? 'over a link' : 'by POST'}: its frames come the same way`);
    const next = last ? null : this.nextStage(entry, meta.signedTicket as SignedTicket | undefined, hash, meta.hop, via);
    let result: StepResult;
    try {
      result = await this.sessions.withSession(ticket.jobId, hash, async (e) => {
        if (from !== e.nextStep) throw new AgentError('bad_frame', `job ${ticket.jobId} expects step ${e.nextStep}, got ${from}`);
        if (seal && !meta.open) {
          // Before running anything: every payload of the chunk is what hop k-1 signed.
          const received = e.chunk && e.chunk.from === chunkFrom ? [...e.chunk.inputs, frame.payload] : [frame.payload];
          this.checkPrev({ hop: meta.hop, steps: [chunkFrom, to], prevHash: meta.prevHash!, prev: meta.prev, senderSig: meta.senderSig }, ticket, hash, concatByteList(received));
        }
        const r = await this.runStep(e, ctx, { kind: 'hidden', data, seqLen }, bytesOf(data), [from, to], { chunkFrom, seal, prevHash: meta.prevHash ?? null }, next, meta.open);
        e.nextStep = to;
        return r;
      });
    } catch (err) {
      const e = toAgentError(err);
      // The head waits for an open step's token on its tap: tell it there, not only back up the chain.
      if (via && entry.tap && !entry.tap.error) entry.tap.send(this.errorFrameBytes(e));
      // A step that failed part-way leaves the KV cache ahead of the chain: the job cannot go on here.
      if (e.code !== 'busy' && e.code !== 'invalid_ticket' && e.code !== 'unknown_session') this.sessions.close(ticket.jobId, 'error');
      throw err;
    }
    this.metrics.forwards.inc({ hop: String(meta.hop) });
    if (last) this.metrics.tokens.inc({ role: 'last' }, result.tokenIds.length);
    // An open step on a link is not answered on it: the last hop's token went to the head's tap
    // (without a tap it goes back up the link, to the head itself as the previous hop), and
    // middle hops have nothing to add. A sealing step's answer carries the attestations back up.
    if (via && !seal && (!last || entry.tap)) return null;
    return tokensFrame({ attestations: result.attestations, tokenIds: result.tokenIds });
  }

  /** A `seal` frame: signs the open chunk without running a step, then has later hops do the same. */
  private async handleSeal(frame: Frame): Promise<Uint8Array> {
    const parsed = sealMetaSchema.safeParse(frame.meta);
    if (!parsed.success) throw new AgentError('bad_frame', `seal meta does not match the schema: ${parsed.error.issues[0]?.path.join('.')}`);
    const meta = parsed.data;
    const { entry, ticket, hash } = this.sessionFor(meta, meta.hop);
    const [from, to] = meta.chunk;
    const ctx = this.hopContext(ticket, hash, meta.hop);
    const last = meta.hop === ticket.route.length - 1;
    const next = last ? null : this.nextStage(entry, undefined, hash, meta.hop, entry.upstream ?? null);
    let attestations: SignedAttestation[];
    try {
      attestations = await this.sessions.withSession(ticket.jobId, hash, async (e) => {
        if (!e.chunk || e.chunk.from !== from || e.nextStep !== to) {
          throw new AgentError('bad_frame', `job ${ticket.jobId}: no open chunk [${from}, ${to}) on this hop`);
        }
        this.checkPrev({ hop: meta.hop, steps: [from, to], prevHash: meta.prevHash, prev: meta.prev, senderSig: meta.senderSig }, ticket, hash, concatByteList(e.chunk.inputs));
        return this.sealOnly(e, ctx, to, meta.prevHash, next);
      });
    } catch (err) {
      const e = toAgentError(err);
      if (e.code !== 'busy' && e.code !== 'invalid_ticket' && e.code !== 'unknown_session') this.sessions.close(ticket.jobId, 'error');
      throw err;
    }
    return tokensFrame({ attestations, tokenIds: [] });
  }

  // ---- signed edge requests -----------------------------------------------------------------

  private async verifyEdgeSignature(message: string, signature: string, issuedAt: number): Promise<void> {
    if (Math.abs(this.clock() - issuedAt) > this.limits.signedRequestWindowMs) this.fail('expired', 'the request is too old or from the future');
    for (const key of Object.values(this.edgeKeys)) if (await verifyBytes(key, signature, utf8(message))) return;
    this.fail('invalid_signature', 'the request is not signed by a trusted edge key');
  }

  /** `POST /v1/jobs/:id/cancel`: stops a running job (its stream ends with done/cancelled). */
  async cancel(pathJobId: string, body: unknown): Promise<{ cancelled: boolean }> {
    const parsed = cancelRequestSchema.safeParse(body);
    if (!parsed.success) this.fail('invalid_request', 'invalid cancel request');
    const r = parsed.data;
    if (r.jobId !== pathJobId) this.fail('invalid_request', 'job id in the path and the body differ');
    await this.verifyEdgeSignature(cancelMessage(r), r.signature, r.issuedAt);
    const job = this.jobs.get(r.jobId);
    if (!job || job.ticketHash !== r.ticketHash) return { cancelled: false };
    job.controller.abort('cancel');
    this.log.info('job cancelled', { jobId: r.jobId });
    return { cancelled: true };
  }

  /** `POST /v1/checks/inputs`: what a hop committed to for a recent job. */
  async checkInputs(body: unknown): Promise<CheckInputsResponse> {
    const parsed = checkInputsRequestSchema.safeParse(body);
    if (!parsed.success) this.fail('invalid_request', 'invalid check-inputs request');
    const r = parsed.data;
    await this.verifyEdgeSignature(checkInputsMessage(r), r.signature, r.issuedAt);
    const job = this.inputs.get(r.jobId, r.hop);
    if (!job) this.fail('not_found', `no committed inputs kept for job ${r.jobId} hop ${r.hop} (expired or never served here)`);
    return {
      jobId: job.jobId,
      hop: job.hop,
      dtype: job.dtype,
      hiddenSize: job.hiddenSize,
      chunks: job.chunks.map((c) => ({
        steps: c.steps,
        ...(c.inputTokenIds ? { inputTokenIds: c.inputTokenIds } : {}),
        ...(c.input ? { input: toBase64Url(c.input) } : {}),
        ...(c.output ? { output: toBase64Url(c.output) } : {}),
      })),
    };
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
    while ((this.jobs.size > 0 || this.sessions.size > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.max(1, Math.min(50, deadline - Date.now()))));
    }
    if (this.jobs.size > 0) {
      const running = [...this.jobs.values()];
      for (const j of running) j.controller.abort('shutdown');
      await Promise.all(running.map((j) => j.done));
    }
    this.sessions.closeAll('shutdown');
  }

  sweep(): void {
    this.sessions.sweep();
    this.inputs.evict();
  }
}
