/**
 * Models (listing with live capacity, lookup by id or name, publishing) and their files
 * (tokenizers), over Postgres.
 *
 * @example
 * const model = await modelMethods(db).getModel('tiny');
 */
import { and, asc, eq, gte, inArray, or, sql } from 'drizzle-orm';
import { StoreConflictError, type RegistryStore } from '../registry-contract.js';
import type { RegistryDb } from '../client.js';
import { modelFileStore } from '../model-files-store.js';
import { agents, agentSpans, models } from '../schema/index.js';
import { date, bound, toModel } from './rows.js';

export function modelMethods(db: RegistryDb) {
  return {
    // ------------------------------------------------------------ models
    async listModels({ heartbeatAfter, limit }) {
      const page = await db.select().from(models).orderBy(asc(models.createdAt), asc(models.id)).limit(bound(limit));
      if (!page.length) return [];
      // One grouped pass over the page's spans (distinct agent per model), not a subquery per model.
      const pairs = db
        .selectDistinct({ modelId: agentSpans.modelId, agentId: agentSpans.agentId })
        .from(agentSpans)
        .innerJoin(agents, eq(agents.id, agentSpans.agentId))
        .where(
          and(
            inArray(
              agentSpans.modelId,
              page.map((m) => m.id),
            ),
            eq(agents.status, 'active'),
            gte(agents.lastHeartbeatAt, date(heartbeatAfter)),
          ),
        )
        .as('pairs');
      const counts = await db
        .select({ modelId: pairs.modelId, n: sql<number>`count(*)::int` })
        .from(pairs)
        .groupBy(pairs.modelId);
      const byModel = new Map(counts.map((c) => [c.modelId, c.n]));
      return page.map((m) => ({ ...toModel(m), agents: byModel.get(m.id) ?? 0 }));
    },
    async getModel(idOrName) {
      const [row] = await db
        .select()
        .from(models)
        .where(or(eq(models.id, idOrName), eq(models.name, idOrName)))
        .orderBy(sql`${models.id} = ${idOrName} desc`)
        .limit(1);
      return row ? toModel(row) : null;
    },
    async publishModel({ manifest, id, publishedBy, at }) {
      const inserted = await db
        .insert(models)
        .values({
          id,
          name: manifest.name,
          manifest,
          numLayers: manifest.architecture.numLayers,
          dtype: manifest.dtype,
          publishedBy,
          createdAt: date(at),
        })
        .onConflictDoNothing()
        .returning();
      if (inserted[0]) return toModel(inserted[0]);
      const [existing] = await db.select().from(models).where(eq(models.id, id)).limit(1);
      if (existing) return toModel(existing);
      throw new StoreConflictError(`a model named ${manifest.name} already exists`);
    },

    // ------------------------------------------------------------ model files (tokenizers)
    ...modelFileStore(db),

  } satisfies Partial<RegistryStore>;
}
