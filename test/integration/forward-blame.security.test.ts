/**
 * A hop that forwards bad bytes is blamed, not the honest successor that refuses them, on a real
 * network (edge in workerd, registry, `pool-agent serve` processes over links). The cheater is the
 * head [0, 2) of the cheapest route: a `pool-agent serve` process whose stage to the next hop is
 * swapped (./forward-cheat: a module hook, no hook in the agent itself) for one that sends
 * activations scaled by 2% from step 2 on while the agent attests what its span computed. The
 * stage signs the bytes it sends, as every agent does (`senderSig`), so the honest tail [2, 4)
 * refuses the chunk [1, 3) when its seal frame arrives, with evidence of hop 0's two contradicting
 * signatures; the edge checks it, fails over, and blames hop 0 (cooldown, reputation, dispute),
 * not the tail. The man-in-the-middle case, where nobody can be blamed, is attacks.security.test.ts §3.
 */
import OpenAI from 'openai';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobAttestation } from '../../protocol/api.js';
import { startNetwork, type TestNetwork } from '../support/network.js';
import { FORWARD_CHEAT_ENV } from './forward-cheat/remote-stage.js';

const PRELOAD = pathToFileURL(resolve(import.meta.dirname, 'forward-cheat/preload.mjs')).href;
const PROMPT = 'Tell me a short story about a lighthouse';
const MAX_TOKENS = 6;
const SEED = 6;

let net: TestNetwork;
let client: OpenAI;
/** Honest whole-model agent: the fallback route. */
let honestId: string;
/** Head [0, 2) that sends other bytes than it attests from step 2 on. */
let cheatId: string;
/** Honest tail [2, 4): it refuses the bad bytes. */
let tailId: string;

type Answer = OpenAI.Chat.Completions.ChatCompletion & {
  route: { hops: { agent_id: string }[]; attempts: number };
  attestation: { verified: boolean; job_id: string };
};

