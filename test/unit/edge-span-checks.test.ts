/**
 * Checks without a whole-model checker (edge/checks/span-checks.ts, checkers.ts): a multi-hop
 * route is checked hop by hop by independent agents holding each hop's span, its dispute's third
 * checks are hop checks of the same hop, and the scheduled tick retries them as agents join. The
 * memory store and fake agents that verify the edge's signed requests and sign their verdicts
 * with real keys; the agent's `POST /v1/checks` with checker doubles; the request scoping.
 */
import type { Server } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkFinishedJob, type CheckDeps } from '../../edge/checks/run-checks.js';
import { runTrustTick } from '../../edge/checks/tick.js';
import { DEFAULT_TRUST_POLICY } from '../../edge/trust/policy.js';
import type { AgentTransport } from '../../edge/deps.js';
import { createMemoryStore, type MemoryStore } from '../../edge/store/memory.js';
import type { JobAttemptRecord } from '../../db/registry-contract.js';
import { signAttestation, type SignedAttestation } from '../../protocol/attestation.js';
import { sha256Hex, toBase64Url } from '../../protocol/bytes.js';
import { decodeSegmentRows, rowsHash } from '../../protocol/segment.js';
import { signVerdict, verifyVerdict, type CheckRequest, type CheckVerdict } from '../../protocol/check.js';
import { boundarySources } from '../../protocol/hop-blame.js';
import { hopBoundaries, hopCheckRequest, withholderOf } from '../../protocol/hop-check.js';
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
 * honest: judges a hop check as the real checker does (withholders of a boundary it lacks, else
 * the hop when it is in `cheaters`); liar: accuses the hop it checks; inconclusive; down;
 * unscoped: answers a hop check with a verdict that does not say which hop it checked.
 */
type Behaviour = 'honest' | 'liar' | 'inconclusive' | 'down' | 'unscoped';

interface Fake extends CheckAgent {
  owner: string;
  layers: [number, number];
  behaviour: Behaviour;
  /** Check requests it ran (verified, for its own span or the whole model). */
  requests: CheckRequest[];
  /** Answers disclosure requests with 404, as if it had kept nothing. */
  withholds?: boolean;
}

/** The activations into hop b (what hop b-1 sent): 16 float32 values, one per boundary. */
const boundaryBytes = (b: number) => new Uint8Array(16 * 4).fill(b);

let store: MemoryStore;
let edgeKey: SigningKey;
let fakes: Map<string, Fake>;
/** Agents whose hop computations are wrong: honest checkers fail their hop. */
let cheaters: Set<string>;
let logs: Record<string, unknown>[];
let now: number;
/** Hops of the route the fakes disclose for (set by `jobOnRoute`). */
let routeLength = 0;

async function addAgent(name: string, owner: string, layers: [number, number], behaviour: Behaviour = 'honest'): Promise<Fake> {
  const fake: Fake = { ...(await registerCheckAgent(store, { name, owner, layers, now })), owner, layers, behaviour, requests: [] };
  fakes.set(fake.endpoint, fake);
  return fake;
}

/** What an honest hop checker finds for hop `h` of the request (the rules of pool-agent/verify/hop-check.ts). */
function judgeHop(req: CheckRequest, h: number): CheckVerdict {
  const ticket = req.signedTicket.ticket;
  const route = ticket.route;
  const base = { jobId: ticket.jobId, checkedHop: h, evidence: {} };
  const sources = boundarySources(route.length, (req.disclosures ?? []).map((d) => ({ hop: d.hop, inputs: !!d.inputs, outputs: !!d.outputs })));
  for (const b of hopBoundaries(route.length, h)) {
    if (sources[b] !== null) continue;
    const w = withholderOf(b, req.withheld ?? []);
    if (w === null) return { ...base, status: 'inconclusive', reason: 'bad_request', detail: `boundary ${b} missing` };
    return { ...base, status: 'fail', reason: 'disclosure_mismatch', hop: w, agentId: route[w]!.agentId, detail: `hop ${w} withheld boundary ${b}` };
  }
  if (cheaters.has(route[h]!.agentId)) return { ...base, status: 'fail', reason: 'hop_output_mismatch', hop: h, agentId: route[h]!.agentId, detail: `hop ${h} output differs` };
  return { ...base, status: 'pass', detail: `hop ${h} agrees` };
}

