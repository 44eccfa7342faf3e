/**
 * Test doubles for the edge's unit tests: a fake agent network (the `AgentTransport`) whose
 * agents sign real attestations with protocol/keys.ts + protocol/attestation.ts, so the edge's
 * verification is the real one; and a seeded in-memory registry.
 *
 * Tokens are a deterministic function of (seed, prompt, absolute step), like a real model with
 * a seeded sampler: a resumed job (prefix = tokens already sent) continues exactly where an
 * uninterrupted one would.
 */
import { createApp } from '../../edge/app.js';
import { createMemoryStore, type MemoryStore } from '../../edge/store/memory.js';
import { createByteTokenizer } from '../../edge/text/byte-tokenizer.js';
import type { EdgeConfig } from '../../edge/config.js';
import type { AgentTransport, TokenizerProvider } from '../../edge/deps.js';
import { generateApiKey, type ApiKeyScope } from '../../protocol/api-key.js';
import { generateSigningKey, signBytes, verifyBytes, type SigningKey } from '../../protocol/keys.js';
import { attestationHash, signAttestation, tokenCommitment, type Attestation, type SignedAttestation } from '../../protocol/attestation.js';
import { jobRequestSchema, cancelRequestSchema, cancelMessage, type JobRequest } from '../../protocol/agent-api.js';
import { verifyTicket, type JobTicket } from '../../protocol/ticket.js';
import { manifestHash, type Manifest } from '../../protocol/manifest.js';
import { sha256Hex, utf8 } from '../../protocol/bytes.js';
import { heartbeatBytes, type Heartbeat } from '../../protocol/owner-api.js';

export const BYTE_EOS = 2;

/** The token an honest agent emits at absolute step `step` (a lowercase letter, or `eosToken`). */
export function expectedToken(seed: number, promptIds: readonly number[], step: number, eosAtStep?: number, eosToken = BYTE_EOS): number {
  if (eosAtStep !== undefined && step === eosAtStep) return eosToken;
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const id of promptIds) h = Math.imul(h ^ id, 0x01000193) >>> 0;
  h = Math.imul(h ^ step, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return 3 + 97 + (h % 26);
}

export type Behaviour =
  | { kind: 'ok' }
  /** HTTP 500 before any event. */
  | { kind: 'http-error' }
  /** Connection refused. */
  | { kind: 'unreachable' }
  /** Stream breaks after `afterTokens` tokens of this attempt. */
  | { kind: 'die'; afterTokens: number }
  /** Attests with the wrong key from token `afterTokens` on. */
  | { kind: 'bad-signature'; afterTokens: number }
  /** Sends tokens that differ from what it attests (last hop only) from `afterTokens` on. */
  | { kind: 'lie-tokens'; afterTokens: number }
  /** Signs (validly) an attestation whose input commitment is wrong, from token `afterTokens` on. */
  | { kind: 'bad-commitment'; afterTokens: number }
  /** Never sends anything after `afterTokens` tokens. */
  | { kind: 'hang'; afterTokens: number };

export interface FakeAgentSpec {
  layers: [number, number];
  /** USD per million tokens. */
  price?: number;
  region?: string;
  behaviour?: Behaviour;
  /** Live figures (bypass observations). */
  ttftMs?: number;
  perTokenMs?: number;
  failureRate?: number;
  queueDepth?: number;
  /** Inter-token delay of the fake, ms (default 0). */
  delayMs?: number;
}

export interface FakeAgent {
  id: string;
  endpoint: string;
  key: SigningKey;
  spec: FakeAgentSpec;
  jobs: JobRequest[];
  cancels: Array<{ jobId: string; ticketHash: string }>;
}

interface Options {
  numLayers?: number;
  agents: FakeAgentSpec[];
  config?: Partial<EdgeConfig>;
  /** Step at which the model emits EOS (default: never). */
  eosAtStep?: number;
  /** The id it emits then (default BYTE_EOS): one of the model's stop ids, or not. */
  eosToken?: number;
  /** The model to publish (default: testManifest, the built-in tokenizer kind). */
  manifest?: Manifest;
  /** Tokenizers (default: a provider around the byte tokenizer); tests share one to load an imported tokenizer once. */
  tokenizers?: TokenizerProvider;
  random?: () => number;
  keyLimits?: { requestsPerMinute?: number | null; tokensPerMinute?: number | null; budgetMicroUsd?: number | null };
  maxPositionEmbeddings?: number;
  /** Wraps the fake agents' transport (tests that answer some requests themselves). */
  wrapTransport?: (inner: AgentTransport) => AgentTransport;
}

