/**
 * Decode throughput of the `small` model: unsplit in one process (runtime generate()) versus one
 * agent and chains of 2 and 3 agents (`pool-agent serve` child processes) over loopback, every
 * one with the same onnxruntime thread budget (a single sequence runs one hop at a time, so each
 * agent gets the whole budget). Prints tokens/s and the ratio to unsplit; target: a chain of 3
 * keeps >= 90% of unsplit decode. Every layout's run sits between two unsplit runs, and its ratio
 * is the median over rounds of its tokens/s over theirs (a shared host drifts within seconds).
 *
 * Each row also splits the time per token (whole run, prefill included) into time inside the
 * spans (onnxruntime; the agents' layernet_agent_span_duration_seconds, the unsplit run timed the
 * same way) and the rest (hops, transport, attestation). "ceiling" is the unsplit run's span time
 * over the layout's: the share of unsplit speed the layout would keep if hops cost nothing.
 *
 * Each chain runs twice per round: signing every step, and under the edge's default chunking for
 * streams (16 steps or 50 ms per attestation chunk), where tokens reach the client per chunk.
 *
 * A further row runs one agent whose span is a local pipeline over `--devices` (default cpu,cpu:
 * two onnxruntime sessions in the agent process, as a host with two GPUs would run them).
 *
 * Chains run over links (the default hop transport: one connection per job and hop, a decode step
 * goes once round the ring) and, with `--post` (default on), again with a head that sends every
 * step by POST (`--hop-transport post`; the later hops are the same processes).
 *
 * `--agents 3` runs only the chain of 3 (every chain's agents hold a copy of the model at once, so a
 * large model may not fit them all).
 *
 *   npm run bench:chain -- [--model .models/small] [--tokens 64] [--threads 2] [--repeats 3] [--prompt 32] [--chunk-steps 16] [--chunk-ms 50] [--devices cpu,cpu] [--no-post] [--agents 1,2,3]
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { buildModel, loadManifest } from '../pool-agent/model/build.js';
import { generate } from '../pool-agent/runtime/pipeline.js';
import { loadSpan } from '../pool-agent/runtime/span.js';
import type { SpanSession } from '../pool-agent/runtime/types.js';
import { createTestEdge, GREEDY, startAgent, type ChildAgent, type TestEdge } from '../test/support/agents.js';
import { jobEventSchema } from '../protocol/agent-api.js';
import { manifestHash } from '../protocol/manifest.js';
import type { ChunkingPolicy, RouteHop } from '../protocol/ticket.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: '.models/small' },
    tokens: { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' },
    repeats: { type: 'string', default: '3' },
    prompt: { type: 'string', default: '32' },
    /** Attestation chunks for the second row of each chain (the edge's stream default); 1 = skip. */
    'chunk-steps': { type: 'string', default: '16' },
    'chunk-ms': { type: 'string', default: '50' },
    /** A one-agent row whose span is cut over these local devices ('' = skip). */
    devices: { type: 'string', default: 'cpu,cpu' },
    /** Also run every chain with a head that sends by POST. */
    post: { type: 'boolean', default: true },
    /** The chain lengths to run. */
    agents: { type: 'string', default: '1,2,3' },
  },
  allowNegative: true,
});
const DEVICES = values.devices;
const AGENTS = values.agents!.split(',').map(Number);
if (AGENTS.some((k) => !Number.isInteger(k) || k < 1)) throw new Error(`--agents takes chain lengths such as 1,2,3, got ${values.agents}`);
const CHUNK_STEPS = Number(values['chunk-steps']);
const CHUNK_MS = Number(values['chunk-ms']);
const modelDir = resolve(values.model!);
const TOKENS = Number(values.tokens);
const THREADS = Number(values.threads);
const REPEATS = Number(values.repeats);
const PROMPT = Array.from({ length: Number(values.prompt) }, (_, i) => (i === 0 ? 1 : 100 + ((i * 7919) % 30000)));

const manifest = await loadManifest(modelDir).catch(async () => {
  process.stderr.write(`building the small model into ${modelDir}\n`);
  return (await buildModel({ preset: 'small', outDir: modelDir })).manifest;
});
const L = manifest.architecture.numLayers;
const modelId = await manifestHash(manifest);
const split = (k: number): [number, number][] => Array.from({ length: k }, (_, i) => [Math.round((i * L) / k), Math.round(((i + 1) * L) / k)]);

/** Decode tokens/s from per-token timestamps: (n - 1) tokens after the first (prefill excluded). */
const rate = (times: number[]) => (times.length - 1) / ((times[times.length - 1]! - times[0]!) / 1000);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Runner {
  name: string;
  /** Attestation chunking in the ticket (chains only; undefined = one chunk per step). */
  chunking?: ChunkingPolicy;
  /** One generation; per-token timestamps and the time to the first token. */
  run(): Promise<{ times: number[]; ttftMs: number; computeMs: number }>;
  close(): Promise<void>;
}

