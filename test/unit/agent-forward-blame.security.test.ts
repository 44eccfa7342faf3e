/**
 * A hop that forwards bad bytes is named by its own signatures, not the honest successor that
 * refuses them. Every sealing frame carries the sender's signature over the bytes it sent
 * (`senderSig`, protocol/forward-evidence.ts). The sending agent here is honest, but its link
 * fetch stands for a sender that sends other bytes than it attested *and signs what it sends*
 * (it holds the sender's key): the receiving hop refuses, and its refusal carries evidence the
 * edge's own check (edge/dispatch/forward-blame.ts) accepts against the sender. A plain
 * man-in-the-middle, who cannot sign as the sender, leaves the refusal unattributable as before.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ForwardMeta, JobEvent } from '../../protocol/agent-api.js';
import { attestationBytes, ChainVerifier, signAttestation, type SignedAttestation } from '../../protocol/attestation.js';
import { decodeFrame, encodeFrame, framePayloadAs } from '../../protocol/frame.js';
import { forwardBytes, forwardEvidenceSchema } from '../../protocol/forward-evidence.js';
import { generateSigningKey, signBytes, verifyBytes, type SigningKey } from '../../protocol/keys.js';
import type { RouteHop } from '../../protocol/ticket.js';
import { startAgentServer, type AgentServer, type AgentServerOptions } from '../../pool-agent/server/app.js';
import type { FetchLike } from '../../pool-agent/server/remote-stage.js';
import { verifyForwardEvidence } from '../../edge/dispatch/forward-blame.js';
import { fakeModel, fakeSpan, type FakeModel } from '../support/fake-span.js';
import { createTestEdge, runJob, type TestEdge } from '../support/agents.js';

const PROMPT = [2, 4, 6, 8, 10, 12];
const MAX_TOKENS = 5;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const bytesOf = (d: Float32Array) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

interface Chain {
  agents: AgentServer[];
  keys: SigningKey[];
  route: RouteHop[];
  publicKeys: Record<string, string>;
  close(): Promise<void>;
}

/** Agents on loopback with keys this test holds (a cheating sender signs with its own key). */
async function chain(model: FakeModel, edge: TestEdge, layers: [number, number][], prefix: string, options: (i: number) => Partial<AgentServerOptions>): Promise<Chain> {
  const agents: AgentServer[] = [];
  const keys: SigningKey[] = [];
  for (const [i, l] of layers.entries()) {
    const signingKey = await generateSigningKey();
    keys.push(signingKey);
    agents.push(await startAgentServer({ agentId: `${prefix}-${i}`, signingKey, edgeKeys: edge.keys, span: fakeSpan(model, l), ...options(i) }));
  }
  const route = agents.map((a, i) => ({ agentId: a.core.agentId, layers: layers[i]!, endpoint: a.url, publicKey: keys[i]!.publicKey }));
  const publicKeys = Object.fromEntries(route.map((h) => [h.agentId, h.publicKey]));
  return { agents, keys, route, publicKeys, close: async () => void (await Promise.all(agents.map((a) => a.close()))) };
}

/** What the sender does to a sealing frame of step `atStep` (it holds the sender's key). */
type Cheat = 'mitm' | 'unsigned' | 'sign_sent' | 'sign_sent_and_attest';

