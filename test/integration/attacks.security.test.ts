/**
 * The attack suite: a real network (edge in workerd, registry, `pool-agent serve` processes) with
 * misbehaving agents among honest ones. A misbehaving agent is an honest agent behind an evil
 * proxy registered as its endpoint (test/support/evil-proxy.ts), or an in-process agent running
 * other weights under the registered model id. Each attack shows: it is detected (inline by the
 * edge's chain verification, or by the re-execution check), the client never gets the bad
 * tokens (failover to an honest route gives the same answer as an honest route alone), the
 * registry records the evidence, and the network keeps serving.
 */
import OpenAI from 'openai';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobAttestation } from '../../protocol/api.js';
import { decodeFrame, encodeFrame, framePayloadAs } from '../../protocol/frame.js';
import { generateSigningKey, signBytes } from '../../protocol/keys.js';
import { heartbeatBytes, type Heartbeat } from '../../protocol/owner-api.js';
import { buildModel } from '../../pool-agent/model/build.js';
import { loadIdentity } from '../../pool-agent/identity.js';
import { runCheck } from '../../pool-agent/verify/checker.js';
import { startNetwork, type TestNetwork } from '../support/network.js';
import { addProxiedAgent, impostorSpan, resigningTamper, type ProxiedAgent, type Tamper, type WireChunk, type WireEvent } from '../support/evil-proxy.js';
import { TEST_MODEL_DIR } from '../support/model.js';

const SEED7_DIR = resolve(import.meta.dirname, '../../.models/tiny-seed7');
const PROMPT = 'Tell me a short story about a lighthouse';
const MAX_TOKENS = 6;

let net: TestNetwork;
let client: OpenAI;
let seed7Id: string;
/** Honest whole-model agent: the fallback route. */
let honestId: string;
/** Honest head of the two-hop chain [0, 2). */
let headId: string;
let evil: ProxiedAgent;
let tail: ProxiedAgent;
/** A head [0, 2) behind a proxy: it relays the tail's attestations to the edge. */
let evilHead: ProxiedAgent;
let wrongWeights: ProxiedAgent;
let impostor: ProxiedAgent;

type Answer = OpenAI.Chat.Completions.ChatCompletion & {
  route: { hops: { agent_id: string }[]; attempts: number };
  attestation: { verified: boolean; job_id: string; chunks: number };
};

beforeAll(async () => {
  await mkdir(SEED7_DIR, { recursive: true });
  seed7Id = (await buildModel({ preset: 'tiny', seed: 7, outDir: SEED7_DIR })).modelId;
  net = await startNetwork({
    // Two steps per attestation chunk: a 6-token answer is then 4 chunks ([0,1) [1,3) [3,5)
    // [5,6)), so attacks can hit a chunk mid-stream, and multi-step chunks are what is attacked.
    edgeVars: { ATTEST_CHUNK_STEPS: '2' },
    agents: [
      { name: 'honest', region: 'eu-west', price: 0.4 },
      { name: 'head', region: 'eu-west', price: 0.01, layers: [0, 2] },
    ],
  });
  honestId = net.agents[0]!.id;
  headId = net.agents[1]!.id;
  evil = await addProxiedAgent(net, { name: 'evil', region: 'eu-west', price: 0.05 });
  tail = await addProxiedAgent(net, { name: 'tail', region: 'eu-west', price: 0.01, layers: [2, 4] });
  evilHead = await addProxiedAgent(net, { name: 'evil-head', region: 'eu-west', price: 0.01, layers: [0, 2] });
  wrongWeights = await addProxiedAgent(net, { name: 'wrong-weights', region: 'eu-west', price: 0.05, serveModelDir: SEED7_DIR });
  impostor = await addProxiedAgent(net, {
    name: 'impostor',
    region: 'eu-west',
    price: 0.05,
    inProcessSpan: ({ layers }) => impostorSpan(SEED7_DIR, TEST_MODEL_DIR, layers),
  });
  await net.waitForAgents(7, 60_000);
  client = new OpenAI({ baseURL: `${net.edgeUrl}/v1`, apiKey: net.apiKey, maxRetries: 0 });
}, 300_000);

