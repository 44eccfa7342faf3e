/**
 * Activations tampered with between hops must not frame the receiving hop. Hop k gets hop k-1's
 * signed attestation with the frame (`ForwardMeta.prev`) and refuses (`bad_input`, nothing run,
 * nothing signed) activations or a prevHash that attestation does not vouch for; a tamperer who
 * also rewrites `prev` and `prevHash` consistently is caught by the sending hop, which never
 * relays the resulting chunk. An honest chain still verifies with the edge's ChainVerifier.
 *
 * The link between two hops is a tampering fetch given to the sending agent.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { forwardMetaSchema, type ForwardMeta, type JobEvent } from '../../protocol/agent-api.js';
import { attestationBytes, ChainVerifier, type SignedAttestation } from '../../protocol/attestation.js';
import { decodeFrame, encodeFrame, framePayloadAs } from '../../protocol/frame.js';
import { commitOutputRows } from '../../protocol/output-commitment.js';
import { decodeCommitment } from '../../protocol/commitment.js';
import { generate } from '../../pool-agent/runtime/pipeline.js';
import * as attest from '../../pool-agent/server/attest.js';
import type { FetchLike } from '../../pool-agent/server/remote-stage.js';
import { fakeModel, fakeSpan, type FakeModel } from '../support/fake-span.js';
import { createTestEdge, runJob, startChain, tokensOf, type InProcessChain, type TestEdge } from '../support/agents.js';

// Every attestation an agent signs goes through attestChunk: wrap it to see who signed what.
vi.mock('../../pool-agent/server/attest.js', async (importOriginal) => {
  const mod = await importOriginal<typeof import('../../pool-agent/server/attest.js')>();
  return { ...mod, attestChunk: vi.fn(mod.attestChunk) };
});

const PROMPT = [2, 4, 6, 8, 10, 12];
const MAX_TOKENS = 6;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** What a link does to a forward frame: returns the (maybe changed) meta and activations. */
type LinkTamper = (meta: ForwardMeta, data: Float32Array) => { meta: ForwardMeta; data: Float32Array } | void;

/** A fetch for the sending agent: every forward frame it sends passes through `link.tamper`. */
function tamperingLink() {
  const link = {
    tamper: null as LinkTamper | null,
    /** Forward metas as they left the link (after tampering). */
    sent: [] as ForwardMeta[],
    fetch: (async (url, init) => {
      let body: Uint8Array = new Uint8Array(init.body as Uint8Array);
      const frame = decodeFrame(body, { maxPayloadBytes: 64 << 20 });
      if (frame.kind === 'forward') {
        let meta = frame.meta as ForwardMeta;
        let data: Float32Array = new Float32Array(framePayloadAs(frame) as Float32Array);
        const changed = link.tamper?.(structuredClone(meta), data);
        if (changed) ({ meta, data } = changed);
        link.sent.push(meta);
        body = encodeFrame({ kind: 'forward', dtype: frame.dtype, dims: frame.dims, meta, payload: data });
      }
      return fetch(url, { ...init, body: body as BodyInit });
    }) satisfies FetchLike,
  };
  return link;
}

let model: FakeModel;
let edge: TestEdge;
let two: InProcessChain;
let three: InProcessChain;
const link01 = tamperingLink();
const link12 = tamperingLink();
const signCalls = vi.mocked(attest.attestChunk);

beforeAll(async () => {
  model = await fakeModel({ numLayers: 4 });
  edge = await createTestEdge();
  two = await startChain({ edge, spans: [fakeSpan(model, [0, 2]), fakeSpan(model, [2, 4])], agentIdPrefix: 'two', agentOptions: (i) => (i === 0 ? { fetch: link01.fetch } : {}) });
  three = await startChain({
    edge,
    spans: [fakeSpan(model, [0, 1]), fakeSpan(model, [1, 3]), fakeSpan(model, [3, 4])],
    agentIdPrefix: 'three',
    // The head sends by POST so the middle hop does too, through the tampering fetch (a link
    // cannot run over a fetch; the attack suite tampers with links through a proxy).
    agentOptions: (i) => (i === 1 ? { fetch: link12.fetch } : i === 0 ? { hopTransport: 'post' } : {}),
  });
});
afterAll(async () => {
  await Promise.all([two?.close(), three?.close()]);
});
beforeEach(() => {
  link01.tamper = link12.tamper = null;
  link01.sent.length = link12.sent.length = 0;
  signCalls.mockClear();
});

