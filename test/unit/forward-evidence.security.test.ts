/**
 * The pure parts of blaming a hop that forwards bad bytes: the signed message
 * (protocol/forward-evidence.ts), the receiving hop's decision to attach evidence
 * (pool-agent/server/forward-refusal.ts) and the edge's own check of it
 * (edge/dispatch/forward-blame.ts). The edge must never accept evidence a refusing hop (or anyone
 * else without the sender's key) can make: forged or replayed signatures, another key, another
 * chunk, ticket or hop, honest bytes dressed up as a fault, oversize disclosures.
 */
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { attestationBytes, signAttestation, type Attestation, type SignedAttestation } from '../../protocol/attestation.js';
import { cancelMessage, jobEventSchema, tapMessage } from '../../protocol/agent-api.js';
import { toBase64Url, utf8 } from '../../protocol/bytes.js';
import { forwardBytes, forwardMessage, MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES, type ForwardEvidence, type ForwardStatement } from '../../protocol/forward-evidence.js';
import { commitOutputRows } from '../../protocol/output-commitment.js';
import { generateSigningKey, signBytes, type SigningKey } from '../../protocol/keys.js';
import type { JobTicket } from '../../protocol/ticket.js';
import { forwardRefusal } from '../../pool-agent/server/forward-refusal.js';
import { nodeAgentCrypto } from '../../pool-agent/server/node-crypto.js';
import { verifyForwardEvidence, type ForwardEvidenceContext } from '../../edge/dispatch/forward-blame.js';

const HIDDEN = 16;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const bytesOf = (d: Float32Array) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
const TICKET_HASH = 'c'.repeat(64);
const OTHER_TICKET_HASH = 'd'.repeat(64);

/** `rows` rows of activations, deterministic. */
function activations(rows: number, salt = 0): Float32Array {
  const out = new Float32Array(rows * HIDDEN);
  for (let i = 0; i < out.length; i++) out[i] = Math.sin(i * 0.37 + salt) * (1 + (i % 5));
  return out;
}

let keys: SigningKey[];
let ticket: JobTicket;
let ctx: ForwardEvidenceContext;

beforeAll(async () => {
  keys = [await generateSigningKey(), await generateSigningKey(), await generateSigningKey()];
  const route = keys.map((k, i) => ({ agentId: `agent-${i}`, layers: [i, i + 1] as [number, number], endpoint: `http://agent-${i}.test:9000`, publicKey: k.publicKey }));
  ticket = {
    v: 1,
    jobId: 'job-fwd',
    modelId: 'a'.repeat(64),
    dtype: 'float32',
    route,
    inputHash: 'b'.repeat(64),
    promptTokens: 4,
    prefixTokens: 0,
    limits: { maxTokens: 8, deadline: Date.now() + 60_000 },
    sampling: { temperature: 0, topP: 1, topK: 0, seed: 1 },
    stopTokenIds: [],
    nonce: 'n'.repeat(24),
    issuedAt: Date.now(),
    expiresAt: Date.now() + 60_000,
    edgeKeyId: 'edge',
  };
  ctx = { ticket, ticketHash: TICKET_HASH, hops: route.map((h) => ({ agentId: h.agentId, publicKey: h.publicKey })), hiddenSize: HIDDEN };
});

/** Hop `hop`'s signed attestation of `steps`, committing to `sent` (its hash and its outputTopLoc, unless `topLocOf` says other rows). */
async function attestation(hop: number, steps: [number, number], sent: Float32Array, opts: { topLocOf?: Float32Array; ticketHash?: string; key?: SigningKey } = {}): Promise<SignedAttestation> {
  const outputCommitment = sha(bytesOf(sent));
  const rows = opts.topLocOf ?? sent;
  const att: Attestation = {
    v: 1,
    ticketHash: opts.ticketHash ?? TICKET_HASH,
    jobId: ticket.jobId,
    agentId: `agent-${hop}`,
    modelId: ticket.modelId,
    hop,
    layers: [hop, hop + 1],
    steps,
    inputCommitment: 'e'.repeat(64),
    outputCommitment,
    outputTopLoc: commitOutputRows(rows, rows.length / HIDDEN, HIDDEN, outputCommitment),
    prevHash: null,
    issuedAt: Date.now(),
  };
  return signAttestation((opts.key ?? keys[hop]!).privateKey, att);
}

