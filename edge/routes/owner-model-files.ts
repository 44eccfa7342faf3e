/**
 * PUT /v1/owner/models/:id/files/:path: uploads one of an imported model's tokenizer files (the
 * raw bytes, `application/octet-stream`). Scope: pool-owner. The manifest pins each file's size
 * and SHA-256, so any owner may upload it: only the published bytes are accepted. 201 when
 * stored, 200 when it was there already (stored again: a checked copy repairs a damaged one).
 */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { ApiError } from '../../protocol/errors.js';
import { sha256Hex } from '../../protocol/bytes.js';
import type { ModelFileUpload } from '../../protocol/owner-api.js';
import { requireScope } from '../auth/middleware.js';
import { readBodyBytes } from '../http/body.js';
import { tokenizerFiles } from '../text/tokenizer-provider.js';

/** Never more than this, whatever a manifest says (the manifest schema has the same cap). */
export const MAX_MODEL_FILE_BYTES = 64 * 1024 * 1024;
/** Uploads slower than this are cut off: the body timeout grows with the file's size. */
const MIN_UPLOAD_BYTES_PER_S = 256 * 1024;

export function registerOwnerModelFiles(app: Hono<AppEnv>): void {
  app.put('/v1/owner/models/:id/files/:path', requireScope('pool-owner'), async (c) => {
    const deps = c.get('deps');
    const id = c.req.param('id');
    const path = c.req.param('path');
    const model = await deps.store.getModel(id);
    if (!model) throw new ApiError('model_not_found', `model ${id} does not exist`, 'id');
    const listed = tokenizerFiles(model.manifest);
    const file = listed.find((f) => f.path === path);
    if (!file) {
      const expected = listed.length ? `its tokenizer files are ${listed.map((f) => f.path).join(', ')}` : 'it uses the built-in tokenizer and takes no files';
      throw new ApiError('invalid_request', `path: ${path} is not a tokenizer file of model ${model.name} (${expected})`, 'path');
    }
    const type = c.req.header('content-type') ?? '';
    if (type && !/^application\/octet-stream\b/i.test(type)) throw new ApiError('unsupported_media_type', 'Content-Type must be application/octet-stream');
    const limit = Math.min(file.bytes, MAX_MODEL_FILE_BYTES);
    let content: Uint8Array;
    try {
      content = await readBodyBytes(c.req.raw, limit, deps.config.bodyReadTimeoutMs + Math.ceil((limit / MIN_UPLOAD_BYTES_PER_S) * 1000));
    } catch (err) {
      if (err instanceof ApiError && err.code === 'payload_too_large') {
        throw new ApiError('payload_too_large', `${path} is ${file.bytes} bytes in the manifest of ${model.name}: the body is larger`);
      }
      throw err;
    }
    if (content.byteLength !== file.bytes) {
      throw new ApiError('invalid_request', `${path}: the body is ${content.byteLength} bytes, the manifest of ${model.name} says ${file.bytes} (size differs)`);
    }
    const sha256 = await sha256Hex(content);
    if (sha256 !== file.sha256) {
      throw new ApiError('invalid_request', `${path}: the body's SHA-256 is ${sha256}, the manifest of ${model.name} says ${file.sha256} (SHA-256 differs)`);
    }
    const created = await deps.store.putModelFile({ modelId: model.id, path, sha256, bytes: content.byteLength, content, at: deps.clock.now() });
    // A load that failed for want of this file may be remembered in this isolate until it settles.
    deps.tokenizers.forget(model.id);
    const body: ModelFileUpload = { model_id: model.id, path: file.path, bytes: file.bytes, sha256, created };
    return c.json(body, created ? 201 : 200);
  });
}
