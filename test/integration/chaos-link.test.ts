/**
 * Chaos: slow and lossy links between hops, with real processes. A two-hop chain (head [0, 2),
 * tail [2, 4)) whose endpoints are TCP proxies (test/support/chaos-proxy.ts): the edge reaches
 * the head through one, the head reaches the tail (its link, an upgraded connection) through the
 * other. A whole-model agent is the fallback route. Everything runs in real processes: the edge in
 * workerd, the agents as `pool-agent serve`.
 *
 * - A slow link (every chunk held 100 ms each way) still gives the undisturbed answer, and the
 *   latency shows where routing reads it: the route's published figures (`/v1/pools`) grow, and
 *   latency-sorted requests then prefer the fast agent while price-sorted ones keep the chain.
 * - A link that drops mid-job (connections reset) makes the edge fail over to another route
 *   with the tokens already sent as the prefix: the client gets exactly the undisturbed answer,
 *   streamed or not, with no token repeated.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PoolList } from '../../protocol/api.js';
import { startNetwork, type NetworkAgent, type TestNetwork } from '../support/network.js';
import { startChaosProxy, type ChaosProxy } from '../support/chaos-proxy.js';
import { chat, clearCooldowns, cooledDown, cooldownOf, jobRecord, onlyRoutable, readStream } from '../support/chaos.js';

let net: TestNetwork;
let head: NetworkAgent;
let tail: NetworkAgent;
let whole: NetworkAgent;
/** edge -> head */
let headLink: ChaosProxy;
/** head -> tail */
let tailLink: ChaosProxy;

const LONG = { max_tokens: 160, temperature: 0, seed: 9, route: { sort: 'price' } };
/** Short answers for the slow link: each decode step crosses it twice. */
const SHORT = { ...LONG, max_tokens: 12 };
const DELAY_MS = 100;

let reference: { text: string; tokens: number[] };
let shortReference: { text: string; tokens: number[] };

/** An agent spec whose registered endpoint is a chaos proxy in front of the port it serves on. */
function behind(set: (p: ChaosProxy) => void) {
  return async (port: number) => {
    const proxy = await startChaosProxy(port);
    set(proxy);
    return proxy.url;
  };
}

beforeAll(async () => {
  net = await startNetwork({
    edgeVars: { EXPLORATION_SHARE: '0' },
    agents: [
      { name: 'head', region: 'eu-west', price: 0.01, layers: [0, 2], endpointFor: behind((p) => (headLink = p)) },
      { name: 'tail', region: 'eu-west', price: 0.01, layers: [2, 4], endpointFor: behind((p) => (tailLink = p)) },
      { name: 'whole', region: 'eu-west', price: 0.3 },
    ],
  });
  [head, tail, whole] = [net.agents[0]!, net.agents[1]!, net.agents[2]!];
  await net.waitForAgents(3);
}, 240_000);

afterAll(async () => {
  await net?.close();
  await Promise.all([headLink?.close(), tailLink?.close()]);
});

type Answer = { choices: { message: { content: string } }[]; route: { hops: { agent_id: string }[]; attempts: number }; attestation: { job_id: string; verified: boolean } };

async function answer(body: Record<string, unknown>): Promise<Answer> {
  const res = await chat(net, body);
  const text = await res.text();
  expect(res.status, `${text}\nedge: ${net.edgeLogs.slice(-15).join('\n')}`).toBe(200);
  return JSON.parse(text) as Answer;
}

const hopsOf = (a: { route: { hops: { agent_id: string }[] } }) => a.route.hops.map((h) => h.agent_id);

/** The chain's hops' published figures (GET /v1/pools: what routing reads, as the public sees it). */
async function chainFigures(): Promise<{ ttft: number; perToken: number }> {
  const res = await fetch(`${net.edgeUrl}/v1/pools`);
  const pools = (await res.json()) as PoolList;
  const agents = pools.data.flatMap((p) => p.agents).filter((a) => a.id === head.id || a.id === tail.id);
  expect(agents).toHaveLength(2);
  return {
    ttft: agents.reduce((s, a) => s + (a.ttft_ms ?? 0), 0),
    perToken: agents.reduce((s, a) => s + (a.per_token_ms ?? 0), 0),
  };
}

