/**
 * `RegistryStore` over Postgres (drizzle + postgres.js): the registry of record for the edge.
 * No Node-only import: it runs inside workerd (Hyperdrive or a direct URL) as well as in Node.
 *
 * Every list is bounded. The routing query walks `agent_spans_model_idx` for the model and joins
 * agents and pools by primary key, so its cost follows the model's span count and `limit`, never
 * the size of the agents table.
 *
 * @example
 * const sql = postgres(url, { max: 1, fetch_types: false });
 * const store = createRegistryStore(sql);
 * const candidates = await store.listRouteCandidates(modelId, { heartbeatAfter: Date.now() - 30_000, limit: 256, region: 'eu-west' });
 */
import { and, asc, eq, gt, gte, inArray, isNotNull, isNull, lt, lte, ne, or, sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import type { Sql } from 'postgres';
import {
  EWMA_ALPHA,
  StoreConflictError,
  type AgentRecord,
  type AgentStatus,
  type ApiKeyRecord,
  type CandidateQuery,
  type DisputeRecord,
  type DisputeRetry,
  type RouteBlock,
  type JobRecord,
  type ModelRecord,
  type PoolRecord,
  type PublicPool,
  type RegistryStore,
  type RouteCandidate,
  type SpanRecord,
} from './registry-contract.js';
import { drizzleOver, type RegistryDb } from './client.js';
import { modelFileStore } from './model-files-store.js';
import {
  agents,
  agentSpans,
  apiKeys,
  disputes,
  edgeKeys,
  routeBlocks,
  jobs,
  ledgerEntries,
  models,
  observations,
  pools,
  usage,
} from './schema/index.js';

/** Agents listed per pool by `listPublicPools`. */
const PUBLIC_AGENTS_PER_POOL = 1000;
/** Upper bound on any caller-supplied `limit`. */
const MAX_LIMIT = 10_000;

const ms = (d: Date | null): number | null => (d === null ? null : d.getTime());
const date = (t: number): Date => new Date(t);
const bound = (limit: number) => Math.max(0, Math.min(MAX_LIMIT, Math.floor(limit)));

/** postgres.js error code, also when drizzle wraps the error (`DrizzleQueryError.cause`). */
function pgCode(err: unknown): string | undefined {
  for (let e: unknown = err, i = 0; e && i < 4; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}
const UNIQUE_VIOLATION = '23505';

async function conflictAs<T>(message: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (pgCode(err) === UNIQUE_VIOLATION) throw new StoreConflictError(message);
    throw err;
  }
}

type ApiKeyRow = typeof apiKeys.$inferSelect;
function toApiKey(r: ApiKeyRow): ApiKeyRecord {
  return {
    id: r.id,
    accountId: r.accountId,
    prefix: r.prefix,
    hash: r.hash,
    scopes: r.scopes,
    revokedAt: ms(r.revokedAt),
    expiresAt: ms(r.expiresAt),
    requestsPerMinute: r.requestsPerMinute,
    tokensPerMinute: r.tokensPerMinute,
    budgetMicroUsd: r.budgetMicroUsd,
    spentMicroUsd: r.spentMicroUsd,
    lastUsedAt: ms(r.lastUsedAt),
  };
}

type ModelRow = typeof models.$inferSelect;
function toModel(r: ModelRow): ModelRecord {
  return {
    id: r.id,
    name: r.name,
    manifest: r.manifest,
    numLayers: r.numLayers,
    dtype: r.dtype,
    publishedBy: r.publishedBy,
    createdAt: r.createdAt.getTime(),
  };
}

type PoolRow = typeof pools.$inferSelect;
function toPool(r: PoolRow): PoolRecord {
  return {
    id: r.id,
    ownerAccountId: r.ownerAccountId,
    name: r.name,
    region: r.region,
    latitude: r.latitude,
    longitude: r.longitude,
    stakeMicroUsd: r.stakeMicroUsd,
    status: r.status,
    createdAt: r.createdAt.getTime(),
  };
}

type AgentRow = typeof agents.$inferSelect;
function toAgent(r: AgentRow, ownerAccountId: string, spans: SpanRecord[]): AgentRecord {
  return {
    id: r.id,
    poolId: r.poolId,
    ownerAccountId,
    endpoint: r.endpoint,
    publicKey: r.publicKey,
    hardware: r.hardware,
    priceMicroUsdPerMTok: r.priceMicroUsdPerMTok,
    throughputTokensPerS: r.throughputTokensPerS,
    spans,
    status: r.status,
    reputation: r.reputation,
    cooldownUntil: ms(r.cooldownUntil),
    cooldownReason: r.cooldownReason,
    probation: r.probation,
    lastHeartbeatAt: ms(r.lastHeartbeatAt),
    lastHeartbeatSeq: r.heartbeatSeq,
    queueDepth: r.queueDepth,
    load: r.load,
    createdAt: r.createdAt.getTime(),
  };
}

type JobRow = typeof jobs.$inferSelect;
function toJob(r: JobRow): JobRecord {
  return {
    id: r.id,
    accountId: r.accountId,
    apiKeyId: r.apiKeyId,
    modelId: r.modelId,
    status: r.status,
    finishReason: r.finishReason,
    route: r.route,
    attempts: r.attempts,
    tokenIds: r.tokenIds,
    promptTokens: r.promptTokens,
    completionTokens: r.completionTokens,
    costMicroUsd: r.costMicroUsd,
    createdAt: r.createdAt.getTime(),
    finishedAt: ms(r.finishedAt),
    checkStatus: r.checkStatus ?? null,
    checks: r.checks,
    refund: r.refundedAt === null ? null : { amountMicroUsd: r.refundedMicroUsd ?? 0, reason: r.refundReason ?? '', at: r.refundedAt.getTime() },
  };
}

/**
 * The routing candidates query (exported so tests can EXPLAIN exactly what the store runs).
 * With a region: that region's candidates (up to `limit`) first, then the others.
 *
 * Shape: walk the model's spans (`agent_spans_model_idx`) and, per span, fetch its agent by
 * primary key in a LATERAL subquery, then its pool. The subquery's `LIMIT 1` (one agent per
 * span anyway) keeps the planner from flattening it into a hash join that reads the whole
 * agents table: the work follows the model's span count and stops at `limit` live candidates.
 */
export function routeCandidatesQuery(db: RegistryDb, modelId: string, q: CandidateQuery) {
  const limit = bound(q.limit);
  const base = (rank: number, region?: SQL) => {
    const live = db
      .select({
        agentId: agents.id,
        poolId: agents.poolId,
        endpoint: agents.endpoint,
        publicKey: agents.publicKey,
        priceMicroUsdPerMTok: agents.priceMicroUsdPerMTok,
        ttftMsEwma: agents.ttftMsEwma,
        perTokenMsEwma: agents.perTokenMsEwma,
        failureRateEwma: agents.failureRateEwma,
        observations: agents.observations,
        queueDepth: agents.queueDepth,
        reputation: agents.reputation,
        status: agents.status,
        cooldownUntil: agents.cooldownUntil,
        probation: agents.probation,
        lastHeartbeatAt: agents.lastHeartbeatAt,
        checksPassed: agents.checksPassed,
        // Both by index: disputes_agent_idx, route_blocks_head_idx.
        // Spelled out: drizzle leaves columns unqualified inside a subquery's select list.
        inDispute: sql<boolean>`exists (select 1 from disputes d where d.agent_id = "agents"."id" and d.status = 'open')`.as('in_dispute'),
        blockedRoutes: sql<
          string[][] | null
        >`(select json_agg(b.route) from route_blocks b where b.head_agent_id = "agents"."id" and b.model_id = ${modelId} and b.until > ${new Date(q.at ?? Date.now()).toISOString()}::timestamptz)`.as('blocked_routes'),
        // Of any model: a hop suspected of cheating is suspect everywhere (route_blocks_hold_idx).
        held: sql<boolean>`exists (select 1 from route_blocks h where h.hold_until > ${new Date(q.at ?? Date.now()).toISOString()}::timestamptz and "agents"."id" = any(h.route))`.as('held'),
      })
      .from(agents)
      .where(and(eq(agents.id, agentSpans.agentId), eq(agents.status, 'active'), gte(agents.lastHeartbeatAt, date(q.heartbeatAfter))))
      .limit(1)
      .as('live');
    return db
      .select({
        ...live._.selectedFields,
        ownerAccountId: pools.ownerAccountId,
        region: pools.region,
        latitude: pools.latitude,
        longitude: pools.longitude,
        stakeMicroUsd: pools.stakeMicroUsd,
        layerStart: agentSpans.layerStart,
        layerEnd: agentSpans.layerEnd,
        rank: sql<number>`${rank}::int`.as('rank'),
      })
      .from(agentSpans)
      .innerJoinLateral(live, sql`true`)
      .innerJoin(pools, eq(pools.id, live.poolId))
      .where(and(eq(agentSpans.modelId, modelId), eq(pools.status, 'active'), region))
      .limit(limit);
  };
  if (!q.region) return base(0);
  return base(0, eq(pools.region, q.region))
    .unionAll(base(1, ne(pools.region, q.region)))
    .orderBy(sql`rank`)
    .limit(limit);
}

export interface RegistryStoreOptions {
  /** Agents listed per pool by `listPublicPools` (default PUBLIC_AGENTS_PER_POOL). */
  publicAgentsPerPool?: number;
}

export function createRegistryStore(client: Sql, options: RegistryStoreOptions = {}): RegistryStore {
  const db = drizzleOver(client);
  const agentsPerPool = Math.max(1, Math.floor(options.publicAgentsPerPool ?? PUBLIC_AGENTS_PER_POOL));

  const spansOf = async (ids: string[]): Promise<Map<string, SpanRecord[]>> => {
    const out = new Map<string, SpanRecord[]>();
    if (!ids.length) return out;
    const rows = await db
      .select()
      .from(agentSpans)
      .where(inArray(agentSpans.agentId, ids))
      .orderBy(asc(agentSpans.agentId), asc(agentSpans.modelId), asc(agentSpans.layerStart));
    for (const r of rows) {
      let list = out.get(r.agentId);
      if (!list) out.set(r.agentId, (list = []));
      list.push({ modelId: r.modelId, layers: [r.layerStart, r.layerEnd] });
    }
    return out;
  };

  const agentById = async (tx: RegistryDb, id: string): Promise<AgentRecord | null> => {
    const [row] = await tx
      .select({ agent: agents, owner: pools.ownerAccountId })
      .from(agents)
      .innerJoin(pools, eq(pools.id, agents.poolId))
      .where(eq(agents.id, id))
      .limit(1);
    if (!row) return null;
    const spans = await tx
      .select()
      .from(agentSpans)
      .where(eq(agentSpans.agentId, id))
      .orderBy(asc(agentSpans.modelId), asc(agentSpans.layerStart));
    return toAgent(
      row.agent,
      row.owner,
      spans.map((s) => ({ modelId: s.modelId, layers: [s.layerStart, s.layerEnd] })),
    );
  };

  const insertSpans = async (tx: RegistryDb, agentId: string, spans: SpanRecord[]) => {
    if (!spans.length) return;
    await tx
      .insert(agentSpans)
      .values(spans.map((s) => ({ agentId, modelId: s.modelId, layerStart: s.layers[0], layerEnd: s.layers[1] })))
      .onConflictDoNothing();
  };

  /** `ewma = ewma === null ? x : ewma + alpha * (x - ewma)`, in SQL. */
  const fold = (column: AnyPgColumn, x: number) =>
    sql`case when ${column} is null then ${x}::float8 else ${column} + ${EWMA_ALPHA}::float8 * (${x}::float8 - ${column}) end`;

  const store: RegistryStore = {
    // ------------------------------------------------------------ API keys
    async getApiKeyByPrefix(prefix) {
      const [row] = await db.select().from(apiKeys).where(eq(apiKeys.prefix, prefix)).limit(1);
      return row ? toApiKey(row) : null;
    },
    async createApiKey(input) {
      const [row] = await conflictAs('api key prefix already exists', () =>
        db
          .insert(apiKeys)
          .values({
            accountId: input.accountId,
            prefix: input.prefix,
            hash: input.hash,
            scopes: [...new Set(input.scopes)],
            requestsPerMinute: input.requestsPerMinute ?? null,
            tokensPerMinute: input.tokensPerMinute ?? null,
            budgetMicroUsd: input.budgetMicroUsd ?? null,
            expiresAt: input.expiresAt == null ? null : date(input.expiresAt),
          })
          .returning(),
      );
      return toApiKey(row!);
    },
    async revokeApiKey(id, at) {
      await db
        .update(apiKeys)
        .set({ revokedAt: date(at) })
        .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)));
    },
    async touchApiKey(id, at) {
      await db.update(apiKeys).set({ lastUsedAt: date(at) }).where(eq(apiKeys.id, id));
    },
    async addUsage(apiKeyId, windowStart, delta) {
      const [row] = await db
        .insert(usage)
        .values({ apiKeyId, windowStart: date(windowStart), requests: delta.requests, tokens: delta.tokens })
        .onConflictDoUpdate({
          target: [usage.apiKeyId, usage.windowStart],
          set: {
            requests: sql`${usage.requests} + excluded.requests`,
            tokens: sql`${usage.tokens} + excluded.tokens`,
          },
        })
        .returning({ requests: usage.requests, tokens: usage.tokens });
      return { requests: row!.requests, tokens: row!.tokens };
    },
    async chargeApiKey(apiKeyId, costMicroUsd) {
      await db
        .update(apiKeys)
        .set({ spentMicroUsd: sql`${apiKeys.spentMicroUsd} + ${Math.round(costMicroUsd)}::bigint` })
        .where(eq(apiKeys.id, apiKeyId));
    },

    // ------------------------------------------------------------ models
    async listModels({ heartbeatAfter, limit }) {
      const page = await db.select().from(models).orderBy(asc(models.createdAt), asc(models.id)).limit(bound(limit));
      if (!page.length) return [];
      // One grouped pass over the page's spans (distinct agent per model), not a subquery per model.
      const pairs = db
        .selectDistinct({ modelId: agentSpans.modelId, agentId: agentSpans.agentId })
        .from(agentSpans)
        .innerJoin(agents, eq(agents.id, agentSpans.agentId))
        .where(
          and(
            inArray(
              agentSpans.modelId,
              page.map((m) => m.id),
            ),
            eq(agents.status, 'active'),
            gte(agents.lastHeartbeatAt, date(heartbeatAfter)),
          ),
        )
        .as('pairs');
      const counts = await db
        .select({ modelId: pairs.modelId, n: sql<number>`count(*)::int` })
        .from(pairs)
        .groupBy(pairs.modelId);
      const byModel = new Map(counts.map((c) => [c.modelId, c.n]));
      return page.map((m) => ({ ...toModel(m), agents: byModel.get(m.id) ?? 0 }));
    },
    async getModel(idOrName) {
      const [row] = await db
        .select()
        .from(models)
        .where(or(eq(models.id, idOrName), eq(models.name, idOrName)))
        .orderBy(sql`${models.id} = ${idOrName} desc`)
        .limit(1);
      return row ? toModel(row) : null;
    },
    async publishModel({ manifest, id, publishedBy, at }) {
      const inserted = await db
        .insert(models)
        .values({
          id,
          name: manifest.name,
          manifest,
          numLayers: manifest.architecture.numLayers,
          dtype: manifest.dtype,
          publishedBy,
          createdAt: date(at),
        })
        .onConflictDoNothing()
        .returning();
      if (inserted[0]) return toModel(inserted[0]);
      const [existing] = await db.select().from(models).where(eq(models.id, id)).limit(1);
      if (existing) return toModel(existing);
      throw new StoreConflictError(`a model named ${manifest.name} already exists`);
    },

    // ------------------------------------------------------------ model files (tokenizers)
    ...modelFileStore(db),

    // ------------------------------------------------------------ routing
    async listRouteCandidates(modelId, q) {
      const rows = await routeCandidatesQuery(db, modelId, q);
      return rows.map(
        (r): RouteCandidate => ({
          agentId: r.agentId,
          poolId: r.poolId,
          ownerAccountId: r.ownerAccountId,
          region: r.region,
          latitude: r.latitude,
          longitude: r.longitude,
          endpoint: r.endpoint,
          publicKey: r.publicKey,
          layers: [r.layerStart, r.layerEnd],
          priceMicroUsdPerMTok: Number(r.priceMicroUsdPerMTok),
          ttftMsEwma: r.ttftMsEwma,
          perTokenMsEwma: r.perTokenMsEwma,
          failureRateEwma: r.failureRateEwma,
          observations: r.observations,
          queueDepth: r.queueDepth,
          reputation: r.reputation,
          status: r.status as AgentStatus,
          cooldownUntil: ms(r.cooldownUntil),
          probation: r.probation,
          stakeMicroUsd: Number(r.stakeMicroUsd),
          lastHeartbeatAt: ms(r.lastHeartbeatAt),
          checksPassed: r.checksPassed,
          inDispute: r.inDispute,
          blockedRoutes: r.blockedRoutes ?? [],
          held: r.held,
        }),
      );
    },
    async getAgentKeys(ids) {
      const out = new Map<string, string>();
      const unique = [...new Set(ids)].slice(0, MAX_LIMIT);
      if (!unique.length) return out;
      const rows = await db
        .select({ id: agents.id, publicKey: agents.publicKey })
        .from(agents)
        .where(and(inArray(agents.id, unique), ne(agents.status, 'deregistered')));
      for (const r of rows) out.set(r.id, r.publicKey);
      return out;
    },
    async recordObservations(list) {
      if (!list.length) return;
      await db.transaction(async (tx) => {
        await tx.insert(observations).values(
          list.map((o) => ({
            agentId: o.agentId,
            modelId: o.modelId,
            edgeLocation: o.location,
            ttftMs: o.ttftMs ?? null,
            perTokenMs: o.perTokenMs ?? null,
            ok: o.ok,
            at: date(o.at),
          })),
        );
        // In arrival order: each fold reads the previous one's result.
        for (const o of list) {
          await tx
            .update(agents)
            .set({
              ...(o.ttftMs !== undefined ? { ttftMsEwma: fold(agents.ttftMsEwma, o.ttftMs) } : {}),
              ...(o.perTokenMs !== undefined ? { perTokenMsEwma: fold(agents.perTokenMsEwma, o.perTokenMs) } : {}),
              failureRateEwma: fold(agents.failureRateEwma, o.ok ? 0 : 1),
              observations: sql`${agents.observations} + 1`,
            })
            .where(eq(agents.id, o.agentId));
        }
      });
    },
    async setCooldown(agentId, until, reason) {
      const end = sql`${date(until).toISOString()}::timestamptz`;
      // The later cooldown wins, and its reason with it.
      await db
        .update(agents)
        .set({
          cooldownReason: sql`case when ${agents.cooldownUntil} is null or ${agents.cooldownUntil} <= ${end} then ${reason} else ${agents.cooldownReason} end`,
          cooldownUntil: sql`greatest(${agents.cooldownUntil}, ${end})`,
        })
        .where(eq(agents.id, agentId));
    },

    // ------------------------------------------------------------ pool owners
    async createPool(input) {
      const [row] = await db
        .insert(pools)
        .values({
          ownerAccountId: input.ownerAccountId,
          name: input.name,
          region: input.region,
          latitude: input.latitude ?? null,
          longitude: input.longitude ?? null,
        })
        .returning();
      return toPool(row!);
    },
    async listPools(ownerAccountId, limit) {
      const rows = await db
        .select()
        .from(pools)
        .where(eq(pools.ownerAccountId, ownerAccountId))
        .orderBy(asc(pools.createdAt), asc(pools.id))
        .limit(bound(limit));
      return rows.map(toPool);
    },
    async getPool(id) {
      const [row] = await db.select().from(pools).where(eq(pools.id, id)).limit(1);
      return row ? toPool(row) : null;
    },
    async listPublicPools({ limit, cursor, region }) {
      const page = await db
        .select()
        .from(pools)
        .where(
          and(
            eq(pools.status, 'active'),
            cursor ? gt(pools.id, cursor) : undefined,
            region ? eq(pools.region, region) : undefined,
          ),
        )
        .orderBy(asc(pools.id))
        .limit(Math.min(bound(limit), 1000));
      if (!page.length) return [];
      // At most `agentsPerPool` agents of each pool of this page, numbered per pool in SQL: a pool
      // with many agents cannot crowd the later pools of the page out of the listing.
      const ranked = db
        .select({ id: agents.id, rank: sql<number>`row_number() over (partition by ${agents.poolId} order by ${agents.id})`.as('rank') })
        .from(agents)
        .where(
          and(
            inArray(
              agents.poolId,
              page.map((p) => p.id),
            ),
            ne(agents.status, 'deregistered'),
          ),
        )
        .as('ranked');
      const agentRows = (
        await db
          .select({ agent: agents })
          .from(agents)
          .innerJoin(ranked, eq(agents.id, ranked.id))
          .where(lte(ranked.rank, agentsPerPool))
          .orderBy(asc(agents.poolId), asc(agents.id))
      ).map(({ agent }) => ({ agent }));
      const spans = await spansOf(agentRows.map((r) => r.agent.id));
      const byPool = new Map<string, PublicPool['agents']>();
      for (const { agent: a } of agentRows.sort((x, y) => (x.agent.id < y.agent.id ? -1 : 1))) {
        let list = byPool.get(a.poolId);
        if (!list) byPool.set(a.poolId, (list = []));
        list.push({
          id: a.id,
          publicKey: a.publicKey,
          status: a.status,
          priceMicroUsdPerMTok: a.priceMicroUsdPerMTok,
          reputation: a.reputation,
          spans: spans.get(a.id) ?? [],
          lastHeartbeatAt: ms(a.lastHeartbeatAt),
          queueDepth: a.lastHeartbeatAt === null ? null : a.queueDepth,
          ttftMsEwma: a.ttftMsEwma,
          perTokenMsEwma: a.perTokenMsEwma,
        });
      }
      return page.map((p) => ({ id: p.id, name: p.name, region: p.region, agents: byPool.get(p.id) ?? [] }));
    },
    async registerAgent(input, at) {
      const id = await conflictAs('an agent with this public key is already registered', () =>
        db.transaction(async (tx) => {
          const [row] = await tx
            .insert(agents)
            .values({
              poolId: input.poolId,
              endpoint: input.endpoint,
              publicKey: input.publicKey,
              hardware: input.hardware,
              priceMicroUsdPerMTok: Math.round(input.priceMicroUsdPerMTok),
              throughputTokensPerS: input.throughputTokensPerS,
              createdAt: date(at),
            })
            .returning({ id: agents.id });
          await insertSpans(tx, row!.id, input.spans);
          return row!.id;
        }),
      );
      const agent = await agentById(db, id);
      if (!agent) throw new Error(`agent ${id} vanished after registration`);
      return agent;
    },
    async getAgent(id) {
      return agentById(db, id);
    },
    async updateAgent(id, patch) {
      return db.transaction(async (tx) => {
        const [row] = await tx
          .update(agents)
          .set({
            ...(patch.priceMicroUsdPerMTok !== undefined ? { priceMicroUsdPerMTok: Math.round(patch.priceMicroUsdPerMTok) } : {}),
            ...(patch.endpoint !== undefined ? { endpoint: patch.endpoint } : {}),
            // A slashed agent stays slashed whatever its owner asks.
            ...(patch.status !== undefined
              ? { status: sql`case when ${agents.status} = 'slashed' then ${agents.status} else ${patch.status} end` }
              : {}),
            // Touch a column so the update matches (and locks) the row even with an empty patch.
            id: sql`${agents.id}`,
          })
          .where(and(eq(agents.id, id), ne(agents.status, 'deregistered')))
          .returning({ id: agents.id });
        if (!row) return null;
        if (patch.spans) {
          await tx.delete(agentSpans).where(eq(agentSpans.agentId, id));
          await insertSpans(tx, id, patch.spans);
        }
        return agentById(tx, id);
      });
    },
    async deregisterAgent(id, at) {
      const rows = await db
        .update(agents)
        .set({ status: 'deregistered', deregisteredAt: date(at) })
        .where(and(eq(agents.id, id), ne(agents.status, 'deregistered')))
        .returning({ id: agents.id });
      return rows.length === 1;
    },
    async applyHeartbeat(hb) {
      const applied = await db
        .update(agents)
        .set({
          heartbeatSeq: hb.seq,
          lastHeartbeatAt: date(hb.receivedAt),
          queueDepth: hb.queueDepth,
          load: hb.load,
          freeKvBytes: hb.freeKvBytes,
          activeSessions: hb.activeSessions,
        })
        .where(and(eq(agents.id, hb.agentId), ne(agents.status, 'deregistered'), sql`${agents.heartbeatSeq} < ${hb.seq}`))
        .returning({ id: agents.id });
      if (applied.length) return 'ok';
      const [row] = await db
        .select({ status: agents.status })
        .from(agents)
        .where(eq(agents.id, hb.agentId))
        .limit(1);
      return !row || row.status === 'deregistered' ? 'unknown_agent' : 'replay';
    },

    // ------------------------------------------------------------ jobs
    async recordJobStart(input) {
      await db
        .insert(jobs)
        .values({
          id: input.id,
          accountId: input.accountId,
          apiKeyId: input.apiKeyId,
          modelId: input.modelId,
          route: input.route,
          promptTokens: input.promptTokens,
          createdAt: date(input.createdAt),
        })
        .onConflictDoNothing();
    },
    async recordJobFinish(input) {
      await db
        .update(jobs)
        .set({
          status: input.status,
          finishReason: input.finishReason,
          attempts: input.attempts,
          tokenIds: input.tokenIds,
          promptTokens: input.promptTokens,
          completionTokens: input.completionTokens,
          costMicroUsd: Math.round(input.costMicroUsd),
          finishedAt: date(input.finishedAt),
        })
        .where(eq(jobs.id, input.id));
    },
    async getJob(id, accountId) {
      const [row] = await db
        .select()
        .from(jobs)
        .where(and(eq(jobs.id, id), eq(jobs.accountId, accountId)))
        .limit(1);
      return row ? toJob(row) : null;
    },

    async refundJob(input) {
      return db.transaction(async (tx) => {
        // The once-per-job guard: only a finished job not yet refunded matches (a concurrent
        // refund waits on the row lock, then no longer matches).
        const [job] = await tx
          .update(jobs)
          .set({ refundedMicroUsd: sql`${jobs.costMicroUsd}`, refundedAt: date(input.at), refundReason: input.reason })
          .where(and(eq(jobs.id, input.jobId), isNull(jobs.refundedAt), isNotNull(jobs.finishedAt)))
          .returning({ accountId: jobs.accountId, apiKeyId: jobs.apiKeyId, amount: jobs.costMicroUsd });
        if (!job) return null;
        if (job.amount > 0) {
          await tx
            .update(apiKeys)
            .set({ spentMicroUsd: sql`greatest(0, ${apiKeys.spentMicroUsd} - ${job.amount}::bigint)` })
            .where(eq(apiKeys.id, job.apiKeyId));
          await tx.insert(ledgerEntries).values({
            kind: 'refund',
            accountId: job.accountId,
            jobId: input.jobId,
            amountMicroUsd: job.amount,
            reason: input.reason,
            evidence: input.evidence ?? null,
            at: date(input.at),
          });
        }
        return { jobId: input.jobId, accountId: job.accountId, apiKeyId: job.apiKeyId, amountMicroUsd: job.amount, reason: input.reason, at: input.at };
      });
    },

    // ------------------------------------------------------------ ledger
    async addStake(poolId, amountMicroUsd, reason, at) {
      await db.transaction(async (tx) => {
        const [pool] = await tx
          .update(pools)
          .set({ stakeMicroUsd: sql`${pools.stakeMicroUsd} + ${Math.round(amountMicroUsd)}::bigint` })
          .where(eq(pools.id, poolId))
          .returning({ owner: pools.ownerAccountId });
        if (!pool) return;
        await tx.insert(ledgerEntries).values({
          kind: 'stake',
          accountId: pool.owner,
          poolId,
          amountMicroUsd: Math.round(amountMicroUsd),
          reason,
          at: date(at),
        });
      });
    },
    async slash(input) {
      await db.transaction(async (tx) => {
        const [agent] = await tx
          .select({ poolId: agents.poolId })
          .from(agents)
          .where(eq(agents.id, input.agentId))
          .for('update')
          .limit(1);
        if (!agent) return;
        const [pool] = await tx
          .select({ stake: pools.stakeMicroUsd, owner: pools.ownerAccountId })
          .from(pools)
          .where(eq(pools.id, agent.poolId))
          .for('update')
          .limit(1);
        const amount = Math.max(0, Math.min(Math.round(input.amountMicroUsd), pool?.stake ?? 0));
        if (amount > 0) {
          await tx
            .update(pools)
            .set({ stakeMicroUsd: sql`${pools.stakeMicroUsd} - ${amount}::bigint` })
            .where(eq(pools.id, agent.poolId));
        }
        await tx.update(agents).set({ status: 'slashed', reputation: 0 }).where(eq(agents.id, input.agentId));
        await tx.insert(ledgerEntries).values({
          kind: 'slash',
          accountId: pool?.owner ?? null,
          poolId: agent.poolId,
          agentId: input.agentId,
          jobId: input.jobId ?? null,
          amountMicroUsd: amount,
          reason: input.reason,
          evidence: input.evidence ?? null,
          at: date(input.at),
        });
      });
    },
    async adjustReputation(agentId, delta, reason, evidence, at) {
      await db.transaction(async (tx) => {
        const [agent] = await tx
          .select({ reputation: agents.reputation, poolId: agents.poolId })
          .from(agents)
          .where(eq(agents.id, agentId))
          .for('update')
          .limit(1);
        if (!agent) return;
        const next = Math.min(1, Math.max(0, agent.reputation + delta));
        await tx.update(agents).set({ reputation: next }).where(eq(agents.id, agentId));
        await tx.insert(ledgerEntries).values({
          kind: 'reputation',
          poolId: agent.poolId,
          agentId,
          reputationDelta: next - agent.reputation,
          reason,
          evidence: evidence ?? null,
          at: date(at),
        });
      });
    },
    async openDispute(input) {
      const [row] = await db
        .insert(disputes)
        .values({
          jobId: input.jobId,
          agentId: input.agentId,
          reason: input.reason,
          evidence: input.evidence ?? null,
          checkerAgentIds: input.firstCheckerId ? [input.firstCheckerId] : [],
          checkRequest: input.check ?? null,
          retryAfter: input.retryAfter === undefined ? null : date(input.retryAfter),
          createdAt: date(input.at),
        })
        .returning({ id: disputes.id, status: disputes.status });
      const record: DisputeRecord = { ...input, id: row!.id, status: row!.status };
      return record;
    },
    async listJobDisputes(jobId, limit) {
      const rows = await db
        .select({
          id: disputes.id,
          agentId: disputes.agentId,
          status: disputes.status,
          settled: sql<string | null>`${disputes.evidence} -> 'settled' ->> 'state'`,
          createdAt: disputes.createdAt,
          resolvedAt: disputes.resolvedAt,
        })
        .from(disputes)
        .where(eq(disputes.jobId, jobId))
        .orderBy(asc(disputes.createdAt), asc(disputes.id))
        .limit(bound(limit));
      return rows.map((r) => ({
        id: r.id,
        agentId: r.agentId,
        status: r.status === 'rejected' ? (r.settled === 'dismissed' ? 'dismissed' : 'voided') : r.status,
        openedAt: r.createdAt.getTime(),
        resolvedAt: ms(r.resolvedAt),
      }));
    },
    async settleDispute(id, input) {
      await db
        .update(disputes)
        .set({
          status: input.status,
          checkerAgentIds: input.checkerAgentIds,
          // The opening evidence stays; the settlement is kept beside it.
          evidence: sql`jsonb_build_object('opened', ${disputes.evidence}, 'settled', ${JSON.stringify(input.evidence ?? null)}::jsonb)`,
          resolvedAt: date(input.at),
          checkRequest: null,
          retryAfter: null,
        })
        .where(and(eq(disputes.id, id), eq(disputes.status, 'open')));
    },
    async voidStaleDisputes({ openedBefore, at, limit }) {
      return db.transaction(async (tx) => {
        const stale = tx
          .select({ id: disputes.id })
          .from(disputes)
          .where(and(eq(disputes.status, 'open'), lt(disputes.createdAt, date(openedBefore))))
          .orderBy(asc(disputes.createdAt))
          .limit(limit);
        const voided = await tx
          .update(disputes)
          .set({
            status: 'rejected',
            evidence: sql`jsonb_build_object('opened', ${disputes.evidence}, 'settled', ${JSON.stringify({ state: 'voided', reason: 'timeout' })}::jsonb)`,
            resolvedAt: date(at),
            checkRequest: null,
            retryAfter: null,
          })
          .where(and(inArray(disputes.id, stale), eq(disputes.status, 'open')))
          .returning({ id: disputes.id, agentId: disputes.agentId, jobId: disputes.jobId });
        const accused = [...new Set(voided.map((d) => d.agentId))];
        if (accused.length) {
          await tx
            .update(agents)
            .set({ probation: false })
            .where(and(inArray(agents.id, accused), sql`not exists (select 1 from ${disputes} where ${disputes.agentId} = ${agents.id} and ${disputes.status} = 'open')`));
        }
        return voided;
      });
    },
    async recordDisputeCheck(id, { checkerAgentId, verdict }) {
      await db
        .update(disputes)
        .set({
          checkerAgentIds: sql`array_append(${disputes.checkerAgentIds}, ${checkerAgentId}::text)`,
          evidence: sql`jsonb_set(coalesce(${disputes.evidence}, '{}'::jsonb), '{verdicts}', coalesce(${disputes.evidence} -> 'verdicts', '[]'::jsonb) || jsonb_build_array(${JSON.stringify(verdict ?? null)}::jsonb))`,
        })
        .where(and(eq(disputes.id, id), eq(disputes.status, 'open')));
    },
    async claimDisputeRetries({ at, retryMs, limit }) {
      const due = db
        .select({ id: disputes.id })
        .from(disputes)
        .where(and(eq(disputes.status, 'open'), lte(disputes.retryAfter, date(at))))
        .orderBy(asc(disputes.retryAfter), asc(disputes.createdAt))
        .limit(bound(limit))
        .for('update', { skipLocked: true });
      const rows = await db
        .update(disputes)
        .set({ retryAfter: date(at + retryMs) })
        .where(and(inArray(disputes.id, due), eq(disputes.status, 'open')))
        .returning({
          id: disputes.id,
          jobId: disputes.jobId,
          agentId: disputes.agentId,
          reason: disputes.reason,
          createdAt: disputes.createdAt,
          checkerAgentIds: disputes.checkerAgentIds,
          verdicts: sql<unknown[] | null>`${disputes.evidence} -> 'verdicts'`,
          check: disputes.checkRequest,
        });
      return rows
        .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())
        .map(
          (r): DisputeRetry => ({
            id: r.id,
            jobId: r.jobId,
            agentId: r.agentId,
            reason: r.reason,
            openedAt: r.createdAt.getTime(),
            checkerAgentIds: r.checkerAgentIds,
            verdicts: Array.isArray(r.verdicts) ? r.verdicts : [],
            check: r.check ?? null,
          }),
        );
    },
    async noteDisputeRetry(id, note) {
      await db
        .update(disputes)
        .set({ retryNote: note })
        .where(and(eq(disputes.id, id), eq(disputes.status, 'open')));
    },
    async setProbation(agentId, on) {
      await db.update(agents).set({ probation: on }).where(eq(agents.id, agentId));
    },
    async blockRoute(input) {
      await db.insert(routeBlocks).values({
        modelId: input.modelId,
        route: input.route,
        headAgentId: input.route[0]!,
        jobId: input.jobId,
        reason: input.reason,
        createdAt: date(input.at),
        until: date(input.until),
        holdUntil: input.holdUntil !== undefined ? date(input.holdUntil) : null,
      });
    },
    async releaseRouteHold({ jobId, route, at }) {
      await db
        .update(routeBlocks)
        .set({ holdUntil: date(at) })
        .where(and(eq(routeBlocks.jobId, jobId), eq(routeBlocks.route, [...route]), gt(routeBlocks.holdUntil, date(at))));
    },
    async liftRouteBlocks({ jobId, route, at }) {
      const now = date(at);
      await db
        .update(routeBlocks)
        .set({ until: sql`least(${routeBlocks.until}, ${now.toISOString()}::timestamptz)`, holdUntil: sql`least(${routeBlocks.holdUntil}, ${now.toISOString()}::timestamptz)` })
        .where(and(eq(routeBlocks.jobId, jobId), eq(routeBlocks.route, [...route]), or(gt(routeBlocks.until, now), gt(routeBlocks.holdUntil, now))));
    },
    async expireRouteBlocks({ at, limit }) {
      return db.transaction(async (tx) => {
        const ended = tx.select({ id: routeBlocks.id }).from(routeBlocks).where(lte(routeBlocks.until, date(at))).orderBy(asc(routeBlocks.until)).limit(bound(limit));
        const deleted = await tx.delete(routeBlocks).where(inArray(routeBlocks.id, ended)).returning();
        const hops = [...new Set(deleted.flatMap((b) => b.route))];
        if (hops.length) {
          await tx
            .update(agents)
            .set({ probation: false })
            .where(
              and(
                inArray(agents.id, hops),
                sql`not exists (select 1 from ${disputes} where ${disputes.agentId} = ${agents.id} and ${disputes.status} = 'open')`,
                sql`not exists (select 1 from ${routeBlocks} where ${routeBlocks.until} > ${new Date(at).toISOString()}::timestamptz and ${agents.id} = any(${routeBlocks.route}))`,
              ),
            );
        }
        return deleted.map(
          (b): RouteBlock => ({ id: b.id, modelId: b.modelId, route: b.route, jobId: b.jobId, reason: b.reason, at: b.createdAt.getTime(), until: b.until.getTime(), ...(b.holdUntil ? { holdUntil: b.holdUntil.getTime() } : {}) }),
        );
      });
    },
    async recordCheck(input) {
      await db.transaction(async (tx) => {
        await tx
          .update(jobs)
          .set({ checkStatus: input.status, checks: sql`${jobs.checks} || jsonb_build_array(${JSON.stringify(input.entry ?? null)}::jsonb)` })
          .where(eq(jobs.id, input.jobId));
        const checked = [...new Set(input.checkedAgentIds ?? [])].slice(0, 16);
        const passed = [...new Set(input.passedAgentIds ?? [])].slice(0, 16);
        if (checked.length) await tx.update(agents).set({ jobsChecked: sql`${agents.jobsChecked} + 1` }).where(inArray(agents.id, checked));
        if (passed.length) await tx.update(agents).set({ checksPassed: sql`${agents.checksPassed} + 1` }).where(inArray(agents.id, passed));
      });
    },

    // ------------------------------------------------------------ edge keys
    async listEdgeKeys() {
      const rows = await db
        .select()
        .from(edgeKeys)
        .where(isNull(edgeKeys.retiredAt))
        .orderBy(asc(edgeKeys.createdAt), asc(edgeKeys.id))
        .limit(100);
      return rows.map((r) => ({ id: r.id, publicKey: r.publicKey, createdAt: r.createdAt.getTime(), retiredAt: ms(r.retiredAt) }));
    },
    async upsertEdgeKey({ id, publicKey, at }) {
      await db.insert(edgeKeys).values({ id, publicKey, createdAt: date(at) }).onConflictDoNothing();
    },
  };
  return store;
}
