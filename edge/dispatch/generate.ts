/**
 * One generation request, end to end: plan routes, sign a ticket, stream the head agent's
 * NDJSON events, verify every chunk's attestation chain BEFORE its tokens are handed on, and
 * fail over when a route fails:
 *
 * - before the first token: the next best route, invisibly;
 * - mid-stream (agent dies, bad attestation, timeout): a new ticket on another route whose
 *   prefix is exactly the tokens already handed on, same seed, so the consumer sees one stream
 *   with no duplicated or lost token;
 * - consumer stops (client gone, stop string): a signed cancel to the head agent.
 *
 * Observations, reputation changes, cooldowns and the job record go through `waitUntil`,
 * never on the response path.
 *
 * @example
 * const gen = new Generation(deps, request);
 * await gen.prepare();                    // throws ApiError (404, 503) before any byte is sent
 * for await (const ev of gen.run()) { if (ev.type === 'tokens') send(ev.ids); }
 */
import { ApiError, type ErrorCode } from '../../protocol/errors.js';
import { attestationBytes, ChainVerifier, type SignedAttestation } from '../../protocol/attestation.js';
import { cancelMessage, type CancelRequest, type JobRequest } from '../../protocol/agent-api.js';
import { signBytes, verifyBytes } from '../../protocol/keys.js';
import { utf8 } from '../../protocol/bytes.js';
import type { SamplingParams, SignedTicket } from '../../protocol/ticket.js';
import type { AttestationSummary, RouteSummary } from '../../protocol/api.js';
import type { EdgeDeps, AuthContext } from '../deps.js';
import type { JobAttemptRecord, ModelRecord, Observation, RouteCandidate } from '../../db/registry-contract.js';
import { planRoutes, withoutAgent, type RoutePrefs } from '../routing/plan.js';
import type { ClientLocation, ScoredRoute } from '../routing/score.js';
import { coolDownLocally, loadCandidates } from '../routing/candidates.js';
import { issueTicket } from './ticket.js';
import { readJobEvents, StreamFailure } from './ndjson.js';
import { verifyForwardEvidence } from './forward-blame.js';
import { checkFinishedJob } from '../checks/run-checks.js';
import { DEFAULT_TRUST_POLICY } from '../trust/policy.js';
import { routeIsStaked, unstakedRouteAllowed } from '../trust/reputation.js';

export interface GenerationRequest {
  jobId: string;
  auth: AuthContext;
  model: ModelRecord;
  promptIds: number[];
  /** Every id that ends the generation (the model's stop ids); written into each ticket. */
  stopTokenIds: readonly number[];
  maxTokens: number;
  sampling: SamplingParams;
  prefs: RoutePrefs;
  client: ClientLocation;
  /** Whether tokens are streamed to the client (attestation chunks then close within attestChunkDelayMs). */
  stream: boolean;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
}

export type GenerationEvent = { type: 'tokens'; ids: number[] } | { type: 'done'; reason: 'stop' | 'length' };

/** A transport error with its cause: fetch's own message ("fetch failed") names neither the reason nor the peer. */
function transportError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (!(err.cause instanceof Error)) return err.message;
  const cause: Error & { code?: unknown } = err.cause;
  const code = typeof cause.code === 'string' && !cause.message.includes(cause.code) ? `${cause.code}: ` : '';
  return `${err.message} (${code}${cause.message})`;
}

/** Whether `att` carries a valid signature of `hop`'s registered key (then its content is the hop's word). */
async function signedBy(att: SignedAttestation | undefined, hop: RouteCandidate | undefined): Promise<boolean> {
  if (!att || !hop || att.att.agentId !== hop.agentId) return false;
  try {
    return await verifyBytes(hop.publicKey, att.sig, attestationBytes(att.att));
  } catch {
    return false;
  }
}

