/**
 * Disputes and what a failed check does, over Postgres: opening, third checks, settling, voiding
 * and the tick's retries; probation; route blocks and holds; the job's check record.
 *
 * @example
 * const retries = await disputeMethods(db).claimDisputeRetries({ at: Date.now(), retryMs: 60_000, limit: 10 });
 */
import { and, asc, eq, gt, inArray, lt, lte, or, sql } from 'drizzle-orm';
import type { DisputeRecord, DisputeRetry, RouteBlock, RegistryStore } from '../registry-contract.js';
import type { RegistryDb } from '../client.js';
import { agents, disputes, routeBlocks, jobs } from '../schema/index.js';
import { ms, date, bound } from './rows.js';

export function disputeMethods(db: RegistryDb) {
  return {
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

  } satisfies Partial<RegistryStore>;
}