/** The fake agents: disclosures as the hops attested them; checks verified like a real agent's and answered signed. */
const transport: AgentTransport = async (url, init) => {
  const u = new URL(url);
  const fake = fakes.get(`${u.protocol}//${u.host}`);
  if (!fake || fake.behaviour === 'down') throw new TypeError('fetch failed: connection refused');
  if (u.pathname === '/v1/checks/inputs') {
    const r = await verifiedDisclosureRequest(edgeKey, String(init.body));
    if (!r) return new Response('{}', { status: 401 });
    if (fake.withholds) return Response.json({ error: { code: 'not_found', message: 'no committed inputs kept' } }, { status: 404 });
    const last = r.hop === routeLength - 1;
    return Response.json({
      jobId: r.jobId,
      hop: r.hop,
      dtype: 'float32',
      hiddenSize: 16,
      chunks: [{ steps: [0, 1], ...(r.hop > 0 ? { input: toBase64Url(boundaryBytes(r.hop)) } : {}), ...(!last ? { output: toBase64Url(boundaryBytes(r.hop + 1)) } : {}) }],
    });
  }
  const req = await verifiedCheckRequest(edgeKey, fake.id, init);
  if (!req) return Response.json({ error: { code: 'invalid_signature' } }, { status: 401 });
  const ticket = req.signedTicket.ticket;
  const whole = fake.layers[0] === 0 && fake.layers[1] === NUM_LAYERS;
  const hopLayers = req.hop === undefined ? null : ticket.route[req.hop]!.layers;
  // As pool-agent/server/checks.ts: a whole-route check needs the whole model, a hop check the hop's span (or the whole model).
  if (!whole && !(hopLayers && hopLayers[0] === fake.layers[0] && hopLayers[1] === fake.layers[1])) return Response.json({ error: { code: 'not_found' } }, { status: 404 });
  fake.requests.push(req);
  let verdict: CheckVerdict;
  if (req.hop === undefined) verdict = { jobId: ticket.jobId, status: 'pass', detail: 'whole route agrees', evidence: {} };
  else if (fake.behaviour === 'liar') verdict = { jobId: ticket.jobId, status: 'fail', reason: 'hop_output_mismatch', hop: req.hop, agentId: ticket.route[req.hop]!.agentId, checkedHop: req.hop, detail: 'made up', evidence: {} };
  else if (fake.behaviour === 'inconclusive') verdict = { jobId: ticket.jobId, status: 'inconclusive', reason: 'checker_error', checkedHop: req.hop, detail: 'runtime failed', evidence: {} };
  else {
    verdict = judgeHop(req, req.hop);
    if (fake.behaviour === 'unscoped') delete verdict.checkedHop;
  }
  return Response.json(await signVerdict(fake.key.privateKey, fake.id, verdict, now));
};

const deps = (): Promise<CheckDeps> => checkDeps({ store, transport, edgeKey, now: () => now, logs });