export function testManifest(numLayers: number, name = 'tiny-test', maxPositionEmbeddings = 2048): Manifest {
  const sha = (s: string) => s.padEnd(64, '0').slice(0, 64);
  return {
    format: 'layernet.manifest/1',
    name,
    architecture: {
      family: 'llama',
      vocabSize: 259,
      hiddenSize: 16,
      intermediateSize: 32,
      numLayers,
      numAttentionHeads: 2,
      numKeyValueHeads: 1,
      headDim: 8,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      maxPositionEmbeddings,
    },
    dtype: 'float32',
    seed: 1,
    tokenizer: { kind: 'llama-sentencepiece-bpe', package: 'llama-tokenizer-js', bosTokenId: 1, eosTokenId: 2, chatTemplate: 'llama-2' },
    files: [
      { path: 'embed.onnx', kind: 'embed', layers: [0, 0], sha256: sha('e'), bytes: 1 },
      ...Array.from({ length: numLayers }, (_, i) => ({ path: `layer-${i}.onnx`, kind: 'layers' as const, layers: [i, i + 1] as [number, number], sha256: sha(`${i + 1}`), bytes: 1 })),
      { path: 'head.onnx', kind: 'head', layers: [numLayers, numLayers], sha256: sha('f'), bytes: 1 },
    ],
  };
}

/** Builds the NDJSON job stream of a route of fake agents for one JobRequest. */
function runRoute(
  agents: Map<string, FakeAgent>,
  request: JobRequest,
  ticket: JobTicket,
  ticketHash: string,
  eosAtStep: number | undefined,
  eosToken: number,
  signal: AbortSignal | undefined,
): ReadableStream<Uint8Array> {
  const hops = ticket.route.map((h) => agents.get(h.agentId)!);
  const enc = new TextEncoder();
  const line = (v: unknown) => enc.encode(JSON.stringify(v) + '\n');
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      const abort = () => {
        cancelled = true;
        try {
          controller.error(new DOMException('aborted', 'AbortError'));
        } catch {
          /* closed */
        }
      };
      if (signal?.aborted) return abort();
      signal?.addEventListener('abort', abort, { once: true });
      const prompt = request.promptIds;
      const tokens = [...request.prefixIds];
      let prevHash: string | null = null;
      let lastToken: number | null = null;
      let produced = 0;
      for (let step = ticket.prefixTokens; step < ticket.limits.maxTokens && !cancelled; step++) {
        for (const [i, hop] of hops.entries()) {
          const b = hop.spec.behaviour ?? { kind: 'ok' };
          if ((b.kind === 'die' || b.kind === 'hang') && produced >= b.afterTokens) {
            if (b.kind === 'die') {
              signal?.removeEventListener('abort', abort);
              if (i === 0) {
                controller.error(new Error('agent died'));
              } else {
                // A downstream hop died: the head reports which one, as a real head agent does.
                controller.enqueue(line({ type: 'error', code: 'hop_failed', message: 'next hop unreachable', agentId: hop.id }));
                controller.close();
              }
              return;
            }
            await new Promise<void>((resolve) => signal?.addEventListener('abort', () => resolve(), { once: true }));
            return;
          }
        }
        const delay = Math.max(0, ...hops.map((h) => h.spec.delayMs ?? 0));
        if (delay) await new Promise((r) => setTimeout(r, delay));
        if (cancelled) return;
        const token = expectedToken(ticket.sampling.seed, prompt, step, eosAtStep, eosToken);
        const attestations: SignedAttestation[] = [];
        let input = lastToken === null ? ticket.inputHash : await tokenCommitment([lastToken]);
        for (let i = 0; i < hops.length; i++) {
          const hop = hops[i]!;
          const isLast = i === hops.length - 1;
          const output = isLast ? await tokenCommitment([token]) : await sha256Hex(`hidden:${hop.id}:${step}`);
          const att: Attestation = {
            v: 1,
            ticketHash,
            jobId: ticket.jobId,
            agentId: hop.id,
            modelId: ticket.modelId,
            hop: i,
            layers: [ticket.route[i]!.layers[0], ticket.route[i]!.layers[1]],
            steps: [step, step + 1],
            inputCommitment: input,
            outputCommitment: output,
            ...(isLast ? { outputTokenIds: [token] } : {}),
            prevHash,
            issuedAt: Date.now(),
          };
          const b = hop.spec.behaviour ?? { kind: 'ok' };
          if (b.kind === 'bad-commitment' && produced >= b.afterTokens) att.inputCommitment = await sha256Hex('not the input');
          const signer = b.kind === 'bad-signature' && produced >= b.afterTokens ? (await generateSigningKey()).privateKey : hop.key.privateKey;
          attestations.push(await signAttestation(signer, att));
          prevHash = await attestationHash(att);
          input = output;
        }
        const last = hops[hops.length - 1]!.spec.behaviour ?? { kind: 'ok' };
        const sent = last.kind === 'lie-tokens' && produced >= last.afterTokens ? 3 + 97 + ((token - 100 + 1) % 26) : token;
        controller.enqueue(line({ type: 'chunk', steps: [step, step + 1], tokenIds: [sent], attestations }));
        produced++;
        tokens.push(token);
        lastToken = token;
        if (token === eosToken) {
          controller.enqueue(line({ type: 'done', finishReason: 'stop' }));
          controller.close();
          return;
        }
      }
      if (cancelled) return;
      controller.enqueue(line({ type: 'done', finishReason: 'length' }));
      signal?.removeEventListener('abort', abort);
      controller.close();
    },
    cancel() {
      cancelled = true;
    },
  });
}

