/**
 * The official `openai` client against the real network: edge in workerd, a real registry,
 * real agents on onnxruntime-node (one whole-model agent and a two-hop chain across regions).
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LayerNet, AuthenticationError } from '../../sdk/src/index.js';
import { startNetwork, type TestNetwork } from '../support/network.js';

let net: TestNetwork;
let client: OpenAI;

beforeAll(async () => {
  net = await startNetwork({
    // No exploration: the price-routing test needs the best route every time.
    edgeVars: { EXPLORATION_SHARE: '0' },
    agents: [
      { name: 'whole', region: 'eu-west', price: 0.4 },
      { name: 'head', region: 'eu-west', price: 0.1, layers: [0, 2] },
      { name: 'tail', region: 'us-east', price: 0.15, layers: [2, 4] },
    ],
  });
  await net.waitForAgents(3);
  client = new OpenAI({ baseURL: `${net.edgeUrl}/v1`, apiKey: net.apiKey, maxRetries: 0 });
}, 240_000);

afterAll(async () => {
  await net?.close();
});

describe('the openai client through the edge', () => {
  it('lists the model with its manifest hash and live agents', async () => {
    const list = await client.models.list();
    const m = list.data.find((x) => x.id === net.modelName) as unknown as { manifest_hash: string; agents: number; num_layers: number } | undefined;
    expect(m).toBeDefined();
    expect(m!.manifest_hash).toBe(net.modelId);
    expect(m!.num_layers).toBe(net.numLayers);
    expect(m!.agents).toBeGreaterThanOrEqual(3);
  });

  it('answers a chat completion with usage, a route and a verified attestation', async () => {
    const res = await client.chat.completions.create({
      model: net.modelName,
      messages: [{ role: 'user', content: 'Hello there' }],
      max_tokens: 12,
      seed: 3,
      temperature: 0,
    });
    const body = res as unknown as { route: { hops: { agent_id: string; layers: [number, number] }[] }; attestation: { verified: boolean; job_id: string; chunks: number } };
    expect(res.choices[0]!.message.role).toBe('assistant');
    expect(typeof res.choices[0]!.message.content).toBe('string');
    expect(res.usage!.completion_tokens).toBeGreaterThan(0);
    expect(res.usage!.completion_tokens).toBeLessThanOrEqual(12);
    expect(res.usage!.prompt_tokens).toBeGreaterThan(3);
    expect(body.attestation.verified).toBe(true);
    // Default attestation chunks: the prefill alone, then up to 16 steps (1 s open at most when
    // not streamed), so a 12-token answer is signed twice along the route.
    expect(body.attestation.chunks).toBe(Math.min(res.usage!.completion_tokens, 2));
    // The hops cover every layer exactly once, in order.
    let cursor = 0;
    for (const hop of body.route.hops) {
      expect(hop.layers[0]).toBe(cursor);
      cursor = hop.layers[1];
    }
    expect(cursor).toBe(net.numLayers);

    const chain = await fetch(`${net.edgeUrl}/v1/jobs/${body.attestation.job_id}/attestation`, { headers: { authorization: `Bearer ${net.apiKey}` } });
    expect(chain.status).toBe(200);
    const full = (await chain.json()) as { token_ids: number[]; attempts: unknown[] };
    expect(full.token_ids.length).toBe(res.usage!.completion_tokens);
    expect(full.attempts.length).toBeGreaterThanOrEqual(1);
  });

  it('streams the same tokens as the non-streamed call for the same seed', async () => {
    const params = { model: net.modelName, messages: [{ role: 'user' as const, content: 'Count with me' }], max_tokens: 10, seed: 11, temperature: 0.8 };
    const whole = await client.chat.completions.create(params);
    const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: { completion_tokens: number } | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(usage?.completion_tokens).toBe(whole.usage!.completion_tokens);
  });

  it('cancels the job on the agents when the client goes away mid-stream', async () => {
    const ac = new AbortController();
    const res = await fetch(`${net.edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: net.modelName, messages: [{ role: 'user', content: 'a very long answer please' }], max_tokens: 1500, seed: 2, stream: true }),
      signal: ac.signal,
    });
    const jobId = res.headers.get('x-layernet-job-id')!;
    const reader = res.body!.getReader();
    for (let i = 0; i < 3; i++) await reader.read();
    ac.abort();
    await reader.cancel().catch(() => undefined);
    // The head agent logs the job's end; a cancelled job ends well before its 1500 tokens.
    let line: string | undefined;
    for (let i = 0; i < 100 && !line; i++) {
      line = net.agents.flatMap((a) => a.logs).find((l) => l.includes(jobId) && l.includes('job finished'));
      if (!line) await new Promise((r) => setTimeout(r, 100));
    }
    expect(line, 'the head agent never logged the end of the job').toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({ jobId, outcome: 'cancelled' });
  });

  it('answers a text completion', async () => {
    const res = await client.completions.create({ model: net.modelName, prompt: 'Once upon a time', max_tokens: 8, seed: 5 });
    expect(res.choices[0]!.text.length).toBeGreaterThan(0);
    expect(res.usage!.completion_tokens).toBeGreaterThan(0);
  });

  it('routes by price: the cheap chain under sort "price"', async () => {
    const res = (await client.chat.completions.create({
      model: net.modelName,
      messages: [{ role: 'user', content: 'cheap please' }],
      max_tokens: 4,
      // @ts-expect-error the route extension is not in the openai types
      route: { sort: 'price' },
    })) as unknown as { route: { hops: { agent_id: string }[] } };
    const byName = Object.fromEntries(net.agents.map((a) => [a.id, a.name]));
    expect(res.route.hops.map((h) => byName[h.agent_id])).toEqual(['head', 'tail']);
  });

  it('maps errors to OpenAI statuses: 401 bad key, 404 unknown model, 400 bad body', async () => {
    const bad = new OpenAI({ baseURL: `${net.edgeUrl}/v1`, apiKey: 'ln_aaaaaaaaaaaa_' + 'A'.repeat(43), maxRetries: 0 });
    await expect(bad.models.list()).rejects.toMatchObject({ status: 401 });
    await expect(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] })).rejects.toMatchObject({ status: 404 });
    await expect(client.chat.completions.create({ model: net.modelName, messages: [], max_tokens: -1 })).rejects.toMatchObject({ status: 400 });
  });
});

describe('the LayerNet SDK against the real network', () => {
  it('gives the same answer as the official openai client for the same seeded request, and verifies it client-side', async () => {
    const sdk = new LayerNet({ baseURL: net.edgeUrl, apiKey: net.apiKey, verify: true, maxRetries: 0 });
    const params = { model: net.modelName, messages: [{ role: 'user' as const, content: 'Same answer twice?' }], max_tokens: 12, seed: 99, temperature: 0.7 };
    const ours = await sdk.chat.completions.create(params);
    const theirs = await client.chat.completions.create(params);
    expect(ours.choices[0]!.message.content).toBe(theirs.choices[0]!.message.content);
    expect(ours.verification?.verified).toBe(true);
    expect(ours.verification?.chunks).toBe(Math.min(ours.usage!.completion_tokens, 2));
    expect(ours.verification?.chainHead).toBe(ours.attestation.chain_head);
  });

  it('streams with verification and lists pools with the agents\' registered keys', async () => {
    const sdk = new LayerNet({ baseURL: net.edgeUrl, apiKey: net.apiKey, verify: true, maxRetries: 0 });
    const stream = await sdk.chat.completions.create({ model: net.modelName, messages: [{ role: 'user', content: 'stream it' }], max_tokens: 8, seed: 4, stream: true });
    const text = await stream.toText();
    expect(typeof text).toBe('string');
    expect(stream.verification?.verified).toBe(true);
    const pools = await sdk.pools.list();
    const ids = pools.data.flatMap((p) => p.agents.map((a) => a.id));
    for (const a of net.agents) expect(ids).toContain(a.id);
  });

  it('raises AuthenticationError with the request id for a bad key', async () => {
    const sdk = new LayerNet({ baseURL: net.edgeUrl, apiKey: 'ln_aaaaaaaaaaaa_' + 'B'.repeat(43), maxRetries: 0 });
    const err = await sdk.models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as AuthenticationError).requestId).toMatch(/^req_/);
  });

  it('publishes the OpenAPI 3.1 document and a docs page', async () => {
    const doc = (await (await fetch(`${net.edgeUrl}/openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toContain('/v1/chat/completions');
    const page = await fetch(`${net.edgeUrl}/docs`);
    expect(page.headers.get('content-type')).toContain('text/html');
  });
});
