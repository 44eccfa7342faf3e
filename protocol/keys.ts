import { fromBase64Url, toBase64Url } from './bytes.js';

/**
 * Ed25519 through WebCrypto, so the same code signs on agents (Node), and verifies on the edge
 * (Workers) and in the SDK (browsers, Node, Workers).
 *
 * @example
 * const key = await generateSigningKey();
 * const sig = await signBytes(key.privateKey, utf8('hello'));
 * await verifyBytes(key.publicKey, sig, utf8('hello')); // true
 */
export interface SigningKey {
  /** Raw 32-byte public key, base64url: the form stored in the registry. */
  publicKey: string;
  /** PKCS#8 private key, base64url: the form stored in an agent's identity file (0600). */
  privateKeyPkcs8: string;
  privateKey: CryptoKey;
}

const ED25519 = { name: 'Ed25519' } as const;

export async function generateSigningKey(): Promise<SigningKey> {
  const pair = (await crypto.subtle.generateKey(ED25519, true, ['sign', 'verify'])) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey('pkcs8', pair.privateKey));
  return { publicKey: toBase64Url(raw), privateKeyPkcs8: toBase64Url(pkcs8), privateKey: pair.privateKey };
}

/** Re-import a stored identity; derives the public key from the private one. */
export async function importSigningKey(privateKeyPkcs8: string): Promise<SigningKey> {
  const pkcs8 = fromBase64Url(privateKeyPkcs8);
  const privateKey = await crypto.subtle.importKey('pkcs8', pkcs8 as BufferSource, ED25519, true, ['sign']);
  const jwk = (await crypto.subtle.exportKey('jwk', privateKey)) as JsonWebKey;
  if (!jwk.x) throw new Error('not an Ed25519 private key');
  const nonExtractable = await crypto.subtle.importKey('pkcs8', pkcs8 as BufferSource, ED25519, false, ['sign']);
  return { publicKey: jwk.x, privateKeyPkcs8, privateKey: nonExtractable };
}

const publicKeyCache = new Map<string, Promise<CryptoKey>>();
const PUBLIC_KEY_CACHE_MAX = 10_000;

/** Import (and cache) a raw base64url Ed25519 public key. Throws on a malformed key. */
export function importPublicKey(publicKey: string): Promise<CryptoKey> {
  let key = publicKeyCache.get(publicKey);
  if (!key) {
    const raw = fromBase64Url(publicKey);
    if (raw.length !== 32) throw new TypeError('an Ed25519 public key is 32 bytes');
    key = crypto.subtle.importKey('raw', raw as BufferSource, ED25519, false, ['verify']);
    key.catch(() => publicKeyCache.delete(publicKey));
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_MAX) publicKeyCache.clear();
    publicKeyCache.set(publicKey, key);
  }
  return key;
}

export async function signBytes(privateKey: CryptoKey, data: Uint8Array): Promise<string> {
  return toBase64Url(new Uint8Array(await crypto.subtle.sign(ED25519, privateKey, data as BufferSource)));
}

/** False (never a throw) for a bad signature, a malformed signature or a malformed key. */
export async function verifyBytes(publicKey: string, signature: string, data: Uint8Array): Promise<boolean> {
  try {
    const sig = fromBase64Url(signature);
    if (sig.length !== 64) return false;
    return await crypto.subtle.verify(ED25519, await importPublicKey(publicKey), sig as BufferSource, data as BufferSource);
  } catch {
    return false;
  }
}