/** The sender's signature over what it says it sent to hop `hop + 1`. */
function senderSig(key: SigningKey, steps: [number, number], payloadSha256: string, over: Partial<ForwardStatement> = {}): Promise<string> {
  return signBytes(key.privateKey, forwardBytes({ jobId: ticket.jobId, ticketHash: TICKET_HASH, hop: 1, steps, payloadSha256, ...over }));
}

/** Evidence that hop 0 attested `honest` for steps [2, 3) and signed that it sent `bad` to hop 1. */
async function hashEvidence(): Promise<ForwardEvidence> {
  const honest = activations(1);
  const bad = activations(1, 1);
  return { kind: 'bad_forward', prev: await attestation(0, [2, 3], honest), senderSig: await senderSig(keys[0]!, [2, 3], sha(bytesOf(bad))), receivedSha256: sha(bytesOf(bad)) };
}

/** Evidence that hop 0 attested the hash of `bad` with an outputTopLoc of other rows, and sent `bad`. */
async function topLocEvidence(rows = 2): Promise<ForwardEvidence> {
  const bad = activations(rows, 1);
  const prev = await attestation(0, [2, 4], bad, { topLocOf: activations(rows) });
  return { kind: 'bad_forward', prev, senderSig: await senderSig(keys[0]!, [2, 4], sha(bytesOf(bad))), receivedSha256: sha(bytesOf(bad)), payload: toBase64Url(bytesOf(bad)) };
}

describe('the signed message', () => {
  it('binds job, ticket, receiving hop, steps and payload hash under its own domain', () => {
    const s: ForwardStatement = { jobId: 'j', ticketHash: 'c'.repeat(64), hop: 2, steps: [4, 6], payloadSha256: 'f'.repeat(64) };
    expect(forwardMessage(s)).toBe(`layernet.forward/1\nj\n${'c'.repeat(64)}\n2\n4\n6\n${'f'.repeat(64)}`);
    const variants: ForwardStatement[] = [
      { ...s, jobId: 'k' },
      { ...s, ticketHash: 'd'.repeat(64) },
      { ...s, hop: 3 },
      { ...s, steps: [4, 7] },
      { ...s, steps: [5, 6] },
      { ...s, payloadSha256: 'e'.repeat(64) },
    ];
    for (const v of variants) expect(forwardMessage(v)).not.toBe(forwardMessage(s));
    // Not any other signed message of the protocol.
    for (const other of [cancelMessage({ jobId: 'j', ticketHash: s.ticketHash, issuedAt: 1 }), tapMessage('j', s.ticketHash)]) expect(forwardMessage(s).split('\n')[0]).not.toBe(other.split('\n')[0]);
    expect(forwardBytes(s)).toEqual(utf8(forwardMessage(s)));
  });
});

