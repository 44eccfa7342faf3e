/**
 * The agent's Ed25519 identity: created once by `pool-agent init`, stored as PKCS#8 in
 * `identity.json` with 0600 permissions, loaded by every command that signs.
 *
 * @example
 * const id = await loadIdentity(dir); // throws IdentityError with a hint to run `pool-agent init`
 * await signBytes(id.privateKey, bytes);
 */
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { generateSigningKey, importSigningKey, type SigningKey } from '../protocol/keys.js';
import { IDENTITY_FILE, writeFileAtomic } from './config.js';

const identityFileSchema = z.object({
  v: z.literal(1),
  publicKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  privateKeyPkcs8: z.string().min(40).max(256),
  createdAt: z.number().int(),
});

export class IdentityError extends Error {
  override readonly name = 'IdentityError';
}

export async function identityExists(dir: string): Promise<boolean> {
  return stat(join(dir, IDENTITY_FILE)).then(
    () => true,
    () => false,
  );
}

/** Creates a new identity; refuses to overwrite one unless `force`. */
export async function createIdentity(dir: string, opts: { force?: boolean; clock?: () => number } = {}): Promise<SigningKey> {
  if (!opts.force && (await identityExists(dir))) throw new IdentityError(`an identity already exists in ${dir} (use --force to replace it)`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const key = await generateSigningKey();
  const body = { v: 1, publicKey: key.publicKey, privateKeyPkcs8: key.privateKeyPkcs8, createdAt: (opts.clock ?? Date.now)() };
  const path = join(dir, IDENTITY_FILE);
  await writeFileAtomic(path, JSON.stringify(body, null, 2) + '\n', 0o600);
  await chmod(path, 0o600);
  return importSigningKey(key.privateKeyPkcs8);
}

export async function loadIdentity(dir: string): Promise<SigningKey> {
  const path = join(dir, IDENTITY_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new IdentityError(`no agent identity at ${path}: run \`pool-agent init --dir ${dir}\` first`);
  }
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) throw new IdentityError(`${path} is readable by other users (mode ${(st.mode & 0o777).toString(8)}): run chmod 600 on it`);
  let parsed;
  try {
    parsed = identityFileSchema.parse(JSON.parse(text));
  } catch {
    throw new IdentityError(`${path} is not a valid identity file`);
  }
  const key = await importSigningKey(parsed.privateKeyPkcs8);
  if (key.publicKey !== parsed.publicKey) throw new IdentityError(`${path}: the public key does not match the private key`);
  return key;
}
