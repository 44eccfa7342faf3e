/**
 * Jobs, over Postgres: the start and finish records (attempts, tokens, cost), the owner's view,
 * refunds.
 *
 * @example
 * await jobMethods(db).recordJobStart({ id, accountId, apiKeyId, modelId, route, at });
 */
import { and, asc, eq, inArray, isNotNull, isNull, lt, sql } from 'drizzle-orm';
import type { RegistryStore } from '../registry-contract.js';
import type { RegistryDb } from '../client.js';
import { apiKeys, jobs, ledgerEntries } from '../schema/index.js';
import { bound, date, toJob } from './rows.js';

export function jobMethods(db: RegistryDb) {
  return {
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
    async failAbandonedJobs({ startedBefore, at, limit }) {
      const stale = db
        .select({ id: jobs.id })
        .from(jobs)
        .where(and(eq(jobs.status, 'running'), lt(jobs.createdAt, date(startedBefore))))
        .orderBy(asc(jobs.createdAt))
        .limit(bound(limit));
      const ended = await db
        .update(jobs)
        .set({ status: 'failed', finishReason: 'error', costMicroUsd: 0, finishedAt: date(at) })
        .where(and(inArray(jobs.id, stale), eq(jobs.status, 'running')))
        .returning({ id: jobs.id });
      return ended.map((r) => r.id);
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

  } satisfies Partial<RegistryStore>;
}
