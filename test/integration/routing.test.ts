/**
 * Live routing through the real edge: with one agent made slow on purpose (a delaying proxy in
 * front of it) and cheaper, `sort: "price"` picks the cheap slow agent and `sort: "latency"`
 * picks the fast one once the edge has observed both.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDelayProxy, type DelayProxy } from '../support/delay-proxy.js';
import { startNetwork, type TestNetwork } from '../support/network.js';

let net: TestNetwork;
let proxy: DelayProxy | undefined;

beforeAll(async () => {
  net = await startNetwork({
    // The proxy delays each event of the agent's stream: with one attestation chunk per step,
    // that is a delay per token, as a genuinely slow agent would show.
    edgeVars: { ATTEST_CHUNK_STEPS: '1' },
    agents: [
      {
        name: 'slow-cheap',
        region: 'eu-west',
        price: 0.1,
        endpointFor: async (port) => {
          proxy = await startDelayProxy(port, 60);
          return proxy.url;
        },
      },
      { name: 'fast-dear', region: 'eu-west', price: 0.5 },
    ],
  });
  await net.waitForAgents(2);
}, 240_000);

afterAll(async () => {
  await net?.close();
  await proxy?.close();
});

async function servedBy(sort: 'price' | 'latency'): Promise<string> {
  const res = await fetch(`${net.edgeUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: net.modelName, messages: [{ role: 'user', content: 'route me' }], max_tokens: 6, seed: 1, route: { sort } }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { route: { hops: { agent_id: string }[] } };
  const names = Object.fromEntries(net.agents.map((a) => [a.id, a.name]));
  return names[body.route.hops[0]!.agent_id]!;
}

describe('routing on live figures', () => {
  it('picks the cheaper route under sort "price", even when it is slow', async () => {
    const picks: string[] = [];
    for (let i = 0; i < 6; i++) picks.push(await servedBy('price'));
    // 5% of requests explore a random route; the rest must be the cheap one.
    expect(picks.filter((p) => p === 'slow-cheap').length).toBeGreaterThanOrEqual(5);
  });

  it('picks the faster route under sort "latency" once both have been observed', async () => {
    // Make sure the fast agent has observations too (the edge records them off the response path).
    for (let i = 0; i < 3; i++) {
      await servedBy('latency');
      await new Promise((r) => setTimeout(r, 400));
    }
    const picks: string[] = [];
    for (let i = 0; i < 8; i++) picks.push(await servedBy('latency'));
    expect(picks.filter((p) => p === 'fast-dear').length).toBeGreaterThanOrEqual(6);
    const [row] = await net.registry.sql<{ ttft: number | null; per_token: number | null }[]>`
      select ttft_ms_ewma as ttft, per_token_ms_ewma as per_token from agents where id = ${net.agents[0]!.id}`;
    expect(row!.per_token).toBeGreaterThan(30);
  });
});
