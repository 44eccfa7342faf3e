/**
 * The edge's check orchestration (edge/checks/run-checks.ts) with the memory store and fake
 * checker agents that verify the edge's signed request and sign their verdicts with real keys;
 * and the agent's `POST /v1/checks` service (pool-agent/server/checks.ts) with a checker double.
 */
import type { Server } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkFinishedJob, type CheckDeps } from '../../edge/checks/run-checks.js';
import { runTrustTick } from '../../edge/checks/tick.js';
import { planRoutes } from '../../edge/routing/plan.js';
import { DEFAULT_TRUST_POLICY } from '../../edge/trust/policy.js';
import type { AgentTransport } from '../../edge/deps.js';
import { createMemoryStore, type MemoryStore } from '../../edge/store/memory.js';
import type { JobAttemptRecord } from '../../db/registry-contract.js';
import { parseEdgeEnv } from '../../edge/env.js';
import { signAttestation, type SignedAttestation } from '../../protocol/attestation.js';
import { sha256Hex, toBase64Url } from '../../protocol/bytes.js';
import { blameWithholder, boundarySources, judgeableHops } from '../../protocol/hop-blame.js';
import { signVerdict, verifyVerdict, type CheckVerdict } from '../../protocol/check.js';
import { generateSigningKey, type SigningKey } from '../../protocol/keys.js';
import { createCheckService } from '../../pool-agent/server/checks.js';
import {
  type CheckAgent,
  checkDeps,
  issueTestTicket,
  MODEL,
  NUM_LAYERS,
  postCheck,
  registerCheckAgent,
  serveChecks,
  spanStub,
  verifiedCheckRequest,
  verifiedDisclosureRequest,
} from '../support/check-fixtures.js';

/**
 * route-fail: a multi-hop failure that names hop 0 only when the request's disclosures cover every
 * boundary between hops. blame: a multi-hop failure narrowed as the real checker does
 * (protocol/hop-blame.ts): the hop `culprit` when it can be re-run, else a withholder, else none.
 */
type Answer = 'pass' | 'fail' | 'inconclusive' | 'forged' | 'down' | 'route-fail' | 'blame';

interface Fake extends CheckAgent {
  owner: string;
  answer: Answer;
  /** Check requests this agent received (verified ones only). */
  received: number;
  /** Disclosure requests this agent answered (verified ones only). */
  disclosed: number;
  /** When set, the verdict is `fail` for routes through this agent and `pass` otherwise. */
  failsRoutesWith?: string;
  /** Answers disclosure requests with 404, as if it had kept nothing. */
  withholds?: boolean;
  /** Discloses other bytes than it attested to. */
  disclosesWrongBytes?: boolean;
  /** 'blame': the hop its re-runs find wrong (null: none). */
  culprit?: number | null;
  /** Answers this check request (0-based count) with 503, as if busy with another check. */
  busyOn?: number;
}

/** The activations between the two hops of `jobOnRoute` (16 float32 values), which both attest. */
const BOUNDARY = new Uint8Array(16 * 4).fill(1);

let store: MemoryStore;
let edgeKey: SigningKey;
let fakes: Map<string, Fake>;
let logs: Record<string, unknown>[];
let now: number;
/** How far the clock moves during each check a fake runs. */
let checkTakesMs = 0;

async function addAgent(name: string, owner: string, answer: Answer, layers: [number, number] = [0, NUM_LAYERS], stake = 1_000_000): Promise<Fake> {
  const fake: Fake = { ...(await registerCheckAgent(store, { name, owner, layers, stake, now })), owner, answer, received: 0, disclosed: 0 };
  fakes.set(fake.endpoint, fake);
  return fake;
}

/** The fake checkers: verify the edge's signed request like a real agent, answer a signed verdict. */
const transport: AgentTransport = async (url, init) => {
  const u = new URL(url);
  const fake = fakes.get(`${u.protocol}//${u.host}`);
  if (!fake || fake.answer === 'down') throw new TypeError('fetch failed: connection refused');
  if (u.pathname === '/v1/checks/inputs') {
    const r = await verifiedDisclosureRequest(edgeKey, String(init.body));
    if (!r) return new Response('{}', { status: 401 });
    if (fake.withholds) return Response.json({ error: { code: 'not_found', message: 'no committed inputs kept' } }, { status: 404 });
    fake.disclosed++;
    const tensor = toBase64Url(fake.disclosesWrongBytes ? new Uint8Array(16 * 4).fill(9) : BOUNDARY);
    return Response.json({ jobId: r.jobId, hop: r.hop, dtype: 'float32', hiddenSize: 16, chunks: [{ steps: [0, 1], ...(r.hop > 0 ? { input: tensor } : {}), ...(r.hop === 0 ? { output: tensor } : {}) }] });
  }
  const req = await verifiedCheckRequest(edgeKey, fake.id, init);
  if (!req) return new Response('{"error":{"code":"invalid_signature"}}', { status: 401 });
  if (fake.busyOn === fake.received) {
    fake.busyOn = undefined;
    return Response.json({ error: { code: 'capacity', message: 'a check is already running' } }, { status: 503 });
  }
  fake.received++;
  now += checkTakesMs;
  const ticket = req.signedTicket.ticket;
  const last = ticket.route.length - 1;
  const answer: Answer = fake.failsRoutesWith === undefined ? fake.answer : ticket.route.some((h) => h.agentId === fake.failsRoutesWith) ? 'fail' : 'pass';
  const sources = boundarySources(ticket.route.length, (req.disclosures ?? []).map((d) => ({ hop: d.hop, inputs: !!d.inputs, outputs: !!d.outputs })));
  const routeWide: CheckVerdict = { jobId: ticket.jobId, status: 'fail', reason: 'hidden_mismatch', detail: 'the route is wrong', evidence: {} };
  const blamed = (hop: number, reason: CheckVerdict['reason']): CheckVerdict => ({ jobId: ticket.jobId, status: 'fail', reason, hop, agentId: ticket.route[hop]!.agentId, detail: `hop ${hop} blamed`, evidence: {} });
  const blame = (): CheckVerdict => {
    const culprit = fake.culprit ?? null;
    if (culprit !== null && judgeableHops(ticket.route.length, sources).includes(culprit)) return blamed(culprit, 'hop_output_mismatch');
    const w = blameWithholder(ticket.route.length, sources, req.withheld ?? []);
    return w ? blamed(w.hop, 'disclosure_mismatch') : routeWide;
  };
  const verdict: CheckVerdict =
    answer === 'route-fail'
      ? req.disclosures?.length && sources.slice(1).every((s) => s !== null)
        ? blamed(0, 'hop_output_mismatch')
        : routeWide
      : answer === 'blame'
      ? req.disclosures?.length || req.withheld?.length
        ? blame()
        : routeWide
      : answer === 'fail'
      ? { jobId: ticket.jobId, status: 'fail', reason: 'sampling_mismatch', hop: last, agentId: ticket.route[last]!.agentId, detail: 'step 0: returned token 7, the sampler gives 9', evidence: { step: 0, returnedToken: 7, expectedToken: 9 } }
      : answer === 'inconclusive'
        ? { jobId: ticket.jobId, status: 'inconclusive', reason: 'checker_error', detail: 'runtime failed', evidence: {} }
        : { jobId: ticket.jobId, status: 'pass', detail: '1 steps agree', evidence: { stepsChecked: 1 } };
  const signer = fake.answer === 'forged' ? (await generateSigningKey()).privateKey : fake.key.privateKey;
  return Response.json(await signVerdict(signer, fake.id, fake.answer === 'forged' ? { ...verdict, status: 'fail', agentId: ticket.route[last]!.agentId, reason: 'hidden_mismatch' } : verdict, now));
};

