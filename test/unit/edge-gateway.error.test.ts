import { describe, expect, it } from 'vitest';
import { createTestEdge, readSse } from './edge-fixtures.js';
import { errorEnvelopeSchema } from '../../protocol/errors.js';

const chat = (extra: Record<string, unknown> = {}) => ({ model: 'tiny-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, seed: 1, ...extra });

async function expectError(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('x-request-id')).toBeTruthy();
  const body = errorEnvelopeSchema.parse(await res.json());
  expect(body.error.code).toBe(code);
  return body;
}

describe('edge error statuses', () => {
  it('400 for invalid bodies and JSON, 415 for another content type', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const bad = await expectError(await edge.post('/v1/chat/completions', { model: 'tiny-test' }), 400, 'invalid_request');
    expect(bad.error.param).toBe('messages');
    await expectError(await edge.post('/v1/chat/completions', chat({ temperature: 5 })), 400, 'invalid_request');
    const res = await edge.app.request('/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${edge.client.key}`, 'content-type': 'application/json' }, body: '{"model":' });
    await expectError(res, 400, 'invalid_json');
    const text = await edge.app.request('/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${edge.client.key}`, 'content-type': 'text/plain' }, body: 'hi' });
    await expectError(text, 415, 'unsupported_media_type');
  });

  it('400 when prompt plus max_tokens exceeds the context', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }], maxPositionEmbeddings: 64 });
    await expectError(await edge.post('/v1/chat/completions', chat({ max_tokens: 60 })), 400, 'context_length_exceeded');
  });

  it('401 without a key or with a wrong one; 403 without the scope', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const none = await edge.app.request('/v1/chat/completions', { method: 'POST', body: JSON.stringify(chat()), headers: { 'content-type': 'application/json' } });
    await expectError(none, 401, 'missing_api_key');
    await expectError(await edge.post('/v1/chat/completions', chat(), 'ln_abcdefghijkl_' + 'A'.repeat(43)), 401, 'invalid_api_key');
    // Right prefix, wrong secret.
    const forged = edge.client.key.slice(0, -4) + (edge.client.key.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    await expectError(await edge.post('/v1/chat/completions', chat(), forged), 401, 'invalid_api_key');
    await expectError(await edge.post('/v1/chat/completions', chat(), edge.ownerKey.key), 403, 'insufficient_scope');
  });

  it('403 when the budget is spent', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], price: 1_000 }], keyLimits: { budgetMicroUsd: 10 } });
    const first = await edge.post('/v1/chat/completions', chat());
    expect(first.status).toBe(200);
    await edge.settle();
    await expectError(await edge.post('/v1/chat/completions', chat()), 403, 'budget_exceeded');
  });

  it('404 for an unknown model or path', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    await expectError(await edge.post('/v1/chat/completions', chat({ model: 'nope' })), 404, 'model_not_found');
    await expectError(await edge.app.request('/v1/nothing'), 404, 'not_found');
  });

  it('408 when the body does not arrive in time', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }], config: { bodyReadTimeoutMs: 50 } });
    const body = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(new TextEncoder().encode('{"model":')); } });
    const res = await edge.app.request('/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${edge.client.key}`, 'content-type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit);
    await expectError(res, 408, 'request_timeout');
  });

  it('413 for an oversized body, declared or not', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }], config: { maxBodyBytes: 1024 } });
    const big = chat({ messages: [{ role: 'user', content: 'x'.repeat(5000) }] });
    await expectError(await edge.post('/v1/chat/completions', big), 413, 'payload_too_large');
    const bytes = new TextEncoder().encode(JSON.stringify(big));
    const body = new ReadableStream<Uint8Array>({ start(c) { for (let i = 0; i < bytes.length; i += 512) c.enqueue(bytes.slice(i, i + 512)); c.close(); } });
    const res = await edge.app.request('/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${edge.client.key}`, 'content-type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit);
    await expectError(res, 413, 'payload_too_large');
  });

  it('429 with retry-after past the requests-per-minute limit, and past the tokens-per-minute limit', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }], keyLimits: { requestsPerMinute: 2 } });
    expect((await edge.post('/v1/chat/completions', chat())).status).toBe(200);
    expect((await edge.post('/v1/chat/completions', chat())).status).toBe(200);
    const res = await edge.post('/v1/chat/completions', chat());
    await expectError(res, 429, 'rate_limit_exceeded');
    const retry = Number(res.headers.get('retry-after'));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);

    const tokens = await createTestEdge({ agents: [{ layers: [0, 4] }], keyLimits: { tokensPerMinute: 100 } });
    expect((await tokens.post('/v1/chat/completions', chat({ max_tokens: 40 }))).status).toBe(200);
    await tokens.settle();
    const over = await tokens.post('/v1/chat/completions', chat({ max_tokens: 50 }));
    await expectError(over, 429, 'rate_limit_exceeded');
    expect(over.headers.get('retry-after')).toBeTruthy();
  });

  it('503 when no route meets the constraints', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], price: 5 }, { layers: [0, 2], price: 0.1 }] });
    const body = await expectError(await edge.post('/v1/chat/completions', chat({ route: { max_price: 1 } })), 503, 'no_route');
    expect(body.error.message).toContain('max_price');
    await expectError(await edge.post('/v1/chat/completions', chat({ route: { region: 'ap-south', allow_fallbacks: false } })), 503, 'no_route');
    await expectError(await edge.post('/v1/chat/completions', chat({ route: { max_latency_ms: 1 } })), 503, 'no_route');
    const empty = await createTestEdge({ agents: [{ layers: [0, 3] }] });
    await expectError(await empty.post('/v1/chat/completions', chat()), 503, 'no_route');
  });

  it('502 when every route fails, 504 when they time out', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], behaviour: { kind: 'http-error' } }, { layers: [0, 4], behaviour: { kind: 'unreachable' } }] });
    await expectError(await edge.post('/v1/chat/completions', chat()), 502, 'upstream_error');
    const slow = await createTestEdge({ agents: [{ layers: [0, 4], behaviour: { kind: 'hang', afterTokens: 0 } }], config: { firstTokenTimeoutMs: 50 } });
    await expectError(await slow.post('/v1/chat/completions', chat()), 504, 'upstream_timeout');
    // The hung agent is now in cooldown here: a fresh edge for the streaming case.
    const slow2 = await createTestEdge({ agents: [{ layers: [0, 4], behaviour: { kind: 'hang', afterTokens: 0 } }], config: { firstTokenTimeoutMs: 50, keepAliveMs: 1_000 } });
    const stream = await slow2.post('/v1/chat/completions', chat({ stream: true }));
    await expectError(stream, 504, 'upstream_timeout');
  });

  it('after the first streamed byte, an error is an in-band SSE event', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], behaviour: { kind: 'die', afterTokens: 3 } }], config: { keepAliveMs: 1 } });
    const res = await edge.post('/v1/chat/completions', chat({ stream: true, max_tokens: 10 }));
    expect(res.status).toBe(200);
    const { events } = await readSse(res);
    const last = JSON.parse(events.at(-1)!);
    expect(errorEnvelopeSchema.parse(last).error.code).toBe('upstream_error');
    expect(events).not.toContain('[DONE]');
  });
});
