import { describe, expect, it } from 'vitest';
import { createTestEdge, readSse } from './edge-fixtures.js';
import { chatCompletionChunkSchema, chatCompletionSchema, jobAttestationSchema } from '../../protocol/api.js';

const chat = (extra: Record<string, unknown> = {}) => ({ model: 'tiny-test', messages: [{ role: 'user', content: 'hello' }], max_tokens: 12, seed: 11, ...extra });
// Agent 0 is preferred (fast), agent 1 is the fallback.
const fast = { ttftMs: 10, perTokenMs: 1 };
const slow = { ttftMs: 200, perTokenMs: 20 };

async function streamText(res: Response) {
  const { events } = await readSse(res);
  expect(events.at(-1)).toBe('[DONE]');
  const chunks = events.slice(0, -1).map((e) => chatCompletionChunkSchema.parse(JSON.parse(e)));
  return { text: chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), chunks };
}

describe('edge failover', () => {
  it('moves to the next route invisibly when the first fails before the first token', async () => {
    for (const behaviour of [{ kind: 'http-error' as const }, { kind: 'unreachable' as const }, { kind: 'die' as const, afterTokens: 0 }]) {
      const edge = await createTestEdge({ agents: [{ layers: [0, 4], ...fast, behaviour }, { layers: [0, 4], ...slow }] });
      const res = await edge.post('/v1/chat/completions', chat());
      expect(res.status).toBe(200);
      const body = chatCompletionSchema.parse(await res.json());
      const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hello' }]);
      expect(body.choices[0]!.message.content).toBe(edge.tokenizer.decode(edge.expectedTokens(11, promptIds, 12)));
      expect(body.route.hops[0]!.agent_id).toBe(edge.agents[1]!.id);
      expect(body.route.attempts).toBe(2);
      await edge.settle();
      expect(edge.store.cooldowns.map((c) => c.agentId)).toContain(edge.agents[0]!.id);
      expect(edge.store.observations.some((o) => o.agentId === edge.agents[0]!.id && !o.ok)).toBe(true);
    }
  });

  it('resumes mid-stream on another route: the client sees the uninterrupted token sequence', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], ...fast, behaviour: { kind: 'die', afterTokens: 5 } }, { layers: [0, 4], ...slow }] });
    const res = await edge.post('/v1/chat/completions', chat({ stream: true }));
    const { text, chunks } = await streamText(res);
    const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hello' }]);
    const expected = edge.expectedTokens(11, promptIds, 12);
    expect(text).toBe(edge.tokenizer.decode(expected));
    const final = chunks.find((c) => c.choices[0]?.finish_reason)!;
    expect(final.route!.attempts).toBe(2);
    // The resumed ticket carried exactly the tokens already sent as its prefix, with the same seed.
    // (A stream that errors may drop chunks still queued in it, so the cut is at most 5 tokens in.)
    const resumed = edge.agents[1]!.jobs[0]!;
    const cut = resumed.prefixIds.length;
    expect(cut).toBeGreaterThan(0);
    expect(cut).toBeLessThanOrEqual(5);
    expect(resumed.prefixIds).toEqual(expected.slice(0, cut));
    expect(resumed.signedTicket.ticket.prefixTokens).toBe(cut);
    expect(resumed.signedTicket.ticket.sampling.seed).toBe(11);
    await edge.settle();
    const job = jobAttestationSchema.parse(
      await (await edge.app.request(`/v1/jobs/${final.attestation!.job_id}/attestation`, { headers: { authorization: `Bearer ${edge.client.key}` } })).json(),
    );
    expect(job.attempts.map((a) => [a.outcome, a.chunks.length])).toEqual([['failed', cut], ['completed', 12 - cut]]);
    expect(job.token_ids).toEqual(expected);
  });

  it('resumes after a hop of a multi-agent chain dies mid-stream', async () => {
    const edge = await createTestEdge({
      agents: [
        { layers: [0, 2], ...fast },
        { layers: [2, 4], ...fast, behaviour: { kind: 'die', afterTokens: 3 } },
        { layers: [2, 4], ...slow },
      ],
    });
    const res = await edge.post('/v1/chat/completions', chat());
    const body = chatCompletionSchema.parse(await res.json());
    const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hello' }]);
    expect(body.choices[0]!.message.content).toBe(edge.tokenizer.decode(edge.expectedTokens(11, promptIds, 12)));
    expect(body.route.hops.map((h) => h.agent_id)).toEqual([edge.agents[0]!.id, edge.agents[2]!.id]);
  });

  it('a bad attestation never reaches the client: failover, reputation drop, cooldown', async () => {
    for (const behaviour of [{ kind: 'bad-signature' as const, afterTokens: 4 }, { kind: 'lie-tokens' as const, afterTokens: 4 }]) {
      const edge = await createTestEdge({ agents: [{ layers: [0, 4], ...fast, behaviour }, { layers: [0, 4], ...slow }] });
      const res = await edge.post('/v1/chat/completions', chat({ stream: true }));
      const { text } = await streamText(res);
      const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hello' }]);
      expect(text).toBe(edge.tokenizer.decode(edge.expectedTokens(11, promptIds, 12)));
      await edge.settle();
      const bad = edge.agents[0]!.id;
      const entry = edge.store.ledger.find((l) => l.kind === 'reputation' && l.agentId === bad);
      expect(entry?.amount).toBeLessThan(0);
      expect(entry?.evidence).toMatchObject({ ticket: expect.anything(), chunk: expect.any(Array) });
      expect((await edge.store.getAgent(bad))!.reputation).toBeLessThan(0.5);
      expect(edge.store.cooldowns.map((c) => c.agentId)).toContain(bad);
    }
  });

  it('a hung agent times out and the stream resumes elsewhere', async () => {
    const edge = await createTestEdge({
      agents: [{ layers: [0, 4], ...fast, behaviour: { kind: 'hang', afterTokens: 2 } }, { layers: [0, 4], ...slow }],
      config: { interTokenTimeoutMs: 100 },
    });
    const res = await edge.post('/v1/chat/completions', chat({ stream: true }));
    const { text } = await streamText(res);
    const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hello' }]);
    expect(text).toBe(edge.tokenizer.decode(edge.expectedTokens(11, promptIds, 12)));
    await edge.settle();
    expect(edge.agents[0]!.cancels).toHaveLength(1);
  });

  it('a chain that goes silent: the failover avoids every hop of it for this request, and cools down only the head it blames', async () => {
    // head -> tail is cheapest, then head2 -> tail, then the whole-model agent.
    const edge = await createTestEdge({
      agents: [
        { layers: [0, 2], ...fast, price: 0.1 },
        { layers: [2, 4], ...fast, price: 0.1, behaviour: { kind: 'hang', afterTokens: 2 } },
        { layers: [0, 2], ...fast, price: 0.2 },
        { layers: [0, 4], ...slow, price: 1 },
      ],
      config: { interTokenTimeoutMs: 150 },
    });
    const [head, tail, , whole] = edge.agents;
    const res = await edge.post('/v1/chat/completions', chat({ stream: true, route: { sort: 'price' } }));
    const { text, chunks } = await streamText(res);
    const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hello' }]);
    expect(text).toBe(edge.tokenizer.decode(edge.expectedTokens(11, promptIds, 12)));
    const final = chunks.find((c) => c.choices[0]?.finish_reason)!;
    // One timeout, not two: head2 -> tail (through the silent tail again) was never tried.
    expect(final.route!.attempts).toBe(2);
    expect(final.route!.hops.map((h) => h.agent_id)).toEqual([whole!.id]);
    await edge.settle();
    expect(edge.store.cooldowns.map((c) => c.agentId)).toEqual([head!.id]);
    const failed = edge.logs.map((l) => JSON.parse(l) as { msg: string; avoidedForThisRequest?: string[] }).find((l) => l.msg === 'route attempt failed');
    expect(failed?.avoidedForThisRequest).toEqual([tail!.id]);
  });

  it('cancels the head agent when the client goes away', async () => {
    const edge = await createTestEdge({ agents: [{ layers: [0, 4], delayMs: 20 }] });
    const res = await edge.post('/v1/chat/completions', chat({ stream: true, max_tokens: 200 }));
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    await new Promise((r) => setTimeout(r, 50));
    await edge.settle();
    expect(edge.agents[0]!.cancels).toHaveLength(1);
    expect(edge.agents[0]!.cancels[0]!.jobId).toBe(edge.agents[0]!.jobs[0]!.signedTicket.ticket.jobId);
  });
});

