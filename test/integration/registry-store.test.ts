/**
 * The Postgres `RegistryStore` against a real database (DATABASE_URL's server, or embedded
 * PGlite): auth lookups, models and their files, owner flows, heartbeats, routing candidates, EWMA folding,
 * jobs, ledger and disputes; and the candidates query at 10,000 agents staying on its indexes.
 */
import type postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashApiKey } from '../../protocol/api-key.js';
import { manifestHash, type Manifest } from '../../protocol/manifest.js';
import { toBase64Url } from '../../protocol/bytes.js';
import type { RegistryDb } from '../../db/client.js';
import { createRegistryStore, routeCandidatesQuery } from '../../db/registry-store.js';
import { createApiKey, revokeApiKey, upsertModel } from '../../db/seed.js';
import { seedAgents } from '../../db/seed-agents.js';
import { pruneObservations } from '../../db/maintenance.js';
import { EWMA_ALPHA, StoreConflictError, type JobAttemptRecord, type RegisterAgentInput, type RegistryStore } from '../../db/registry-contract.js';
import { openRegistryStore, type RegistryStoreFixture } from '../support/registry-store.js';
import { testManifest } from '../unit/edge-fixtures.js';
import { checkModelFileStore } from '../support/model-files-contract.js';
import { checkTrustStore } from '../support/trust-store-contract.js';
import { checkAbandonedJobs } from '../support/jobs-contract.js';

const manifest = (name: string, numLayers = 4): Manifest => testManifest(numLayers, name);

const publicKey = () => toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
const hardware = { devices: [{ kind: 'cpu' as const, name: 'test', memoryBytes: 1 << 30 }], memoryBytes: 1 << 30, platform: 'linux' };

let reg: RegistryStoreFixture;
let client: postgres.Sql;
let db: RegistryDb;
let store: RegistryStore;
let ownerId: string;
let userId: string;
let modelId: string;
const NOW = Date.UTC(2026, 0, 1, 12);

beforeAll(async () => {
  reg = await openRegistryStore();
  ({ client, db, store, ownerId, userId, modelId } = reg);
});
afterAll(() => reg?.close());

async function agent(poolId: string, spans: Array<[number, number]>, extra: Partial<RegisterAgentInput> = {}) {
  return store.registerAgent(
    {
      poolId,
      ownerAccountId: ownerId,
      endpoint: 'http://127.0.0.1:1/agent',
      publicKey: publicKey(),
      hardware,
      priceMicroUsdPerMTok: 250_000,
      throughputTokensPerS: 40,
      spans: spans.map((layers) => ({ modelId, layers })),
      ...extra,
    },
    NOW,
  );
}

async function beat(agentId: string, seq: number, at = NOW) {
  return store.applyHeartbeat({ agentId, seq, sentAt: at, receivedAt: at, queueDepth: seq % 3, load: 0.5, freeKvBytes: 1024, activeSessions: 1 });
}