const deps = (opts: { rate?: number | null; key?: boolean } = {}): Promise<CheckDeps> => checkDeps({ store, transport, edgeKey, now: () => now, logs, ...opts });

/** One attempt on `agent` alone: a real signed ticket and the attestation of one step after `prefixIds`. */
async function signedAttempt(agent: Fake, ticketJobId: string, promptIds: number[], prefixIds: number[], token: number): Promise<JobAttemptRecord> {
  const { signed, hash } = await issueTestTicket(store, edgeKey, { jobId: ticketJobId, hopIds: [agent.id], promptIds, prefixIds, now });
  const step = prefixIds.length;
  const att: SignedAttestation = await signAttestation(agent.key.privateKey, {
    v: 1, ticketHash: hash, jobId: ticketJobId, agentId: agent.id, modelId: MODEL, hop: 0, layers: [0, NUM_LAYERS], steps: [step, step + 1],
    inputCommitment: signed.ticket.inputHash, outputCommitment: 'cd'.repeat(32), outputTokenIds: [token], prevHash: null, issuedAt: now,
  });
  return { ticket: signed, chunks: [[att]], outcome: 'completed' };
}

/** A finished single-hop job served by `agent`, with a real signed ticket and attestation. */
async function jobOn(agent: Fake, jobId = `job_${Math.random().toString(36).slice(2)}`) {
  const promptIds = [1, 5, 6];
  const attempts: JobAttemptRecord[] = [await signedAttempt(agent, jobId, promptIds, [], 7)];
  await store.recordJobStart({ id: jobId, accountId: 'acct', apiKeyId: 'key', modelId: MODEL, createdAt: now, route: [agent.id], promptTokens: 3 });
  await store.recordJobFinish({ id: jobId, status: 'completed', finishReason: 'length', attempts, tokenIds: [7], promptTokens: 3, completionTokens: 1, costMicroUsd: 0, finishedAt: now });
  return { jobId, modelId: MODEL, numLayers: NUM_LAYERS, promptIds, tokenIds: [7], attempts };
}

/**
 * A job that failed over mid-stream: `first` delivered one verified token (attempt 1 failed
 * after it), `second` resumed from it and completed with one more.
 */
async function failedOverJob(first: Fake, second: Fake, opts: { firstDelivered?: boolean } = {}) {
  const jobId = `job_${Math.random().toString(36).slice(2)}`;
  const promptIds = [1, 5, 6];
  const delivered = opts.firstDelivered ?? true;
  const a1 = await signedAttempt(first, jobId, promptIds, [], 7);
  const attempts: JobAttemptRecord[] = [{ ...a1, chunks: delivered ? a1.chunks : [], outcome: 'failed' }, await signedAttempt(second, `${jobId}.2`, promptIds, delivered ? [7] : [], 8)];
  const tokenIds = delivered ? [7, 8] : [8];
  await store.recordJobStart({ id: jobId, accountId: 'acct', apiKeyId: 'key', modelId: MODEL, createdAt: now, route: [second.id], promptTokens: 3 });
  await store.recordJobFinish({ id: jobId, status: 'completed', finishReason: 'length', attempts, tokenIds, promptTokens: 3, completionTokens: tokenIds.length, costMicroUsd: 0, finishedAt: now });
  return { jobId, modelId: MODEL, numLayers: NUM_LAYERS, promptIds, tokenIds, attempts };
}

/** A finished two-hop job over `hops` (layers [0, 2) and [2, 4)). */
async function jobOnRoute(hops: Fake[], jobId = `job_${Math.random().toString(36).slice(2)}`) {
  const promptIds = [1, 5, 6];
  const { signed, hash, route } = await issueTestTicket(store, edgeKey, { jobId, hopIds: hops.map((h) => h.id), promptIds, now });
  const chunk: SignedAttestation[] = [];
  // What hop 0 sent and hop 1 received: both attest it (as the chain requires).
  const boundary = await sha256Hex(BOUNDARY);
  for (const [i, h] of hops.entries()) {
    const lastHop = i === hops.length - 1;
    chunk.push(
      await signAttestation(h.key.privateKey, {
        v: 1, ticketHash: hash, jobId, agentId: h.id, modelId: MODEL, hop: i, layers: route[i]!.layers, steps: [0, 1],
        inputCommitment: i === 0 ? signed.ticket.inputHash : boundary, outputCommitment: lastHop ? 'cd'.repeat(32) : boundary, ...(lastHop ? { outputTokenIds: [7] } : {}), prevHash: null, issuedAt: now,
      }),
    );
  }
  const attempts: JobAttemptRecord[] = [{ ticket: signed, chunks: [chunk], outcome: 'completed' }];
  return { jobId, modelId: MODEL, numLayers: NUM_LAYERS, promptIds, tokenIds: [7], attempts };
}

beforeEach(async () => {
  store = createMemoryStore();
  edgeKey = await generateSigningKey();
  fakes = new Map();
  logs = [];
  now = Date.now();
  checkTakesMs = 0;
});

