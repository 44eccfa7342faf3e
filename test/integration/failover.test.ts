/**
 * Failover through the real edge (workerd) with real agents: an agent that is dead before the
 * first token is replaced invisibly; an agent killed mid-stream is resumed on another route by
 * replaying prompt + tokens already sent with the same seed, and the client's stream equals an
 * uninterrupted run token for token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSse } from '../../protocol/sse.js';
import { startNetwork, type TestNetwork } from '../support/network.js';

let net: TestNetwork;

beforeAll(async () => {
  net = await startNetwork({
    // No exploration: these tests need to know which route the edge tries first.
    edgeVars: { EXPLORATION_SHARE: '0' },
    agents: [
      { name: 'cheap', region: 'eu-west', price: 0.1 },
      { name: 'mid', region: 'eu-west', price: 0.2 },
      { name: 'dear', region: 'eu-west', price: 0.3 },
    ],
  });
  await net.waitForAgents(3);
}, 240_000);

afterAll(async () => {
  await net?.close();
});

const params = {
  messages: [{ role: 'user', content: 'Tell me a long story about layers' }],
  max_tokens: 160,
  seed: 424242,
  temperature: 0.9,
  route: { sort: 'price' },
};

function post(body: unknown): Promise<Response> {
  return fetch(`${net.edgeUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: net.modelName, ...params, ...(body as object) }),
  });
}

async function jobTokens(jobId: string): Promise<{ token_ids: number[]; attempts: { outcome?: string }[] }> {
  // The job record is written after the response (waitUntil): poll briefly.
  for (let i = 0; i < 50; i++) {
    const res = await fetch(`${net.edgeUrl}/v1/jobs/${jobId}/attestation`, { headers: { authorization: `Bearer ${net.apiKey}` } });
    if (res.status === 200) {
      const body = (await res.json()) as { token_ids: number[]; attempts: { outcome?: string }[] };
      if (body.token_ids.length > 0) return body;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no attestation record for job ${jobId}`);
}

describe('failover', () => {
  let reference: { text: string; tokens: number[] };

  it('serves the reference run on the cheapest agent', async () => {
    const res = await post({});
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[]; route: { hops: { agent_id: string }[] }; attestation: { job_id: string } };
    expect(body.route.hops.map((h) => h.agent_id)).toEqual([net.agents[0]!.id]);
    reference = { text: body.choices[0]!.message.content, tokens: (await jobTokens(body.attestation.job_id)).token_ids };
    expect(reference.tokens.length).toBeGreaterThan(100);
  });

  it('resumes a stream on another route when its agent dies mid-stream, with no token lost or repeated', async () => {
    const res = await post({ stream: true });
    expect(res.status).toBe(200);
    const jobId = res.headers.get('x-layernet-job-id')!;
    expect(res.headers.get('x-layernet-route')).toContain(net.agents[0]!.id);
    let text = '';
    let chunks = 0;
    let killed = false;
    for await (const ev of parseSse(res.body!)) {
      if (ev.data === '[DONE]') break;
      const data = JSON.parse(ev.data) as { error?: unknown; choices?: { delta?: { content?: string } }[] };
      expect(data.error).toBeUndefined();
      const delta = data.choices?.[0]?.delta?.content ?? '';
      if (delta) chunks++;
      text += delta;
      // With the default attestation chunks (16 steps or 50 ms), 4 deltas are well inside the
      // 160-token answer, and the chunk the agent had open when it died is never delivered.
      if (chunks === 4 && !killed) {
        killed = true;
        await net.agents[0]!.kill();
      }
    }
    expect(killed).toBe(true);
    expect(text).toBe(reference.text);
    const record = await jobTokens(jobId);
    expect(record.token_ids).toEqual(reference.tokens);
    expect(record.attempts.length).toBeGreaterThanOrEqual(2);
  });

  it('replaces a dead route before the first token, invisibly', async () => {
    // An agent that registered and sent heartbeats, then died without a goodbye: the registry
    // still believes in it, so the edge must discover the failure itself.
    const ghost = await net.addAgent({ name: 'ghost', region: 'eu-west', price: 0.01 });
    await net.waitForAgents(4);
    await ghost.kill();
    const res = await post({});
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[]; route: { hops: { agent_id: string }[]; attempts: number }; attestation: { job_id: string; verified: boolean } };
    expect(body.attestation.verified).toBe(true);
    expect(body.route.hops.map((h) => h.agent_id)).not.toContain(ghost.id);
    expect(body.choices[0]!.message.content).toBe(reference.text);
    expect((await jobTokens(body.attestation.job_id)).token_ids).toEqual(reference.tokens);
  });
});
