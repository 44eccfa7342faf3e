/** GET /v1/edge/keys: the ticket-signing public keys agents should trust. */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';

export function registerEdgeKeys(app: Hono<AppEnv>): void {
  app.get('/v1/edge/keys', async (c) => {
    const deps = c.get('deps');
    const stored = await deps.store.listEdgeKeys().catch(() => []);
    const keys = [{ id: deps.signingKey.id, public_key: deps.signingKey.publicKey }];
    for (const k of stored) if (k.id !== deps.signingKey.id) keys.push({ id: k.id, public_key: k.publicKey });
    c.header('cache-control', 'public, max-age=60');
    return c.json({ keys });
  });
}