describe('edge re-execution checks', () => {
  it('checks nothing when CHECK_SECRET is absent', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    const checker = await addAgent('b', 'owner-b', 'pass');
    const out = await checkFinishedJob(await deps({ key: false }), await jobOn(served));
    expect(out).toMatchObject({ checked: false, skipped: 'off' });
    expect(checker.received).toBe(0);
  });

  it('checks nothing when the sampled rate is 0', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    const checker = await addAgent('b', 'owner-b', 'pass');
    const out = await checkFinishedJob(await deps({ rate: 0 }), await jobOn(served));
    expect(out).toMatchObject({ checked: false, skipped: 'not_sampled' });
    expect(checker.received).toBe(0);
  });

  it('samples new agents (on probation) at the policy rate 1 without an override', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    const checker = await addAgent('b', 'owner-b', 'pass');
    const out = await checkFinishedJob(await deps({ rate: null }), await jobOn(served));
    expect(out).toMatchObject({ checked: true, rate: 1, status: 'pass' });
    expect(checker.received).toBe(1);
  });

  it('a passed check goes to an agent of another owner holding the whole model, and raises the hop reputation', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    const sameOwner = await addAgent('a2', 'owner-a', 'pass');
    const partial = await addAgent('p', 'owner-p', 'pass', [0, 2]);
    const checker = await addAgent('b', 'owner-b', 'pass');
    const job = await jobOn(served);
    const before = (await store.getAgent(served.id))!.reputation;
    const out = await checkFinishedJob(await deps(), job);
    expect(out).toMatchObject({ checked: true, status: 'pass', steps: [{ checkerId: checker.id, status: 'pass' }] });
    expect(sameOwner.received + partial.received).toBe(0);
    expect((await store.getAgent(served.id))!.reputation).toBeGreaterThan(before);
    expect(store.checkCounters(served.id)).toEqual({ jobsChecked: 1, checksPassed: 1 });
    expect((await store.getJob(job.jobId, 'acct'))!.checkStatus).toBe('pass');
    expect(store.disputes).toHaveLength(0);
    const signed = store.jobChecks.get(job.jobId)![0] as { verdict: unknown };
    expect(await verifyVerdict(signed.verdict, checker.key.publicKey)).not.toBeNull();
  });

  it('a failed check opens a dispute; an upheld third check slashes the agent and excludes it from routing at once', async () => {
    const lazy = await addAgent('lazy', 'owner-a', 'pass');
    const first = await addAgent('b', 'owner-b', 'fail');
    const third = await addAgent('c', 'owner-c', 'fail');
    const d = await deps();
    // A warm candidate cache that still lists the lazy agent.
    const cached = await d.caches.candidates.get('k', () => store.listRouteCandidates(MODEL, { heartbeatAfter: 0, limit: 10 }), now);
    expect(cached.some((c) => c.agentId === lazy.id)).toBe(true);
    const job = await jobOn(lazy);
    const out = await checkFinishedJob(d, job);
    expect(out.status).toBe('upheld');
    expect(out.steps.map((s) => s.checkerId).sort()).toEqual([first.id, third.id].sort());
    expect(out.slashed).toEqual([lazy.id]);
    const agent = (await store.getAgent(lazy.id))!;
    expect(agent.status).toBe('slashed');
    expect(agent.reputation).toBe(0);
    const slash = store.ledger.find((l) => l.kind === 'slash')!;
    expect(slash).toMatchObject({ agentId: lazy.id, amount: 1_000_000 });
    expect((slash.evidence as { verdicts: unknown[] }).verdicts).toHaveLength(2);
    expect(store.disputes[0]).toMatchObject({ agentId: lazy.id, jobId: job.jobId, status: 'upheld' });
    expect((await store.getJob(job.jobId, 'acct'))!.checkStatus).toBe('upheld');
    // Registry and this isolate's cache both leave it out now.
    expect((await store.listRouteCandidates(MODEL, { heartbeatAfter: 0, limit: 10 })).some((c) => c.agentId === lazy.id)).toBe(false);
    const fresh = await d.caches.candidates.get('k', () => store.listRouteCandidates(MODEL, { heartbeatAfter: 0, limit: 10 }), now);
    expect(fresh.some((c) => c.agentId === lazy.id)).toBe(false);
  });

  it('a dispute whose third check passes is dismissed: nobody is slashed and probation ends', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    await addAgent('b', 'owner-b', 'fail');
    await addAgent('c', 'owner-c', 'pass');
    // Make the order deterministic: the accusing checker has the higher reputation.
    store.setFigures([...fakes.values()].find((f) => f.owner === 'owner-b')!.id, { reputation: 0.9 });
    const out = await checkFinishedJob(await deps(), await jobOn(served));
    expect(out.status).toBe('dismissed');
    const agent = (await store.getAgent(served.id))!;
    expect(agent.status).toBe('active');
    expect(agent.probation).toBe(false);
    expect(store.ledger.some((l) => l.kind === 'slash')).toBe(false);
    expect(store.disputes[0]!.status).toBe('rejected');
  });

  it('a third checker of the first checker\'s owner is not asked', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    const first = await addAgent('b', 'owner-b', 'fail');
    const sameAsFirst = await addAgent('b2', 'owner-b', 'fail');
    store.setFigures(first.id, { reputation: 0.9 });
    const out = await checkFinishedJob(await deps(), await jobOn(served));
    expect(out.status).toBe('fail');
    expect(out.dispute?.state).toBe('open');
    expect(sameAsFirst.received).toBe(0);
    expect((await store.getAgent(served.id))!.status).toBe('active');
    expect((await store.getAgent(served.id))!.probation).toBe(true);
  });

  it('an inconclusive check is retried once on another checker', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    const flaky = await addAgent('b', 'owner-b', 'inconclusive');
    const good = await addAgent('c', 'owner-c', 'pass');
    store.setFigures(flaky.id, { reputation: 0.9 });
    const out = await checkFinishedJob(await deps(), await jobOn(served));
    expect(out.steps).toEqual([
      { checkerId: flaky.id, status: 'inconclusive' },
      { checkerId: good.id, status: 'pass' },
    ]);
    expect(out.status).toBe('pass');
  });

  it('a verdict not signed by the checker\'s registered key is ignored: no dispute, no slash', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    await addAgent('b', 'owner-b', 'forged');
    const job = await jobOn(served);
    const out = await checkFinishedJob(await deps(), job);
    expect(out.status).toBe('inconclusive');
    expect(store.disputes).toHaveLength(0);
    expect((await store.getAgent(served.id))!.status).toBe('active');
    // Drawn but unanswered is said on the job, not left as if the job had not been drawn.
    expect(store.jobChecks.get(job.jobId)).toContainEqual(expect.objectContaining({ kind: 'no_answer' }));
  });

  it('a checker busy with another check (503) is asked again shortly, not passed over', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    const busy = await addAgent('b', 'owner-b', 'pass');
    const other = await addAgent('c', 'owner-c', 'fail');
    store.setFigures(busy.id, { reputation: 0.9 });
    busy.busyOn = 0;
    const out = await checkFinishedJob(await deps(), await jobOn(served));
    expect(out).toMatchObject({ status: 'pass', steps: [{ checkerId: busy.id, status: 'pass' }] });
    expect(other.received).toBe(0);
  });

  it('a multi-hop failure that names no hop is checked again with the hops\' disclosures, which name the cheating hop', async () => {
    const head = await addAgent('head', 'owner-a', 'pass', [0, 2]);
    const tail = await addAgent('tail', 'owner-x', 'pass', [2, NUM_LAYERS]);
    const first = await addAgent('b', 'owner-b', 'route-fail');
    await addAgent('c', 'owner-c', 'route-fail');
    store.setFigures(first.id, { reputation: 0.9 });
    const out = await checkFinishedJob(await deps(), await jobOnRoute([head, tail]));
    expect(head.disclosed + tail.disclosed).toBe(2);
    expect(out.steps.map((s) => s.checkerId)[0]).toBe(first.id);
    expect(out.steps[1]!.checkerId).toBe(first.id);
    expect(out.status).toBe('upheld');
    expect(out.slashed).toEqual([head.id]);
    expect((await store.getAgent(tail.id))!.status).toBe('active');
  });

  it('hops that do not disclose in time are blamed for withholding: the sender of the missing boundary is disputed, upheld, slashed at the disclosure share', async () => {
    const head = await addAgent('head', 'owner-a', 'pass', [0, 2]);
    const tail = await addAgent('tail', 'owner-x', 'pass', [2, NUM_LAYERS]);
    fakes.delete(head.endpoint);
    fakes.delete(tail.endpoint);
    await addAgent('b', 'owner-b', 'blame');
    await addAgent('c', 'owner-c', 'blame');
    // The hops are unreachable: nobody discloses the activations between them.
    const job = await jobOnRoute([head, tail]);
    const before = [(await store.getAgent(head.id))!.reputation, (await store.getAgent(tail.id))!.reputation];
    const out = await checkFinishedJob(await deps(), job);
    expect(out).toMatchObject({ status: 'upheld', dispute: { state: 'upheld', accusedAgentId: head.id }, slashed: [head.id] });
    // Withholding, not fraud: the policy's disclosure share of the stake.
    const slash = store.ledger.find((l) => l.kind === 'slash')!;
    expect(slash).toMatchObject({ agentId: head.id });
    expect(slash.amount).toBe(500_000);
    // The other withholder pays reputation and probation, as every withholder does at once.
    const t = (await store.getAgent(tail.id))!;
    expect(t).toMatchObject({ status: 'active', probation: true });
    expect(t.reputation).toBeLessThan(before[1]!);
    expect(store.jobChecks.get(job.jobId)).toContainEqual(expect.objectContaining({ kind: 'disclosure_withheld', hops: [0, 1], reasons: ['no_answer', 'no_answer'] }));
  });

  it('a hop that withholds its disclosure, when no other hop is proven wrong, is disputed for it; the hop that disclosed is not', async () => {
    const head = await addAgent('head', 'owner-a', 'pass', [0, 2]);
    const tail = await addAgent('tail', 'owner-x', 'pass', [2, NUM_LAYERS]);
    tail.withholds = true;
    await addAgent('b', 'owner-b', 'blame');
    await addAgent('c', 'owner-c', 'blame');
    const job = await jobOnRoute([head, tail]);
    const headBefore = (await store.getAgent(head.id))!.reputation;
    const out = await checkFinishedJob(await deps(), job);
    expect(head.disclosed).toBe(1);
    expect(out).toMatchObject({ status: 'upheld', dispute: { accusedAgentId: tail.id }, slashed: [tail.id] });
    // Its reputation stays; it is on probation only as a hop of the failed route (route-blocks.ts).
    expect((await store.getAgent(head.id))!).toMatchObject({ reputation: headBefore, probation: true, status: 'active' });
    expect(store.ledger.filter((l) => l.reason === 'disclosure_withheld').map((l) => l.agentId)).toEqual([tail.id]);
    expect((await store.getAgent(tail.id))!).toMatchObject({ status: 'slashed', reputation: 0 });
    expect(store.jobChecks.get(job.jobId)).toContainEqual(expect.objectContaining({ kind: 'disclosure_withheld', hops: [1], agentIds: [tail.id], reasons: ['refused'] }));
  });

  it('a disclosure that does not hash to what the hop itself attested is withholding too', async () => {
    const head = await addAgent('head', 'owner-a', 'pass', [0, 2]);
    const tail = await addAgent('tail', 'owner-x', 'pass', [2, NUM_LAYERS]);
    head.disclosesWrongBytes = true;
    await addAgent('b', 'owner-b', 'blame');
    await addAgent('c', 'owner-c', 'blame');
    const job = await jobOnRoute([head, tail]);
    const out = await checkFinishedJob(await deps(), job);
    expect(out).toMatchObject({ status: 'upheld', dispute: { accusedAgentId: head.id }, slashed: [head.id] });
    expect((await store.getAgent(tail.id))!.status).toBe('active');
    expect(store.jobChecks.get(job.jobId)).toContainEqual(expect.objectContaining({ kind: 'disclosure_withheld', hops: [0], reasons: ['commitment_mismatch'] }));
  });

  it('a hop proven wrong is disputed for fraud (the whole stake) even when another hop withheld; the withholder pays reputation and probation', async () => {
    const head = await addAgent('head', 'owner-a', 'pass', [0, 2]);
    const tail = await addAgent('tail', 'owner-x', 'pass', [2, NUM_LAYERS]);
    tail.withholds = true;
    const first = await addAgent('b', 'owner-b', 'blame');
    const third = await addAgent('c', 'owner-c', 'blame');
    first.culprit = third.culprit = 0;
    const job = await jobOnRoute([head, tail]);
    const tailBefore = (await store.getAgent(tail.id))!.reputation;
    const out = await checkFinishedJob(await deps(), job);
    expect(out).toMatchObject({ status: 'upheld', dispute: { accusedAgentId: head.id }, slashed: [head.id] });
    expect(store.ledger.find((l) => l.kind === 'slash')).toMatchObject({ agentId: head.id, amount: 1_000_000 });
    const t = (await store.getAgent(tail.id))!;
    expect(t).toMatchObject({ status: 'active', probation: true });
    expect(t.reputation).toBeLessThan(tailBefore);
  });

  it('the checker that failed the route, busy with another check when asked again, is asked once more', async () => {
    const head = await addAgent('head', 'owner-a', 'pass', [0, 2]);
    const tail = await addAgent('tail', 'owner-x', 'pass', [2, NUM_LAYERS]);
    const first = await addAgent('b', 'owner-b', 'route-fail');
    await addAgent('c', 'owner-c', 'route-fail');
    store.setFigures(first.id, { reputation: 0.9 });
    first.busyOn = 1;
    const out = await checkFinishedJob(await deps(), await jobOnRoute([head, tail]));
    expect(out.steps.slice(0, 2)).toEqual([
      { checkerId: first.id, status: 'fail' },
      { checkerId: first.id, status: 'fail' },
    ]);
    expect(out).toMatchObject({ status: 'upheld', slashed: [head.id] });
  });

  it('stops asking checkers when the time budget is spent: the dispute stays open, nobody is slashed', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    const first = await addAgent('b', 'owner-b', 'fail');
    const third = await addAgent('c', 'owner-c', 'fail');
    store.setFigures(first.id, { reputation: 0.9 });
    checkTakesMs = 24_500;
    const out = await checkFinishedJob(await deps(), await jobOn(served));
    expect(first.received).toBe(1);
    expect(third.received).toBe(0);
    expect(out.dispute?.state).toBe('open');
    expect((await store.getAgent(served.id))!.status).toBe('active');
  });

  it('without an independent checker, nothing is checked and the edge says so', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    await addAgent('a2', 'owner-a', 'fail');
    const out = await checkFinishedJob(await deps(), await jobOn(served));
    expect(out).toMatchObject({ checked: false, skipped: 'no_checker' });
    expect(logs.some((l) => String(l.msg).includes('no independent checker'))).toBe(true);
  });
});

