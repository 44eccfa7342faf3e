/**
 * What a job costs its API key and counts against its rate limit (edge/dispatch/generate.ts
 * `recordFinish`, edge/auth/limits.ts `settleUsage`): prompt and generated tokens at the price of
 * the route that delivered the answer; an answer cut short by a stop string is charged for what
 * was generated; a job that failed costs nothing and hands its token reservation back.
 */
import { describe, expect, it } from 'vitest';
import { chatCompletionSchema } from '../../protocol/api.js';
import { usageWindowStart } from '../../db/registry-contract.js';
import { createTestEdge, type TestEdge } from './edge-fixtures.js';

const fast = { ttftMs: 10, perTokenMs: 1 };
const slow = { ttftMs: 200, perTokenMs: 20 };
const limits = { tokensPerMinute: 100_000, requestsPerMinute: 1_000 };
const chat = (extra: Record<string, unknown> = {}) => ({ model: 'tiny-test', messages: [{ role: 'user', content: 'hello' }], max_tokens: 12, seed: 11, ...extra });

/** The client key's spend, micro-USD. */
async function spent(edge: TestEdge): Promise<number> {
  return (await edge.store.getApiKeyByPrefix(edge.client.record.prefix))!.spentMicroUsd;
}

/** Tokens counted against the client key's limit in the windows from `since` to now. */
async function usedTokens(edge: TestEdge, since: number): Promise<number> {
  const windows = new Set([usageWindowStart(since), usageWindowStart(Date.now())]);
  let tokens = 0;
  for (const w of windows) tokens += (await edge.store.addUsage(edge.client.record.id, w, { requests: 0, tokens: 0 })).tokens;
  return tokens;
}

const cost = (priceUsdPerMTok: number, tokens: number) => Math.ceil((priceUsdPerMTok * 1e6 * tokens) / 1e6);

describe('what a job is charged', () => {
  it('a completed job: prompt and generated tokens at the route\'s price, and exactly those tokens against the limit', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], ...fast, price: 2 }], keyLimits: limits });
    const since = Date.now();
    const res = await edge.post('/v1/chat/completions', chat());
    const body = chatCompletionSchema.parse(await res.json());
    await edge.settle();
    expect(body.usage.completion_tokens).toBe(12);
    expect(await spent(edge)).toBe(cost(2, body.usage.total_tokens));
    // The reservation (prompt + max_tokens) was replaced by what was used.
    expect(await usedTokens(edge, since)).toBe(body.usage.total_tokens);
  });

  it('an answer ended early by a stop string is charged for the tokens generated, not max_tokens', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], ...fast, price: 2 }], keyLimits: limits });
    const full = chatCompletionSchema.parse(await (await edge.post('/v1/chat/completions', chat())).json());
    await edge.settle();
    const before = await spent(edge);
    const text = full.choices[0]!.message.content ?? '';
    // A stop string a few characters into the answer the same seed gives.
    const stop = text.slice(3, 5);
    expect(stop.length).toBe(2);
    const since = Date.now();
    const cut = chatCompletionSchema.parse(await (await edge.post('/v1/chat/completions', chat({ stop }))).json());
    await edge.settle();
    expect(cut.choices[0]!.finish_reason).toBe('stop');
    expect(cut.usage.completion_tokens).toBeLessThan(12);
    expect((await spent(edge)) - before).toBe(cost(2, cut.usage.total_tokens));
    expect(await usedTokens(edge, since)).toBe(full.usage.total_tokens + cut.usage.total_tokens);
  });

  it('after a failover, once, at the price of the route that delivered the answer', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], ...fast, price: 1, behaviour: { kind: 'die', afterTokens: 5 } }, { layers: [0, 4], ...slow, price: 3 }], keyLimits: limits });
    const res = await edge.post('/v1/chat/completions', chat());
    const body = chatCompletionSchema.parse(await res.json());
    await edge.settle();
    expect(body.route.attempts).toBe(2);
    expect(body.usage.completion_tokens).toBe(12);
    expect(await spent(edge)).toBe(cost(3, body.usage.total_tokens));
  });

  it('a job that failed on every route costs nothing and hands its token reservation back', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], ...fast, price: 2, behaviour: { kind: 'http-error' } }, { layers: [0, 4], ...slow, price: 2, behaviour: { kind: 'unreachable' } }], keyLimits: limits });
    const since = Date.now();
    for (const stream of [false, true]) {
      const res = await edge.post('/v1/chat/completions', chat({ stream }));
      expect(res.status).toBeGreaterThanOrEqual(500);
      await res.body?.cancel();
    }
    await edge.settle();
    expect(await spent(edge)).toBe(0);
    expect(await usedTokens(edge, since)).toBe(0);
  });
});
