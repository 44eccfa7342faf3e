/**
 * What every `RegistryStore` does with jobs an edge left `running` (it crashed or restarted
 * before writing their end): the trust tick ends them as failed and uncharged, oldest first,
 * never a job still within its time or one that ended. Checked the same way against the memory
 * double (test/unit/edge-trust-store.test.ts) and Postgres (test/integration/registry-store.test.ts).
 *
 * @example
 * await checkAbandonedJobs(store, { accountId, apiKeyId, modelId, at: NOW });
 */
import { expect } from 'vitest';
import type { JobAttemptRecord, RegistryStore } from '../../db/registry-contract.js';

export async function checkAbandonedJobs(store: RegistryStore, o: { accountId: string; apiKeyId: string; modelId: string; at: number }): Promise<void> {
  const start = (createdAt: number) => {
    const id = crypto.randomUUID();
    return store.recordJobStart({ id, accountId: o.accountId, apiKeyId: o.apiKeyId, modelId: o.modelId, createdAt, route: ['a'], promptTokens: 3 }).then(() => id);
  };
  const oldest = await start(o.at - 30_000);
  const older = await start(o.at - 20_000);
  const finished = await start(o.at - 25_000);
  await store.recordJobFinish({ id: finished, status: 'completed', finishReason: 'stop', attempts: [] as JobAttemptRecord[], tokenIds: [1], promptTokens: 3, completionTokens: 1, costMicroUsd: 7, finishedAt: o.at - 24_000 });
  const recent = await start(o.at - 5_000);

  expect(await store.failAbandonedJobs({ startedBefore: o.at - 10_000, at: o.at, limit: 1 })).toEqual([oldest]);
  expect(await store.failAbandonedJobs({ startedBefore: o.at - 10_000, at: o.at, limit: 10 })).toEqual([older]);
  expect(await store.failAbandonedJobs({ startedBefore: o.at - 10_000, at: o.at, limit: 10 })).toEqual([]);
  expect(await store.getJob(oldest, o.accountId)).toMatchObject({ status: 'failed', finishReason: 'error', costMicroUsd: 0, finishedAt: o.at });
  expect(await store.getJob(finished, o.accountId)).toMatchObject({ status: 'completed', costMicroUsd: 7 });
  expect(await store.getJob(recent, o.accountId)).toMatchObject({ status: 'running', finishedAt: null });
}
