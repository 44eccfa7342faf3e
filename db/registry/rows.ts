/**
 * What the registry's Postgres store parts share: bounds, time and money conversions, the
 * unique-violation mapping, row-to-record mappers and the span helpers.
 *
 * @example
 * const agent = await agentById(db, id);
 */
import { asc, eq, inArray, sql } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import { EWMA_ALPHA, StoreConflictError, type AgentRecord, type ApiKeyRecord, type JobRecord, type ModelRecord, type PoolRecord, type SpanRecord } from '../registry-contract.js';
import type { RegistryDb } from '../client.js';
import { agents, agentSpans, apiKeys, jobs, models, pools } from '../schema/index.js';

/** Agents listed per pool by `listPublicPools`. */
export const PUBLIC_AGENTS_PER_POOL = 1000;
/** Upper bound on any caller-supplied `limit`. */
export const MAX_LIMIT = 10_000;

export const ms = (d: Date | null): number | null => (d === null ? null : d.getTime());
export const date = (t: number): Date => new Date(t);
export const bound = (limit: number) => Math.max(0, Math.min(MAX_LIMIT, Math.floor(limit)));

/** postgres.js error code, also when drizzle wraps the error (`DrizzleQueryError.cause`). */
export function pgCode(err: unknown): string | undefined {
  for (let e: unknown = err, i = 0; e && i < 4; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}
export const UNIQUE_VIOLATION = '23505';

export async function conflictAs<T>(message: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (pgCode(err) === UNIQUE_VIOLATION) throw new StoreConflictError(message);
    throw err;
  }
}

export type ApiKeyRow = typeof apiKeys.$inferSelect;
export function toApiKey(r: ApiKeyRow): ApiKeyRecord {
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

export type ModelRow = typeof models.$inferSelect;
export function toModel(r: ModelRow): ModelRecord {
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

export type PoolRow = typeof pools.$inferSelect;
export function toPool(r: PoolRow): PoolRecord {
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

export type AgentRow = typeof agents.$inferSelect;
export function toAgent(r: AgentRow, ownerAccountId: string, spans: SpanRecord[]): AgentRecord {
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

export type JobRow = typeof jobs.$inferSelect;
export function toJob(r: JobRow): JobRecord {
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

/** Each agent's spans, by agent id. */
export async function spansOf(db: RegistryDb, ids: string[]): Promise<Map<string, SpanRecord[]>> {
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
}

/** One agent with its owner and spans, or null. */
export async function agentById(tx: RegistryDb, id: string): Promise<AgentRecord | null> {
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
}

export async function insertSpans(tx: RegistryDb, agentId: string, spans: SpanRecord[]): Promise<void> {
  if (!spans.length) return;
  await tx
    .insert(agentSpans)
    .values(spans.map((s) => ({ agentId, modelId: s.modelId, layerStart: s.layers[0], layerEnd: s.layers[1] })))
    .onConflictDoNothing();
}

/** `ewma = ewma === null ? x : ewma + alpha * (x - ewma)`, in SQL. */
export const fold = (column: AnyPgColumn, x: number) =>
  sql`case when ${column} is null then ${x}::float8 else ${column} + ${EWMA_ALPHA}::float8 * (${x}::float8 - ${column}) end`;