/** A finished job over `hops` (their registered layers), one step, every boundary attested by both sides. */
async function jobOnRoute(hops: Fake[], jobId = `job_${Math.random().toString(36).slice(2)}`) {
  const promptIds = [1, 5, 6];
  const { signed, hash, route } = await issueTestTicket(store, edgeKey, { jobId, hopIds: hops.map((h) => h.id), promptIds, now });
  const chunk: SignedAttestation[] = [];
  for (const [i, h] of hops.entries()) {
    const lastHop = i === hops.length - 1;
    chunk.push(
      await signAttestation(h.key.privateKey, {
        v: 1, ticketHash: hash, jobId, agentId: h.id, modelId: MODEL, hop: i, layers: route[i]!.layers, steps: [0, 1],
        inputCommitment: i === 0 ? signed.ticket.inputHash : await sha256Hex(boundaryBytes(i)),
        outputCommitment: lastHop ? 'cd'.repeat(32) : await sha256Hex(boundaryBytes(i + 1)),
        ...(lastHop ? { outputTokenIds: [7] } : {}), prevHash: null, issuedAt: now,
      }),
    );
  }
  routeLength = hops.length;
  const attempts: JobAttemptRecord[] = [{ ticket: signed, chunks: [chunk], outcome: 'completed' }];
  await store.recordJobStart({ id: jobId, accountId: 'acct', apiKeyId: 'key', modelId: MODEL, createdAt: now, route: hops.map((h) => h.id), promptTokens: 3 });
  await store.recordJobFinish({ id: jobId, status: 'completed', finishReason: 'length', attempts, tokenIds: [7], promptTokens: 3, completionTokens: 1, costMicroUsd: 0, finishedAt: now });
  return { jobId, modelId: MODEL, numLayers: NUM_LAYERS, promptIds, tokenIds: [7], attempts };
}

/** The hops a fake was asked to check (undefined: a whole-route check). */
const hopChecksOf = (f: Fake) => f.requests.map((r) => r.hop);
const advance = (ms: number) => {
  now += ms;
  for (const f of fakes.values()) store.setFigures(f.id, { lastHeartbeatAt: now });
};
const disputeOf = (id: string) => store.disputes.find((d) => d.id === id)!;

beforeEach(async () => {
  store = createMemoryStore();
  edgeKey = await generateSigningKey();
  fakes = new Map();
  cheaters = new Set();
  logs = [];
  now = Date.now();
});

