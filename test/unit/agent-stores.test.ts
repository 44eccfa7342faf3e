/**
 * The agent's bounded stores: the nonce cache (replays refused until expiry, never forgets a live
 * nonce when full), the committed-input store (age, count and byte bounds), and session isolation
 * between concurrent jobs on one chain.
 */
import { describe, expect, it } from 'vitest';
import { NonceCache } from '../../pool-agent/server/nonce-cache.js';
import { InputStore } from '../../pool-agent/server/input-store.js';
import { generate } from '../../pool-agent/runtime/pipeline.js';
import { fakeModel, fakeSpan } from '../support/fake-span.js';
import { createTestEdge, GREEDY, runJob, startChain, tokensOf } from '../support/agents.js';

describe('NonceCache', () => {
  it('refuses a replay until the ticket expires, and refuses new nonces rather than forget live ones', () => {
    let now = 0;
    const c = new NonceCache(2, () => now, 0);
    expect(c.claim('a', 100)).toBe(true);
    expect(c.claim('a', 100)).toBe(false);
    expect(c.claim('b', 50)).toBe(true);
    expect(c.claim('c', 100)).toBe(false);
    now = 60;
    expect(c.claim('c', 100)).toBe(true);
    expect(c.size).toBe(2);
    now = 101;
    expect(c.claim('a', 200)).toBe(true);
  });
});

describe('InputStore', () => {
  it('evicts by age, job count and total bytes, oldest first', () => {
    let now = 0;
    const s = new InputStore({ ttlMs: 1000, maxJobs: 2, maxBytes: 10_000 }, () => now);
    const meta = { dtype: 'float32' as const, hiddenSize: 4 };
    s.record('j1', 0, meta, { steps: [0, 1], inputTokenIds: [1, 2, 3] });
    s.record('j1', 0, meta, { steps: [1, 2], inputTokenIds: [4] });
    s.record('j2', 1, meta, { steps: [0, 1], input: new Uint8Array(16) });
    expect(s.get('j1', 0)!.chunks.map((c) => c.steps)).toEqual([[0, 1], [1, 2]]);
    s.record('j3', 1, meta, { steps: [0, 1], input: new Uint8Array(16) });
    expect(s.get('j1', 0)).toBeUndefined();
    expect(s.get('j2', 1)).toBeDefined();
    s.record('j4', 1, meta, { steps: [0, 1], input: new Uint8Array(9_950) });
    expect(s.get('j3', 1)).toBeUndefined();
    expect(s.bytes).toBeLessThanOrEqual(10_000);
    now = 2_000;
    expect(s.get('j4', 1)).toBeUndefined();
    expect(s.size).toBe(0);
  });

  it('copies what it keeps', () => {
    const s = new InputStore();
    const buf = new Uint8Array([1, 2, 3, 4]);
    s.record('j', 1, { dtype: 'float32', hiddenSize: 1 }, { steps: [0, 1], input: buf });
    buf[0] = 9;
    expect([...s.get('j', 1)!.chunks[0]!.input!]).toEqual([1, 2, 3, 4]);
  });
});

describe('concurrent jobs on one chain', () => {
  it('keeps each job on its own KV sessions', async () => {
    const model = await fakeModel();
    const edge = await createTestEdge();
    const chain = await startChain({ edge, spans: [fakeSpan(model, [0, 2], { delayMs: 2 }), fakeSpan(model, [2, 4], { delayMs: 3 })] });
    try {
      const prompts = [[1, 2, 3], [1, 9, 9, 9, 4], [1, 30], [1, 5, 6, 7]];
      const expected = await Promise.all(prompts.map(async (p) => (await generate({ stages: [fakeSpan(model, [0, 4]).openSession()], promptIds: p, sampling: GREEDY, maxTokens: 12 })).tokens));
      const results = await Promise.all(
        prompts.map(async (p) => {
          const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: p, maxTokens: 12 });
          return tokensOf((await runJob(chain.url, { signedTicket: signed, promptIds: p, prefixIds: [] })).events);
        }),
      );
      expect(results).toEqual(expected);
    } finally {
      await chain.close();
    }
  });
});