describe('check settings from the environment', () => {
  const base = { DATABASE_URL: 'postgres://x@127.0.0.1/db', EDGE_SIGNING_KEY: 'A'.repeat(64), EDGE_KEY_ID: 'k' };
  it('accepts a 32-byte base64url CHECK_SECRET and a rate override in [0, 1]', () => {
    const parsed = parseEdgeEnv({ ...base, CHECK_SECRET: 'a'.repeat(43), CHECK_RATE_OVERRIDE: '0.5' });
    expect(parsed.ok && parsed.env.CHECK_RATE_OVERRIDE).toBe(0.5);
  });
  it('refuses a short CHECK_SECRET and an out-of-range override, naming the variable but not the value', () => {
    const short = parseEdgeEnv({ ...base, CHECK_SECRET: 'short-secret-value' });
    expect(short.ok).toBe(false);
    expect(!short.ok && short.variables).toEqual(['CHECK_SECRET']);
    expect(short.ok).toBe(false);
    expect(!short.ok && short.message).not.toContain('short-secret-value');
    const rate = parseEdgeEnv({ ...base, CHECK_RATE_OVERRIDE: '2' });
    expect(!rate.ok && rate.variables).toEqual(['CHECK_RATE_OVERRIDE']);
  });
});

// ---------------------------------------------------------------- the agent's endpoint