/**
 * The fake agents as an AgentTransport, dispatching on the endpoint's host: the head agent
 * checks the edge's ticket signature, then streams the route's signed NDJSON answer.
 */
export function fakeAgentTransport(agents: Map<string, FakeAgent>, edgePublicKey: string, eosAtStep?: number, eosToken = BYTE_EOS): AgentTransport {
  return async (url, init) => {
    const u = new URL(url);
    const agent = [...agents.values()].find((a) => new URL(a.endpoint).host === u.host);
    if (!agent) throw new TypeError('fetch failed: no such host');
    const b = agent.spec.behaviour ?? { kind: 'ok' };
    const cancelMatch = /^\/v1\/jobs\/([^/]+)\/cancel$/.exec(u.pathname);
    if (cancelMatch) {
      const body = cancelRequestSchema.parse(JSON.parse(String(init.body)));
      const { signature, ...rest } = body;
      if (await verifyBytes(edgePublicKey, signature, utf8(cancelMessage(rest)))) agent.cancels.push({ jobId: body.jobId, ticketHash: body.ticketHash });
      return new Response('{}', { status: 200 });
    }
    if (u.pathname !== '/v1/jobs') return new Response('not found', { status: 404 });
    if (b.kind === 'unreachable') throw new TypeError('fetch failed: connection refused');
    if (b.kind === 'http-error') return new Response('{"error":"boom"}', { status: 500 });
    const request = jobRequestSchema.parse(JSON.parse(String(init.body)));
    const check = await verifyTicket(request.signedTicket, edgePublicKey, Date.now(), { agentId: agent.id, hop: 0 });
    if (!check.ok) return new Response(JSON.stringify({ error: check.reason }), { status: 401 });
    agent.jobs.push(request);
    return new Response(runRoute(agents, request, check.ticket, check.hash, eosAtStep, eosToken, init.signal ?? undefined), {
      status: 200,
      headers: { 'content-type': 'application/x-ndjson' },
    });
  };
}

