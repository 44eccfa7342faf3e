/**
 * The edge's handling of a refused forward (edge/dispatch/generate.ts with forward-blame.ts): the
 * head of a two-hop route streams an `error` event in which hop 1 refuses bytes from hop 0. With
 * evidence that hop 0's own signatures contradict each other, the edge blames hop 0 as for a
 * signed wrong attestation (failover, cooldown, reputation, dispute) and leaves hop 1 alone;
 * with evidence that does not verify, it blames the reporter as it always did.
 */
import { describe, expect, it } from 'vitest';
import { signAttestation, type Attestation } from '../../protocol/attestation.js';
import { jobRequestSchema } from '../../protocol/agent-api.js';
import { sha256Hex } from '../../protocol/bytes.js';
import { forwardBytes, MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES, type ForwardEvidence } from '../../protocol/forward-evidence.js';
import { signBytes, type SigningKey } from '../../protocol/keys.js';
import { ticketHash, type JobTicket } from '../../protocol/ticket.js';
import type { AgentTransport } from '../../edge/deps.js';
import { chatCompletionSchema } from '../../protocol/api.js';
import { createTestEdge, type FakeAgent } from './edge-fixtures.js';

const chat = { model: 'tiny-test', messages: [{ role: 'user', content: 'hello' }], max_tokens: 6, seed: 11 };
const fast = { ttftMs: 10, perTokenMs: 1 };
const slow = { ttftMs: 200, perTokenMs: 20 };

type Forgery = 'none' | 'refuser_signs' | 'oversize';

/** Hop 0's attestation of the prefill, and a refusal of hop 1 with evidence against hop 0 (made up as `forgery` says). */
async function refusal(ticket: JobTicket, sender: FakeAgent, refuser: FakeAgent, forgery: Forgery): Promise<unknown> {
  const hash = await ticketHash(ticket);
  const att: Attestation = {
    v: 1,
    ticketHash: hash,
    jobId: ticket.jobId,
    agentId: sender.id,
    modelId: ticket.modelId,
    hop: 0,
    layers: ticket.route[0]!.layers,
    steps: [0, 1],
    inputCommitment: ticket.inputHash,
    outputCommitment: await sha256Hex('what hop 0 attested'),
    prevHash: null,
    issuedAt: Date.now(),
  };
  const received = await sha256Hex('what hop 1 received');
  const signer: SigningKey = forgery === 'refuser_signs' ? refuser.key : sender.key;
  const evidence: ForwardEvidence = {
    kind: 'bad_forward',
    prev: await signAttestation(sender.key.privateKey, att),
    senderSig: await signBytes(signer.privateKey, forwardBytes({ jobId: ticket.jobId, ticketHash: hash, hop: 1, steps: [0, 1], payloadSha256: received })),
    receivedSha256: received,
    ...(forgery === 'oversize' ? { payload: 'A'.repeat(Math.ceil((MAX_FORWARD_EVIDENCE_PAYLOAD_BYTES * 4) / 3) + 8) } : {}),
  };
  return { type: 'error', code: 'bad_input', message: `hop 1 refuses steps [0, 1)`, agentId: refuser.id, evidence };
}

/** The head of the cheap route answers its first job with hop 1's refusal; every other call goes to the fakes. */
function refusingHead(forgery: Forgery, agents: () => FakeAgent[]) {
  let used = false;
  return (inner: AgentTransport): AgentTransport =>
    async (url, init) => {
      const [head, tail] = agents();
      const u = new URL(url);
      if (used || u.pathname !== '/v1/jobs' || u.host !== new URL(head!.endpoint).host) return inner(url, init);
      used = true;
      const request = jobRequestSchema.parse(JSON.parse(String(init.body)));
      const line = JSON.stringify(await refusal(request.signedTicket.ticket, head!, tail!, forgery));
      return new Response(`${line}\n`, { status: 200, headers: { 'content-type': 'application/x-ndjson' } });
    };
}

async function scenario(forgery: Forgery) {
  let agents: FakeAgent[] = [];
  const edge = await createTestEdge({
    agents: [{ layers: [0, 2], ...fast }, { layers: [2, 4], ...fast }, { layers: [0, 4], ...slow }],
    wrapTransport: refusingHead(forgery, () => agents),
  });
  agents = edge.agents;
  const res = await edge.post('/v1/chat/completions', chat);
  expect(res.status).toBe(200);
  const body = chatCompletionSchema.parse(await res.json());
  const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hello' }]);
  // The client gets the honest answer from the fallback route.
  expect(body.choices[0]!.message.content).toBe(edge.tokenizer.decode(edge.expectedTokens(11, promptIds, 6)));
  expect(body.route.hops.map((h) => h.agent_id)).toEqual([agents[2]!.id]);
  expect(body.route.attempts).toBe(2);
  await edge.settle();
  const [sender, refuser] = [agents[0]!.id, agents[1]!.id];
  return { edge, sender, refuser };
}

describe('a refused forward with evidence', () => {
  it('proven: the sender is cooled down, loses reputation and is disputed; the refusing hop is not blamed', async () => {
    const { edge, sender, refuser } = await scenario('none');
    expect(edge.store.cooldowns.map((c) => c.agentId)).toEqual([sender]);
    expect(edge.store.cooldowns[0]!.reason).toBe('bad_attestation');
    expect((await edge.store.getAgent(sender))!.reputation).toBeLessThan(0.5);
    expect((await edge.store.getAgent(refuser))!.reputation).toBe(0.5);
    expect(edge.store.disputes.map((d) => [d.agentId, d.reason])).toEqual([[sender, 'bad_attestation']]);
    const entry = edge.store.ledger.find((l) => l.kind === 'reputation' && l.agentId === sender) as { reason: string; evidence: { reason: string; provable: boolean; fault: string; reportedBy: string; hop: number } };
    expect(entry.reason).toBe('bad_attestation');
    expect(entry.evidence).toMatchObject({ reason: 'bad_forward', provable: true, fault: 'hash_mismatch', reportedBy: refuser, hop: 0 });
    expect(edge.store.observations.some((o) => o.agentId === sender && !o.ok)).toBe(true);
    expect(edge.store.observations.some((o) => o.agentId === refuser && !o.ok)).toBe(false);
  });

  it.each(['refuser_signs', 'oversize'] as const)('not proven (%s): blamed on the refusing hop that reported it, as before; the sender keeps its standing', async (forgery) => {
    const { edge, sender, refuser } = await scenario(forgery);
    expect(edge.store.cooldowns.map((c) => c.agentId)).toEqual([refuser]);
    expect(edge.store.cooldowns[0]!.reason).toBe('agent_error');
    expect((await edge.store.getAgent(sender))!.reputation).toBe(0.5);
    expect((await edge.store.getAgent(refuser))!.reputation).toBe(0.5);
    expect(edge.store.disputes).toEqual([]);
    // Oversize evidence is dropped with the event's parse, so there is nothing to refuse.
    if (forgery === 'refuser_signs') expect(edge.logs.some((l) => l.includes('forward evidence refused') && l.includes('sender signature does not verify'))).toBe(true);
  });
});
