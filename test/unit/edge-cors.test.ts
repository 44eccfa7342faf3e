/**
 * CORS at the edge (edge/http/cors.ts), in plain Node against the Hono app: preflights of the
 * browser routes, the headers a page may read on answers and on errors, origins narrowed by
 * CORS_ORIGINS, and owner/admin routes that never answer cross-origin.
 */
import { describe, expect, it } from 'vitest';
import { createTestEdge, readSse } from './edge-fixtures.js';
import { BROWSER_ROUTES, EXPOSED_HEADERS, PREFLIGHT_MAX_AGE_S } from '../../edge/http/cors.js';
import { parseEdgeEnv } from '../../edge/env.js';
import { buildOpenApiDocument } from '../../protocol/openapi.js';
import { generateSigningKey } from '../../protocol/keys.js';

const PAGE = 'https://chat.example.com';
const chat = (extra: Record<string, unknown> = {}) => ({ model: 'tiny-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, seed: 1, ...extra });

/** What a browser sends before a cross-origin POST with a bearer key and a JSON body. */
const preflight = (origin = PAGE, requestHeaders = 'authorization,content-type') => ({
  method: 'OPTIONS',
  headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': requestHeaders },
});

/** Routes no page may call: the pool-agent CLI, agents and operators use them. */
const SERVER_ROUTES = [
  '/v1/owner/pools',
  '/v1/owner/models',
  '/v1/owner/models/:id',
  '/v1/owner/models/:id/files/:path',
  '/v1/owner/agents',
  '/v1/owner/agents/:id',
  '/v1/agents/:id/heartbeat',
  '/v1/admin/pools/:id/stake',
  // The docs page is served to the browser that opens it (same origin); it fetches /openapi.json.
  '/docs',
];

function exposed(res: Response): string[] {
  return (res.headers.get('access-control-expose-headers') ?? '').split(',').map((h) => h.trim().toLowerCase());
}

describe('CORS: any origin (the default)', () => {
  it('answers the preflight of every browser route with 204, before authentication', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    for (const route of BROWSER_ROUTES) {
      const path = route.replace(':id', 'job_123');
      const res = await edge.app.request(path, preflight(PAGE, 'authorization,content-type,accept,x-layernet-region,x-stainless-os'));
      expect(res.status, path).toBe(204);
      expect(res.headers.get('access-control-allow-origin'), path).toBe('*');
      expect(res.headers.get('access-control-allow-methods')?.split(','), path).toEqual(expect.arrayContaining(['GET', 'POST']));
      const allowed = res.headers.get('access-control-allow-headers')?.split(',') ?? [];
      expect(allowed, path).toEqual(expect.arrayContaining(['authorization', 'content-type', 'x-layernet-region', 'x-stainless-os']));
      expect(res.headers.get('access-control-max-age')).toBe(String(PREFLIGHT_MAX_AGE_S));
      // Bearer keys, no cookies: credentials are never allowed (and `*` would forbid them anyway).
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      expect(res.headers.get('x-request-id')).toBeTruthy();
      expect(await res.text()).toBe('');
    }
  });

  it('exposes the request id, route and attestation headers on an answer, streamed or not', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const res = await edge.post('/v1/chat/completions', chat(), undefined, { origin: PAGE });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(exposed(res)).toEqual(expect.arrayContaining(['x-request-id', 'x-layernet-job-id', 'x-layernet-route', 'x-layernet-attestation', 'retry-after']));
    expect(res.headers.get('x-layernet-job-id')).toBeTruthy();
    await res.json();

    const stream = await edge.post('/v1/chat/completions', chat({ stream: true }), undefined, { origin: PAGE });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('access-control-allow-origin')).toBe('*');
    expect(exposed(stream)).toContain('x-layernet-job-id');
    expect((await readSse(stream)).events.at(-1)).toBe('[DONE]');

    const models = await edge.app.request('/v1/models', { headers: { origin: PAGE, authorization: `Bearer ${edge.client.key}` } });
    expect(models.status).toBe(200);
    expect(models.headers.get('access-control-allow-origin')).toBe('*');
    const pools = await edge.app.request('/v1/pools', { headers: { origin: PAGE } });
    expect(pools.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('errors carry the CORS headers too: 401, 404, 400, 429 (with retry-after exposed)', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const expectReadable = async (res: Response, status: number, code: string) => {
      expect(res.status).toBe(status);
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      expect(exposed(res)).toContain('x-request-id');
      expect(res.headers.get('x-request-id')).toBeTruthy();
      expect(res.headers.get('content-type')).toContain('application/json');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
    };
    const noKey = await edge.app.request('/v1/chat/completions', { method: 'POST', headers: { origin: PAGE, 'content-type': 'application/json' }, body: JSON.stringify(chat()) });
    await expectReadable(noKey, 401, 'missing_api_key');
    await expectReadable(await edge.post('/v1/chat/completions', chat({ model: 'nope' }), undefined, { origin: PAGE }), 404, 'model_not_found');
    await expectReadable(await edge.post('/v1/chat/completions', { model: 'tiny-test' }, undefined, { origin: PAGE }), 400, 'invalid_request');
    // A wrong method on a browser route: the not-found answer is readable as well.
    await expectReadable(await edge.app.request('/v1/chat/completions', { headers: { origin: PAGE } }), 404, 'not_found');

    const limited = await edge.newKey(['inference'], 'acct_limited', { requestsPerMinute: 1 });
    expect((await edge.post('/v1/chat/completions', chat(), limited.key, { origin: PAGE })).status).toBe(200);
    const over = await edge.post('/v1/chat/completions', chat(), limited.key, { origin: PAGE });
    expect(over.headers.get('retry-after')).toBeTruthy();
    expect(exposed(over)).toContain('retry-after');
    await expectReadable(over, 429, 'rate_limit_exceeded');
  });

  it('owner, admin and agent routes answer no preflight and send no CORS headers', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    for (const path of ['/v1/owner/pools', '/v1/owner/models', '/v1/owner/agents', '/v1/admin/pools/p1/stake', '/v1/agents/a1/heartbeat']) {
      const pre = await edge.app.request(path, preflight());
      expect(pre.status, path).toBe(404);
      expect(pre.headers.get('access-control-allow-origin'), path).toBeNull();
    }
    const owner = await edge.app.request('/v1/owner/pools', { headers: { origin: PAGE, authorization: `Bearer ${edge.ownerKey.key}` } });
    expect(owner.status).toBe(200);
    expect(owner.headers.get('access-control-allow-origin')).toBeNull();
    expect(owner.headers.get('access-control-expose-headers')).toBeNull();
  });

  it('every route of the app is either a browser route or a server-only one (a new route needs a decision)', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }] });
    const routes = new Set(edge.app.routes.filter((r) => r.method !== 'ALL').map((r) => r.path));
    expect([...routes].sort()).toEqual([...BROWSER_ROUTES, ...SERVER_ROUTES].sort());
  });

  it('every response header the OpenAPI document names for a browser route is exposed (or CORS-safelisted)', () => {
    const doc = buildOpenApiDocument() as { paths: Record<string, Record<string, { responses?: Record<string, { headers?: Record<string, unknown> }> }>> };
    const safelisted = new Set(['cache-control', 'content-language', 'content-length', 'content-type', 'expires', 'last-modified', 'pragma']);
    const browserPaths = new Set<string>(BROWSER_ROUTES.map((r) => r.replace(/:(\w+)/g, '{$1}')));
    const declared = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!browserPaths.has(path)) continue;
      for (const op of Object.values(ops)) for (const res of Object.values(op.responses ?? {})) for (const h of Object.keys(res.headers ?? {})) declared.add(h.toLowerCase());
    }
    expect(declared.size).toBeGreaterThan(0);
    for (const h of declared) if (!safelisted.has(h)) expect(EXPOSED_HEADERS, h).toContain(h);
  });
});

