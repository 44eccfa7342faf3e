/**
 * Attestation chunks of several steps (`ticket.chunking`) over chains of 1, 2 and 3 in-process
 * agents: one signature per hop per chunk, the same tokens as the unsplit model, every chunk
 * verified by the edge's ChainVerifier, a stop token inside a chunk sealed at once (seal frame),
 * what each hop keeps for checks matching its attestations (exact hash, and TOPLOC commitment of
 * what it sent), and activations changed on a link
 * inside a chunk refused at the seal, with nothing of that chunk signed by the refusing hop.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createHash } from 'node:crypto';
import { ChainVerifier } from '../../protocol/attestation.js';
import type { ForwardMeta, JobEvent } from '../../protocol/agent-api.js';
import { decodeCommitment } from '../../protocol/commitment.js';
import { compareOutputRows, receivedTolerances } from '../../protocol/output-commitment.js';
import { decodeFrame, encodeFrame, framePayloadAs } from '../../protocol/frame.js';
import type { ChunkingPolicy, SamplingParams } from '../../protocol/ticket.js';
import { generate } from '../../pool-agent/runtime/pipeline.js';
import { sealsChunk } from '../../pool-agent/server/head-job.js';
import type { FetchLike } from '../../pool-agent/server/remote-stage.js';
import { fakeModel, fakeSpan, type FakeModel } from '../support/fake-span.js';
import { createTestEdge, GREEDY, runJob, startChain, tokensOf, type InProcessChain, type TestEdge } from '../support/agents.js';

const LAYOUTS: [number, number][][] = [[[0, 4]], [[0, 2], [2, 4]], [[0, 1], [1, 3], [3, 4]]];
const PROMPT = [1, 17, 33, 5, 9];
const THREE_STEPS: ChunkingPolicy = { maxSteps: 3, maxDelayMs: 60_000 };
const SAMPLED: SamplingParams = { temperature: 1.2, topP: 1, topK: 0, seed: 77 };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
type Chunk = Extract<JobEvent, { type: 'chunk' }>;

/** A fetch for a sending agent that can change the activations of one step on the link. */
const link = {
  shiftStep: null as number | null,
  fetch: (async (url, init) => {
    let body: Uint8Array = new Uint8Array(init.body as Uint8Array);
    const frame = decodeFrame(body, { maxPayloadBytes: 64 << 20 });
    if (frame.kind === 'forward' && (frame.meta as ForwardMeta).steps[0] === link.shiftStep) {
      const data = new Float32Array(framePayloadAs(frame) as Float32Array);
      data[0] = data[0]! + 0.5;
      body = encodeFrame({ kind: 'forward', dtype: frame.dtype, dims: frame.dims, meta: frame.meta, payload: data });
    }
    return fetch(url, { ...init, body: body as BodyInit });
  }) satisfies FetchLike,
};

let model: FakeModel;
let edge: TestEdge;
const chains: InProcessChain[] = [];
let tampered: InProcessChain;

beforeAll(async () => {
  model = await fakeModel({ numLayers: 4 });
  edge = await createTestEdge();
  for (const layout of LAYOUTS) chains.push(await startChain({ edge, spans: layout.map((l) => fakeSpan(model, l)), agentIdPrefix: `k${layout.length}` }));
  tampered = await startChain({ edge, spans: [fakeSpan(model, [0, 2]), fakeSpan(model, [2, 4])], agentIdPrefix: 'tl', agentOptions: (i) => (i === 0 ? { fetch: link.fetch } : {}) });
});
afterAll(async () => {
  await Promise.all([...chains.map((c) => c.close()), tampered?.close()]);
});
beforeEach(() => {
  link.shiftStep = null;
});

async function reference(maxTokens: number, sampling: SamplingParams = GREEDY): Promise<number[]> {
  return (await generate({ stages: [fakeSpan(model, [0, 4]).openSession()], promptIds: PROMPT, sampling, maxTokens })).tokens;
}

async function run(chain: InProcessChain, maxTokens: number, chunking: ChunkingPolicy, stopTokenIds: number[] = [], sampling: SamplingParams = GREEDY) {
  const { signed, hash } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens, stopTokenIds, sampling, patch: { chunking } });
  const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
  expect(res.status).toBe(200);
  const chunks = res.events.filter((e): e is Chunk => e.type === 'chunk');
  const verifier = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: 4, keys: chain.publicKeys });
  const verdicts = [];
  for (const c of chunks) verdicts.push(await verifier.verifyChunk(c.attestations));
  return { jobId: signed.ticket.jobId, events: res.events, chunks, verdicts, verified: verifier.verifiedTokens };
}

describe('sealsChunk', () => {
  it('closes every step without a policy, else on the step count or the time open', () => {
    expect(sealsChunk(undefined, 1, 0)).toBe(true);
    expect(sealsChunk(THREE_STEPS, 2, 10)).toBe(false);
    expect(sealsChunk(THREE_STEPS, 3, 10)).toBe(true);
    expect(sealsChunk({ maxSteps: 16, maxDelayMs: 50 }, 2, 49)).toBe(false);
    expect(sealsChunk({ maxSteps: 16, maxDelayMs: 50 }, 2, 50)).toBe(true);
  });
});

