/**
 * API key format shared by the edge (auth), the registry (storage) and the start script.
 *
 * A key reads `ln_<prefix>_<secret>`: the prefix (12 base32 chars) is stored in clear and
 * shown in dashboards and logs; the secret (32 random bytes, base64url) is never stored, only
 * SHA-256(`layernet.api-key/1\n` + full key), compared in constant time.
 *
 * @example
 * const { key, prefix, hash } = await generateApiKey();
 * const parsed = parseApiKey(key); // { prefix }
 * (await hashApiKey(key)) === hash;
 */
import { randomBytes, sha256Hex, toBase64Url } from './bytes.js';

export const API_KEY_SCOPES = ['inference', 'pool-owner', 'admin'] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const KEY_RE = /^ln_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$/;

export interface GeneratedApiKey {
  /** The full key, shown to its owner once. */
  key: string;
  prefix: string;
  /** Hex SHA-256 to store. */
  hash: string;
}

export async function generateApiKey(): Promise<GeneratedApiKey> {
  const p = randomBytes(12);
  let prefix = '';
  for (const b of p) prefix += BASE32[b & 31];
  const key = `ln_${prefix}_${toBase64Url(randomBytes(32))}`;
  return { key, prefix, hash: await hashApiKey(key) };
}

/** Splits a presented key; null when it is not shaped like one of ours (no hashing wasted on junk). */
export function parseApiKey(key: string): { prefix: string } | null {
  if (key.length > 128) return null;
  const m = KEY_RE.exec(key);
  return m ? { prefix: m[1]! } : null;
}

export function hashApiKey(key: string): Promise<string> {
  return sha256Hex('layernet.api-key/1\n' + key);
}
