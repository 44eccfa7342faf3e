/**
 * The embedded registry (PGlite over the wire protocol): concurrent postgres.js clients get
 * their own results (no interleaving of extended-protocol messages or transactions), a client
 * that dies mid-transaction does not block or leak into the others, and data persists across
 * stop/start of the same data folder.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../../db/client.js';
import { startEmbeddedRegistry } from '../../db/embedded.js';
import { migrate } from '../../db/migrate.js';
import { accounts } from '../../db/schema/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'layernet-embedded-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('embedded registry', () => {
  it('serves two postgres.js clients at once, each seeing its own statements and transactions', async () => {
    const registry = await startEmbeddedRegistry();
    const a = postgres(registry.url, { max: 4, fetch_types: false, onnotice: () => undefined });
    const b = postgres(registry.url, { max: 4, fetch_types: false, prepare: false, onnotice: () => undefined });
    try {
      await a`create table t (id int primary key, v text)`;
      await a`insert into t select g, 'v' || g from generate_series(1, 200) g`;
      const wrong: number[] = [];
      await Promise.all(
        Array.from({ length: 300 }, async (_, i) => {
          const c = i % 2 ? a : b;
          const id = (i % 200) + 1;
          if (i % 3 === 0) {
            const [r] = await c`select v, ${i}::int as i from t where id = ${id}`;
            if (r?.v !== `v${id}` || r?.i !== i) wrong.push(i);
          } else if (i % 3 === 1) {
            // A rolled-back transaction must leave nothing behind for the other client.
            await c
              .begin(async (tx) => {
                await tx`update t set v = 'dirty' where id = ${id}`;
                throw new Error('rollback');
              })
              .catch(() => undefined);
            const [r] = await c`select v from t where id = ${id}`;
            if (r?.v !== `v${id}`) wrong.push(i);
          } else {
            const [r] = await c`select count(*)::int as n, ${`s${i}`}::text as s from t where id <= ${id}`;
            if (r?.n !== id || r?.s !== `s${i}`) wrong.push(i);
          }
        }),
      );
      expect(wrong).toEqual([]);
      const [{ dirty }] = (await b`select count(*)::int as dirty from t where v = 'dirty'`) as unknown as [{ dirty: number }];
      expect(dirty).toBe(0);
    } finally {
      await a.end({ timeout: 1 });
      await b.end({ timeout: 1 });
      await registry.stop();
    }
  });

  it('keeps answers straight while short-lived connections come and go (the edge connects per request)', async () => {
    const registry = await startEmbeddedRegistry();
    const setup = postgres(registry.url, { max: 1, onnotice: () => undefined });
    try {
      await setup`create table t (id int primary key, v text)`;
      await setup`insert into t select g, 'v' || g from generate_series(1, 500) g`;
      const wrong: string[] = [];
      const request = async (i: number) => {
        // The edge's per-request client: one connection, named statements, no type fetch.
        const c = postgres(registry.url, { max: 1, fetch_types: false, onnotice: () => undefined });
        try {
          for (let k = 0; k < 3; k++) {
            const id = ((i * 7 + k) % 500) + 1;
            const [r] = await c`select v, ${i}::int as i from t where id = ${id}`;
            if (r?.v !== `v${id}` || r?.i !== i) wrong.push(`${i}.${k}: ${JSON.stringify(r)}`);
          }
          const [r] = await c.begin(async (tx) => {
            await tx`update t set v = v where id = ${(i % 500) + 1}`;
            return tx`select ${`s${i}`}::text as s`;
          });
          if (r?.s !== `s${i}`) wrong.push(`${i}.tx: ${JSON.stringify(r)}`);
        } finally {
          await c.end({ timeout: 5 });
        }
      };
      let next = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (next < 120) await request(next++);
      }));
      expect(wrong).toEqual([]);
    } finally {
      await setup.end({ timeout: 1 });
      await registry.stop();
    }
  });

  it('rolls back and releases a client that disconnects inside a transaction', async () => {
    const registry = await startEmbeddedRegistry();
    const a = postgres(registry.url, { max: 1, onnotice: () => undefined });
    const b = postgres(registry.url, { max: 1, onnotice: () => undefined });
    try {
      await b`create table t (id int primary key)`;
      let entered!: () => void;
      const inside = new Promise<void>((r) => (entered = r));
      const abandoned = a
        .begin(async (tx) => {
          await tx`insert into t values (1)`;
          entered();
          await new Promise(() => undefined); // never commits
        })
        .catch((err: Error) => err);
      await inside;
      await a.end({ timeout: 0 });
      expect(await abandoned).toBeInstanceOf(Error);
      const rows = await b`select count(*)::int as n from t`;
      expect(rows[0]!.n).toBe(0);
    } finally {
      await b.end({ timeout: 1 });
      await registry.stop();
    }
  });

  it("closes a departed client's named prepared statements in the shared backend", async () => {
    const registry = await startEmbeddedRegistry();
    const observer = postgres(registry.url, { max: 1, prepare: false, onnotice: () => undefined });
    try {
      const countPrepared = async () => ((await observer`select count(*)::int as n from pg_prepared_statements`)[0]!.n as number);
      const before = await countPrepared();
      const client = postgres(registry.url, { max: 1, prepare: true, onnotice: () => undefined });
      for (let i = 0; i < 5; i++) await client`select ${i}::int + ${i}::int as x, ${String(i)}::text as y`;
      await client`select 1 as one`;
      expect(await countPrepared()).toBeGreaterThan(before);
      await client.end({ timeout: 1 });
      // The cleanup runs as the departed connection's last turn, before anything queued after it.
      let after = await countPrepared();
      for (let i = 0; i < 50 && after !== before; i++) {
        await new Promise((r) => setTimeout(r, 20));
        after = await countPrepared();
      }
      expect(after).toBe(before);
    } finally {
      await observer.end({ timeout: 1 });
      await registry.stop();
    }
  });

  it('keeps its data across stop and start of the same data folder', async () => {
    const dataDir = join(dir, 'registry');
    const first = await startEmbeddedRegistry({ dataDir });
    const one = createDb(first.url);
    await migrate(one.sql);
    await one.db.insert(accounts).values({ name: 'persisted', kind: 'pool-owner' });
    await one.close();
    await first.stop();

    const second = await startEmbeddedRegistry({ dataDir });
    const two = createDb(second.url);
    try {
      const rows = await two.db.select().from(accounts);
      expect(rows.map((r) => [r.name, r.kind])).toEqual([['persisted', 'pool-owner']]);
      expect(second.port).toBeGreaterThan(0);
    } finally {
      await two.close();
      await second.stop();
    }
  });
});
