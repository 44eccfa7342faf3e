/**
 * The edge's own cost per request (auth + validation + routing + ticket signing + attestation
 * verification + response), upstream excluded, with 10,000 agents in the registry.
 *
 * The fake head agent builds its whole signed NDJSON answer inside the transport call; that time
 * (the agents' work) is measured and subtracted from each request's wall time.
 *
 *   node --import tsx bench/edge-overhead.ts [--agents 10000] [--requests 2000] [--tokens 16] [--hops 1|2] [--chunkSteps 16] [--workerd]
 *
 * Tickets carry the edge's attestation chunking (default 16 steps per chunk: a 16-token answer is
 * the prefill chunk plus one chunk of 15 steps); `--chunkSteps 1` measures one chunk per step.
 *
 * Uses the in-memory registry (store latency excluded too: Hyperdrive/Postgres round trips come
 * on top in production). With --workerd the same measurement runs inside workerd (`wrangler dev`
 * with this file as the Worker; the file's default export is that Worker).
 */
import { createApp } from '../edge/app.js';
import { createMemoryStore } from '../edge/store/memory.js';
import { createByteTokenizer } from '../edge/text/byte-tokenizer.js';
import type { AgentTransport } from '../edge/deps.js';
import { generateApiKey } from '../protocol/api-key.js';
import { generateSigningKey, type SigningKey } from '../protocol/keys.js';
import { attestationHash, signAttestation, tokenCommitment, type Attestation, type SignedAttestation } from '../protocol/attestation.js';
import { jobRequestSchema } from '../protocol/agent-api.js';
import { ticketHash } from '../protocol/ticket.js';
import { manifestHash, type Manifest } from '../protocol/manifest.js';
import { sha256Hex } from '../protocol/bytes.js';
import { planRoutes } from '../edge/routing/plan.js';
import { ChainVerifier } from '../protocol/attestation.js';

export interface BenchOptions {
  agents: number;
  requests: number;
  tokens: number;
  hops: number;
  warmup: number;
  /** Steps per attestation chunk written into tickets (the edge default is 16; 1 = every step). */
  chunkSteps: number;
}

function argValue(argv: readonly string[], name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? Number(argv[i + 1]) : fallback;
}

export function benchOptions(argv: readonly string[]): BenchOptions {
  return {
    agents: argValue(argv, 'agents', 10_000),
    requests: argValue(argv, 'requests', 2_000),
    tokens: argValue(argv, 'tokens', 16),
    hops: argValue(argv, 'hops', 1),
    warmup: argValue(argv, 'warmup', 200),
    chunkSteps: argValue(argv, 'chunkSteps', 16),
  };
}

const NUM_LAYERS = 8;
const REGIONS = ['eu-west', 'eu-central', 'us-east', 'us-west', 'ap-south', 'ap-northeast', 'sa-east', 'af-south'];

function manifest(): Manifest {
  const sha = (s: string) => s.padEnd(64, '0').slice(0, 64);
  return {
    format: 'layernet.manifest/1',
    name: 'bench-model',
    architecture: { family: 'llama', vocabSize: 259, hiddenSize: 16, intermediateSize: 32, numLayers: NUM_LAYERS, numAttentionHeads: 2, numKeyValueHeads: 1, headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 4096 },
    dtype: 'float32',
    seed: 1,
    tokenizer: { kind: 'llama-sentencepiece-bpe', package: 'llama-tokenizer-js', bosTokenId: 1, eosTokenId: 2, chatTemplate: 'llama-2' },
    files: [
      { path: 'embed.onnx', kind: 'embed', layers: [0, 0], sha256: sha('e'), bytes: 1 },
      ...Array.from({ length: NUM_LAYERS }, (_, i) => ({ path: `l${i}.onnx`, kind: 'layers' as const, layers: [i, i + 1] as [number, number], sha256: sha(`${i + 1}`), bytes: 1 })),
      { path: 'head.onnx', kind: 'head', layers: [NUM_LAYERS, NUM_LAYERS], sha256: sha('f'), bytes: 1 },
    ],
  };
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
export interface Figure {
  median_ms: number;
  p99_ms: number;
  /** workerd's clock ticks in whole ms: the mean over many samples is the finer figure there. */
  mean_ms: number;
  n: number;
}
function figure(xs: number[]): Figure {
  const s = [...xs].sort((a, b) => a - b);
  return { median_ms: pct(s, 50), p99_ms: pct(s, 99), mean_ms: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length), n: s.length };
}