afterAll(async () => {
  await net?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Makes only `ids` routable (the others get a far cooldown in the registry) and resets every
 * agent's reputation, probation, open disputes and route blocks (an accused agent is out of
 * routing while its dispute is open), so each attack starts from the same state. Waits out the
 * edge's candidate cache (300 ms in tests).
 */
async function only(...ids: string[]): Promise<void> {
  await net.registry.sql`update disputes set status = 'rejected', resolved_at = now() where status = 'open'`;
  await net.registry.sql`delete from route_blocks`;
  await net.registry.sql`update agents set reputation = 0.5, probation = false,
    cooldown_until = case when id::text = any(string_to_array(${ids.join(',')}, ',')) then null else now() + interval '1 hour' end`;
  await sleep(1_000);
}

async function ask(seed: number, maxTokens = MAX_TOKENS): Promise<Answer> {
  return (await client.chat.completions.create({
    model: net.modelName,
    messages: [{ role: 'user', content: PROMPT }],
    max_tokens: maxTokens,
    seed,
    temperature: 0,
    // @ts-expect-error the route extension is not in the openai types
    route: { sort: 'price' },
  })) as unknown as Answer;
}

async function jobChain(jobId: string): Promise<JobAttestation> {
  const res = await fetch(`${net.edgeUrl}/v1/jobs/${jobId}/attestation`, { headers: { authorization: `Bearer ${net.apiKey}` } });
  if (res.status !== 200) throw new Error(`GET attestation of ${jobId}: ${res.status} ${await res.text()}\nedge: ${net.edgeLogs.slice(-15).join('\n')}`);
  return (await res.json()) as JobAttestation;
}

/** The honest answer for `seed`: only the honest whole-model agent routable. */
const baselines = new Map<number, { content: string; tokenIds: number[] }>();
async function honestAnswer(seed: number): Promise<{ content: string; tokenIds: number[] }> {
  const known = baselines.get(seed);
  if (known) return known;
  await only(honestId);
  const res = await ask(seed);
  expect(res.attestation.verified).toBe(true);
  expect(res.route.hops.map((h) => h.agent_id)).toEqual([honestId]);
  const chain = await jobChain(res.attestation.job_id);
  expect(chain.token_ids.length).toBeGreaterThanOrEqual(3);
  const answer = { content: res.choices[0]!.message.content ?? '', tokenIds: chain.token_ids };
  baselines.set(seed, answer);
  return answer;
}

/**
 * Runs the request with `tamper` on `target` while only `routable` agents are routable, until the
 * edge has actually sent a job through the tamperer (an exploration pick may go elsewhere first).
 */
async function underAttack<T = Answer>(target: ProxiedAgent, tamper: Tamper, routable: string[], seed: number, run: () => Promise<T> = () => ask(seed) as Promise<T>): Promise<T> {
  await honestAnswer(seed);
  await only(...routable);
  const before = target.proxy.tampered;
  target.proxy.tamper = tamper;
  try {
    for (let i = 0; i < 5; i++) {
      const res = await run();
      if (target.proxy.tampered > before) return res;
      await only(...routable);
    }
  } finally {
    target.proxy.tamper = {};
  }
  throw new Error(`the edge never routed through ${target.name}`);
}

async function agentRow(id: string): Promise<{ reputation: number; cooldown_until: Date | string | null; heartbeat_seq: number; queue_depth: number; load: number; last_heartbeat_at: Date | null }> {
  const [row] = await net.registry.sql<{ reputation: number; cooldown_until: Date | string | null; heartbeat_seq: string; queue_depth: number; load: number; last_heartbeat_at: Date | null }[]>`
    select reputation, cooldown_until, heartbeat_seq, queue_depth, load, last_heartbeat_at from agents where id = ${id}`;
  return { ...row!, heartbeat_seq: Number(row!.heartbeat_seq) };
}

/** Polls until `read` returns something (the edge writes evidence through waitUntil). */
async function eventually<T>(read: () => Promise<T | undefined | null>, what: string): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const v = await read();
    if (v !== undefined && v !== null) return v;
    await sleep(100);
  }
  throw new Error(`never saw ${what}\nedge: ${net.edgeLogs.slice(-10).join('\n')}`);
}