describe("the receiving hop's refusal", () => {
  const claim = (prev: SignedAttestation, sig: string | undefined, steps: [number, number] = [2, 3]) => ({ hop: 1, steps, prevHash: sha(attestationBytes(prev.att)), prev, senderSig: sig });

  it('attaches evidence only when the sender signed the bytes received and they contradict its attestation', async () => {
    const crypto = nodeAgentCrypto(keys[1]!);
    const honest = activations(1);
    const bad = activations(1, 1);
    const prev = await attestation(0, [2, 3], honest);
    // Honest bytes: no refusal at all.
    expect(forwardRefusal(crypto, claim(prev, await senderSig(keys[0]!, [2, 3], sha(bytesOf(honest)))), ticket, TICKET_HASH, bytesOf(honest), HIDDEN)).toBeNull();
    // Bad bytes signed by the sender: refused with evidence.
    const signed = forwardRefusal(crypto, claim(prev, await senderSig(keys[0]!, [2, 3], sha(bytesOf(bad)))), ticket, TICKET_HASH, bytesOf(bad), HIDDEN);
    expect(signed?.code).toBe('bad_input');
    expect(signed?.evidence).toMatchObject({ kind: 'bad_forward', receivedSha256: sha(bytesOf(bad)) });
    expect(await verifyForwardEvidence(signed!.evidence, ctx)).toMatchObject({ ok: true, agentId: 'agent-0' });
    // The sender signed the honest bytes (a link changed them), or nothing: refused, no evidence.
    for (const sig of [await senderSig(keys[0]!, [2, 3], sha(bytesOf(honest))), undefined]) {
      const r = forwardRefusal(crypto, claim(prev, sig), ticket, TICKET_HASH, bytesOf(bad), HIDDEN);
      expect(r?.code).toBe('bad_input');
      expect(r?.evidence).toBeUndefined();
    }
  });

  it('no evidence when the ticket gives no key for the sender, or when prev itself is not acceptable', async () => {
    const crypto = nodeAgentCrypto(keys[1]!);
    const bad = activations(1, 1);
    const sig = await senderSig(keys[0]!, [2, 3], sha(bytesOf(bad)));
    const keyless: JobTicket = { ...ticket, route: ticket.route.map(({ publicKey: _k, ...h }) => h) };
    const prev = await attestation(0, [2, 3], activations(1));
    expect(forwardRefusal(crypto, claim(prev, sig), keyless, TICKET_HASH, bytesOf(bad), HIDDEN)?.evidence).toBeUndefined();
    // prev signed by someone else (the refuser, say): refused for the signature, not the bytes.
    const forged = await attestation(0, [2, 3], activations(1), { key: keys[1]! });
    const r = forwardRefusal(crypto, claim(forged, sig), ticket, TICKET_HASH, bytesOf(bad), HIDDEN);
    expect(r?.message).toMatch(/signature does not verify/);
    expect(r?.evidence).toBeUndefined();
  });

  it('discloses hash-matching bad bytes up to the cap, and gives up (no evidence) above it', async () => {
    const crypto = nodeAgentCrypto(keys[1]!);
    const small = await topLocEvidence(2);
    const smallBytes = bytesOf(activations(2, 1));
    const r = forwardRefusal(crypto, claim(small.prev, small.senderSig, [2, 4]), ticket, TICKET_HASH, smallBytes, HIDDEN);
    expect(r?.message).toMatch(/outputTopLoc does not commit/);
    expect(r?.evidence?.payload).toBe(toBase64Url(smallBytes));
    const rows = MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES / (HIDDEN * 4) + 1;
    const big = activations(rows, 1);
    const prev = await attestation(0, [2, 4], big, { topLocOf: activations(rows) });
    const sig = await senderSig(keys[0]!, [2, 4], sha(bytesOf(big)));
    const refused = forwardRefusal(crypto, claim(prev, sig, [2, 4]), ticket, TICKET_HASH, bytesOf(big), HIDDEN);
    expect(refused?.message).toMatch(/outputTopLoc does not commit/);
    expect(refused?.evidence).toBeUndefined();
  });
});

