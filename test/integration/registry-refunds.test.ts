/**
 * The Postgres `RegistryStore` hands a job found bad back to its key (DATABASE_URL's server, or
 * embedded PGlite): once per job under concurrency, recorded on the job and in the ledger, never
 * for an unfinished job, never below zero; and a job's disputes read with their settlement
 * (dismissed or voided) told apart.
 */
import type postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toBase64Url } from '../../protocol/bytes.js';
import type { RegistryDb } from '../../db/client.js';
import { createApiKey } from '../../db/seed.js';
import type { RegistryStore } from '../../db/registry-contract.js';
import { openRegistryStore, type RegistryStoreFixture } from '../support/registry-store.js';

let reg: RegistryStoreFixture;
let client: postgres.Sql;
let db: RegistryDb;
let store: RegistryStore;
let userId: string;
let ownerId: string;
let modelId: string;
const NOW = Date.UTC(2026, 0, 1, 12);

beforeAll(async () => {
  reg = await openRegistryStore();
  ({ client, db, store, userId, ownerId, modelId } = reg);
});
afterAll(() => reg?.close());

/** A finished job of `cost` on a fresh key, charged as the edge charges it. */
async function chargedJob(cost: number, opts: { finished?: boolean; alsoSpent?: number } = {}) {
  const key = await createApiKey(db, { accountId: userId, scopes: ['inference'], name: 'refunds' });
  const jobId = crypto.randomUUID();
  await store.recordJobStart({ id: jobId, accountId: userId, apiKeyId: key.id, modelId, createdAt: NOW, route: ['a1'], promptTokens: 3 });
  if (opts.finished !== false) {
    await store.recordJobFinish({ id: jobId, status: 'completed', finishReason: 'stop', attempts: [], tokenIds: [5], promptTokens: 3, completionTokens: 1, costMicroUsd: cost, finishedAt: NOW + 100 });
  }
  await store.chargeApiKey(key.id, cost + (opts.alsoSpent ?? 0));
  return { jobId, keyId: key.id, prefix: key.prefix };
}

const spentOf = async (prefix: string) => (await store.getApiKeyByPrefix(prefix))!.spentMicroUsd;
const refundRows = (jobId: string) => client`select kind, account_id, job_id, amount_micro_usd::int as amount, reason, evidence from ledger_entries where job_id = ${jobId} and kind = 'refund'`;

