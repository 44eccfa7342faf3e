/** POST /v1/owner/models: publish a model manifest; idempotent on its hash. Scope: pool-owner. */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { ApiError } from '../../protocol/errors.js';
import { manifestHash } from '../../protocol/manifest.js';
import { publishModelSchema } from '../../protocol/owner-api.js';
import { StoreConflictError } from '../../db/registry-contract.js';
import { requireScope } from '../auth/middleware.js';
import { parseWith, readJsonBody } from '../http/body.js';

export function registerOwnerModels(app: Hono<AppEnv>): void {
  app.post('/v1/owner/models', requireScope('pool-owner'), async (c) => {
    const deps = c.get('deps');
    const { manifest } = parseWith(publishModelSchema, await readJsonBody(c.req.raw, deps.config.maxBodyBytes, deps.config.bodyReadTimeoutMs));
    const L = manifest.architecture.numLayers;
    const blocks = manifest.files.filter((f) => f.kind === 'layers').sort((a, b) => a.layers[0] - b.layers[0]);
    let cursor = 0;
    for (const b of blocks) {
      if (b.layers[0] !== cursor || b.layers[1] <= b.layers[0]) throw new ApiError('invalid_request', 'manifest.files: layer blocks must tile [0, numLayers) in order', 'manifest.files');
      cursor = b.layers[1];
    }
    if (cursor !== L || !manifest.files.some((f) => f.kind === 'embed') || !manifest.files.some((f) => f.kind === 'head')) {
      throw new ApiError('invalid_request', 'manifest.files: need embed, head and layer blocks covering every layer', 'manifest.files');
    }
    const id = await manifestHash(manifest);
    const existing = await deps.store.getModel(id);
    try {
      const model = existing ?? (await deps.store.publishModel({ manifest, id, publishedBy: c.get('auth').accountId, at: deps.clock.now() }));
      deps.caches.models.delete(model.name);
      return c.json({ id: model.id, name: model.name, num_layers: model.numLayers, dtype: model.dtype, created: !existing }, existing ? 200 : 201);
    } catch (err) {
      if (err instanceof StoreConflictError) throw new ApiError('conflict', err.message, 'manifest.name');
      throw err;
    }
  });
}
