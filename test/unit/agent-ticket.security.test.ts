/**
 * What the agent refuses: tickets with a bad signature, an unknown key, past their expiry, a
 * replayed nonce, for another hop or layers or model, or whose inputs do not hash to the ticket;
 * cancels and check-input requests not signed by the edge.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cancelMessage, checkInputsMessage, checkInputsResponseSchema } from '../../protocol/agent-api.js';
import { activationCommitment } from '../../protocol/check.js';
import { fromBase64Url, utf8 } from '../../protocol/bytes.js';
import { tokenCommitment } from '../../protocol/attestation.js';
import { signBytes } from '../../protocol/keys.js';
import { fakeModel, fakeSpan, type FakeModel } from '../support/fake-span.js';
import { createTestEdge, runJob, startChain, tokensOf, type InProcessChain, type TestEdge } from '../support/agents.js';

const PROMPT = [1, 7, 8, 9];
let model: FakeModel;
let edge: TestEdge;
let chain: InProcessChain;
let slow: InProcessChain;

beforeAll(async () => {
  model = await fakeModel();
  edge = await createTestEdge();
  chain = await startChain({ edge, spans: [fakeSpan(model, [0, 2]), fakeSpan(model, [2, 4])] });
  slow = await startChain({ edge, spans: [fakeSpan(model, [0, 4], { delayMs: 30 })], agentIdPrefix: 'slow' });
});
afterAll(async () => {
  await chain.close();
  await slow.close();
});

const job = async (overrides: Parameters<TestEdge['ticket']>[0]['patch'] = {}, body: { promptIds?: number[]; prefixIds?: number[] } = {}) => {
  const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 3, patch: overrides });
  return runJob(chain.url, { signedTicket: signed, promptIds: body.promptIds ?? PROMPT, prefixIds: body.prefixIds ?? [] });
};

describe('ticket checks at the head agent', () => {
  it('accepts a good ticket (control)', async () => {
    const res = await job();
    expect(res.status).toBe(200);
    expect(tokensOf(res.events)).toHaveLength(3);
  });

  it('refuses a bad signature', async () => {
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 3 });
    const tampered = { ...signed, ticket: { ...signed.ticket, limits: { ...signed.ticket.limits, maxTokens: 999 } } };
    const res = await runJob(chain.url, { signedTicket: tampered, promptIds: PROMPT, prefixIds: [] });
    expect(res.status).toBe(401);
    expect(res.error?.code).toBe('invalid_ticket');
  });

  it('refuses a ticket signed by a key it does not trust', async () => {
    const other = await createTestEdge('edge-test-1');
    const { signed } = await other.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 3 });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    expect(res.status).toBe(401);
    const unknownId = await createTestEdge('edge-unknown');
    const r2 = await runJob(chain.url, { signedTicket: (await unknownId.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 3 })).signed, promptIds: PROMPT, prefixIds: [] });
    expect(r2.status).toBe(401);
    expect(r2.error?.message).toMatch(/unknown edge key/);
  });

  it('refuses an expired ticket', async () => {
    const past = Date.now() - 10 * 60_000;
    const res = await job({ issuedAt: past - 1000, expiresAt: past });
    expect(res.status).toBe(401);
    expect(res.error?.code).toBe('expired');
  });

  it('refuses a replayed nonce', async () => {
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 2 });
    const body = { signedTicket: signed, promptIds: PROMPT, prefixIds: [] };
    expect((await runJob(chain.url, body)).status).toBe(200);
    const again = await runJob(chain.url, body);
    expect(again.status).toBe(409);
    expect(again.error?.code).toBe('replayed');
  });

  it('refuses a ticket where this agent is not hop 0, or serves other layers, or another model', async () => {
    const [h0, h1] = chain.route;
    const swapped = await job({ route: [{ ...h1!, layers: [0, 2] }, { ...h0!, layers: [2, 4] }] });
    expect(swapped.status).toBe(403);
    expect(swapped.error?.code).toBe('wrong_hop');
    const layers = await job({ route: [{ ...h0!, layers: [0, 1] }, { ...h1!, layers: [1, 4] }] });
    expect(layers.status).toBe(403);
    expect(layers.error?.message).toMatch(/layers/);
    const otherModel = await job({ modelId: 'f'.repeat(64) });
    expect(otherModel.status).toBe(403);
    expect(otherModel.error?.code).toBe('wrong_model');
  });

  it('refuses inputs that do not hash to the ticket inputHash', async () => {
    const res = await job({}, { promptIds: [1, 7, 8, 10] });
    expect(res.status).toBe(400);
    expect(res.error?.code).toBe('input_mismatch');
    const counts = await job({}, { promptIds: [1, 7, 8], prefixIds: [9] });
    expect(counts.status).toBe(400);
  });

  it('refuses a malformed body with a clear 400 and an oversized one with 413', async () => {
    const bad = await fetch(new URL('/v1/jobs', chain.url), { method: 'POST', body: '{"nope":' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
    const huge = await fetch(new URL('/v1/jobs', chain.url), { method: 'POST', body: 'x'.repeat(3 * 1024 * 1024) });
    expect(huge.status).toBe(413);
  });
});

describe('signed edge requests', () => {
  it('cancels a running job only with the edge signature', async () => {
    const { signed, hash } = await edge.ticket({ route: slow.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 200 });
    const running = runJob(slow.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    await new Promise((r) => setTimeout(r, 100));
    const base = { jobId: signed.ticket.jobId, ticketHash: hash, issuedAt: Date.now() };
    const cancelUrl = new URL(`/v1/jobs/${signed.ticket.jobId}/cancel`, slow.url);
    const attacker = await createTestEdge('edge-test-1');
    const forged = await fetch(cancelUrl, { method: 'POST', body: JSON.stringify({ ...base, signature: await signBytes(attacker.key.privateKey, utf8(cancelMessage(base))) }) });
    expect(forged.status).toBe(401);
    const ok = await fetch(cancelUrl, { method: 'POST', body: JSON.stringify({ ...base, signature: await signBytes(edge.key.privateKey, utf8(cancelMessage(base))) }) });
    expect(await ok.json()).toEqual({ cancelled: true });
    const res = await running;
    expect(res.events.at(-1)).toEqual({ type: 'done', finishReason: 'cancelled' });
    expect(tokensOf(res.events).length).toBeLessThan(200);
    expect(slow.agents[0]!.core.sessions.size).toBe(0);
  });

  it('discloses committed inputs to the edge, matching the attested commitments', async () => {
    const { signed } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: PROMPT, maxTokens: 3 });
    const res = await runJob(chain.url, { signedTicket: signed, promptIds: PROMPT, prefixIds: [] });
    const chunks = res.events.flatMap((e) => (e.type === 'chunk' ? [e.attestations] : []));
    const ask = async (hop: number, key = edge.key) => {
      const base = { jobId: signed.ticket.jobId, hop, issuedAt: Date.now() };
      return fetch(new URL('/v1/checks/inputs', chain.route[hop]!.endpoint), { method: 'POST', body: JSON.stringify({ ...base, signature: await signBytes(key.privateKey, utf8(checkInputsMessage(base))) }) });
    };
    const head = checkInputsResponseSchema.parse(await (await ask(0)).json());
    expect(head.chunks).toHaveLength(3);
    expect(head.chunks[0]!.inputTokenIds).toEqual(PROMPT);
    expect(await tokenCommitment(head.chunks[1]!.inputTokenIds!)).toBe(chunks[1]![0]!.att.inputCommitment);
    expect(await activationCommitment(new Float32Array(fromBase64Url(head.chunks[0]!.output!).buffer))).toBe(chunks[0]![0]!.att.outputCommitment);
    const tail = checkInputsResponseSchema.parse(await (await ask(1)).json());
    for (let c = 0; c < 3; c++) {
      expect(await activationCommitment(new Float32Array(fromBase64Url(tail.chunks[c]!.input!).buffer))).toBe(chunks[c]![1]!.att.inputCommitment);
    }
    expect((await ask(1, (await createTestEdge()).key)).status).toBe(401);
  });
});
