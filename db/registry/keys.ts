/**
 * API keys (lookup by prefix, creation, revocation, usage windows, spend) and the edge's signing
 * keys, over Postgres.
 *
 * @example
 * const keys = keyMethods(db);
 * const key = await keys.getApiKeyByPrefix('abcdefghijkl');
 */
import { and, asc, eq, isNull, sql } from 'drizzle-orm';
import type { RegistryStore } from '../registry-contract.js';
import type { RegistryDb } from '../client.js';
import { apiKeys, edgeKeys, usage } from '../schema/index.js';
import { ms, date, conflictAs, toApiKey } from './rows.js';

export function keyMethods(db: RegistryDb) {
  return {
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
  } satisfies Partial<RegistryStore>;
}
