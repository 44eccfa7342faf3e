import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { http, HttpResponse, passthrough } from 'msw';
import { BASE, server } from './sdk-msw.js';
import { freePort } from '../../scripts/ports.js';
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  AuthenticationError,
  BadGatewayError,
  BadRequestError,
  ConflictError,
  GatewayTimeoutError,
  InternalServerError,
  LayerNet,
  LayerNetError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  RequestTimeoutError,
  ServiceUnavailableError,
  UnprocessableEntityError,
  APIResponseValidationError,
} from '../../sdk/src/index.js';

beforeAll(() => server.listen({ onUnhandledRequest: 'error' }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

const body = { model: 'tiny', messages: [{ role: 'user' as const, content: 'hi' }] };
const client = (extra: ConstructorParameters<typeof LayerNet>[0] = {}) =>
  new LayerNet({ apiKey: 'ln_test_key', baseURL: BASE, maxRetries: 0, sleep: async () => {}, ...extra });

function envelope(status: number, code: string, requestId: string) {
  return HttpResponse.json(
    { error: { message: `failure ${status}`, type: 'some_error', code, param: code === 'invalid_request' ? 'messages' : null } },
    { status, headers: { 'x-request-id': requestId } },
  );
}

describe('SDK errors', () => {
  const table: [number, new (...a: never[]) => APIError][] = [
    [400, BadRequestError],
    [401, AuthenticationError],
    [403, PermissionDeniedError],
    [404, NotFoundError],
    [408, RequestTimeoutError],
    [409, ConflictError],
    [413, PayloadTooLargeError],
    [422, UnprocessableEntityError],
    [429, RateLimitError],
    [500, InternalServerError],
    [502, BadGatewayError],
    [503, ServiceUnavailableError],
    [504, GatewayTimeoutError],
  ];

  for (const [status, Cls] of table) {
    it(`maps ${status} to ${Cls.name} with the request id and the envelope fields`, async () => {
      server.use(http.post(`${BASE}/v1/chat/completions`, () => envelope(status, status === 400 ? 'invalid_request' : 'some_code', `req_${status}`)));
      const err = await client()
        .chat.completions.create(body)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Cls);
      expect(err).toBeInstanceOf(APIError);
      expect(err).toBeInstanceOf(LayerNetError);
      const e = err as APIError;
      expect(e.constructor).toBe(Cls);
      expect(e.status).toBe(status);
      expect(e.requestId).toBe(`req_${status}`);
      expect(e.type).toBe('some_error');
      expect(e.message).toContain(`failure ${status}`);
      if (status === 400) {
        expect(e.code).toBe('invalid_request');
        expect(e.param).toBe('messages');
      }
      if (status >= 502) expect(e).toBeInstanceOf(InternalServerError);
    });
  }

  it('sends the API key as a bearer token and merges default headers', async () => {
    let seen: Headers | null = null;
    server.use(
      http.get(`${BASE}/v1/models`, ({ request }) => {
        seen = request.headers;
        return HttpResponse.json({ object: 'list', data: [] });
      }),
    );
    await client({ defaultHeaders: { 'x-team': 'a' } }).models.list();
    expect(seen!.get('authorization')).toBe('Bearer ln_test_key');
    expect(seen!.get('x-team')).toBe('a');
  });

  it('RateLimitError exposes retry-after seconds', async () => {
    server.use(http.post(`${BASE}/v1/chat/completions`, () => HttpResponse.json({ error: { message: 'slow down', type: 'rate_limit_error', code: 'rate_limit_exceeded', param: null } }, { status: 429, headers: { 'retry-after': '7' } })));
    const err = (await client().chat.completions.create(body).catch((e: unknown) => e)) as RateLimitError;
    expect(err).toBeInstanceOf(RateLimitError);
    expect(err.retryAfter).toBe(7);
    expect(err.code).toBe('rate_limit_exceeded');
  });

  it('a non-JSON error body still yields the status class', async () => {
    server.use(http.get(`${BASE}/v1/models`, () => new HttpResponse('upstream exploded', { status: 502 })));
    const err = (await client().models.list().catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(BadGatewayError);
    expect(err.code).toBeNull();
    expect(err.message).toContain('upstream exploded');
  });

  it('a network failure is an APIConnectionError, not an APIError', async () => {
    server.use(http.get(`${BASE}/v1/models`, () => HttpResponse.error()));
    const err = await client().models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIConnectionError);
    expect(err).not.toBeInstanceOf(APIError);
    expect(err).not.toBeInstanceOf(APIConnectionTimeoutError);
    // The message names what failed, not only fetch's "fetch failed".
    expect((err as Error).message).toContain(`GET ${BASE}/v1/models`);
  });

  it('a refused connection names the URL and the cause', async () => {
    // Through msw to the network: a port just freed, so nothing listens there.
    const port = await freePort();
    server.use(http.get(`http://127.0.0.1:${port}/v1/models`, () => passthrough()));
    const refused = new LayerNet({ baseURL: `http://127.0.0.1:${port}`, apiKey: 'ln_test_x', maxRetries: 0 });
    const err = (await refused.models.list().catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(APIConnectionError);
    expect(err.message).toBe(`GET http://127.0.0.1:${port}/v1/models: fetch failed (ECONNREFUSED)`);
  });

  it('no answer within timeout is an APIConnectionTimeoutError, and the request is aborted', async () => {
    let aborted = false;
    server.use(
      http.get(`${BASE}/v1/models`, ({ request }) =>
        new Promise<Response>((resolve) => {
          request.signal.addEventListener('abort', () => {
            aborted = true;
            resolve(HttpResponse.json({}));
          });
        }),
      ),
    );
    const err = await client({ timeout: 30 }).models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIConnectionTimeoutError);
    expect(err).toBeInstanceOf(APIConnectionError);
    await expect.poll(() => aborted).toBe(true);
  });

  it("the caller's own abort is an APIUserAbortError and is not retried", async () => {
    let calls = 0;
    server.use(
      http.get(`${BASE}/v1/models`, ({ request }) => {
        calls++;
        return new Promise<Response>((resolve) => request.signal.addEventListener('abort', () => resolve(HttpResponse.json({}))));
      }),
    );
    const ac = new AbortController();
    const pending = client({ maxRetries: 3 }).models.list({ signal: ac.signal }).catch((e: unknown) => e);
    await expect.poll(() => calls).toBe(1);
    ac.abort();
    expect(await pending).toBeInstanceOf(APIUserAbortError);
    expect(calls).toBe(1);
  });

  it('an answer that does not match the schema is an APIResponseValidationError', async () => {
    server.use(http.get(`${BASE}/v1/models`, () => HttpResponse.json({ object: 'list', data: [{ id: 1 }] }, { headers: { 'x-request-id': 'req_bad' } })));
    const err = (await client().models.list().catch((e: unknown) => e)) as APIResponseValidationError;
    expect(err).toBeInstanceOf(APIResponseValidationError);
    expect(err.requestId).toBe('req_bad');
  });

  it('configuration fails closed: no key or no URL throws at construction', () => {
    const env = process.env;
    const saved = { key: env.LAYERNET_API_KEY, url: env.LAYERNET_BASE_URL };
    delete env.LAYERNET_API_KEY;
    delete env.LAYERNET_BASE_URL;
    try {
      expect(() => new LayerNet({ baseURL: BASE })).toThrow(/API key/);
      expect(() => new LayerNet({ apiKey: 'k' })).toThrow(/edge URL/);
      expect(() => new LayerNet({ apiKey: 'k', baseURL: 'ftp://x' })).toThrow(/http/);
      env.LAYERNET_API_KEY = 'ln_env';
      env.LAYERNET_BASE_URL = `${BASE}/v1/`;
      const c = new LayerNet();
      expect(c.apiKey).toBe('ln_env');
      expect(c.baseURL).toBe(BASE);
      expect(new LayerNet({ apiKey: null }).apiKey).toBeNull();
    } finally {
      if (saved.key === undefined) delete env.LAYERNET_API_KEY;
      else env.LAYERNET_API_KEY = saved.key;
      if (saved.url === undefined) delete env.LAYERNET_BASE_URL;
      else env.LAYERNET_BASE_URL = saved.url;
    }
  });
});