describe('registry store: refunds of jobs found bad', () => {
  it('hands the cost back to the key once, records it on the job and in the ledger', async () => {
    const { jobId, keyId, prefix } = await chargedJob(500, { alsoSpent: 100 });
    expect(await spentOf(prefix)).toBe(600);
    const refund = await store.refundJob({ jobId, reason: 'sampling_mismatch', evidence: { disputeId: 'd-1', agentId: 'a1' }, at: NOW + 1_000 });
    expect(refund).toEqual({ jobId, accountId: userId, apiKeyId: keyId, amountMicroUsd: 500, reason: 'sampling_mismatch', at: NOW + 1_000 });
    expect(await spentOf(prefix)).toBe(100);
    expect((await store.getJob(jobId, userId))!.refund).toEqual({ amountMicroUsd: 500, reason: 'sampling_mismatch', at: NOW + 1_000 });
    expect((await refundRows(jobId)).map((r) => ({ ...r }))).toEqual([
      { kind: 'refund', account_id: userId, job_id: jobId, amount: 500, reason: 'sampling_mismatch', evidence: { disputeId: 'd-1', agentId: 'a1' } },
    ]);
    // Again: nothing more.
    expect(await store.refundJob({ jobId, reason: 'hidden_mismatch', evidence: null, at: NOW + 2_000 })).toBeNull();
    expect(await spentOf(prefix)).toBe(100);
    expect(await refundRows(jobId)).toHaveLength(1);
    expect((await store.getJob(jobId, userId))!.refund?.reason).toBe('sampling_mismatch');
  });

  it('concurrent refunds of one job hand it back exactly once', async () => {
    const { jobId, prefix } = await chargedJob(700, { alsoSpent: 50 });
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => store.refundJob({ jobId, reason: `r${i}`, evidence: null, at: NOW + i })));
    expect(results.filter((r) => r !== null)).toHaveLength(1);
    expect(await spentOf(prefix)).toBe(50);
    expect(await refundRows(jobId)).toHaveLength(1);
  });

  it('refunds nothing for an unknown or unfinished job; a free job is marked without a ledger entry; the spend never goes negative', async () => {
    expect(await store.refundJob({ jobId: crypto.randomUUID(), reason: 'x', evidence: null, at: NOW })).toBeNull();
    const running = await chargedJob(0, { finished: false });
    expect(await store.refundJob({ jobId: running.jobId, reason: 'x', evidence: null, at: NOW })).toBeNull();
    expect((await store.getJob(running.jobId, userId))!.refund).toBeNull();

    const free = await chargedJob(0);
    expect(await store.refundJob({ jobId: free.jobId, reason: 'x', evidence: null, at: NOW })).toMatchObject({ amountMicroUsd: 0 });
    expect((await store.getJob(free.jobId, userId))!.refund).toMatchObject({ amountMicroUsd: 0 });
    expect(await refundRows(free.jobId)).toHaveLength(0);

    // The charge has not landed (or was smaller): the spend stops at 0.
    const early = await chargedJob(300);
    await client`update api_keys set spent_micro_usd = 100 where prefix = ${early.prefix}`;
    await store.refundJob({ jobId: early.jobId, reason: 'x', evidence: null, at: NOW });
    expect(await spentOf(early.prefix)).toBe(0);
  });

  it("lists a job's disputes with their settlement: open, upheld, dismissed, voided", async () => {
    const pool = await store.createPool({ ownerAccountId: ownerId, name: 'refunds', region: 'eu-west' });
    const agent = await store.registerAgent(
      {
        poolId: pool.id,
        ownerAccountId: ownerId,
        endpoint: 'http://127.0.0.1:1/agent',
        publicKey: toBase64Url(crypto.getRandomValues(new Uint8Array(32))),
        hardware: { devices: [{ kind: 'cpu', name: 'test', memoryBytes: 1 }], memoryBytes: 1, platform: 'linux' },
        priceMicroUsdPerMTok: 1,
        throughputTokensPerS: 1,
        spans: [{ modelId, layers: [0, 4] }],
      },
      NOW,
    );
    const jobId = crypto.randomUUID();
    const open = (at: number) => store.openDispute({ jobId, agentId: agent.id, reason: 'hidden_mismatch', evidence: { n: at }, at });
    const [upheld, dismissed, voided, stillOpen] = [await open(NOW), await open(NOW + 1), await open(NOW + 2), await open(NOW + 10_000)];
    await store.settleDispute(upheld.id, { status: 'upheld', checkerAgentIds: [], evidence: { state: 'upheld', verdicts: [] }, at: NOW + 5 });
    await store.settleDispute(dismissed.id, { status: 'rejected', checkerAgentIds: [], evidence: { state: 'dismissed', verdicts: [] }, at: NOW + 6 });
    expect(await store.voidStaleDisputes({ openedBefore: NOW + 3, at: NOW + 7, limit: 10 })).toEqual([{ id: voided.id, agentId: agent.id, jobId }]);
    const listed = await store.listJobDisputes(jobId, 10);
    expect(listed.map((d) => [d.id, d.status])).toEqual([
      [upheld.id, 'upheld'],
      [dismissed.id, 'dismissed'],
      [voided.id, 'voided'],
      [stillOpen.id, 'open'],
    ]);
    expect(listed[0]).toMatchObject({ agentId: agent.id, openedAt: NOW, resolvedAt: NOW + 5 });
    expect(listed[3]!.resolvedAt).toBeNull();
    expect(await store.listJobDisputes(jobId, 2)).toHaveLength(2);
    expect(await store.listJobDisputes(crypto.randomUUID(), 10)).toEqual([]);
  });
});
