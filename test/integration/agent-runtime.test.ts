/**
 * Agents over the real onnxruntime spans of the `tiny` model on loopback: 1, 2 and 3 agents give
 * the same greedy tokens as the unsplit in-process generate(), the same seed gives the same
 * sampled tokens over every layout, a resumed job equals the uninterrupted one, every chunk
 * verifies, and a `pool-agent serve` child process chain works end to end and drains on SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChainVerifier } from '../../protocol/attestation.js';
import { compareHidden, tolerancesFor } from '../../protocol/commitment.js';
import { generate } from '../../pool-agent/runtime/pipeline.js';
import { loadSpan } from '../../pool-agent/runtime/span.js';
import type { LoadedSpan } from '../../pool-agent/runtime/types.js';
import type { JobTicket } from '../../protocol/ticket.js';
import { tempModels, type TempModels } from '../unit/runtime-fixture.js';
import { createTestEdge, GREEDY, runJob, startAgent, startChain, tokensOf, type ChildAgent, type InProcessChain, type TestEdge } from '../support/agents.js';

const LAYOUTS: [number, number][][] = [[[0, 4]], [[0, 2], [2, 4]], [[0, 1], [1, 3], [3, 4]]];
const PROMPT = [1, 15043, 29892, 920, 526, 366, 29973];
const SAMPLED = { temperature: 0.8, topP: 0.9, topK: 50, seed: 7 };
const MAX = 12;

let models: TempModels;
let dir: string;
let modelId: string;
let edge: TestEdge;
const spans: LoadedSpan[] = [];
const chains: InProcessChain[] = [];
let whole: LoadedSpan;

beforeAll(async () => {
  models = await tempModels();
  const built = await models.build('tiny', { preset: 'tiny', seed: 3 });
  dir = built.dir;
  modelId = built.modelId;
  edge = await createTestEdge();
  whole = await loadSpan(dir, [0, 4], { provider: 'cpu', intraOpThreads: 1 });
  for (const layout of LAYOUTS) {
    const s = await Promise.all(layout.map((l) => loadSpan(dir, l, { provider: 'cpu', intraOpThreads: 1 })));
    spans.push(...s);
    chains.push(await startChain({ edge, spans: s, agentIdPrefix: `rt${layout.length}` }));
  }
});

afterAll(async () => {
  await Promise.all(chains.map((c) => c.close()));
  await Promise.all([...spans, whole].filter(Boolean).map((s) => s.close()));
  await models?.cleanup();
});

async function unsplit(sampling = GREEDY, maxTokens = MAX) {
  const session = whole.openSession();
  const hidden: Float32Array[] = [];
  try {
    const r = await generate({ stages: [session], promptIds: PROMPT, sampling, maxTokens, onToken: (_t, _s, row) => void hidden.push(row) });
    return { tokens: r.tokens, hidden };
  } finally {
    session.dispose();
  }
}

async function verify(chain: InProcessChain, ticket: JobTicket, hash: string, events: Awaited<ReturnType<typeof runJob>>['events']) {
  const v = new ChainVerifier({ ticket, ticketHash: hash, numLayers: 4, keys: chain.publicKeys });
  for (const e of events) if (e.type === 'chunk') expect(await v.verifyChunk(e.attestations)).toMatchObject({ ok: true });
}

describe.each(LAYOUTS.map((l, i) => [l.length, i] as const))('real runtime, %i agent(s)', (_hops, index) => {
  it('greedy tokens equal the unsplit generate(), chunks verify, hidden commitments match the unsplit rows', async () => {
    const chain = chains[index]!;
    const expected = await unsplit();
    const { signed, hash } = await edge.ticket({ route: chain.route, modelId, promptIds: PROMPT, maxTokens: MAX });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    expect(res.status).toBe(200);
    expect(tokensOf(res.events)).toEqual(expected.tokens);
    await verify(chain, signed.ticket, hash, res.events);
    const chunks = res.events.filter((e) => e.type === 'chunk');
    chunks.forEach((c, i) => {
      const commitment = c.attestations.at(-1)!.att.hiddenCommitment!;
      expect(compareHidden(commitment, expected.hidden[i]!, 1, 64, tolerancesFor('float32')).ok).toBe(true);
    });
  });

  it('same seed, same sampled tokens; a resume after 5 tokens equals the uninterrupted run', async () => {
    const chain = chains[index]!;
    const expected = (await unsplit(SAMPLED)).tokens;
    const { signed } = await edge.ticket({ route: chain.route, modelId, promptIds: PROMPT, maxTokens: MAX, sampling: SAMPLED });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    expect(tokensOf(res.events)).toEqual(expected);
    const prefix = expected.slice(0, 5);
    const resumed = await edge.ticket({ route: chain.route, modelId, promptIds: PROMPT, prefixIds: prefix, maxTokens: MAX, sampling: SAMPLED });
    const res2 = await runJob(chain.url, { signedTicket: resumed.signed, promptIds: PROMPT, prefixIds: prefix });
    expect(tokensOf(res2.events)).toEqual(expected.slice(5));
    await verify(chain, resumed.signed.ticket, resumed.hash, res2.events);
  });
});

describe('float16 activations between hops', () => {
  it('a chain of 2 over a float16 model matches the unsplit float16 model', async () => {
    const fp16 = await models.build('tiny-fp16', { preset: 'tiny', dtype: 'float16', seed: 3 });
    const parts = await Promise.all([[0, 2] as const, [2, 4] as const].map((l) => loadSpan(fp16.dir, l, { provider: 'cpu', intraOpThreads: 1 })));
    const single = await loadSpan(fp16.dir, [0, 4], { provider: 'cpu', intraOpThreads: 1 });
    const chain = await startChain({ edge, spans: parts, agentIdPrefix: 'fp16' });
    try {
      const session = single.openSession();
      const expected = (await generate({ stages: [session], promptIds: PROMPT, sampling: GREEDY, maxTokens: 8 })).tokens;
      session.dispose();
      const { signed, hash } = await edge.ticket({ route: chain.route, modelId: fp16.modelId, dtype: 'float16', promptIds: PROMPT, maxTokens: 8 });
      const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
      expect(tokensOf(res.events)).toEqual(expected);
      await verify(chain, signed.ticket, hash, res.events);
    } finally {
      await chain.close();
      await Promise.all([...parts, single].map((s) => s.close()));
    }
  });
});

describe('pool-agent serve child processes', () => {
  let agents: ChildAgent[] = [];
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop(2_000)));
  });

  it('a chain of 2 serve processes matches the unsplit model, and SIGTERM exits cleanly', async () => {
    agents = await Promise.all([
      startAgent({ modelDir: dir, layers: [0, 2], edgeKeys: edge.keys, agentId: 'proc-0', threads: 1 }),
      startAgent({ modelDir: dir, layers: [2, 4], edgeKeys: edge.keys, agentId: 'proc-1', threads: 1 }),
    ]);
    const route = agents.map((a, i) => ({ agentId: a.agentId, layers: (i === 0 ? [0, 2] : [2, 4]) as [number, number], endpoint: a.url }));
    const { signed, hash } = await edge.ticket({ route, modelId, promptIds: PROMPT, maxTokens: MAX });
    const res = await runJob(agents[0]!.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    expect(tokensOf(res.events)).toEqual((await unsplit()).tokens);
    const v = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: 4, keys: Object.fromEntries(agents.map((a) => [a.agentId, a.publicKey])) });
    for (const e of res.events) if (e.type === 'chunk') expect(await v.verifyChunk(e.attestations)).toMatchObject({ ok: true });
    const codes = await Promise.all(agents.map((a) => a.stop(10_000)));
    expect(codes).toEqual([0, 0]);
    agents = [];
  });
});
