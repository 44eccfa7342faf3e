/**
 * API key authentication: `Authorization: Bearer ln_<prefix>_<secret>`. The key record is read
 * by prefix through a short-TTL cache (revocation effective within keyCacheTtlMs <= 5 s), the
 * presented key's hash is compared with the stored one in constant time, then scopes, expiry
 * and revocation are checked. The presented key is never logged or echoed.
 *
 * @example
 * const auth = await authenticate(req.headers.get('authorization'), 'inference', deps);
 */
import { ApiError } from '../../protocol/errors.js';
import { hashApiKey, parseApiKey, type ApiKeyScope } from '../../protocol/api-key.js';
import { fromHex, timingSafeEqual } from '../../protocol/bytes.js';
import type { AuthContext, EdgeDeps } from '../deps.js';

export async function authenticate(
  header: string | null | undefined,
  scope: ApiKeyScope,
  deps: Pick<EdgeDeps, 'store' | 'caches' | 'clock'>,
): Promise<AuthContext> {
  if (!header) throw new ApiError('missing_api_key', 'missing API key: send Authorization: Bearer <key>');
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new ApiError('invalid_api_key', 'Authorization must be "Bearer <key>"');
  const presented = m[1]!;
  const parsed = parseApiKey(presented);
  if (!parsed) throw new ApiError('invalid_api_key', 'invalid API key');
  const now = deps.clock.now();
  const record = await deps.caches.keys.get(parsed.prefix, () => deps.store.getApiKeyByPrefix(parsed.prefix), now);
  // Hash even when the prefix is unknown so both paths cost the same.
  const hash = await hashApiKey(presented);
  if (!record) throw new ApiError('invalid_api_key', 'invalid API key');
  let stored: Uint8Array;
  try {
    stored = fromHex(record.hash);
  } catch {
    throw new ApiError('invalid_api_key', 'invalid API key');
  }
  if (!timingSafeEqual(fromHex(hash), stored)) throw new ApiError('invalid_api_key', 'invalid API key');
  if (record.revokedAt !== null && record.revokedAt <= now) throw new ApiError('invalid_api_key', 'this API key has been revoked');
  if (record.expiresAt !== null && record.expiresAt <= now) throw new ApiError('invalid_api_key', 'this API key has expired');
  if (!record.scopes.includes(scope) && !record.scopes.includes('admin')) {
    throw new ApiError('insufficient_scope', `this API key lacks the "${scope}" scope`);
  }
  return { apiKeyId: record.id, accountId: record.accountId, key: record };
}
