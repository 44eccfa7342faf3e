/**
 * Chaos: an agent that hangs instead of dying, with real processes. `SIGSTOP` freezes a
 * `pool-agent serve` process: its sockets stay open and the kernel keeps accepting connections,
 * but nothing is answered, so only the edge's own timeouts can tell. The edge (workerd) must
 * give up on it (first-token timeout before the first token, inter-token timeout after), fail
 * over to another route with the tokens already sent as the prefix, and the client must get
 * exactly the answer of an undisturbed run: no token lost, none repeated. After `SIGCONT` the
 * agent finds its old job gone and serves new ones as before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processAlive, procStat } from '../../scripts/processes.js';
import { startNetwork, type NetworkAgent, type TestNetwork } from '../support/network.js';
import { agentRow, until } from '../support/network-jobs.js';
import { chat, clearCooldowns, cooledDown, cooldownOf, jobRecord, readStream } from '../support/chaos.js';

let net: TestNetwork;
let cheap: NetworkAgent;
let dear: NetworkAgent;
/** Pids this suite froze and has not continued yet (continued in afterAll whatever happens). */
const frozen = new Set<number>();

const INTER_TOKEN_TIMEOUT_MS = 3_000;
const FIRST_TOKEN_TIMEOUT_MS = 5_000;
/** Greedy: every route gives the same tokens. */
const GREEDY = { max_tokens: 160, temperature: 0, seed: 5, route: { sort: 'price' } };
let reference: { text: string; tokens: number[] };

beforeAll(async () => {
  net = await startNetwork({
    edgeVars: {
      // No exploration: the cheapest route is always tried first.
      EXPLORATION_SHARE: '0',
      INTER_TOKEN_TIMEOUT_MS: String(INTER_TOKEN_TIMEOUT_MS),
      FIRST_TOKEN_TIMEOUT_MS: String(FIRST_TOKEN_TIMEOUT_MS),
    },
    agents: [
      { name: 'cheap', region: 'eu-west', price: 0.1 },
      { name: 'dear', region: 'eu-west', price: 0.3 },
    ],
  });
  [cheap, dear] = [net.agents[0]!, net.agents[1]!];
  await net.waitForAgents(2);
}, 240_000);

afterAll(async () => {
  for (const pid of frozen) process.kill(pid, 'SIGCONT');
  await net?.close();
});

function freeze(agent: NetworkAgent): void {
  process.kill(agent.pid, 'SIGSTOP');
  frozen.add(agent.pid);
}

function thaw(agent: NetworkAgent): void {
  process.kill(agent.pid, 'SIGCONT');
  frozen.delete(agent.pid);
}

type Answer = { choices: { message: { content: string } }[]; route: { hops: { agent_id: string }[]; attempts: number }; attestation: { job_id: string; verified: boolean } };

const routeOf = (rec: { attempts: { ticket: { ticket: { route: { agentId: string }[] } } }[] }) => rec.attempts.map((a) => a.ticket.ticket.route.map((h) => h.agentId));

describe('an agent that hangs (SIGSTOP)', () => {
  it('serves the reference answer on the cheapest agent', async () => {
    const res = await chat(net, GREEDY);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Answer;
    expect(body.route.hops.map((h) => h.agent_id)).toEqual([cheap.id]);
    reference = { text: body.choices[0]!.message.content, tokens: (await jobRecord(net, body.attestation.job_id)).token_ids };
    expect(reference.tokens.length).toBeGreaterThan(100);
  });

  it('mid-stream: the inter-token timeout fires, the job resumes on another route, no token lost or repeated', async () => {
    const res = await chat(net, { ...GREEDY, stream: true });
    expect(res.status).toBe(200);
    const jobId = res.headers.get('x-layernet-job-id')!;
    expect(res.headers.get('x-layernet-route')).toBe(cheap.id);
    let frozenAt = 0;
    const answer = await readStream(res, (n) => {
      // With chunks of 16 steps / 50 ms, 3 deltas are well inside the 160-token answer.
      if (n === 3) {
        freeze(cheap);
        frozenAt = Date.now();
      }
    });
    expect(frozenAt).toBeGreaterThan(0);
    expect(procStat(cheap.pid)?.state).toBe('T');
    expect(answer.error).toBeUndefined();
    expect(answer.done).toBe(true);
    expect(answer.text).toBe(reference.text);
    expect(answer.finish?.route.hops.map((h) => h.agent_id)).toEqual([dear.id]);
    expect(answer.finish?.attestation.verified).toBe(true);
    const record = await jobRecord(net, jobId);
    expect(record.token_ids).toEqual(reference.tokens);
    expect(routeOf(record)).toEqual([[cheap.id], [dear.id]]);
    expect(record.attempts.map((a) => a.outcome)).toEqual(['failed', 'completed']);
    // The frozen agent is blamed for a timeout and kept out of routing for a while.
    expect(await cooldownOf(net, cheap.id)).toBe('timeout');
  });

  it('while it is still frozen and in cooldown, requests go straight to the other route', async () => {
    const res = await chat(net, GREEDY);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Answer;
    expect(body.route.hops.map((h) => h.agent_id)).toEqual([dear.id]);
    expect(body.route.attempts).toBe(1);
    expect(body.choices[0]!.message.content).toBe(reference.text);
  });

  it('before the first token: the first-token timeout fires and the answer comes from the other route, invisibly', async () => {
    // Routable again while still frozen: the registry still believes in it (its last heartbeat is recent).
    await clearCooldowns(net);
    expect(procStat(cheap.pid)?.state).toBe('T');
    const res = await chat(net, GREEDY);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Answer;
    expect(body.choices[0]!.message.content).toBe(reference.text);
    expect(body.route.hops.map((h) => h.agent_id)).toEqual([dear.id]);
    expect(body.route.attempts).toBe(2);
    const record = await jobRecord(net, body.attestation.job_id);
    expect(record.token_ids).toEqual(reference.tokens);
    expect(routeOf(record)).toEqual([[cheap.id], [dear.id]]);
    expect(await cooldownOf(net, cheap.id)).toBe('timeout');
  });

  it('after SIGCONT the agent drops its stale jobs and serves again: same answers, heartbeats back, nothing duplicated', async () => {
    const continuedAt = Date.now();
    thaw(cheap);
    expect(processAlive(cheap.pid)).toBe(true);
    // Its heartbeats resume (they were due while it was frozen).
    await until('a heartbeat from the continued agent', async () => ((await agentRow(net, cheap.id)).lastHeartbeatAt?.getTime() ?? 0) > continuedAt || null, { timeoutMs: 20_000, net });
    await clearCooldowns(net);
    // Several answers in a row from the agent that was frozen: the work it held is gone.
    for (let i = 0; i < 3; i++) {
      const res = await chat(net, { ...GREEDY, stream: i === 1 });
      expect(res.status).toBe(200);
      const text = i === 1 ? (await readStream(res)).text : ((await res.json()) as Answer).choices[0]!.message.content;
      expect(text).toBe(reference.text);
    }
    const res = await chat(net, GREEDY);
    const body = (await res.json()) as Answer;
    expect(body.route.hops.map((h) => h.agent_id)).toEqual([cheap.id]);
    expect(body.route.attempts).toBe(1);
    expect(processAlive(cheap.pid) && processAlive(dear.pid)).toBe(true);
    expect(cheap.logs.join('\n')).not.toMatch(/uncaught|unhandled/i);
  });
});