/** A link fetch for a sending agent: frames of step `atStep` carry other bytes, as `cheat` says. */
function cheatingLink() {
  const link = {
    cheat: null as { kind: Cheat; atStep: number; key: SigningKey; ticketHash: string } | null,
    /** Forward metas as they left the link. */
    sent: [] as { meta: ForwardMeta; payload: Uint8Array }[],
    fetch: (async (url, init) => {
      let body: Uint8Array = new Uint8Array(init.body as Uint8Array);
      const frame = decodeFrame(body, { maxPayloadBytes: 64 << 20 });
      if (frame.kind === 'forward') {
        let meta = frame.meta as ForwardMeta;
        const data = new Float32Array(framePayloadAs(frame) as Float32Array);
        const c = link.cheat;
        if (c && meta.steps[0] === c.atStep) {
          for (let i = 0; i < data.length; i += 5) data[i] = data[i]! * 1.5 + 0.25;
          const received = sha(bytesOf(data));
          const jobId = meta.signedTicket?.ticket.jobId ?? meta.job!.jobId;
          if (c.kind === 'sign_sent_and_attest') {
            // Attests the bytes' hash, but its outputTopLoc still commits to the honest output.
            const att = { ...meta.prev!.att, outputCommitment: received };
            const prev: SignedAttestation = await signAttestation(c.key.privateKey, att);
            meta = { ...meta, prev, prevHash: sha(attestationBytes(att)) };
          }
          if (c.kind === 'unsigned') {
            const { senderSig: _dropped, ...rest } = meta;
            meta = rest;
          } else if (c.kind !== 'mitm') {
            const senderSig = await signBytes(c.key.privateKey, forwardBytes({ jobId, ticketHash: c.ticketHash, hop: meta.hop, steps: meta.steps, payloadSha256: received }));
            meta = { ...meta, senderSig };
          }
        }
        link.sent.push({ meta, payload: bytesOf(data).slice() });
        body = encodeFrame({ kind: 'forward', dtype: frame.dtype, dims: frame.dims, meta, payload: data });
      }
      return fetch(url, { ...init, body: body as BodyInit });
    }) satisfies FetchLike,
  };
  return link;
}

let model: FakeModel;
let edge: TestEdge;
let two: Chain;
let three: Chain;
const link01 = cheatingLink();
const link12 = cheatingLink();

beforeAll(async () => {
  model = await fakeModel({ numLayers: 4 });
  edge = await createTestEdge();
  two = await chain(model, edge, [[0, 2], [2, 4]], 'fwd-two', (i) => (i === 0 ? { fetch: link01.fetch } : {}));
  // The head sends by POST so the middle hop does too, through its cheating fetch.
  three = await chain(model, edge, [[0, 1], [1, 3], [3, 4]], 'fwd-three', (i) => (i === 1 ? { fetch: link12.fetch } : i === 0 ? { hopTransport: 'post' } : {}));
});
afterAll(async () => {
  await Promise.all([two?.close(), three?.close()]);
});
beforeEach(() => {
  link01.cheat = link12.cheat = null;
  link01.sent.length = link12.sent.length = 0;
});