async function ledgerFor(agentId: string, jobId: string) {
  return eventually(async () => {
    const rows = await net.registry.sql<{ reason: string; reputation_delta: number; evidence: { jobId: string; reason?: string; provable?: boolean } }[]>`
      select reason, reputation_delta, evidence from ledger_entries where agent_id = ${agentId} and evidence->>'jobId' = ${jobId}`;
    return rows[0];
  }, `a ledger entry for ${agentId} on job ${jobId}`);
}

async function ledgerRows(agentId: string, jobId: string) {
  return net.registry.sql<{ reason: string }[]>`select reason from ledger_entries where agent_id = ${agentId} and evidence->>'jobId' = ${jobId}`;
}

async function failedObservations(agentId: string): Promise<number> {
  const [row] = await net.registry.sql<{ n: number }[]>`select count(*)::int as n from observations where agent_id = ${agentId} and not ok`;
  return row!.n;
}

async function disputesFor(agentId: string, jobId: string) {
  return net.registry.sql<{ reason: string; status: string }[]>`select reason, status from disputes where agent_id = ${agentId} and job_id = ${jobId}`;
}

/**
 * The common verdict of an attack caught inline: the answer equals the honest one, the first
 * attempt (the tamperer's route) failed, the blamed agent lost reputation and sits in cooldown,
 * a dispute is opened only for signed (provable) evidence, and the network keeps serving.
 */
async function expectCaught(res: Answer, seed: number, blamed: string, reason: string | null, provable = false): Promise<void> {
  const honest = await honestAnswer(seed);
  expect(res.attestation.verified).toBe(true);
  expect(res.choices[0]!.message.content).toBe(honest.content);
  const chain = await jobChain(res.attestation.job_id);
  expect(chain.token_ids).toEqual(honest.tokenIds);
  expect(chain.attempts.length).toBeGreaterThanOrEqual(2);
  expect(chain.attempts[0]!.outcome).toBe('failed');
  expect(chain.attempts[0]!.ticket.ticket.route.map((h) => h.agentId)).toContain(blamed);
  expect(chain.attempts.at(-1)!.outcome).toBe('completed');
  expect(res.route.hops.map((h) => h.agent_id)).not.toContain(blamed);

  if (reason !== null) {
    const entry = await ledgerFor(blamed, res.attestation.job_id);
    expect(entry.reason).toBe('bad_attestation');
    expect(entry.evidence.reason).toBe(reason);
    expect(entry.evidence.provable).toBe(provable);
  }
  // The cooldown is written with the reputation change (one waitUntil batch).
  const row = await eventually(async () => {
    const r = await agentRow(blamed);
    return r.cooldown_until ? r : undefined;
  }, `a cooldown for ${blamed}`);
  expect(row.reputation).toBeCloseTo(reason === null ? 0.5 : 0.3, 6);
  expect(new Date(row.cooldown_until!).getTime()).toBeGreaterThan(Date.now());
  const disputes = await eventually(async () => {
    const d = await disputesFor(blamed, res.attestation.job_id);
    return provable ? (d.length ? d : undefined) : d;
  }, `disputes for ${blamed}`);
  expect(disputes.length).toBe(provable ? 1 : 0);
  // Nobody else on the failed route was blamed.
  for (const hop of chain.attempts[0]!.ticket.ticket.route) {
    if (hop.agentId !== blamed) expect((await agentRow(hop.agentId)).reputation).toBe(0.5);
  }
  await expectServing(seed + 1000);
}

/** A normal request right after an attack succeeds (with whatever the edge now routes to). */
async function expectServing(seed: number): Promise<void> {
  const after = await ask(seed, 3);
  expect(after.attestation.verified).toBe(true);
  expect(after.usage!.completion_tokens).toBeGreaterThan(0);
}

const onChunk = (index: number, f: (c: WireChunk) => void): Tamper => ({
  jobEvent(ev: WireEvent) {
    if (ev.type !== 'chunk') return ev;
    const c = ev as unknown as WireChunk;
    if (c.steps[0] === index) f(c);
    return ev;
  },
});