describe('registry store: API keys', () => {
  it('finds a seeded key by prefix with the hash of the full key, never the key itself', async () => {
    const created = await createApiKey(db, { accountId: userId, scopes: ['inference', 'inference'], name: 'k', limits: { requestsPerMinute: 60, budgetMicroUsd: 5_000_000 } });
    const rec = await store.getApiKeyByPrefix(created.prefix);
    expect(rec).toMatchObject({ id: created.id, accountId: userId, scopes: ['inference'], requestsPerMinute: 60, tokensPerMinute: null, budgetMicroUsd: 5_000_000, spentMicroUsd: 0, revokedAt: null });
    expect(rec!.hash).toBe(await hashApiKey(created.key));
    const [raw] = await client`select * from api_keys where id = ${created.id}`;
    const secret = created.key.slice(`ln_${created.prefix}_`.length);
    expect(secret).toHaveLength(43);
    expect(JSON.stringify(raw)).not.toContain(secret);
    expect(await store.getApiKeyByPrefix('zzzzzzzzzzzz')).toBeNull();
  });

  it('refuses a duplicate prefix as a conflict and keeps the first revocation time', async () => {
    const created = await store.createApiKey({ accountId: userId, prefix: 'aaaaaaaaaaaa', hash: 'a'.repeat(64), scopes: ['admin'] });
    await expect(store.createApiKey({ accountId: userId, prefix: 'aaaaaaaaaaaa', hash: 'b'.repeat(64), scopes: ['admin'] })).rejects.toBeInstanceOf(StoreConflictError);
    await store.revokeApiKey(created.id, NOW);
    await store.revokeApiKey(created.id, NOW + 1000);
    expect((await store.getApiKeyByPrefix('aaaaaaaaaaaa'))!.revokedAt).toBe(NOW);
    expect(await revokeApiKey(db, created.id)).toBe(true);
    expect(await revokeApiKey(db, 'no-such-key')).toBe(false);
  });

  it('adds usage atomically per minute window and charges the budget', async () => {
    const { id } = await createApiKey(db, { accountId: userId, scopes: ['inference'], name: 'usage' });
    const window = Math.floor(NOW / 60_000) * 60_000;
    const totals = await Promise.all(Array.from({ length: 20 }, () => store.addUsage(id, window, { requests: 1, tokens: 7 })));
    expect(totals.map((t) => t.requests).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(await store.addUsage(id, window + 60_000, { requests: 1, tokens: 1 })).toEqual({ requests: 1, tokens: 1 });
    await store.chargeApiKey(id, 1234);
    await store.chargeApiKey(id, 66);
    await store.touchApiKey(id, NOW);
    const key = (await db.query.apiKeys.findFirst({ where: (k, { eq }) => eq(k.id, id) }))!;
    expect(key.spentMicroUsd).toBe(1300);
    expect(key.lastUsedAt?.getTime()).toBe(NOW);
  });
});

describe('registry store: models', () => {
  it('upsertModel refuses a taken name, or takes it over and keeps the older model under NAME@id', async () => {
    const older = manifest('demo', 2);
    const olderId = (await upsertModel(db, older)).id;
    const rebuilt = { ...manifest('demo', 2), seed: 99 } as Manifest;
    await expect(upsertModel(db, rebuilt)).rejects.toThrow(/a different model is already registered as demo/);
    const taken = await upsertModel(db, rebuilt, null, { takeOverName: true });
    expect(taken).toMatchObject({ name: 'demo', created: true, renamed: `demo@${olderId.slice(0, 12)}` });
    expect((await store.getModel('demo'))?.id).toBe(taken.id);
    expect((await store.getModel(olderId))?.name).toBe(`demo@${olderId.slice(0, 12)}`);
    // Idempotent afterwards: nothing else to rename.
    expect(await upsertModel(db, rebuilt, null, { takeOverName: true })).toEqual({ id: taken.id, name: 'demo', created: false });
  });

  it('publishes idempotently by hash, refuses a taken name, finds by id or name', async () => {
    const m = manifest('published', 2);
    const id = await manifestHash(m);
    const first = await store.publishModel({ manifest: m, id, publishedBy: ownerId, at: NOW });
    const again = await store.publishModel({ manifest: m, id, publishedBy: null, at: NOW + 5 });
    expect(again).toEqual(first);
    expect(first).toMatchObject({ id, name: 'published', numLayers: 2, dtype: 'float32', publishedBy: ownerId, createdAt: NOW });
    const other = { ...m, seed: 2 };
    await expect(store.publishModel({ manifest: other, id: await manifestHash(other), publishedBy: null, at: NOW })).rejects.toBeInstanceOf(StoreConflictError);
    expect((await store.getModel('published'))?.id).toBe(id);
    expect((await store.getModel(id))?.manifest).toEqual(m);
    expect(await store.getModel('missing')).toBeNull();
  });
});

describe('registry store: model files', () => {
  it('puts, replaces, lists and gets files by model (bytea round trip), as the memory store does', async () => {
    const [a, b] = [manifest('with-files', 2), manifest('without-files', 2)];
    const [idA, idB] = [await manifestHash(a), await manifestHash(b)];
    await store.publishModel({ manifest: a, id: idA, publishedBy: ownerId, at: NOW });
    await store.publishModel({ manifest: b, id: idB, publishedBy: ownerId, at: NOW });
    await checkModelFileStore(store, idA, idB, NOW);
  });
});

describe('registry store: pools, agents, heartbeats, routing', () => {
  it('registers agents with spans, refuses a live duplicate key, updates and deregisters', async () => {
    const pool = await store.createPool({ ownerAccountId: ownerId, name: 'p1', region: 'eu-west', latitude: 50, longitude: 8 });
    expect(await store.listPools(ownerId, 10)).toContainEqual(pool);
    const a = await agent(pool.id, [[0, 2], [2, 4]]);
    expect(a).toMatchObject({ poolId: pool.id, ownerAccountId: ownerId, status: 'active', reputation: 0.5, lastHeartbeatSeq: -1, lastHeartbeatAt: null, createdAt: NOW });
    expect(a.spans).toEqual([{ modelId, layers: [0, 2] }, { modelId, layers: [2, 4] }]);
    await expect(agent(pool.id, [[0, 4]], { publicKey: a.publicKey })).rejects.toBeInstanceOf(StoreConflictError);

    const updated = await store.updateAgent(a.id, { spans: [{ modelId, layers: [0, 4] }], priceMicroUsdPerMTok: 99, status: 'draining' });
    expect(updated).toMatchObject({ spans: [{ modelId, layers: [0, 4] }], priceMicroUsdPerMTok: 99, status: 'draining' });
    expect(await store.updateAgent('no-such-agent', { status: 'active' })).toBeNull();

    expect(await store.deregisterAgent(a.id, NOW)).toBe(true);
    expect(await store.deregisterAgent(a.id, NOW)).toBe(false);
    expect(await store.updateAgent(a.id, { status: 'active' })).toBeNull();
    expect((await store.getAgentKeys([a.id])).size).toBe(0);
    // Its key may register again once the old registration is gone.
    const again = await agent(pool.id, [[0, 4]], { publicKey: a.publicKey });
    expect((await store.getAgentKeys([again.id, 'unknown'])).get(again.id)).toBe(a.publicKey);
  });

  it('lists public pools with at most the per-pool cap of agents each, a crowded pool not hiding the next', async () => {
    const capped = createRegistryStore(client, { publicAgentsPerPool: 3 });
    const [low, high] = (
      await Promise.all([
        store.createPool({ ownerAccountId: ownerId, name: 'cap-a', region: 'xx-cap' }),
        store.createPool({ ownerAccountId: ownerId, name: 'cap-b', region: 'xx-cap' }),
      ])
    ).sort((x, y) => (x.id < y.id ? -1 : 1)) as [{ id: string }, { id: string }];
    // More agents in the first pool than the whole page's old row budget (pools x cap x 4).
    const crowd = [];
    for (let i = 0; i < 30; i++) crowd.push(await agent(low.id, [[0, 4]]));
    const few = [await agent(high.id, [[0, 4]]), await agent(high.id, [[0, 4]]), await agent(high.id, [[0, 4]])];
    await store.deregisterAgent(few[0]!.id, NOW);
    const listed = await capped.listPublicPools({ limit: 10, region: 'xx-cap' });
    expect(listed.map((p) => p.id)).toEqual([low.id, high.id]);
    const ids = (list: { id: string }[]) => list.map((a) => a.id).sort();
    expect(listed[0]!.agents.map((a) => a.id)).toEqual(ids(crowd).slice(0, 3));
    expect(listed[1]!.agents.map((a) => a.id)).toEqual(ids(few.slice(1)));
    expect(listed[1]!.agents[0]!.spans).toEqual([{ modelId, layers: [0, 4] }]);
  });

  it('applies heartbeats only with a strictly increasing seq', async () => {
    const pool = await store.createPool({ ownerAccountId: ownerId, name: 'hb', region: 'eu-west' });
    const a = await agent(pool.id, [[0, 4]]);
    expect(await beat(a.id, 1)).toBe('ok');
    expect(await beat(a.id, 1)).toBe('replay');
    expect(await beat(a.id, 0)).toBe('replay');
    expect(await beat(a.id, 5, NOW + 10)).toBe('ok');
    expect(await beat('no-such-agent', 9)).toBe('unknown_agent');
    const results = await Promise.all([6, 7, 8, 9].map((s) => beat(a.id, s, NOW + 20)));
    expect(results.filter((r) => r === 'ok').length).toBeGreaterThanOrEqual(1);
    const got = (await store.getAgent(a.id))!;
    expect(got.lastHeartbeatSeq).toBe(9);
    expect(got.lastHeartbeatAt).toBe(NOW + 20);
    await store.deregisterAgent(a.id, NOW);
    expect(await beat(a.id, 100)).toBe('unknown_agent');
  });

  it('lists only live candidates of the model, the preferred region first, bounded by limit', async () => {
    const m = manifest('routing', 4);
    const rid = await manifestHash(m);
    await store.publishModel({ manifest: m, id: rid, publishedBy: null, at: NOW });
    const eu = await store.createPool({ ownerAccountId: ownerId, name: 'eu', region: 'eu-west' });
    const us = await store.createPool({ ownerAccountId: ownerId, name: 'us', region: 'us-east' });
    const suspended = await store.createPool({ ownerAccountId: ownerId, name: 'sus', region: 'eu-west' });
    await client`update pools set status = 'suspended' where id = ${suspended.id}`;
    const reg = (poolId: string, spans: Array<[number, number]>) => agent(poolId, [], { spans: spans.map((layers) => ({ modelId: rid, layers })) });
    const euAgents = [await reg(eu.id, [[0, 2], [2, 4]]), await reg(eu.id, [[0, 4]])];
    const usAgents = [await reg(us.id, [[0, 4]]), await reg(us.id, [[0, 4]]), await reg(us.id, [[0, 4]])];
    const stale = await reg(eu.id, [[0, 4]]);
    const draining = await reg(eu.id, [[0, 4]]);
    const inSuspended = await reg(suspended.id, [[0, 4]]);
    for (const a of [...euAgents, ...usAgents, draining, inSuspended]) await beat(a.id, 1, NOW);
    await beat(stale.id, 1, NOW - 120_000);
    await store.updateAgent(draining.id, { status: 'draining' });

    const all = await store.listRouteCandidates(rid, { heartbeatAfter: NOW - 30_000, limit: 100 });
    expect(all.map((c) => c.agentId).sort()).toEqual([euAgents[0]!.id, euAgents[0]!.id, euAgents[1]!.id, ...usAgents.map((a) => a.id)].sort());
    expect(all.find((c) => c.agentId === euAgents[1]!.id)).toMatchObject({ region: 'eu-west', layers: [0, 4], priceMicroUsdPerMTok: 250_000, ttftMsEwma: null, failureRateEwma: 0, observations: 0, status: 'active', probation: false, cooldownUntil: null, lastHeartbeatAt: NOW, ownerAccountId: ownerId });

    const preferUs = await store.listRouteCandidates(rid, { heartbeatAfter: NOW - 30_000, limit: 4, region: 'us-east' });
    expect(preferUs.slice(0, 3).map((c) => c.region)).toEqual(['us-east', 'us-east', 'us-east']);
    expect(preferUs).toHaveLength(4);
    expect(preferUs[3]!.region).toBe('eu-west');
    const preferEu = await store.listRouteCandidates(rid, { heartbeatAfter: NOW - 30_000, limit: 100, region: 'eu-west' });
    expect(preferEu.map((c) => c.region)).toEqual(['eu-west', 'eu-west', 'eu-west', 'us-east', 'us-east', 'us-east']);
    expect(await store.listRouteCandidates(rid, { heartbeatAfter: NOW - 30_000, limit: 2 })).toHaveLength(2);

    const [summary] = (await store.listModels({ heartbeatAfter: NOW - 30_000, limit: 100 })).filter((s) => s.id === rid);
    expect(summary!.agents).toBe(6); // 5 live + the one in the suspended pool (models count agents, not pools)

    await store.setCooldown(usAgents[0]!.id, NOW + 5000, 'timeout');
    await store.setCooldown(usAgents[0]!.id, NOW + 1000, 'shorter');
    const cooled = (await store.listRouteCandidates(rid, { heartbeatAfter: NOW - 30_000, limit: 100 })).find((c) => c.agentId === usAgents[0]!.id);
    expect(cooled!.cooldownUntil).toBe(NOW + 5000);
  });

  it('folds observations into the EWMAs in order, leaving absent figures alone', async () => {
    const pool = await store.createPool({ ownerAccountId: ownerId, name: 'obs', region: 'eu-west' });
    const a = await agent(pool.id, [[0, 4]]);
    await store.recordObservations([
      { agentId: a.id, modelId, location: 'FRA', ttftMs: 100, perTokenMs: 10, ok: true, at: NOW },
      { agentId: a.id, modelId, location: 'FRA', ttftMs: 200, ok: true, at: NOW + 1 },
      { agentId: a.id, modelId, location: 'AMS', ok: false, at: NOW + 2 },
    ]);
    const [row] = await client`select ttft_ms_ewma, per_token_ms_ewma, failure_rate_ewma, observations from agents where id = ${a.id}`;
    expect(row!.ttft_ms_ewma).toBeCloseTo(100 + EWMA_ALPHA * (200 - 100), 9);
    expect(row!.per_token_ms_ewma).toBeCloseTo(10, 9);
    expect(row!.failure_rate_ewma).toBeCloseTo(EWMA_ALPHA * 1, 9);
    expect(row!.observations).toBe(3);
    const [{ n }] = (await client`select count(*)::int as n from observations where agent_id = ${a.id}`) as unknown as [{ n: number }];
    expect(n).toBe(3);

    // Pruning removes raw rows in bounded batches and leaves the folded figures alone.
    expect(await pruneObservations(db, NOW + 2, 1)).toBe(1);
    expect(await pruneObservations(db, NOW + 2, 100)).toBe(1);
    expect(await pruneObservations(db, NOW + 2, 100)).toBe(0);
    const left = await client`select at from observations where agent_id = ${a.id}`;
    expect(left).toHaveLength(1);
    const [after] = await client`select observations from agents where id = ${a.id}`;
    expect(after!.observations).toBe(3);
  });
});

describe('registry store: jobs, ledger, edge keys', () => {
  it('ends jobs an edge left running past their time, as failed and uncharged, as the memory store does', async () => {
    const { id: keyId } = await createApiKey(db, { accountId: userId, scopes: ['inference'], name: 'abandoned' });
    await checkAbandonedJobs(store, { accountId: userId, apiKeyId: keyId, modelId, at: NOW + 3_600_000 });
  });

  it('records a job start and finish, readable only by its account', async () => {
    const { id: keyId } = await createApiKey(db, { accountId: userId, scopes: ['inference'], name: 'jobs' });
    const jobId = crypto.randomUUID();
    await store.recordJobStart({ id: jobId, accountId: userId, apiKeyId: keyId, modelId, createdAt: NOW, route: ['a1', 'a2'], promptTokens: 5 });
    expect(await store.getJob(jobId, userId)).toMatchObject({ status: 'running', route: ['a1', 'a2'], promptTokens: 5, tokenIds: [], finishedAt: null, createdAt: NOW });
    const attempts = [{ ticket: { ticket: { jobId }, signature: 'sig' }, chunks: [[{ hop: 0 }]], outcome: 'completed' }] as unknown as JobAttemptRecord[];
    await store.recordJobFinish({ id: jobId, status: 'completed', finishReason: 'stop', attempts, tokenIds: [5, 6, 7], promptTokens: 5, completionTokens: 3, costMicroUsd: 42, finishedAt: NOW + 900 });
    expect(await store.getJob(jobId, userId)).toMatchObject({ status: 'completed', finishReason: 'stop', attempts, tokenIds: [5, 6, 7], completionTokens: 3, costMicroUsd: 42, finishedAt: NOW + 900 });
    expect(await store.getJob(jobId, ownerId)).toBeNull();
    expect(await store.getJob('not-a-uuid', userId)).toBeNull();
  });

  it('moves stake, slashes at most what is staked, clamps reputation, and keeps the evidence', async () => {
    const pool = await store.createPool({ ownerAccountId: ownerId, name: 'stake', region: 'eu-west' });
    const a = await agent(pool.id, [[0, 4]]);
    await store.addStake(pool.id, 3_000_000, 'deposit', NOW);
    await store.adjustReputation(a.id, 0.9, 'good work', { jobs: 10 }, NOW);
    expect((await store.getAgent(a.id))!.reputation).toBe(1);
    await store.slash({ agentId: a.id, amountMicroUsd: 5_000_000, reason: 'fraud', evidence: { chunk: [1, 2] }, jobId: 'job-1', at: NOW + 1 });
    expect((await store.getPool(pool.id))!.stakeMicroUsd).toBe(0);
    expect(await store.getAgent(a.id)).toMatchObject({ status: 'slashed', reputation: 0 });
    expect(await store.updateAgent(a.id, { status: 'active' })).toMatchObject({ status: 'slashed' });
    const ledger = await client`select kind, amount_micro_usd::int as amount, reputation_delta, evidence, job_id from ledger_entries where pool_id = ${pool.id} order by id`;
    expect(ledger.map((r) => [r.kind, r.amount, r.reputation_delta, r.evidence, r.job_id])).toEqual([
      ['stake', 3_000_000, null, null, null],
      ['reputation', 0, 0.5, { jobs: 10 }, null],
      ['slash', 3_000_000, null, { chunk: [1, 2] }, 'job-1'],
    ]);
    const dispute = await store.openDispute({ jobId: 'job-1', agentId: a.id, reason: 'mismatch', evidence: { hop: 0 }, at: NOW });
    expect(dispute).toMatchObject({ status: 'open', jobId: 'job-1', agentId: a.id, evidence: { hop: 0 } });
    expect(dispute.id).toMatch(/^[0-9a-f-]{36}$/);

    // Stale disputes are voided; probation ends only for an agent with no dispute left open.
    await store.setProbation(a.id, true);
    const later = await store.openDispute({ jobId: 'job-2', agentId: a.id, reason: 'mismatch', evidence: null, at: NOW + 10_000 });
    expect(await store.voidStaleDisputes({ openedBefore: NOW + 1, at: NOW + 20_000, limit: 10 })).toEqual([{ id: dispute.id, agentId: a.id, jobId: 'job-1' }]);
    expect((await store.getAgent(a.id))!.probation).toBe(true);
    expect(await store.voidStaleDisputes({ openedBefore: NOW + 1, at: NOW + 20_000, limit: 10 })).toEqual([]);
    expect(await store.voidStaleDisputes({ openedBefore: NOW + 10_001, at: NOW + 20_000, limit: 10 })).toEqual([{ id: later.id, agentId: a.id, jobId: 'job-2' }]);
    expect((await store.getAgent(a.id))!.probation).toBe(false);
    const rows = await client`select status, evidence, resolved_at from disputes where agent_id = ${a.id} order by created_at`;
    expect(rows.map((r) => [r.status, r.evidence])).toEqual([
      ['rejected', { opened: { hop: 0 }, settled: { state: 'voided', reason: 'timeout' } }],
      ['rejected', { opened: null, settled: { state: 'voided', reason: 'timeout' } }],
    ]);
    expect(rows.every((r) => r.resolved_at !== null)).toBe(true);
  });

  it('keeps disputes the tick retries and route blocks, shows them to routing, ends them, as the memory store does', async () => {
    const m = manifest('trust', 4);
    const tid = await manifestHash(m);
    await store.publishModel({ manifest: m, id: tid, publishedBy: null, at: NOW });
    const pool = await store.createPool({ ownerAccountId: ownerId, name: 'trust', region: 'eu-west' });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const a = await agent(pool.id, [], { spans: [{ modelId: tid, layers: [0, 4] }] });
      await beat(a.id, 1, NOW);
      ids.push(a.id);
    }
    await checkTrustStore(store, { modelId: tid, agentIds: ids as [string, string, string, string], at: NOW });
    // Settled and voided disputes keep no prompt.
    const rows = await client`select status, check_request, retry_after, retry_note from disputes where agent_id in ${client(ids)} order by created_at`;
    expect(rows.every((r) => r.status === 'open' || (r.check_request === null && r.retry_after === null))).toBe(true);
  });

  it('publishes edge keys idempotently', async () => {
    await store.upsertEdgeKey({ id: 'k1', publicKey: publicKey(), at: NOW });
    const [k] = await store.listEdgeKeys();
    await store.upsertEdgeKey({ id: 'k1', publicKey: publicKey(), at: NOW + 1 });
    expect(await store.listEdgeKeys()).toEqual([k]);
  });
});