beforeAll(async () => {
  net = await startNetwork({
    // Two steps per chunk: the prefill [0, 1) passes, the chunk [1, 3) is refused when sealed.
    edgeVars: { ATTEST_CHUNK_STEPS: '2' },
    agents: [
      { name: 'honest', region: 'eu-west', price: 0.4 },
      {
        name: 'cheat-head',
        region: 'eu-west',
        price: 0.01,
        layers: [0, 2],
        env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${PRELOAD}`.trim(), [FORWARD_CHEAT_ENV]: JSON.stringify({ fromStep: 2, scale: 0.02 }) },
      },
      { name: 'tail', region: 'eu-west', price: 0.01, layers: [2, 4] },
    ],
  });
  [honestId, cheatId, tailId] = net.agents.map((a) => a.id) as [string, string, string];
  await net.waitForAgents(3, 60_000);
  client = new OpenAI({ baseURL: `${net.edgeUrl}/v1`, apiKey: net.apiKey, maxRetries: 0 });
}, 300_000);

afterAll(async () => {
  await net?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Makes only `ids` routable (as attacks.security.test.ts does) and waits out the edge's candidate cache. */
async function only(...ids: string[]): Promise<void> {
  await net.registry.sql`update disputes set status = 'rejected', resolved_at = now() where status = 'open'`;
  await net.registry.sql`delete from route_blocks`;
  await net.registry.sql`update agents set reputation = 0.5, probation = false,
    cooldown_until = case when id::text = any(string_to_array(${ids.join(',')}, ',')) then null else now() + interval '1 hour' end`;
  await sleep(1_000);
}

async function ask(): Promise<Answer> {
  return (await client.chat.completions.create({
    model: net.modelName,
    messages: [{ role: 'user', content: PROMPT }],
    max_tokens: MAX_TOKENS,
    seed: SEED,
    temperature: 0,
    // @ts-expect-error the route extension is not in the openai types
    route: { sort: 'price' },
  })) as unknown as Answer;
}

async function jobChain(jobId: string): Promise<JobAttestation> {
  const res = await fetch(`${net.edgeUrl}/v1/jobs/${jobId}/attestation`, { headers: { authorization: `Bearer ${net.apiKey}` } });
  if (res.status !== 200) throw new Error(`GET attestation of ${jobId}: ${res.status} ${await res.text()}`);
  return (await res.json()) as JobAttestation;
}

async function eventually<T>(read: () => Promise<T | undefined | null>, what: string): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const v = await read();
    if (v !== undefined && v !== null) return v;
    await sleep(100);
  }
  throw new Error(`never saw ${what}\nedge: ${net.edgeLogs.slice(-15).join('\n')}`);
}

async function agentRow(id: string) {
  const [row] = await net.registry.sql<{ reputation: number; cooldown_until: Date | string | null }[]>`select reputation, cooldown_until from agents where id = ${id}`;
  return row!;
}

const ledgerRows = (agentId: string, jobId: string) =>
  net.registry.sql<{ reason: string; reputation_delta: number; evidence: { reason?: string; provable?: boolean; fault?: string; hop?: number; reportedBy?: string } }[]>`
    select reason, reputation_delta, evidence from ledger_entries where agent_id = ${agentId} and evidence->>'jobId' = ${jobId}`;
const disputesFor = (agentId: string, jobId: string) => net.registry.sql<{ reason: string; status: string }[]>`select reason, status from disputes where agent_id = ${agentId} and job_id = ${jobId}`;
const failedObservations = async (agentId: string) => (await net.registry.sql<{ n: number }[]>`select count(*)::int as n from observations where agent_id = ${agentId} and not ok`)[0]!.n;

describe('a head that sends other activations than it attested', () => {
  it('the tail refuses them with evidence; the edge blames the head (cooldown, reputation, dispute), not the tail, and the client gets the honest answer', async () => {
    // The honest answer: only the whole-model agent routable.
    await only(honestId);
    const honest = await ask();
    expect(honest.route.hops.map((h) => h.agent_id)).toEqual([honestId]);
    const honestTokens = (await jobChain(honest.attestation.job_id)).token_ids;
    // The cheater's tokens from step 2 on are what the attack is about.
    expect(honestTokens.length).toBeGreaterThanOrEqual(3);

    let res: Answer | undefined;
    let chain: JobAttestation | undefined;
    const tailFailuresBefore = await failedObservations(tailId);
    for (let i = 0; i < 5 && !chain?.attempts[0]?.ticket.ticket.route.some((h) => h.agentId === cheatId); i++) {
      // An exploration pick may take another route first.
      await only(honestId, cheatId, tailId);
      res = await ask();
      chain = await jobChain(res.attestation.job_id);
    }
    expect(chain!.attempts[0]!.ticket.ticket.route.map((h) => h.agentId)).toEqual([cheatId, tailId]);
    const jobId = res!.attestation.job_id;

    // The client got the honest answer, by failover after the verified prefill chunk.
    expect(res!.attestation.verified).toBe(true);
    expect(res!.choices[0]!.message.content).toBe(honest.choices[0]!.message.content);
    expect(chain!.token_ids).toEqual(honestTokens);
    expect(chain!.attempts[0]!.outcome).toBe('failed');
    expect(chain!.attempts[0]!.chunks.map((c) => c[0]!.att.steps)).toEqual([[0, 1]]);
    expect(chain!.attempts.at(-1)!.outcome).toBe('completed');
    expect(res!.route.hops.map((h) => h.agent_id)).not.toContain(cheatId);

    // The head is blamed as for a signed wrong attestation: reputation, cooldown, dispute.
    const [entry] = await eventually(async () => {
      const rows = await ledgerRows(cheatId, jobId);
      return rows.length ? rows : undefined;
    }, `a ledger entry for ${cheatId}`);
    expect(entry!.reason).toBe('bad_attestation');
    expect(entry!.evidence).toMatchObject({ reason: 'bad_forward', provable: true, fault: 'hash_mismatch', hop: 0, reportedBy: tailId });
    const cheat = await eventually(async () => {
      const r = await agentRow(cheatId);
      return r.cooldown_until ? r : undefined;
    }, `a cooldown for ${cheatId}`);
    expect(cheat.reputation).toBeCloseTo(0.3, 6);
    expect(new Date(cheat.cooldown_until!).getTime()).toBeGreaterThan(Date.now());
    const disputes = await eventually(async () => {
      const d = await disputesFor(cheatId, jobId);
      return d.length ? d : undefined;
    }, `a dispute against ${cheatId}`);
    expect(disputes).toEqual([{ reason: 'bad_attestation', status: 'open' }]);
    const logged = net.edgeLogs.filter((l) => l.includes('route attempt failed') && l.includes(jobId));
    expect(logged.some((l) => l.includes('bad_forward') && l.includes(cheatId) && !l.includes(tailId))).toBe(true);

    // The tail that refused is not blamed at all: no cooldown, no reputation loss, no failure, no dispute.
    const tail = await agentRow(tailId);
    expect(tail.reputation).toBe(0.5);
    expect(tail.cooldown_until).toBeNull();
    expect(await disputesFor(tailId, jobId)).toEqual([]);
    expect(await ledgerRows(tailId, jobId)).toEqual([]);
    expect(await failedObservations(tailId)).toBe(tailFailuresBefore);
    // It refused the bytes and said whose they were.
    const tailLogs = net.agents.find((a) => a.id === tailId)!.logs;
    expect(tailLogs.some((l) => l.includes('forward refused') && l.includes('"provable":true'))).toBe(true);
  });
});
