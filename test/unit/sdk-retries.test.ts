import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { http, HttpResponse } from 'msw';
import { BASE, server, sseBody } from './sdk-msw.js';
import { APIConnectionError, BadRequestError, InternalServerError, LayerNet, ServiceUnavailableError, retryDelayMs } from '../../sdk/src/index.js';

beforeAll(() => server.listen({ onUnhandledRequest: 'error' }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const NOW = Date.parse('2026-01-01T00:00:00Z');
const models = { object: 'list', data: [] };
const fail = (status: number, headers: Record<string, string> = {}) =>
  HttpResponse.json({ error: { message: `status ${status}`, type: 'x', code: null, param: null } }, { status, headers });

/** A client whose waits are recorded instead of slept. */
function fakeClock(opts: { maxRetries?: number; random?: number; timeout?: number } = {}) {
  const sleeps: number[] = [];
  const client = new LayerNet({
    apiKey: 'k',
    baseURL: BASE,
    maxRetries: opts.maxRetries ?? 2,
    random: () => opts.random ?? 0,
    now: () => NOW,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...(opts.timeout ? { timeout: opts.timeout } : {}),
  });
  return { client, sleeps };
}

/** Answers the given responses in order (the last repeats); counts calls. */
function sequence(path: string, responses: (() => Response | Promise<Response>)[], method: 'get' | 'post' = 'get') {
  const state = { calls: 0 };
  server.use(
    http[method](`${BASE}${path}`, () => {
      const r = responses[Math.min(state.calls, responses.length - 1)]!;
      state.calls++;
      return r();
    }),
  );
  return state;
}

describe('SDK retries', () => {
  it('retries 5xx with exponential backoff and succeeds', async () => {
    const calls = sequence('/v1/models', [() => fail(503), () => fail(500), () => HttpResponse.json(models)]);
    const { client, sleeps } = fakeClock();
    await expect(client.models.list()).resolves.toEqual(models);
    expect(calls.calls).toBe(3);
    expect(sleeps).toEqual([500, 1000]);
  });

  it('jitter takes up to 25% off the backoff', async () => {
    sequence('/v1/models', [() => fail(502), () => fail(502), () => HttpResponse.json(models)]);
    const { client, sleeps } = fakeClock({ random: 1 });
    await client.models.list();
    expect(sleeps).toEqual([375, 750]);
  });

  it('caps the backoff at 8 s', async () => {
    const calls = sequence('/v1/models', [() => fail(500)]);
    const { client, sleeps } = fakeClock({ maxRetries: 6 });
    await expect(client.models.list()).rejects.toBeInstanceOf(InternalServerError);
    expect(calls.calls).toBe(7);
    expect(sleeps).toEqual([500, 1000, 2000, 4000, 8000, 8000]);
  });

  it('gives up after maxRetries with the last error', async () => {
    const calls = sequence('/v1/models', [() => fail(503, { 'x-request-id': 'req_last' })]);
    const { client, sleeps } = fakeClock({ maxRetries: 2 });
    const err = await client.models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect((err as ServiceUnavailableError).requestId).toBe('req_last');
    expect(calls.calls).toBe(3);
    expect(sleeps).toHaveLength(2);
  });

  it('a per-request maxRetries overrides the client default', async () => {
    const calls = sequence('/v1/models', [() => fail(503)]);
    const { client } = fakeClock({ maxRetries: 5 });
    await expect(client.models.list({ maxRetries: 0 })).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(calls.calls).toBe(1);
  });

  it('honours retry-after in seconds', async () => {
    sequence('/v1/models', [() => fail(429, { 'retry-after': '3' }), () => HttpResponse.json(models)]);
    const { client, sleeps } = fakeClock();
    await client.models.list();
    expect(sleeps).toEqual([3000]);
  });

  it('honours retry-after as an HTTP date', async () => {
    sequence('/v1/models', [() => fail(503, { 'retry-after': new Date(NOW + 5_000).toUTCString() }), () => HttpResponse.json(models)]);
    const { client, sleeps } = fakeClock();
    await client.models.list();
    expect(sleeps).toEqual([5000]);
  });

  it('prefers retry-after-ms', async () => {
    sequence('/v1/models', [() => fail(429, { 'retry-after-ms': '1234', 'retry-after': '9' }), () => HttpResponse.json(models)]);
    const { client, sleeps } = fakeClock();
    await client.models.list();
    expect(sleeps).toEqual([1234]);
  });

  it('ignores an unreasonable retry-after (over 60 s) in favour of the backoff', async () => {
    sequence('/v1/models', [() => fail(429, { 'retry-after': '3600' }), () => HttpResponse.json(models)]);
    const { client, sleeps } = fakeClock();
    await client.models.list();
    expect(sleeps).toEqual([500]);
  });

  it('retries 408 and 409, never 400 or x-should-retry: false', async () => {
    for (const status of [408, 409]) {
      server.resetHandlers();
      const calls = sequence('/v1/models', [() => fail(status), () => HttpResponse.json(models)]);
      await fakeClock().client.models.list();
      expect(calls.calls).toBe(2);
    }
    server.resetHandlers();
    const bad = sequence('/v1/models', [() => fail(400)]);
    await expect(fakeClock().client.models.list()).rejects.toBeInstanceOf(BadRequestError);
    expect(bad.calls).toBe(1);
    server.resetHandlers();
    const hinted = sequence('/v1/models', [() => fail(503, { 'x-should-retry': 'false' })]);
    await expect(fakeClock().client.models.list()).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(hinted.calls).toBe(1);
  });

  it('retries network errors', async () => {
    const calls = sequence('/v1/models', [() => HttpResponse.error(), () => HttpResponse.json(models)]);
    const { client, sleeps } = fakeClock();
    await client.models.list();
    expect(calls.calls).toBe(2);
    expect(sleeps).toEqual([500]);
    server.resetHandlers();
    sequence('/v1/models', [() => HttpResponse.error()]);
    await expect(fakeClock({ maxRetries: 1 }).client.models.list()).rejects.toBeInstanceOf(APIConnectionError);
  });

  it('retries a timeout', async () => {
    const calls = sequence('/v1/models', [
      () => new Promise<Response>(() => undefined),
      () => HttpResponse.json(models),
    ]);
    const { client } = fakeClock({ timeout: 50 });
    await expect(client.models.list()).resolves.toEqual(models);
    expect(calls.calls).toBe(2);
  });

  it('retryDelayMs is a pure function of its inputs', () => {
    expect(retryDelayMs({ retriesSoFar: 0, now: NOW, random: () => 0 })).toBe(500);
    expect(retryDelayMs({ retriesSoFar: 3, now: NOW, random: () => 0.5 })).toBe(4000 * 0.875);
    expect(retryDelayMs({ retriesSoFar: 10, now: NOW, random: () => 0 })).toBe(8000);
  });
});

describe('SDK stream retries', () => {
  const body = { model: 'tiny', messages: [{ role: 'user' as const, content: 'hi' }], stream: true as const };
  const chunk = (content: string | undefined, finish: 'stop' | null = null) => ({
    id: 'chatcmpl-j1',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'tiny',
    choices: [{ index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish }],
  });
  const sse = (events: unknown[], done = true) => new HttpResponse(sseBody(events, { done }), { headers: { 'content-type': 'text/event-stream', 'x-layernet-job-id': 'j1' } });
  const inBand = { error: { message: 'route failed', type: 'service_unavailable', code: 'no_route', param: null } };

  it('retries a stream whose request failed with 503', async () => {
    const calls = sequence('/v1/chat/completions', [() => fail(503), () => sse([chunk('a'), chunk(undefined, 'stop')])], 'post');
    const { client, sleeps } = fakeClock();
    const stream = await client.chat.completions.create(body);
    expect(await stream.toText()).toBe('a');
    expect(calls.calls).toBe(2);
    expect(sleeps).toEqual([500]);
  });

  it('retries an in-band error that came before any token, without repeating chunks', async () => {
    const calls = sequence('/v1/chat/completions', [() => sse([{ ...chunk(''), choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }, inBand], false), () => sse([chunk('x'), chunk('y'), chunk(undefined, 'stop')])], 'post');
    const { client, sleeps } = fakeClock();
    const stream = await client.chat.completions.create(body);
    const seen: unknown[] = [];
    for await (const c of stream) seen.push(c);
    expect(calls.calls).toBe(2);
    expect(sleeps).toEqual([500]);
    expect(seen).toHaveLength(3);
    expect(stream.text).toBe('xy');
  });

  it('never retries once a token reached the caller', async () => {
    const calls = sequence('/v1/chat/completions', [() => sse([chunk('a'), chunk('b'), inBand], false), () => sse([chunk('z'), chunk(undefined, 'stop')])], 'post');
    const { client, sleeps } = fakeClock({ maxRetries: 5 });
    const stream = await client.chat.completions.create(body);
    const got: string[] = [];
    const err = await (async () => {
      for await (const c of stream) got.push(c.choices[0]?.delta.content ?? '');
    })().catch((e: unknown) => e);
    expect(got).toEqual(['a', 'b']);
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect((err as ServiceUnavailableError).code).toBe('no_route');
    expect((err as ServiceUnavailableError).inBand).toBe(true);
    expect(calls.calls).toBe(1);
    expect(sleeps).toEqual([]);
  });

  it('a truncated stream (no [DONE]) after tokens is a connection error, not retried', async () => {
    const calls = sequence('/v1/chat/completions', [() => sse([chunk('a')], false)], 'post');
    const { client } = fakeClock();
    const stream = await client.chat.completions.create(body);
    await expect(stream.toText()).rejects.toBeInstanceOf(APIConnectionError);
    expect(calls.calls).toBe(1);
  });
});