export async function runBench(o: BenchOptions): Promise<Record<string, unknown>> {
  const { agents: AGENTS, requests: REQUESTS, tokens: TOKENS, hops: HOPS, warmup: WARMUP, chunkSteps: CHUNK_STEPS } = o;
  const store = createMemoryStore();
  const m = manifest();
  const modelId = await manifestHash(m);
  await store.publishModel({ manifest: m, id: modelId, publishedBy: null, at: Date.now() });
  const pools = await Promise.all(REGIONS.map((region) => store.createPool({ ownerAccountId: 'owner', name: region, region })));
  // Agents share 64 keys (key generation is not what is measured); each has its own id.
  const keys: SigningKey[] = await Promise.all(Array.from({ length: 64 }, () => generateSigningKey()));
  const keyOf = new Map<string, SigningKey>();
  const now = Date.now();
  for (let i = 0; i < AGENTS; i++) {
    const layers: [number, number] = HOPS === 1 ? [0, NUM_LAYERS] : i % 2 ? [0, NUM_LAYERS / 2] : [NUM_LAYERS / 2, NUM_LAYERS];
    const key = keys[i % keys.length]!;
    const id = `agent-${i}`;
    keyOf.set(id, key);
    store.seedAgent({
      id,
      poolId: pools[i % pools.length]!.id,
      ownerAccountId: 'owner',
      endpoint: `http://agent-${i}.bench:9000`,
      publicKey: key.publicKey,
      hardware: { devices: [{ kind: 'cpu', name: 'cpu', memoryBytes: 1 }], memoryBytes: 1, platform: 'bench' },
      priceMicroUsdPerMTok: 100_000 + ((i * 7919) % 900_000),
      throughputTokensPerS: 100,
      spans: [{ modelId, layers }],
      status: 'active',
      reputation: 0.5 + ((i % 10) - 5) / 20,
      cooldownUntil: null,
      cooldownReason: null,
      probation: false,
      lastHeartbeatAt: now + 3_600_000,
      queueDepth: i % 5,
      load: 0,
      ttftMsEwma: 50 + (i % 300),
      perTokenMsEwma: 5 + (i % 40),
      failureRateEwma: (i % 50) / 500,
      observations: 20,
    });
  }

  let upstreamMs = 0;
  const transport: AgentTransport = async (url, init) => {
    const t0 = performance.now();
    if (url.endsWith('/cancel')) {
      upstreamMs += performance.now() - t0;
      return new Response('{}');
    }
    const req = jobRequestSchema.parse(JSON.parse(String(init.body)));
    const ticket = req.signedTicket.ticket;
    const hash = await ticketHash(ticket);
    const lines: string[] = [];
    let prevHash: string | null = null;
    let lastToken: number | null = null;
    // Chunks as a real head agent closes them under the ticket's policy (step count only: the
    // fake agent takes no time): the prefill alone, then up to maxSteps steps per chunk.
    for (let from = ticket.prefixTokens; from < ticket.limits.maxTokens; ) {
      const steps = from === ticket.prefixTokens ? 1 : (ticket.chunking?.maxSteps ?? 1);
      const to = Math.min(ticket.limits.maxTokens, from + steps);
      const tokens = Array.from({ length: to - from }, (_, j) => 3 + 97 + ((from + j) % 26));
      const atts: SignedAttestation[] = [];
      let input = lastToken === null ? ticket.inputHash : await tokenCommitment([lastToken, ...tokens.slice(0, -1)]);
      for (let i = 0; i < ticket.route.length; i++) {
        const hop = ticket.route[i]!;
        const last = i === ticket.route.length - 1;
        const output = last ? await tokenCommitment(tokens) : await sha256Hex(`h${i}:${from}`);
        const att: Attestation = {
          v: 1, ticketHash: hash, jobId: ticket.jobId, agentId: hop.agentId, modelId: ticket.modelId, hop: i,
          layers: hop.layers, steps: [from, to], inputCommitment: input, outputCommitment: output,
          ...(last ? { outputTokenIds: tokens } : {}), prevHash, issuedAt: Date.now(),
        };
        atts.push(await signAttestation(keyOf.get(hop.agentId)!.privateKey, att));
        prevHash = await attestationHash(att);
        input = output;
      }
      lines.push(JSON.stringify({ type: 'chunk', steps: [from, to], tokenIds: tokens, attestations: atts }));
      lastToken = tokens[tokens.length - 1]!;
      from = to;
    }
    lines.push(JSON.stringify({ type: 'done', finishReason: 'length' }));
    const body = lines.join('\n') + '\n';
    upstreamMs += performance.now() - t0;
    return new Response(body, { headers: { 'content-type': 'application/x-ndjson' } });
  };

  const edgeKey = await generateSigningKey();
  const app = createApp({
    store,
    signingKey: { id: 'bench', publicKey: edgeKey.publicKey, privateKey: edgeKey.privateKey },
    transport,
    tokenizer: createByteTokenizer(),
    config: { keepAliveMs: 60_000, attestChunkSteps: CHUNK_STEPS },
    waitUntil: () => undefined,
    log: () => undefined,
  });
  const apiKey = await generateApiKey();
  await store.createApiKey({ accountId: 'client', prefix: apiKey.prefix, hash: apiKey.hash, scopes: ['inference'] });
  const body = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say something about layer-block inference.' }], max_tokens: TOKENS, seed: 1 });
  const headers = { authorization: `Bearer ${apiKey.key}`, 'content-type': 'application/json', 'x-layernet-region': 'eu-west' };

  const overhead: number[] = [];
  const walls: number[] = [];
  for (let i = 0; i < WARMUP + REQUESTS; i++) {
    upstreamMs = 0;
    const t0 = performance.now();
    const res = await app.request('/v1/chat/completions', { method: 'POST', headers, body });
    await res.text();
    const wall = performance.now() - t0;
    if (res.status !== 200) throw new Error(`request failed: ${res.status}`);
    if (i >= WARMUP) {
      walls.push(wall);
      overhead.push(wall - upstreamMs);
    }
  }

  // Component costs.
  const candidates = await store.listRouteCandidates(modelId, { heartbeatAfter: 0, limit: 256, region: 'eu-west' });
  const planMs: number[] = [];
  for (let i = 0; i < 500; i++) {
    const t0 = performance.now();
    const plan = planRoutes(candidates, { numLayers: NUM_LAYERS, now: Date.now(), prefs: { sort: 'balanced', allow_fallbacks: true }, client: { region: 'eu-west' }, promptTokens: 20, maxTokens: TOKENS, random: Math.random });
    planMs.push(performance.now() - t0);
    if (!plan.ok) throw new Error(plan.reason);
  }
  const scanMs: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = performance.now();
    await store.listRouteCandidates(modelId, { heartbeatAfter: 0, limit: 256, region: 'eu-west' });
    scanMs.push(performance.now() - t0);
  }
  // Attestation verification alone, per token (ChainVerifier over a 256-token answer).
  const verifyMs: number[] = [];
  {
    const { issueTicket } = await import('../edge/dispatch/ticket.js');
    const hops = HOPS === 1 ? [candidates.find((c) => c.layers[0] === 0 && c.layers[1] === NUM_LAYERS)!] : [candidates.find((c) => c.layers[0] === 0)!, candidates.find((c) => c.layers[0] === NUM_LAYERS / 2)!];
    const promptIds = [1, 5, 6, 7];
    const t = Date.now();
    const { signed, hash } = await issueTicket(
      { jobId: 'verify-bench', model: { id: modelId, dtype: 'float32' }, hops, promptIds, prefixIds: [], maxTokens: 256, sampling: { temperature: 1, topP: 1, topK: 0, seed: 1 }, stopTokenIds: [2], now: t, ttlMs: 60_000, deadline: t + 60_000, edgeKeyId: 'bench' },
      edgeKey.privateKey,
    );
    const res = await transport('http://agent-0.bench:9000/v1/jobs', { method: 'POST', body: JSON.stringify({ signedTicket: signed, promptIds, prefixIds: [] }) });
    const chunks = (await res.text()).trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'chunk');
    for (let round = 0; round < 3; round++) {
      const verifier = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: NUM_LAYERS, keys: new Map(hops.map((h) => [h.agentId, h.publicKey])) });
      for (const c of chunks) {
        const t0 = performance.now();
        const r = await verifier.verifyChunk(c.attestations);
        verifyMs.push(performance.now() - t0);
        if (!r.ok) throw new Error(r.detail);
      }
    }
  }

  return {
    agents: AGENTS,
    hops: HOPS,
    tokens: TOKENS,
    chunkSteps: CHUNK_STEPS,
    edge_overhead_per_request: figure(overhead),
    wall_including_fake_upstream: figure(walls),
    edge_overhead_per_token: figure(overhead.map((x) => x / TOKENS)),
    route_planning_256_candidates: figure(planMs),
    candidate_read_cache_miss_memory_store: figure(scanMs),
    verify_one_chunk: figure(verifyMs),
  };
}

