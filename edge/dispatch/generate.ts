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
 * never on the response path. The parts: one attempt (attempt.ts), what a failure costs whom and
 * the cancel (blame.ts), observations and the job's end (job-record.ts).
 *
 * @example
 * const gen = new Generation(deps, request);
 * await gen.prepare();                    // throws ApiError (404, 503) before any byte is sent
 * for await (const ev of gen.run()) { if (ev.type === 'tokens') send(ev.ids); }
 */
import { ApiError, type ErrorCode } from '../../protocol/errors.js';
import type { SamplingParams } from '../../protocol/ticket.js';
import type { AttestationSummary, RouteSummary } from '../../protocol/api.js';
import type { EdgeDeps, AuthContext } from '../deps.js';
import type { JobAttemptRecord, ModelRecord, RouteCandidate } from '../../db/registry-contract.js';
import { planRoutes, withoutAgent, type RoutePrefs } from '../routing/plan.js';
import type { ClientLocation, ScoredRoute } from '../routing/score.js';
import { loadCandidates } from '../routing/candidates.js';
import { issueTicket } from './ticket.js';
import { AttemptFailure } from './attempt-failure.js';
import { streamAttempt } from './attempt.js';
import { blameAttempt, sendCancel } from './blame.js';
import { observeSuccess, recordJobEnd, type AttemptTiming } from './job-record.js';
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
  private timing: AttemptTiming = { startedAt: 0, firstTokenAt: null, tokens: 0, observed: false };
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
          const attemptRun = streamAttempt({
            deps,
            req,
            route,
            signed,
            hash,
            attempt,
            ctl,
            prefixIds: this.tokens,
            onStart: (startedAt) => (this.timing = { startedAt, firstTokenAt: null, tokens: 0, observed: false }),
            onChunk: ({ lastHash, tokens, at }) => {
              this.chunkCount++;
              this.current!.chainHead = lastHash;
              this.timing.firstTokenAt ??= at;
              this.timing.tokens += tokens;
            },
          });
          for await (const ev of attemptRun) {
            if (ev.type === 'done') {
              attempt.outcome = 'completed';
              ended = true;
              this.finishReason = ev.reason;
              consumerStopped = false;
              observeSuccess(deps, req.model, route, this.timing);
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
              sendCancel(deps, route, signed, hash);
              observeSuccess(deps, req.model, route, this.timing);
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
            sendCancel(deps, route, signed, hash);
            return;
          }
          if (!(err instanceof AttemptFailure)) throw err;
          ended = true;
          attempt.failure = `${err.kind}: ${err.message}`;
          this.lastFailure = err;
          blameAttempt(deps, { jobId: req.jobId, modelId: req.model.id, route, failure: err, signed, excluded: this.excluded, candidates: this.candidates });
          sendCancel(deps, route, signed, hash);
          if (!req.prefs.allow_fallbacks) throw this.finalError();
        } finally {
          req.signal.removeEventListener('abort', onAbort);
          if (!ended && attempt.outcome === 'failed') {
            // The consumer returned early (stop string, client gone): cancel the agents' work.
            // A stop string is a complete answer; anything else is a cancellation.
            attempt.outcome = this.finishReason === 'stop' || this.finishReason === 'length' ? 'completed' : 'cancelled';
            sendCancel(deps, route, signed, hash);
          }
          if (attempt.outcome !== 'failed') observeSuccess(deps, req.model, route, this.timing);
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

  private recordFinish(): void {
    if (this.recorded) return;
    this.recorded = true;
    this.record = recordJobEnd(this.deps, { req: this.req, reason: this.finishReason, attempts: this.attempts, tokens: this.tokens, costMicroUsd: () => this.costMicroUsd(), startRecord: this.startRecord });
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