/** Why an attempt failed, and whom to blame. */
class AttemptFailure extends Error {
  constructor(
    readonly kind: 'unreachable' | 'http_status' | 'timeout' | 'stream' | 'agent_error' | 'bad_attestation' | 'truncated',
    message: string,
    /** Agent to exclude, cool down and record a failure for (null: the whole route). */
    readonly agentId: string | null,
    readonly evidence?: unknown,
    /** The agent URL the edge failed to reach or got a bad answer from (logged, for operators). */
    readonly url?: string,
  ) {
    super(message);
  }
}

const UNSTAKED_SHARE_USED_UP = 'only routes through unstaked pools are available, and their share of traffic is used up';

export class Generation {
  /** Tokens handed to the consumer, in order (EOS excluded). */
  readonly tokens: number[] = [];
  readonly attempts: JobAttemptRecord[] = [];
  private routes: ScoredRoute[] = [];
  private candidates: RouteCandidate[] = [];
  private readonly excluded = new Set<string>();
  private current: { route: ScoredRoute; ticketHash: string; chainHead: string | null } | null = null;
  private chunkCount = 0;
  /** Whether tokens handed on came from a route outside the preferred region (`route.region_met`). */
  private servedOutsideRegion = false;
  private finishReason: 'stop' | 'length' | 'cancelled' | 'error' | null = null;
  private lastFailure: AttemptFailure | null = null;
  /** Timing of the running attempt, for observations. */
  private timing = { startedAt: 0, firstTokenAt: null as number | null, tokens: 0, observed: false };
  private started = false;
  private recorded = false;
  private record: Promise<unknown> = Promise.resolve();
  private startRecord: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: EdgeDeps,
    readonly req: GenerationRequest,
  ) {}

  /** Whether this request may use routes through unstaked pools (decided once, in prepare). */
  private unstakedAllowed = true;

  /**
   * Unstaked pools get only the traffic the operator allows (`unstakedTrafficShare`): while this
   * isolate's recent share of unstaked routes is used up, only fully staked routes are offered;
   * with none, the request is refused (503).
   */
  private stakePolicy(routes: ScoredRoute[]): ScoredRoute[] {
    const offered = this.unstakedAllowed ? routes : routes.filter((r) => routeIsStaked(r.hops));
    if (offered.length === 0) throw new ApiError('no_route', UNSTAKED_SHARE_USED_UP);
    return offered;
  }

  /** Plans routes; throws 503 no_route when none meets the constraints. */
  async prepare(): Promise<void> {
    // The bounded candidate read favours the asked-for region, else the client's own.
    const region = this.req.prefs.region ?? this.req.client.region;
    this.candidates = await loadCandidates(this.deps, this.req.model.id, region);
    // The stake decision and its count are per request: re-plans after a failure reuse them.
    const now = this.deps.clock.now();
    const window = this.deps.caches.unstakedTraffic;
    const share = this.deps.config.unstakedTrafficShare;
    this.unstakedAllowed = share >= 1 || unstakedRouteAllowed(window.counts(now), { ...DEFAULT_TRUST_POLICY, unstakedTrafficShare: share });
    try {
      this.routes = this.plan();
    } catch (err) {
      // A request refused for its share still counts as demand: the share is of all requests,
      // so unstaked pools keep their share even when no staked route exists.
      if (err instanceof ApiError && err.message === UNSTAKED_SHARE_USED_UP) window.record(true, now);
      throw err;
    }
    window.record(routeIsStaked(this.routes[0]!.hops), now);
  }

  private plan(): ScoredRoute[] {
    const plan = planRoutes(this.candidates, {
      numLayers: this.req.model.numLayers,
      now: this.deps.clock.now(),
      prefs: this.req.prefs,
      client: this.req.client,
      promptTokens: this.req.promptIds.length,
      maxTokens: this.req.maxTokens,
      random: this.deps.random,
      staleAfterMs: this.deps.config.heartbeatStaleMs,
      exclude: this.excluded,
      explorationShare: this.deps.config.explorationShare,
    });
    if (!plan.ok) throw new ApiError('no_route', plan.reason);
    return this.stakePolicy(plan.routes);
  }

  /** The route that produced (the end of) the answer, for responses and headers. */
  routeSummary(): RouteSummary {
    const route = this.current?.route ?? this.routes[0];
    const regionMet = this.regionMet();
    return {
      hops: (route?.hops ?? []).map((h) => ({ agent_id: h.agentId, pool_id: h.poolId, region: h.region, layers: [h.layers[0], h.layers[1]] as [number, number] })),
      price: (route?.priceMicroUsdPerMTok ?? 0) / 1e6,
      attempts: Math.max(1, this.attempts.length),
      ...(regionMet !== null ? { region_met: regionMet } : {}),
    };
  }

  /**
   * Whether the preferred region (`route.region`) served the answer: every route that handed on
   * tokens, and the current one, lies in it. null when no region was asked for.
   */
  regionMet(): boolean | null {
    if (this.req.prefs.region === undefined) return null;
    return !this.servedOutsideRegion && ((this.current?.route ?? this.routes[0])?.inRegion ?? false);
  }

  attestationSummary(): AttestationSummary {
    return {
      job_id: this.req.jobId,
      // Every forwarded token passed ChainVerifier first; false only when nothing was generated.
      verified: this.chunkCount > 0,
      ticket_hash: this.current?.ticketHash ?? '',
      model_id: this.req.model.id,
      chunks: this.chunkCount,
      chain_head: this.current?.chainHead ?? null,
      url: `/v1/jobs/${this.req.jobId}/attestation`,
    };
  }

  /** Route agent ids, for the x-layernet-route header. */
  routeHeader(): string {
    return (this.current?.route ?? this.routes[0])?.hops.map((h) => h.agentId).join(',') ?? '';
  }

  /** Expected cost of the tokens so far on the final route, micro-USD (rounded up). */
  costMicroUsd(): number {
    const price = (this.current?.route ?? this.routes[0])?.priceMicroUsdPerMTok ?? 0;
    return Math.ceil((price * (this.req.promptIds.length + this.tokens.length)) / 1e6);
  }

  get outcome(): 'stop' | 'length' | 'cancelled' | 'error' | null {
    return this.finishReason;
  }

  /** Call before `return()`ing the iterator when the consumer ends the job itself (stop string). */
  finishEarly(reason: 'stop' | 'length'): void {
    this.finishReason = reason;
  }

  async *run(): AsyncGenerator<GenerationEvent> {
    if (this.started) throw new Error('a Generation runs once');
    this.started = true;
    const { deps, req } = this;
    const stops = new Set(req.stopTokenIds);
    this.startRecord = deps.store.recordJobStart({
      id: req.jobId,
      accountId: req.auth.accountId,
      apiKeyId: req.auth.apiKeyId,
      modelId: req.model.id,
      createdAt: deps.clock.now(),
      route: this.routes[0]?.hops.map((h) => h.agentId) ?? [],
      promptTokens: req.promptIds.length,
    });
    deps.waitUntil(this.startRecord);
    let consumerStopped = true;
    try {
      while (this.tokens.length < req.maxTokens) {
        if (req.signal.aborted) {
          this.finishReason = 'cancelled';
          return;
        }
        const route = this.nextRoute();
        const attemptNo = this.attempts.length + 1;
        const ticketJobId = attemptNo === 1 ? req.jobId : `${req.jobId}.${attemptNo}`;
        const now = deps.clock.now();
        const { signed, hash } = await issueTicket(
          {
            jobId: ticketJobId,
            model: req.model,
            hops: route.hops,
            promptIds: req.promptIds,
            prefixIds: this.tokens,
            maxTokens: req.maxTokens,
            sampling: req.sampling,
            stopTokenIds: [...stops],
            chunking: {
              maxSteps: deps.config.attestChunkSteps,
              maxDelayMs: req.stream ? deps.config.attestChunkDelayMs : Math.max(deps.config.attestChunkDelayMs, 1_000),
            },
            now,
            ttlMs: deps.config.firstTokenTimeoutMs + 30_000,
            deadline: now + deps.config.jobDeadlineMs,
            edgeKeyId: deps.signingKey.id,
          },
          deps.signingKey.privateKey,
        );
        const attempt: JobAttemptRecord = { ticket: signed, chunks: [], outcome: 'failed' };
        this.attempts.push(attempt);
        this.current = { route, ticketHash: hash, chainHead: null };
        const ctl = new AbortController();
        const onAbort = () => ctl.abort();
        req.signal.addEventListener('abort', onAbort, { once: true });
        let ended = false;
        try {
          for await (const ev of this.attempt(route, signed, hash, attempt, ctl)) {
            if (ev.type === 'done') {
              attempt.outcome = 'completed';
              ended = true;
              this.finishReason = ev.reason;
              consumerStopped = false;
              this.observeSuccess(route);
              this.recordFinish();
              yield ev;
              return;
            }
            let ids = ev.ids;
            const eosAt = ids.findIndex((id) => stops.has(id));
            if (eosAt >= 0) ids = ids.slice(0, eosAt);
            ids = ids.slice(0, req.maxTokens - this.tokens.length);
            this.tokens.push(...ids);
            if (ids.length && !route.inRegion) this.servedOutsideRegion = true;
            if (ids.length) yield { type: 'tokens', ids };
            if (eosAt >= 0 || this.tokens.length >= req.maxTokens) {
              attempt.outcome = 'completed';
              ended = true;
              this.finishReason = eosAt >= 0 ? 'stop' : 'length';
              consumerStopped = false;
              // The agent may still be sending (e.g. its done event); stop it.
              this.sendCancel(route, signed, hash);
              this.observeSuccess(route);
              this.recordFinish();
              yield { type: 'done', reason: this.finishReason };
              return;
            }
          }
          throw new AttemptFailure('truncated', 'agent stream ended without a done event', route.hops[0]!.agentId);
        } catch (err) {
          if (req.signal.aborted) {
            attempt.outcome = 'cancelled';
            this.finishReason = 'cancelled';
            this.sendCancel(route, signed, hash);
            return;
          }
          if (!(err instanceof AttemptFailure)) throw err;
          ended = true;
          attempt.failure = `${err.kind}: ${err.message}`;
          this.lastFailure = err;
          this.onFailure(route, err, signed);
          this.sendCancel(route, signed, hash);
          if (!req.prefs.allow_fallbacks) throw this.finalError();
        } finally {
          req.signal.removeEventListener('abort', onAbort);
          if (!ended && attempt.outcome === 'failed') {
            // The consumer returned early (stop string, client gone): cancel the agents' work.
            // A stop string is a complete answer; anything else is a cancellation.
            attempt.outcome = this.finishReason === 'stop' || this.finishReason === 'length' ? 'completed' : 'cancelled';
            this.sendCancel(route, signed, hash);
          }
          if (attempt.outcome !== 'failed') this.observeSuccess(route);
        }
      }
      this.finishReason = 'length';
      consumerStopped = false;
      this.recordFinish();
      yield { type: 'done', reason: 'length' };
    } catch (err) {
      this.finishReason = 'error';
      consumerStopped = false;
      throw err;
    } finally {
      if (consumerStopped && this.finishReason === null) this.finishReason = 'cancelled';
      this.recordFinish();
    }
  }

  private nextRoute(): ScoredRoute {
    if (this.attempts.length >= this.deps.config.maxAttempts) throw this.finalError();
    this.routes = withoutAgent(this.routes, this.excluded);
    if (this.routes.length === 0 && this.attempts.length > 0) {
      try {
        this.routes = this.plan();
      } catch {
        throw this.finalError();
      }
    }
    const route = this.routes.shift();
    if (!route) throw this.finalError();
    return route;
  }

  private finalError(): ApiError {
    const f = this.lastFailure;
    if (!f) return new ApiError('no_route', 'no route meets the constraints');
    const code: ErrorCode = f.kind === 'timeout' ? 'upstream_timeout' : f.kind === 'bad_attestation' ? 'attestation_failed' : 'upstream_error';
    return new ApiError(code, `no route could complete the request (last failure: ${f.kind})`);
  }

  /** Streams one attempt: yields verified token batches, then done. Throws AttemptFailure. */
  private async *attempt(
    route: ScoredRoute,
    signed: SignedTicket,
    hash: string,
    attempt: JobAttemptRecord,
    ctl: AbortController,
  ): AsyncGenerator<GenerationEvent> {
    const { deps, req } = this;
    const head = route.hops[0]!;
    const body: JobRequest = { signedTicket: signed, promptIds: req.promptIds, prefixIds: [...this.tokens] };
    const startedAt = deps.clock.now();
    this.timing = { startedAt, firstTokenAt: null, tokens: 0, observed: false };
    const firstTimer = setTimeout(() => ctl.abort(), deps.config.firstTokenTimeoutMs);
    const url = new URL('/v1/jobs', head.endpoint).toString();
    let res: Response;
    try {
      res = await deps.transport(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
        body: JSON.stringify(body),
        signal: ctl.signal,
      });
    } catch (err) {
      clearTimeout(firstTimer);
      if (req.signal.aborted) throw new DOMException('client went away', 'AbortError');
      const timedOut = deps.clock.now() - startedAt >= deps.config.firstTokenTimeoutMs;
      const detail = timedOut ? 'timed out' : `unreachable: ${transportError(err)}`;
      throw new AttemptFailure(timedOut ? 'timeout' : 'unreachable', `head agent ${detail}`, head.agentId, undefined, url);
    }
    clearTimeout(firstTimer);
    if (!res.ok || !res.body) {
      await res.body?.cancel().catch(() => undefined);
      throw new AttemptFailure('http_status', `head agent answered ${res.status}`, head.agentId, undefined, url);
    }
    const keys = new Map(route.hops.map((h) => [h.agentId, h.publicKey]));
    const verifier = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: req.model.numLayers, keys });
    let firstTokenAt: number | null = null;
    const timeout = () => (firstTokenAt === null ? deps.config.firstTokenTimeoutMs : deps.config.interTokenTimeoutMs);
    try {
      for await (const ev of readJobEvents(res.body, timeout)) {
        if (ev.type === 'error') {
          const reporter = ev.agentId && keys.has(ev.agentId) ? ev.agentId : head.agentId;
          if (ev.evidence !== undefined) {
            // A hop refused bytes and says its predecessor signed them: blame that hop only once
            // its own signatures prove it (forward-blame.ts), as for a signed wrong attestation.
            const proof = await verifyForwardEvidence(ev.evidence, { ticket: signed.ticket, ticketHash: hash, hops: route.hops, hiddenSize: req.model.manifest.architecture.hiddenSize });
            if (proof.ok) {
              throw new AttemptFailure('bad_attestation', `bad_forward: ${proof.detail}`, proof.agentId, {
                reason: 'bad_forward',
                detail: proof.detail,
                hop: proof.hop,
                fault: proof.fault,
                provable: true,
                reportedBy: reporter,
                forward: ev.evidence,
              });
            }
            // Unproven, the refusal is what it was before evidence existed: the reporter's word.
            deps.log({ level: 'warn', msg: 'forward evidence refused', jobId: req.jobId, agentId: reporter, detail: proof.why });
          }
          throw new AttemptFailure('agent_error', `agent error ${ev.code}`, reporter);
        }
        if (ev.type === 'done') {
          if (ev.finishReason === 'cancelled') throw new AttemptFailure('agent_error', 'agent cancelled the job', head.agentId);
          // 'length' from the agent means the ticket's maxTokens was reached.
          yield { type: 'done', reason: ev.finishReason === 'stop' ? 'stop' : 'length' };
          return;
        }
        const check = await verifier.verifyChunk(ev.attestations);
        if (!check.ok) {
          // A validly signed but wrong attestation is the signer's doing (provable, with the
          // evidence) — but only if it is this chunk's: bound to this ticket and these steps.
          // A missing or invalid signature, or a genuine signature replayed from another ticket
          // or another chunk, proves nothing about the named hop: the head agent relayed those
          // bytes, so it carries the blame (otherwise a head could frame an honest later hop).
          const named = check.hop !== undefined ? ev.attestations[check.hop] : undefined;
          const thisChunk =
            named !== undefined &&
            named.att.ticketHash === hash &&
            named.att.jobId === signed.ticket.jobId &&
            named.att.steps[0] === ev.steps[0] &&
            named.att.steps[1] === ev.steps[1];
          const signedByHop = thisChunk && (await signedBy(named, route.hops[check.hop!]));
          const blamed = signedByHop ? route.hops[check.hop!]!.agentId : head.agentId;
          throw new AttemptFailure('bad_attestation', `${check.reason}: ${check.detail}`, blamed, {
            reason: check.reason,
            detail: check.detail,
            hop: check.hop,
            provable: signedByHop,
            chunk: ev.attestations,
          });
        }
        if (
          check.steps[0] !== ev.steps[0] ||
          check.steps[1] !== ev.steps[1] ||
          check.tokenIds.length !== ev.tokenIds.length ||
          check.tokenIds.some((t, i) => t !== ev.tokenIds[i])
        ) {
          // The head agent wrote the event: its tokens differ from what the chain attests.
          throw new AttemptFailure('bad_attestation', 'chunk tokens differ from the attested tokens', head.agentId, {
            reason: 'bad_tokens',
            provable: false,
            chunk: ev.attestations,
            tokenIds: ev.tokenIds,
          });
        }
        attempt.chunks.push(ev.attestations as SignedAttestation[]);
        this.chunkCount++;
        this.current!.chainHead = check.lastHash;
        if (firstTokenAt === null) firstTokenAt = this.timing.firstTokenAt = deps.clock.now();
        this.timing.tokens += check.tokenIds.length;
        yield { type: 'tokens', ids: check.tokenIds };
      }
    } catch (err) {
      if (err instanceof StreamFailure) {
        if (req.signal.aborted) throw new DOMException('client went away', 'AbortError');
        if (err.kind === 'malformed' || err.kind === 'too_large') {
          // A complete line that is not a valid event is the head agent's doing (it wrote the
          // stream): treat it like an unverifiable attestation, so dropping signatures costs
          // reputation, without a provable claim.
          throw new AttemptFailure('bad_attestation', err.message, head.agentId, { reason: 'malformed', detail: err.message, provable: false });
        }
        throw new AttemptFailure(err.kind === 'timeout' ? 'timeout' : 'stream', err.message, head.agentId, undefined, url);
      }
      throw err;
    }
  }

  private observeSuccess(route: ScoredRoute): void {
    const now = this.deps.clock.now();
    const { firstTokenAt, startedAt, tokens, observed } = this.timing;
    if (firstTokenAt === null || observed) return;
    this.timing.observed = true;
    const ttft = firstTokenAt - startedAt;
    const perToken = tokens > 1 ? (now - firstTokenAt) / (tokens - 1) : undefined;
    const obs: Observation[] = route.hops.map((h) => {
      // A route's timings are shared among its hops by their share of the layers (exact for one hop).
      const share = (h.layers[1] - h.layers[0]) / this.req.model.numLayers;
      return {
        agentId: h.agentId,
        modelId: this.req.model.id,
        location: this.deps.config.location,
        ttftMs: ttft * share,
        ...(perToken !== undefined ? { perTokenMs: perToken * share } : {}),
        ok: true,
        at: now,
      };
    });
    this.deps.waitUntil(this.deps.store.recordObservations(obs));
  }

  private onFailure(route: ScoredRoute, failure: AttemptFailure, signed: SignedTicket): void {
    const { deps } = this;
    const now = deps.clock.now();
    const blamed = failure.agentId ? [failure.agentId] : route.hops.map((h) => h.agentId);
    const until = now + deps.config.cooldownMs;
    for (const agentId of blamed) {
      this.excluded.add(agentId);
      coolDownLocally(this.candidates, agentId, until);
    }
    deps.log({ level: 'warn', msg: 'route attempt failed', jobId: this.req.jobId, kind: failure.kind, detail: failure.message, agents: blamed, ...(failure.url ? { url: failure.url } : {}) });
    const work: Promise<unknown>[] = [
      deps.store.recordObservations(blamed.map((agentId) => ({ agentId, modelId: this.req.model.id, location: deps.config.location, ok: false, at: now }))),
      ...blamed.map((agentId) => deps.store.setCooldown(agentId, until, failure.kind)),
    ];
    if (failure.kind === 'bad_attestation') {
      const evidence = { jobId: this.req.jobId, ticket: signed, ...(failure.evidence as object) };
      for (const agentId of blamed) {
        work.push(deps.store.adjustReputation(agentId, -deps.config.badAttestationPenalty, 'bad_attestation', evidence, now));
        // A signed wrong attestation is fraud evidence: open a dispute (settled by re-execution).
        if ((failure.evidence as { provable?: boolean }).provable) {
          work.push(deps.store.openDispute({ jobId: this.req.jobId, agentId, reason: 'bad_attestation', evidence, at: now }));
        }
      }
    }
    deps.waitUntil(Promise.all(work));
  }

  private sendCancel(route: ScoredRoute, signed: SignedTicket, hash: string): void {
    const { deps } = this;
    const head = route.hops[0]!;
    const work = (async () => {
      const base: Omit<CancelRequest, 'signature'> = { jobId: signed.ticket.jobId, ticketHash: hash, issuedAt: deps.clock.now() };
      const signature = await signBytes(deps.signingKey.privateKey, utf8(cancelMessage(base)));
      const res = await deps.transport(new URL(`/v1/jobs/${encodeURIComponent(base.jobId)}/cancel`, head.endpoint).toString(), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...base, signature }),
        signal: AbortSignal.timeout(5_000),
      });
      await res.body?.cancel().catch(() => undefined);
    })().catch(() => undefined);
    deps.waitUntil(work);
  }

  private recordFinish(): void {
    if (this.recorded) return;
    this.recorded = true;
    const { deps, req } = this;
    const reason = this.finishReason;
    const status = reason === 'stop' || reason === 'length' ? 'completed' : reason === 'cancelled' ? 'cancelled' : 'failed';
    const cost = status === 'failed' ? 0 : this.costMicroUsd();
    if (cost > 0) {
      // The cached key record sees the spend at once; the registry through waitUntil.
      req.auth.key.spentMicroUsd += cost;
      deps.waitUntil(deps.store.chargeApiKey(req.auth.apiKeyId, cost));
    }
    const finish = {
      id: req.jobId,
      status,
      finishReason: reason,
      attempts: this.attempts,
      tokenIds: this.tokens,
      promptTokens: req.promptIds.length,
      completionTokens: this.tokens.length,
      costMicroUsd: cost,
      finishedAt: deps.clock.now(),
    } as const;
    // After the start record, whatever became of it.
    this.record = this.startRecord.catch(() => undefined).then(() => deps.store.recordJobFinish(finish));
    deps.waitUntil(this.record);
    if (status === 'completed' && deps.checks?.key) {
      // Sampled re-execution check, once the job row (with its attestation chain) is written.
      const job = { jobId: req.jobId, modelId: req.model.id, numLayers: req.model.numLayers, promptIds: req.promptIds, tokenIds: [...this.tokens], attempts: this.attempts };
      deps.waitUntil(this.record.then(() => checkFinishedJob(deps, job)));
    }
  }

  /**
   * Waits (bounded) until the job record with its attestation chain is written, so a client
   * that fetches /v1/jobs/:id/attestation right after the answer finds it.
   */
  async persisted(timeoutMs = 2_000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.record.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }
}
