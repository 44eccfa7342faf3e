/**
 * The Postgres `RegistryStore` on a fresh test database (db.ts), connected as the edge connects,
 * with what the store suites build on: a pool-owner account, a user account and a 4-layer model.
 *
 * @example
 * let reg: RegistryStoreFixture;
 * beforeAll(async () => { reg = await openRegistryStore(); });
 * afterAll(() => reg?.close());
 * await reg.store.createPool({ ownerAccountId: reg.ownerId, name: 'p', region: 'eu-west' });
 */
import postgres from 'postgres';
import { drizzleOver, type RegistryDb } from '../../db/client.js';
import { createRegistryStore } from '../../db/registry-store.js';
import { createAccount, upsertModel } from '../../db/seed.js';
import type { RegistryStore } from '../../db/registry-contract.js';
import { testManifest } from '../unit/edge-fixtures.js';
import { createTestDatabase } from './db.js';

export interface RegistryStoreFixture {
  /** The raw connection, for SQL the store has no method for. */
  client: postgres.Sql;
  db: RegistryDb;
  store: RegistryStore;
  ownerId: string;
  userId: string;
  /** The model `tiny` (testManifest, 4 layers). */
  modelId: string;
  close(): Promise<void>;
}

export async function openRegistryStore(): Promise<RegistryStoreFixture> {
  const testDb = await createTestDatabase();
  // The edge's options: fetch_types off, so arrays and timestamps go through drizzle's parsers.
  const client = postgres(testDb.url, { max: 4, fetch_types: false, onnotice: () => undefined });
  const close = async () => {
    await client.end({ timeout: 5 });
    await testDb.close();
  };
  try {
    const db = drizzleOver(client);
    const ownerId = (await createAccount(db, { name: 'owner', kind: 'pool-owner' })).id;
    const userId = (await createAccount(db, { name: 'user', email: 'user@example.com' })).id;
    const modelId = (await upsertModel(db, testManifest(4, 'tiny'))).id;
    return { client, db, store: createRegistryStore(client), ownerId, userId, modelId, close };
  } catch (err) {
    await close();
    throw err;
  }
}