describe("the edge's check of the evidence", () => {
  it('accepts a sender that signed other bytes than it attested, and hash-matching bytes its outputTopLoc does not describe', async () => {
    expect(await verifyForwardEvidence(await hashEvidence(), ctx)).toEqual({ ok: true, hop: 0, agentId: 'agent-0', steps: [2, 3], fault: 'hash_mismatch', detail: expect.any(String) });
    expect(await verifyForwardEvidence(await topLocEvidence(), ctx)).toMatchObject({ ok: true, hop: 0, fault: 'toploc_mismatch' });
  });

  it('a refusing hop cannot frame its predecessor: every made-up or replayed piece is refused', async () => {
    const good = await hashEvidence();
    const bad = activations(1, 1);
    const badHash = sha(bytesOf(bad));
    const honestHash = good.prev.att.outputCommitment;
    const cases: [string, () => Promise<unknown>, RegExp][] = [
      // Hop 1 signs the statement itself: not hop 0's key.
      ['sender signature made by the refuser', async () => ({ ...good, senderSig: await senderSig(keys[1]!, [2, 3], badHash) }), /sender signature does not verify/],
      ['sender signature by an unregistered key', async () => ({ ...good, senderSig: await senderSig(await generateSigningKey(), [2, 3], badHash) }), /sender signature does not verify/],
      // The honest sender's real signature (over what it really sent), shown with another hash.
      ['real sender signature, received hash changed', async () => ({ ...good, senderSig: await senderSig(keys[0]!, [2, 3], honestHash), receivedSha256: badHash }), /sender signature does not verify/],
      ['sender signature for another receiving hop', async () => ({ ...good, senderSig: await senderSig(keys[0]!, [2, 3], badHash, { hop: 2 }) }), /sender signature does not verify/],
      ['sender signature for other steps', async () => ({ ...good, senderSig: await senderSig(keys[0]!, [3, 4], badHash) }), /sender signature does not verify/],
      ['sender signature under another ticket', async () => ({ ...good, senderSig: await senderSig(keys[0]!, [2, 3], badHash, { ticketHash: OTHER_TICKET_HASH }) }), /sender signature does not verify/],
      ['prev forged by the refuser', async () => ({ ...good, prev: await attestation(0, [2, 3], activations(1), { key: keys[1]! }) }), /prev's signature does not verify/],
      ['prev of another ticket (an earlier attempt)', async () => ({ ...good, prev: await attestation(0, [2, 3], activations(1), { ticketHash: OTHER_TICKET_HASH }) }), /another ticket/],
      ['prev of the last hop (it has no successor)', async () => ({ ...good, prev: await attestation(2, [2, 3], activations(1)) }), /no next hop/],
      ['prev with its fields changed after signing', async () => ({ ...good, prev: { ...good.prev, att: { ...good.prev.att, outputCommitment: 'f'.repeat(64) } } }), /prev's signature does not verify/],
      ['honest bytes, the sender signed them, no payload', async () => ({ ...good, senderSig: await senderSig(keys[0]!, [2, 3], honestHash), receivedSha256: honestHash }), /not disclosed/],
      ['not the evidence schema', async () => ({ ...good, receivedSha256: 'xyz' }), /schema/],
    ];
    for (const [name, make, why] of cases) {
      const r = await verifyForwardEvidence(await make(), ctx);
      expect(r.ok, name).toBe(false);
      expect(r.ok ? '' : r.why, name).toMatch(why);
    }
  });

  it('the wrong registered key for the accused (keys swapped in the edge record): refused', async () => {
    const swapped = { ...ctx, hops: ctx.hops.map((h, i) => ({ ...h, publicKey: keys[(i + 1) % 3]!.publicKey })) };
    expect(await verifyForwardEvidence(await hashEvidence(), swapped)).toMatchObject({ ok: false, why: expect.stringMatching(/does not verify under agent-0's registered key/) });
  });

  it('disclosed bytes are checked by the edge itself: honest ones, ones of another hash, undecodable or oversize ones are refused', async () => {
    const ev = await topLocEvidence();
    const honest = activations(2);
    const honestPrev = await attestation(0, [2, 4], honest);
    const honestSig = await senderSig(keys[0]!, [2, 4], sha(bytesOf(honest)));
    // The sender's honest bytes with its honest (consistent) attestation: no fault to find.
    expect(await verifyForwardEvidence({ kind: 'bad_forward', prev: honestPrev, senderSig: honestSig, receivedSha256: sha(bytesOf(honest)), payload: toBase64Url(bytesOf(honest)) }, ctx)).toMatchObject({ ok: false, why: expect.stringMatching(/what the attestation commits to/) });
    expect(await verifyForwardEvidence({ ...ev, payload: toBase64Url(bytesOf(activations(2, 2))) }, ctx)).toMatchObject({ ok: false, why: expect.stringMatching(/does not hash/) });
    const oversize = toBase64Url(new Uint8Array(MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES + 3));
    expect(await verifyForwardEvidence({ ...ev, payload: oversize }, ctx)).toMatchObject({ ok: false, why: expect.stringMatching(/schema/) });
    expect(await verifyForwardEvidence({ ...ev, payload: `${ev.payload!}*` }, ctx)).toMatchObject({ ok: false });
  });

  it('an error event whose evidence is oversize or malformed still parses, without the evidence (it then proves nothing)', async () => {
    const ev = await topLocEvidence();
    const base = { type: 'error', code: 'bad_input', message: 'refused', agentId: 'agent-1' };
    expect(jobEventSchema.parse({ ...base, evidence: ev })).toMatchObject({ evidence: { kind: 'bad_forward' } });
    const oversize = jobEventSchema.parse({ ...base, evidence: { ...ev, payload: 'A'.repeat(Math.ceil((MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES * 4) / 3) + 4) } });
    expect(oversize).toMatchObject(base);
    expect((oversize as { evidence?: unknown }).evidence).toBeUndefined();
    expect((jobEventSchema.parse({ ...base, evidence: { kind: 'other' } }) as { evidence?: unknown }).evidence).toBeUndefined();
  });
});
