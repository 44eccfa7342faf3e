import { describe, expect, it } from 'vitest';
import { createTestEdge, readSse } from './edge-fixtures.js';
import { ChainVerifier } from '../../protocol/attestation.js';
import { verifyTicket } from '../../protocol/ticket.js';
import { chatCompletionSchema, chatCompletionChunkSchema, completionSchema, jobAttestationSchema, modelListSchema, poolListSchema } from '../../protocol/api.js';
import { edgeKeysSchema } from '../../protocol/owner-api.js';

const completionChunkSchema = completionSchema.omit({ usage: true });

const chat = (extra: Record<string, unknown> = {}) => ({ model: 'tiny-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, seed: 7, ...extra });

describe('edge gateway happy paths', () => {
  it('answers a chat completion with verified tokens, route and attestation', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const res = await edge.post('/v1/chat/completions', chat());
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
    const body = chatCompletionSchema.parse(await res.json());
    const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hi' }]);
    const expected = edge.expectedTokens(7, promptIds, 8);
    expect(body.choices[0]!.message.content).toBe(edge.tokenizer.decode(expected));
    expect(body.choices[0]!.finish_reason).toBe('length');
    expect(body.usage).toEqual({ prompt_tokens: promptIds.length, completion_tokens: 8, total_tokens: promptIds.length + 8 });
    expect(body.route.hops.map((h) => h.agent_id)).toEqual([edge.agents[0]!.id]);
    expect(body.attestation.verified).toBe(true);
    expect(body.attestation.chunks).toBe(8);
    expect(res.headers.get('x-layernet-job-id')).toBe(body.attestation.job_id);
    expect(res.headers.get('x-layernet-route')).toBe(edge.agents[0]!.id);
    expect(res.headers.get('x-layernet-attestation')).toContain(body.attestation.chain_head!);
  });

  it('serves the full attestation chain, re-verifiable by the client', async () => {
    const edge = await createTestEdge({ numLayers: 6, agents: [{ layers: [0, 2] }, { layers: [2, 5] }, { layers: [5, 6] }] });
    const res = await edge.post('/v1/chat/completions', chat({ max_tokens: 5 }));
    const body = chatCompletionSchema.parse(await res.json());
    expect(body.route.hops.map((h) => h.layers)).toEqual([[0, 2], [2, 5], [5, 6]]);
    await edge.settle();
    const att = await edge.app.request(`/v1/jobs/${body.attestation.job_id}/attestation`, { headers: { authorization: `Bearer ${edge.client.key}` } });
    expect(att.status).toBe(200);
    const chain = jobAttestationSchema.parse(await att.json());
    expect(chain.attempts).toHaveLength(1);
    const attempt = chain.attempts[0]!;
    expect(attempt.outcome).toBe('completed');
    const ticket = await verifyTicket(attempt.ticket, chain.edge_public_key, Date.now());
    expect(ticket.ok).toBe(true);
    if (!ticket.ok) return;
    const keys = new Map(edge.agents.map((a) => [a.id, a.key.publicKey]));
    const verifier = new ChainVerifier({ ticket: ticket.ticket, ticketHash: ticket.hash, numLayers: chain.num_layers, keys });
    for (const chunk of attempt.chunks) expect((await verifier.verifyChunk(chunk)).ok).toBe(true);
    expect(verifier.verifiedTokens).toEqual(chain.token_ids);
    expect(verifier.chainHashes.at(-1)).toBe(body.attestation.chain_head);
    // Another account cannot read it.
    const other = await edge.newKey(['inference'], 'acct_other');
    const denied = await edge.app.request(`/v1/jobs/${body.attestation.job_id}/attestation`, { headers: { authorization: `Bearer ${other.key}` } });
    expect(denied.status).toBe(404);
  });

  it('streams SSE chunks ending in [DONE], with usage when asked', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const res = await edge.post('/v1/chat/completions', chat({ stream: true, stream_options: { include_usage: true } }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const { events } = await readSse(res);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => chatCompletionChunkSchema.parse(JSON.parse(e)));
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hi' }]);
    expect(text).toBe(edge.tokenizer.decode(edge.expectedTokens(7, promptIds, 8)));
    const final = chunks.find((c) => c.choices[0]?.finish_reason)!;
    expect(final.choices[0]!.finish_reason).toBe('length');
    expect(final.attestation?.verified).toBe(true);
    const usage = chunks.at(-1)!;
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual({ prompt_tokens: promptIds.length, completion_tokens: 8, total_tokens: promptIds.length + 8 });
  });

  it('sends keep-alive comments while the route warms up', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], delayMs: 120 }], config: { keepAliveMs: 20 } });
    const res = await edge.post('/v1/chat/completions', chat({ stream: true, max_tokens: 2 }));
    const { events, comments } = await readSse(res);
    expect(comments).toBeGreaterThan(0);
    expect(events.at(-1)).toBe('[DONE]');
  });

  it('serves text completions, stop strings and EOS', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }], eosAtStep: 6 });
    const promptIds = edge.tokenizer.encodePrompt('abc');
    const all = edge.tokenizer.decode(edge.expectedTokens(3, promptIds, 6));
    const res = await edge.post('/v1/completions', { model: 'tiny-test', prompt: 'abc', max_tokens: 20, seed: 3 });
    const body = completionSchema.parse(await res.json());
    expect(body.choices[0]!.text).toBe(all);
    expect(body.choices[0]!.finish_reason).toBe('stop');
    expect(body.usage!.completion_tokens).toBe(6);

    const stop = all.slice(3, 5);
    const cut = all.indexOf(stop);
    const res2 = await edge.post('/v1/completions', { model: 'tiny-test', prompt: 'abc', max_tokens: 20, seed: 3, stop, echo: true });
    const body2 = completionSchema.parse(await res2.json());
    expect(body2.choices[0]!.text).toBe('abc' + all.slice(0, cut));
    expect(body2.choices[0]!.finish_reason).toBe('stop');
    await edge.settle();
    // The agent was told to stop once the stop string ended the answer.
    expect(edge.agents[0]!.cancels.length).toBeGreaterThan(0);
    const streamed = await edge.post('/v1/completions', { model: 'tiny-test', prompt: 'abc', max_tokens: 20, seed: 3, stream: true, echo: true });
    const { events } = await readSse(streamed);
    expect(events.at(-1)).toBe('[DONE]');
    const parts = events.slice(0, -1).map((e) => completionChunkSchema.parse(JSON.parse(e)));
    expect(parts.map((p) => p.choices[0]?.text ?? '').join('')).toBe('abc' + all);
    expect(parts.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    const job = await edge.store.getJob(body2.id.replace(/^cmpl-/, ''), edge.client.record.accountId);
    expect(job?.status).toBe('completed');
    expect(job?.finishReason).toBe('stop');
    expect(job?.attempts.map((a) => a.outcome)).toEqual(['completed']);
    expect(edge.store.observations.filter((o) => o.ok)).toHaveLength(3);
  });

  it('lists models, pools and edge keys, and answers healthz', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 2] }, { layers: [2, 4], region: 'us-east' }] });
    const models = modelListSchema.parse(await (await edge.app.request('/v1/models', { headers: { authorization: `Bearer ${edge.client.key}` } })).json());
    expect(models.data).toEqual([expect.objectContaining({ id: 'tiny-test', manifest_hash: edge.modelId, num_layers: 4, agents: 2 })]);
    const pools = poolListSchema.parse(await (await edge.app.request('/v1/pools')).json());
    expect(pools.data.map((p) => p.region).sort()).toEqual(['eu-west', 'us-east']);
    expect(pools.data.flatMap((p) => p.agents.map((a) => a.id)).sort()).toEqual(edge.agents.map((a) => a.id).sort());
    const keys = edgeKeysSchema.parse(await (await edge.app.request('/v1/edge/keys')).json());
    expect(keys.keys[0]).toEqual({ id: 'edge-test-1', public_key: edge.edgeKey.publicKey });
    const health = await edge.app.request('/healthz');
    expect(health.status).toBe(200);
    expect(health.headers.get('x-request-id')).toBeTruthy();
  });

  it('records observations off the response path and folds them into the EWMAs', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    await edge.post('/v1/chat/completions', chat());
    await edge.settle();
    expect(edge.store.observations.filter((o) => o.agentId === edge.agents[0]!.id && o.ok)).toHaveLength(1);
    const [candidate] = await edge.store.listRouteCandidates(edge.modelId, { heartbeatAfter: 0, limit: 10 });
    expect(candidate!.ttftMsEwma).not.toBeNull();
    expect(candidate!.observations).toBe(1);
  });
});