describe('1. forged or missing attestation signatures', () => {
  it('a forged signature on the first chunk: detected, failover gives the honest answer, the relaying agent is penalised', async () => {
    const res = await underAttack(
      evil,
      onChunk(0, (c) => {
        const sig = c.attestations[0]!.sig;
        c.attestations[0]!.sig = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
      }),
      [evil.id, honestId],
      1,
    );
    await expectCaught(res, 1, evil.id, 'bad_signature', false);
  });

  // A chunk whose attestation has no `sig` field fails the event schema. The head agent wrote
  // that line, so it is treated like an unverifiable attestation: failover, cooldown, a
  // reputation loss and a ledger entry, but no provable claim (no dispute).
  it('a missing signature mid-stream: detected, the stream resumes on the honest route with no lost or duplicated token', async () => {
    const res = await underAttack(
      evil,
      onChunk(1, (c) => {
        delete (c.attestations[0] as { sig?: string }).sig;
      }),
      [evil.id, honestId],
      2,
    );
    await expectCaught(res, 2, evil.id, 'malformed', false);
    const chain = await jobChain(res.attestation.job_id);
    // The prefill chunk (one verified token) came from the tamperer's route before it was caught;
    // the two tokens of the tampered chunk [1, 3) were never handed on.
    expect(chain.attempts[0]!.chunks.length).toBe(1);
    expect(chain.attempts[1]!.ticket.ticket.prefixTokens).toBe(1);
  });

  it('an empty signature string: detected as a bad signature', async () => {
    const res = await underAttack(evil, onChunk(0, (c) => void (c.attestations[0]!.sig = '')), [evil.id, honestId], 3);
    await expectCaught(res, 3, evil.id, 'bad_signature', false);
  });
});

describe('2. tokens altered after signing', () => {
  it('chunk tokenIds changed (attestation intact): the edge sends the attested tokens or none, never the altered ones', async () => {
    const res = await underAttack(evil, onChunk(1, (c) => void (c.tokenIds = [c.tokenIds[0]! === 500 ? 501 : 500])), [evil.id, honestId], 4);
    await expectCaught(res, 4, evil.id, 'bad_tokens', false);
  });

  it('outputTokenIds changed inside the signed attestation: the signature no longer verifies', async () => {
    const res = await underAttack(
      evil,
      onChunk(0, (c) => {
        const att = c.attestations[0]!.att;
        att.outputTokenIds = [att.outputTokenIds![0] === 500 ? 501 : 500];
        c.tokenIds = att.outputTokenIds;
      }),
      [evil.id, honestId],
      5,
    );
    await expectCaught(res, 5, evil.id, 'bad_signature', false);
  });
});

describe('2b. tokens altered mid-stream (SSE)', () => {
  it('the streamed text equals the honest answer: altered tokens are never streamed', async () => {
    const stream = async () => {
      const params = {
        model: net.modelName,
        messages: [{ role: 'user', content: PROMPT }],
        max_tokens: MAX_TOKENS,
        seed: 20,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
        route: { sort: 'price' },
      } as unknown as OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming;
      const chunks = await client.chat.completions.create(params);
      let text = '';
      let tokens = 0;
      for await (const chunk of chunks) {
        text += chunk.choices[0]?.delta?.content ?? '';
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
      }
      return { text, tokens };
    };
    const got = await underAttack(evil, onChunk(3, (c) => void (c.tokenIds = [c.tokenIds[0]! === 500 ? 501 : 500])), [evil.id, honestId], 20, stream);
    const honest = await honestAnswer(20);
    expect(got.text).toBe(honest.content);
    expect(got.tokens).toBe(honest.tokenIds.length);
    const row = await eventually(async () => {
      const r = await agentRow(evil.id);
      return r.reputation < 0.5 ? r : undefined;
    }, 'the reputation loss of the tamperer');
    expect(row.reputation).toBeCloseTo(0.3, 6);
    await expectServing(1020);
  });
});

