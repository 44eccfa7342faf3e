/**
 * GET /openapi.json: the OpenAPI 3.1 document generated from the same zod schemas the edge
 * validates with; GET /docs: a self-contained page rendering it. Both public.
 */
import type { Hono } from 'hono';
import { buildOpenApiDocument, openApiDocsHtml, type OpenApiDocument } from '../../protocol/openapi.js';
import type { AppEnv } from '../deps.js';

export function registerOpenApi(app: Hono<AppEnv>): void {
  // Built once per origin per isolate: the document is pure and a few tens of KB.
  const byOrigin = new Map<string, OpenApiDocument>();
  app.get('/openapi.json', (c) => {
    const origin = new URL(c.req.url).origin;
    let doc = byOrigin.get(origin);
    if (!doc) {
      doc = buildOpenApiDocument({ serverUrl: origin });
      if (byOrigin.size < 16) byOrigin.set(origin, doc);
    }
    c.header('cache-control', 'public, max-age=300');
    return c.json(doc);
  });
  app.get('/docs', (c) => c.html(openApiDocsHtml('/openapi.json')));
}
