import { describe, expect, it } from 'vitest';
import { buildOpenApiDocument, openApiDocsHtml } from '../../protocol/openapi.js';
import { ERROR_CODES } from '../../protocol/errors.js';

type Json = Record<string, any>;
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function resolvePointer(doc: Json, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  return ref
    .slice(2)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<any>((node, key) => (node === undefined ? undefined : node[key]), doc);
}

function allRefs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((n) => allRefs(n, out));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else allRefs(v, out);
    }
  }
  return out;
}

describe('OpenAPI document', () => {
  const doc = buildOpenApiDocument({ serverUrl: 'https://edge.example.com' }) as Json;

  it('is an OpenAPI 3.1 document with a server, bearer auth and info', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.title).toBeTruthy();
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(doc.servers).toEqual([{ url: 'https://edge.example.com' }]);
    expect(doc.components.securitySchemes.bearerAuth).toEqual(expect.objectContaining({ type: 'http', scheme: 'bearer' }));
    expect(doc.security).toEqual([{ bearerAuth: [] }]);
    expect(JSON.parse(JSON.stringify(doc))).toEqual(doc);
  });

  it('covers the public, verification and owner routes', () => {
    for (const path of ['/v1/models', '/v1/chat/completions', '/v1/completions', '/v1/pools', '/v1/jobs/{id}/attestation', '/v1/edge/keys', '/v1/owner/pools', '/v1/owner/agents', '/v1/owner/agents/{id}', '/v1/owner/models', '/v1/owner/models/{id}', '/v1/owner/models/{id}/files/{path}']) {
      expect(doc.paths[path], path).toBeDefined();
    }
  });

  it('every operation has responses, an operation id and its path parameters', () => {
    const ids = new Set<string>();
    for (const [path, item] of Object.entries<Json>(doc.paths)) {
      const params = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      for (const method of Object.keys(item)) {
        expect(METHODS).toContain(method);
        const op = item[method];
        expect(Object.keys(op.responses ?? {}).length, `${method} ${path}`).toBeGreaterThan(0);
        expect(Object.keys(op.responses).some((c) => /^2\d\d$/.test(c)), `${method} ${path} has a 2xx`).toBe(true);
        expect(ids.has(op.operationId)).toBe(false);
        ids.add(op.operationId);
        for (const p of params) expect((op.parameters ?? []).some((x: Json) => x.in === 'path' && x.name === p && x.required), `${method} ${path} declares ${p}`).toBe(true);
      }
    }
  });

  it('every $ref resolves inside the document', () => {
    const refs = allRefs(doc);
    expect(refs.length).toBeGreaterThan(20);
    for (const ref of refs) expect(resolvePointer(doc, ref), ref).toBeDefined();
    expect(refs.some((r) => r.startsWith('#/$defs'))).toBe(false);
  });

  it('documents the route extension in requests and answers', () => {
    const s = doc.components.schemas;
    expect(s.ChatCompletionRequest.properties.route).toEqual({ $ref: '#/components/schemas/RoutePreferences' });
    expect(s.CompletionRequest.properties.route).toEqual({ $ref: '#/components/schemas/RoutePreferences' });
    expect(s.RoutePreferences.properties.sort.enum).toEqual(['latency', 'price', 'balanced']);
    // Request bodies are the input side: defaulted fields are optional.
    expect(s.RoutePreferences.required ?? []).not.toContain('sort');
    expect(s.ChatCompletion.properties.route).toEqual({ $ref: '#/components/schemas/RouteSummary' });
    expect(s.ChatCompletion.properties.attestation).toEqual({ $ref: '#/components/schemas/AttestationSummary' });
    expect(s.ChatCompletion.required).toEqual(expect.arrayContaining(['route', 'attestation']));
    expect(s.RouteSummary.properties.hops.items.properties.layers.prefixItems).toHaveLength(2);
    const chat = doc.paths['/v1/chat/completions'].post.responses['200'];
    expect(Object.keys(chat.headers)).toEqual(expect.arrayContaining(['x-layernet-route', 'x-layernet-job-id', 'x-request-id']));
  });

  it('describes streaming as SSE with the chunk schema', () => {
    for (const [path, chunk] of [['/v1/chat/completions', 'ChatCompletionChunk'], ['/v1/completions', 'Completion']] as const) {
      const ok = doc.paths[path].post.responses['200'];
      expect(ok.content['text/event-stream']['x-sse-event-schema']).toEqual({ $ref: `#/components/schemas/${chunk}` });
      expect(ok.description).toContain('[DONE]');
      expect(ok.content['application/json']).toBeDefined();
    }
  });

  it('error responses use the envelope and cover the shared status table', () => {
    const statuses = new Set(Object.values(ERROR_CODES).map((c) => String(c.status)));
    for (const st of statuses) expect(doc.components.responses[`Error${st}`], st).toBeDefined();
    for (const r of Object.values<Json>(doc.components.responses)) {
      expect(r.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/ErrorEnvelope' });
    }
    expect(doc.components.responses.Error503.description).toContain('`no_route`');
    expect(doc.components.responses.Error429.headers['retry-after']).toBeDefined();
    expect(doc.components.schemas.ErrorEnvelope.properties.error.required).toEqual(expect.arrayContaining(['message', 'type', 'code', 'param']));
  });

  it('documents tools, token-array prompts and the raw tokenizer-file upload', () => {
    const s = doc.components.schemas;
    expect(s.ChatCompletionRequest.properties.tools.maxItems).toBe(128);
    expect(s.ChatCompletionRequest.properties.messages.items.properties.tool_calls).toBeDefined();
    const prompt = s.CompletionRequest.properties.prompt.anyOf as Json[];
    expect(prompt.some((p) => p.type === 'array' && p.items?.type === 'integer')).toBe(true);
    const upload = doc.paths['/v1/owner/models/{id}/files/{path}'].put;
    expect(Object.keys(upload.requestBody.content)).toEqual(['application/octet-stream']);
    expect(upload.parameters.find((p: Json) => p.name === 'path').schema.enum).toEqual(['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja']);
    expect(Object.keys(upload.responses)).toEqual(expect.arrayContaining(['200', '201', '400', '413']));
    expect(doc.paths['/v1/owner/models/{id}'].get.responses['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/OwnerModel' });
  });

  it('marks public routes as needing no key', () => {
    expect(doc.paths['/v1/pools'].get.security).toEqual([]);
    expect(doc.paths['/v1/edge/keys'].get.security).toEqual([]);
    expect(doc.paths['/v1/chat/completions'].post.security).toBeUndefined();
  });
});

describe('OpenAPI docs page', () => {
  it('is self-contained: no external script, style or font', () => {
    const html = openApiDocsHtml('/openapi.json');
    expect(html).toContain('<!doctype html>');
    expect(html).toContain('"/openapi.json"');
    expect(html).not.toMatch(/<script[^>]+src=/i);
    expect(html).not.toMatch(/<link[^>]+href=/i);
    expect(html).not.toMatch(/@import|url\(/i);
  });

  it('cannot be broken out of by the spec URL', () => {
    const html = openApiDocsHtml('/x</script><script>alert(1)</script>');
    expect(html.match(/<\/script>/g)).toHaveLength(1);
  });
});