describe('blame for bad attestations', () => {
  it('a validly signed wrong attestation blames its signer and opens a dispute', async () => {
    const edge = await createTestEdge({
      agents: [
        { layers: [0, 2], ...fast },
        { layers: [2, 4], ...fast, behaviour: { kind: 'bad-commitment', afterTokens: 2 } },
        { layers: [2, 4], ...slow },
      ],
    });
    const res = await edge.post('/v1/chat/completions', chat());
    const body = chatCompletionSchema.parse(await res.json());
    const promptIds = edge.tokenizer.encodeChat([{ role: 'user', content: 'hello' }]);
    expect(body.choices[0]!.message.content).toBe(edge.tokenizer.decode(edge.expectedTokens(11, promptIds, 12)));
    await edge.settle();
    const [head, cheat] = [edge.agents[0]!.id, edge.agents[1]!.id];
    expect(edge.store.disputes.map((d) => d.agentId)).toEqual([cheat]);
    expect((await edge.store.getAgent(cheat))!.reputation).toBeLessThan(0.5);
    expect((await edge.store.getAgent(head))!.reputation).toBe(0.5);
  });

  it('an invalid signature on a downstream hop blames the head that relayed it, without a dispute', async () => {
    const edge = await createTestEdge({
      agents: [
        { layers: [0, 2], ...fast },
        { layers: [2, 4], ...fast, behaviour: { kind: 'bad-signature', afterTokens: 2 } },
        { layers: [0, 4], ...slow },
      ],
    });
    const res = await edge.post('/v1/chat/completions', chat());
    expect(res.status).toBe(200);
    await edge.settle();
    const [head, framed] = [edge.agents[0]!.id, edge.agents[1]!.id];
    expect(edge.store.disputes).toEqual([]);
    expect((await edge.store.getAgent(head))!.reputation).toBeLessThan(0.5);
    expect((await edge.store.getAgent(framed))!.reputation).toBe(0.5);
  });
});
