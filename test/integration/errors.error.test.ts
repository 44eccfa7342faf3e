/**
 * Every error status of the OpenAI envelope through the real Worker in workerd, with real
 * agents and a real registry: 400, 401, 403, 404, 413, 429 (with retry-after), 502, 503, 504,
 * and an in-band SSE error after the first streamed byte. Each carries a request id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../db/seed.js';
import { parseSse } from '../../protocol/sse.js';
import { startDelayProxy, type DelayProxy } from '../support/delay-proxy.js';
import { startNetwork, type TestNetwork } from '../support/network.js';

let net: TestNetwork;
const proxies: DelayProxy[] = [];

/** An agent that answers, but behind a proxy holding every byte 6 s: slower than the first-token timeout. */
function stalled(name: string, region: string) {
  return {
    name,
    region,
    price: 0.2,
    endpointFor: async (port: number) => {
      const p = await startDelayProxy(port, 6000);
      proxies.push(p);
      return p.url;
    },
  };
}

beforeAll(async () => {
  net = await startNetwork({
    edgeVars: { FIRST_TOKEN_TIMEOUT_MS: '2000' },
    agents: [
      { name: 'normal', region: 'eu-west', price: 0.2 },
      stalled('stalled', 'ap-south'),
      stalled('stalled-stream', 'af-south'),
      { name: 'doomed', region: 'sa-east', price: 0.2 },
    ],
  });
  await net.waitForAgents(4);
}, 240_000);

afterAll(async () => {
  await net?.close();
  await Promise.all(proxies.map((p) => p.close()));
});

function chat(body: Record<string, unknown>, key = net.apiKey, extra: RequestInit = {}): Promise<Response> {
  return fetch(`${net.edgeUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: net.modelName, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, ...body }),
    ...extra,
  });
}

async function expectError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  const body = JSON.parse(text) as { error: { code: string; type: string; message: string } };
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(res.headers.get('x-request-id')).toBeTruthy();
}

describe('error statuses through the edge', () => {
  it('400: a malformed body names the bad field', async () => {
    await expectError(await chat({ temperature: 9 }), 400, 'invalid_request');
  });

  it('401 / 403: bad key, and a pool-owner token used for inference', async () => {
    await expectError(await chat({}, 'ln_aaaaaaaaaaaa_' + 'C'.repeat(43)), 401, 'invalid_api_key');
    await expectError(await chat({}, net.ownerToken), 403, 'insufficient_scope');
  });

  it('403: a key whose spending budget is used up', async () => {
    const broke = await createApiKey(net.registry.db, { accountId: net.accountId, scopes: ['inference'], name: 'broke', limits: { budgetMicroUsd: 0 } });
    await expectError(await chat({}, broke.key), 403, 'budget_exceeded');
  });

  it('404: an unknown model', async () => {
    await expectError(await chat({ model: 'nope' }), 404, 'model_not_found');
  });

  it('413: a body over the size limit', async () => {
    await expectError(await chat({ messages: [{ role: 'user', content: 'x'.repeat(2 * 1024 * 1024) }] }), 413, 'payload_too_large');
  });

  it('429 with retry-after: the per-key request rate limit', async () => {
    const limited = await createApiKey(net.registry.db, { accountId: net.accountId, scopes: ['inference'], name: 'limited', limits: { requestsPerMinute: 1 } });
    const first = await chat({ route: { region: 'eu-west' } }, limited.key);
    expect(first.status).toBe(200);
    await first.text();
    const second = await chat({ route: { region: 'eu-west' } }, limited.key);
    expect(Number(second.headers.get('retry-after'))).toBeGreaterThan(0);
    await expectError(second, 429, 'rate_limit_exceeded');
  });

  it('503: no route meets the constraints', async () => {
    await expectError(await chat({ route: { max_price: 0.000001 } }), 503, 'no_route');
  });

  it('504: the only allowed route does not produce a first token in time', async () => {
    await expectError(await chat({ route: { region: 'ap-south', allow_fallbacks: false } }), 504, 'upstream_timeout');
  });

  it('after the first streamed byte, an error is an in-band SSE event', async () => {
    const res = await chat({ stream: true, route: { region: 'af-south', allow_fallbacks: false } });
    // The stream is committed (keep-alive comments flow while the route warms up), so the
    // timeout can only be reported in band.
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    let sawError = false;
    for await (const ev of parseSse(res.body!)) {
      if (ev.data === '[DONE]') break;
      const data = JSON.parse(ev.data) as { error?: { code: string } };
      if (data.error) {
        expect(data.error.code).toBe('upstream_timeout');
        sawError = true;
      }
    }
    expect(sawError).toBe(true);
  });

  it('502: the only allowed route dies without a goodbye', async () => {
    await net.agents.find((a) => a.name === 'doomed')!.kill();
    await expectError(await chat({ route: { region: 'sa-east', allow_fallbacks: false } }), 502, 'upstream_error');
  });

  it('keeps serving normal requests afterwards', async () => {
    const res = await chat({ route: { region: 'eu-west' } });
    expect(res.status).toBe(200);
  });
});
