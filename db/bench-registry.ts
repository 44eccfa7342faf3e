/**
 * Registry hot paths at scale: routing candidates and heartbeats, against `DATABASE_URL` (a
 * scratch database is created and dropped on that server) or an in-memory embedded PGlite.
 *
 *   node --import tsx db/bench-registry.ts [--agents 10000] [--models 100] [--iterations 200]
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { manifestHash, type Manifest } from '../protocol/manifest.js';
import { createDb } from './client.js';
import { startEmbeddedRegistry } from './embedded.js';
import { migrate } from './migrate.js';
import { createRegistryStore } from './registry-store.js';
import { seedAgents } from './seed-agents.js';

const { values } = parseArgs({
  options: { agents: { type: 'string', default: '10000' }, models: { type: 'string', default: '100' }, iterations: { type: 'string', default: '200' } },
});
const count = Number(values.agents);
const modelCount = Number(values.models);
const iterations = Number(values.iterations);

function manifest(name: string): Manifest {
  const sha = (s: string) => s.padEnd(64, '0').slice(0, 64);
  return {
    format: 'layernet.manifest/1',
    name,
    architecture: { family: 'llama', vocabSize: 259, hiddenSize: 16, intermediateSize: 32, numLayers: 8, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 2048 },
    dtype: 'float32',
    seed: 1,
    tokenizer: { kind: 'llama-sentencepiece-bpe', package: 'llama-tokenizer-js', bosTokenId: 1, eosTokenId: 2, chatTemplate: 'llama-2' },
    files: [
      { path: 'embed.onnx', kind: 'embed', layers: [0, 0], sha256: sha('e'), bytes: 1 },
      ...Array.from({ length: 8 }, (_, i) => ({ path: `layer-${i}.onnx`, kind: 'layers' as const, layers: [i, i + 1] as [number, number], sha256: sha(`${i + 1}`), bytes: 1 })),
      { path: 'head.onnx', kind: 'head', layers: [8, 8], sha256: sha('f'), bytes: 1 },
    ],
  };
}

async function target(): Promise<{ url: string; label: string; done(): Promise<void> }> {
  const server = process.env.DATABASE_URL;
  if (!server) {
    const reg = await startEmbeddedRegistry();
    return { url: reg.url, label: 'embedded PGlite (in memory)', done: () => reg.stop() };
  }
  const name = `layernet_bench_${randomBytes(4).toString('hex')}`;
  const admin = postgres(server, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`create database "${name}"`);
  const u = new URL(server);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    label: `PostgreSQL (${u.host})`,
    done: async () => {
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
    },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

const t = await target();
const { db, sql, close } = createDb(t.url, { max: 1 });
try {
  await migrate(sql);
  const store = createRegistryStore(sql);
  const modelIds: string[] = [];
  for (let i = 0; i < modelCount; i++) {
    const m = manifest(`bench-${i}`);
    modelIds.push((await store.publishModel({ manifest: m, id: await manifestHash(m), publishedBy: null, at: Date.now() })).id);
  }
  const seedStart = performance.now();
  const seeded = await seedAgents(db, { modelIds, numLayers: 8, count, agentsPerPool: 25, regions: ['eu-west', 'us-east', 'ap-south'], slices: 2 });
  const seedMs = performance.now() - seedStart;
  await sql`analyze`;

  const lat: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const start = performance.now();
    await store.listRouteCandidates(modelIds[i % modelIds.length]!, { heartbeatAfter: Date.now() - 60_000, limit: 256, region: 'eu-west' });
    lat.push(performance.now() - start);
  }
  lat.sort((a, b) => a - b);

  const hb: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const now = Date.now();
    const start = performance.now();
    await store.applyHeartbeat({ agentId: seeded.agentIds[i % seeded.agentIds.length]!, seq: 1 + i, sentAt: now, receivedAt: now, queueDepth: 1, load: 0.3, freeKvBytes: 1, activeSessions: 0 });
    hb.push(performance.now() - start);
  }
  hb.sort((a, b) => a - b);

  const lm: number[] = [];
  for (let i = 0; i < Math.min(iterations, 20); i++) {
    const start = performance.now();
    await store.listModels({ heartbeatAfter: Date.now() - 60_000, limit: 500 });
    lm.push(performance.now() - start);
  }
  lm.sort((a, b) => a - b);
  const fmt = (x: number) => x.toFixed(2);
  console.log(`${t.label}: ${count} agents, ${modelCount} models; seeded in ${(seedMs / 1000).toFixed(1)} s`);
  console.log(`listRouteCandidates (limit 256, region-first): p50 ${fmt(percentile(lat, 0.5))} ms, p95 ${fmt(percentile(lat, 0.95))} ms over ${iterations}`);
  console.log(`listModels (limit 500, fresh-agent counts): p50 ${fmt(percentile(lm, 0.5))} ms over ${lm.length}`);
  console.log(`applyHeartbeat: p50 ${fmt(percentile(hb, 0.5))} ms, p95 ${fmt(percentile(hb, 0.95))} ms over ${iterations}`);
} finally {
  await close();
  await t.done();
}