describe('3. activations altered between hops', () => {
  it('the proxy in front of hop 2 changes the activation bytes: hop 2 refuses them (they are not what hop 1 attested) and signs nothing, so it is not framed; the failover gives the honest answer', async () => {
    const tamper: Tamper = {
      forwardRequest(bytes) {
        const frame = decodeFrame(bytes, { maxPayloadBytes: 64 << 20 });
        if (frame.kind !== 'forward') return bytes;
        const data = framePayloadAs(frame) as Float32Array;
        for (let i = 0; i < data.length; i += 7) data[i] = data[i]! + 0.5;
        return encodeFrame({ kind: 'forward', dtype: frame.dtype, dims: frame.dims, meta: frame.meta, payload: data });
      },
    };
    const failedBefore = await failedObservations(tail.id);
    const logsBefore = net.edgeLogs.length;
    const res = await underAttack(tail, tamper, [headId, tail.id, honestId], 6);
    const chain = await jobChain(res.attestation.job_id);
    expect(chain.attempts[0]!.ticket.ticket.route.map((h) => h.agentId)).toEqual([headId, tail.id]);
    // Hop 2 refused the first (prefill) frame: no attestation of it, or of anyone, for the failed attempt.
    expect(chain.attempts[0]!.chunks).toEqual([]);
    // Not provable: hop 1's senderSig covers the bytes it sent, not these, so the refusal carries no
    // evidence against hop 1 (a tampered link, a broken sender and a lying receiver look alike).
    // No reputation penalty, no dispute; hop 2 only sits out a cooldown (it reported the error).
    await expectCaught(res, 6, tail.id, null, false);
    expect(await ledgerRows(tail.id, res.attestation.job_id)).toEqual([]);
    // The failure is recorded: a failed observation of hop 2 and the edge's log of the agent error.
    await eventually(async () => ((await failedObservations(tail.id)) > failedBefore ? true : undefined), `a failed observation of ${tail.id}`);
    const logged = net.edgeLogs.slice(logsBefore).filter((l) => l.includes('route attempt failed') && l.includes(tail.id));
    expect(logged.some((l) => l.includes('agent_error') && l.includes('bad_input'))).toBe(true);
    // The head that forwarded honest bytes is not blamed either.
    const head = await agentRow(headId);
    expect(head.reputation).toBe(0.5);
    expect(head.cooldown_until).toBeNull();
    expect(await disputesFor(headId, res.attestation.job_id)).toEqual([]);
  });
});

describe('4. wrong model served', () => {
  it('an honest agent holding other weights than it registered refuses the ticket (it names the manifest hash); the edge fails over', async () => {
    await only(wrongWeights.id, honestId);
    const honest = await honestAnswer(7);
    await only(wrongWeights.id, honestId);
    const seen = wrongWeights.proxy.responses.length;
    let res: Answer | undefined;
    for (let i = 0; i < 5 && wrongWeights.proxy.responses.slice(seen).every((r) => r.path !== '/v1/jobs'); i++) {
      res = await ask(7);
      await only(wrongWeights.id, honestId);
    }
    const jobs = wrongWeights.proxy.responses.slice(seen).filter((r) => r.path === '/v1/jobs');
    expect(jobs.length).toBeGreaterThan(0);
    expect(jobs[0]!.status).toBe(403);
    expect(res!.choices[0]!.message.content).toBe(honest.content);
    // A refusal is not fraud: no reputation change, no dispute.
    expect((await agentRow(wrongWeights.id)).reputation).toBe(0.5);
    expect(await disputesFor(wrongWeights.id, res!.attestation.job_id)).toHaveLength(0);
    await expectServing(1007);
  });

  it('a cheater that signs the model it really ran (another modelId) is caught inline with signed evidence', async () => {
    const res = await underAttack(evil, resigningTamper(evil.key, { rewrite: (att) => void (att.modelId = seed7Id) }), [evil.id, honestId], 8);
    await expectCaught(res, 8, evil.id, 'wrong_model', true);
  });

  it('a cheater that runs other weights but signs the registered model id passes inline checks; the re-execution check fails it', async () => {
    const honest = await honestAnswer(9);
    await only(impostor.id);
    const res = await ask(9);
    // Undetectable inline: every attestation is validly signed, the chain is intact.
    expect(res.attestation.verified).toBe(true);
    expect(res.route.hops.map((h) => h.agent_id)).toEqual([impostor.id]);
    const chain = await jobChain(res.attestation.job_id);
    expect(chain.attempts).toHaveLength(1);
    expect(chain.token_ids).not.toEqual(honest.tokenIds);
    const req = impostor.proxy.jobRequests.at(-1)!;
    expect(req.signedTicket.ticket.jobId).toBe(res.attestation.job_id);
    const verdict = await runCheck({
      modelDir: TEST_MODEL_DIR,
      ticket: chain.attempts[0]!.ticket.ticket,
      promptIds: req.promptIds,
      prefixIds: req.prefixIds,
      tokenIds: chain.token_ids,
      attestations: chain.attempts[0]!.chunks,
    });
    expect(verdict.status).toBe('fail');
    expect(verdict.agentId).toBe(impostor.id);
  });
});