export async function createTestEdge(opts: Options) {
  const numLayers = opts.numLayers ?? 4;
  const store: MemoryStore = createMemoryStore();
  const edgeKey = await generateSigningKey();
  const manifest = opts.manifest ?? testManifest(numLayers, 'tiny-test', opts.maxPositionEmbeddings);
  const modelId = await manifestHash(manifest);
  await store.publishModel({ manifest, id: modelId, publishedBy: null, at: Date.now() });

  const owner = 'acct_owner';
  const pools = new Map<string, string>();
  const agents = new Map<string, FakeAgent>();
  for (const [i, spec] of opts.agents.entries()) {
    const region = spec.region ?? 'eu-west';
    let poolId = pools.get(region);
    if (!poolId) {
      poolId = (await store.createPool({ ownerAccountId: owner, name: `pool-${region}`, region })).id;
      pools.set(region, poolId);
    }
    const key = await generateSigningKey();
    const endpoint = `http://agent-${i}.test:9000`;
    const rec = await store.registerAgent(
      {
        poolId,
        ownerAccountId: owner,
        endpoint,
        publicKey: key.publicKey,
        hardware: { devices: [{ kind: 'cpu', name: 'cpu', memoryBytes: 1 }], memoryBytes: 1, platform: 'test' },
        priceMicroUsdPerMTok: Math.round((spec.price ?? 1) * 1e6),
        throughputTokensPerS: 100,
        spans: [{ modelId, layers: spec.layers }],
      },
      Date.now(),
    );
    await store.applyHeartbeat({ agentId: rec.id, seq: 1, sentAt: Date.now(), receivedAt: Date.now(), queueDepth: 0, load: 0, freeKvBytes: 1, activeSessions: 0 });
    store.setFigures(rec.id, {
      ...(spec.ttftMs !== undefined ? { ttftMsEwma: spec.ttftMs } : {}),
      ...(spec.perTokenMs !== undefined ? { perTokenMsEwma: spec.perTokenMs } : {}),
      ...(spec.failureRate !== undefined ? { failureRateEwma: spec.failureRate } : {}),
      ...(spec.queueDepth !== undefined ? { queueDepth: spec.queueDepth } : {}),
    });
    const agent: FakeAgent = { id: rec.id, endpoint, key, spec, jobs: [], cancels: [] };
    agents.set(rec.id, agent);
  }

  const fakes = fakeAgentTransport(agents, edgeKey.publicKey, opts.eosAtStep, opts.eosToken);
  const transport = opts.wrapTransport ? opts.wrapTransport(fakes) : fakes;

  const pending: Promise<unknown>[] = [];
  const logs: string[] = [];
  const app = createApp({
    store,
    signingKey: { id: 'edge-test-1', publicKey: edgeKey.publicKey, privateKey: edgeKey.privateKey },
    transport,
    ...(opts.tokenizers ? { tokenizers: opts.tokenizers } : { tokenizer: createByteTokenizer() }),
    config: { keepAliveMs: 50, firstTokenTimeoutMs: 2_000, interTokenTimeoutMs: 500, ...opts.config },
    random: opts.random ?? (() => 0.5),
    waitUntil: (p) => pending.push(p.catch(() => undefined)),
    log: (e) => logs.push(JSON.stringify(e)),
  });

  const newKey = async (scopes: ApiKeyScope[], accountId = 'acct_client', limits = opts.keyLimits) => {
    const k = await generateApiKey();
    const rec = await store.createApiKey({ accountId, prefix: k.prefix, hash: k.hash, scopes, ...(limits ?? {}) });
    return { key: k.key, record: rec };
  };
  const client = await newKey(['inference']);
  const ownerKey = await newKey(['pool-owner'], owner, {});

  /** Waits for every waitUntil'd promise (observations, job records, cancels). */
  const settle = async () => {
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 5));
      await Promise.all(pending.splice(0));
    }
  };

  const post = (path: string, body: unknown, key = client.key, headers: Record<string, string> = {}) =>
    app.request(path, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  /** The tokens an uninterrupted run produces for this prompt. */
  const expectedTokens = (seed: number, promptIds: number[], n: number) => Array.from({ length: n }, (_, s) => expectedToken(seed, promptIds, s, opts.eosAtStep, opts.eosToken));

  return { app, store, edgeKey, modelId, manifest, agents: [...agents.values()], client, ownerKey, newKey, settle, post, logs, expectedTokens, tokenizer: createByteTokenizer() };
}

export type TestEdge = Awaited<ReturnType<typeof createTestEdge>>;

/** Parses an SSE body into its data payloads (comments dropped). */
export async function readSse(res: Response): Promise<{ events: string[]; comments: number }> {
  const text = await res.text();
  const events: string[] = [];
  let comments = 0;
  for (const block of text.split('\n\n')) {
    if (!block.trim()) continue;
    if (block.startsWith(':')) {
      comments++;
      continue;
    }
    events.push(block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n'));
  }
  return { events, comments };
}

export async function signedHeartbeat(key: SigningKey, body: Omit<Heartbeat, 'signature'>): Promise<Heartbeat> {
  return { ...body, signature: await signBytes(key.privateKey, heartbeatBytes(body)) };
}
