/**
 * The SDK against the real edge app (edge/app.ts, in-process) with fake agents that sign real
 * attestations (edge-fixtures.ts): every call here goes through the edge's real validation,
 * routing, failover and attestation record, and the SDK's `verify` re-checks it all.
 */
import { describe, expect, it } from 'vitest';
import { createTestEdge, type TestEdge } from './edge-fixtures.js';
import { LayerNet, NotFoundError, AuthenticationError } from '../../sdk/src/index.js';

function sdk(edge: TestEdge, extra: ConstructorParameters<typeof LayerNet>[0] = {}) {
  return new LayerNet({
    apiKey: edge.client.key,
    baseURL: 'http://edge.local/v1',
    verify: true,
    fetch: async (url, init) => edge.app.fetch(new Request(url, init)),
    ...extra,
  });
}

const messages = [{ role: 'user' as const, content: 'hi' }];

describe('SDK against the edge app', () => {
  it('verifies a chat completion served by a three-hop route', async () => {
    const edge = await createTestEdge({ numLayers: 6, agents: [{ layers: [0, 2] }, { layers: [2, 5] }, { layers: [5, 6] }] });
    const completion = await sdk(edge).chat.completions.create({ model: 'tiny-test', messages, max_tokens: 6, seed: 7 });
    const promptIds = edge.tokenizer.encodeChat(messages);
    const expected = edge.expectedTokens(7, promptIds, 6);
    expect(completion.choices[0]?.message.content).toBe(edge.tokenizer.decode(expected));
    expect(completion.route.hops.map((h) => h.layers)).toEqual([[0, 2], [2, 5], [5, 6]]);
    expect(completion.verification?.tokenIds).toEqual(expected);
    expect(completion.verification?.agents).toHaveLength(3);
  });

  it('verifies a stream at its end, with usage and route', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const decode = (ids: readonly number[]) => edge.tokenizer.decode([...ids]);
    const stream = await sdk(edge, { verify: { decode } }).chat.completions.create({ model: 'tiny-test', messages, max_tokens: 5, seed: 3, stream: true, stream_options: { include_usage: true } });
    const text = await stream.toText();
    expect(text).toBe(edge.tokenizer.decode(edge.expectedTokens(3, edge.tokenizer.encodeChat(messages), 5)));
    expect(stream.finalUsage?.completion_tokens).toBe(5);
    expect(stream.route?.hops).toHaveLength(1);
    expect(stream.verification?.chunks).toBe(5);
  });

  it('verifies a job that failed over mid-stream to another route', async () => {
    const edge = await createTestEdge({
      agents: [
        { layers: [0, 4], price: 0.1, behaviour: { kind: 'die', afterTokens: 3 } },
        { layers: [0, 4], price: 5 },
      ],
      random: () => 0,
    });
    const completion = await sdk(edge).chat.completions.create({ model: 'tiny-test', messages, max_tokens: 8, seed: 11, route: { sort: 'price' } });
    expect(completion.route.attempts).toBe(2);
    expect(completion.verification?.attempts).toBe(2);
    expect(completion.verification?.tokenIds).toEqual(edge.expectedTokens(11, edge.tokenizer.encodeChat(messages), 8));
  });

  it('verifies text completions and lists models and pools', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const client = sdk(edge);
    const c = await client.completions.create({ model: 'tiny-test', prompt: 'abc', max_tokens: 4 });
    expect(c.verification?.tokenIds).toHaveLength(4);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toContain('tiny-test');
    const pools = await client.pools.list();
    expect(pools.data[0]?.agents[0]?.public_key).toBe(edge.agents[0]!.key.publicKey);
  });

  it('surfaces the edge errors as typed errors', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    await expect(sdk(edge).chat.completions.create({ model: 'no-such-model', messages })).rejects.toBeInstanceOf(NotFoundError);
    await expect(sdk(edge, { apiKey: 'ln_wrong' }).models.list()).rejects.toBeInstanceOf(AuthenticationError);
  });
});