describe.each(LAYOUTS.map((l, i) => [l.length, i] as const))('a chain of %i agent(s) signing every 3 steps', (hops, index) => {
  it('streams the prefill alone, then chunks of 3 steps, all verified, with the unsplit tokens', async () => {
    const r = await run(chains[index]!, 8, THREE_STEPS);
    expect(r.chunks.map((c) => c.steps)).toEqual([[0, 1], [1, 4], [4, 7], [7, 8]]);
    expect(r.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
    for (const c of r.chunks) {
      expect(c.attestations).toHaveLength(hops);
      expect(c.tokenIds).toHaveLength(c.steps[1] - c.steps[0]);
      const last = c.attestations[hops - 1]!.att;
      expect(last.outputTokenIds).toEqual(c.tokenIds);
      expect(decodeCommitment(last.hiddenCommitment!)).toMatchObject({ ok: true, commitment: { numRows: c.steps[1] - c.steps[0] } });
    }
    expect(r.verdicts.every((v) => v.ok)).toBe(true);
    expect(tokensOf(r.events)).toEqual(await reference(8));
    expect(r.verified).toEqual(await reference(8));
  });

  it('seals the open chunk as soon as a stop token comes out inside it', async () => {
    const full = await reference(12, SAMPLED);
    // A token first produced at step 5 (the middle of the chunk [4, 7)) or later.
    const at = full.findIndex((t, i) => i >= 5 && full.indexOf(t) === i);
    expect(at).toBeGreaterThanOrEqual(5);
    // Chunks end after steps 0, 3, 6, 9: a stop elsewhere ends inside a chunk (a seal frame).
    expect(at % 3).not.toBe(0);
    const r = await run(chains[index]!, 12, THREE_STEPS, [full[at]!], SAMPLED);
    expect(r.events.at(-1)).toEqual({ type: 'done', finishReason: 'stop' });
    expect(tokensOf(r.events)).toEqual(full.slice(0, at + 1));
    const lastChunk = r.chunks.at(-1)!;
    expect(lastChunk.steps[1]).toBe(at + 1);
    expect(r.verdicts.every((v) => v.ok)).toBe(true);
  });

  it('keeps, per hop and chunk, exactly the bytes its attestation commits to', async () => {
    const chain = chains[index]!;
    const r = await run(chain, 8, THREE_STEPS);
    chain.agents.forEach((agent, hop) => {
      const kept = agent.core.inputs.get(r.jobId, hop)!;
      expect(kept.chunks.map((c) => c.steps)).toEqual(r.chunks.map((c) => c.steps));
      kept.chunks.forEach((c, i) => {
        const att = r.chunks[i]!.attestations[hop]!.att;
        if (hop > 0) expect(sha(c.input!)).toBe(att.inputCommitment);
        else expect(c.inputTokenIds).toHaveLength(i === 0 ? PROMPT.length : att.steps[1] - att.steps[0]);
        if (hop < hops - 1) {
          expect(sha(c.output!)).toBe(att.outputCommitment);
          // Its TOPLOC commitment describes the same bytes exactly: one row per position sent.
          const rows = new Float32Array(c.output!.slice().buffer);
          const H = model.manifest.architecture.hiddenSize;
          expect(rows.length / H).toBe(i === 0 ? PROMPT.length : att.steps[1] - att.steps[0]);
          expect(compareOutputRows(att.outputTopLoc, rows, rows.length / H, H, att.outputCommitment, receivedTolerances('float32')).ok).toBe(true);
        } else expect(att.outputTopLoc).toBeUndefined();
      });
    });
  });
});

describe('timing', () => {
  it('a chunk open for maxDelayMs closes at once: 0 ms means one chunk per step', async () => {
    const r = await run(chains[1]!, 5, { maxSteps: 16, maxDelayMs: 0 });
    expect(r.chunks.map((c) => c.steps)).toEqual([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]);
    expect(r.verdicts.every((v) => v.ok)).toBe(true);
  });
});

describe('activations changed on the link inside a chunk', () => {
  it('hop 1 runs the open steps but refuses to seal: the chunk is never signed by it, earlier chunks stand', async () => {
    link.shiftStep = 2;
    const r = await run(tampered, 8, THREE_STEPS);
    const last = r.events.at(-1)!;
    expect(last).toMatchObject({ type: 'error', code: 'bad_input', agentId: tampered.route[1]!.agentId });
    expect((last as { message: string }).message).toMatch(/steps \[1, 4\).*differ from what hop 0 attested/);
    // Only the prefill chunk went out; it verifies. No token of [1, 4) reached the stream.
    expect(r.chunks.map((c) => c.steps)).toEqual([[0, 1]]);
    expect(r.verdicts.every((v) => v.ok)).toBe(true);
    expect(tampered.agents[1]!.core.inputs.get(r.jobId, 1)!.chunks.map((c) => c.steps)).toEqual([[0, 1]]);
  });
});

describe('shutdown with a chunk open', () => {
  it('the head seals what the route computed before ending with shutdown, so a resume loses nothing', async () => {
    const chain = await startChain({ edge, spans: [fakeSpan(model, [0, 2], { delayMs: 5 }), fakeSpan(model, [2, 4])], agentIdPrefix: 'sd' });
    try {
      const { signed, hash } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 10_000, patch: { chunking: { maxSteps: 256, maxDelayMs: 60_000 } } });
      const running = runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
      // Past the prefill and a few steps into the first decode chunk.
      await vi.waitFor(() => expect(chain.agents[0]!.core.metrics.tokens.get({ role: 'head' })).toBeGreaterThan(5));
      await chain.agents[0]!.drain(0);
      const res = await running;
      expect(res.events.at(-1)).toMatchObject({ type: 'error', code: 'shutdown' });
      const chunks = res.events.filter((e): e is Chunk => e.type === 'chunk');
      expect(chunks).toHaveLength(2);
      expect(chunks[1]!.steps[0]).toBe(1);
      expect(chunks[1]!.steps[1]).toBeGreaterThan(5);
      const verifier = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: 4, keys: chain.publicKeys });
      for (const c of chunks) expect((await verifier.verifyChunk(c.attestations)).ok).toBe(true);
      expect(tokensOf(res.events)).toEqual(await reference(chunks[1]!.steps[1]));
    } finally {
      await chain.close();
    }
  });
});
