/** Route middleware: authenticates the bearer key for one scope and sets `c.var.auth`. */
import type { MiddlewareHandler } from 'hono';
import type { ApiKeyScope } from '../../protocol/api-key.js';
import type { AppEnv } from '../deps.js';
import { authenticate } from './authenticate.js';

export function requireScope(scope: ApiKeyScope): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const deps = c.get('deps');
    const auth = await authenticate(c.req.header('authorization'), scope, deps);
    c.set('auth', auth);
    deps.waitUntil(deps.store.touchApiKey(auth.apiKeyId, deps.clock.now()));
    await next();
  };
}