describe('registry store at 10,000 agents', () => {
  it('seeds in batches and answers candidates from the indexes, bounded by limit', async () => {
    // 100 models; 400 pools of 25 agents over 3 regions; each model served by 4 pools (100 agents).
    const modelIds: string[] = [];
    for (let i = 0; i < 100; i++) {
      const m = manifest(`scale-${i}`, 8);
      modelIds.push((await store.publishModel({ manifest: m, id: await manifestHash(m), publishedBy: null, at: NOW })).id);
    }
    const seeded = await seedAgents(db, { modelIds, numLayers: 8, count: 10_000, agentsPerPool: 25, regions: ['eu-west', 'us-east', 'ap-south'], slices: 2, heartbeatAt: NOW });
    expect(seeded.agentIds).toHaveLength(10_000);
    expect(seeded.poolIds).toHaveLength(400);
    await client`analyze`;

    const scaleId = modelIds[3]!;
    const [{ n }] = (await client`select count(*)::int as n from agent_spans where model_id = ${scaleId}`) as unknown as [{ n: number }];
    expect(n).toBe(100);
    const query = { heartbeatAfter: NOW - 30_000, limit: 64, region: 'ap-south' };
    const candidates = await store.listRouteCandidates(scaleId, query);
    expect(candidates).toHaveLength(64);
    const regions = candidates.map((c) => c.region);
    const firstOther = regions.findIndex((r) => r !== 'ap-south');
    expect(firstOther).toBeGreaterThan(0);
    expect(regions.slice(firstOther).every((r) => r !== 'ap-south')).toBe(true);
    expect(new Set(candidates.map((c) => `${c.layers[0]}-${c.layers[1]}`))).toEqual(new Set(['0-4', '4-8']));
    expect(await store.listRouteCandidates(scaleId, { heartbeatAfter: NOW - 30_000, limit: 1000 })).toHaveLength(100);

    for (const q of [query, { heartbeatAfter: NOW - 30_000, limit: 64 }]) {
      const { sql: text, params } = routeCandidatesQuery(db, scaleId, q).toSQL();
      const plan = (await client.unsafe(`explain ${text}`, params as never[])).map((r) => r['QUERY PLAN'] as string).join('\n');
      expect(plan, plan).toMatch(/(Index (Only )?Scan using|Bitmap Index Scan on) agent_spans_model_idx/);
      expect(plan, plan).toMatch(/Index Scan using agents_pkey/);
      expect(plan, plan).not.toMatch(/Seq Scan on (agents|agent_spans)\b/);
    }
  });
});