describe('5. replayed ticket', () => {
  it('a captured job request replayed to the agent is refused (nonce already used), directly or through its endpoint', async () => {
    await only(evil.id);
    const res = await ask(10);
    expect(res.route.hops.map((h) => h.agent_id)).toEqual([evil.id]);
    const captured = evil.proxy.jobRequests.at(-1)!;
    expect(captured.signedTicket.ticket.jobId).toBe(res.attestation.job_id);
    for (const base of [evil.directUrl, evil.url]) {
      const replay = await fetch(`${base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(captured) });
      expect(replay.status).toBe(409);
      expect(((await replay.json()) as { error: { code: string } }).error.code).toBe('replayed');
    }
    // Replayed to another agent: not its ticket.
    const other = await fetch(`${net.agents[0]!.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(captured) });
    expect(other.status).toBe(403);
    await expectServing(11);
  });

  it('a captured opening forward frame replayed to hop 2 is refused', async () => {
    await only(headId, tail.id);
    const before = tail.proxy.forwardFrames.length;
    const res = await ask(12);
    expect(res.route.hops.map((h) => h.agent_id)).toEqual([headId, tail.id]);
    const opening = tail.proxy.forwardFrames.slice(before).find((f) => (decodeFrame(f, { maxPayloadBytes: 64 << 20 }).meta as { open?: boolean }).open === true);
    expect(opening).toBeDefined();
    const replay = await fetch(`${tail.directUrl}/v1/spans/forward`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(opening!) });
    expect(replay.status).toBe(409);
    const frame = decodeFrame(new Uint8Array(await replay.arrayBuffer()), { maxPayloadBytes: 1024 });
    expect(frame.kind).toBe('error');
    expect((frame.meta as { code: string }).code).toBe('replayed');
    // The chain keeps serving after the replay.
    await only(headId, tail.id);
    const next = await ask(21, 3);
    expect(next.route.hops.map((h) => h.agent_id)).toEqual([headId, tail.id]);
    expect(next.attestation.verified).toBe(true);
  });
});

describe('6. replayed old attestation', () => {
  // The replayed chunk is genuinely signed, but for another ticket: that proves a replay by
  // whoever relayed it, not a wrong computation by its signer, so the head is blamed without a
  // provable claim (no dispute).
  it('the proxy substitutes a chunk from an earlier job of the same prompt: bound to another ticket, caught, the relaying head blamed', async () => {
    await only(evil.id);
    const old = await ask(13);
    const oldEvents = evil.proxy.jobEvents.get(old.attestation.job_id)!;
    const oldChunks = oldEvents.filter((e) => e.type === 'chunk') as unknown as WireChunk[];
    expect(oldChunks.length).toBeGreaterThan(0);
    const res = await underAttack(
      evil,
      {
        jobEvent(ev) {
          if (ev.type !== 'chunk') return ev;
          const c = ev as unknown as WireChunk;
          const replayed = oldChunks.find((o) => o.steps[0] === c.steps[0]);
          return (replayed ?? c) as unknown as WireEvent;
        },
      },
      [evil.id, honestId],
      13,
    );
    await expectCaught(res, 13, evil.id, 'wrong_ticket', false);
  });
});