async function reference(): Promise<number[]> {
  const r = await generate({ stages: [fakeSpan(model, [0, 4]).openSession()], promptIds: PROMPT, sampling: { temperature: 0, topP: 1, topK: 0, seed: 1 }, maxTokens: MAX_TOKENS });
  return r.tokens;
}

async function run(chain: InProcessChain) {
  const { signed, hash } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: MAX_TOKENS });
  const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
  expect(res.status).toBe(200);
  const chunks = res.events.filter((e): e is Extract<JobEvent, { type: 'chunk' }> => e.type === 'chunk');
  const verifier = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: 4, keys: chain.publicKeys });
  const verdicts = [];
  for (const c of chunks) verdicts.push(await verifier.verifyChunk(c.attestations));
  return { jobId: signed.ticket.jobId, events: res.events, chunks, verdicts, last: res.events.at(-1)! };
}

/** Steps each agent signed an attestation for, in this test. */
function signedSteps(agentId: string): number[] {
  return signCalls.mock.calls.filter(([ctx]) => ctx.agentId === agentId).map(([, c]) => c.steps[0]);
}

/** Adds 0.5 to every 7th activation: bytes hop k-1 did not send. */
function shift(data: Float32Array): Float32Array {
  for (let i = 0; i < data.length; i += 7) data[i] = data[i]! + 0.5;
  return data;
}

async function expectRefused(chain: InProcessChain, hop: number, atStep: number, message: RegExp) {
  const r = await run(chain);
  const victim = chain.route[hop]!.agentId;
  expect(r.last).toMatchObject({ type: 'error', code: 'bad_input', agentId: victim });
  expect((r.last as { message: string }).message).toMatch(message);
  // Every chunk before the tampered step went through and verifies; none from that step on.
  expect(r.chunks.map((c) => c.steps[0])).toEqual(Array.from({ length: atStep }, (_, i) => i));
  expect(r.verdicts.every((v) => v.ok)).toBe(true);
  // The refusing hop signed nothing for the tampered step, and neither did any hop after it.
  expect(signedSteps(victim)).toEqual(Array.from({ length: atStep }, (_, i) => i));
  for (const later of chain.route.slice(hop + 1)) expect(signedSteps(later.agentId)).not.toContain(atStep);
  // It did not run its span on those bytes: no committed input kept for the step.
  const kept = chain.agents[hop]!.core.inputs.get(r.jobId, hop)?.chunks.map((c) => c.steps[0]) ?? [];
  expect(kept).not.toContain(atStep);
  // Its session is freed (the head closes the chain after the error).
  await vi.waitFor(() => expect(chain.agents[hop]!.core.sessions.size).toBe(0));
  return r;
}

