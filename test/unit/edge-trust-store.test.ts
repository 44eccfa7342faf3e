/** The memory store keeps retryable disputes and route blocks as the Postgres store does (test/support/trust-store-contract.ts). */
import { describe, it } from 'vitest';
import { createMemoryStore } from '../../edge/store/memory.js';
import { manifestHash } from '../../protocol/manifest.js';
import { checkTrustStore } from '../support/trust-store-contract.js';
import { checkAbandonedJobs } from '../support/jobs-contract.js';
import { testManifest } from './edge-fixtures.js';

const HW = { devices: [{ kind: 'cpu' as const, name: 'test', memoryBytes: 1 }], memoryBytes: 1, platform: 'linux' };

describe('memory store: disputes the tick retries, route blocks', () => {
  it('claims due disputes once per retry time, keeps third checks, shows accusations and blocks to routing, ends blocks and their probation', async () => {
    const store = createMemoryStore();
    const at = Date.UTC(2026, 0, 1);
    const manifest = testManifest(4, 'trust');
    const modelId = await manifestHash(manifest);
    await store.publishModel({ manifest, id: modelId, publishedBy: null, at });
    const pool = await store.createPool({ ownerAccountId: 'owner', name: 'p', region: 'eu-west' });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const key = `${'k'.repeat(42)}${i}`;
      const a = await store.registerAgent({ poolId: pool.id, ownerAccountId: 'owner', endpoint: `http://a${i}.test`, publicKey: key, hardware: HW, priceMicroUsdPerMTok: 1, throughputTokensPerS: 1, spans: [{ modelId, layers: [0, 4] }] }, at);
      await store.applyHeartbeat({ agentId: a.id, seq: 1, sentAt: at, receivedAt: at, queueDepth: 0, load: 0, freeKvBytes: 0, activeSessions: 0 });
      ids.push(a.id);
    }
    await checkTrustStore(store, { modelId, agentIds: ids as [string, string, string, string], at });
  });

  it('ends jobs an edge left running past their time, as failed and uncharged', async () => {
    const store = createMemoryStore();
    await checkAbandonedJobs(store, { accountId: 'acct', apiKeyId: 'key', modelId: 'model', at: Date.UTC(2026, 0, 1) });
  });
});
