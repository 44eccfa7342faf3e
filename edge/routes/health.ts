/** GET /healthz: liveness of the edge itself (no registry round trip). */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';

export function registerHealth(app: Hono<AppEnv>): void {
  app.get('/healthz', (c) => c.json({ ok: true, edge_key_id: c.get('deps').signingKey.id }));
}