async function unsplitRunner(): Promise<Runner> {
  const span = await loadSpan(modelDir, [0, L], { provider: 'cpu', intraOpThreads: THREADS });
  return {
    name: 'unsplit, in-process generate()',
    async run() {
      const session = span.openSession();
      const times: number[] = [];
      let computeMs = 0;
      // Timed as the agents time their span runs (layernet_agent_span_duration_seconds).
      const timed: SpanSession = {
        get length() {
          return session.length;
        },
        get kvBytes() {
          return session.kvBytes;
        },
        async forward(input, options) {
          const t = performance.now();
          try {
            return await session.forward(input, options);
          } finally {
            computeMs += performance.now() - t;
          }
        },
        dispose: () => session.dispose(),
      };
      const t0 = performance.now();
      try {
        await generate({ stages: [timed], promptIds: PROMPT, sampling: GREEDY, maxTokens: TOKENS, onToken: () => void times.push(performance.now()) });
      } finally {
        session.dispose();
      }
      return { times, ttftMs: times[0]! - t0, computeMs };
    },
    close: () => span.close(),
  };
}

interface ChainAgents {
  k: number;
  agents: ChildAgent[];
  route: RouteHop[];
  /** `--devices` of every agent (a local pipeline per agent), when set. */
  devices?: string | undefined;
  /** The head's hop transport. */
  transport: 'link' | 'post';
}

const routeOf = (agents: ChildAgent[], layout: [number, number][]): RouteHop[] =>
  // Registered keys in the route, as the edge writes them: each hop checks the previous hop's signature.
  agents.map((a, i) => ({ agentId: a.agentId, layers: layout[i]!, endpoint: a.url, publicKey: a.publicKey }));

async function startChainAgents(k: number, edge: TestEdge, devices?: string): Promise<ChainAgents> {
  const layout = split(k);
  const agents: ChildAgent[] = [];
  try {
    for (let i = 0; i < k; i++) {
      agents.push(
        await startAgent({
          modelDir,
          layers: layout[i]!,
          edgeKeys: edge.keys,
          agentId: `bench-${k}-${i}${devices ? '-devices' : ''}`,
          threads: THREADS,
          startTimeoutMs: 180_000,
          ...(devices ? { extraArgs: ['--devices', devices] } : {}),
        }),
      );
    }
  } catch (err) {
    await Promise.all(agents.map((a) => a.stop(5_000)));
    throw err;
  }
  return { k, agents, devices, route: routeOf(agents, layout), transport: 'link' };
}

/** The same chain behind another head process that sends every step by POST. */
async function withPostHead(chain: ChainAgents, edge: TestEdge): Promise<ChainAgents> {
  const layout = split(chain.k);
  const head = await startAgent({
    modelDir,
    layers: layout[0]!,
    edgeKeys: edge.keys,
    agentId: `bench-${chain.k}-0-post`,
    threads: THREADS,
    startTimeoutMs: 180_000,
    extraArgs: ['--hop-transport', 'post'],
  });
  const agents = [head, ...chain.agents.slice(1)];
  return { k: chain.k, agents, route: routeOf(agents, layout), transport: 'post' };
}

/** Seconds an agent has spent inside its span so far, from its Prometheus metrics. */
async function spanSeconds(agent: ChildAgent): Promise<number> {
  const text = await (await fetch(new URL('/metrics', agent.url))).text();
  const m = /^layernet_agent_span_duration_seconds_sum (\S+)$/m.exec(text);
  if (!m) throw new Error(`agent ${agent.agentId} exposes no layernet_agent_span_duration_seconds_sum`);
  return Number(m[1]);
}

function chainRunner(chain: ChainAgents, edge: TestEdge, chunking: ChunkingPolicy | undefined): Runner {
  const { k, agents, route } = chain;
  const signs = chunking ? `chunks <= ${chunking.maxSteps} steps / ${chunking.maxDelayMs} ms` : 'one chunk per step';
  return {
    name: `${k} agent${k > 1 ? 's' : ''} [${route.map((h) => `${h.layers[0]}:${h.layers[1]}`).join(' ')}]${chain.devices ? ` over ${chain.devices}` : ''}${k > 1 ? (chain.transport === 'link' ? ', links' : ', POST') : ''}, ${signs}`,
    ...(chunking ? { chunking } : {}),
    async run() {
      const { signed } = await edge.ticket({ route, modelId, promptIds: PROMPT, maxTokens: TOKENS, ...(chunking ? { patch: { chunking } } : {}) });
      const before = await Promise.all(agents.map(spanSeconds));
      const t0 = performance.now();
      const res = await fetch(new URL('/v1/jobs', agents[0]!.url), { method: 'POST', body: JSON.stringify({ signedTicket: signed, promptIds: PROMPT, prefixIds: [] }) });
      if (!res.ok || !res.body) throw new Error(`job failed: ${res.status} ${await res.text()}`);
      // One timestamp per token: a chunk's tokens arrive together, when the chunk is attested.
      const times: number[] = [];
      let buf = '';
      const decoder = new TextDecoder();
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const ev = jobEventSchema.parse(JSON.parse(buf.slice(0, nl)));
          buf = buf.slice(nl + 1);
          if (ev.type === 'chunk') for (let i = 0; i < ev.tokenIds.length; i++) times.push(performance.now());
          if (ev.type === 'error') throw new Error(`job error ${ev.code}: ${ev.message}`);
        }
      }
      if (times.length !== TOKENS) throw new Error(`got ${times.length} tokens, expected ${TOKENS}`);
      const after = await Promise.all(agents.map(spanSeconds));
      return { times, ttftMs: times[0]! - t0, computeMs: after.reduce((sum, s, i) => sum + (s - before[i]!) * 1000, 0) };
    },
    close: async () => undefined,
  };
}