describe('links between hops', () => {
  it('serves the reference answers on the chain, through both proxies', async () => {
    const long = await answer(LONG);
    expect(hopsOf(long)).toEqual([head.id, tail.id]);
    reference = { text: long.choices[0]!.message.content, tokens: (await jobRecord(net, long.attestation.job_id)).token_ids };
    expect(reference.tokens.length).toBeGreaterThan(100);
    const short = await answer(SHORT);
    expect(hopsOf(short)).toEqual([head.id, tail.id]);
    shortReference = { text: short.choices[0]!.message.content, tokens: (await jobRecord(net, short.attestation.job_id)).token_ids };
    // Both links really carry the traffic.
    expect(headLink.connections).toBeGreaterThan(0);
    expect(tailLink.connections).toBeGreaterThan(0);
    // The whole-model agent gives the same tokens (so a failover to it can be compared token for token).
    await onlyRoutable(net, [whole.id]);
    try {
      const fallback = await answer(LONG);
      expect(hopsOf(fallback)).toEqual([whole.id]);
      expect(fallback.choices[0]!.message.content).toBe(reference.text);
    } finally {
      await clearCooldowns(net);
    }
  });

  it('a slow link still gives the undisturbed answer, and its latency shows in the routing figures', async () => {
    const before = await chainFigures();
    headLink.delayMs = DELAY_MS;
    tailLink.delayMs = DELAY_MS;
    try {
      for (let i = 0; i < 2; i++) {
        const slow = await answer(SHORT);
        expect(hopsOf(slow)).toEqual([head.id, tail.id]);
        expect(slow.route.attempts).toBe(1);
        expect(slow.choices[0]!.message.content).toBe(shortReference.text);
        expect((await jobRecord(net, slow.attestation.job_id)).token_ids).toEqual(shortReference.tokens);
      }
      // Observations are written after the answer (waitUntil): wait until they are in.
      let after = before;
      for (let i = 0; i < 40 && !(after.perToken > before.perToken && after.ttft > before.ttft); i++) {
        await new Promise((r) => setTimeout(r, 250));
        after = await chainFigures();
      }
      expect(after.ttft).toBeGreaterThan(before.ttft);
      expect(after.perToken).toBeGreaterThan(before.perToken);
      // Routing reads those figures: by latency the fast whole-model agent now wins; by price the chain still does.
      expect(hopsOf(await answer({ ...SHORT, route: { sort: 'latency' } }))).toEqual([whole.id]);
      const byPrice = await answer(SHORT);
      expect(hopsOf(byPrice)).toEqual([head.id, tail.id]);
      expect(byPrice.choices[0]!.message.content).toBe(shortReference.text);
    } finally {
      headLink.delayMs = 0;
      tailLink.delayMs = 0;
    }
  });

  it('the link between the hops drops mid-stream: failover, and the client gets the undisturbed answer', async () => {
    await clearCooldowns(net);
    const cutsBefore = tailLink.cuts;
    const res = await chat(net, { ...LONG, stream: true });
    expect(res.status).toBe(200);
    const jobId = res.headers.get('x-layernet-job-id')!;
    expect(res.headers.get('x-layernet-route')).toBe(`${head.id},${tail.id}`);
    const streamed = await readStream(res, (n) => {
      if (n === 3) expect(tailLink.cut()).toBeGreaterThan(0);
    });
    expect(tailLink.cuts).toBeGreaterThan(cutsBefore);
    expect(streamed.error).toBeUndefined();
    expect(streamed.done).toBe(true);
    expect(streamed.text).toBe(reference.text);
    expect(streamed.finish?.route.attempts).toBeGreaterThanOrEqual(2);
    const record = await jobRecord(net, jobId);
    expect(record.token_ids).toEqual(reference.tokens);
    expect(record.attempts[0]!.outcome).toBe('failed');
    expect(record.attempts.at(-1)!.outcome).toBe('completed');
    // The head lost its link to the tail and said so, naming the next hop (a lost link cannot tell
    // the hop from the network: the next hop is named, as for a hop that does not answer).
    expect(await cooldownOf(net, tail.id)).toBe('agent_error');
    const blamed = await cooledDown(net);
    expect(blamed.has(head.id)).toBe(false);
    expect(blamed.has(whole.id)).toBe(false);
  });

  it('the edge-to-head link drops mid-answer (not streamed): the client sees only a complete 200', async () => {
    await clearCooldowns(net);
    const dropped = headLink.cutAfter('"type":"chunk"');
    const body = await answer(LONG);
    await dropped;
    expect(body.choices[0]!.message.content).toBe(reference.text);
    expect(body.route.attempts).toBeGreaterThanOrEqual(2);
    expect(hopsOf(body)).toEqual([whole.id]);
    const record = await jobRecord(net, body.attestation.job_id);
    expect(record.token_ids).toEqual(reference.tokens);
    expect(record.attempts.map((a) => a.outcome)).toEqual(['failed', 'completed']);
    // The edge lost the head's stream: the head is blamed.
    expect(await cooldownOf(net, head.id)).toBe('stream');
  });

  it('a link that stays down: requests are served by the other route until it is back, then the chain serves again', async () => {
    await clearCooldowns(net);
    // Down: what is open drops (the head keeps an idle link to the tail for its next job), nothing new connects.
    tailLink.refuse = true;
    tailLink.cut();
    try {
      const body = await answer(LONG);
      expect(body.choices[0]!.message.content).toBe(reference.text);
      expect(hopsOf(body)).toEqual([whole.id]);
      // The head could not reach the tail: it names the tail, which the edge keeps out of routing for a while.
      expect(await cooldownOf(net, tail.id)).toBe('agent_error');
      expect((await cooledDown(net)).has(head.id)).toBe(false);
    } finally {
      tailLink.refuse = false;
    }
    await clearCooldowns(net);
    const back = await answer(LONG);
    expect(hopsOf(back)).toEqual([head.id, tail.id]);
    expect(back.route.attempts).toBe(1);
    expect(back.choices[0]!.message.content).toBe(reference.text);
  });
});
