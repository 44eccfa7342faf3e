/**
 * Bulk seeding of pools and agents for scale tests and benches (10k-100k agents), in batched
 * multi-row inserts. Agents get random (not usable) public keys and a fresh heartbeat.
 *
 * @example
 * const { agentIds } = await seedAgents(db, { modelIds: [modelId], numLayers: 8, count: 10_000, regions: ['eu-west', 'us-east'] });
 */
import { toBase64Url } from '../protocol/bytes.js';
import type { RegistryDb } from './client.js';
import { accounts, agents, agentSpans, pools } from './schema/index.js';

export interface SeedAgentsOptions {
  /** Models the agents serve: pool k serves `modelIds[k % modelIds.length]` (all layers, see `slices`). */
  modelIds: string[];
  /** Layers of every model in `modelIds`. */
  numLayers: number;
  count: number;
  /** Pools are spread over these regions round-robin (default ['local']). */
  regions?: string[];
  agentsPerPool?: number;
  /**
   * Layer blocks per agent: 1 = every agent serves the whole model (default); k > 1 = agents
   * take turns serving the k contiguous slices of the model.
   */
  slices?: number;
  /** Heartbeat time written on every agent (default now). */
  heartbeatAt?: number;
  /** Rows per insert statement (default 1000). */
  batchSize?: number;
}

export interface SeededAgents {
  accountId: string;
  poolIds: string[];
  agentIds: string[];
}

export async function seedAgents(db: RegistryDb, options: SeedAgentsOptions): Promise<SeededAgents> {
  if (!options.modelIds.length) throw new RangeError('seedAgents needs at least one model id');
  const regions = options.regions?.length ? options.regions : ['local'];
  const perPool = options.agentsPerPool ?? 100;
  const slices = Math.max(1, Math.min(options.slices ?? 1, options.numLayers));
  const batch = Math.max(1, options.batchSize ?? 1000);
  const heartbeatAt = new Date(options.heartbeatAt ?? Date.now());

  const [account] = await db.insert(accounts).values({ name: 'seeded pools', kind: 'pool-owner' }).returning({ id: accounts.id });
  const accountId = account!.id;

  const poolCount = Math.ceil(options.count / perPool);
  const poolIds: string[] = [];
  for (let start = 0; start < poolCount; start += batch) {
    const rows = await db
      .insert(pools)
      .values(
        Array.from({ length: Math.min(batch, poolCount - start) }, (_, i) => ({
          ownerAccountId: accountId,
          name: `seeded-${start + i}`,
          region: regions[(start + i) % regions.length]!,
          stakeMicroUsd: 1_000_000,
        })),
      )
      .returning({ id: pools.id });
    poolIds.push(...rows.map((r) => r.id));
  }

  const bounds = Array.from({ length: slices + 1 }, (_, i) => Math.round((i * options.numLayers) / slices));
  const agentIds: string[] = [];
  for (let start = 0; start < options.count; start += batch) {
    const n = Math.min(batch, options.count - start);
    const rows = await db
      .insert(agents)
      .values(
        Array.from({ length: n }, (_, i) => {
          const k = start + i;
          return {
            poolId: poolIds[Math.floor(k / perPool)]!,
            endpoint: `http://127.0.0.1:9/agents/${k}`,
            publicKey: toBase64Url(crypto.getRandomValues(new Uint8Array(32))),
            hardware: { devices: [{ kind: 'cpu' as const, name: 'seeded', memoryBytes: 1 << 30 }], memoryBytes: 1 << 30, platform: 'seed' },
            priceMicroUsdPerMTok: 100_000 + (k % 100) * 1000,
            throughputTokensPerS: 50,
            lastHeartbeatAt: heartbeatAt,
            heartbeatSeq: 0,
            queueDepth: k % 5,
          };
        }),
      )
      .returning({ id: agents.id });
    const ids = rows.map((r) => r.id);
    agentIds.push(...ids);
    await db.insert(agentSpans).values(
      ids.map((agentId, i) => {
        const k = start + i;
        const slice = k % slices;
        const modelId = options.modelIds[Math.floor(k / perPool) % options.modelIds.length]!;
        return { agentId, modelId, layerStart: bounds[slice]!, layerEnd: bounds[slice + 1]! };
      }),
    );
  }
  return { accountId, poolIds, agentIds };
}
