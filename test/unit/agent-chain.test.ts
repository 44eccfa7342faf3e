/**
 * The head agent's generation over chains of 1, 2 and 3 in-process agents (fake spans): the
 * edge's ChainVerifier accepts every chunk, the tokens equal the unsplit generate(), resumes and
 * layouts agree, and tampering with any attestation is caught.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChainVerifier, type SignedAttestation } from '../../protocol/attestation.js';
import { generate } from '../../pool-agent/runtime/pipeline.js';
import type { JobTicket } from '../../protocol/ticket.js';
import { decodeCommitment } from '../../protocol/commitment.js';
import { fakeModel, fakeSpan, type FakeModel } from '../support/fake-span.js';
import { createTestEdge, GREEDY, runJob, startChain, tokensOf, type InProcessChain, type TestEdge } from '../support/agents.js';

const LAYOUTS: [number, number][][] = [[[0, 4]], [[0, 2], [2, 4]], [[0, 1], [1, 3], [3, 4]]];
const PROMPT = [1, 17, 33, 5, 9];
const SAMPLED = { temperature: 0.9, topP: 0.95, topK: 20, seed: 1234 };

let model: FakeModel;
let edge: TestEdge;
const chains: InProcessChain[] = [];

beforeAll(async () => {
  model = await fakeModel({ numLayers: 4 });
  edge = await createTestEdge();
  for (const layout of LAYOUTS) chains.push(await startChain({ edge, spans: layout.map((l) => fakeSpan(model, l)), agentIdPrefix: `c${layout.length}` }));
});
afterAll(async () => {
  await Promise.all(chains.map((c) => c.close()));
});

async function reference(promptIds: number[], maxTokens: number, sampling = GREEDY, startStep = 0): Promise<number[]> {
  const session = fakeSpan(model, [0, 4]).openSession();
  const r = await generate({ stages: [session], promptIds, sampling, maxTokens, startStep });
  return r.tokens;
}

async function verifyAll(chain: InProcessChain, ticket: JobTicket, hash: string, chunks: SignedAttestation[][]) {
  const v = new ChainVerifier({ ticket, ticketHash: hash, numLayers: 4, keys: chain.publicKeys });
  for (const c of chunks) {
    const r = await v.verifyChunk(c);
    if (!r.ok) return r;
  }
  return { ok: true as const, tokens: v.verifiedTokens };
}

describe.each(LAYOUTS.map((l, i) => [l.length, i] as const))('a chain of %i agent(s)', (hops, index) => {
  it('streams one verified chunk per step and matches the unsplit model', async () => {
    const chain = chains[index]!;
    const { signed, hash } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 8 });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    expect(res.status).toBe(200);
    const chunks = res.events.filter((e) => e.type === 'chunk');
    expect(chunks).toHaveLength(8);
    expect(res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
    chunks.forEach((c, i) => {
      expect(c.steps).toEqual([i, i + 1]);
      expect(c.attestations).toHaveLength(hops);
    });
    const last = chunks[0]!.attestations[hops - 1]!.att;
    expect(last.hiddenCommitment).toBeDefined();
    expect(decodeCommitment(last.hiddenCommitment!)).toMatchObject({ ok: true, commitment: { numRows: 1, hiddenSize: 8 } });
    const verdict = await verifyAll(chain, signed.ticket, hash, chunks.map((c) => c.attestations));
    expect(verdict.ok).toBe(true);
    const tokens = tokensOf(res.events);
    expect(tokens).toEqual(await reference(PROMPT, 8));
  });

  it('samples with the seed by absolute step: same tokens as unsplit, and a resume equals the uninterrupted run', async () => {
    const chain = chains[index]!;
    const full = await reference(PROMPT, 10, SAMPLED);
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 10, sampling: SAMPLED });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    expect(tokensOf(res.events)).toEqual(full);
    const prefix = full.slice(0, 4);
    const resumed = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, prefixIds: prefix, maxTokens: 10, sampling: SAMPLED });
    const res2 = await runJob(chain.url, { signedTicket: resumed.signed, promptIds: PROMPT, prefixIds: prefix });
    const chunks = res2.events.filter((e) => e.type === 'chunk');
    expect(chunks[0]!.steps).toEqual([4, 5]);
    expect(tokensOf(res2.events)).toEqual(full.slice(4));
    const verdict = await verifyAll(chain, resumed.signed.ticket, resumed.hash, chunks.map((c) => c.attestations));
    expect(verdict.ok).toBe(true);
  });
});

describe('stop tokens and tampering', () => {
  it('ends with the stop token in the last chunk, then done/stop', async () => {
    const chain = chains[1]!;
    const full = await reference(PROMPT, 6);
    const stopAt = 2;
    const stopToken = full[stopAt]!;
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 6, stopTokenIds: [stopToken] });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    const tokens = tokensOf(res.events);
    expect(tokens[tokens.length - 1]).toBe(stopToken);
    expect(tokens.length).toBe(full.indexOf(stopToken) + 1);
    expect(res.events.at(-1)).toEqual({ type: 'done', finishReason: 'stop' });
  });

  it('ChainVerifier rejects a changed token, a forged signature, a broken link and swapped hops', async () => {
    const chain = chains[2]!;
    const { signed, hash } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 3 });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    const chunks = res.events.flatMap((e) => (e.type === 'chunk' ? [e.attestations] : []));
    expect((await verifyAll(chain, signed.ticket, hash, chunks)).ok).toBe(true);
    const clone = () => structuredClone(chunks);

    const tokenChanged = clone();
    tokenChanged[1]![2]!.att.outputTokenIds = [(tokenChanged[1]![2]!.att.outputTokenIds![0]! + 1) % 64];
    expect(await verifyAll(chain, signed.ticket, hash, tokenChanged)).toMatchObject({ ok: false, hop: 2, agentId: 'c3-2' });

    const forged = clone();
    const sig = forged[0]![1]!.sig;
    forged[0]![1]!.sig = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
    expect(await verifyAll(chain, signed.ticket, hash, forged)).toMatchObject({ ok: false, hop: 1 });

    const relinked = clone();
    relinked[2]![0]!.att.prevHash = relinked[1]![0]!.att.prevHash;
    expect(await verifyAll(chain, signed.ticket, hash, relinked)).toMatchObject({ ok: false, hop: 0 });

    const swapped = clone();
    [swapped[0]![0], swapped[0]![1]] = [swapped[0]![1]!, swapped[0]![0]!];
    expect(await verifyAll(chain, signed.ticket, hash, swapped)).toMatchObject({ ok: false, hop: 0 });

    const reordered = clone();
    [reordered[0], reordered[1]] = [reordered[1]!, reordered[0]!];
    expect(await verifyAll(chain, signed.ticket, hash, reordered)).toMatchObject({ ok: false, reason: 'wrong_steps' });
  });
});
