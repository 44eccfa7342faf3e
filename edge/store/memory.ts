/**
 * In-memory `RegistryStore`: the test double for unit tests and the edge bench. Same semantics
 * as the Postgres store (bounded lists, atomic heartbeat seq, EWMA folding), no persistence.
 *
 * @example
 * const store = createMemoryStore();
 * const pool = await store.createPool({ ownerAccountId: 'acct', name: 'p', region: 'eu-west' });
 */
import {
  EWMA_ALPHA,
  StoreConflictError,
  type AgentRecord,
  type ApiKeyRecord,
  type CandidateQuery,
  type CheckRecordInput,
  type SettleDisputeInput,
  type CreateApiKey,
  type CreatePoolInput,
  type DisputeInput,
  type DisputeRecord,
  type DisputeRetry,
  type DisputeCheck,
  type DisputeRetryNote,
  type RouteBlock,
  type RouteBlockInput,
  type EdgeKeyRecord,
  type HeartbeatInput,
  type HeartbeatResult,
  type JobDisputeRecord,
  type JobFinishInput,
  type JobRecord,
  type JobStartInput,
  type ModelRecord,
  type ModelSummary,
  type Observation,
  type PoolRecord,
  type PublicPool,
  type RefundJobInput,
  type RegisterAgentInput,
  type RegistryStore,
  type RouteCandidate,
  type SlashInput,
  type UpdateAgentInput,
  type UsageWindow,
} from '../../db/registry-contract.js';
import type { Manifest } from '../../protocol/manifest.js';
import { createMemoryModelFiles } from './memory-model-files.js';

interface AgentFigures {
  ttftMsEwma: number | null;
  perTokenMsEwma: number | null;
  failureRateEwma: number;
  observations: number;
}

export interface LedgerEntry {
  kind: 'stake' | 'slash' | 'reputation' | 'refund';
  poolId?: string;
  agentId?: string;
  /** `refund` entries: the client account and its job. */
  accountId?: string;
  jobId?: string;
  amount: number;
  reason: string;
  evidence?: unknown;
  at: number;
}

export interface MemoryStore extends RegistryStore {
  /** Read-only views for tests. */
  readonly ledger: readonly LedgerEntry[];
  readonly observations: readonly Observation[];
  readonly disputes: readonly MemoryDispute[];
  /** Route blocks not yet expired by `expireRouteBlocks`. */
  readonly routeBlocks: readonly RouteBlock[];
  /** Check history per job id (recordCheck entries, in order). */
  readonly jobChecks: ReadonlyMap<string, readonly unknown[]>;
  /** Check counters per agent id. */
  checkCounters(agentId: string): { jobsChecked: number; checksPassed: number };
  readonly cooldowns: ReadonlyArray<{ agentId: string; until: number; reason: string }>;
  /** Sets live figures directly (tests and benches). */
  setFigures(agentId: string, figures: Partial<AgentFigures & { queueDepth: number; reputation: number; lastHeartbeatAt: number | null }>): void;
  /** Inserts an agent without the owner flow (benches seeding thousands of agents). */
  seedAgent(agent: Omit<AgentRecord, 'createdAt' | 'lastHeartbeatSeq'> & Partial<AgentFigures>): void;
}

/** A dispute as the memory store keeps it (the Postgres row's columns). */
export interface MemoryDispute extends Omit<DisputeRecord, 'firstCheckerId' | 'check' | 'retryAfter'> {
  /** [first checker, ...third checkers that answered]. */
  checkerAgentIds: string[];
  check: DisputeCheck | null;
  retryAfter: number | null;
  retryNote: DisputeRetryNote | null;
  resolvedAt?: number;
  settlement?: unknown;
}