describe('honest chains', () => {
  it.each(['two', 'three'] as const)('%s hops: every forward frame carries the previous hop attestation, and the chain verifies', async (name) => {
    const chain = name === 'two' ? two : three;
    const link = name === 'two' ? link01 : link12;
    const r = await run(chain);
    expect(r.last).toEqual({ type: 'done', finishReason: 'length' });
    expect(tokensOf(r.events)).toEqual(await reference());
    expect(r.verdicts.map((v) => v.ok)).toEqual(Array(MAX_TOKENS).fill(true));
    expect(link.sent).toHaveLength(MAX_TOKENS);
    for (const meta of link.sent) {
      const chunk = r.chunks.find((c) => c.steps[0] === meta.steps[0])!;
      // prev is exactly the attestation of hop k-1 that reached the edge, and prevHash its hash.
      expect(meta.prev).toEqual(chunk.attestations[meta.hop - 1]);
      expect(sha(attestationBytes(meta.prev!.att))).toBe(meta.prevHash);
      expect(chunk.attestations[meta.hop]!.att.prevHash).toBe(meta.prevHash);
    }
  });

  it("a prompt longer than an outputTopLoc's 64 rows: each receiving hop accepts the sampled rows its sender committed to", async () => {
    const prompt = Array.from({ length: 100 }, (_, i) => 3 + ((i * 7) % 60));
    const { signed, hash } = await edge.ticket({ route: three.route, modelId: model.modelId, promptIds: prompt, maxTokens: 3 });
    const res = await runJob(three.url, { signedTicket: signed, promptIds: prompt, prefixIds: [] });
    expect(res.events.at(-1)).toEqual({ type: 'done', finishReason: 'length' });
    const chunks = res.events.filter((e): e is Extract<JobEvent, { type: 'chunk' }> => e.type === 'chunk');
    const verifier = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: 4, keys: three.publicKeys });
    for (const c of chunks) expect((await verifier.verifyChunk(c.attestations)).ok).toBe(true);
    for (const hop of [0, 1]) expect(decodeCommitment(chunks[0]!.attestations[hop]!.att.outputTopLoc)).toMatchObject({ ok: true, commitment: { numRows: 64 } });
  });

  it('the schema still accepts a forward meta without prev (older senders), and checks prev when present', async () => {
    const { signed } = await edge.ticket({ route: two.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: MAX_TOKENS });
    const meta = { signedTicket: signed, hop: 1, steps: [0, 1], prevHash: 'a'.repeat(64), open: true };
    expect(forwardMetaSchema.safeParse(meta).success).toBe(true);
    expect(forwardMetaSchema.safeParse({ ...meta, prev: { att: { v: 1 }, sig: 'x' } }).success).toBe(false);
  });
});

describe('tampered activations are refused, never signed', () => {
  it('changed bytes in the opening (prefill) frame: hop 1 refuses at step 0', async () => {
    link01.tamper = (meta, data) => (meta.open ? { meta, data: shift(data) } : undefined);
    await expectRefused(two, 1, 0, /differ from what hop 0 attested/);
  });

  it('changed bytes in a decode frame: the steps before verify, hop 1 refuses at step 3', async () => {
    link01.tamper = (meta, data) => (meta.steps[0] === 3 ? { meta, data: shift(data) } : undefined);
    await expectRefused(two, 1, 3, /differ from what hop 0 attested/);
  });

  it('changed bytes on the link 1 -> 2 of a chain of 3: hop 2 refuses, hop 1 is the one that reports it', async () => {
    link12.tamper = (meta, data) => (meta.steps[0] === 2 ? { meta, data: shift(data) } : undefined);
    await expectRefused(three, 2, 2, /differ from what hop 1 attested/);
  });
});

