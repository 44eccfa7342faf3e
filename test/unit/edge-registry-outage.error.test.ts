/**
 * A registry outage as the client sees it (edge/http/registry-outage.ts, edge/worker.ts): 503
 * with `retry-after` when the registry cannot be reached, goes away, or stops answering; never a
 * 500 or a hang. Errors the registry itself answered keep their meaning. The chaos suite
 * (test/integration/chaos-registry.test.ts) does the same with a real registry process.
 */
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isRegistryUnavailable } from '../../db/client.js';
import type { RegistryStore } from '../../db/registry-contract.js';
import { ApiError } from '../../protocol/errors.js';
import { generateSigningKey } from '../../protocol/keys.js';
import { guardedStore, REGISTRY_RETRY_AFTER_S } from '../../edge/http/registry-outage.js';
import worker from '../../edge/worker.js';

const ctx = { waitUntil: () => undefined, passThroughOnException: () => undefined } as never;

afterEach(() => vi.restoreAllMocks());

const coded = (message: string, code: string) => Object.assign(new Error(message), { code });
/** drizzle's wrapper: the driver's error is its cause. */
const drizzled = (cause: unknown) => Object.assign(new Error('Failed query: select 1\nparams: '), { cause });

describe('isRegistryUnavailable', () => {
  it('says yes for connections refused, reset, closed, timed out, and servers shutting down', () => {
    for (const err of [
      coded('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'),
      coded('write CONNECT_TIMEOUT 127.0.0.1:5432', 'CONNECT_TIMEOUT'),
      coded('write CONNECTION_CLOSED 127.0.0.1:5432', 'CONNECTION_CLOSED'),
      coded('read ECONNRESET', 'ECONNRESET'),
      coded('terminating connection due to administrator command', '57P01'),
      coded('the database system is starting up', '57P03'),
      coded('connection failure', '08006'),
      coded('sorry, too many clients already', '53300'),
      // workerd's sockets carry no code
      new Error('proxy request failed, cannot connect to the specified address'),
      new Error('Network connection lost.'),
    ]) {
      expect(isRegistryUnavailable(err), err.message).toBe(true);
      expect(isRegistryUnavailable(drizzled(err)), `wrapped: ${err.message}`).toBe(true);
    }
  });

  it('says no for what the registry answered, and for other errors', () => {
    for (const err of [
      coded('duplicate key value violates unique constraint', '23505'),
      coded('relation "nope" does not exist', '42P01'),
      // a refused query whose text mentions a connection is still a refused query
      drizzled(coded('column "connection refused" does not exist', '42703')),
      new TypeError('x is undefined'),
      drizzled(new Error('something else')),
      'a string',
      null,
    ]) {
      expect(isRegistryUnavailable(err)).toBe(false);
    }
  });
});

/** The guarded store's methods, called loosely (the doubles implement only what a test calls). */
type Loose = Record<string, (...args: unknown[]) => Promise<unknown>>;
const guard = (methods: Loose, options: Parameters<typeof guardedStore>[1]): Loose => guardedStore(methods as unknown as RegistryStore, options) as unknown as Loose;

describe('guardedStore', () => {
  const log = () => undefined;

  it('turns an unreachable registry into 503 no_route with retry-after', async () => {
    const store = guard({ listModels: () => Promise.reject(drizzled(coded('connect ECONNREFUSED', 'ECONNREFUSED'))) }, { end: async () => undefined, log });
    const err = await store.listModels!().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 503, code: 'registry_unavailable', retryAfter: REGISTRY_RETRY_AFTER_S });
  });

  it('gives up on a call the registry never answers, and ends the client', async () => {
    let ended = 0;
    const store = guard({ listModels: () => new Promise(() => undefined) }, { end: async () => void ended++, log, timeoutMs: 50 });
    const err = await store.listModels!().catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 503, code: 'registry_unavailable', retryAfter: REGISTRY_RETRY_AFTER_S });
    expect(ended).toBe(1);
  });

  it('passes answers, refusals and ApiErrors through unchanged', async () => {
    const refusal = coded('duplicate key', '23505');
    const conflict = new ApiError('conflict', 'taken');
    const store = guard({ listModels: async () => ['m'], getModel: () => Promise.reject(refusal), publishModel: () => Promise.reject(conflict) }, { end: async () => undefined, log, timeoutMs: 1_000 });
    await expect(store.listModels!()).resolves.toEqual(['m']);
    await expect(store.getModel!('x')).rejects.toBe(refusal);
    await expect(store.publishModel!({})).rejects.toBe(conflict);
  });
});

describe('edge worker entry with the registry down', () => {
  it('answers 503 with retry-after (not 500) when nothing listens at DATABASE_URL', async () => {
    // A port that was just free: nothing listens there.
    const server: Server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((r) => server.close(() => r()));
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const key = await generateSigningKey();
    const env = { DATABASE_URL: `postgres://u@127.0.0.1:${port}/db`, EDGE_KEY_ID: 'edge-outage', EDGE_SIGNING_KEY: key.privateKeyPkcs8 };
    const res = await worker.fetch(new Request('http://edge.test/v1/models', { headers: { authorization: `Bearer ln_aaaaaaaaaaaa_${'C'.repeat(43)}` } }), env, ctx);
    const body = (await res.json()) as { error: { code: string; type: string; message: string } };
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe(String(REGISTRY_RETRY_AFTER_S));
    expect(body.error).toMatchObject({ code: 'registry_unavailable', type: 'service_unavailable' });
    expect(body.error.message).toContain('registry');
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
  });
});