describe('OpenAI client compatibility', () => {
  it('the official openai client reads answers and streams from the edge', async () => {
    const { default: OpenAI } = await import('openai');
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const client = new OpenAI({
      apiKey: edge.client.key,
      baseURL: 'http://edge.test/v1',
      maxRetries: 0,
      fetch: (url: string | URL | Request, init?: RequestInit) => Promise.resolve(edge.app.request(String(url), init)),
    });
    const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hi' }]);
    const expected = edge.tokenizer.decode(edge.expectedTokens(7, promptIds, 6));
    const answer = await client.chat.completions.create({ model: 'tiny-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 6, seed: 7 });
    expect(answer.choices[0]!.message.content).toBe(expected);
    expect(answer.usage?.completion_tokens).toBe(6);
    const stream = await client.chat.completions.create({ model: 'tiny-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 6, seed: 7, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: unknown = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(expected);
    expect(usage).toMatchObject({ completion_tokens: 6 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny-test']);
    await expect(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({ status: 404 });
  });
});

describe('client location', () => {
  it('x-layernet-region steers unobserved traffic to the client region; route.region pins it', async () => {
    // A fresh edge per case: once an agent has been observed, its measured latency counts instead.
    for (const [region, index] of [['us-east', 1], ['eu-west', 0]] as const) {
      const fresh = await createTestEdge({ agents: [{ layers: [0, 4], region: 'eu-west' }, { layers: [0, 4], region: 'us-east' }] });
      const res = await fresh.post('/v1/chat/completions', chat({ max_tokens: 2 }), fresh.client.key, { 'x-layernet-region': region });
      expect(chatCompletionSchema.parse(await res.json()).route.hops[0]!.agent_id).toBe(fresh.agents[index]!.id);
    }
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], region: 'eu-west' }, { layers: [0, 4], region: 'us-east' }] });
    const us = edge.agents[1]!.id;
    const pinned = await edge.post('/v1/chat/completions', chat({ max_tokens: 2, route: { region: 'us-east', allow_fallbacks: false } }), edge.client.key, { 'x-layernet-region': 'eu-west' });
    expect(chatCompletionSchema.parse(await pinned.json()).route.hops[0]!.agent_id).toBe(us);
  });
});
