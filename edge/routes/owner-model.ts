/**
 * GET /v1/owner/models/:id: a published model and which of its tokenizer files the registry
 * holds (a model whose files are not all uploaded is not served). Scope: pool-owner.
 * `pool-agent register` asks it which files to upload.
 */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { ApiError } from '../../protocol/errors.js';
import type { OwnerModel } from '../../protocol/owner-api.js';
import { requireScope } from '../auth/middleware.js';
import { isUploaded, tokenizerFiles } from '../text/tokenizer-provider.js';

export function registerOwnerModel(app: Hono<AppEnv>): void {
  app.get('/v1/owner/models/:id', requireScope('pool-owner'), async (c) => {
    const deps = c.get('deps');
    const id = c.req.param('id');
    // Not the per-isolate cache: an owner checks this right after publishing or uploading.
    const model = await deps.store.getModel(id);
    if (!model) throw new ApiError('model_not_found', `model ${id} does not exist`, 'id');
    const files = tokenizerFiles(model.manifest);
    const stored = files.length ? await deps.store.listModelFiles(model.id) : [];
    const body: OwnerModel = {
      id: model.id,
      name: model.name,
      num_layers: model.numLayers,
      dtype: model.dtype,
      tokenizer_files: files.map((f) => ({ path: f.path, bytes: f.bytes, uploaded: isUploaded(f, stored) })),
    };
    return c.json(body);
  });
}