describe('checks by span checkers (no whole-model checker)', () => {
  it('an honest two-hop route is checked hop by hop by other owners\' holders of each span: both pass, each hop is credited', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    const sameOwner = await addAgent('a-head2', 'owner-a', [0, 2]);
    const b0 = await addAgent('b0', 'owner-b', [0, 2]);
    const b1 = await addAgent('b1', 'owner-b', [2, 4]);
    const job = await jobOnRoute([head, tail]);
    const out = await checkFinishedJob(await deps(), job);
    expect(out).toMatchObject({ checked: true, status: 'pass' });
    expect(out.uncheckedHops).toBeUndefined();
    expect(hopChecksOf(b0)).toEqual([0]);
    expect(hopChecksOf(b1)).toEqual([1]);
    expect(sameOwner.requests).toEqual([]);
    // Each checker got its hop's boundaries only: hop 0 its output (boundary 1), hop 1 its input (the same boundary, one copy).
    expect(b0.requests[0]!.disclosures).toEqual([{ hop: 0, dtype: 'float32', outputs: [toBase64Url(boundaryBytes(1))] }]);
    expect(b1.requests[0]!.disclosures).toEqual([{ hop: 0, dtype: 'float32', outputs: [toBase64Url(boundaryBytes(1))] }]);
    for (const hop of [head, tail]) expect(store.checkCounters(hop.id)).toEqual({ jobsChecked: 1, checksPassed: 1 });
    expect((await store.getAgent(head.id))!.reputation).toBeGreaterThan(0.5);
    expect((await store.getJob(job.jobId, 'acct'))!.checkStatus).toBe('pass');
    // The job keeps each hop's signed verdict, scoped to its hop.
    const entries = store.jobChecks.get(job.jobId) as { kind: string; checkedHop?: number; verdict?: unknown; checkerId?: string }[];
    const checks = entries.filter((e) => e.kind === 'check');
    expect(checks.map((e) => e.checkedHop)).toEqual([0, 1]);
    const v0 = await verifyVerdict(checks[0]!.verdict, b0.key.publicKey);
    expect(v0?.verdict).toMatchObject({ status: 'pass', checkedHop: 0 });
    expect(entries.at(-1)).toEqual({ kind: 'hop_checks', passedHops: [0, 1], uncheckedHops: [] });
    expect(store.disputes).toEqual([]);
  });

  it('a whole-model checker of another owner is preferred when there is one (the whole route in one check)', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    const b0 = await addAgent('b0', 'owner-b', [0, 2]);
    const whole = await addAgent('w', 'owner-w', [0, NUM_LAYERS]);
    const out = await checkFinishedJob(await deps(), await jobOnRoute([head, tail]));
    expect(out.status).toBe('pass');
    expect(whole.requests.map((r) => r.hop)).toEqual([undefined]);
    expect(b0.requests).toEqual([]);
  });

  it('a cheating head is named by its hop check; another owner\'s holder of [0, 2) upholds the dispute: slashed, excluded, the tail untouched', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    const b0 = await addAgent('b0', 'owner-b', [0, 2]);
    const b1 = await addAgent('b1', 'owner-b', [2, 4]);
    const c0 = await addAgent('c0', 'owner-c', [0, 2]);
    const c1 = await addAgent('c1', 'owner-c', [2, 4]);
    store.setFigures(b0.id, { reputation: 0.9 });
    cheaters.add(head.id);
    const job = await jobOnRoute([head, tail]);
    const out = await checkFinishedJob(await deps(), job);
    expect(out).toMatchObject({ status: 'upheld', dispute: { state: 'upheld', accusedAgentId: head.id }, slashed: [head.id] });
    // First check of hop 0 by b0, of hop 1 by one of b1/c1; the third check of hop 0 by c0 (another owner than b0).
    expect(hopChecksOf(b0)).toEqual([0]);
    expect(hopChecksOf(c0)).toEqual([0]);
    expect(hopChecksOf(b1).length + hopChecksOf(c1).length).toBe(1);
    const dispute = store.disputes[0]!;
    expect(dispute).toMatchObject({ agentId: head.id, status: 'upheld', checkerAgentIds: [b0.id, c0.id] });
    expect(dispute.check).toBeNull();
    expect((await store.getAgent(head.id))!).toMatchObject({ status: 'slashed', reputation: 0 });
    expect(store.ledger.find((l) => l.kind === 'slash')).toMatchObject({ agentId: head.id, amount: 1_000_000 });
    expect((await store.getAgent(tail.id))!.status).toBe('active');
    expect((await store.listRouteCandidates(MODEL, { heartbeatAfter: 0, limit: 100 })).some((c) => c.agentId === head.id)).toBe(false);
    const entries = store.jobChecks.get(job.jobId) as { kind: string; failedHop?: number }[];
    expect(entries).toContainEqual({ kind: 'hop_checks', passedHops: [1], uncheckedHops: [], failedHop: 0 });
    expect((await store.getJob(job.jobId, 'acct'))!.checkStatus).toBe('upheld');
  });

  it('a hop no independent agent holds is said on the job and left unchecked (no credit, on probation); the others are checked', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    const b0 = await addAgent('b0', 'owner-b', [0, 2]);
    // Holds [2, 4) but is of the route's owner: not independent.
    await addAgent('a1', 'owner-a', [2, 4]);
    const job = await jobOnRoute([head, tail]);
    const out = await checkFinishedJob(await deps(), job);
    expect(out).toMatchObject({ checked: true, status: 'inconclusive', uncheckedHops: [1] });
    expect(hopChecksOf(b0)).toEqual([0]);
    expect(store.checkCounters(head.id)).toEqual({ jobsChecked: 1, checksPassed: 1 });
    expect(store.checkCounters(tail.id)).toEqual({ jobsChecked: 0, checksPassed: 0 });
    expect(store.jobChecks.get(job.jobId)).toContainEqual({ kind: 'no_span_checker', hops: [1], agentIds: [tail.id] });
    expect(logs.some((l) => String(l.msg).includes('no independent checker holds these hops'))).toBe(true);
    expect((await store.getJob(job.jobId, 'acct'))!.checkStatus).toBe('inconclusive');
  });

  it('with no checker for any hop, nothing is checked and the edge says so', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    await addAgent('b', 'owner-b', [0, 1]);
    const out = await checkFinishedJob(await deps(), await jobOnRoute([head, tail]));
    expect(out).toMatchObject({ checked: false, skipped: 'no_checker' });
    expect(logs.some((l) => String(l.msg).includes('no independent checker'))).toBe(true);
  });

  it('checkers that are in dispute, slashed or silent are not used; the next holder of the span is asked', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    const accused = await addAgent('accused', 'owner-d', [0, 2]);
    await store.openDispute({ jobId: 'other', agentId: accused.id, reason: 'hidden_mismatch', evidence: {}, at: now });
    const silent = await addAgent('silent', 'owner-s', [0, 2], 'down');
    store.setFigures(silent.id, { reputation: 0.9 });
    const b0 = await addAgent('b0', 'owner-b', [0, 2]);
    const b1 = await addAgent('b1', 'owner-b', [2, 4]);
    const out = await checkFinishedJob(await deps(), await jobOnRoute([head, tail]));
    expect(out.status).toBe('pass');
    expect(accused.requests).toEqual([]);
    expect(out.steps.filter((s) => s.checkerId === silent.id)).toEqual([{ checkerId: silent.id, status: null }]);
    expect(hopChecksOf(b0)).toEqual([0]);
    expect(hopChecksOf(b1)).toEqual([1]);
  });

  it('a verdict that does not say it checked the hop asked is ignored', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    const sloppy = await addAgent('sloppy', 'owner-s', [0, 2], 'unscoped');
    store.setFigures(sloppy.id, { reputation: 0.9 });
    const b0 = await addAgent('b0', 'owner-b', [0, 2]);
    await addAgent('b1', 'owner-b', [2, 4]);
    cheaters.add(head.id);
    const out = await checkFinishedJob(await deps(), await jobOnRoute([head, tail]));
    expect(out.steps).toContainEqual({ checkerId: sloppy.id, status: null });
    expect(out.steps).toContainEqual({ checkerId: b0.id, status: 'fail' });
    expect(logs.some((l) => l.msg === 'checker answered a verdict on another scope than the hop asked')).toBe(true);
    expect(out.dispute).toMatchObject({ accusedAgentId: head.id });
  });

  it('a span checker that accuses an honest hop is dismissed by the third check and loses reputation', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    const liar = await addAgent('liar', 'owner-l', [0, 2], 'liar');
    store.setFigures(liar.id, { reputation: 0.9 });
    const honest = await addAgent('c0', 'owner-c', [0, 2]);
    await addAgent('c1', 'owner-c', [2, 4]);
    const out = await checkFinishedJob(await deps(), await jobOnRoute([head, tail]));
    expect(out).toMatchObject({ status: 'dismissed', dispute: { accusedAgentId: head.id } });
    expect(hopChecksOf(honest)).toEqual([0]);
    expect((await store.getAgent(head.id))!).toMatchObject({ status: 'active', probation: false });
    expect((await store.getAgent(liar.id))!.reputation).toBeLessThan(0.9);
    expect(store.ledger.some((l) => l.kind === 'slash')).toBe(false);
  });

  it('hops that withhold the boundary between them: the hop check blames the sender, for withholding', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    head.withholds = tail.withholds = true;
    const b0 = await addAgent('b0', 'owner-b', [0, 2]);
    store.setFigures(b0.id, { reputation: 0.9 });
    await addAgent('b1', 'owner-b', [2, 4]);
    await addAgent('c0', 'owner-c', [0, 2]);
    const job = await jobOnRoute([head, tail]);
    const out = await checkFinishedJob(await deps(), job);
    expect(b0.requests[0]).toMatchObject({ hop: 0, withheld: [0, 1] });
    expect(b0.requests[0]!.disclosures).toBeUndefined();
    expect(out).toMatchObject({ status: 'upheld', dispute: { accusedAgentId: head.id }, slashed: [head.id] });
    expect(store.ledger.find((l) => l.kind === 'slash')!.amount).toBe(500_000);
    expect(store.jobChecks.get(job.jobId)).toContainEqual(expect.objectContaining({ kind: 'disclosure_withheld', hops: [0, 1] }));
  });

  it('a three-hop route: the middle hop\'s checker gets both of its boundaries; a cheating middle hop is the one accused', async () => {
    const h0 = await addAgent('h0', 'owner-a', [0, 1]);
    const h1 = await addAgent('h1', 'owner-a', [1, 3]);
    const h2 = await addAgent('h2', 'owner-a', [3, 4]);
    const checkers = [await addAgent('b0', 'owner-b', [0, 1]), await addAgent('b1', 'owner-b', [1, 3]), await addAgent('b2', 'owner-b', [3, 4])];
    const c1 = await addAgent('c1', 'owner-c', [1, 3]);
    store.setFigures(checkers[1]!.id, { reputation: 0.9 });
    cheaters.add(h1.id);
    const out = await checkFinishedJob(await deps(), await jobOnRoute([h0, h1, h2]));
    expect(checkers[1]!.requests[0]!.disclosures).toEqual([{ hop: 0, dtype: 'float32', outputs: [toBase64Url(boundaryBytes(1))] }, { hop: 1, dtype: 'float32', outputs: [toBase64Url(boundaryBytes(2))] }]);
    expect(out).toMatchObject({ status: 'upheld', dispute: { accusedAgentId: h1.id }, slashed: [h1.id] });
    expect(hopChecksOf(c1)).toEqual([1]);
  });
});

