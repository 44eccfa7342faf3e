/**
 * Pool owners' side of the registry, over Postgres: pools (theirs and the public listing),
 * agents (registration, updates, deregistration) and heartbeats.
 *
 * @example
 * const pool = await ownerMethods(db, 1000).createPool({ ownerAccountId, name: 'home', region: 'eu-west' });
 */
import { and, asc, eq, gt, inArray, lte, ne, sql } from 'drizzle-orm';
import type { PublicPool, RegistryStore } from '../registry-contract.js';
import type { RegistryDb } from '../client.js';
import { agents, agentSpans, pools } from '../schema/index.js';
import { ms, date, bound, conflictAs, toPool, spansOf, agentById, insertSpans } from './rows.js';

export function ownerMethods(db: RegistryDb, agentsPerPool: number) {
  return {
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
      const spans = await spansOf(db, agentRows.map((r) => r.agent.id));
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

  } satisfies Partial<RegistryStore>;
}
