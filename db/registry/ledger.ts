/**
 * The ledger, over Postgres: stake, slashes (with their evidence) and reputation changes, each
 * with its entry.
 *
 * @example
 * await ledgerMethods(db).addStake(poolId, 1_000_000, 'deposit', Date.now());
 */
import { eq, sql } from 'drizzle-orm';
import type { RegistryStore } from '../registry-contract.js';
import type { RegistryDb } from '../client.js';
import { agents, ledgerEntries, pools } from '../schema/index.js';
import { date } from './rows.js';

export function ledgerMethods(db: RegistryDb) {
  return {
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
  } satisfies Partial<RegistryStore>;
}