let counter = 0;
const newId = (kind: string) => `${kind}_${(++counter).toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
const clone = <T>(v: T): T => structuredClone(v);

export function createMemoryStore(): MemoryStore {
  const keys = new Map<string, ApiKeyRecord>();
  const usage = new Map<string, UsageWindow>();
  const models = new Map<string, ModelRecord>();
  const pools = new Map<string, PoolRecord>();
  const agents = new Map<string, AgentRecord>();
  const figures = new Map<string, AgentFigures>();
  /** modelId -> agent ids with a span of it (the index a real store keeps). */
  const byModel = new Map<string, Set<string>>();
  const jobs = new Map<string, JobRecord>();
  const edgeKeys = new Map<string, EdgeKeyRecord>();
  const ledger: LedgerEntry[] = [];
  const observations: Observation[] = [];
  const disputes: MemoryDispute[] = [];
  const routeBlocks: RouteBlock[] = [];
  const openDisputeAgainst = (agentId: string) => disputes.some((d) => d.agentId === agentId && d.status === 'open');
  const activeBlockOn = (agentId: string, at: number) => routeBlocks.some((b) => b.until > at && b.route.includes(agentId));
  const cooldowns: Array<{ agentId: string; until: number; reason: string }> = [];

  const index = (agent: AgentRecord, add: boolean) => {
    for (const span of agent.spans) {
      let set = byModel.get(span.modelId);
      if (!set) byModel.set(span.modelId, (set = new Set()));
      if (add) set.add(agent.id);
      else set.delete(agent.id);
    }
  };
  const counters = new Map<string, { jobsChecked: number; checksPassed: number }>();
  const countersOf = (id: string) => {
    let c = counters.get(id);
    if (!c) counters.set(id, (c = { jobsChecked: 0, checksPassed: 0 }));
    return c;
  };
  const jobChecks = new Map<string, unknown[]>();
  const figuresOf = (id: string): AgentFigures => {
    let f = figures.get(id);
    if (!f) figures.set(id, (f = { ttftMsEwma: null, perTokenMsEwma: null, failureRateEwma: 0, observations: 0 }));
    return f;
  };
  const fold = (prev: number | null, x: number) => (prev === null ? x : prev + EWMA_ALPHA * (x - prev));

  const store: MemoryStore = {
    ledger,
    observations,
    disputes,
    routeBlocks,
    cooldowns,
    jobChecks,
    checkCounters: (id) => ({ ...countersOf(id) }),

    setFigures(agentId, f) {
      const fig = figuresOf(agentId);
      const agent = agents.get(agentId);
      for (const [k, v] of Object.entries(f)) {
        if (k === 'queueDepth' || k === 'reputation' || k === 'lastHeartbeatAt') {
          if (agent) (agent as unknown as Record<string, unknown>)[k] = v;
        } else (fig as unknown as Record<string, unknown>)[k] = v;
      }
    },

    seedAgent(a) {
      const { ttftMsEwma, perTokenMsEwma, failureRateEwma, observations: obs, ...rest } = a;
      const agent: AgentRecord = { ...rest, createdAt: 0, lastHeartbeatSeq: -1 };
      agents.set(agent.id, agent);
      index(agent, true);
      figures.set(agent.id, {
        ttftMsEwma: ttftMsEwma ?? null,
        perTokenMsEwma: perTokenMsEwma ?? null,
        failureRateEwma: failureRateEwma ?? 0,
        observations: obs ?? 0,
      });
    },

    async getApiKeyByPrefix(prefix) {
      const k = keys.get(prefix);
      return k ? clone(k) : null;
    },
    async createApiKey(input: CreateApiKey) {
      if (keys.has(input.prefix)) throw new StoreConflictError('api key prefix already exists');
      const rec: ApiKeyRecord = {
        id: newId('key'),
        accountId: input.accountId,
        prefix: input.prefix,
        hash: input.hash,
        scopes: [...input.scopes],
        revokedAt: null,
        expiresAt: input.expiresAt ?? null,
        requestsPerMinute: input.requestsPerMinute ?? null,
        tokensPerMinute: input.tokensPerMinute ?? null,
        budgetMicroUsd: input.budgetMicroUsd ?? null,
        spentMicroUsd: 0,
        lastUsedAt: null,
      };
      keys.set(rec.prefix, rec);
      return clone(rec);
    },
    async revokeApiKey(id, at) {
      for (const k of keys.values()) if (k.id === id) k.revokedAt = at;
    },
    async touchApiKey(id, at) {
      for (const k of keys.values()) if (k.id === id) k.lastUsedAt = at;
    },
    async addUsage(apiKeyId, windowStart, delta) {
      const key = `${apiKeyId}:${windowStart}`;
      const cur = usage.get(key) ?? { requests: 0, tokens: 0 };
      const next = { requests: cur.requests + delta.requests, tokens: cur.tokens + delta.tokens };
      usage.set(key, next);
      return { ...next };
    },
    async chargeApiKey(apiKeyId, cost) {
      for (const k of keys.values()) if (k.id === apiKeyId) k.spentMicroUsd += cost;
    },

    async listModels({ heartbeatAfter, limit }) {
      const out: ModelSummary[] = [];
      for (const m of models.values()) {
        if (out.length >= limit) break;
        let n = 0;
        for (const id of byModel.get(m.id) ?? []) {
          const a = agents.get(id)!;
          if (a.status === 'active' && (a.lastHeartbeatAt ?? -Infinity) >= heartbeatAfter) n++;
        }
        out.push({ ...clone(m), agents: n });
      }
      return out;
    },
    async getModel(idOrName) {
      const m = models.get(idOrName) ?? [...models.values()].find((x) => x.name === idOrName);
      return m ? clone(m) : null;
    },
    async publishModel({ manifest, id, publishedBy, at }: { manifest: Manifest; id: string; publishedBy: string | null; at: number }) {
      const existing = models.get(id);
      if (existing) return clone(existing);
      if ([...models.values()].some((m) => m.name === manifest.name)) {
        throw new StoreConflictError(`a model named ${manifest.name} already exists`);
      }
      const rec: ModelRecord = {
        id,
        name: manifest.name,
        manifest: clone(manifest),
        numLayers: manifest.architecture.numLayers,
        dtype: manifest.dtype,
        publishedBy,
        createdAt: at,
      };
      models.set(id, rec);
      return clone(rec);
    },

    ...createMemoryModelFiles((id) => models.has(id)),

    async listRouteCandidates(modelId, q: CandidateQuery) {
      const inRegion: RouteCandidate[] = [];
      const others: RouteCandidate[] = [];
      for (const id of byModel.get(modelId) ?? []) {
        const a = agents.get(id)!;
        if (a.status !== 'active' || (a.lastHeartbeatAt ?? -Infinity) < q.heartbeatAfter) continue;
        const pool = pools.get(a.poolId);
        if (!pool || pool.status !== 'active') continue;
        const preferred = !!q.region && pool.region === q.region;
        // Bounded like the indexed query: stop collecting a class once it alone fills the limit.
        if ((preferred ? inRegion : others).length >= q.limit) continue;
        const f = figuresOf(id);
        for (const span of a.spans) {
          if (span.modelId !== modelId) continue;
          const c: RouteCandidate = {
            agentId: a.id,
            poolId: a.poolId,
            ownerAccountId: a.ownerAccountId,
            region: pool.region,
            latitude: pool.latitude,
            longitude: pool.longitude,
            endpoint: a.endpoint,
            publicKey: a.publicKey,
            layers: [span.layers[0], span.layers[1]],
            priceMicroUsdPerMTok: a.priceMicroUsdPerMTok,
            ttftMsEwma: f.ttftMsEwma,
            perTokenMsEwma: f.perTokenMsEwma,
            failureRateEwma: f.failureRateEwma,
            observations: f.observations,
            queueDepth: a.queueDepth,
            reputation: a.reputation,
            status: a.status,
            cooldownUntil: a.cooldownUntil,
            probation: a.probation,
            stakeMicroUsd: pool.stakeMicroUsd,
            lastHeartbeatAt: a.lastHeartbeatAt,
            checksPassed: counters.get(id)?.checksPassed ?? 0,
            inDispute: openDisputeAgainst(id),
            blockedRoutes: routeBlocks.filter((b) => b.modelId === modelId && b.route[0] === id && b.until > (q.at ?? Date.now())).map((b) => [...b.route]),
            held: routeBlocks.some((b) => b.holdUntil !== undefined && b.holdUntil > (q.at ?? Date.now()) && b.route.includes(id)),
          };
          (preferred ? inRegion : others).push(c);
        }
      }
      return [...inRegion, ...others].slice(0, q.limit);
    },
    async getAgentKeys(ids) {
      const out = new Map<string, string>();
      for (const id of ids) {
        const a = agents.get(id);
        if (a && a.status !== 'deregistered') out.set(id, a.publicKey);
      }
      return out;
    },
    async recordObservations(obs) {
      for (const o of obs) {
        observations.push(clone(o));
        const f = figuresOf(o.agentId);
        if (o.ttftMs !== undefined) f.ttftMsEwma = fold(f.ttftMsEwma, o.ttftMs);
        if (o.perTokenMs !== undefined) f.perTokenMsEwma = fold(f.perTokenMsEwma, o.perTokenMs);
        f.failureRateEwma = fold(f.failureRateEwma, o.ok ? 0 : 1);
        f.observations++;
      }
    },
    async setCooldown(agentId, until, reason) {
      const a = agents.get(agentId);
      if (a && (a.cooldownUntil === null || a.cooldownUntil <= until)) {
        // The later cooldown wins, and its reason with it.
        a.cooldownUntil = until;
        a.cooldownReason = reason;
      }
      cooldowns.push({ agentId, until, reason });
    },

    async createPool(input: CreatePoolInput) {
      const rec: PoolRecord = {
        id: newId('pool'),
        ownerAccountId: input.ownerAccountId,
        name: input.name,
        region: input.region,
        latitude: input.latitude ?? null,
        longitude: input.longitude ?? null,
        stakeMicroUsd: 0,
        status: 'active',
        createdAt: Date.now(),
      };
      pools.set(rec.id, rec);
      return clone(rec);
    },
    async listPools(owner, limit) {
      return [...pools.values()].filter((p) => p.ownerAccountId === owner).slice(0, limit).map(clone);
    },
    async getPool(id) {
      const p = pools.get(id);
      return p ? clone(p) : null;
    },
    async listPublicPools({ limit, cursor, region }) {
      const sorted = [...pools.values()].filter((p) => p.status === 'active' && (!region || p.region === region)).sort((a, b) => (a.id < b.id ? -1 : 1));
      const page = sorted.filter((p) => !cursor || p.id > cursor).slice(0, limit);
      return page.map((p): PublicPool => ({
        id: p.id,
        name: p.name,
        region: p.region,
        agents: [...agents.values()]
          .filter((a) => a.poolId === p.id && a.status !== 'deregistered')
          .slice(0, 1000)
          .map((a) => {
            const f = figuresOf(a.id);
            return {
              id: a.id,
              publicKey: a.publicKey,
              status: a.status,
              priceMicroUsdPerMTok: a.priceMicroUsdPerMTok,
              reputation: a.reputation,
              spans: clone(a.spans),
              lastHeartbeatAt: a.lastHeartbeatAt,
              queueDepth: a.lastHeartbeatAt === null ? null : a.queueDepth,
              ttftMsEwma: f.ttftMsEwma,
              perTokenMsEwma: f.perTokenMsEwma,
            };
          }),
      }));
    },
    async registerAgent(input: RegisterAgentInput, at) {
      if ([...agents.values()].some((a) => a.publicKey === input.publicKey && a.status !== 'deregistered')) {
        throw new StoreConflictError('an agent with this public key is already registered');
      }
      const rec: AgentRecord = {
        id: newId('agent'),
        poolId: input.poolId,
        ownerAccountId: input.ownerAccountId,
        endpoint: input.endpoint,
        publicKey: input.publicKey,
        hardware: clone(input.hardware),
        priceMicroUsdPerMTok: input.priceMicroUsdPerMTok,
        throughputTokensPerS: input.throughputTokensPerS,
        spans: clone(input.spans),
        status: 'active',
        reputation: 0.5,
        cooldownUntil: null,
        cooldownReason: null,
        probation: false,
        lastHeartbeatAt: null,
        lastHeartbeatSeq: -1,
        queueDepth: 0,
        load: 0,
        createdAt: at,
      };
      agents.set(rec.id, rec);
      index(rec, true);
      return clone(rec);
    },
    async getAgent(id) {
      const a = agents.get(id);
      return a ? clone(a) : null;
    },
    async updateAgent(id, patch: UpdateAgentInput) {
      const a = agents.get(id);
      if (!a || a.status === 'deregistered') return null;
      if (patch.spans) {
        index(a, false);
        a.spans = clone(patch.spans);
        index(a, true);
      }
      if (patch.priceMicroUsdPerMTok !== undefined) a.priceMicroUsdPerMTok = patch.priceMicroUsdPerMTok;
      if (patch.endpoint !== undefined) a.endpoint = patch.endpoint;
      if (patch.status !== undefined && a.status !== 'slashed') a.status = patch.status;
      return clone(a);
    },
    async deregisterAgent(id) {
      const a = agents.get(id);
      if (!a || a.status === 'deregistered') return false;
      a.status = 'deregistered';
      index(a, false);
      return true;
    },
    async applyHeartbeat(hb: HeartbeatInput): Promise<HeartbeatResult> {
      const a = agents.get(hb.agentId);
      if (!a || a.status === 'deregistered') return 'unknown_agent';
      if (hb.seq <= a.lastHeartbeatSeq) return 'replay';
      a.lastHeartbeatSeq = hb.seq;
      a.lastHeartbeatAt = hb.receivedAt;
      a.queueDepth = hb.queueDepth;
      a.load = hb.load;
      return 'ok';
    },

    async recordJobStart(input: JobStartInput) {
      jobs.set(input.id, {
        id: input.id,
        accountId: input.accountId,
        apiKeyId: input.apiKeyId,
        modelId: input.modelId,
        status: 'running',
        finishReason: null,
        route: [...input.route],
        attempts: [],
        tokenIds: [],
        promptTokens: input.promptTokens,
        completionTokens: 0,
        costMicroUsd: 0,
        createdAt: input.createdAt,
        finishedAt: null,
      });
    },
    async failAbandonedJobs({ startedBefore, at, limit }) {
      const stale = [...jobs.values()].filter((j) => j.status === 'running' && j.createdAt < startedBefore).sort((a, b) => a.createdAt - b.createdAt).slice(0, limit);
      for (const j of stale) Object.assign(j, { status: 'failed', finishReason: 'error', costMicroUsd: 0, finishedAt: at });
      return stale.map((j) => j.id);
    },
    async recordJobFinish(input: JobFinishInput) {
      const j = jobs.get(input.id);
      if (!j) return;
      Object.assign(j, {
        status: input.status,
        finishReason: input.finishReason,
        attempts: clone(input.attempts),
        tokenIds: [...input.tokenIds],
        promptTokens: input.promptTokens,
        completionTokens: input.completionTokens,
        costMicroUsd: input.costMicroUsd,
        finishedAt: input.finishedAt,
      });
    },
    async getJob(id, accountId) {
      const j = jobs.get(id);
      return j && j.accountId === accountId ? { ...clone(j), checks: clone(jobChecks.get(id) ?? []) } : null;
    },
    async refundJob({ jobId, reason, evidence, at }: RefundJobInput) {
      const j = jobs.get(jobId);
      if (!j || j.finishedAt === null || j.refund) return null;
      const amount = j.costMicroUsd;
      j.refund = { amountMicroUsd: amount, reason, at };
      for (const k of keys.values()) if (k.id === j.apiKeyId) k.spentMicroUsd = Math.max(0, k.spentMicroUsd - amount);
      if (amount > 0) ledger.push({ kind: 'refund', accountId: j.accountId, jobId, amount, reason, evidence: clone(evidence), at });
      return { jobId, accountId: j.accountId, apiKeyId: j.apiKeyId, amountMicroUsd: amount, reason, at };
    },

    async addStake(poolId, amount, reason, at) {
      const p = pools.get(poolId);
      if (p) p.stakeMicroUsd += amount;
      ledger.push({ kind: 'stake', poolId, amount, reason, at });
    },
    async slash(input: SlashInput) {
      const a = agents.get(input.agentId);
      if (!a) return;
      const p = pools.get(a.poolId);
      const amount = Math.min(input.amountMicroUsd, p?.stakeMicroUsd ?? 0);
      if (p) p.stakeMicroUsd -= amount;
      a.status = 'slashed';
      a.reputation = 0;
      ledger.push({ kind: 'slash', poolId: a.poolId, agentId: a.id, amount, reason: input.reason, evidence: clone(input.evidence), at: input.at });
    },
    async adjustReputation(agentId, delta, reason, evidence, at) {
      const a = agents.get(agentId);
      if (!a) return;
      a.reputation = Math.min(1, Math.max(0, a.reputation + delta));
      ledger.push({ kind: 'reputation', agentId, amount: delta, reason, evidence: clone(evidence), at });
    },
    async openDispute(input: DisputeInput) {
      const { firstCheckerId, check, retryAfter, ...rest } = clone(input);
      const rec: MemoryDispute = {
        ...rest,
        id: newId('dispute'),
        status: 'open',
        checkerAgentIds: firstCheckerId ? [firstCheckerId] : [],
        check: check ?? null,
        retryAfter: retryAfter ?? null,
        retryNote: null,
      };
      disputes.push(rec);
      return { ...clone(input), id: rec.id, status: rec.status };
    },
    async listJobDisputes(jobId, limit) {
      return disputes
        .filter((d) => d.jobId === jobId)
        .slice(0, limit)
        .map((d): JobDisputeRecord => {
          const x = d as DisputeRecord & { resolvedAt?: number; settlement?: { state?: unknown } };
          const status = d.status === 'rejected' ? (x.settlement?.state === 'dismissed' ? 'dismissed' : 'voided') : d.status;
          return { id: d.id, agentId: d.agentId, status, openedAt: d.at, resolvedAt: x.resolvedAt ?? null };
        });
    },
    async settleDispute(id: string, input: SettleDisputeInput) {
      const d = disputes.find((x) => x.id === id);
      if (!d || d.status !== 'open') return;
      d.status = input.status;
      d.checkerAgentIds = [...input.checkerAgentIds];
      d.resolvedAt = input.at;
      d.settlement = clone(input.evidence);
      d.check = null;
      d.retryAfter = null;
    },
    async voidStaleDisputes({ openedBefore, at, limit }: { openedBefore: number; at: number; limit: number }) {
      const stale = disputes.filter((d) => d.status === 'open' && d.at < openedBefore).slice(0, limit);
      for (const d of stale) {
        d.status = 'rejected';
        d.resolvedAt = at;
        d.settlement = { state: 'voided', reason: 'timeout' };
        d.check = null;
        d.retryAfter = null;
      }
      for (const agentId of new Set(stale.map((d) => d.agentId))) {
        const a = agents.get(agentId);
        if (a && !openDisputeAgainst(agentId)) a.probation = false;
      }
      return stale.map((d) => ({ id: d.id, agentId: d.agentId, jobId: d.jobId }));
    },
    async recordDisputeCheck(id, { checkerAgentId, verdict }) {
      const d = disputes.find((x) => x.id === id);
      if (!d || d.status !== 'open') return;
      d.checkerAgentIds.push(checkerAgentId);
      const evidence = (d.evidence && typeof d.evidence === 'object' ? d.evidence : {}) as { verdicts?: unknown[] };
      d.evidence = { ...evidence, verdicts: [...(Array.isArray(evidence.verdicts) ? evidence.verdicts : []), clone(verdict)] };
    },
    async claimDisputeRetries({ at, retryMs, limit }) {
      const due = disputes
        .filter((d) => d.status === 'open' && d.retryAfter !== null && d.retryAfter <= at)
        .sort((a, b) => a.retryAfter! - b.retryAfter! || a.at - b.at)
        .slice(0, limit);
      return due.map((d): DisputeRetry => {
        d.retryAfter = at + retryMs;
        const verdicts = (d.evidence as { verdicts?: unknown } | null)?.verdicts;
        return { id: d.id, jobId: d.jobId, agentId: d.agentId, reason: d.reason, openedAt: d.at, checkerAgentIds: [...d.checkerAgentIds], verdicts: Array.isArray(verdicts) ? clone(verdicts) : [], check: clone(d.check) };
      });
    },
    async noteDisputeRetry(id, note) {
      const d = disputes.find((x) => x.id === id);
      if (d && d.status === 'open') d.retryNote = clone(note);
    },
    async setProbation(agentId: string, on: boolean) {
      const a = agents.get(agentId);
      if (a) a.probation = on;
    },
    async blockRoute(input: RouteBlockInput) {
      routeBlocks.push({ ...clone(input), id: newId('block') });
    },
    async releaseRouteHold({ jobId, route, at }) {
      const key = route.join('>');
      for (const b of routeBlocks) if (b.jobId === jobId && b.route.join('>') === key && b.holdUntil !== undefined && b.holdUntil > at) b.holdUntil = at;
    },
    async liftRouteBlocks({ jobId, route, at }) {
      const key = route.join('>');
      for (const b of routeBlocks) {
        if (b.jobId !== jobId || b.route.join('>') !== key) continue;
        if (b.until > at) b.until = at;
        if (b.holdUntil !== undefined && b.holdUntil > at) b.holdUntil = at;
      }
    },
    async expireRouteBlocks({ at, limit }) {
      const ended = routeBlocks.filter((b) => b.until <= at).slice(0, limit);
      for (const b of ended) routeBlocks.splice(routeBlocks.indexOf(b), 1);
      for (const id of new Set(ended.flatMap((b) => b.route))) {
        const a = agents.get(id);
        if (a && !openDisputeAgainst(id) && !activeBlockOn(id, at)) a.probation = false;
      }
      return ended.map(clone);
    },
    async recordCheck(input: CheckRecordInput) {
      const j = jobs.get(input.jobId);
      if (j) j.checkStatus = input.status;
      const list = jobChecks.get(input.jobId) ?? [];
      list.push(clone(input.entry));
      jobChecks.set(input.jobId, list);
      for (const id of new Set(input.checkedAgentIds ?? [])) countersOf(id).jobsChecked++;
      for (const id of new Set(input.passedAgentIds ?? [])) countersOf(id).checksPassed++;
    },

    async listEdgeKeys() {
      return [...edgeKeys.values()].filter((k) => k.retiredAt === null).map(clone);
    },
    async upsertEdgeKey({ id, publicKey, at }) {
      if (!edgeKeys.has(id)) edgeKeys.set(id, { id, publicKey, createdAt: at, retiredAt: null });
    },
  };
  return store;
}