describe('agent POST /v1/checks', () => {
  let server: Server;
  let url: string;
  let agentKey: SigningKey;
  let runs: number;
  let release: (() => void) | null;
  let layers: [number, number];

  const span = () => spanStub(layers);

  beforeEach(async () => {
    agentKey = await generateSigningKey();
    runs = 0;
    release = null;
    layers = [0, NUM_LAYERS];
  });

  const start = async (opts: { hold?: boolean } = {}) => {
    const checks = createCheckService({
      agentId: 'checker-1',
      signingKey: agentKey,
      edgeKeys: () => ({ 'edge-test': edgeKey.publicKey }),
      span: span(),
      run: async (input) => {
        runs++;
        if (opts.hold) await new Promise<void>((r) => (release = r));
        return { jobId: input.ticket.jobId, status: 'pass', detail: 'ok', evidence: {} };
      },
    });
    ({ server, url } = await serveChecks(checks));
  };

  afterEach(async () => {
    release?.();
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  });

  const body = async () => {
    const agent = await addAgent('served', 'owner-a', 'pass');
    const job = await jobOn(agent);
    return JSON.stringify({ signedTicket: job.attempts[0]!.ticket, promptIds: job.promptIds, prefixIds: [], attestations: job.attempts[0]!.chunks });
  };
  /** Signed as the edge signs, unless `sign` is null or says otherwise. */
  const post = (text: string, sign: { key?: CryptoKey; checkerId?: string; issuedAt?: number } | null = {}) =>
    postCheck(url, text, sign && { ...sign, key: sign.key ?? edgeKey.privateKey });

  it('answers a signed request with a verdict signed by the agent key', async () => {
    await start();
    const res = await post(await body());
    expect(res.status).toBe(200);
    const v = await verifyVerdict(await res.json(), agentKey.publicKey);
    expect(v).toMatchObject({ checkerId: 'checker-1', verdict: { status: 'pass' } });
    expect(runs).toBe(1);
  });

  it('refuses unsigned, foreign-signed, misaddressed, stale and replayed requests without running anything', async () => {
    await start();
    const text = await body();
    expect((await post(text, null)).status).toBe(401);
    expect((await post(text, { key: (await generateSigningKey()).privateKey })).status).toBe(401);
    expect((await post(text, { checkerId: 'another-agent' })).status).toBe(401);
    expect((await post(text, { issuedAt: Date.now() - 10 * 60_000 })).status).toBe(401);
    const issuedAt = Date.now();
    expect((await post(text, { issuedAt })).status).toBe(200);
    expect((await post(text, { issuedAt })).status).toBe(409);
    expect(runs).toBe(1);
  });

  it('refuses a ticket not signed by a trusted edge key, and a body that is not a check request', async () => {
    await start();
    const parsed = JSON.parse(await body()) as { signedTicket: { ticket: { maxTokens?: number; jobId: string } } };
    parsed.signedTicket.ticket.jobId = 'tampered';
    expect((await post(JSON.stringify(parsed))).status).toBe(401);
    expect((await post('{"signedTicket":1}')).status).toBe(400);
    expect(runs).toBe(0);
  });

  it('runs one check at a time: 503 while busy', async () => {
    await start({ hold: true });
    const text = await body();
    const firstReq = post(text);
    while (runs === 0) await new Promise((r) => setTimeout(r, 5));
    const busy = await post(text);
    expect(busy.status).toBe(503);
    release!();
    expect((await firstReq).status).toBe(200);
  });

  it('hands the checker the hops that withheld and a loader for the hops\' spans (per-hop blame)', async () => {
    const loaded: number[][] = [];
    let seen: { withheld?: readonly number[]; spans?: number } = {};
    const checks = createCheckService({
      agentId: 'checker-1',
      signingKey: agentKey,
      edgeKeys: () => ({ 'edge-test': edgeKey.publicKey }),
      span: span(),
      hopSpans: async (l) => {
        loaded.push([...l]);
        return span();
      },
      run: async (input) => {
        await input.loadSpan!('', [0, 2], {});
        seen = { withheld: input.withheld, spans: loaded.length };
        return { jobId: input.ticket.jobId, status: 'pass', detail: 'ok', evidence: {} };
      },
    });
    ({ server, url } = await serveChecks(checks));
    const text = JSON.stringify({ ...JSON.parse(await body()), withheld: [1] });
    expect((await post(text)).status).toBe(200);
    expect(seen).toEqual({ withheld: [1], spans: 1 });
    expect(loaded).toEqual([[0, 2]]);
  });

  it('an agent without the whole model runs no checks', async () => {
    layers = [0, 2];
    await start();
    expect((await post(await body())).status).toBe(404);
    expect(runs).toBe(0);
  });
});