describe('span disputes and the scheduled tick', () => {
  it('a dispute no other owner\'s holder of the hop could settle is retried by the tick as one joins, with a hop check of the same hop', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    const b0 = await addAgent('b0', 'owner-b', [0, 2]);
    const b0b = await addAgent('b0b', 'owner-b', [0, 2]);
    await addAgent('b1', 'owner-b', [2, 4]);
    store.setFigures(b0.id, { reputation: 0.9 });
    cheaters.add(head.id);
    const job = await jobOnRoute([head, tail]);
    const out = await checkFinishedJob(await deps(), job);
    const id = out.dispute!.id;
    // Nobody else may run it: the only other holder of [0, 2) is the first checker's owner.
    expect(out).toMatchObject({ status: 'fail', dispute: { state: 'open', accusedAgentId: head.id } });
    expect(b0b.requests).toEqual([]);
    expect(disputeOf(id)).toMatchObject({ retryNote: { outcome: 'no_eligible_checker' }, check: { hop: 0 } });
    const d = await deps();
    advance(DEFAULT_TRUST_POLICY.disputeRetryMs);
    expect((await runTrustTick(d)).retried).toEqual([expect.objectContaining({ disputeId: id, state: 'open', asked: 0 })]);

    const c0 = await addAgent('c0', 'owner-c', [0, 2]);
    advance(DEFAULT_TRUST_POLICY.disputeRetryMs);
    const tick = await runTrustTick(d);
    expect(tick.retried).toEqual([expect.objectContaining({ disputeId: id, state: 'upheld', asked: 1, steps: [{ checkerId: c0.id, status: 'fail' }] })]);
    expect(c0.requests.map((r) => r.hop)).toEqual([0]);
    expect((await store.getAgent(head.id))!.status).toBe('slashed');
    expect((await store.getJob(job.jobId, 'acct'))!.checkStatus).toBe('upheld');
  });

  it('a whole-model agent that joins later may run the hop check of a span dispute', async () => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    await addAgent('b0', 'owner-b', [0, 2]);
    await addAgent('b1', 'owner-b', [2, 4]);
    cheaters.add(head.id);
    const out = await checkFinishedJob(await deps(), await jobOnRoute([head, tail]));
    expect(out.dispute?.state).toBe('open');
    const whole = await addAgent('w', 'owner-w', [0, NUM_LAYERS]);
    advance(DEFAULT_TRUST_POLICY.disputeRetryMs);
    const tick = await runTrustTick(await deps());
    expect(tick.retried[0]).toMatchObject({ state: 'upheld' });
    expect(whole.requests.map((r) => r.hop)).toEqual([0]);
  });
});

