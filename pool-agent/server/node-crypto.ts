/**
 * Synchronous SHA-256 and Ed25519 signing through node:crypto for the per-step hot path. WebCrypto
 * is asynchronous (a thread-pool round trip per call, ~0.4 ms each on a loaded host), and a step
 * makes several such calls per hop. Output is byte-identical: Ed25519 signatures are deterministic
 * and both encode them as raw 64 bytes in base64url.
 *
 * @example
 * const crypto = nodeAgentCrypto(signingKey);
 * const sig = crypto.sign(attestationBytes(att));
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { fromBase64Url, toBase64Url } from '../../protocol/bytes.js';
import type { SigningKey } from '../../protocol/keys.js';
import type { AgentCrypto } from './attest.js';

export function nodeAgentCrypto(key: SigningKey): AgentCrypto {
  const privateKey = createPrivateKey({ key: Buffer.from(fromBase64Url(key.privateKeyPkcs8)), format: 'der', type: 'pkcs8' });
  // Peers' keys recur on every step of a job: keep a small bounded cache of parsed keys.
  const publicKeys = new Map<string, KeyObject>();
  const publicKeyOf = (raw: string): KeyObject => {
    let k = publicKeys.get(raw);
    if (!k) {
      k = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw }, format: 'jwk' });
      if (publicKeys.size >= 1024) publicKeys.delete(publicKeys.keys().next().value!);
      publicKeys.set(raw, k);
    }
    return k;
  };
  return {
    sha256Hex: (bytes) => createHash('sha256').update(bytes).digest('hex'),
    sign: (bytes) => toBase64Url(new Uint8Array(sign(null, bytes, privateKey))),
    verify: (publicKey, signature, bytes) => {
      try {
        return verify(null, bytes, publicKeyOf(publicKey), fromBase64Url(signature));
      } catch {
        return false;
      }
    },
  };
}