describe('checks of a job that failed over', () => {
  it('re-executes the attempt that delivered tokens and then failed: its lazy agent is slashed, the job reads upheld', async () => {
    const lazy = await addAgent('lazy', 'owner-a', 'pass');
    const honest = await addAgent('honest', 'owner-h', 'pass');
    const first = await addAgent('b', 'owner-b', 'pass');
    const third = await addAgent('c', 'owner-c', 'pass');
    // Every honest checker finds the lazy agent's route wrong (the lazy one, checking, says pass).
    first.failsRoutesWith = third.failsRoutesWith = honest.failsRoutesWith = lazy.id;
    const job = await failedOverJob(lazy, honest);
    const out = await checkFinishedJob(await deps(), job);
    // The final attempt (honest) passes; the earlier one is caught.
    expect(out.status).toBe('pass');
    expect(out.earlier).toHaveLength(1);
    expect(out.earlier![0]).toMatchObject({ checked: true, status: 'upheld', slashed: [lazy.id] });
    expect((await store.getAgent(lazy.id))!.status).toBe('slashed');
    expect((await store.getAgent(honest.id))!.status).toBe('active');
    expect((await store.getJob(job.jobId, 'acct'))!.checkStatus).toBe('upheld');
    // Each attempt was checked under its own ticket, with the tokens before it as the prefix.
    expect([...fakes.values()].reduce((n, f) => n + f.received, 0)).toBe(3);
  });

  it('an attempt that failed before its first token has nothing to check', async () => {
    const dead = await addAgent('dead', 'owner-a', 'pass');
    const honest = await addAgent('honest', 'owner-h', 'pass');
    const checker = await addAgent('b', 'owner-b', 'pass');
    const out = await checkFinishedJob(await deps(), await failedOverJob(dead, honest, { firstDelivered: false }));
    expect(out).toMatchObject({ checked: true, status: 'pass' });
    expect(out.earlier).toBeUndefined();
    expect(checker.received + dead.received).toBe(1);
  });
});

describe('disputes nobody settles', () => {
  it('are voided once older than the policy timeout, when a later job is checked: probation ends unless another dispute is open', async () => {
    const accused = await addAgent('accused', 'owner-a', 'pass');
    const twice = await addAgent('twice', 'owner-t', 'pass');
    const served = await addAgent('served', 'owner-s', 'pass');
    await addAgent('checker', 'owner-b', 'pass');
    const day = 24 * 60 * 60 * 1000;
    const old = await store.openDispute({ jobId: 'old-job', agentId: accused.id, reason: 'hidden_mismatch', evidence: {}, at: now - day - 1 });
    const fresh = await store.openDispute({ jobId: 'new-job', agentId: accused.id, reason: 'hidden_mismatch', evidence: {}, at: now - 1000 });
    const alone = await store.openDispute({ jobId: 'other-job', agentId: twice.id, reason: 'hidden_mismatch', evidence: {}, at: now - 2 * day });
    for (const a of [accused, twice]) await store.setProbation(a.id, true);
    const out = await checkFinishedJob(await deps(), await jobOn(served));
    expect(out.status).toBe('pass');
    const status = (id: string) => store.disputes.find((d) => d.id === id)!.status;
    expect([status(old.id), status(fresh.id), status(alone.id)]).toEqual(['rejected', 'open', 'rejected']);
    // `accused` still has an open dispute; `twice` has none left.
    expect((await store.getAgent(accused.id))!.probation).toBe(true);
    expect((await store.getAgent(twice.id))!.probation).toBe(false);
    expect(logs.some((l) => l.msg === 'stale disputes voided')).toBe(true);
  });

  it('are left alone when no job is checked', async () => {
    const accused = await addAgent('accused', 'owner-a', 'pass');
    const served = await addAgent('served', 'owner-s', 'pass');
    const old = await store.openDispute({ jobId: 'old-job', agentId: accused.id, reason: 'x', evidence: {}, at: now - 2 * 24 * 60 * 60 * 1000 });
    await checkFinishedJob(await deps({ rate: 0 }), await jobOn(served));
    expect(store.disputes.find((d) => d.id === old.id)!.status).toBe('open');
  });
});

// ---------------------------------------------------------------- after a failed check: routing and the scheduled tick