describe('a missing or wrong prev is refused', () => {
  const other = (h: string) => (h[0] === 'a' ? 'b' : 'a') + h.slice(1);
  const cases: [string, (m: ForwardMeta) => void, RegExp][] = [
    ['missing', (m) => delete m.prev, /needs hop 0's signed attestation/],
    ['for another ticket', (m) => void (m.prev!.att.ticketHash = other(m.prev!.att.ticketHash)), /another ticket/],
    ['of another hop', (m) => void (m.prev!.att.hop = 1), /of hop 1, not hop 0/],
    ['from another agent', (m) => void (m.prev!.att.agentId = 'mallory'), /signed as mallory/],
    ['for other layers', (m) => void (m.prev!.att.layers = [0, 3]), /layers/],
    ['for other steps', (m) => void (m.prev!.att.steps = [m.steps[0] + 1, m.steps[1] + 1]), /prev covers steps/],
    ['that does not hash to prevHash', (m) => void (m.prevHash = other(m.prevHash!)), /prevHash is not the hash of prev/],
    ['with another output commitment (bytes intact)', (m) => void (m.prev!.att.outputCommitment = other(m.prev!.att.outputCommitment)), /prevHash is not the hash of prev/],
  ];
  it.each(cases)('prev %s', async (_, mutate, message) => {
    link01.tamper = (meta, data) => {
      if (meta.steps[0] !== 1) return;
      mutate(meta);
      return { meta, data };
    };
    await expectRefused(two, 1, 1, message);
  });
});

describe('a tamperer that rewrites prev and prevHash consistently', () => {
  /** Shifted bytes, and prev rewritten to commit to them: exact hash and, unless told not to, outputTopLoc. */
  const forge = (meta: Parameters<NonNullable<typeof link01.tamper>>[0], data: Parameters<NonNullable<typeof link01.tamper>>[1], topLoc = true) => {
    const bytes = shift(data);
    const forged: SignedAttestation = structuredClone(meta.prev!);
    forged.att.outputCommitment = sha(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    if (topLoc) forged.att.outputTopLoc = commitOutputRows(bytes, bytes.length / model.manifest.architecture.hiddenSize, model.manifest.architecture.hiddenSize, forged.att.outputCommitment);
    return { meta: { ...meta, prev: forged, prevHash: sha(attestationBytes(forged.att)) }, data: bytes };
  };

  it("hop 1 checks the forged prev against hop 0's key from the signed ticket: refused, nothing signed", async () => {
    link01.tamper = (meta, data) => (meta.steps[0] !== 2 ? undefined : forge(meta, data));
    const r = await run(two);
    const hop1 = two.route[1]!.agentId;
    expect(r.last).toMatchObject({ type: 'error', code: 'bad_input', agentId: hop1 });
    expect((r.last as { message: string }).message).toMatch(/signature does not verify/);
    expect(signedSteps(hop1)).not.toContain(2);
    expect(r.chunks.map((c) => c.steps[0])).toEqual([0, 1]);
    expect(r.verdicts.every((v) => v.ok)).toBe(true);
  });

  it('without keys in the ticket, hop 1 cannot tell and signs, but the sending hop sees the mismatch and never relays that chunk', async () => {
    link01.tamper = (meta, data) => (meta.steps[0] !== 2 ? undefined : forge(meta, data));
    const keyless = { ...two, route: two.route.map(({ publicKey: _omit, ...hop }) => hop) };
    const r = await run(keyless);
    const hop1 = two.route[1]!.agentId;
    expect(r.last).toMatchObject({ type: 'error', code: 'upstream_error', agentId: hop1 });
    expect((r.last as { message: string }).message).toMatch(/attests other input than this hop sent/);
    // Hop 1 did sign for step 2 (it cannot check hop 0's signature without its key)...
    expect(signedSteps(hop1)).toContain(2);
    // ...but the chunk that would carry that attestation never reaches the edge.
    expect(r.chunks.map((c) => c.steps[0])).toEqual([0, 1]);
    expect(r.verdicts.every((v) => v.ok)).toBe(true);
  });

  it("without keys, a prev whose outputTopLoc still commits to hop 0's real output is refused by hop 1: nothing signed", async () => {
    link01.tamper = (meta, data) => (meta.steps[0] !== 2 ? undefined : forge(meta, data, false));
    const keyless = { ...two, route: two.route.map(({ publicKey: _omit, ...hop }) => hop) };
    const r = await run(keyless);
    const hop1 = two.route[1]!.agentId;
    expect(r.last).toMatchObject({ type: 'error', code: 'bad_input', agentId: hop1 });
    expect((r.last as { message: string }).message).toMatch(/outputTopLoc does not commit to the activations received/);
    expect(signedSteps(hop1)).not.toContain(2);
  });
});