describe('hop check requests (protocol/hop-check.ts)', () => {
  const request = (hops: number, disclosures: CheckRequest['disclosures'], withheld?: number[]): CheckRequest =>
    ({
      signedTicket: { ticket: { route: Array.from({ length: hops }, (_, h) => ({ agentId: `a${h}`, layers: [h, h + 1] })) } },
      promptIds: [1],
      prefixIds: [],
      attestations: [],
      ...(disclosures ? { disclosures } : {}),
      ...(withheld ? { withheld } : {}),
    }) as unknown as CheckRequest;

  it('keeps one copy of each boundary of the hop (the sender\'s first), the withholders beside it, and says the hop', () => {
    const full = request(4, [
      { hop: 0, dtype: 'float32', outputs: ['b1'] },
      { hop: 1, dtype: 'float32', inputs: ['b1'], outputs: ['b2'] },
      { hop: 3, dtype: 'float32', inputs: ['b3'] },
    ], [2]);
    expect(hopCheckRequest(full, 0)).toMatchObject({ hop: 0, disclosures: [{ hop: 0, dtype: 'float32', outputs: ['b1'] }] });
    expect(hopCheckRequest(full, 0).withheld).toBeUndefined();
    expect(hopCheckRequest(full, 2)).toMatchObject({ hop: 2, disclosures: [{ hop: 1, dtype: 'float32', outputs: ['b2'] }, { hop: 3, dtype: 'float32', inputs: ['b3'] }], withheld: [2] });
    expect(hopCheckRequest(full, 3)).toMatchObject({ hop: 3, disclosures: [{ hop: 3, dtype: 'float32', inputs: ['b3'] }], withheld: [2] });
    // The edge's copy is left whole (a dispute keeps it).
    expect(full.disclosures).toHaveLength(3);
    expect(full.hop).toBeUndefined();
  });

  it('blames the sender of a missing boundary before its receiver', () => {
    expect(hopBoundaries(1, 0)).toEqual([]);
    expect(hopBoundaries(3, 0)).toEqual([1]);
    expect(hopBoundaries(3, 2)).toEqual([2]);
    expect(withholderOf(2, [1, 2])).toBe(1);
    expect(withholderOf(2, [2])).toBe(2);
    expect(withholderOf(2, [0, 3])).toBeNull();
  });
});