// Every layout runs once per round, in turn, so drift in a shared host's load hits them alike.
const edge = await createTestEdge();
const runners: Runner[] = [await unsplitRunner()];
const chains: ChainAgents[] = [];
const policy: ChunkingPolicy | undefined = CHUNK_STEPS > 1 ? { maxSteps: CHUNK_STEPS, maxDelayMs: CHUNK_MS } : undefined;
try {
  for (const k of AGENTS) {
    const chain = await startChainAgents(k, edge);
    chains.push(chain);
    runners.push(chainRunner(chain, edge, undefined));
    if (policy) runners.push(chainRunner(chain, edge, policy));
    if (k > 1 && values.post) {
      const posting = await withPostHead(chain, edge);
      // Only the extra head is new: stop it with the others, once.
      chains.push({ ...posting, agents: [posting.agents[0]!] });
      runners.push(chainRunner(posting, edge, undefined));
      if (policy) runners.push(chainRunner(posting, edge, policy));
    }
    if (k === 1 && DEVICES) {
      // One agent whose span is a local pipeline over several devices (here: CPU sessions).
      const local = await startChainAgents(1, edge, DEVICES);
      chains.push(local);
      runners.push(chainRunner(local, edge, policy));
    }
  }
  const rates = runners.map(() => [] as number[]);
  const ttfts = runners.map(() => [] as number[]);
  // Per token over the whole run (prefill included): time inside the spans, and the rest.
  const compute = runners.map(() => [] as number[]);
  const outside = runners.map(() => [] as number[]);
  // Each layout's run over the unsplit runs just before and after it: a shared host's load drifts
  // by 10-20% within seconds, so a layout is only compared with unsplit runs next to it in time.
  const paired = runners.map(() => [] as number[]);
  const once = async (i: number, keep: boolean): Promise<number> => {
    const t0 = performance.now();
    const { times, ttftMs, computeMs } = await runners[i]!.run();
    const tps = rate(times);
    if (keep) {
      rates[i]!.push(tps);
      ttfts[i]!.push(ttftMs);
      compute[i]!.push(computeMs / TOKENS);
      outside[i]!.push((times.at(-1)! - t0 - computeMs) / TOKENS);
    }
    return tps;
  };
  for (let round = 0; round <= REPEATS; round++) {
    const keep = round > 0; // round 0 warms up
    let before = await once(0, keep);
    for (let i = 1; i < runners.length; i++) {
      const tps = await once(i, keep);
      const after = await once(0, keep);
      if (keep) paired[i]!.push(tps / ((before + after) / 2));
      before = after;
    }
  }
  console.log(`model ${manifest.name} (${L} layers, hidden ${manifest.architecture.hiddenSize}), ${TOKENS} tokens after a ${PROMPT.length}-token prompt, ${THREADS} onnxruntime threads per process, median of ${REPEATS} interleaved rounds, each layout run between two unsplit runs and rated against them`);
  const baseCompute = median(compute[0]!);
  const rows = runners.map((r, i) => ({
    layout: r.name,
    tokensPerS: median(rates[i]!),
    /** Median over rounds of the run's tokens/s over the unsplit runs next to it (see above). */
    ratio: i === 0 ? 1 : median(paired[i]!),
    ttftMs: median(ttfts[i]!),
    computeMsPerToken: median(compute[i]!),
    outsideMsPerToken: median(outside[i]!),
    /** Unsplit's span time per token over this layout's: the ratio the layout would reach if hops cost nothing. */
    computeCeiling: baseCompute / median(compute[i]!),
    all: rates[i]!.map((x) => Math.round(x * 10) / 10),
  }));
  for (const r of rows) {
    console.log(
      `${r.layout.padEnd(72)} ${r.tokensPerS.toFixed(1).padStart(8)} tok/s  ${(r.ratio * 100).toFixed(1).padStart(6)}% of unsplit  ttft ${r.ttftMs.toFixed(0)} ms  ` +
        `in spans ${r.computeMsPerToken.toFixed(2)} ms/token (ceiling ${(r.computeCeiling * 100).toFixed(1)}%), outside ${r.outsideMsPerToken.toFixed(2)} ms/token  runs ${r.all.join(' ')}`,
    );
  }
  console.log(JSON.stringify({ bench: 'chain-throughput', tokens: TOKENS, threads: THREADS, rows }));
} finally {
  await Promise.all(runners.map((r) => r.close()));
  await Promise.all(chains.flatMap((c) => c.agents.map((a) => a.stop(5_000))));
}
