/**
 * What routing reads and writes, over Postgres: the candidates query (exported so tests can
 * EXPLAIN exactly what the store runs), agents' keys, observations folded into EWMA figures,
 * cooldowns.
 *
 * @example
 * const candidates = await routingMethods(db).listRouteCandidates(modelId, { heartbeatAfter: Date.now() - 30_000, limit: 256 });
 */
import { and, eq, gte, inArray, ne, sql, type SQL } from 'drizzle-orm';
import type { AgentStatus, CandidateQuery, RegistryStore, RouteCandidate } from '../registry-contract.js';
import type { RegistryDb } from '../client.js';
import { agents, agentSpans, observations, pools } from '../schema/index.js';
import { MAX_LIMIT, ms, date, bound, fold } from './rows.js';

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

export function routingMethods(db: RegistryDb) {
  return {
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

  } satisfies Partial<RegistryStore>;
}
