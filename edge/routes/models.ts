/** GET /v1/models: published models with the number of live agents serving some span of each. */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import type { ModelList } from '../../protocol/api.js';
import { requireScope } from '../auth/middleware.js';

export function registerModels(app: Hono<AppEnv>): void {
  app.get('/v1/models', requireScope('inference'), async (c) => {
    const deps = c.get('deps');
    const now = deps.clock.now();
    const models = await deps.caches.modelList.get('all', () => deps.store.listModels({ heartbeatAfter: now - deps.config.heartbeatStaleMs, limit: 500 }), now);
    const body: ModelList = {
      object: 'list',
      data: models.map((m) => ({
        id: m.name,
        object: 'model',
        created: Math.floor(m.createdAt / 1000),
        owned_by: m.publishedBy ?? 'layernet',
        manifest_hash: m.id,
        num_layers: m.numLayers,
        dtype: m.dtype,
        agents: m.agents,
      })),
    };
    return c.json(body);
  });
}