describe('CORS: origins narrowed by CORS_ORIGINS', () => {
  it('answers only the listed origins, and varies on Origin', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4] }], config: { corsOrigins: [PAGE, 'http://localhost:5173'] } });
    const ok = await edge.app.request('/v1/chat/completions', preflight('http://localhost:5173'));
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    expect(ok.headers.get('vary')).toContain('Origin');

    const res = await edge.post('/v1/chat/completions', chat(), undefined, { origin: PAGE });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(PAGE);
    expect(res.headers.get('vary')).toContain('Origin');
    expect(exposed(res)).toContain('x-layernet-job-id');

    // Another origin: no Access-Control-Allow-Origin, so the browser refuses to send the request
    // (preflight) or to hand over the answer. CORS is the browser's rule: a server-side caller
    // with a valid key is still served.
    const evil = await edge.app.request('/v1/chat/completions', preflight('https://evil.example.net'));
    expect(evil.headers.get('access-control-allow-origin')).toBeNull();
    const evilGet = await edge.app.request('/v1/models', { headers: { origin: 'https://evil.example.net', authorization: `Bearer ${edge.client.key}` } });
    expect(evilGet.headers.get('access-control-allow-origin')).toBeNull();
    // An origin that merely starts like an allowed one is another origin.
    const lookalike = await edge.app.request('/v1/models', preflight(`${PAGE}.evil.example.net`));
    expect(lookalike.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('CORS_ORIGINS in the environment', () => {
  it('takes `*` or a comma-separated list of origins and names the variable, never its value, when malformed', async () => {
    const key = await generateSigningKey();
    const base = { DATABASE_URL: 'postgres://u@127.0.0.1:5432/db', EDGE_SIGNING_KEY: key.privateKeyPkcs8, EDGE_KEY_ID: 'edge-1' };
    const unset = parseEdgeEnv(base);
    expect(unset.ok && unset.config.corsOrigins).toBeUndefined(); // the default, `*`, applies
    const any = parseEdgeEnv({ ...base, CORS_ORIGINS: '*' });
    expect(any.ok && any.config.corsOrigins).toBe('*');
    const list = parseEdgeEnv({ ...base, CORS_ORIGINS: ' https://chat.example.com , http://localhost:5173 ' });
    expect(list.ok && list.config.corsOrigins).toEqual(['https://chat.example.com', 'http://localhost:5173']);

    for (const bad of ['', 'chat.example.com', 'https://chat.example.com/', 'https://chat.example.com/app', 'HTTPS://CHAT.EXAMPLE.COM', '*,https://chat.example.com', 'ftp://files.example.com']) {
      const parsed = parseEdgeEnv({ ...base, CORS_ORIGINS: bad });
      expect(parsed.ok, JSON.stringify(bad)).toBe(false);
      expect(!parsed.ok && parsed.variables).toEqual(['CORS_ORIGINS']);
      if (bad) expect(!parsed.ok && parsed.message).not.toContain(bad);
    }
  });
});