describe('a failed check and routing', () => {
  /** Moves the clock; every agent heartbeats at the new time (a 'down' one too: the edge cannot reach it, the registry hears from it). */
  const advance = (ms: number) => {
    now += ms;
    for (const f of fakes.values()) store.setFigures(f.id, { lastHeartbeatAt: now });
  };
  /** Routes routing would try now, as agent ids joined with '>'. */
  const routable = async () => {
    const candidates = await store.listRouteCandidates(MODEL, { heartbeatAfter: now - 30_000, limit: 100, at: now });
    const plan = planRoutes(candidates, { numLayers: NUM_LAYERS, now, prefs: { sort: 'balanced', allow_fallbacks: true }, client: {}, promptTokens: 3, maxTokens: 4, random: () => 0.5, explorationShare: 0, maxRoutes: 1000 });
    return plan.ok ? plan.routes.map((r) => r.hops.map((h) => h.agentId).join('>')) : [];
  };
  const dispute = (id: string) => store.disputes.find((d) => d.id === id)!;

  it('takes the route out at once and the accused out of every route while its dispute is open; every hop goes on probation', async () => {
    const lazy = await addAgent('lazy', 'owner-a', 'pass');
    await addAgent('b', 'owner-b', 'fail');
    const d = await deps();
    const load = () => store.listRouteCandidates(MODEL, { heartbeatAfter: 0, limit: 10, at: now });
    expect((await d.caches.candidates.get('k', load, now)).find((c) => c.agentId === lazy.id)!.inDispute).toBe(false);
    expect(await routable()).toContain(lazy.id);
    const job = await jobOn(lazy);
    const out = await checkFinishedJob(d, job);
    // Nobody may run the third check (the only other agent accused it): the dispute stays open.
    expect(out).toMatchObject({ status: 'fail', dispute: { state: 'open', accusedAgentId: lazy.id } });
    expect(store.routeBlocks).toEqual([expect.objectContaining({ route: [lazy.id], jobId: job.jobId, until: now + DEFAULT_TRUST_POLICY.routeBlockMs })]);
    expect((await store.getAgent(lazy.id))!.probation).toBe(true);
    expect((await routable()).some((r) => r.split('>').includes(lazy.id))).toBe(false);
    // This isolate's cached view too, at once.
    expect((await d.caches.candidates.get('k', load, now)).find((c) => c.agentId === lazy.id)!.inDispute).toBe(true);
    expect(store.jobChecks.get(job.jobId)).toContainEqual({ kind: 'route_blocked', route: [lazy.id], until: now + DEFAULT_TRUST_POLICY.routeBlockMs, heldUntilBlame: true });
    // Said and kept: no eligible third checker.
    expect(dispute(out.dispute!.id).retryNote).toMatchObject({ outcome: 'no_eligible_checker', asked: 0 });
    expect(logs.some((l) => l.msg === 'dispute left open: no eligible third checker')).toBe(true);
  });

  it('a failure that names no hop blocks the route and holds its hops out of every route for the policy window, on probation', async () => {
    const head = await addAgent('head', 'owner-a', 'pass', [0, 2]);
    const tail = await addAgent('tail', 'owner-x', 'pass', [2, NUM_LAYERS]);
    const otherTail = await addAgent('tail2', 'owner-y', 'pass', [2, NUM_LAYERS]);
    const otherHead = await addAgent('head2', 'owner-z', 'pass', [0, 2]);
    // Nobody discloses: the failure cannot be narrowed to a hop.
    head.withholds = tail.withholds = true;
    await addAgent('b', 'owner-b', 'route-fail');
    await addAgent('c', 'owner-c', 'route-fail');
    const job = await jobOnRoute([head, tail]);
    expect(await routable()).toContain(`${head.id}>${tail.id}`);
    expect(await routable()).toContain(`${head.id}>${otherTail.id}`);
    const out = await checkFinishedJob(await deps(), job);
    expect(out.status).toBe('fail');
    expect(store.disputes.filter((x) => x.status === 'open')).toHaveLength(0);
    // One of them cheated, nobody knows which: neither serves on any route; the others still do.
    let routes = await routable();
    expect(routes.some((r) => r.includes(head.id) || r.includes(tail.id))).toBe(false);
    expect(routes).toContain(`${otherHead.id}>${otherTail.id}`);
    for (const hop of [head, tail]) expect((await store.getAgent(hop.id))!.probation).toBe(true);
    expect((await store.getAgent(otherTail.id))!.probation).toBe(false);

    const d = await deps();
    advance(DEFAULT_TRUST_POLICY.routeBlockMs - 1);
    expect(await runTrustTick(d)).toMatchObject({ blocksEnded: 0 });
    expect((await routable()).some((r) => r.includes(head.id) || r.includes(tail.id))).toBe(false);
    advance(1);
    expect(await runTrustTick(d)).toMatchObject({ blocksEnded: 1 });
    routes = await routable();
    expect(routes).toContain(`${head.id}>${tail.id}`);
    expect(routes).toContain(`${head.id}>${otherTail.id}`);
    for (const hop of [head, tail]) expect((await store.getAgent(hop.id))!.probation).toBe(false);
  });

  it('holds every hop of a failed route out of every route until the blame names one; then only the accused stays out', async () => {
    const head = await addAgent('head', 'owner-a', 'pass', [0, 2]);
    const tail = await addAgent('tail', 'owner-x', 'pass', [2, NUM_LAYERS]);
    const otherTail = await addAgent('tail2', 'owner-y', 'pass', [2, NUM_LAYERS]);
    const otherHead = await addAgent('head2', 'owner-z', 'pass', [0, 2]);
    const checker = await addAgent('b', 'owner-b', 'blame');
    checker.culprit = 1;
    const job = await jobOnRoute([head, tail]);
    // What routing sees while the blame runs: the moment the first verdict fails, every hop of the route is out.
    const during: string[][] = [];
    const d = await deps();
    const transport = d.transport;
    d.transport = async (url, init) => {
      if (store.routeBlocks.length) during.push(await routable());
      return transport(url, init);
    };
    const out = await checkFinishedJob(d, job);
    expect(out).toMatchObject({ status: 'fail', dispute: { state: 'open', accusedAgentId: tail.id } });
    expect(during.length).toBeGreaterThan(0);
    for (const routes of during) {
      expect(routes.some((r) => r.includes(head.id) || r.includes(tail.id))).toBe(false);
      expect(routes).toContain(`${otherHead.id}>${otherTail.id}`);
    }
    // Blame named the tail: the head serves again (still on probation, its failed route still blocked); the tail does not.
    const routes = await routable();
    expect(routes.some((r) => r.includes(tail.id))).toBe(false);
    expect(routes).toContain(`${head.id}>${otherTail.id}`);
    expect(routes).not.toContain(`${head.id}>${tail.id}`);
    expect((await store.getAgent(head.id))!.probation).toBe(true);
    expect(logs.some((l) => l.msg === 'blame named a hop: the other hops of the failed route are routable again')).toBe(true);
  });

  it('a dismissed dispute lifts its route block at once', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    const first = await addAgent('b', 'owner-b', 'fail');
    await addAgent('c', 'owner-c', 'pass');
    store.setFigures(first.id, { reputation: 0.9 });
    const out = await checkFinishedJob(await deps(), await jobOn(served));
    expect(out.status).toBe('dismissed');
    expect(store.routeBlocks[0]!.until).toBe(now);
    expect(await routable()).toContain(served.id);
    expect((await store.getAgent(served.id))!.probation).toBe(false);
  });
});