async function run(c: Chain, cheat?: { link: ReturnType<typeof cheatingLink>; sender: number; kind: Cheat; atStep: number }) {
  const { signed, hash } = await edge.ticket({ route: c.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: MAX_TOKENS });
  if (cheat) cheat.link.cheat = { kind: cheat.kind, atStep: cheat.atStep, key: c.keys[cheat.sender]!, ticketHash: hash };
  const res = await runJob(c.agents[0]!.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
  expect(res.status).toBe(200);
  const chunks = res.events.filter((e): e is Extract<JobEvent, { type: 'chunk' }> => e.type === 'chunk');
  const verifier = new ChainVerifier({ ticket: signed.ticket, ticketHash: hash, numLayers: 4, keys: c.publicKeys });
  for (const ch of chunks) expect((await verifier.verifyChunk(ch.attestations)).ok).toBe(true);
  const last = res.events.at(-1)!;
  /** The edge's own check of the refusal's evidence. */
  const judge = (evidence: unknown) =>
    verifyForwardEvidence(evidence, { ticket: signed.ticket, ticketHash: hash, hops: c.route.map((h) => ({ agentId: h.agentId, publicKey: h.publicKey! })), hiddenSize: model.manifest.architecture.hiddenSize });
  return { last, chunks, judge, hash, jobId: signed.ticket.jobId };
}

describe('honest senders sign what they send', () => {
  it('every sealing frame carries senderSig over the SHA-256 of its payload, which is the attested outputCommitment', async () => {
    const r = await run(two);
    expect(r.last).toEqual({ type: 'done', finishReason: 'length' });
    expect(link01.sent).toHaveLength(MAX_TOKENS);
    for (const { meta, payload } of link01.sent) {
      expect(meta.prev!.att.outputCommitment).toBe(sha(payload));
      const statement = { jobId: r.jobId, ticketHash: r.hash, hop: 1, steps: meta.steps, payloadSha256: sha(payload) };
      expect(await verifyBytes(two.keys[0]!.publicKey, meta.senderSig!, forwardBytes(statement))).toBe(true);
    }
  });
});

describe('the sender signed the bad bytes it sent: the refusal names it, with evidence the edge accepts', () => {
  it('other bytes than attested (another hash): hop 1 refuses at step 2 and proves hop 0 sent them', async () => {
    const r = await run(two, { link: link01, sender: 0, kind: 'sign_sent', atStep: 2 });
    const hop0 = two.route[0]!.agentId;
    const hop1 = two.route[1]!.agentId;
    // The reporter stays the refusing hop (an edge that cannot read the evidence blames it, as before).
    expect(r.last).toMatchObject({ type: 'error', code: 'bad_input', agentId: hop1 });
    expect((r.last as { message: string }).message).toMatch(/differ from what hop 0 attested.*hop 0 signed that it sent these bytes/);
    expect(r.chunks.map((c) => c.steps[0])).toEqual([0, 1]);
    const evidence = forwardEvidenceSchema.parse((r.last as { evidence?: unknown }).evidence);
    expect(evidence.prev.att).toMatchObject({ agentId: hop0, hop: 0, steps: [2, 3] });
    expect(evidence.payload).toBeUndefined();
    expect(await r.judge(evidence)).toMatchObject({ ok: true, hop: 0, agentId: hop0, fault: 'hash_mismatch', steps: [2, 3] });
  });

  it('bytes that hash as attested but that its outputTopLoc does not commit to: the refusal discloses them, the edge finds the mismatch itself', async () => {
    const r = await run(two, { link: link01, sender: 0, kind: 'sign_sent_and_attest', atStep: 1 });
    expect(r.last).toMatchObject({ type: 'error', code: 'bad_input', agentId: two.route[1]!.agentId });
    expect((r.last as { message: string }).message).toMatch(/outputTopLoc does not commit/);
    const evidence = forwardEvidenceSchema.parse((r.last as { evidence?: unknown }).evidence);
    expect(evidence.payload).toBeDefined();
    expect(await r.judge(evidence)).toMatchObject({ ok: true, hop: 0, fault: 'toploc_mismatch' });
  });

  it('a middle hop: hop 2 refuses, the error comes back through hop 1 and the head with the evidence against hop 1', async () => {
    const r = await run(three, { link: link12, sender: 1, kind: 'sign_sent', atStep: 3 });
    expect(r.last).toMatchObject({ type: 'error', code: 'bad_input', agentId: three.route[2]!.agentId });
    expect(r.chunks.map((c) => c.steps[0])).toEqual([0, 1, 2]);
    const proof = await r.judge((r.last as { evidence?: unknown }).evidence);
    expect(proof).toMatchObject({ ok: true, hop: 1, agentId: three.route[1]!.agentId, fault: 'hash_mismatch' });
  });
});

describe('unattributable refusals stay as they were', () => {
  it('a man-in-the-middle changes the bytes (senderSig now covers other bytes): refused, no evidence, the refuser reports', async () => {
    const r = await run(two, { link: link01, sender: 0, kind: 'mitm', atStep: 0 });
    expect(r.last).toMatchObject({ type: 'error', code: 'bad_input', agentId: two.route[1]!.agentId });
    expect((r.last as { evidence?: unknown }).evidence).toBeUndefined();
    expect((r.last as { message: string }).message).not.toMatch(/signed that it sent/);
  });

  it('a sender that signs nothing (an older agent) is refused as before, without evidence', async () => {
    const r = await run(two, { link: link01, sender: 0, kind: 'unsigned', atStep: 2 });
    expect(link01.sent.find((s) => s.meta.steps[0] === 2)!.meta.senderSig).toBeUndefined();
    expect(r.last).toMatchObject({ type: 'error', code: 'bad_input', agentId: two.route[1]!.agentId });
    expect((r.last as { evidence?: unknown }).evidence).toBeUndefined();
    expect(r.chunks.map((c) => c.steps[0])).toEqual([0, 1]);
  });
});
