/** GET /v1/pools: public, read-only view of pools and their agents with live figures. */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import type { PoolList } from '../../protocol/api.js';
import { regionSchema } from '../../protocol/owner-api.js';

export function registerPools(app: Hono<AppEnv>): void {
  app.get('/v1/pools', async (c) => {
    const deps = c.get('deps');
    const limit = Math.min(100, Math.max(1, Number(c.req.query('limit') ?? 50) || 50));
    const cursor = c.req.query('after');
    const region = regionSchema.safeParse(c.req.query('region'));
    const pools = await deps.store.listPublicPools({ limit, ...(cursor ? { cursor: cursor.slice(0, 64) } : {}), ...(region.success ? { region: region.data } : {}) });
    const body: PoolList = {
      object: 'list',
      data: pools.map((p) => ({
        id: p.id,
        name: p.name,
        region: p.region,
        agents: p.agents.map((a) => ({
          id: a.id,
          public_key: a.publicKey,
          status: a.status,
          price: a.priceMicroUsdPerMTok / 1e6,
          reputation: a.reputation,
          spans: a.spans.map((s) => ({ model_id: s.modelId, layers: [s.layers[0], s.layers[1]] as [number, number] })),
          last_heartbeat_at: a.lastHeartbeatAt === null ? null : new Date(a.lastHeartbeatAt).toISOString(),
          queue_depth: a.queueDepth,
          ttft_ms: a.ttftMsEwma,
          per_token_ms: a.perTokenMsEwma,
        })),
      })),
    };
    c.header('cache-control', 'public, max-age=2');
    return c.json(body);
  });
}