describe('6b. a head relays a stale attestation of the next hop', () => {
  let res: Answer;

  it('is detected inline: the client gets the honest answer and the network keeps serving', async () => {
    await only(evilHead.id, tail.id);
    const old = await ask(19);
    expect(old.route.hops.map((h) => h.agent_id)).toEqual([evilHead.id, tail.id]);
    const oldChunks = evilHead.proxy.jobEvents.get(old.attestation.job_id)!.filter((e) => e.type === 'chunk') as unknown as WireChunk[];
    res = await underAttack(
      evilHead,
      {
        jobEvent(ev) {
          if (ev.type !== 'chunk') return ev;
          const c = ev as unknown as WireChunk;
          const stale = oldChunks.find((o) => o.steps[0] === c.steps[0]);
          if (stale) c.attestations[1] = stale.attestations[1]!;
          return c as unknown as WireEvent;
        },
      },
      [evilHead.id, tail.id, honestId],
      19,
    );
    const honest = await honestAnswer(19);
    expect(res.choices[0]!.message.content).toBe(honest.content);
    const chain = await jobChain(res.attestation.job_id);
    expect(chain.token_ids).toEqual(honest.tokenIds);
    expect(chain.attempts[0]!.outcome).toBe('failed');
    expect(chain.attempts[0]!.ticket.ticket.route.map((h) => h.agentId)).toEqual([evilHead.id, tail.id]);
    await expectServing(1019);
  });

  // A validly signed attestation that binds ANOTHER ticket (wrong_ticket) or other steps proves
  // nothing against its signer for this job: the head agent relayed it. The edge blames the
  // head (the relayer), not provably, and opens no dispute against hop 1 — otherwise a cheating
  // head could frame an honest downstream agent by replaying its old attestations.
  it('blames the relaying head, not the hop whose old signature it replays', async () => {
    expect(res).toBeDefined();
    // The edge writes its verdict (ledger, disputes) through waitUntil: wait for the ledger entry.
    await eventually(async () => (await net.registry.sql`select 1 from ledger_entries where evidence->>'jobId' = ${res.attestation.job_id}`)[0], 'the ledger entry of the job');
    expect(await disputesFor(tail.id, res.attestation.job_id)).toHaveLength(0);
    expect((await agentRow(tail.id)).reputation).toBe(0.5);
    const entry = await ledgerFor(evilHead.id, res.attestation.job_id);
    expect(entry.evidence.provable).toBe(false);
  });
});

describe('7. attestation from an agent not on the route', () => {
  it('re-signed with another registered agent key: refused, and the framed agent is not blamed', async () => {
    const honestKey = await loadIdentity(net.agents[0]!.dir);
    const res = await underAttack(evil, resigningTamper(honestKey, { rewrite: (att) => void (att.agentId = honestId) }), [evil.id, honestId], 14);
    await expectCaught(res, 14, evil.id, 'wrong_agent', false);
    const framed = await net.registry.sql`select 1 from ledger_entries where agent_id = ${honestId} and evidence->>'jobId' = ${res.attestation.job_id}`;
    expect(framed).toHaveLength(0);
  });

  it('re-signed with an unregistered key under the route agent id: a bad signature', async () => {
    const stranger = await generateSigningKey();
    const res = await underAttack(evil, resigningTamper(stranger, {}), [evil.id, honestId], 15);
    await expectCaught(res, 15, evil.id, 'bad_signature', false);
  });

  it('signed by an unregistered agent id: refused', async () => {
    const stranger = await generateSigningKey();
    const res = await underAttack(evil, resigningTamper(stranger, { rewrite: (att) => void (att.agentId = 'agt_not_registered') }), [evil.id, honestId], 16);
    await expectCaught(res, 16, evil.id, 'wrong_agent', false);
  });
});