function print(runtime: string, r: Record<string, unknown>): void {
  console.log(`edge overhead in ${runtime}: ${r.agents} agents, ${r.hops}-hop routes, ${r.tokens} tokens per request, ${r.chunkSteps} steps per attestation chunk`);
  for (const [k, v] of Object.entries(r)) {
    if (typeof v !== 'object' || v === null) continue;
    const f = v as Figure;
    console.log(`  ${k.padEnd(40)} median ${f.median_ms.toFixed(3)} ms   p99 ${f.p99_ms.toFixed(3)} ms   mean ${f.mean_ms.toFixed(3)} ms   (n=${f.n})`);
  }
}

/** Runs the bench inside workerd: wrangler dev with this file as the Worker, then GET /run. */
async function runInWorkerd(o: BenchOptions): Promise<Record<string, unknown>> {
  const { spawn } = await import('node:child_process');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join, resolve } = await import('node:path');
  const { createServer } = await import('node:net');
  const root = resolve(import.meta.dirname, '..');
  const dir = mkdtempSync(join(tmpdir(), 'edge-bench-'));
  writeFileSync(
    join(dir, 'wrangler.toml'),
    `name = "edge-bench"\nmain = ${JSON.stringify(join(root, 'bench', 'edge-overhead.ts'))}\ncompatibility_date = "2025-09-01"\ncompatibility_flags = ["nodejs_compat"]\n`,
  );
  const port = await new Promise<number>((res, rej) => {
    const srv = createServer();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => res(typeof a === 'object' && a ? a.port : 0));
    });
  });
  const child = spawn(process.execPath, [join(root, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), 'dev', '--ip', '127.0.0.1', '--port', String(port), '--persist-to', join(dir, 'state'), '--show-interactive-dev-session=false', '--log-level', 'warn'], {
    cwd: dir,
    env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', WRANGLER_LOG_PATH: join(dir, 'logs'), NO_COLOR: '1', CI: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  child.stdout!.on('data', (b: Buffer) => (log = (log + b.toString()).slice(-4000)));
  child.stderr!.on('data', (b: Buffer) => (log = (log + b.toString()).slice(-4000)));
  try {
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if (i > 240) throw new Error(`workerd did not start:\n${log}`);
      try {
        if ((await fetch(`${url}/ready`, { signal: AbortSignal.timeout(2000) })).ok) break;
      } catch {
        /* not up yet */
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    const q = new URLSearchParams(Object.entries(o).map(([k, v]) => [k, String(v)]));
    const res = await fetch(`${url}/run?${q}`);
    if (!res.ok) throw new Error(`bench failed in workerd: ${res.status} ${await res.text()}`);
    return (await res.json()) as Record<string, unknown>;
  } finally {
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      /* gone */
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The Worker used by --workerd. */
export default {
  async fetch(req: Request): Promise<Response> {
    const u = new URL(req.url);
    if (u.pathname === '/ready') return new Response('ok');
    if (u.pathname !== '/run') return new Response('not found', { status: 404 });
    const argv = [...u.searchParams.entries()].flatMap(([k, v]) => [`--${k}`, v]);
    try {
      return Response.json(await runBench(benchOptions(argv)));
    } catch (err) {
      return new Response(String(err instanceof Error ? err.stack : err), { status: 500 });
    }
  },
};

const invokedAsScript = typeof process !== 'undefined' && Array.isArray(process.argv) && /edge-overhead\.ts$/.test(process.argv[1] ?? '');
if (invokedAsScript) {
  const argv = process.argv.slice(2);
  const o = benchOptions(argv);
  const run = argv.includes('--workerd') ? runInWorkerd(o).then((r) => print(`workerd (wrangler ${'dev'})`, r)) : runBench(o).then((r) => print(`Node ${process.version}`, r));
  run.catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