// ---------------------------------------------------------------- the agent's endpoint

describe('agent POST /v1/checks, hop checks', () => {
  let server: Server | undefined;
  let url: string;
  let agentKey: SigningKey;
  let ran: { kind: 'whole' | 'hop'; hop?: number; exact?: boolean; loaded?: number[]; segment?: number[]; input?: number[] }[];
  /** What the runHop double computes for a segment that does not end its hop. */
  const handed = Float32Array.from([0.5, -1, 2, 3]);

  beforeEach(async () => {
    agentKey = await generateSigningKey();
    ran = [];
  });
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    server = undefined;
  });

  const start = async (layers: [number, number]) => {
    const checks = createCheckService({
      agentId: 'checker-1',
      signingKey: agentKey,
      edgeKeys: () => ({ 'edge-test': edgeKey.publicKey }),
      span: spanStub(layers),
      hopSpans: async (l) => spanStub([l[0], l[1]]),
      run: async (input) => {
        ran.push({ kind: 'whole' });
        return { jobId: input.ticket.jobId, status: 'pass', detail: 'ok', evidence: {} };
      },
      runHop: async (input) => {
        const asked = input.segment?.layers ?? input.ticket.route[input.hop]!.layers;
        const loaded = input.span ? undefined : [...(await input.loadSpan!(asked)).layers];
        const seg = input.segment ? { segment: [...input.segment.layers], ...(input.segment.input ? { input: [...input.segment.input] } : {}) } : {};
        ran.push({ kind: 'hop', hop: input.hop, exact: !!input.span, ...(loaded ? { loaded } : {}), ...seg });
        if (input.segment && input.segment.layers[1] < input.ticket.route[input.hop]!.layers[1]) {
          input.onSegmentOutput?.(handed);
          return { jobId: input.ticket.jobId, status: 'pass', checkedHop: input.hop, detail: 'handed on', evidence: { segment: { layers: [input.segment.layers[0], input.segment.layers[1]], outputHash: await rowsHash(handed) } } };
        }
        return { jobId: input.ticket.jobId, status: 'pass', checkedHop: input.hop, detail: 'ok', evidence: {} };
      },
    });
    ({ server, url } = await serveChecks(checks));
  };
  const body = async (hop?: number, segment?: { layers: [number, number]; input?: string }) => {
    const head = await addAgent('head', 'owner-a', [0, 2]);
    const tail = await addAgent('tail', 'owner-a', [2, 4]);
    const job = await jobOnRoute([head, tail]);
    return JSON.stringify({ signedTicket: job.attempts[0]!.ticket, promptIds: job.promptIds, prefixIds: [], attestations: job.attempts[0]!.chunks, ...(hop !== undefined ? { hop } : {}), ...(segment ? { segment } : {}) });
  };
  const post = (text: string) => postCheck(url, text, { key: edgeKey.privateKey });

  it('an agent holding exactly the hop\'s span runs the hop check on its loaded span and signs a verdict scoped to the hop', async () => {
    await start([2, 4]);
    const res = await post(await body(1));
    expect(res.status).toBe(200);
    expect((await verifyVerdict(await res.json(), agentKey.publicKey))?.verdict).toMatchObject({ status: 'pass', checkedHop: 1 });
    expect(ran).toEqual([{ kind: 'hop', hop: 1, exact: true }]);
  });

  it('refuses a hop of another span, a hop the route does not have, and a whole-route check (404 / 400), running nothing', async () => {
    await start([2, 4]);
    expect((await post(await body(0))).status).toBe(404);
    expect((await post(await body())).status).toBe(404);
    expect((await post(await body(5))).status).toBe(400);
    expect(ran).toEqual([]);
  });

  it('a segment of a hop: run by the agent holding exactly its layers, on the rows given; the rows it hands on come back beside the verdict that commits to them', async () => {
    await start([0, 1]);
    const res = await post(await body(0, { layers: [0, 1] }));
    expect(res.status).toBe(200);
    const answer = (await res.json()) as { segmentOutput?: string };
    const v = await verifyVerdict(answer, agentKey.publicKey);
    expect(v?.verdict).toMatchObject({ status: 'pass', checkedHop: 0, evidence: { segment: { layers: [0, 1], outputHash: await rowsHash(handed) } } });
    expect(decodeSegmentRows(answer.segmentOutput!)).toEqual(handed);
    expect(ran).toEqual([{ kind: 'hop', hop: 0, exact: true, segment: [0, 1] }]);
    await server!.close();
    server = undefined;

    ran = [];
    await start([1, 2]);
    const rows = Float32Array.from([1, 2, 3, 4]);
    const last = await post(await body(0, { layers: [1, 2], input: toBase64Url(new Uint8Array(rows.buffer)) }));
    expect(last.status).toBe(200);
    // The last segment is judged: nothing handed on.
    expect(((await last.json()) as { segmentOutput?: string }).segmentOutput).toBeUndefined();
    expect(ran).toEqual([{ kind: 'hop', hop: 0, exact: true, segment: [1, 2], input: [1, 2, 3, 4] }]);
  });

  it('refuses a segment of other layers than it holds (404), one without a hop or with rows that are not float32 (400), running nothing', async () => {
    await start([1, 2]);
    expect((await post(await body(0, { layers: [0, 1] }))).status).toBe(404);
    expect((await post(await body(undefined, { layers: [1, 2] }))).status).toBe(400);
    expect((await post(await body(0, { layers: [1, 2], input: 'AAA' }))).status).toBe(400);
    expect((await post(await body(0, { layers: [2, 1] }))).status).toBe(400);
    expect(ran).toEqual([]);
  });

  it('a whole-model agent runs a hop check on that hop\'s span, loaded from its model folder', async () => {
    await start([0, NUM_LAYERS]);
    expect((await post(await body(0))).status).toBe(200);
    expect((await post(await body())).status).toBe(200);
    expect(ran).toEqual([{ kind: 'hop', hop: 0, exact: false, loaded: [0, 2] }, { kind: 'whole' }]);
  });
});