// The edge-side wiring of the check (sampling, independent checker, dispute, slash, exclusion) is
// exercised end to end in checks.security.test.ts with this suite's proxy and resigningTamper;
// this network runs without CHECK_SECRET (checks off), so the inline behaviour is seen alone.
describe('8. lazy agent: plausible random tokens, validly signed', () => {
  it('passes the inline checks; the re-execution check on the recorded chain fails it, while an honest job passes', async () => {
    const honest = await honestAnswer(17);
    const fake = (step: number) => 500 + ((step * 7919 + 1234) % 30_000);
    const res = await underAttack(evil, resigningTamper(evil.key, { fakeToken: fake }), [evil.id], 17);
    expect(res.attestation.verified).toBe(true);
    const chain = await jobChain(res.attestation.job_id);
    expect(chain.attempts).toHaveLength(1);
    expect(chain.token_ids).toEqual(chain.token_ids.map((_, i) => fake(i)));
    expect(chain.token_ids).not.toEqual(honest.tokenIds);
    // Nothing inline caught it: no penalty.
    expect((await agentRow(evil.id)).reputation).toBe(0.5);
    const req = evil.proxy.jobRequests.find((r) => r.signedTicket.ticket.jobId === res.attestation.job_id)!;
    const verdict = await runCheck({
      modelDir: TEST_MODEL_DIR,
      ticket: chain.attempts[0]!.ticket.ticket,
      promptIds: req.promptIds,
      prefixIds: req.prefixIds,
      tokenIds: chain.token_ids,
      attestations: chain.attempts[0]!.chunks,
    });
    expect(verdict.status).toBe('fail');
    expect(verdict.agentId).toBe(evil.id);

    // Control: the same agent answering honestly passes the same check.
    await only(evil.id);
    const fair = await ask(18);
    const fairChain = await jobChain(fair.attestation.job_id);
    const fairReq = evil.proxy.jobRequests.find((r) => r.signedTicket.ticket.jobId === fair.attestation.job_id)!;
    const ok = await runCheck({
      modelDir: TEST_MODEL_DIR,
      ticket: fairChain.attempts[0]!.ticket.ticket,
      promptIds: fairReq.promptIds,
      prefixIds: fairReq.prefixIds,
      tokenIds: fairChain.token_ids,
      attestations: fairChain.attempts[0]!.chunks,
    });
    expect(ok.status).toBe('pass');
  });
});

describe('9. heartbeat spoofing', () => {
  /** Above any real seq (agents use the epoch ms): accepted, it would lock B's real heartbeats out. */
  const SPOOF_SEQ = 2 ** 52;
  async function heartbeat(target: string, signer: CryptoKey, fields: Partial<Omit<Heartbeat, 'signature'>> = {}): Promise<Response> {
    const body: Omit<Heartbeat, 'signature'> = { agent_id: target, seq: SPOOF_SEQ, sent_at: Date.now(), queue_depth: 999_999, load: 4242, free_kv_bytes: 0, active_sessions: 777, ...fields };
    const signature = await signBytes(signer, heartbeatBytes(body));
    return fetch(`${net.edgeUrl}/v1/agents/${target}/heartbeat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, signature }) });
  }

  it("a heartbeat for agent B signed with agent A's key or an unknown key is refused and changes nothing of B", async () => {
    const b = net.agents[0]!.id;
    const aKey = await loadIdentity(net.agents[1]!.dir);
    const stranger = await generateSigningKey();
    const before = await agentRow(b);
    for (const key of [aKey.privateKey, stranger.privateKey]) {
      const res = await heartbeat(b, key);
      expect([401, 403]).toContain(res.status);
    }
    const after = await agentRow(b);
    expect(after.heartbeat_seq).toBeLessThan(SPOOF_SEQ);
    expect(after.heartbeat_seq).toBeGreaterThanOrEqual(before.heartbeat_seq);
    expect(after.queue_depth).not.toBe(999_999);
    expect(after.load).not.toBe(4242);
  });

  it('a validly signed heartbeat with a replayed (not increasing) seq is refused with 409', async () => {
    const a = net.agents[1]!;
    const aKey = await loadIdentity(a.dir);
    const current = await agentRow(a.id);
    expect(current.heartbeat_seq).toBeGreaterThanOrEqual(0);
    const res = await heartbeat(a.id, aKey.privateKey, { seq: current.heartbeat_seq });
    expect(res.status).toBe(409);
    const res0 = await heartbeat(a.id, aKey.privateKey, { seq: 0 });
    expect(res0.status).toBe(409);
    const after = await agentRow(a.id);
    expect(after.queue_depth).not.toBe(999_999);
    await only(a.id, ...net.agents.filter((x) => x.name === 'tail').map((x) => x.id));
    await expectServing(1022);
  });
});