describe('the scheduled tick', () => {
  const advance = (ms: number) => {
    now += ms;
    for (const f of fakes.values()) store.setFigures(f.id, { lastHeartbeatAt: now });
  };
  const dispute = (id: string) => store.disputes.find((d) => d.id === id)!;

  it('ends jobs an edge left running past their deadline (and a minute), as failed and uncharged', async () => {
    const d = await deps();
    const deadline = d.config.jobDeadlineMs;
    await store.recordJobStart({ id: 'job-left', accountId: 'acct', apiKeyId: 'key', modelId: MODEL, createdAt: now - deadline - 60_001, route: ['a'], promptTokens: 3 });
    await store.recordJobStart({ id: 'job-live', accountId: 'acct', apiKeyId: 'key', modelId: MODEL, createdAt: now - deadline, route: ['a'], promptTokens: 3 });
    expect(await runTrustTick(d)).toMatchObject({ jobsEnded: 1 });
    expect(await store.getJob('job-left', 'acct')).toMatchObject({ status: 'failed', finishReason: 'error', costMicroUsd: 0 });
    expect(await store.getJob('job-live', 'acct')).toMatchObject({ status: 'running' });
    expect(logs.some((l) => l.msg === 'jobs left running by an edge that went away ended as failed')).toBe(true);
  });

  it('settles a dispute left open once an eligible checker joins, from the request the dispute kept', async () => {
    const lazy = await addAgent('lazy', 'owner-a', 'pass');
    const first = await addAgent('b', 'owner-b', 'fail');
    const job = await jobOn(lazy);
    const out = await checkFinishedJob(await deps(), job);
    const id = out.dispute!.id;
    expect(dispute(id)).toMatchObject({ status: 'open', checkerAgentIds: [first.id], retryAfter: now + DEFAULT_TRUST_POLICY.disputeRetryMs });
    expect(dispute(id).check!.request.promptIds).toEqual(job.promptIds);
    const d = await deps();
    // Not due yet: the check that opened it may still be running.
    expect((await runTrustTick(d)).retried).toEqual([]);
    advance(DEFAULT_TRUST_POLICY.disputeRetryMs);
    expect((await runTrustTick(d)).retried).toEqual([expect.objectContaining({ disputeId: id, state: 'open', asked: 0 })]);
    expect(dispute(id).retryNote).toMatchObject({ outcome: 'no_eligible_checker' });
    expect(first.received).toBe(1);

    const third = await addAgent('c', 'owner-c', 'fail');
    // Due again only a retry interval after the last try.
    expect((await runTrustTick(d)).retried).toEqual([]);
    advance(DEFAULT_TRUST_POLICY.disputeRetryMs);
    const tick = await runTrustTick(d);
    expect(tick.retried).toEqual([expect.objectContaining({ disputeId: id, state: 'upheld', asked: 1, steps: [{ checkerId: third.id, status: 'fail' }] })]);
    expect(third.received).toBe(1);
    expect((await store.getAgent(lazy.id))!.status).toBe('slashed');
    expect(dispute(id)).toMatchObject({ status: 'upheld', checkerAgentIds: [first.id, third.id], check: null, retryAfter: null });
    expect((await store.getJob(job.jobId, 'acct'))!.checkStatus).toBe('upheld');
    const slash = store.ledger.find((l) => l.kind === 'slash')!;
    expect((slash.evidence as { verdicts: unknown[] }).verdicts).toHaveLength(2);
    // Settled: never retried again.
    advance(DEFAULT_TRUST_POLICY.disputeRetryMs);
    expect((await runTrustTick(d)).retried).toEqual([]);
  });

  it('goes on from the third checks already made: a checker that answered is not asked again, and the last allowed attempt voids it', async () => {
    const served = await addAgent('a', 'owner-a', 'pass');
    const first = await addAgent('b', 'owner-b', 'fail');
    const c = await addAgent('c', 'owner-c', 'inconclusive');
    store.setFigures(first.id, { reputation: 0.9 });
    const out = await checkFinishedJob(await deps(), await jobOn(served));
    const id = out.dispute!.id;
    expect(dispute(id).checkerAgentIds).toEqual([first.id, c.id]);
    const d = await deps();
    advance(DEFAULT_TRUST_POLICY.disputeRetryMs);
    await runTrustTick(d);
    expect(c.received).toBe(1);
    const dd = await addAgent('d', 'owner-d', 'inconclusive');
    const e = await addAgent('e', 'owner-e', 'down');
    advance(DEFAULT_TRUST_POLICY.disputeRetryMs);
    // d answers (attempt 2 of 3); e does not (not an attempt).
    expect((await runTrustTick(d)).retried[0]).toMatchObject({ state: 'open', asked: 2 });
    expect(dispute(id)).toMatchObject({ checkerAgentIds: [first.id, c.id, dd.id], retryNote: { outcome: 'inconclusive', asked: 2 } });
    e.answer = 'inconclusive';
    advance(DEFAULT_TRUST_POLICY.disputeRetryMs);
    expect((await runTrustTick(d)).retried[0]).toMatchObject({ state: 'voided', asked: 1 });
    expect(dispute(id)).toMatchObject({ status: 'rejected', check: null });
    expect((await store.getAgent(served.id))!).toMatchObject({ status: 'active', probation: false });
    // Its route is routable again.
    expect(store.routeBlocks[0]!.until).toBeLessThanOrEqual(now);
  });

  it('voids disputes past their timeout with no job checked, and two ticks at once retry a dispute once', async () => {
    const accused = await addAgent('accused', 'owner-a', 'pass', [0, 2]);
    const lazy = await addAgent('lazy', 'owner-l', 'pass');
    await addAgent('b', 'owner-b', 'fail');
    await checkFinishedJob(await deps(), await jobOn(lazy));
    // (A checked job voids stale disputes too: this one comes after it.)
    const old = await store.openDispute({ jobId: 'old-job', agentId: accused.id, reason: 'hidden_mismatch', evidence: {}, at: now - 24 * 60 * 60 * 1000 - 1 });
    await store.setProbation(accused.id, true);
    const third = await addAgent('c', 'owner-c', 'pass');
    advance(DEFAULT_TRUST_POLICY.disputeRetryMs);
    const d = await deps();
    const [one, two] = await Promise.all([runTrustTick(d), runTrustTick(d)]);
    expect(one.voided + two.voided).toBe(1);
    expect(dispute(old.id)).toMatchObject({ status: 'rejected', settlement: { state: 'voided', reason: 'timeout' } });
    expect((await store.getAgent(accused.id))!.probation).toBe(false);
    expect([...one.retried, ...two.retried].map((r) => r.state)).toEqual(['dismissed']);
    expect(third.received).toBe(1);
  });
});
