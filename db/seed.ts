/**
 * Seeding helpers for the start script, tests and operators: accounts, API keys (only the hash
 * is stored; the key is returned once), models.
 *
 * @example
 * const { db } = createDb(url);
 * const account = await createAccount(db, { name: 'dev', kind: 'user' });
 * const { key } = await createApiKey(db, { accountId: account.id, scopes: ['inference'], name: 'dev' });
 * await upsertModel(db, manifest);
 */
import { and, eq, isNull, ne } from 'drizzle-orm';
import { generateApiKey, type ApiKeyScope } from '../protocol/api-key.js';
import { manifestHash, manifestSchema, type Manifest } from '../protocol/manifest.js';
import type { RegistryDb } from './client.js';
import { accounts, apiKeys, models, type AccountKind } from './schema/index.js';

export async function createAccount(
  db: RegistryDb,
  input: { name: string; email?: string | null; kind?: AccountKind },
): Promise<{ id: string; name: string; kind: AccountKind }> {
  const [row] = await db
    .insert(accounts)
    .values({ name: input.name, email: input.email ?? null, kind: input.kind ?? 'user' })
    .returning({ id: accounts.id, name: accounts.name, kind: accounts.kind });
  return row!;
}

export interface ApiKeyLimits {
  requestsPerMinute?: number | null;
  tokensPerMinute?: number | null;
  budgetMicroUsd?: number | null;
  expiresAt?: Date | null;
}

export interface CreatedApiKey {
  /** The full key: shown once, never stored. */
  key: string;
  prefix: string;
  id: string;
}

export async function createApiKey(
  db: RegistryDb,
  input: { accountId: string; scopes: ApiKeyScope[]; name: string; limits?: ApiKeyLimits },
): Promise<CreatedApiKey> {
  const { key, prefix, hash } = await generateApiKey();
  const [row] = await db
    .insert(apiKeys)
    .values({
      accountId: input.accountId,
      prefix,
      hash,
      scopes: [...new Set(input.scopes)],
      name: input.name,
      requestsPerMinute: input.limits?.requestsPerMinute ?? null,
      tokensPerMinute: input.limits?.tokensPerMinute ?? null,
      budgetMicroUsd: input.limits?.budgetMicroUsd ?? null,
      expiresAt: input.limits?.expiresAt ?? null,
    })
    .returning({ id: apiKeys.id });
  return { key, prefix, id: row!.id };
}

/** Revokes a key (idempotent: the first revocation time is kept). Returns whether it exists. */
export async function revokeApiKey(db: RegistryDb, id: string, at: Date = new Date()): Promise<boolean> {
  await db
    .update(apiKeys)
    .set({ revokedAt: at })
    .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)));
  const rows = await db.select({ id: apiKeys.id }).from(apiKeys).where(eq(apiKeys.id, id)).limit(1);
  return rows.length === 1;
}

/**
 * Registers a model manifest (validated); idempotent on its hash. A different manifest under a
 * name already taken is an error (the name would point at two models), unless `takeOverName`:
 * then the older model keeps its id, rows and agents but is renamed `NAME@<first 12 hex of its
 * id>`, and the name points at this manifest (an operator rebuilding a model, e.g. the local
 * demo after a builder update).
 */
export async function upsertModel(
  db: RegistryDb,
  manifest: Manifest,
  publishedBy: string | null = null,
  options: { takeOverName?: boolean } = {},
): Promise<{ id: string; name: string; created: boolean; renamed?: string }> {
  const valid = manifestSchema.parse(manifest);
  const id = await manifestHash(valid);
  if (options.takeOverName) {
    const [older] = await db.select({ id: models.id }).from(models).where(and(eq(models.name, valid.name), ne(models.id, id))).limit(1);
    if (older) {
      const renamed = `${valid.name}@${older.id.slice(0, 12)}`;
      await db.update(models).set({ name: renamed }).where(eq(models.id, older.id));
      return { ...(await upsertModel(db, valid, publishedBy)), renamed };
    }
  }
  const inserted = await db
    .insert(models)
    .values({ id, name: valid.name, manifest: valid, numLayers: valid.architecture.numLayers, dtype: valid.dtype, publishedBy })
    .onConflictDoNothing()
    .returning({ id: models.id });
  if (inserted.length) return { id, name: valid.name, created: true };
  const [existing] = await db.select({ id: models.id }).from(models).where(eq(models.id, id)).limit(1);
  if (!existing) throw new Error(`a different model is already registered as ${valid.name}`);
  return { id, name: valid.name, created: false };
}