describe('a hop of a chain that hangs (SIGSTOP)', () => {
  let head: NetworkAgent;
  let head2: NetworkAgent;
  let tail: NetworkAgent;
  /** Agents in cooldown right after the stream whose last hop froze, with the reason. */
  let blamed: Map<string, string | null> | undefined;

  beforeAll(async () => {
    // Cheaper than any whole-model agent: head -> tail, then head2 -> tail, are tried first.
    head = await net.addAgent({ name: 'head', region: 'eu-west', price: 0.01, layers: [0, 2] });
    head2 = await net.addAgent({ name: 'head2', region: 'eu-west', price: 0.02, layers: [0, 2] });
    tail = await net.addAgent({ name: 'tail', region: 'eu-west', price: 0.01, layers: [2, 4] });
    await net.waitForAgents(5);
    await clearCooldowns(net);
  }, 120_000);

  it('the last hop freezes mid-stream: the client still gets the undisturbed answer, from a route without it', async () => {
    const res = await chat(net, { ...GREEDY, stream: true });
    expect(res.status).toBe(200);
    const jobId = res.headers.get('x-layernet-job-id')!;
    expect(res.headers.get('x-layernet-route')).toBe(`${head.id},${tail.id}`);
    const answer = await readStream(res, (n) => {
      if (n === 3) freeze(tail);
    });
    blamed = await cooledDown(net);
    expect(answer.error).toBeUndefined();
    expect(answer.done).toBe(true);
    expect(answer.text).toBe(reference.text);
    expect(answer.finish?.route.hops.map((h) => h.agent_id)).not.toContain(tail.id);
    const record = await jobRecord(net, jobId);
    expect(record.token_ids).toEqual(reference.tokens);
    expect(routeOf(record)[0]).toEqual([head.id, tail.id]);
    expect(record.attempts.at(-1)!.outcome).toBe('completed');
    expect(record.attempts.slice(0, -1).every((a) => a.outcome === 'failed')).toBe(true);
  });

  // Known gap (see the chaos report): the edge's inter-token timeout (15 s by default) fires
  // before the head's own hop timeout (30 s) can name the silent hop, and the edge blames the
  // route's head for a silent stream. So the honest head is cooled down, the frozen tail is not,
  // and the failover tries head2 -> tail next (another full timeout) before a whole-model agent.
  it.fails('blames the frozen hop, not the honest head in front of it', () => {
    expect(blamed).toBeDefined();
    expect(blamed!.get(tail.id)).toBe('timeout');
    expect(blamed!.has(head.id)).toBe(false);
    expect(blamed!.has(head2.id)).toBe(false);
  });

  it('after SIGCONT the chain serves again', async () => {
    thaw(tail);
    await clearCooldowns(net);
    const res = await chat(net, GREEDY);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Answer;
    expect(body.route.hops.map((h) => h.agent_id)).toEqual([head.id, tail.id]);
    expect(body.choices[0]!.message.content).toBe(reference.text);
    expect(tail.logs.join('\n')).not.toMatch(/uncaught|unhandled/i);
  });
});
